//! What a gateway (`[gateway] protects`) needs of the kernel: IP forwarding
//! for each family it protects, and a reverse-path filter on the TUN that
//! lets decrypted packets from remote sites in.
//!
//! The settings are read over netlink (`RTM_GETNETCONF`, what `ip netconf
//! show` prints), not from `/proc/sys`: the systemd unit's `ProcSubset=pid`
//! hides `/proc/sys` from the agent and from `check-config` (its
//! `ExecStartPre=`), and `ProtectKernelTunables=yes` makes it read-only. For
//! the same reason the agent sets its TUN's `rp_filter` over netlink
//! (`RTM_SETLINK`, `IFLA_AF_SPEC`), which needs only CAP_NET_ADMIN; it never
//! turns forwarding on itself: that is the administrator's decision (it
//! changes what the host is), so `check-config` refuses a gateway without it
//! and the agent warns at start.
//!
//! Reverse-path filtering, as measured on Linux 6.x (`agent/tests/gateway_mode.rs`):
//! the kernel checks a packet arriving on the TUN with the larger of
//! `net.ipv4.conf.all.rp_filter` and the TUN's own. A source routed back
//! into the TUN (a `private` or `private-or-clear` prefix) passes at any
//! value. Any other source (a peer of a `clear-or-private` prefix, a remote
//! site outside the OE policy) passes only at 0: the TUN has no address, and
//! for such an interface loose mode (2) fails like strict (1)
//! (`__fib_validate_source` goes to `last_resort`). So the agent sets the
//! TUN's own value to 0, which leaves `all` deciding, and a non-zero `all`
//! is a warning, not an error: most distributions ship 2, and a gateway
//! whose remote sites are all in TUN-routed prefixes does not care.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{DefaultNla, Emitable, NLA_F_NESTED};
use netlink_packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rtnetlink::Handle;

use crate::config::Config;

const RTM_NEWNETCONF: u16 = 80;
const RTM_GETNETCONF: u16 = 82;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
const NETCONFA_RP_FILTER: u16 = 3;
/// `NETCONFA_IFINDEX_ALL`: the `all` pseudo-interface.
const IFINDEX_ALL: i32 = -1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The `rp_filter` the agent gives its TUN in gateway mode: off, so that
/// only `all` counts (module docs: on an address-less TUN, loose drops what
/// strict drops).
pub const TUN_RP_FILTER: u32 = 0;

/// How much a [`Finding`] matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The gateway cannot work so: `check-config` fails.
    Error,
    /// Some traffic may suffer; nothing fails.
    Warning,
}

/// One setting a gateway needs, as found on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The sysctl (`net.ipv4.ip_forward`).
    pub sysctl: String,
    /// What is wrong and the command that fixes it, in one line.
    pub message: String,
}

/// The settings of `family` (`AF_INET`, `AF_INET6`) for `ifindex` (or
/// [`IFINDEX_ALL`]): netconf attribute type → value.
fn netconf(family: u8, ifindex: i32) -> io::Result<HashMap<u16, i32>> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    // A GET is answered at once; the bound only keeps a broken kernel from
    // hanging `check-config`.
    rustix::net::sockopt::set_socket_timeout(
        sock.as_fd(),
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(2)),
    )?;
    let mut req = Vec::with_capacity(28);
    req.extend_from_slice(&28u32.to_ne_bytes());
    req.extend_from_slice(&RTM_GETNETCONF.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    req.extend_from_slice(&[family, 0, 0, 0]); // struct netconfmsg, aligned
    req.extend_from_slice(&8u16.to_ne_bytes());
    req.extend_from_slice(&NETCONFA_IFINDEX.to_ne_bytes());
    req.extend_from_slice(&ifindex.to_ne_bytes());
    sock.send(&req, 0)?;
    let (reply, _) = sock.recv_from_full()?;
    parse_reply(&reply)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes of the `RTM_NEWNETCONF` in `reply`, or the error of its
/// `NLMSG_ERROR`.
fn parse_reply(reply: &[u8]) -> io::Result<HashMap<u16, i32>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netconf reply");
    let mut at = 0;
    while at + 16 <= reply.len() {
        let len = u32_at(reply, at).ok_or_else(bad)? as usize;
        let kind = u16_at(reply, at + 4).ok_or_else(bad)?;
        let msg = reply
            .get(at..at + len)
            .filter(|_| len >= 16)
            .ok_or_else(bad)?;
        match kind {
            NLMSG_ERROR => {
                let code = u32_at(msg, 16).ok_or_else(bad)? as i32;
                return Err(io::Error::from_raw_os_error(-code));
            }
            RTM_NEWNETCONF => {
                let mut attrs = HashMap::new();
                let mut a = 20; // header + netconfmsg (aligned)
                while a + 4 <= msg.len() {
                    let alen = usize::from(u16_at(msg, a).ok_or_else(bad)?);
                    let akind = u16_at(msg, a + 2).ok_or_else(bad)? & 0x3fff;
                    if alen < 4 {
                        return Err(bad());
                    }
                    if alen >= 8 {
                        attrs.insert(akind, u32_at(msg, a + 4).ok_or_else(bad)? as i32);
                    }
                    a += (alen + 3) & !3;
                }
                return Ok(attrs);
            }
            _ => at += (len + 3) & !3,
        }
    }
    Err(bad())
}

fn value(family: u8, ifindex: i32, attr: u16) -> io::Result<i32> {
    netconf(family, ifindex)?
        .get(&attr)
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the kernel's answer"))
}

/// Checks this host's forwarding and reverse-path settings against what
/// `cfg`'s gateway mode needs (nothing for a host). `tun_index`: the TUN's,
/// once it exists (its own `rp_filter` counts then).
pub fn check(cfg: &Config, tun_index: Option<u32>) -> Vec<Finding> {
    let mut found = Vec::new();
    let protects = &cfg.gateway.protects;
    let families = [
        (true, AF_INET, "net.ipv4.ip_forward", "IPv4"),
        (false, AF_INET6, "net.ipv6.conf.all.forwarding", "IPv6"),
    ];
    for (v4, family, sysctl, name) in families {
        let Some(prefix) = protects.iter().find(|p| p.addr().is_ipv4() == v4) else {
            continue;
        };
        let mut finding = |severity, message: String| {
            found.push(Finding {
                severity,
                sysctl: sysctl.to_owned(),
                message,
            })
        };
        match value(family, IFINDEX_ALL, NETCONFA_FORWARDING) {
            Ok(1) => {}
            Ok(v) => finding(
                Severity::Error,
                format!(
                    "{sysctl} is {v}: this gateway would not forward {name} between \
                     gateway.protects {prefix} and the TUN; run `sysctl -w {sysctl}=1` and \
                     keep it in /etc/sysctl.d/"
                ),
            ),
            Err(e) => finding(
                Severity::Error,
                format!(
                    "{sysctl}: cannot read it ({e}; is {name} on?): gateway.protects {prefix} \
                     needs {name} forwarding; check `sysctl {sysctl}` is 1"
                ),
            ),
        }
    }
    if protects.iter().any(|p| p.addr().is_ipv4()) {
        found.extend(check_rp_filter(&cfg.tun.name, tun_index));
    }
    found
}

/// [`check`] for `check-config`: with the TUN's own setting when it exists
/// (an agent runs).
pub fn check_host(cfg: &Config) -> Vec<Finding> {
    if !cfg.gateway.enabled() {
        return Vec::new();
    }
    let tun = nix::net::if_::if_nametoindex(cfg.tun.name.as_str()).ok();
    check(cfg, tun)
}

/// The TUN's effective `rp_filter`: the larger of `all` and the TUN's own
/// (which the agent sets to [`TUN_RP_FILTER`]); anything but 0 drops
/// decrypted packets from sources not routed into the TUN (module docs).
fn check_rp_filter(tun: &str, tun_index: Option<u32>) -> Vec<Finding> {
    let all_name = "net.ipv4.conf.all.rp_filter";
    let tun_name = format!("net.ipv4.conf.{tun}.rp_filter");
    let warning = |sysctl: &str, message: String| {
        vec![Finding {
            severity: Severity::Warning,
            sysctl: sysctl.to_owned(),
            message,
        }]
    };
    let all = match value(AF_INET, IFINDEX_ALL, NETCONFA_RP_FILTER) {
        Ok(v) => v,
        Err(e) => {
            return warning(
                all_name,
                format!("{all_name}: cannot read it ({e}); see docs/operations.md, \"Gateways\""),
            );
        }
    };
    let own = tun_index
        .and_then(|i| value(AF_INET, i32::try_from(i).ok()?, NETCONFA_RP_FILTER).ok())
        .unwrap_or(0);
    let consequence = "the kernel drops decrypted packets on the TUN whose source is not \
                       routed into it (peers of clear-or-private prefixes, remote sites outside \
                       the OE policy; those of private and private-or-clear prefixes pass)";
    if own != 0 {
        warning(
            &tun_name,
            format!(
                "{tun_name} is {own} (the agent sets 0 at start): {consequence}; run \
                 `sysctl -w {tun_name}=0`"
            ),
        )
    } else if all != 0 {
        warning(
            all_name,
            format!(
                "{all_name} is {all}, and the TUN takes the larger of it and {tun_name}: \
                 {consequence}; to accept them, run `sysctl -w {all_name}=0` (per-interface \
                 values still apply to the others)"
            ),
        )
    } else {
        Vec::new()
    }
}

/// Gateway mode at start, once the TUN exists: its `rp_filter` set to
/// [`TUN_RP_FILTER`], then one log line per setting still missing (the
/// agent runs anyway: forwarding is the administrator's to turn on).
pub async fn prepare(handle: &Handle, cfg: &Config, tun_index: u32) {
    if !cfg.gateway.enabled() {
        return;
    }
    let tun = &cfg.tun.name;
    if cfg.gateway.protects.iter().any(|p| p.addr().is_ipv4()) {
        match set_rp_filter(handle, tun_index, TUN_RP_FILTER).await {
            Ok(()) => tracing::info!(
                "gateway: net.ipv4.conf.{tun}.rp_filter = {TUN_RP_FILTER}, so that only \
                 net.ipv4.conf.all.rp_filter decides for decrypted packets"
            ),
            Err(e) => tracing::error!(
                "gateway: setting net.ipv4.conf.{tun}.rp_filter = {TUN_RP_FILTER}: {e}; run \
                 `sysctl -w net.ipv4.conf.{tun}.rp_filter=0` after each start"
            ),
        }
    }
    for f in check(cfg, Some(tun_index)) {
        match f.severity {
            Severity::Error => tracing::warn!("gateway: {}", f.message),
            Severity::Warning => tracing::warn!("gateway: {}", f.message),
        }
    }
}

/// `IPV4_DEVCONF_RP_FILTER` (linux/ip.h, 1-based as `IFLA_INET_CONF` nests it).
const IPV4_DEVCONF_RP_FILTER: u16 = 8;
/// `IFLA_INET_CONF`.
const IFLA_INET_CONF: u16 = 1;

/// `net.ipv4.conf.<link>.rp_filter = value`, over netlink (`RTM_SETLINK`,
/// `IFLA_AF_SPEC` / `AF_INET` / `IFLA_INET_CONF`, one nested value: the
/// kernel sets only what is sent). Built by hand because the library's
/// request form leaves out zero values.
pub async fn set_rp_filter(
    handle: &Handle,
    index: u32,
    value: u32,
) -> Result<(), rtnetlink::Error> {
    let inner = DefaultNla::new(IPV4_DEVCONF_RP_FILTER, value.to_ne_bytes().to_vec());
    let mut nested = vec![0; inner.buffer_len()];
    inner.emit(&mut nested);
    let conf = DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, nested);
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::Other(conf),
        ])]));
    handle.link().set(msg).execute().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(16 + body.len()).unwrap().to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn netconf_replies_parse() {
        let mut body = vec![AF_INET, 0, 0, 0];
        for (kind, v) in [
            (NETCONFA_IFINDEX, -1i32),
            (NETCONFA_FORWARDING, 1),
            (NETCONFA_RP_FILTER, 2),
        ] {
            body.extend_from_slice(&8u16.to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(&v.to_ne_bytes());
        }
        let attrs = parse_reply(&nlmsg(RTM_NEWNETCONF, &body)).unwrap();
        assert_eq!(attrs.get(&NETCONFA_FORWARDING), Some(&1));
        assert_eq!(attrs.get(&NETCONFA_RP_FILTER), Some(&2));
        assert_eq!(attrs.get(&NETCONFA_IFINDEX), Some(&-1));
        let err = parse_reply(&nlmsg(NLMSG_ERROR, &(-97i32).to_ne_bytes())).err();
        assert_eq!(err.and_then(|e| e.raw_os_error()), Some(97));
        assert!(parse_reply(&[1, 2, 3]).is_err());
        assert!(parse_reply(&nlmsg(RTM_NEWNETCONF, &[2, 0, 0, 0, 1, 0])).is_ok());
    }
}

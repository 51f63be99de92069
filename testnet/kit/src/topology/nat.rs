//! Home LANs behind a masquerading router, plugged into the testnet's switch
//! (issue 13): the end hosts as most of them really are.
//!
//! [`Testnet::home_lan`] builds one of two layouts ([`NatLayout`]):
//!
//! ```text
//! Single:      switch ── router (192.0.2.1, masquerade) ── LAN 192.168.1.0/24
//!                                                            ├ client 192.168.1.10
//!                                                            └ client 192.168.1.11 …
//!
//! DoubleNat:   switch ── carrier (192.0.2.1, masquerade) ── 172.16.0.0/24
//!                          ├ home-<client> (172.16.0.2, masquerade) ── LAN 192.168.1.0/24 ── client 192.168.1.10
//!                          └ home-<client> (172.16.0.3, masquerade) ── LAN 192.168.1.0/24 ── client 192.168.1.10 …
//! ```
//!
//! With [`NatLayout::DoubleNat`] every client has the same private address and
//! the same source ports, and all of them leave through one outer address:
//! what a responder must tell apart by outer port alone.
//!
//! Each router is a namespace with IP forwarding on and an nftables
//! `table inet oemesh_nat` that masquerades (IPv4 and IPv6) out of its WAN
//! interface and drops new connections coming in from it, as a home router
//! does. IPv6 is there too: the WAN side in the testnet's `2001:db8::/64`
//! (the outer router at `2001:db8::1`), the LANs in ULA space (`fd00:1::/64`,
//! the middle segment `fd00:16::/64`), masqueraded like IPv4.
//!
//! Each LAN segment is a [`Switch`] of its own. Clients are [`Host`]s like
//! alice and bob: they run `oemesh run` without a key (anonymous OE), with
//! `address` = their private address and a default route via their router.
//!
//! A NAT rebinding (the outer port of a flow changes under it) is
//! [`NatRouter::rebind`]: a new masquerade port range and a conntrack flush.
//! [`NatRouter::capture_wan`] records what the world sees of the LAN.
//!
//! Everything is torn down on drop: the clients' agents first, then the
//! namespaces. Drop the [`HomeLan`] before its [`Testnet`] (declare it after).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{AgentConfig, Host, Testnet};
use crate::capture::Capture;
use crate::netns::{Netns, Switch};
use crate::process::require_programs;

/// The outer router's address on the testnet's switch: what every peer sees
/// of the home LAN.
pub const ROUTER_WAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The outer router's IPv6 address on the switch.
pub const ROUTER_WAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The first client's private address; the next ones count up (single LAN).
pub const LAN_FIRST_CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
/// A LAN's router (gateway) address.
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// A LAN's router's IPv6 address (ULA).
pub const LAN_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
/// The middle segment's router (the carrier's LAN side) with [`NatLayout::DoubleNat`].
pub const MIDDLE_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
/// The middle segment's router's IPv6 address.
pub const MIDDLE_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x16, 0, 0, 0, 0, 0, 1);
/// The nftables table every router's NAT lives in.
pub const NAT_TABLE: &str = "oemesh_nat";

/// Bound on `nft`, `conntrack` and `sysctl` runs.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the clients sit behind the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatLayout {
    /// One router (`router`, 192.0.2.1) with one LAN, clients at
    /// 192.168.1.10, .11, …
    Single,
    /// A carrier router (`carrier`, 192.0.2.1) masquerading a middle segment
    /// (172.16.0.0/24) on which one home router per client (`home-<client>`)
    /// masquerades its own 192.168.1.0/24 with the client at 192.168.1.10:
    /// same private address, same ports, one outer address.
    DoubleNat,
}

/// What [`Testnet::home_lan`] builds.
#[derive(Clone, Debug)]
pub struct HomeLanOptions {
    /// The clients' names (distinct from the testnet's hosts: they share its
    /// directory for configs, sockets and logs).
    pub clients: Vec<String>,
    /// How they sit behind the NAT.
    pub layout: NatLayout,
    /// Every client's agent config (no key: anonymous). The testnet's DNSSEC
    /// anchors are added when its zones are signed.
    pub agent: AgentConfig,
    /// Start the clients' agents (default true).
    pub start_agents: bool,
    /// Give each client a key of its own (`dnskeys keygen`, not published:
    /// a host behind a NAT has no reverse name), so that it authenticates
    /// with a signature to a peer that was given its public key, e.g. a
    /// strongSwan responder, which has no AUTH NULL. Default false: anonymous.
    pub keyed: bool,
}

impl HomeLanOptions {
    /// `clients` behind one router, agents with the default config, started.
    pub fn new(clients: &[&str]) -> HomeLanOptions {
        HomeLanOptions {
            clients: clients.iter().map(|c| (*c).to_owned()).collect(),
            layout: NatLayout::Single,
            agent: AgentConfig::default(),
            start_agents: true,
            keyed: false,
        }
    }

    /// `clients` each behind its own home router, behind one carrier router.
    pub fn double_nat(clients: &[&str]) -> HomeLanOptions {
        HomeLanOptions {
            layout: NatLayout::DoubleNat,
            ..HomeLanOptions::new(clients)
        }
    }
}

/// A masquerading router: a WAN leg on an upstream segment and a LAN segment
/// of its own.
#[derive(Debug)]
pub struct NatRouter {
    // Field order is drop order: the router before its LAN segment.
    ns: Netns,
    lan: Switch,
    name: String,
    wan_if: String,
    lan_if: String,
    wan_v4: Ipv4Addr,
    wan_v6: Ipv6Addr,
    ruleset: std::path::PathBuf,
    ports: Mutex<Option<(u16, u16)>>,
}

/// One router's addresses: WAN leg (CIDRs), its default gateway upstream, LAN gateway (CIDRs).
struct RouterSpec<'a> {
    name: &'a str,
    wan: (Ipv4Addr, Ipv6Addr, u8, u8),
    upstream_gw: Option<(Ipv4Addr, Ipv6Addr)>,
    lan: (Ipv4Addr, Ipv6Addr, u8, u8),
}

impl NatRouter {
    fn new(label: &str, dir: &Path, upstream: &Switch, spec: &RouterSpec<'_>) -> Result<NatRouter> {
        let ns = Netns::new(&format!("{label}-{}", spec.name))?;
        let lan = Switch::new(&format!("{label}-{}-lan", spec.name))?;
        let (wv4, wv6, wl4, wl6) = spec.wan;
        let wan_if = upstream.attach(&ns, &format!("{wv4}/{wl4}"))?;
        ns.add_addr(&wan_if, &format!("{wv6}/{wl6}"))?;
        let (lv4, lv6, ll4, ll6) = spec.lan;
        let lan_if = lan.attach(&ns, &format!("{lv4}/{ll4}"))?;
        ns.add_addr(&lan_if, &format!("{lv6}/{ll6}"))?;
        if let Some((g4, g6)) = spec.upstream_gw {
            ns.ip(&["route", "add", "default", "via", &g4.to_string()])?;
            ns.ip(&["-6", "route", "add", "default", "via", &g6.to_string()])?;
        }
        ns.exec(
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
            TOOL_TIMEOUT,
        )
        .with_context(|| format!("{}: enabling forwarding", spec.name))?;
        let router = NatRouter {
            ns,
            lan,
            name: spec.name.to_owned(),
            wan_if,
            lan_if,
            wan_v4: wv4,
            wan_v6: wv6,
            ruleset: dir.join(format!("{}-nat.nft", spec.name)),
            ports: Mutex::new(None),
        };
        router.set_port_range(None)?;
        Ok(router)
    }

    /// `router`, `carrier`, `home-<client>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The router's namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Its LAN segment (a bridge `br0` in a namespace of its own).
    pub fn lan(&self) -> &Switch {
        &self.lan
    }

    /// The WAN interface (in the router's namespace).
    pub fn wan_iface(&self) -> &str {
        &self.wan_if
    }

    /// The LAN interface (in the router's namespace).
    pub fn lan_iface(&self) -> &str {
        &self.lan_if
    }

    /// Its WAN IPv4 address: for the outer router, the address every peer sees.
    pub fn wan_v4(&self) -> Ipv4Addr {
        self.wan_v4
    }

    /// [`NatRouter::wan_v4`] as an [`IpAddr`].
    pub fn wan_ip(&self) -> IpAddr {
        IpAddr::V4(self.wan_v4)
    }

    /// Its WAN IPv6 address.
    pub fn wan_v6(&self) -> Ipv6Addr {
        self.wan_v6
    }

    /// The nftables ruleset for a masquerade into `ports` (all ports when `None`).
    pub fn ruleset(wan_if: &str, ports: Option<(u16, u16)>) -> String {
        let ranged = ports.map_or_else(String::new, |(lo, hi)| {
            format!(
                "    oifname \"{wan_if}\" meta l4proto {{ tcp, udp }} masquerade to :{lo}-{hi}\n"
            )
        });
        format!(
            "table inet {NAT_TABLE}
delete table inet {NAT_TABLE}
table inet {NAT_TABLE} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{ranged}    oifname \"{wan_if}\" masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname \"{wan_if}\" ct state new drop
  }}
}}
"
        )
    }

    /// Replaces the masquerade: TCP and UDP get outer ports from `ports`
    /// (`masquerade to :40000-40999`), or keep theirs where free when `None`.
    /// Existing mappings stay until [`NatRouter::flush_conntrack`].
    pub fn set_port_range(&self, ports: Option<(u16, u16)>) -> Result<()> {
        std::fs::write(&self.ruleset, Self::ruleset(&self.wan_if, ports))
            .with_context(|| format!("writing {}", self.ruleset.display()))?;
        let file = self.ruleset.to_str().context("ruleset path is not UTF-8")?;
        self.ns
            .exec(&["nft", "-f", file], TOOL_TIMEOUT)
            .with_context(|| format!("{}: loading {file}", self.name))?;
        *self.ports.lock().unwrap_or_else(|e| e.into_inner()) = ports;
        Ok(())
    }

    /// The current masquerade port range (`None`: ports kept where free).
    pub fn port_range(&self) -> Option<(u16, u16)> {
        *self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `conntrack -F`: every mapping is forgotten; the next packet of each
    /// flow gets a new one (the same outer port, unless the range changed or
    /// the port is taken).
    pub fn flush_conntrack(&self) -> Result<()> {
        self.ns
            .exec(&["conntrack", "-F"], TOOL_TIMEOUT)
            .with_context(|| format!("{}: conntrack -F", self.name))
            .map(drop)
    }

    /// The conntrack table (`conntrack -L`), for messages and checks.
    pub fn conntrack(&self) -> Result<String> {
        let out = self
            .ns
            .exec(&["conntrack", "-L"], TOOL_TIMEOUT)
            .with_context(|| format!("{}: conntrack -L", self.name))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A NAT rebinding: TCP and UDP leave from `ports` from now on and every
    /// mapping is flushed, so each flow's next packet leaves from a new outer
    /// port.
    pub fn rebind(&self, ports: (u16, u16)) -> Result<()> {
        self.set_port_range(Some(ports))?;
        self.flush_conntrack()
    }

    /// tcpdump on the WAN interface, writing `<dir>/<name>.pcap`: everything
    /// the LAN sends into the world, after translation.
    pub fn capture_wan(&self, dir: &Path, name: &str) -> Result<Capture> {
        Capture::start(
            &self.ns,
            &self.wan_if,
            "",
            &dir.join(format!("{name}.pcap")),
        )
    }

    /// tcpdump on the LAN interface (before translation).
    pub fn capture_lan(&self, dir: &Path, name: &str) -> Result<Capture> {
        Capture::start(
            &self.ns,
            &self.lan_if,
            "",
            &dir.join(format!("{name}.pcap")),
        )
    }
}

/// The routers and clients [`Testnet::home_lan`] built. Drop it before the
/// testnet.
#[derive(Debug)]
pub struct HomeLan {
    // Field order is drop order: the agents stop first, then the routers
    // (inner ones before the outer one) and their segments.
    clients: Vec<Host>,
    routers: Vec<NatRouter>,
}

impl HomeLan {
    /// Every client.
    pub fn clients(&self) -> &[Host] {
        &self.clients
    }

    /// The client called `name`.
    pub fn client(&self, name: &str) -> Option<&Host> {
        self.clients.iter().find(|h| h.name == name)
    }

    /// Every router, the outer one (on the testnet's switch) last.
    pub fn routers(&self) -> &[NatRouter] {
        &self.routers
    }

    /// The router called `name` (`router`, `carrier`, `home-<client>`).
    pub fn router(&self, name: &str) -> Option<&NatRouter> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The router on the testnet's switch, whose address the world sees.
    pub fn outer(&self) -> &NatRouter {
        self.routers
            .last()
            .expect("a home LAN has at least one router")
    }

    /// The outer address every client's traffic leaves from (192.0.2.1).
    pub fn public_ip(&self) -> IpAddr {
        self.outer().wan_ip()
    }

    /// Every namespace of the home LAN (routers, segments, clients).
    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routers
            .iter()
            .flat_map(|r| [r.ns.name().to_owned(), r.lan.netns().name().to_owned()])
            .collect();
        names.extend(self.clients.iter().map(|c| c.ns.name().to_owned()));
        names
    }

    /// How to reach each router and client by hand.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for r in self.routers.iter().rev() {
            let _ = writeln!(
                s,
                "  {:<10} {:<12} ip netns exec {} bash    (nft list table inet {NAT_TABLE}; conntrack -L)",
                r.name,
                r.wan_v4.to_string(),
                r.ns.name()
            );
        }
        for c in &self.clients {
            c.describe_into(&mut s, 10);
        }
        s
    }

    /// Leaves everything running (no SIGTERM, no namespace deletion), for a
    /// kept demo that records [`HomeLan::namespaces`] and the agents' PIDs.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Testnet {
    /// Builds a home LAN ([`HomeLanOptions`]) on the switch and starts its
    /// clients' agents (anonymous: no key). Fails when a client's name is
    /// taken or a program is missing (`nft`, `conntrack`, `sysctl`).
    pub fn home_lan(&self, opts: &HomeLanOptions) -> Result<HomeLan> {
        require_programs(&["nft", "conntrack", "sysctl"]);
        for name in &opts.clients {
            if self.host(name).is_some() || opts.clients.iter().filter(|c| *c == name).count() > 1 {
                bail!("home LAN client name {name:?} is taken");
            }
        }
        if opts.clients.is_empty() {
            bail!("a home LAN needs at least one client");
        }
        let label = &self.label;
        let dir = self.dir().to_owned();
        let mut config = opts.agent.clone();
        if let Some(anchors) = self.anchor_file() {
            config.validate_dnssec(&anchors);
        }
        let outer_name = match opts.layout {
            NatLayout::Single => "router",
            NatLayout::DoubleNat => "carrier",
        };
        let (outer_lan, outer_lan6) = match opts.layout {
            NatLayout::Single => (LAN_GATEWAY, LAN_GATEWAY_V6),
            NatLayout::DoubleNat => (MIDDLE_GATEWAY, MIDDLE_GATEWAY_V6),
        };
        let outer = NatRouter::new(
            label,
            &dir,
            self.switch(),
            &RouterSpec {
                name: outer_name,
                wan: (ROUTER_WAN_V4, ROUTER_WAN_V6, 24, 64),
                upstream_gw: None,
                lan: (outer_lan, outer_lan6, 24, 64),
            },
        )?;
        let mut lan = HomeLan {
            clients: Vec::new(),
            routers: Vec::new(),
        };
        let mut inner = Vec::new();
        for (i, name) in opts.clients.iter().enumerate() {
            let n = u8::try_from(i).context("too many clients")?;
            let (v4, v6) = match opts.layout {
                NatLayout::Single => (
                    Ipv4Addr::new(192, 168, 1, 10 + n),
                    ula(1, 0x10 + u16::from(n)),
                ),
                NatLayout::DoubleNat => (LAN_FIRST_CLIENT, ula(1, 0x10)),
            };
            if opts.layout == NatLayout::DoubleNat {
                let wan = (
                    Ipv4Addr::new(172, 16, 0, 2 + n),
                    ula(0x16, 2 + u16::from(n)),
                    24,
                    64,
                );
                inner.push(NatRouter::new(
                    label,
                    &dir,
                    outer.lan(),
                    &RouterSpec {
                        name: &format!("home-{name}"),
                        wan,
                        upstream_gw: Some((MIDDLE_GATEWAY, MIDDLE_GATEWAY_V6)),
                        lan: (LAN_GATEWAY, LAN_GATEWAY_V6, 24, 64),
                    },
                )?);
            }
            let segment = inner.last().map_or(outer.lan(), NatRouter::lan);
            let ns = Netns::new(&format!("{label}-{name}"))?;
            let iface = segment.attach(&ns, &format!("{v4}/24"))?;
            lan.clients
                .push(client_host(self, ns, name, iface, v4, v6)?);
        }
        lan.routers.extend(inner);
        lan.routers.push(outer);
        if opts.keyed {
            for client in &mut lan.clients {
                client.keygen(&self.binaries.dnskeys)?;
            }
        }
        for client in &lan.clients {
            client.set_agent_config(&config)?;
        }
        if opts.start_agents {
            for client in &lan.clients {
                client.start_agent()?;
            }
        }
        Ok(lan)
    }
}

/// `fd00:<net>::<host>`.
fn ula(net: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, host)
}

/// A client host in `ns` (already on its LAN as `iface` with `v4`): its IPv6
/// address and default routes via the LAN's router.
fn client_host(
    net: &Testnet,
    ns: Netns,
    name: &str,
    iface: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
) -> Result<Host> {
    ns.add_addr(&iface, &format!("{v6}/64"))?;
    ns.ip(&["route", "add", "default", "via", &LAN_GATEWAY.to_string()])?;
    ns.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        &LAN_GATEWAY_V6.to_string(),
    ])?;
    let log_level = net
        .hosts()
        .first()
        .map_or_else(|| "debug".to_owned(), |h| h.log_level.clone());
    Ok(Host {
        agent: Mutex::new(None),
        ns,
        name: name.to_owned(),
        v4,
        v6,
        iface,
        key: None,
        public_key: None,
        runs_agent: true,
        dir: net.dir().to_owned(),
        oemesh: net.binaries.oemesh.clone(),
        log_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_into_the_range() {
        let plain = NatRouter::ruleset("eth0", None);
        assert!(plain.contains("oifname \"eth0\" masquerade\n"), "{plain}");
        assert!(!plain.contains("masquerade to"), "{plain}");
        let ranged = NatRouter::ruleset("eth0", Some((40000, 40999)));
        assert!(
            ranged.contains("meta l4proto { tcp, udp } masquerade to :40000-40999"),
            "{ranged}"
        );
        assert!(ranged.starts_with("table inet oemesh_nat\ndelete table inet oemesh_nat\n"));
    }
}

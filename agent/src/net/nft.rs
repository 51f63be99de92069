//! Enforcement with nftables: cleartext from a peer that has a live SA with us
//! is dropped (design.md, "Inbound"), so a peer that "suddenly quit using
//! IPsec" is not trusted.
//!
//! Table `inet oemesh`, sets `private_peers_v4` / `private_peers_v6`, and an
//! input chain that lets through from those peers only what must pass:
//! IKE and ESP in UDP (our ports), the ICMP errors path MTU discovery needs,
//! IPv6 neighbour discovery, and the decrypted packets the agent writes into the
//! TUN (which carry the peer's address). Everything else from them is dropped.
//!
//! The table is written by the `nft` binary (one `nft -f -` script, atomic in
//! the kernel) at start and removed the same way at exit; the set members
//! change over netlink ([`super::nfnl`]), one transaction per control-plane
//! round, without a process per change. (`rustables` could write the table
//! over netlink too and retire `nft`, but it is GPL-3.0-or-later; oemesh is
//! Apache-2.0 and deny.toml allows permissive licences only.)

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use oemesh_core::oe::Cidr;

use super::nfnl::{NetlinkError, SetOp, SetSocket};

/// Our table's name (family `inet`).
pub const TABLE: &str = "oemesh";

/// Bound on one `nft` run.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// An `nft` run that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    /// `nft` could not be started (not installed?).
    #[error("cannot run `nft` (install the nftables package): {0}")]
    Spawn(std::io::Error),
    /// `nft` exited non-zero.
    #[error("`nft -f -` failed ({status}): {stderr}\nscript:\n{script}")]
    Failed {
        /// exit status
        status: String,
        /// what it said
        stderr: String,
        /// what we fed it
        script: String,
    },
    /// `nft` did not finish in time.
    #[error("`nft -f -` did not finish within {NFT_TIMEOUT:?}")]
    Timeout,
    /// A set update over netlink failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The enforcement table; [`Enforcer::teardown`] removes it.
#[derive(Debug)]
pub struct Enforcer {
    nft: String,
    sets: Mutex<SetSocket>,
}

/// The parameters of the table.
#[derive(Clone, Debug)]
pub struct EnforceConfig {
    /// The TUN device (its input is exempt).
    pub tun: String,
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T / ESP-in-UDP port (4500).
    pub natt_port: u16,
}

impl Enforcer {
    /// Creates (or atomically replaces a stale) `inet oemesh` table.
    pub fn install(cfg: &EnforceConfig) -> Result<Enforcer, NftError> {
        Enforcer::install_gateway(cfg, &[])
    }

    /// [`Enforcer::install`] for a gateway: also a forward chain that drops
    /// cleartext to the `protects` subnets from peers with a live SA
    /// ([`forward_chain`]).
    pub fn install_gateway(cfg: &EnforceConfig, protects: &[Cidr]) -> Result<Enforcer, NftError> {
        let e = Enforcer {
            nft: "nft".to_owned(),
            sets: Mutex::new(SetSocket::open(TABLE)?),
        };
        let mut script = table_script(cfg);
        if !protects.is_empty() {
            script.push_str(&forward_chain(&cfg.tun, protects));
        }
        e.run(&script)?;
        Ok(e)
    }

    /// Uses `program` instead of `nft` from PATH (tests).
    pub fn with_program(mut self, program: &str) -> Self {
        program.clone_into(&mut self.nft);
        self
    }

    /// Peers that got a live SA: drop their cleartext from now on. One
    /// netlink transaction for all of them, answered before this returns, so
    /// no spoofed cleartext is accepted once the caller goes on. (Starting
    /// `nft` per update was most of the agent's CPU under a burst of new SAs:
    /// `docs/benchmarks.md`, control plane.)
    pub fn add_private_peers(&self, peers: &[IpAddr]) -> Result<(), NftError> {
        self.update(SetOp::Add, peers)
    }

    /// Peers whose last SA went away: accept their cleartext again, in one
    /// transaction (each commit can wait for an RCU grace period, milliseconds:
    /// one per peer would stall the control plane when many SAs end at once,
    /// e.g. anonymous SAs evicted under a flood). Idempotent.
    pub fn remove_private_peers(&self, peers: &[IpAddr]) -> Result<(), NftError> {
        self.update(SetOp::Delete, peers)
    }

    fn update(&self, op: SetOp, peers: &[IpAddr]) -> Result<(), NftError> {
        let mut sets = self
            .sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(sets.update(op, peers, set_name)?)
    }

    /// Removes the table (and so every rule and set member).
    pub fn teardown(self) {
        if let Err(e) = remove_table_with(&self.nft) {
            tracing::error!("teardown: {e}");
        }
    }

    fn run(&self, script: &str) -> Result<(), NftError> {
        run_script(&self.nft, script)
    }
}

/// Removes a table left by a previous run; nothing happens if there is none.
pub fn remove_stale_table() -> Result<(), NftError> {
    remove_table_with("nft")
}

fn remove_table_with(nft: &str) -> Result<(), NftError> {
    // Declaring then deleting is the idempotent delete.
    run_script(
        nft,
        &format!("table inet {TABLE}\ndelete table inet {TABLE}\n"),
    )
}

fn set_name(peer: IpAddr) -> &'static str {
    if peer.is_ipv4() {
        "private_peers_v4"
    } else {
        "private_peers_v6"
    }
}

/// The whole table, replacing any previous one in the same transaction.
pub fn table_script(cfg: &EnforceConfig) -> String {
    let EnforceConfig {
        tun,
        ike_port,
        natt_port,
    } = cfg;
    format!(
        r#"table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
	set private_peers_v4 {{ type ipv4_addr; }}
	set private_peers_v6 {{ type ipv6_addr; }}
	chain input {{
		type filter hook input priority filter; policy accept;
		iifname "{tun}" accept
		ip saddr @private_peers_v4 udp dport {{ {ike_port}, {natt_port} }} accept
		ip6 saddr @private_peers_v6 udp dport {{ {ike_port}, {natt_port} }} accept
		ip saddr @private_peers_v4 icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} accept
		ip6 saddr @private_peers_v6 icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect }} accept
		ip saddr @private_peers_v4 counter drop comment "cleartext from a peer with a live SA"
		ip6 saddr @private_peers_v6 counter drop comment "cleartext from a peer with a live SA"
	}}
}}
"#
    )
}

/// A gateway's forward chain (added to the table [`table_script`] wrote):
/// cleartext forwarded into a protected subnet from a peer with a live SA
/// is dropped and counted, as the input chain does for this host; what the
/// agent decrypts comes from the TUN and passes, and so do the ICMP errors
/// path MTU discovery needs.
pub fn forward_chain(tun: &str, protects: &[Cidr]) -> String {
    let list = |v4: bool| {
        let l: Vec<String> = protects
            .iter()
            .filter(|p| p.addr().is_ipv4() == v4)
            .map(ToString::to_string)
            .collect();
        (!l.is_empty()).then(|| l.join(", "))
    };
    let mut rules = format!("\t\tiifname \"{tun}\" accept\n");
    let why = "cleartext to a protected subnet from a peer with a live SA";
    if let Some(v4) = list(true) {
        rules.push_str(&format!(
            "\t\tip daddr {{ {v4} }} ip saddr @private_peers_v4 icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} accept\n\
             \t\tip daddr {{ {v4} }} ip saddr @private_peers_v4 counter drop comment \"{why}\"\n"
        ));
    }
    if let Some(v6) = list(false) {
        rules.push_str(&format!(
            "\t\tip6 daddr {{ {v6} }} ip6 saddr @private_peers_v6 icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }} accept\n\
             \t\tip6 daddr {{ {v6} }} ip6 saddr @private_peers_v6 counter drop comment \"{why}\"\n"
        ));
    }
    format!(
        "table inet {TABLE} {{\n\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n{rules}\t}}\n}}\n"
    )
}

fn run_script(nft: &str, script: &str) -> Result<(), NftError> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows up as nft's error below.
        let _ = stdin.write_all(script.as_bytes());
    }
    let deadline = std::time::Instant::now() + NFT_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(NftError::Spawn)? {
            Some(status) => break status,
            None if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NftError::Timeout);
            }
            // nft finishes in a few milliseconds; a coarser poll would
            // add most of that again to every run.
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let err = NftError::Failed {
        status: status.to_string(),
        stderr: stderr.trim().to_owned(),
        script: script.to_owned(),
    };
    tracing::warn!("{err}");
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_mentions_ports_and_tun() {
        let s = table_script(&EnforceConfig {
            tun: "oemesh0".into(),
            ike_port: 500,
            natt_port: 4500,
        });
        assert!(s.starts_with("table inet oemesh\ndelete table inet oemesh\n"));
        assert!(s.contains("iifname \"oemesh0\" accept"));
        assert!(s.contains("udp dport { 500, 4500 } accept"));
        assert!(s.contains("nd-neighbor-solicit"));
    }

    #[test]
    fn a_gateway_drops_forwarded_cleartext_from_private_peers() {
        let p = |s: &str| {
            s.parse::<Cidr>()
                .unwrap_or_else(|_| Cidr::host([0, 0, 0, 0].into()))
        };
        let s = forward_chain(
            "oemesh0",
            &[p("10.1.0.0/24"), p("10.3.0.0/24"), p("2001:db8:1::/64")],
        );
        assert!(
            s.contains("type filter hook forward priority filter; policy accept;"),
            "{s}"
        );
        assert!(s.contains("iifname \"oemesh0\" accept"), "{s}");
        assert!(
            s.contains(
                "ip daddr { 10.1.0.0/24, 10.3.0.0/24 } ip saddr @private_peers_v4 counter drop"
            ),
            "{s}"
        );
        assert!(
            s.contains("ip6 daddr { 2001:db8:1::/64 } ip6 saddr @private_peers_v6 counter drop"),
            "{s}"
        );
        let v4_only = forward_chain("oemesh0", &[p("10.1.0.0/24")]);
        assert!(!v4_only.contains("ip6"), "{v4_only}");
    }
}

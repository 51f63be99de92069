//! The rows through two sites behind gateways (issue 14, "Cost"): the
//! topology of `agent/tests/gateway.rs` (`oemesh_testkit::topology::sites`)
//! on the bench's testnet, measured from a host on LAN A to one on LAN B.
//!
//! ```text
//! a-plain 10.1.0.10 ── gw-a 192.0.2.31 ══ switch ══ gw-b 192.0.2.32 ── b-plain 10.2.0.10
//! a-agent 10.1.0.11 ─┘                                               └─ b-agent 10.2.0.11
//! ```
//!
//! - `oemesh-sites`: a-plain → b-plain, agents on the gateways only
//!   (`[gateway] protects`): gateway ESP on the WAN, clear on each LAN.
//! - `oemesh-nested`: a-agent → b-agent, agents on both hosts and both
//!   gateways: the hosts' ESP (each publishes its own key) inside the
//!   gateways' ESP, two encryptions per packet each way.
//! - `veth-sites`: a-plain → b-plain with no agent anywhere: the two routers'
//!   forwarding alone, the control for both.
//!
//! The ratios issue 14 asks about are `oemesh-sites / oemesh` and
//! `oemesh-nested / oemesh` (all rows in one invocation); `veth-sites / veth`
//! says how much of any gap is the two extra hops. The daemons' CPU counted in
//! these rows is every agent on the path (two or four).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oemesh_testkit::topology::sites::{Sites, SitesOptions};
use oemesh_testkit::topology::{Host, Testnet};

/// Whether the sites' agents validate DNSSEC, as the other rows' do. On: a
/// signed testnet serves the site zones unsigned (the agents' validator
/// rejects wildcard answers from NSEC-signed zones, hickory-dns PR 3812;
/// `oemesh_testkit::bind`), so their keys are indeterminate and used, while
/// the gateways' own records are validated. Were a site decided clear, the
/// row would measure plain forwarding ([`check_private`] refuses that).
pub(crate) const VALIDATE_DNSSEC: bool = true;

/// The rows that need the sites.
pub(crate) const ROWS: [&str; 3] = ["oemesh-sites", "oemesh-nested", "veth-sites"];

/// Builds both sites on `net`'s switch: keys, records (wildcards by
/// `dnskeys publish --subnet`), configs (the testnet's anchors when the zones
/// are signed), no agent started: each row starts its own. Drop it before `net`.
pub(crate) fn two_sites(net: &Testnet) -> Result<Sites> {
    let opts = SitesOptions {
        start_agents: false,
        ..SitesOptions::default()
    };
    if !VALIDATE_DNSSEC {
        eprintln!(
            "(the sites rows run their agents with DNSSEC validation off: the validator \
             rejects BIND's wildcard answers today; see bench/sites.rs)"
        );
    }
    net.two_sites(&opts)
        .context("building two sites behind gateways")
}

/// The ratio rows these rows add to the report: (label, numerator, denominator).
pub(crate) const RATIOS: [(&str, &str, &str); 4] = [
    (
        "site to site (host → gw → gw → host) / oemesh host to host",
        "oemesh-sites",
        "oemesh",
    ),
    (
        "nested (host ESP in gateway ESP) / oemesh host to host",
        "oemesh-nested",
        "oemesh",
    ),
    (
        "plain through two routers / veth (the routers' own cost)",
        "veth-sites",
        "veth",
    ),
    (
        "nested / site to site (the inner layer's cost)",
        "oemesh-nested",
        "oemesh-sites",
    ),
];

/// Fails unless `agent` says `dst`, or the far gateway `via` whose SA
/// carries it, is private: a row that decided clear would otherwise be
/// measured as if it were the tunnel. (Either: when both gateways initiate,
/// the SA that survives may be the one the far gateway made, listed under its
/// own address.)
pub(crate) fn check_private(agent: &Host, dst: IpAddr, via: IpAddr) -> Result<()> {
    let private = |a: IpAddr| {
        agent
            .peer(a)
            .ok()
            .flatten()
            .filter(|p| p.state == "private")
    };
    let seen =
        oemesh_testkit::process::wait_for("the far end private", Duration::from_secs(5), || {
            private(dst).or_else(|| private(via))
        });
    if seen.is_err() {
        let now = agent.peer(dst).ok().flatten();
        bail!(
            "{}'s agent says neither {dst} nor {via} is private ({dst}: {}): the row would \
             measure traffic in the clear\n{}",
            agent.name(),
            now.map(|p| format!("{}, {}", p.state, p.reason))
                .unwrap_or_else(|| "no such peer".into()),
            agent.log_tail(20)
        );
    }
    Ok(())
}

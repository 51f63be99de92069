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

use anyhow::{Context, Result};
use oemesh_testkit::topology::Testnet;
use oemesh_testkit::topology::sites::{Sites, SitesOptions};

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

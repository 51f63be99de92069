//! The rows from behind a NAT (issue 13): a client on a home LAN behind a
//! masquerading router (`oemesh_testkit::topology::nat`, the same layout as
//! `agent/tests/nat.rs`), measured against bob like alice is in the other rows.
//!
//! ```text
//! laptop 192.168.1.10 ── router (LAN 192.168.1.1 | WAN 192.0.2.1, nftables masquerade) ── switch ── bob 192.0.2.20
//! ```
//!
//! - `oemesh-nat`: the laptop's agent (no key: AUTH NULL, as any laptop) and
//!   bob's (key published). The laptop asks bob for an address (CP); bob
//!   assigns one from its `[nat] pool` and the laptop's data path rewrites its
//!   source to it per packet. ESP in UDP 4500 through the masquerade.
//! - `veth-nat`: no agents, plain TCP from the laptop through the router: the
//!   cost of the router's forwarding, conntrack and masquerade alone, the
//!   control for `oemesh-nat`.
//!
//! The pair that issue 13 asks about is `oemesh-nat / oemesh` (both rows in
//! one invocation); `veth-nat / veth` says how much of any gap is the extra hop.

use anyhow::{Context, Result};
use oemesh_testkit::topology::{HomeLan, HomeLanOptions, Testnet};

/// The client's name (its namespace is `bench-laptop`).
pub(crate) const CLIENT: &str = "laptop";

/// The rows that need the home LAN.
pub(crate) const ROWS: [&str; 2] = ["oemesh-nat", "veth-nat"];

/// Builds the home LAN on `net`'s switch: one router, one client, its agent
/// configured (the testnet's anchors when the zones are signed) but not
/// started; the row starts it. Drop it before `net`.
pub(crate) fn home_lan(net: &Testnet) -> Result<HomeLan> {
    let mut opts = HomeLanOptions::new(&[CLIENT]);
    opts.start_agents = false;
    net.home_lan(&opts)
        .context("building the home LAN behind a NAT router")
}

/// The ratio rows these rows add to the report: (label, numerator, denominator).
pub(crate) const RATIOS: [(&str, &str, &str); 3] = [
    (
        "oemesh behind a NAT / oemesh (issue 13: within 10 %)",
        "oemesh-nat",
        "oemesh",
    ),
    (
        "plain behind a NAT / veth (the router's own cost)",
        "veth-nat",
        "veth",
    ),
    (
        "oemesh behind a NAT / plain behind a NAT",
        "oemesh-nat",
        "veth-nat",
    ),
];

//! Dual stack (issue 13, part 6): alice and bob each run with
//! `address = [v4, v6]` and have their key published at both reverse names;
//! alice pings bob over both families, and both of bob's addresses are
//! private and authenticated on alice at the same time (and hers on bob),
//! with nothing but IKE and ESP-in-UDP between them on the wire. Without
//! `address`, each family's default route gives one.
//!
//! Needs root, BIND 9, tcpdump, nft and the `dnskeys` binary, like `e2e.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use e2e_support::*;
use oemesh_testkit::capture::Packet;
use oemesh_testkit::topology::{
    AgentConfig, Binaries, DNS_V4, DNS_V6, Options, SUBNET_V4, SUBNET_V6, Testnet,
};

/// What the testkit's ping sends: it must never cross the switch in clear.
const PING_PAYLOAD: &[u8] = b"oemesh-testkit ping";

/// Neighbour discovery between global addresses (NS, NA: ICMPv6 135, 136):
/// the kernel's own, beside the TUN, and never data.
fn is_neighbour_discovery(p: &Packet) -> bool {
    p.protocol == 58 && matches!(p.payload.first(), Some(135 | 136))
}

#[test]
fn a_dual_stack_pair_is_private_and_authenticated_on_both_families_at_once() {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let dnskeys = bins.dnskeys.clone();
    let mut config = AgentConfig::default();
    config.set_policy("private-or-clear", &[SUBNET_V4, SUBNET_V6]);
    config.set_policy(
        "clear",
        &[&format!("{DNS_V4}/32"), &format!("{DNS_V6}/128")],
    );
    let mut opts = Options::new("dual", bins);
    opts.agent = config.clone();
    opts.start_agents = false;
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    let net = Testnet::up(opts).expect("testnet comes up");
    let (alice, bob) = (net.alice(), net.bob());
    for host in [alice, bob] {
        publish_v6(&net, &dnskeys, host);
        configure_dual(host, &config);
        host.start_agent().unwrap();
        // Status shows both addresses; the JSON keeps `address` (the first).
        let s = status(host);
        let want = [host.v4().to_string(), host.v6().to_string()];
        assert_eq!(s["addresses"], serde_json::json!(want), "{s}");
        assert_eq!(s["address"], serde_json::json!(want[0]), "{s}");
        let text = host.oemesh_cli(&["status"]).unwrap();
        assert!(text.contains(&want.join(", ")), "{text}");
    }

    let cap = net.capture("dual").unwrap();
    let (a4, a6) = (IpAddr::V4(alice.v4()), IpAddr::V6(alice.v6()));
    let (b4, b6) = (IpAddr::V4(bob.v4()), IpAddr::V6(bob.v6()));
    ping_until_reply(alice, a4, b4);
    ping_until_reply(alice, a6, b6);

    // Each waits until private and authenticated...
    for (host, peers) in [(alice, [b4, b6]), (bob, [a4, a6])] {
        for peer in peers {
            host.wait_peer(peer, "private and authenticated", DECISION, |p| {
                p.state == "private" && p.auth.as_deref() == Some("authenticated")
            })
            .unwrap();
        }
    }
    // ...and then both families are, in one view.
    let peers = alice.peers().unwrap();
    for addr in [b4, b6] {
        let p = peers.iter().find(|p| p.peer == addr);
        assert!(
            p.is_some_and(|p| p.state == "private" && p.auth.as_deref() == Some("authenticated")),
            "{addr} on alice: {peers:#?}"
        );
    }
    // Over both SAs, once more: the pings go through.
    alice.netns().ping(a4, b4, Duration::from_secs(5)).unwrap();
    alice.netns().ping(a6, b6, Duration::from_secs(5)).unwrap();

    let packets: Vec<Packet> = cap
        .stop()
        .unwrap()
        .into_iter()
        .filter(|p| !p.is_link_local_control() && !is_neighbour_discovery(p))
        .collect();
    assert_only_ipsec(&packets, a4, b4, PING_PAYLOAD);
    assert_only_ipsec(&packets, a6, b6, PING_PAYLOAD);
    // IKE went per family: alice's IPv6 address spoke IKE to bob's.
    assert!(
        between(&packets, a6, b6)
            .iter()
            .any(|p| p.ike_message().is_some()),
        "no IKE between {a6} and {b6}"
    );
}

/// Without `address`, each family's default route gives its address: alice
/// has a default route of each family and gets both; bob only an IPv4 one
/// and gets his IPv4 address alone.
#[test]
fn without_address_each_family_with_a_default_route_gives_one() {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let mut opts = Options::new("dualdef", bins);
    opts.start_agents = false;
    let net = Testnet::up(opts).expect("testnet comes up");
    let (alice, bob) = (net.alice(), net.bob());
    // Gateways inside the testnet (the `dns` host, which forwards nothing):
    // the agent only asks the kernel which source it would pick.
    let (gw4, gw6) = (DNS_V4.to_string(), DNS_V6.to_string());
    alice
        .netns()
        .ip(&["route", "add", "default", "via", &gw4])
        .unwrap();
    alice
        .netns()
        .ip(&["-6", "route", "add", "default", "via", &gw6])
        .unwrap();
    bob.netns()
        .ip(&["route", "add", "default", "via", &gw4])
        .unwrap();
    for (host, want) in [
        (alice, vec![alice.v4().to_string(), alice.v6().to_string()]),
        (bob, vec![bob.v4().to_string()]),
    ] {
        drop_configured_address(host);
        host.start_agent().unwrap();
        let s = status(host);
        assert_eq!(s["addresses"], serde_json::json!(want), "{s}");
    }
}

//! Addresses that change (issue 13, part 7): alice runs without `address`
//! (each family's default route gives one), private with bob; her address
//! is changed under the running agent (`ip addr del` / `ip addr add` and her
//! default route again, as a DHCP lease to a new address would). A new flow
//! to bob is then private and authenticated from the new address, on both
//! ends, `oemesh status` shows it, and no route of hers names the old one.
//!
//! A configured `address` that goes is logged once and its family pauses
//! until it returns.
//!
//! Needs root, BIND 9, tcpdump, nft and the `dnskeys` binary, like `e2e.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;
use oemesh_testkit::topology::{AgentConfig, Binaries, DNS_V4, Host, Options, SUBNET_V4, Testnet};

/// Alice's address after the move (free in the testnet's subnet).
const NEW_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 110);

fn private_and_authenticated(host: &Host, peer: IpAddr) {
    host.wait_peer(peer, "private and authenticated", DECISION, |p| {
        p.state == "private" && p.auth.as_deref() == Some("authenticated")
    })
    .unwrap();
}

#[test]
fn a_new_address_under_a_running_agent_carries_new_flows_privately() {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let dnskeys = bins.dnskeys.clone();
    let mut config = AgentConfig::default();
    config.set_policy("private-or-clear", &[SUBNET_V4]);
    config.set_policy("clear", &[&format!("{DNS_V4}/32")]);
    let mut opts = Options::new("follow", bins);
    opts.agent = config;
    opts.start_agents = false;
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    let net = Testnet::up(opts).expect("testnet comes up");
    let (alice, bob) = (net.alice(), net.bob());
    let (old, new, b) = (
        IpAddr::V4(alice.v4()),
        IpAddr::V4(NEW_V4),
        IpAddr::V4(bob.v4()),
    );
    publish_at(&net, &dnskeys, alice, new);

    // Alice without `address`: her IPv4 default route gives it (a gateway
    // inside the testnet; the agent only asks the kernel for the source).
    let gw = DNS_V4.to_string();
    let ns = alice.netns();
    ns.ip(&["route", "add", "default", "via", &gw]).unwrap();
    drop_configured_address(alice);
    alice.start_agent().unwrap();
    bob.start_agent().unwrap();
    assert_eq!(status(alice)["address"], serde_json::json!(old.to_string()));

    ping_until_reply(alice, old, b);
    private_and_authenticated(alice, b);

    // The move: the old address goes, the new one comes, and the default
    // route with it.
    let iface = alice.iface().to_owned();
    ns.ip(&["addr", "del", &format!("{old}/24"), "dev", &iface])
        .unwrap();
    ns.ip(&["addr", "add", &format!("{new}/24"), "dev", &iface])
        .unwrap();
    ns.ip(&["route", "replace", "default", "via", &gw]).unwrap();

    // The agent follows: status shows the new address.
    let deadline = Instant::now() + DECISION;
    loop {
        let s = status(alice);
        if s["address"] == serde_json::json!(new.to_string()) {
            assert_eq!(s["addresses"], serde_json::json!([new.to_string()]), "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status still shows {s}\n{}",
            alice.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = alice.log();
    assert!(
        log.contains(&format!("{old} → {new}")),
        "{}",
        alice.log_tail(40)
    );

    // A new flow: private and authenticated from the new address, on both ends.
    let cap = net.capture("follow").unwrap();
    ping_until_reply(alice, new, b);
    private_and_authenticated(alice, b);
    private_and_authenticated(bob, new);
    alice.netns().ping(new, b, Duration::from_secs(5)).unwrap();
    let packets: Vec<_> = cap
        .stop()
        .unwrap()
        .into_iter()
        .filter(|p| !p.is_link_local_control())
        .collect();
    assert_only_ipsec(&packets, new, b, b"oemesh-testkit ping");
    assert!(
        between(&packets, new, b).iter().any(|p| is_ipsec(p)),
        "no ESP between {new} and {b}"
    );

    // No route of alice's names the old address.
    let routes = ns.ip(&["-4", "route", "show", "table", "all"]).unwrap();
    assert!(!routes.contains(&old.to_string()), "{routes}");
    assert!(routes.contains(&format!("src {new}")), "{routes}");
}

/// A configured `address` that disappears from the host is logged once, its
/// SAs go and OE for its family pauses (status shows no address); when the
/// address returns, that is logged and a new flow is private again (the
/// routes the kernel dropped with the address are back).
#[test]
fn a_configured_address_that_goes_pauses_its_family_until_it_returns() {
    let mut config = AgentConfig::default();
    config.set_policy("private-or-clear", &[SUBNET_V4]);
    config.set_policy("clear", &[&format!("{DNS_V4}/32")]);
    let net = testnet("paused", config);
    let (alice, bob) = (net.alice(), net.bob());
    let (a, b) = (IpAddr::V4(alice.v4()), IpAddr::V4(bob.v4()));
    ping_until_reply(alice, a, b);
    private_and_authenticated(alice, b);

    let (ns, iface) = (alice.netns(), alice.iface().to_owned());
    let cidr = format!("{a}/24");
    ns.ip(&["addr", "del", &cidr, "dev", &iface]).unwrap();
    let gone = format!("configured address {a} is gone: OE for IPv4 pauses until it returns");
    let deadline = Instant::now() + DECISION;
    while !alice.log().contains(&gone) {
        assert!(Instant::now() < deadline, "{}", alice.log_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The SA with bob went with the address.
    let deadline = Instant::now() + DECISION;
    while alice.peer(b).unwrap().is_some_and(|p| p.state == "private") {
        assert!(Instant::now() < deadline, "{}", alice.log_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = status(alice);
    assert_eq!(s["addresses"], serde_json::json!([]), "{s}");

    ns.ip(&["addr", "add", &cidr, "dev", &iface]).unwrap();
    let back = format!("configured address {a} is back: OE for IPv4 resumes");
    let deadline = Instant::now() + DECISION;
    while !alice.log().contains(&back) {
        assert!(Instant::now() < deadline, "{}", alice.log_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        alice.log().matches(&gone).count(),
        1,
        "{}",
        alice.log_tail(40)
    );
    // A new flow is private again.
    ping_until_reply(alice, a, b);
    private_and_authenticated(alice, b);
    assert_eq!(
        status(alice)["addresses"],
        serde_json::json!([a.to_string()])
    );
}

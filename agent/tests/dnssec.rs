//! DNSSEC end to end (issue 12): the testnet's BIND signs the reverse zones
//! (`dnssec-policy`) and the agents validate from the zones' anchors, straight
//! against that authoritative-only server. A second BIND on the `dns` host
//! plays the attacker for one agent: an unsigned copy of the zone with
//! another key, a forged NXDOMAIN. A validating BIND resolver stands in for
//! `dns.dnssec = "resolver"`.
//!
//! Needs root, BIND 9 and nft (like `e2e.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;
#[allow(dead_code)]
mod hostile;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e_support::*;
use hostile::*;
use oemesh_testkit::bind::forge::Forgery;
use oemesh_testkit::topology::{AgentConfig, FORGER_V4, Host, Peer, RESOLVER_V4, Testnet};

fn wait_state(host: &Host, peer: IpAddr, what: &str, pred: impl FnMut(&Peer) -> bool) -> Peer {
    host.wait_peer(peer, what, DECISION, pred)
        .unwrap_or_else(|e| panic!("{e:#}\n{}:\n{}", host.name(), host.log_tail(40)))
}

/// `host`'s agent again, asking `server` for keys, with `tweak` applied to
/// its configuration (anchors and mode as the testnet set them).
fn repoint(net: &Testnet, host: &Host, server: IpAddr, tweak: impl FnOnce(&mut AgentConfig)) {
    let mut cfg = AgentConfig::default();
    if let Some(anchors) = net.anchor_file() {
        cfg.validate_dnssec(&anchors);
    }
    cfg.use_dns_servers(&[SocketAddr::new(server, 53)]);
    tweak(&mut cfg);
    host.set_agent_config(&cfg).unwrap();
    host.restart_agent().unwrap();
}

/// Both ends validate the other's key from the zone's anchor: `dnssec` true
/// and `secure` at alice and at bob, `yes` in `oemesh peers`, and `oemesh
/// check` names the anchor the chain starts at.
#[test]
fn a_signed_zone_is_validated_from_its_anchor_at_both_ends() {
    let net = signed_testnet("dnssec", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let udp = UdpEcho::start(bob, 7301);
    let client = udp_client(alice);
    udp_until_echo(&client, udp.addr(), b"signed", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let p = wait_state(alice, bob.ip(), "bob private", |p| p.state == "private");
    assert_eq!(p.raw["dnssec"], true, "{p:?}");
    assert_eq!(p.raw["dnssec_state"], "secure", "{p:?}");
    assert!(p.reason.contains("(key DNSSEC-validated)"), "{p:?}");
    let q = wait_state(bob, alice.ip(), "alice private", |p| p.state == "private");
    assert_eq!(
        q.raw["dnssec"], true,
        "bob validated alice's key too: {q:?}"
    );

    let table = alice.oemesh_cli(&["peers"]).unwrap();
    let line = table
        .lines()
        .find(|l| l.starts_with(&bob.ip().to_string()))
        .unwrap_or_else(|| panic!("no line for bob in:\n{table}"));
    assert!(line.contains(" yes "), "{line}");
    let status = alice.oemesh_cli(&["status"]).unwrap();
    assert!(
        status.contains("dnssec:  validate (root KSKs + anchors for")
            && status.contains("2.0.192.in-addr.arpa."),
        "{status}"
    );
    let check = alice.oemesh_cli(&["check", &bob.ip().to_string()]).unwrap();
    assert!(
        check.contains("dnssec:  secure (validated by the agent from the trust anchor for 2.0.192.in-addr.arpa."),
        "{check}"
    );
}

/// A second BIND serves alice an unsigned copy of the zone with mallory's key
/// at bob's name, and bob's agent signs with mallory's key: without DNSSEC
/// that authenticates (`downgrade.rs`); validated, the answer is bogus, alice
/// never authenticates bob with it, in either role.
#[test]
fn a_forged_unsigned_copy_is_bogus_and_never_authenticates() {
    let net = signed_testnet("dnsforge", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let (mallory_key, mallory_pub) = keygen(&net, "mallory").unwrap();
    let forged = vec![(bob.ip(), Some(format!("10 0 4 . {mallory_pub}")))];
    let _forger = net
        .start_forger(IpAddr::V4(FORGER_V4), Forgery::Unsigned(forged))
        .unwrap();
    bob.stop_agent().unwrap();
    std::fs::copy(&mallory_key, bob.key_path().unwrap()).unwrap();
    bob.start_agent().unwrap();
    repoint(&net, alice, IpAddr::V4(FORGER_V4), |_| {});

    let udp = UdpEcho::start(bob, 7302);
    let client = udp_client(alice);
    // private-or-clear: a bogus answer is a DNS failure, and that goes clear.
    udp_until_echo(&client, udp.addr(), b"forged", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let p = wait_state(alice, bob.ip(), "bob decided", |p| p.state != "pending");
    assert_eq!(p.state, "clear", "{p:?}");
    assert!(p.reason.contains("DNSSEC bogus"), "{p:?}");
    assert!(p.reason.contains("without an RRSIG"), "{p:?}");
    assert_eq!(p.raw["dnssec_state"], "bogus", "{p:?}");
    // bob starts IKE for his replies; alice, as responder, refuses the
    // forged key as well.
    std::thread::sleep(Duration::from_secs(2));
    let established = decision_lines(alice, bob.ip(), "IKE established");
    assert!(
        established.is_empty(),
        "alice authenticated the forged key: {established:?}"
    );
    assert!(
        alice.peers().unwrap().iter().all(|q| q.state != "private"),
        "{:?}",
        alice.peers()
    );
}

/// A forged NXDOMAIN for bob's name, unsigned, inside the signed zone: bogus,
/// not "no key"; under `require-dnssec` that blocks instead of going clear,
/// and nothing reaches bob in clear.
#[test]
fn a_forged_nxdomain_is_bogus_and_blocked_under_require_dnssec() {
    let net = signed_testnet("dnsnx", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let _forger = net
        .start_forger(
            IpAddr::V4(FORGER_V4),
            Forgery::Unsigned(vec![(bob.ip(), None)]),
        )
        .unwrap();
    repoint(&net, alice, IpAddr::V4(FORGER_V4), |c| {
        c.set_policy("require-dnssec", &["private-or-clear"]);
    });
    let udp = UdpEcho::start(bob, 7303);
    let client = udp_client(alice);
    for _ in 0..5 {
        client.send_to(b"must not leak", udp.addr()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = wait_state(alice, bob.ip(), "bob decided", |p| p.state != "pending");
    assert_eq!(p.state, "blocked", "{p:?}");
    assert!(p.reason.contains("DNSSEC bogus: NXDOMAIN"), "{p:?}");
    assert!(p.reason.contains("require-dnssec fails closed"), "{p:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        udp.received().is_empty(),
        "cleartext reached bob: {:?}",
        udp.received()
    );
}

/// `dns.dnssec = "resolver"` behind a validating BIND resolver: its AD bit
/// makes the key secure.
#[test]
fn resolver_mode_trusts_a_validating_resolver() {
    let net = signed_testnet("dnsres", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let _resolver = net
        .start_validating_resolver(IpAddr::V4(RESOLVER_V4))
        .unwrap();
    repoint(&net, alice, IpAddr::V4(RESOLVER_V4), |c| {
        c.dnssec = Some("resolver".into());
        c.trust_anchors.clear();
    });
    let udp = UdpEcho::start(bob, 7304);
    let client = udp_client(alice);
    udp_until_echo(&client, udp.addr(), b"via the resolver", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let p = wait_state(alice, bob.ip(), "bob private", |p| p.state == "private");
    assert_eq!(p.raw["dnssec"], true, "{p:?}");
    assert_eq!(p.raw["dnssec_state"], "secure", "{p:?}");
    let warned = alice.log();
    assert!(
        warned.contains("trusts the AD bit of 192.0.2.55:53, which is not on loopback"),
        "resolver mode warns about a resolver off the host"
    );
}

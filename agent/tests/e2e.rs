//! End to end: real agents in the namespace testnet (`oemesh_testkit::topology`),
//! real BIND with keys published by the real `dnskeys`, a sniffer on the switch.
//! Every test builds its own testnet; waits are bounded, nothing asserts timings.
//!
//! Needs root, BIND 9, tcpdump, nft and the `dnskeys` binary (found next to
//! `oemesh` in the target directory, built by cargo if missing, or
//! `$OEMESH_DNSKEYS`). `OEMESH_E2E_KEEP=1` leaves the testnets up and prints
//! how to enter them.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e_support::*;
use oemesh_testkit::topology::{AgentConfig, Host, Peer};

const ROUTING_TABLE: &str = "28517";

fn wait_state(host: &Host, peer: IpAddr, state: &str) -> Peer {
    host.wait_peer(peer, &format!("{peer} to be {state}"), DECISION, |p| {
        p.state == state
    })
    .unwrap()
}

/// alice ↔ bob: TCP and UDP get through, only IKE and ESP-in-UDP cross the
/// switch, the marker never does, and both agents say private + authenticated.
#[test]
fn alice_bob_private_authenticated_only_esp_on_the_wire() {
    let net = testnet("ab", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let cap = net.capture("alice-bob").unwrap();
    let marker = b"OEMESH-MARKER-alice-bob-7f3a";

    let udp = UdpEcho::start(bob, 7001);
    let client = udp_client(alice);
    let payload = marked_payload(marker, 300);
    udp_until_echo(&client, udp.addr(), &payload, DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));

    let tcp = TcpEcho::start(bob, 7002);
    let big = marked_payload(marker, 100_000);
    tcp_exchange(alice, tcp.addr(), &big, DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    assert_eq!(tcp.received(), vec![big]);

    let on_alice = wait_state(alice, bob.ip(), "private");
    assert_eq!(
        on_alice.auth.as_deref(),
        Some("authenticated"),
        "{on_alice:?}"
    );
    let on_bob = wait_state(bob, alice.ip(), "private");
    assert_eq!(on_bob.auth.as_deref(), Some("authenticated"), "{on_bob:?}");

    let packets = cap.stop().unwrap();
    assert_only_ipsec(&packets, alice.ip(), bob.ip(), marker);
}

/// The first datagram alice sends to bob, with nothing cached, arrives: it was
/// held while DNS and IKE ran, not dropped. Sent once, never retried.
#[test]
fn first_datagram_is_held_not_dropped() {
    let net = testnet("hold", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    assert!(alice.peers().unwrap().is_empty(), "cold cache expected");
    let udp = UdpEcho::start(bob, 7003);
    let client = udp_client(alice);
    let first = b"the very first datagram".to_vec();
    let sent = udp_once(&client, udp.addr(), &first, DECISION);
    assert_eq!(
        udp.received().first(),
        Some(&first),
        "bob did not get the first datagram ({sent:?}); alice:\n{}",
        alice.log_tail(30)
    );
    sent.unwrap();
    wait_state(alice, bob.ip(), "private");
}

/// alice → dave (no agent, no key): cleartext gets through, alice says clear
/// with a reason, and later flows bypass the agent (the TUN counters stay).
#[test]
fn dave_is_clear_and_later_flows_bypass_the_agent() {
    let net = testnet("dave", AgentConfig::default());
    let (alice, dave) = (net.alice(), net.dave());
    let udp = UdpEcho::start(dave, 7004);
    let client = udp_client(alice);
    udp_until_echo(&client, udp.addr(), b"hello dave", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let p = wait_state(alice, dave.ip(), "clear");
    assert!(!p.reason.is_empty(), "clear without a reason: {p:?}");
    eprintln!("alice about dave: {p:?}");

    let before = alice.link_counters("oemesh0").unwrap();
    let client2 = udp_client(alice);
    udp_until_echo(&client2, udp.addr(), b"second flow", DECISION).unwrap();
    let tcp = TcpEcho::start(dave, 7005);
    tcp_exchange(alice, tcp.addr(), b"tcp to dave", DECISION).unwrap();
    let after = alice.link_counters("oemesh0").unwrap();
    assert_eq!(
        before,
        after,
        "the second flow to dave went through the TUN (bypass route missing?): {:?}",
        alice.netns().ip(&["route", "show", "table", ROUTING_TABLE])
    );
}

/// carol (no key) → bob: encrypted; bob sees carol as anonymous.
#[test]
fn carol_is_anonymous_but_encrypted() {
    let net = testnet("carol", AgentConfig::default());
    let (carol, bob) = (net.carol(), net.bob());
    let cap = net.capture("carol-bob").unwrap();
    let marker = b"OEMESH-MARKER-carol-bob-91c2";
    let udp = UdpEcho::start(bob, 7006);
    let client = udp_client(carol);
    udp_until_echo(&client, udp.addr(), &marked_payload(marker, 200), DECISION).unwrap_or_else(
        |e| {
            panic!(
                "{e:#}\ncarol:\n{}\nbob:\n{}",
                carol.log_tail(30),
                bob.log_tail(30)
            )
        },
    );
    let on_bob = wait_state(bob, carol.ip(), "private");
    assert_eq!(on_bob.auth.as_deref(), Some("anonymous"), "{on_bob:?}");
    let on_carol = wait_state(carol, bob.ip(), "private");
    assert_eq!(
        on_carol.auth.as_deref(),
        Some("authenticated"),
        "{on_carol:?}"
    );
    let packets = cap.stop().unwrap();
    assert_only_ipsec(&packets, carol.ip(), bob.ip(), marker);
}

/// bob's agent stops (its key stays in DNS): alice falls back to clear within
/// the IKE deadline and reports the downgrade; once bob's agent is back and
/// the clear outcome has expired, they are private again.
#[test]
fn downgrade_when_bob_stops_then_private_again() {
    let config = AgentConfig {
        ike_timeout: "2s".into(),
        clear_lifetime: Some("4s".into()),
        ..AgentConfig::default()
    };
    let net = testnet("down", config);
    let (alice, bob) = (net.alice(), net.bob());
    let udp = UdpEcho::start(bob, 7007);
    let client = udp_client(alice);
    udp_until_echo(&client, udp.addr(), b"private first", DECISION).unwrap();
    wait_state(alice, bob.ip(), "private");

    bob.stop_agent().unwrap();
    udp_until_echo(&client, udp.addr(), b"bob's agent is gone", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(40)));
    let p = wait_state(alice, bob.ip(), "clear");
    assert!(
        p.reason.to_lowercase().contains("downgrade"),
        "the fallback is not reported as a downgrade: {p:?}"
    );

    bob.start_agent().unwrap();
    // The clear outcome expires (4 s), then the next packet decides again.
    let again = alice.wait_peer(bob.ip(), "bob private again", DECISION, |p| {
        let _ = udp_until_echo(
            &client,
            udp.addr(),
            b"are we private?",
            Duration::from_secs(2),
        );
        p.state == "private"
    });
    again.unwrap();
    udp_until_echo(&client, udp.addr(), b"private again", DECISION).unwrap();
}

/// The same downgrade, without relying on dead-peer detection: the SA pair
/// closes as idle while bob is up, then bob's agent stops; the next packet
/// finds bob's key in DNS, IKE fails, alice goes clear and says DOWNGRADE;
/// bob's agent comes back and, the clear outcome expired, they are private again.
#[test]
fn downgrade_after_idle_close_then_private_again() {
    let config = AgentConfig {
        ike_timeout: "2s".into(),
        idle_timeout: Some("2s".into()),
        clear_lifetime: Some("4s".into()),
        ..AgentConfig::default()
    };
    let net = testnet("idle", config);
    let (alice, bob) = (net.alice(), net.bob());
    let udp = UdpEcho::start(bob, 7012);
    let client = udp_client(alice);
    udp_until_echo(&client, udp.addr(), b"private first", DECISION).unwrap();
    wait_state(alice, bob.ip(), "private");
    oemesh_testkit::process::wait_until("alice's SA with bob to close as idle", DECISION, || {
        alice
            .peer(bob.ip())
            .is_ok_and(|p| p.is_none_or(|p| p.state != "private"))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(20)));

    bob.stop_agent().unwrap();
    udp_until_echo(&client, udp.addr(), b"bob's agent is gone", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(40)));
    let p = wait_state(alice, bob.ip(), "clear");
    assert!(
        p.reason.to_lowercase().contains("downgrade"),
        "the fallback is not reported as a downgrade: {p:?}"
    );

    bob.start_agent().unwrap();
    let again = alice.wait_peer(bob.ip(), "bob private again", DECISION, |p| {
        let _ = udp_until_echo(
            &client,
            udp.addr(),
            b"are we private?",
            Duration::from_secs(2),
        );
        p.state == "private"
    });
    again.unwrap();
    udp_until_echo(&client, udp.addr(), b"private again", DECISION).unwrap();
}

/// `private` toward a dead peer fails closed: nothing from alice reaches bob
/// in the clear, and bob is reported blocked.
#[test]
fn private_policy_toward_dead_peer_leaks_nothing() {
    let mut config = AgentConfig {
        ike_timeout: "2s".into(),
        ..AgentConfig::default()
    };
    config.set_policy("private", &["192.0.2.20/32"]);
    let net = testnet("priv", config);
    let (alice, bob) = (net.alice(), net.bob());
    bob.stop_agent().unwrap();
    let cap = net.capture("dead-peer").unwrap();
    let marker = b"OEMESH-MARKER-must-not-leak-55e1";
    let udp = UdpEcho::start(bob, 7008);
    let client = udp_client(alice);
    let payload = marked_payload(marker, 100);
    let _ = udp_once(&client, udp.addr(), &payload, Duration::from_millis(100));
    let p = alice
        .wait_peer(bob.ip(), "bob blocked", DECISION, |p| p.state == "blocked")
        .unwrap();
    eprintln!("alice about bob: {p:?}");
    // More packets after the decision: still nothing in the clear.
    for _ in 0..5 {
        let _ = udp_once(&client, udp.addr(), &payload, Duration::from_millis(100));
    }
    let tcp = alice.netns().run(|| {
        std::net::TcpStream::connect_timeout(
            &SocketAddr::new(bob.ip(), 7009),
            Duration::from_secs(1),
        )
    });
    assert!(tcp.unwrap().is_err(), "a TCP connection to bob got through");
    let packets = cap.stop().unwrap();
    assert!(udp.received().is_empty(), "bob received cleartext");
    let from_alice: Vec<String> = packets
        .iter()
        .filter(|p| p.src == alice.ip() && p.dst == bob.ip() && !is_ipsec(p))
        .map(show)
        .collect();
    assert!(
        from_alice.is_empty(),
        "cleartext from alice to bob:\n{}",
        from_alice.join("\n")
    );
    assert_marker_absent(&packets, marker);
}

/// Our rules, our table and the nftables tables in alice's namespace.
fn kernel_state(host: &Host) -> (String, String, String) {
    let rules = ["-4", "-6"]
        .iter()
        .map(|f| host.netns().ip(&[f, "rule", "show"]).unwrap())
        .collect::<Vec<_>>()
        .join("");
    let routes = ["-4", "-6"]
        .iter()
        .map(|f| {
            host.netns()
                .ip(&[f, "route", "show", "table", ROUTING_TABLE])
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("");
    let nft = host
        .exec(&["nft", "list", "tables"], Duration::from_secs(10))
        .unwrap();
    (
        rules,
        routes,
        String::from_utf8_lossy(&nft.stdout).into_owned(),
    )
}

/// SIGKILL, then a new start: no stale route, rule, nftables table or SA
/// remains, and alice ↔ bob becomes private again.
#[test]
fn sigkill_and_restart_leave_nothing_stale() {
    let net = testnet("kill", AgentConfig::default());
    let (alice, bob, dave) = (net.alice(), net.bob(), net.dave());
    let fresh = kernel_state(alice);

    let to_bob = UdpEcho::start(bob, 7010);
    let to_dave = UdpEcho::start(dave, 7011);
    let client = udp_client(alice);
    udp_until_echo(&client, to_bob.addr(), b"bob", DECISION).unwrap();
    udp_until_echo(&client, to_dave.addr(), b"dave", DECISION).unwrap();
    wait_state(alice, bob.ip(), "private");
    wait_state(alice, dave.ip(), "clear");

    alice.kill_agent().unwrap();
    alice.start_agent().unwrap();
    assert_eq!(
        kernel_state(alice),
        fresh,
        "state after SIGKILL + start differs from a fresh start"
    );
    assert!(alice.peers().unwrap().is_empty(), "peers survived SIGKILL");

    // bob still holds SAs from the old alice; a new exchange must work.
    udp_until_echo(&client, to_bob.addr(), b"bob again", DECISION).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nalice:\n{}\nbob:\n{}",
            alice.log_tail(30),
            bob.log_tail(30)
        )
    });
    wait_state(alice, bob.ip(), "private");
}

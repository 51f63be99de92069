//! Hosts without OE must not stall (issue 15, design.md "Reach"): real agents
//! in the namespace testnet, real kernels answering UDP 500 with ICMP, a
//! sniffer on the switch. Nothing here asserts a timing: the outcome's reason
//! and the capture say which path was taken.
//!
//! Needs root, BIND 9, tcpdump and nft, like `e2e.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::net::IpAddr;

use e2e_support::*;
use oemesh_testkit::topology::{AgentConfig, Host, Peer};

fn wait_state(host: &Host, peer: IpAddr, state: &str) -> Peer {
    host.wait_peer(peer, &format!("{peer} to be {state}"), DECISION, |p| {
        p.state == state
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}:\n{}", host.name(), host.log_tail(40)))
}

/// dave runs no IKE and publishes no key: his kernel's "port unreachable"
/// for alice's IKE_SA_INIT ends the attempt, and the outcome says so.
#[test]
fn a_keyless_host_without_ike_goes_clear_on_its_port_unreachable() {
    let net = testnet("icmp", AgentConfig::default());
    let (alice, dave) = (net.alice(), net.dave());
    let udp = UdpEcho::start(dave, 7101);
    let client = udp_client(alice);
    let first = b"first datagram to dave".to_vec();
    udp_once(&client, udp.addr(), &first, DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let p = wait_state(alice, dave.ip(), "clear");
    assert!(p.reason.contains("port unreachable"), "{p:?}");
    assert_eq!(
        udp.received().first(),
        Some(&first),
        "the held datagram was not sent in clear"
    );
    assert!(metric(alice, "oemesh_icmp_errors_total{fate=\"ended\"}") >= 1);
}

/// The same with alice's IKE port shared by four UDP workers (`SO_REUSEPORT`)
/// and eight keyless destinations without IKE: the kernel queues each "port
/// unreachable" on the member that the quoted datagram's addresses hash to,
/// mostly not the one the control plane sent from, so every member's worker
/// must read its error queue. Each destination goes clear on its error.
#[test]
fn port_unreachable_ends_attempts_whichever_worker_socket_it_lands_on() {
    let config = AgentConfig {
        udp_workers: Some(4),
        ..AgentConfig::default()
    };
    let net = testnet("icmpgrp", config);
    let (alice, dave) = (net.alice(), net.dave());
    // Eight errors at once to one host: past the kernel's per-host ICMP
    // rate limit (a burst of 6), which is not what is tested here.
    let out = dave
        .netns()
        .command("sysctl")
        .args(["-qw", "net.ipv4.icmp_ratelimit=0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "sysctl: {out:?}");
    let dev = interface_with(dave.netns(), dave.v4());
    let targets: Vec<IpAddr> = (0..8u8)
        .map(|i| {
            let a = std::net::Ipv4Addr::new(192, 0, 2, 180 + i);
            dave.netns().add_addr(&dev, &format!("{a}/24")).unwrap();
            IpAddr::V4(a)
        })
        .collect();
    let client = udp_client(alice);
    for &t in &targets {
        client.send_to(b"to a host without IKE", (t, 7103)).unwrap();
    }
    for &t in &targets {
        let p = wait_state(alice, t, "clear");
        let icmp = ["ended", "shortened", "ignored"]
            .map(|f| metric(alice, &format!("oemesh_icmp_errors_total{{fate=\"{f}\"}}")));
        assert!(
            p.reason.contains("port unreachable"),
            "{t}: {p:?}\nICMP errors ended/shortened/ignored {icmp:?}\nalice:\n{}",
            alice.log_tail(40)
        );
    }
    assert!(metric(alice, "oemesh_icmp_errors_total{fate=\"ended\"}") >= 8);
}

/// bob publishes a key but his agent is stopped, so his kernel answers
/// alice's IKE_SA_INIT with "port unreachable" — just what an attacker would
/// forge. With a key in DNS it must not end the attempt: alice waits the
/// grace period for an IKE answer, and the outcome says both.
#[test]
fn a_port_unreachable_for_a_keyed_host_only_shortens_the_wait() {
    let net = testnet("icmpkey", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    bob.stop_agent().unwrap();
    let udp = UdpEcho::start(bob, 7102);
    let client = udp_client(alice);
    udp_once(&client, udp.addr(), b"to bob without his agent", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let p = wait_state(alice, bob.ip(), "clear");
    assert!(
        p.reason.contains("port unreachable") && p.reason.contains("no IKE answer within"),
        "{p:?}"
    );
    assert!(metric(alice, "oemesh_icmp_errors_total{fate=\"shortened\"}") >= 1);
    assert_eq!(metric(alice, "oemesh_icmp_errors_total{fate=\"ended\"}"), 0);
}

/// alice passes keyless destinations through; carol runs OE without a key.
/// The first datagram crosses the switch in clear at once; once the anonymous
/// SA is up, the same flow goes as ESP.
#[test]
fn passthrough_sends_the_first_datagram_in_clear_then_moves_the_flow_to_esp() {
    let config = AgentConfig {
        extra: "[policy.negotiation]\nprivate-or-clear = \"passthrough\"\n".into(),
        ..AgentConfig::default()
    };
    let net = testnet("pass", config);
    let (alice, carol) = (net.alice(), net.carol());
    let cap = net.capture("alice-carol").unwrap();
    let udp = UdpEcho::start(carol, 7103);
    let client = udp_client(alice);
    let first = marked_payload(b"PASSTHROUGH-FIRST-5d1e", 100);
    udp_once(&client, udp.addr(), &first, DECISION).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nalice:\n{}\ncarol:\n{}",
            alice.log_tail(40),
            carol.log_tail(40)
        )
    });
    let p = wait_state(alice, carol.ip(), "private");
    assert_eq!(p.auth.as_deref(), Some("anonymous"), "{p:?}");
    let later = marked_payload(b"PASSTHROUGH-LATER-8a2c", 100);
    udp_until_echo(&client, udp.addr(), &later, DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    let packets = cap.stop().unwrap();
    let pair = between(&packets, alice.ip(), carol.ip());
    let first_clear = pair
        .iter()
        .position(|p| p.src == alice.ip() && contains(&p.payload, b"PASSTHROUGH-FIRST-5d1e"))
        .unwrap_or_else(|| panic!("the first datagram was not seen in clear"));
    let first_esp = pair
        .iter()
        .position(|p| p.src == alice.ip() && p.is_esp_in_udp())
        .unwrap_or_else(|| panic!("no ESP from alice to carol"));
    assert!(first_clear < first_esp, "clear after ESP");
    assert_marker_absent(&packets, b"PASSTHROUGH-LATER-8a2c");
    assert!(
        alice.log().contains("passthrough"),
        "alice did not log the passthrough:\n{}",
        alice.log_tail(30)
    );
}

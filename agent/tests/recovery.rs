//! Fast recovery after a crash (issue 18, part 3): a peer whose agent was
//! SIGKILLed (no DELETE sent) and started again gets new SAs at once from the
//! ESP the other side keeps sending under the old ones, not after that side's
//! dead peer detection. The restarted agent finds the ESP's SPI unknown,
//! starts IKE toward its source with INITIAL_CONTACT, and the source replaces
//! its stale SAs (`docs/ike.md`, "After a restart").
//!
//! Real agents, real BIND, namespaces. Needs root, BIND 9 and nft (like
//! `e2e.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;
#[allow(dead_code)]
mod hostile;

use e2e_support::*;
use hostile::log_lines;
use oemesh_testkit::topology::AgentConfig;

/// What the restarted agent logs when stale ESP starts IKE (core's `Note::StaleSpi`).
const STALE_LINE: &str = "ESP with an SPI unknown here";
/// What alice logs for each SA the INITIAL_CONTACT replaced.
const REPLACED_LINE: &str = "the peer started over (INITIAL_CONTACT)";
/// What alice would log if her dead peer detection had ended the SA.
const DPD_LINE: &str = "no response to INFORMATIONAL";

/// alice sends a UDP flow to bob, who only echoes it. bob's agent is
/// SIGKILLed and started again; alice's ESP then names SPIs bob no longer
/// knows. With dead peer detection at 300 s, only the new mechanism can
/// bring the echoes back within a decision's time: bob starts IKE toward
/// alice, alice honours its INITIAL_CONTACT, and the flow goes on under the
/// new SAs. (No timing is asserted beyond the usual bound on a decision.)
#[test]
fn a_crashed_peer_gets_new_sas_from_the_stale_esp_at_once() {
    let config = AgentConfig {
        dpd_interval: Some("300s".into()),
        ..AgentConfig::default()
    };
    let net = testnet("recover", config);
    let (alice, bob) = (net.alice(), net.bob());
    let echo = UdpEcho::start(bob, 7141);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"before the crash", DECISION).unwrap();
    alice
        .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(log_lines(alice, REPLACED_LINE).is_empty());

    // A crash: no DELETE; alice keeps her SAs, bob starts with none.
    bob.kill_agent().unwrap();
    bob.start_agent().unwrap();
    // Only alice sends; bob has nothing to send but the echoes.
    udp_until_echo(&client, echo.addr(), b"after the crash", DECISION).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nalice:\n{}\nbob:\n{}",
            alice.log_tail(40),
            bob.log_tail(40)
        )
    });

    // bob started IKE because of alice's stale ESP ...
    let started = log_lines(bob, STALE_LINE);
    assert!(
        started.iter().any(|l| l.contains(&alice.ip().to_string())),
        "bob did not start IKE from the stale ESP:\n{}",
        bob.log_tail(40)
    );
    assert!(metric(bob, "oemesh_stale_spi_total{fate=\"started\"}") >= 1);
    // ... with INITIAL_CONTACT, which alice honoured: her stale SA was
    // replaced, not ended by dead peer detection.
    assert!(
        !log_lines(alice, REPLACED_LINE).is_empty(),
        "alice did not replace her stale SAs:\n{}",
        alice.log_tail(40)
    );
    assert!(log_lines(alice, DPD_LINE).is_empty());
    alice
        .wait_peer(bob.ip(), "bob private again", DECISION, |p| {
            p.state == "private"
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let status = status(alice);
    assert_eq!(
        field(&status, "ike_sas"),
        1,
        "only the new IKE SA: {status}"
    );
}

//! The trust model end to end (issue 11, SECURITY.md "Trust"): real agents,
//! real BIND, a stock strongSwan and the test kit's attacker, each trying one
//! lie against bob's agent:
//!
//! - a strongSwan on alice's address claiming an FQDN whose key it published;
//! - IKE_AUTH sent from another address than IKE_SA_INIT;
//! - AUTH NULL with alice's address as IDi and INITIAL_CONTACT;
//! - AUTH NULL while the lookup of the initiator's key fails (SERVFAIL);
//! - a forged negative answer for a peer that was private a moment ago;
//!
//! and one honest change that must keep working: a key rollover with both
//! keys published.
//!
//! Needs root, BIND 9, strongSwan's charon, swanctl and pki, nft (like `e2e.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;
#[allow(dead_code)]
mod hostile;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use e2e_support::*;
use hostile::*;
use oemesh_core::crypto::ed25519::Ed25519PublicKey;
use oemesh_core::ike::message::Identity;
use oemesh_testkit::attacker::{Attacker, Knobs};
use oemesh_testkit::process::wait_until;
use oemesh_testkit::strongswan::{Charon, CharonConfig, Ed25519Key, write_ed25519_public_pem};
use oemesh_testkit::topology::{AgentConfig, Host, Testnet};

fn trust_metric(host: &Host, event: &str) -> u64 {
    metric(
        host,
        &format!("oemesh_trust_events_total{{event=\"{event}\"}}"),
    )
}

fn raw_key(b64: &str) -> [u8; 32] {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap()
        .try_into()
        .unwrap()
}

fn v4_id(ip: IpAddr) -> Identity {
    let IpAddr::V4(a) = ip else { panic!() };
    Identity::Ipv4(a)
}

/// Runs `attacker` against `victim` from `from`'s namespace (no agent there).
fn attack(from: &Host, attacker: &mut Attacker, victim: IpAddr) {
    from.netns()
        .run(|| attacker.run_udp(victim, Duration::from_secs(3)))
        .unwrap()
        .unwrap_or_else(|e| panic!("attacker: {e:#}"));
}

/// A name in the forward zone, with an A record (or none) and IPSECKEYs.
fn set_name(net: &Testnet, name: &str, a: Option<IpAddr>, ipseckey: Option<&str>) {
    let mut script = format!("update delete {name} A\nupdate delete {name} IPSECKEY\n");
    if let Some(a) = a {
        script.push_str(&format!("update add {name} 60 A {a}\n"));
    }
    if let Some(k) = ipseckey {
        script.push_str(&format!("update add {name} 60 IPSECKEY {k}\n"));
    }
    net.dns().bind().nsupdate(&script).unwrap();
}

/// A charon on alice's address (her agent stopped) that starts IKE with bob,
/// signing with `key` under `id`; whether its IKE SA came up.
fn charon_attempt(net: &Testnet, name: &str, key: Ed25519Key, id: &str) -> (Charon, bool) {
    let (alice, bob) = (net.alice(), net.bob());
    let bob_pub = net.dir().join(format!("{name}-bob.pub"));
    write_ed25519_public_pem(&raw_key(bob.public_key().unwrap()), &bob_pub).unwrap();
    let mut cfg = CharonConfig::new(&alice.ip().to_string(), &bob.ip().to_string());
    cfg.local_key = Some(key);
    cfg.local_id = Some(id.to_owned());
    cfg.remote_pubkey = Some(bob_pub);
    cfg.remote_id = Some(bob.ip().to_string());
    cfg.retransmit_tries = 1;
    let charon = Charon::start(alice.netns(), name, cfg).unwrap();
    let _ = charon.initiate();
    let up = charon.wait_established(Duration::from_secs(4)).is_ok();
    (charon, up)
}

/// A stock strongSwan on alice's address claims `evil.oe.test`, whose IPSECKEY
/// (its own key) it published in a zone it controls. Before issue 11, bob's
/// agent looked the key up at the claimed name and showed alice as private,
/// authenticated. Now: refused while the name does not resolve to alice's
/// address, and refused when it does (the key that speaks for alice's address
/// is the one at alice's reverse name). The honest twin, alice's own key
/// under `alice.oe.test`, is accepted.
#[test]
fn a_stock_strongswan_claiming_a_foreign_fqdn_is_refused() {
    let net = testnet("trustfqdn", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    alice.stop_agent().unwrap();
    let mallory = Ed25519Key::generate(net.dir(), "mallory").unwrap();
    let mallory_rdata = format!(
        "10 0 4 . {}",
        base64::engine::general_purpose::STANDARD.encode(mallory.public_raw)
    );
    for (case, a_record) in [("nowhere", None), ("at alice", Some(alice.ip()))] {
        set_name(&net, "evil.oe.test.", a_record, Some(&mallory_rdata));
        let failures_before = metric(bob, "oemesh_ike_auth_failures_total");
        let (mut charon, up) = charon_attempt(&net, "mallory", mallory.clone(), "evil.oe.test");
        assert!(
            !up,
            "{case}: bob let mallory in:\n{}\nbob:\n{}",
            charon.log(),
            bob.log_tail(30)
        );
        charon.stop().unwrap();
        match a_record {
            None => {
                let refused = log_lines(
                    bob,
                    "FQDN identity evil.oe.test. does not resolve to 192.0.2.10",
                );
                assert!(!refused.is_empty(), "{case}: {}", bob.log_tail(30));
            }
            Some(_) => assert!(
                metric(bob, "oemesh_ike_auth_failures_total") > failures_before,
                "{case}: the signature must fail against alice's key: {}",
                bob.log_tail(30)
            ),
        }
        let p = bob.peer(alice.ip()).unwrap();
        assert!(
            p.as_ref().is_none_or(|p| p.state != "private"),
            "{case}: {p:?}"
        );
    }
    assert!(trust_metric(bob, "identity_refused") >= 1);

    // Honest: alice's own key, under a name that resolves to her address.
    set_name(&net, "alice.oe.test.", Some(alice.ip()), None);
    let alice_pub = net.dir().join("alice-own.pub");
    let alice_raw = raw_key(alice.public_key().unwrap());
    write_ed25519_public_pem(&alice_raw, &alice_pub).unwrap();
    let own = Ed25519Key {
        private_pem: alice.key_path().unwrap().to_owned(),
        public_pem: alice_pub,
        public_raw: alice_raw,
    };
    let (_charon, up) = charon_attempt(&net, "alice", own, "alice.oe.test");
    assert!(up, "the honest FQDN identity: {}", bob.log_tail(30));
    let p = bob
        .wait_peer(alice.ip(), "alice private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap();
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
}

/// IKE_SA_INIT from dave's address, IKE_AUTH with carol's as source (carol
/// publishes no key, so AUTH NULL from her address is acceptable): before
/// issue 11, bob bound the SA to carol's address and would have sent carol's
/// traffic to the attacker. Now IKE_AUTH is dropped unopened.
#[test]
fn ike_auth_from_another_address_is_dropped() {
    let net = testnet("trustpin", AgentConfig::default());
    let (bob, carol, dave) = (net.bob(), net.carol(), net.dave());
    let mut knobs = Knobs::anonymous(dave.ip());
    knobs.later_source = Some(carol.ip());
    knobs.victim_key =
        Some(Ed25519PublicKey::from_slice(&raw_key(bob.public_key().unwrap())).unwrap());
    let mut mallory = Attacker::new(knobs, 7);
    attack(dave, &mut mallory, bob.ip());
    assert!(!mallory.established());
    wait_until("bob to count the IKE_AUTH", Duration::from_secs(5), || {
        trust_metric(bob, "wrong_address") >= 1
    })
    .unwrap_or_else(|e| panic!("{e}: {}", bob.log_tail(30)));
    for who in [carol.ip(), dave.ip()] {
        let p = bob.peer(who).unwrap();
        assert!(p.as_ref().is_none_or(|p| p.state != "private"), "{p:?}");
    }
}

/// alice and bob are private; an anonymous initiator (from dave's address)
/// names alice's address as its IDi and sends INITIAL_CONTACT. Before issue
/// 11, bob deleted its SAs with alice. Now it is ignored: an anonymous peer
/// replaces nothing.
#[test]
fn an_anonymous_initial_contact_replaces_nothing() {
    let net = testnet("trustic", AgentConfig::default());
    let (alice, bob, dave) = (net.alice(), net.bob(), net.dave());
    let echo = UdpEcho::start(bob, 7301);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"hello", DECISION).unwrap();
    let before = bob
        .wait_peer(alice.ip(), "alice private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap();

    let mut knobs = Knobs::anonymous(dave.ip());
    knobs.claimed_id = v4_id(alice.ip());
    knobs.initial_contact = true;
    knobs.victim_key =
        Some(Ed25519PublicKey::from_slice(&raw_key(bob.public_key().unwrap())).unwrap());
    let mut mallory = Attacker::new(knobs, 8);
    attack(dave, &mut mallory, bob.ip());
    assert!(mallory.established(), "{:?}", mallory.events);
    wait_until("bob to ignore it", Duration::from_secs(5), || {
        trust_metric(bob, "initial_contact_ignored") >= 1
    })
    .unwrap();
    assert!(
        log_lines(bob, "started over").is_empty(),
        "bob replaced an SA: {}",
        bob.log_tail(30)
    );
    assert!(
        log_lines(bob, "IKE SA deleted").is_empty(),
        "bob deleted an SA: {}",
        bob.log_tail(30)
    );
    udp_once(
        &client,
        echo.addr(),
        b"still private",
        Duration::from_secs(5),
    )
    .unwrap();
    let after = bob.peer(alice.ip()).unwrap().unwrap();
    assert_eq!(after.state, "private");
    assert_eq!(after.reason, before.reason, "the same decision");
}

/// bob cannot look carol's key up (SERVFAIL for bob's queries only) when she
/// starts IKE with AUTH NULL. Where bob's policy fails open she is accepted,
/// and the outcome says the lookup failed; where it fails closed (`private`)
/// she is refused: she might publish a key, and anonymous never stands in for
/// keyed.
#[test]
fn auth_null_while_the_key_lookup_fails() {
    let net = testnet("trustservfail", AgentConfig::default());
    let (bob, carol) = (net.bob(), net.carol());
    let servfail = Servfail::start_for(&net, Some(bob.ip())).unwrap();
    let echo = UdpEcho::start(bob, 7302);
    let client = udp_client(carol);
    udp_until_echo(&client, echo.addr(), b"hi", DECISION).unwrap();
    let p = bob
        .wait_peer(carol.ip(), "carol private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap();
    assert_eq!(p.auth.as_deref(), Some("anonymous"));
    assert!(p.reason.contains("anonymous (key lookup failed)"), "{p:?}");
    assert!(trust_metric(bob, "anonymous_lookup_failed") >= 1);

    // bob puts carol's address in `private`.
    let mut config = AgentConfig::default();
    config.set_policy("private", &[&format!("{}/32", carol.ip())]);
    bob.set_agent_config(&config).unwrap();
    bob.restart_agent().unwrap();
    let _ = udp_until_echo(&client, echo.addr(), b"again", Duration::from_secs(8));
    wait_until("bob to refuse carol", DECISION, || {
        !log_lines(
            bob,
            "AUTH NULL from 192.0.2.30 refused: the lookup of its key",
        )
        .is_empty()
    })
    .unwrap_or_else(|e| panic!("{e}: {}", bob.log_tail(30)));
    let p = bob.peer(carol.ip()).unwrap();
    assert!(p.as_ref().is_none_or(|p| p.state != "private"), "{p:?}");
    servfail.stop(&net).unwrap();
}

/// alice was private with bob; bob's IPSECKEY then disappears (as a forged
/// NXDOMAIN would make it look). Before issue 11 alice went clear without a
/// word, because the downgrade flag needed the key in DNS. Now it is a
/// DOWNGRADE, logged at warn.
#[test]
fn a_negative_answer_after_a_private_period_is_a_downgrade() {
    let config = AgentConfig {
        idle_timeout: Some("2s".into()),
        ..AgentConfig::default()
    };
    let net = testnet("trustnx", config);
    let (alice, bob) = (net.alice(), net.bob());
    let echo = UdpEcho::start(bob, 7303);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"private", DECISION).unwrap();
    alice
        .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
        .unwrap();
    wait_until("alice's SA with bob to close as idle", DECISION, || {
        alice
            .peer(bob.ip())
            .is_ok_and(|p| p.is_none_or(|p| p.state != "private"))
    })
    .unwrap();
    set_ipseckey(&net, bob.ip(), None).unwrap();
    udp_until_echo(&client, echo.addr(), b"and now?", DECISION).unwrap();
    let p = alice
        .wait_peer(bob.ip(), "bob decided", DECISION, |p| p.state != "pending")
        .unwrap();
    assert_eq!(p.state, "clear", "{p:?}");
    assert!(p.reason.contains("no IPSECKEY (NXDOMAIN)"), "{p:?}");
    assert!(p.reason.contains("DOWNGRADE: peer was private"), "{p:?}");
    let lines = decision_lines(alice, bob.ip(), "DOWNGRADE");
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("WARN")),
        "{lines:?}"
    );
    assert!(trust_metric(alice, "downgrade") >= 1);
}

/// UDP from `from` to an echo server on `to` (port `port`) until echoed; `bob`
/// (whichever end it is) then shows alice as private and authenticated.
fn authenticated_traffic(from: &Host, to: &Host, port: u16) {
    let echo = UdpEcho::start(to, port);
    let client = udp_client(from);
    udp_until_echo(&client, echo.addr(), b"rollover", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\n{}:\n{}", to.name(), to.log_tail(30)));
    let (bob, alice) = if to.name() == "bob" {
        (to, from)
    } else {
        (from, to)
    };
    let p = bob
        .wait_peer(alice.ip(), "alice private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap();
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
}

/// Key rollover: alice publishes her new key next to the old one and switches
/// to it. bob checks her AUTH against both (as responder), and tries both in
/// one attempt (as initiator). Before issue 11 the responder took the first
/// key only.
#[test]
fn a_rollover_with_two_published_keys_works_both_ways() {
    let net = testnet("trustroll", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let (new_key, new_pub) = keygen(&net, "alice-2").unwrap();
    let old = real_key_rdata(alice);
    let name = reverse_name(alice.ip());
    let script = format!(
        "update delete {name} IPSECKEY\nupdate add {name} 60 IPSECKEY {old}\nupdate add {name} 60 IPSECKEY 20 0 4 . {new_pub}\n"
    );
    net.dns().bind().nsupdate(&script).unwrap();
    // alice switches to the new key (same file, new contents).
    alice.stop_agent().unwrap();
    std::fs::copy(&new_key, alice.key_path().unwrap()).unwrap();
    alice.start_agent().unwrap();

    // alice → bob: bob answers, and must accept the new key.
    authenticated_traffic(alice, bob, 7304);
    // bob → alice, after both forget: bob initiates, with both keys.
    alice.restart_agent().unwrap();
    bob.restart_agent().unwrap();
    authenticated_traffic(bob, alice, 7305);
    let attempts = log_lines(bob, "IKE_SA_INIT to 192.0.2.10");
    assert_eq!(
        attempts.len(),
        1,
        "one attempt with both keys: {attempts:?}"
    );
}

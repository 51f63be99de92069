//! The IKE engine against peers that lie (issue 11, SECURITY.md "Trust"):
//! identities that are not their address, IKE_AUTH from another address,
//! anonymous INITIAL_CONTACT, one source filling the half-open table,
//! anonymous SAs past their share, key rollover. Each test drives core's own
//! initiator with the test kit's attacker knobs against a responder endpoint on
//! a virtual clock.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use oemesh_core::ike::endpoint::{Config, Event, Failure, PeerAuth};
use oemesh_core::ike::message::Identity;
use oemesh_testkit::attacker::{Attacker, Knobs, Victim, run_against, run_for};
use support::pair::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4_id(s: &str) -> Identity {
    Identity::Ipv4(s.parse().unwrap())
}

/// The responder: bob at B, signing with key 2 under its address.
fn bob() -> Victim {
    Victim::new(ed25519_config(2, B), ip(B), 2)
}

/// What an OE responder would answer: the key of the address, as DNS has it
/// (key seed per address below), or AUTH NULL where the peer used it.
fn dns_keys(e: &Event) -> Option<Option<PeerAuth>> {
    let Event::AuthorizePeer {
        remote, null_auth, ..
    } = e
    else {
        return None;
    };
    if *null_auth {
        return Some(Some(PeerAuth::Null));
    }
    let seed = match remote.ip().to_string().as_str() {
        "192.0.2.1" => 1,
        "192.0.2.66" => 66,
        _ => 99,
    };
    Some(Some(PeerAuth::ed25519(public(seed))))
}

/// An honest signer at `addr` (key seed `seed`, its address as ID).
fn signer(addr: &str, seed: u8) -> Knobs {
    Knobs {
        claimed_id: v4_id(addr),
        key: Some([seed; 32]),
        source: ip(addr),
        later_source: None,
        initial_contact: true,
        victim_key: Some(public(2)),
    }
}

#[test]
fn ike_auth_from_another_address_is_dropped() {
    let mut bob = bob();
    // The attacker finishes IKE_SA_INIT from its own address, then sends
    // IKE_AUTH with alice's address as source, to capture alice's traffic.
    let mut knobs = signer("192.0.2.66", 66);
    knobs.later_source = Some(ip(A));
    let mut mallory = Attacker::new(knobs, 66);
    let now = Instant::now();
    mallory.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut mallory, &mut bob, now, dns_keys);
    assert_eq!(bob.established(), 0, "{:?}", bob.events);
    assert!(!mallory.established());
    let stats = bob.ep.stats();
    assert!(stats.wrong_address >= 1, "{stats:?}");
    assert_eq!(stats.half_open, 0, "the half-open SA timed out: {stats:?}");
    // No AuthorizePeer either: the message was dropped before it was opened.
    assert!(
        !bob.events
            .iter()
            .any(|e| matches!(e, Event::AuthorizePeer { .. })),
        "{:?}",
        bob.events
    );
}

#[test]
fn an_address_id_must_be_the_address_whatever_the_caller_says() {
    let mut bob = bob();
    // From its own address, claiming alice's; a careless caller would look the
    // key up by the claimed ID and hand over the attacker's own key.
    let mut knobs = signer("192.0.2.66", 66);
    knobs.claimed_id = v4_id(A);
    let mut mallory = Attacker::new(knobs, 66);
    let now = Instant::now();
    mallory.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut mallory, &mut bob, now, |e| {
        matches!(e, Event::AuthorizePeer { .. }).then(|| Some(PeerAuth::ed25519(public(66))))
    });
    assert_eq!(bob.established(), 0, "{:?}", bob.events);
    assert_eq!(bob.ep.stats().identity_refused, 1);
    let failure = mallory.failure().expect("refused");
    assert!(failure.contains("AUTHENTICATION_FAILED"), "{failure}");
}

#[test]
fn the_initiator_checks_idr_the_same_way() {
    // bob signs with its own key but calls itself 192.0.2.99.
    let mut config = ed25519_config(2, B);
    config.local_id = v4_id("192.0.2.99");
    config.id_is_sa_address = false;
    let mut bob = Victim::new(config, ip(B), 2);
    let mut alice = Attacker::new(signer(A, 1), 1);
    let now = Instant::now();
    alice.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut alice, &mut bob, now, dns_keys);
    assert!(!alice.established());
    let failure = alice.failure().expect("failed");
    assert!(
        failure.contains("identity 192.0.2.99 is not the address 192.0.2.2"),
        "{failure}"
    );
    assert_eq!(alice.ep.stats().identity_refused, 1);
    // bob installed its side, and was told it is gone.
    assert_eq!(bob.established(), 1);
    assert_eq!(bob.deleted(), vec![Failure::DeletedByPeer.to_string()]);
}

#[test]
fn an_fqdn_idr_is_held_until_the_caller_confirms_it() {
    for confirmed in [true, false] {
        let mut config = ed25519_config(2, B);
        config.local_id = Identity::fqdn("bob.oe.test");
        let mut bob = Victim::new(config, ip(B), 2);
        let mut alice = Attacker::new(signer(A, 1), 1);
        let now = Instant::now();
        alice.start(now, ip(B), now + Duration::from_secs(2));
        let now = run_for(
            &mut alice,
            &mut bob,
            now,
            Duration::from_millis(100),
            dns_keys,
        );
        let Some((sa, name)) = alice.events.iter().find_map(|e| match e {
            Event::ConfirmIdentity { sa, name, remote } => {
                assert_eq!(*remote, SocketAddr::new(ip(B), 4500));
                Some((*sa, name.clone()))
            }
            _ => None,
        }) else {
            panic!("no ConfirmIdentity: {:?}", alice.events)
        };
        assert_eq!(name.to_string(), "bob.oe.test.");
        assert!(!alice.established(), "nothing before the confirmation");
        let result = if confirmed {
            Ok(())
        } else {
            Err(oemesh_core::trust::fqdn_resolves_to(&name, &[ip("192.0.2.7")], ip(B)).unwrap_err())
        };
        alice.ep.confirm_identity(now, sa, result);
        run_against(&mut alice, &mut bob, now, dns_keys);
        assert_eq!(alice.established(), confirmed, "{:?}", alice.events);
        if !confirmed {
            let failure = alice.failure().unwrap();
            assert!(
                failure.contains("does not resolve to 192.0.2.2"),
                "{failure}"
            );
            assert_eq!(bob.deleted(), vec![Failure::DeletedByPeer.to_string()]);
        }
    }
}

#[test]
fn an_anonymous_initial_contact_replaces_nothing() {
    let mut bob = bob();
    let now = Instant::now();
    let mut alice = Attacker::new(signer(A, 1), 1);
    alice.start(now, ip(B), now + Duration::from_secs(2));
    let now = run_against(&mut alice, &mut bob, now, dns_keys);
    assert_eq!(bob.established(), 1);
    // AUTH NULL, alice's address as IDi, INITIAL_CONTACT: from elsewhere, and
    // from alice's own address.
    for source in ["192.0.2.66", A] {
        let mut knobs = Knobs::anonymous(ip(source));
        knobs.claimed_id = v4_id(A);
        knobs.initial_contact = true;
        knobs.victim_key = Some(public(2));
        let mut mallory = Attacker::new(knobs, 66);
        mallory.start(now, ip(B), now + Duration::from_secs(2));
        run_against(&mut mallory, &mut bob, now, dns_keys);
        assert!(mallory.established(), "{:?}", mallory.events);
    }
    assert_eq!(bob.established(), 3);
    assert!(bob.deleted().is_empty(), "{:?}", bob.deleted());
    assert_eq!(bob.ep.stats().initial_contact_ignored, 2);
}

#[test]
fn initial_contact_replaces_the_same_identity_at_the_same_address_only() {
    let mut bob = bob();
    let now = Instant::now();
    // One FQDN identity at two addresses (both keyed): the second's
    // INITIAL_CONTACT does not end the first's SA.
    let fqdn = |addr: &str, seed: u8| Knobs {
        claimed_id: Identity::fqdn("multi.oe.test"),
        ..signer(addr, seed)
    };
    let mut first = Attacker::new(fqdn(A, 1), 1);
    first.start(now, ip(B), now + Duration::from_secs(2));
    let now = run_against(&mut first, &mut bob, now, dns_keys);
    let mut second = Attacker::new(fqdn("192.0.2.66", 66), 66);
    second.start(now, ip(B), now + Duration::from_secs(2));
    let now = run_against(&mut second, &mut bob, now, dns_keys);
    assert_eq!(bob.established(), 2);
    assert!(bob.deleted().is_empty(), "{:?}", bob.deleted());
    // The same identity at the same address starting over: the old SA goes.
    let mut again = Attacker::new(fqdn(A, 1), 7);
    again.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut again, &mut bob, now, dns_keys);
    assert_eq!(bob.established(), 3);
    assert_eq!(bob.deleted(), vec![Failure::Replaced.to_string()]);
    assert_eq!(bob.ep.stats().ike_sas, 2);
}

#[test]
fn one_source_cannot_fill_the_half_open_table() {
    let mut config = ed25519_config(2, B);
    config.cookie_threshold = 1000;
    config.half_open_per_source = 4;
    let mut bob = Victim::new(config, ip(B), 2);
    let now = Instant::now();
    // Ten handshakes from one address, none of which the caller answers.
    for i in 0..10 {
        let mut m = Attacker::new(Knobs::anonymous(ip("192.0.2.66")), 100 + i);
        m.start(now, ip(B), now + Duration::from_secs(2));
        for d in m.outgoing(now) {
            bob.ep.handle(now, d.to, d.from, &d.payload);
        }
    }
    let stats = bob.ep.stats();
    assert_eq!(stats.half_open, 4, "{stats:?}");
    assert_eq!(stats.half_open_source_full, 6, "{stats:?}");
    // Another source still completes.
    let mut alice = Attacker::new(signer(A, 1), 1);
    alice.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut alice, &mut bob, now, dns_keys);
    assert!(alice.established(), "{:?}", alice.events);
}

#[test]
fn anonymous_sas_are_bounded_per_source_and_in_total_idlest_first() {
    let mut config = ed25519_config(2, B);
    config.anonymous_per_source = 2;
    config.anonymous_limit = 3;
    let mut bob = Victim::new(config, ip(B), 2);
    let mut now = Instant::now();
    let anon = |bob: &mut Victim, source: &str, seed: u8, now: Instant| {
        let mut knobs = Knobs::anonymous(ip(source));
        knobs.victim_key = Some(public(2));
        let mut m = Attacker::new(knobs, seed);
        m.start(now, ip(B), now + Duration::from_secs(2));
        run_against(&mut m, bob, now, dns_keys);
        assert!(m.established(), "{:?}", m.events);
    };
    let handles = |bob: &Victim| -> Vec<_> {
        bob.events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaEstablished { sa, .. } => Some(*sa),
                _ => None,
            })
            .collect()
    };
    anon(&mut bob, "192.0.2.66", 1, now);
    now += Duration::from_secs(1);
    anon(&mut bob, "192.0.2.66", 2, now);
    // The first carried traffic since: the second is the idlest.
    now += Duration::from_secs(1);
    let first = handles(&bob)[0];
    bob.ep.note_activity(now, first);
    anon(&mut bob, "192.0.2.66", 3, now);
    let evicted: Vec<_> = bob
        .events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDeleted { sa, reason } => Some((*sa, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(evicted, vec![(handles(&bob)[1], Failure::Evicted)]);
    assert_eq!(bob.ep.stats().ike_sas, 2);
    // Two more sources: the total of 3 evicts the idlest of all.
    now += Duration::from_secs(1);
    anon(&mut bob, "192.0.2.67", 4, now);
    now += Duration::from_secs(1);
    anon(&mut bob, "192.0.2.68", 5, now);
    let stats = bob.ep.stats();
    assert_eq!(stats.ike_sas, 3, "{stats:?}");
    assert_eq!(stats.anonymous_evicted, 2);
    // A signer does not count against the anonymous limits.
    let mut alice = Attacker::new(signer(A, 1), 1);
    alice.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut alice, &mut bob, now, dns_keys);
    assert_eq!(bob.ep.stats().ike_sas, 4);
    assert_eq!(bob.ep.stats().anonymous_evicted, 2);
}

#[test]
fn every_published_key_is_tried_in_both_roles() {
    // The responder holds [stale, current] for alice; alice signs with current.
    let mut bob = bob();
    let now = Instant::now();
    let mut alice = Attacker::new(signer(A, 1), 1);
    alice.start(now, ip(B), now + Duration::from_secs(2));
    run_against(&mut alice, &mut bob, now, |e| {
        matches!(e, Event::AuthorizePeer { .. })
            .then(|| Some(PeerAuth::Ed25519(vec![public(9), public(1)])))
    });
    assert!(alice.established(), "{:?}", alice.events);
    // The initiator holds [stale, current] for bob.
    let mut p = Pair::ed25519();
    p.connect(Some(PeerAuth::Ed25519(vec![
        public(8),
        public(9),
        public(2),
    ])));
    assert!(p.run_until(Duration::from_secs(3), |p| p.a.established() == 1));
    // None of them: refused, and the reason says how many were tried.
    let mut p = Pair::ed25519();
    p.connect(Some(PeerAuth::Ed25519(vec![public(8), public(9)])));
    p.run_for(Duration::from_secs(3));
    let failures = p.a.failures();
    assert!(
        failures.len() == 1 && failures[0].contains("none of its 2 published keys"),
        "{failures:?}"
    );
}

/// After IKE_SA_INIT only the port may change, and only behind a NAT.
#[test]
fn an_established_sa_is_pinned_to_its_address() {
    for force_udp_encap in [false, true] {
        let mut a = ed25519_config(1, A);
        let mut b = ed25519_config(2, B);
        a.force_udp_encap = force_udp_encap;
        b.force_udp_encap = force_udp_encap;
        let mut p = Pair::new(a, b);
        p.a.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(2))));
        p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
        let h = p.handshake();
        for (ip_changes, port) in [(true, 4500), (false, 4501)] {
            let now = p.now;
            p.a.ep.check_liveness(now, h);
            let mut t = p.a.ep.poll_transmit().expect("a liveness check");
            let before = p.b.ep.stats();
            if ip_changes {
                t.local = SocketAddr::new(ip("192.0.2.66"), port);
            } else {
                t.local = SocketAddr::new(t.local.ip(), port);
            }
            p.deliver(true, &t);
            let after = p.b.ep.stats();
            // `force_udp_encap` makes each side look as if behind a NAT.
            let admitted = !ip_changes && force_udp_encap;
            assert_eq!(
                after.wrong_address - before.wrong_address,
                u64::from(!admitted),
                "ip changes {ip_changes}, NAT {force_udp_encap}"
            );
            let answer = p.b.ep.poll_transmit();
            if admitted {
                // Answered where the peer is now.
                assert_eq!(answer.map(|t| t.remote.port()), Some(4501));
            } else {
                assert!(answer.is_none());
            }
            // The retransmission from the right address finishes the exchange.
            p.run_for(Duration::from_secs(2));
        }
        assert_eq!(p.b.ep.stats().ike_sas, 1);
    }
}

#[test]
fn default_config_shares() {
    let c = Config::new(oemesh_core::ike::endpoint::LocalAuth::Null, Identity::Null);
    assert!(c.half_open_per_source * 16 <= c.half_open_limit);
    assert!(c.anonymous_per_source < c.anonymous_limit);
    assert!(c.initial_contact);
}

/// A host configured with its IPv4 address as identity that answers IKE on
/// its IPv6 address speaks as that address: its peers bind the ID to where
/// IKE comes from.
#[test]
fn an_address_identity_is_the_address_the_sa_is_on() {
    let bob_v6: IpAddr = "2001:db8::2".parse().unwrap();
    let mut bob = Victim::new(ed25519_config(2, B), bob_v6, 2);
    let knobs = Knobs {
        claimed_id: Identity::Ipv6("2001:db8::1".parse().unwrap()),
        ..signer(A, 1)
    };
    let mut alice = Attacker::new(
        Knobs {
            source: "2001:db8::1".parse().unwrap(),
            ..knobs
        },
        1,
    );
    let now = Instant::now();
    alice.start(now, bob_v6, now + Duration::from_secs(2));
    run_against(&mut alice, &mut bob, now, |e| {
        matches!(e, Event::AuthorizePeer { .. }).then(|| Some(PeerAuth::ed25519(public(1))))
    });
    assert!(alice.established(), "{:?}", alice.events);
    let idr = alice.events.iter().find_map(|e| match e {
        Event::IkeSaEstablished { peer_id, .. } => Some(peer_id.clone()),
        _ => None,
    });
    assert_eq!(idr, Some(Identity::Ipv6("2001:db8::2".parse().unwrap())));
}

/// Nobody vouches for an IKE_SA_INIT's source, so a stateless answer to one
/// is never larger than the request (SECURITY.md, "Reflection"): a bare
/// 28-byte header gets no 36-byte INVALID_SYNTAX, while a request of the
/// usual size that fails the same way still gets its notify.
#[test]
fn no_stateless_answer_is_larger_than_its_request() {
    use oemesh_core::ike::message::{ExchangeType, Flags, Header, Message, Nonce, Payload};
    let mut bob = bob();
    let now = Instant::now();
    let (local, remote): (SocketAddr, SocketAddr) = (
        format!("{B}:500").parse().unwrap(),
        "198.51.100.7:500".parse().unwrap(),
    );
    let header = Header::new(7, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
    let mut bare = Vec::new();
    Message::new(header, vec![]).emit(&mut bare);
    assert_eq!(bare.len(), 28);
    bob.ep.handle(now, local, remote, &bare);
    assert!(
        bob.ep.poll_transmit().is_none(),
        "an answer larger than the request"
    );
    // No SA payload either, but a nonce makes it as long as a real request's start.
    let mut no_sa = Vec::new();
    Message::new(header, vec![Payload::Nonce(Nonce(vec![1; 64]))]).emit(&mut no_sa);
    bob.ep.handle(now, local, remote, &no_sa);
    let answer = bob.ep.poll_transmit().expect("an error notify");
    assert!(answer.payload.len() <= no_sa.len());
    let m = Message::parse(&answer.payload).unwrap();
    assert!(matches!(&m.payloads[..], [Payload::Notify(_)]), "{m:?}");
}

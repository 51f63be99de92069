//! INITIAL_CONTACT on both sides (RFC 7296 §2.4, issue 18): a responder
//! says it in its IKE_AUTH response when it has no other IKE SA with anyone
//! at the initiator's address (it restarted, most likely), and the initiator
//! then forgets the SAs it still has with that responder, as a responder
//! does for an initiator's; only from a peer that signed.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod support;

use std::time::Duration;

use oemesh_core::ike::endpoint::{Config, Event, Failure, PeerAuth};
use support::pair::*;

/// The reasons of the IKE SAs `node` saw deleted.
fn deleted(node: &Node) -> Vec<Failure> {
    node.events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDeleted { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// `b` as it comes back after a restart: the same key, config and address,
/// no SAs (and another RNG seed, as the OS gives it).
fn restart_b(p: &mut Pair, config: Config, authorizer: Authorizer, seed: u8) {
    let mut b = Node::new(config, B, seed);
    b.authorizer = authorizer;
    p.b = b;
}

/// `a` connects to `b` once more and both see it up.
fn connect_again(p: &mut Pair, peer: PeerAuth, a_up: usize, b_up: usize) {
    p.connect(Some(peer));
    assert!(
        p.run_until(Duration::from_secs(3), |p| p.a.established() == a_up
            && p.b.established() == b_up),
        "a: {:?}\nb: {:?}",
        p.a.events,
        p.b.events
    );
}

#[test]
fn a_restarted_responder_makes_the_initiator_drop_its_old_sa() {
    let mut p = Pair::ed25519();
    p.handshake();
    // b's first contact: it said so, and a had nothing to replace.
    assert_eq!(p.b.ep.stats().initial_contact_sent, 1);
    assert!(deleted(&p.a).is_empty());

    // b crashes and comes back with nothing; a still has its SA.
    let answer = p.b.authorizer.clone();
    restart_b(&mut p, ed25519_config(2, B), answer, 3);
    connect_again(&mut p, PeerAuth::ed25519(public(2)), 2, 1);

    assert_eq!(p.b.ep.stats().initial_contact_sent, 1);
    assert_eq!(deleted(&p.a), vec![Failure::Replaced]);
    let stats = p.a.ep.stats();
    assert_eq!(stats.initial_contact_replaced, 1, "{stats:?}");
    assert_eq!(stats.ike_sas, 1, "only the new SA is left: {stats:?}");
    // Its CHILD SA went with it, as an event the node handles.
    assert!(
        p.a.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { .. })),
        "{:?}",
        p.a.events
    );
}

#[test]
fn an_anonymous_responders_initial_contact_replaces_nothing() {
    let mut p = Pair::new(ed25519_config(1, A), null_config());
    p.a.authorizer = Authorizer::Answer(Some(PeerAuth::Null));
    let knows_a = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
    p.b.authorizer = knows_a.clone();
    connect_again(&mut p, PeerAuth::Null, 1, 1);
    // Anyone can answer AUTH NULL as b's address: b restarting or not, a's
    // SA with b stays.
    restart_b(&mut p, null_config(), knows_a, 3);
    connect_again(&mut p, PeerAuth::Null, 2, 1);

    assert_eq!(p.b.ep.stats().initial_contact_sent, 1);
    let stats = p.a.ep.stats();
    assert_eq!(stats.initial_contact_ignored, 2, "{stats:?}");
    assert_eq!(stats.initial_contact_replaced, 0, "{stats:?}");
    assert_eq!(stats.ike_sas, 2, "{stats:?}");
    assert!(deleted(&p.a).is_empty(), "{:?}", deleted(&p.a));
}

#[test]
fn a_responder_with_another_sa_with_the_peer_does_not_send_it() {
    // a does not send one either (else b would replace its old SA first).
    let mut config = ed25519_config(1, A);
    config.initial_contact = false;
    let mut p = Pair::new(config, ed25519_config(2, B));
    p.a.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(2))));
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
    p.handshake();
    assert_eq!(p.b.ep.stats().initial_contact_sent, 1);

    // A second IKE SA while the first lives: b says nothing, a keeps both.
    connect_again(&mut p, PeerAuth::ed25519(public(2)), 2, 2);
    assert_eq!(p.b.ep.stats().initial_contact_sent, 1);
    assert!(deleted(&p.a).is_empty(), "{:?}", deleted(&p.a));
    assert!(deleted(&p.b).is_empty(), "{:?}", deleted(&p.b));
    assert_eq!(p.a.ep.stats().ike_sas, 2);
    assert_eq!(p.b.ep.stats().ike_sas, 2);
}

#[test]
fn an_initiator_with_another_sa_with_the_peer_does_not_send_it() {
    // RFC 7296 §2.4: INITIAL_CONTACT asserts the new IKE SA is the only one
    // between the two. An initiator that still has one with the peer (two
    // gateways keep one per destination behind them) does not say it, so
    // the peer keeps both.
    let mut p = Pair::ed25519();
    p.handshake();
    assert_eq!(p.a.ep.stats().initial_contact_sent, 1);
    connect_again(&mut p, PeerAuth::ed25519(public(2)), 2, 2);
    assert_eq!(p.a.ep.stats().initial_contact_sent, 1);
    assert!(deleted(&p.a).is_empty(), "{:?}", deleted(&p.a));
    assert!(deleted(&p.b).is_empty(), "{:?}", deleted(&p.b));
    assert_eq!((p.a.ep.stats().ike_sas, p.b.ep.stats().ike_sas), (2, 2));
}

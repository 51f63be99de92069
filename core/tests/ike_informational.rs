//! INFORMATIONAL: deleting CHILD and IKE SAs from either side, liveness,
//! DPD, and a peer that restarts (INITIAL_CONTACT).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::time::Duration;

use oemesh_core::ike::endpoint::{Endpoint, Event, Failure, PeerAuth};
use support::pair::*;

fn count(node: &Node, f: impl Fn(&Event) -> bool) -> usize {
    node.events.iter().filter(|e| f(e)).count()
}

#[test]
fn delete_child_from_either_side() {
    for from_a in [true, false] {
        let mut p = Pair::ed25519();
        p.handshake();
        let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
        let spis = p.a.ep.child_sas(ha)[0];
        let now = p.now;
        if from_a {
            p.a.ep.delete_child(now, ha, spis.inbound);
        } else {
            p.b.ep.delete_child(now, hb, spis.outbound);
        }
        p.run_for(Duration::from_millis(50));
        assert!(
            p.a.events
                .iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { spis: s, .. } if *s == spis))
        );
        assert_eq!(
            count(&p.b, |e| matches!(e, Event::ChildSaDeleted { .. })),
            1
        );
        assert!(p.a.ep.child_sas(ha).is_empty() && p.b.ep.child_sas(hb).is_empty());
        assert!(
            p.a.ep.is_established(ha) && p.b.ep.is_established(hb),
            "the IKE SA stays"
        );
    }
}

#[test]
fn close_from_either_side() {
    for from_a in [true, false] {
        let mut p = Pair::ed25519();
        p.handshake();
        let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
        let now = p.now;
        if from_a {
            p.a.ep.close(now, ha);
        } else {
            p.b.ep.close(now, hb);
        }
        p.run_for(Duration::from_millis(50));
        let (closer, other) = if from_a { (&p.a, &p.b) } else { (&p.b, &p.a) };
        assert!(closer.events.iter().any(|e| matches!(
            e,
            Event::IkeSaDeleted {
                reason: Failure::Closed,
                ..
            }
        )));
        assert!(other.events.iter().any(|e| matches!(
            e,
            Event::IkeSaDeleted {
                reason: Failure::DeletedByPeer,
                ..
            }
        )));
        for node in [&p.a, &p.b] {
            // ChildSaDeleted comes before IkeSaDeleted.
            assert!(matches!(
                node.events.last(),
                Some(Event::IkeSaDeleted { .. })
            ));
            assert!(matches!(
                node.events[node.events.len() - 2],
                Event::ChildSaDeleted { .. }
            ));
            assert_eq!(node.ep.stats().ike_sas, 0);
            assert_eq!(node.ep.poll_timeout(), None);
        }
    }
}

#[test]
fn liveness_check_is_answered() {
    let mut p = Pair::ed25519();
    p.handshake();
    let (now, h) = (p.now, Pair::handle_of(&p.a, 0));
    let sent = (p.a.sent.len(), p.b.sent.len());
    p.a.ep.check_liveness(now, h);
    p.run_for(Duration::from_secs(5));
    assert_eq!((p.a.sent.len(), p.b.sent.len()), (sent.0 + 1, sent.1 + 1));
    assert!(p.a.ep.is_established(h));
    assert!(p.a.failures().is_empty());
}

#[test]
fn dpd_after_idle_interval() {
    let mut a = ed25519_config(1, A);
    a.dpd_interval = Some(Duration::from_secs(10));
    let mut p = Pair::new(a, ed25519_config(2, B));
    p.a.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(2))));
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
    p.handshake();
    let sent = p.a.sent.len();
    p.run_for(Duration::from_secs(35));
    assert_eq!(
        p.a.sent.len(),
        sent + 3,
        "one liveness check per idle interval"
    );
    assert!(p.a.ep.is_established(Pair::handle_of(&p.a, 0)));
}

#[test]
fn restarted_peer_replaces_its_old_sas() {
    let mut p = Pair::ed25519();
    p.handshake();
    let old_b = Pair::handle_of(&p.b, 0);
    // The initiator loses all state and connects again.
    p.a.ep = Endpoint::new(ed25519_config(1, A), [77; 32]);
    p.connect(Some(PeerAuth::ed25519(public(2))));
    assert!(p.run_until(Duration::from_secs(2), |p| p.b.established() == 2));
    assert!(p.b.events.iter().any(
        |e| matches!(e, Event::IkeSaDeleted { sa, reason: Failure::Replaced } if *sa == old_b)
    ));
    assert!(
        p.b.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { sa, .. } if *sa == old_b))
    );
    assert_eq!(p.b.ep.stats().ike_sas, 1);
    assert!(!p.b.ep.is_established(old_b));
}

#[test]
fn responder_restart_then_initiator_reconnects() {
    let mut p = Pair::ed25519();
    p.handshake();
    let old_a = Pair::handle_of(&p.a, 0);
    // The responder loses all state; the initiator's next exchange fails and it reconnects.
    p.b.ep = Endpoint::new(ed25519_config(2, B), [78; 32]);
    let now = p.now;
    p.a.ep.check_liveness(now, old_a);
    p.run_for(Duration::from_secs(31));
    assert!(p.a.events.iter().any(|e| matches!(
        e,
        Event::IkeSaDeleted {
            reason: Failure::Timeout { .. },
            ..
        }
    )));
    assert!(p.b.ep.stats().dropped >= 1, "unknown SPI dropped");
    p.connect(Some(PeerAuth::ed25519(public(2))));
    assert!(p.run_until(Duration::from_secs(2), |p| p.a.established() == 2));
}

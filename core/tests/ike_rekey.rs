//! CREATE_CHILD_SA: CHILD SA and IKE SA rekeys from either side, collisions,
//! and a rekey under steady ESP traffic that loses no packet.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::time::Duration;

use oemesh_core::ike::endpoint::Transmit;
use oemesh_core::ike::endpoint::{ChildSpis, Event};
use oemesh_core::ike::message::{ExchangeType, HeaderPacket};
use oemesh_core::ike::udp_encap::{Datagram, classify};
use support::datapath::DataPath;
use support::pair::*;

fn rekeyed(node: &Node) -> Vec<(ChildSpis, ChildSpis)> {
    node.events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaRekeyed { old, new, .. } => Some((*old, new.spis)),
            _ => None,
        })
        .collect()
}

fn deleted(node: &Node) -> Vec<ChildSpis> {
    node.events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaDeleted { spis, .. } => Some(*spis),
            _ => None,
        })
        .collect()
}

fn count(node: &Node, f: impl Fn(&Event) -> bool) -> usize {
    node.events.iter().filter(|e| f(e)).count()
}

/// Both sides' view of the live CHILD SAs agree and are exactly one pair.
fn one_pair(p: &Pair) -> ChildSpis {
    let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
    let (ca, cb) = (p.a.ep.child_sas(ha), p.b.ep.child_sas(hb));
    assert_eq!(ca.len(), 1, "a: {ca:?}");
    assert_eq!(cb.len(), 1, "b: {cb:?}");
    assert_eq!(ca[0].inbound, cb[0].outbound);
    assert_eq!(ca[0].outbound, cb[0].inbound);
    ca[0]
}

fn rekey_child_from(initiator_is_a: bool, pfs: bool) {
    let mut p = Pair::ed25519();
    p.handshake();
    if pfs {
        // Only the rekey's initiator decides whether a KE goes along.
        let _ = &mut p;
    }
    let first = one_pair(&p);
    let now = p.now;
    if initiator_is_a {
        let h = Pair::handle_of(&p.a, 0);
        p.a.ep.rekey_child(now, h, first.inbound);
    } else {
        let h = Pair::handle_of(&p.b, 0);
        p.b.ep.rekey_child(now, h, first.outbound);
    }
    p.run_for(Duration::from_secs(1));
    let second = one_pair(&p);
    assert_ne!(second, first);
    assert_eq!(rekeyed(&p.a), vec![(first, second)]);
    assert_eq!(deleted(&p.a), vec![first]);
    assert_eq!(deleted(&p.b).len(), 1);
    let (ca, cb) = (p.a.children(), p.b.children());
    let (na, nb) = (ca.last().unwrap(), cb.last().unwrap());
    assert_eq!(na.outbound_key.as_bytes(), nb.inbound_key.as_bytes());
    assert_eq!(na.inbound_key.as_bytes(), nb.outbound_key.as_bytes());
    assert_ne!(na.outbound_key.as_bytes(), ca[0].outbound_key.as_bytes());
}

#[test]
fn child_rekey_by_the_initiator() {
    rekey_child_from(true, false);
}

#[test]
fn child_rekey_by_the_responder() {
    rekey_child_from(false, false);
}

#[test]
fn child_rekey_with_and_without_pfs() {
    for pfs in [true, false] {
        let mut a = ed25519_config(1, A);
        a.pfs = pfs;
        let mut p = Pair::new(a, ed25519_config(2, B));
        p.a.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
            public(2),
        )));
        p.b.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
            public(1),
        )));
        p.handshake();
        let first = one_pair(&p);
        let (now, h) = (p.now, Pair::handle_of(&p.a, 0));
        p.a.ep.rekey_child(now, h, first.inbound);
        p.flush();
        let request = p.a.sent.last().unwrap().payload.len();
        p.run_for(Duration::from_secs(1));
        assert_ne!(one_pair(&p), first);
        // A KE payload (8 + 32 bytes) goes along only with PFS.
        let without = 4 + 28 + 8 + 8 + 16 + 1 + 12 + 8 + 40 + 4 + 32 + 2 * 24;
        assert_eq!(request > without + 30, pfs, "{request}");
        let ca = p.a.children();
        let cb = p.b.children();
        assert_eq!(
            ca.last().unwrap().outbound_key.as_bytes(),
            cb.last().unwrap().inbound_key.as_bytes()
        );
    }
}

#[test]
fn child_soft_lifetime_rekeys_on_its_own() {
    let mut a = ed25519_config(1, A);
    a.child_lifetime.soft.time = Some(Duration::from_secs(60));
    a.child_lifetime.hard.time = Some(Duration::from_secs(100));
    let mut b = ed25519_config(2, B);
    b.child_lifetime = a.child_lifetime;
    b.child_lifetime.soft.time = Some(Duration::from_secs(80));
    let mut p = Pair::new(a, b);
    p.a.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
        public(2),
    )));
    p.b.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
        public(1),
    )));
    p.handshake();
    let first = one_pair(&p);
    p.run_for(Duration::from_secs(62));
    assert_eq!(rekeyed(&p.a).len(), 1, "{:?}", p.a.events);
    assert_ne!(one_pair(&p), first);
    p.run_for(Duration::from_secs(200));
    assert!(rekeyed(&p.a).len() >= 3);
    one_pair(&p);
}

fn rekey_ike_from(initiator_is_a: bool) {
    let mut p = Pair::ed25519();
    p.handshake();
    let first = one_pair(&p);
    let now = p.now;
    let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
    if initiator_is_a {
        p.a.ep.rekey_ike(now, ha);
    } else {
        p.b.ep.rekey_ike(now, hb);
    }
    p.run_for(Duration::from_secs(1));
    for node in [&p.a, &p.b] {
        assert_eq!(
            count(node, |e| matches!(e, Event::IkeSaRekeyed { .. })),
            1,
            "{:?}",
            node.events
        );
        assert_eq!(
            count(node, |e| matches!(
                e,
                Event::IkeSaDeleted { .. } | Event::ChildSaDeleted { .. }
            )),
            0
        );
        assert_eq!(node.ep.stats().ike_sas, 1, "the old IKE SA is gone");
    }
    assert_eq!(one_pair(&p), first, "the CHILD SA moved to the new IKE SA");
    // The new IKE SA works: rekey the child over it, from the other side.
    let now = p.now;
    if initiator_is_a {
        p.b.ep.rekey_child(now, hb, first.outbound);
    } else {
        p.a.ep.rekey_child(now, ha, first.inbound);
    }
    p.run_for(Duration::from_secs(1));
    assert_ne!(one_pair(&p), first);
    assert!(p.a.ep.is_established(ha) && p.b.ep.is_established(hb));
}

#[test]
fn ike_rekey_by_the_initiator() {
    rekey_ike_from(true);
}

#[test]
fn ike_rekey_by_the_responder() {
    rekey_ike_from(false);
}

#[test]
fn ike_lifetime_rekeys_on_its_own() {
    let mut a = ed25519_config(1, A);
    a.ike_lifetime = Duration::from_secs(100);
    let mut p = Pair::new(a, ed25519_config(2, B));
    p.a.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
        public(2),
    )));
    p.b.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
        public(1),
    )));
    p.handshake();
    p.run_for(Duration::from_secs(350));
    assert!(count(&p.a, |e| matches!(e, Event::IkeSaRekeyed { .. })) >= 3);
    assert_eq!(count(&p.b, |e| matches!(e, Event::IkeSaDeleted { .. })), 0);
    one_pair(&p);
}

#[test]
fn simultaneous_child_rekey_leaves_one_pair() {
    for seed in 0..8u8 {
        let mut p = Pair::new(ed25519_config(1, A), ed25519_config(2, B));
        p.a.ep = oemesh_core::ike::endpoint::Endpoint::new(ed25519_config(1, A), [seed + 10; 32]);
        p.a.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
            public(2),
        )));
        p.b.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
            public(1),
        )));
        p.handshake();
        let first = one_pair(&p);
        let now = p.now;
        let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
        p.a.ep.rekey_child(now, ha, first.inbound);
        p.b.ep.rekey_child(now, hb, first.outbound);
        p.run_for(Duration::from_secs(2));
        let survivor = one_pair(&p);
        assert_ne!(survivor, first);
        let swapped = ChildSpis {
            inbound: first.outbound,
            outbound: first.inbound,
        };
        for (node, old) in [(&p.a, first), (&p.b, swapped)] {
            let r = rekeyed(node);
            assert_eq!(
                r.len(),
                1,
                "seed {seed}: exactly one rekey announced: {:?}",
                node.events
            );
            assert_eq!(r[0].0, old);
            assert!(deleted(node).contains(&old));
        }
        assert_eq!(rekeyed(&p.a)[0].1, survivor);
        assert!(p.a.failures().is_empty() && p.b.failures().is_empty());
    }
}

#[test]
fn simultaneous_ike_rekey_leaves_one_ike_sa() {
    for seed in 0..8u8 {
        let mut p = Pair::new(ed25519_config(1, A), ed25519_config(2, B));
        p.a.ep = oemesh_core::ike::endpoint::Endpoint::new(ed25519_config(1, A), [seed + 10; 32]);
        p.a.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
            public(2),
        )));
        p.b.authorizer = Authorizer::Answer(Some(oemesh_core::ike::endpoint::PeerAuth::ed25519(
            public(1),
        )));
        p.handshake();
        let first = one_pair(&p);
        let now = p.now;
        let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
        p.a.ep.rekey_ike(now, ha);
        p.b.ep.rekey_ike(now, hb);
        p.run_for(Duration::from_secs(2));
        for node in [&p.a, &p.b] {
            assert_eq!(node.ep.stats().ike_sas, 1, "seed {seed}: {:?}", node.events);
            assert_eq!(count(node, |e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
            assert!(node.failures().is_empty(), "{:?}", node.events);
        }
        assert_eq!(one_pair(&p), first);
        // And the survivor carries traffic: a CHILD SA rekey over it works.
        let now = p.now;
        p.a.ep.rekey_child(now, ha, first.inbound);
        p.run_for(Duration::from_secs(1));
        assert_ne!(one_pair(&p), first);
    }
}

/// Steady traffic both ways, one packet per virtual millisecond each way,
/// through ESP SAs installed from the events, while CHILD SA and IKE SA rekeys
/// happen from both sides. Every packet must decapsulate.
#[test]
fn rekey_under_traffic_loses_no_packet() {
    let mut p = Pair::ed25519();
    p.handshake();
    let (mut da, mut db) = (DataPath::new(), DataPath::new());
    let (ha, hb) = (Pair::handle_of(&p.a, 0), Pair::handle_of(&p.b, 0));
    let mut sent = [0u32; 2];
    let (mut recv_b, mut recv_a) = (Vec::new(), Vec::new());
    for ms in 0..400u32 {
        let now = p.now;
        match ms {
            50 => p.a.ep.rekey_child(now, ha, p.a.ep.child_sas(ha)[0].inbound),
            150 => p.b.ep.rekey_child(now, hb, p.b.ep.child_sas(hb)[0].inbound),
            200 => p.b.ep.rekey_ike(now, hb),
            250 => p.a.ep.rekey_ike(now, ha),
            300 => p.a.ep.rekey_child(now, ha, p.a.ep.child_sas(ha)[0].inbound),
            _ => {}
        }
        p.flush();
        da.apply(&p.a.events, p.now);
        db.apply(&p.b.events, p.now);
        for (i, (dp, from_a)) in [(&mut da, true), (&mut db, false)].into_iter().enumerate() {
            let esp = dp.seal(sent[i]).expect("an outbound SA is installed");
            sent[i] += 1;
            let (local, remote) = if from_a {
                (format!("{A}:4500"), format!("{B}:4500"))
            } else {
                (format!("{B}:4500"), format!("{A}:4500"))
            };
            p.send_raw(
                from_a,
                Transmit {
                    local: local.parse().unwrap(),
                    remote: remote.parse().unwrap(),
                    payload: esp,
                },
            );
        }
        p.run_for(Duration::from_millis(1));
        da.apply(&p.a.events, p.now);
        db.apply(&p.b.events, p.now);
        for (dp, rx, got) in [
            (&mut db, &mut p.b.esp_rx, &mut recv_b),
            (&mut da, &mut p.a.esp_rx, &mut recv_a),
        ] {
            for packet in rx.drain(..) {
                got.push(dp.open(packet).unwrap_or_else(|e| panic!("ms {ms}: {e}")));
            }
        }
    }
    p.run_for(Duration::from_millis(10));
    for (dp, rx, got) in [
        (&mut db, &mut p.b.esp_rx, &mut recv_b),
        (&mut da, &mut p.a.esp_rx, &mut recv_a),
    ] {
        for packet in rx.drain(..) {
            got.push(dp.open(packet).unwrap());
        }
    }
    assert_eq!(recv_b, (0..sent[0]).collect::<Vec<_>>());
    assert_eq!(recv_a, (0..sent[1]).collect::<Vec<_>>());
    assert_eq!(rekeyed(&p.a).len(), 3);
    assert_eq!(count(&p.a, |e| matches!(e, Event::IkeSaRekeyed { .. })), 2);
    one_pair(&p);
    // Old inbound SAs were removed once deleted.
    assert_eq!(da.inbound.len(), 1);
    assert_eq!(db.inbound.len(), 1);
}

#[test]
fn rekey_exchange_is_create_child_sa() {
    let mut p = Pair::ed25519();
    p.handshake();
    let first = one_pair(&p);
    let (now, h) = (p.now, Pair::handle_of(&p.a, 0));
    p.a.ep.rekey_child(now, h, first.inbound);
    p.flush();
    let t = p.a.sent.last().unwrap();
    let Datagram::Ike(m) = classify(&t.payload) else {
        panic!()
    };
    assert_eq!(
        HeaderPacket::new_checked(m).unwrap().exchange_type(),
        ExchangeType::CREATE_CHILD_SA
    );
}

//! IKE_SA_INIT + IKE_AUTH between two endpoints on a virtual link.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::time::{Duration, Instant};

use oemesh_core::crypto::AeadAlg;
use oemesh_core::esp::{HEADER_LEN, InboundSa, MAX_TRAILER_LEN, OutboundSa, SaConfig};
use oemesh_core::ike::endpoint::{ChildSa, Event, Failure, PeerAuth, PeerAuthenticated};
use oemesh_core::ike::message::Identity;
use support::pair::*;

/// A minimal IPv4 header so the ESP layer sees an IP packet.
pub fn ipv4_packet(n: u32) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 24, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ];
    p.extend_from_slice(&n.to_be_bytes());
    p
}

/// One packet each way through ESP SAs built from the two sides' events.
fn esp_round_trip(a: &ChildSa, b: &ChildSa) {
    assert_eq!(a.spis.inbound, b.spis.outbound);
    assert_eq!(a.spis.outbound, b.spis.inbound);
    assert_eq!(a.alg, b.alg);
    assert_eq!(a.esn, b.esn);
    let now = Instant::now();
    for (from, to) in [(a, b), (b, a)] {
        let cfg = |spi, c: &ChildSa| SaConfig {
            spi,
            alg: c.alg,
            provider: Default::default(),
            esn: c.esn,
            limits: c.lifetime,
        };
        let mut out = OutboundSa::new(cfg(from.spis.outbound, from), &from.outbound_key, now);
        let mut inb = InboundSa::new(cfg(to.spis.inbound, to), &to.inbound_key, now);
        let inner = ipv4_packet(7);
        let mut buf = vec![0u8; HEADER_LEN + inner.len() + MAX_TRAILER_LEN];
        buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
        let len = out.encapsulate(&mut buf, inner.len()).unwrap();
        let d = inb.decapsulate(&mut buf[..len]).unwrap();
        assert_eq!(&buf[d.inner], &inner[..]);
    }
}

#[test]
fn every_aead_combination_with_ed25519() {
    for ike in AeadAlg::ALL {
        for esp in AeadAlg::ALL {
            let mut a = ed25519_config(1, A);
            a.ike_algs = vec![ike];
            a.esp_algs = vec![esp];
            let mut p = Pair::new(a, ed25519_config(2, B));
            p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
            p.handshake();
            let (ca, cb) = (p.a.children(), p.b.children());
            assert_eq!((ca.len(), cb.len()), (1, 1));
            assert_eq!(ca[0].alg, esp);
            assert!(ca[0].esn, "ESN is preferred");
            esp_round_trip(ca[0], cb[0]);
            assert!(matches!(
                &p.a.events[0],
                Event::IkeSaEstablished {
                    auth: PeerAuthenticated::Ed25519,
                    initiator: true,
                    peer_id: Identity::Ipv4(_),
                    ..
                }
            ));
            let ok = p.b.events.iter().any(|e| {
                matches!(
                    e,
                    Event::IkeSaEstablished {
                        auth: PeerAuthenticated::Ed25519,
                        initiator: false,
                        ..
                    }
                )
            });
            assert!(ok, "{:?}", p.b.events);
            // IKE_SA_INIT on 500 without marker, everything after on 4500 with it.
            assert_eq!(p.a.sent[0].local.port(), 500);
            assert_eq!(p.a.sent[1].local.port(), 4500);
            assert_eq!(&p.a.sent[1].payload[..4], &[0, 0, 0, 0]);
            assert_eq!(ca[0].local.port(), 4500);
            assert_eq!(ca[0].remote.port(), 4500);
            assert_eq!(ca[0].local_ts, p.host_ts().local);
            assert_eq!(ca[0].remote_ts, p.host_ts().remote);
        }
    }
}

#[test]
fn null_initiator_accepted_by_a_null_policy() {
    let mut p = Pair::new(null_config(), ed25519_config(2, B));
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::Null));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    assert!(
        p.run_until(Duration::from_secs(3), |p| p.a.established() == 1
            && p.b.established() == 1)
    );
    let asked = p.b.events.iter().any(|e| {
        matches!(
            e,
            Event::AuthorizePeer {
                id: Identity::Null,
                null_auth: true,
                ..
            }
        )
    });
    assert!(asked);
    assert!(p.b.events.iter().any(|e| matches!(
        e,
        Event::IkeSaEstablished {
            auth: PeerAuthenticated::Null,
            ..
        }
    )));
    esp_round_trip(p.a.children()[0], p.b.children()[0]);
}

#[test]
fn null_both_ways() {
    let mut p = Pair::new(null_config(), null_config());
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::Null));
    p.connect(Some(PeerAuth::Null));
    assert!(
        p.run_until(Duration::from_secs(3), |p| p.a.established() == 1
            && p.b.established() == 1)
    );
}

#[test]
fn initiator_key_arrives_late() {
    let mut p = Pair::ed25519();
    p.a.authorizer = Authorizer::Manual;
    let h = p.connect(None);
    assert!(p.run_until(Duration::from_secs(1), |p| {
        p.a.events
            .iter()
            .any(|e| matches!(e, Event::AuthorizePeer { .. }))
    }));
    let Event::AuthorizePeer {
        sa, id, null_auth, ..
    } = &p.a.events[0]
    else {
        panic!()
    };
    assert_eq!(
        (*sa, id.clone(), *null_auth),
        (h, Identity::Ipv4(B.parse().unwrap()), false)
    );
    p.run_for(Duration::from_millis(300));
    assert_eq!(p.a.established(), 0);
    let now = p.now;
    p.a.ep.authorize(now, h, Some(PeerAuth::ed25519(public(2))));
    p.flush();
    assert_eq!(p.a.established(), 1);
    esp_round_trip(p.a.children()[0], p.b.children()[0]);
}

#[test]
fn initiator_authorization_times_out_at_the_deadline() {
    let mut p = Pair::ed25519();
    p.a.authorizer = Authorizer::Manual;
    p.connect(None);
    p.run_for(Duration::from_secs(3));
    assert_eq!(p.a.failures().len(), 1, "{:?}", p.a.events);
    assert_eq!(p.a.ep.stats().ike_sas, 0);
}

#[test]
fn responder_given_the_wrong_key_answers_authentication_failed() {
    let mut p = Pair::ed25519();
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(3))));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_for(Duration::from_secs(3));
    let f = p.a.failures();
    assert_eq!(f.len(), 1);
    assert!(f[0].contains("AUTHENTICATION_FAILED"), "{f:?}");
    assert_eq!(p.b.established(), 0);
    assert_eq!(p.b.ep.stats().auth_failures, 1);
    assert_eq!(p.b.ep.stats().ike_sas, 0);
}

#[test]
fn initiator_given_the_wrong_key_fails() {
    let mut p = Pair::ed25519();
    p.connect(Some(PeerAuth::ed25519(public(3))));
    p.run_for(Duration::from_secs(3));
    assert!(
        matches!(
            p.a.events.as_slice(),
            [Event::Failed {
                reason: Failure::AuthenticationFailed(_),
                ..
            }]
        ),
        "{:?}",
        p.a.events
    );
    assert_eq!(p.a.ep.stats().ike_sas, 0);
    // The responder had installed its side; the initiator's Delete removes it
    // (RFC 7296 §2.21.2), so it does not keep a dead SA (and drop our
    // cleartext as a private peer's).
    assert_eq!(p.b.ep.stats().ike_sas, 0, "{:?}", p.b.events);
}

#[test]
fn responder_refuses_in_authorize() {
    let mut p = Pair::ed25519();
    p.b.authorizer = Authorizer::Answer(None);
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_for(Duration::from_secs(3));
    assert!(matches!(
        p.a.events.as_slice(),
        [Event::Failed {
            reason: Failure::PeerRefused(_),
            ..
        }]
    ));
    assert_eq!(p.b.ep.stats().ike_sas, 0);
}

#[test]
fn signature_without_a_key_is_refused() {
    let mut p = Pair::ed25519();
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::Null));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_for(Duration::from_secs(3));
    assert_eq!(p.a.failures().len(), 1);
}

#[test]
fn failure_sentences() {
    let f = Failure::Timeout {
        exchange: "IKE_SA_INIT",
        sends: 4,
    };
    assert_eq!(f.to_string(), "no response to IKE_SA_INIT after 4 sends");
}

//! Loss, retransmission, the responder's response cache, COOKIE,
//! INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN, half-open limits and hostile input.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use oemesh_core::crypto::AeadAlg;
use oemesh_core::ike::endpoint::{Event, Failure, PeerAuth, Transmit};
use oemesh_core::ike::message::*;
use oemesh_core::ike::udp_encap::{Datagram, classify};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use support::pair::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An IKE_SA_INIT request as a foreign initiator would send it.
fn init_request(spi_i: u64, group: DhGroup, cookie: Option<Vec<u8>>) -> Vec<u8> {
    let mut payloads = Vec::new();
    if let Some(c) = cookie {
        payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c)));
    }
    payloads.push(Payload::Sa(Sa {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: vec![],
            transforms: vec![
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::CURVE25519),
                Transform::dh(DhGroup::ECP_256),
            ],
        }],
    }));
    payloads.push(Payload::Ke(Ke {
        group,
        data: vec![9; if group == DhGroup::CURVE25519 { 32 } else { 64 }],
    }));
    payloads.push(Payload::Nonce(Nonce(vec![5; 32])));
    let m = Message::new(
        Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0),
        payloads,
    );
    let mut out = Vec::new();
    m.emit(&mut out);
    out
}

fn to_b(payload: Vec<u8>) -> Transmit {
    Transmit {
        local: addr("192.0.2.1:500"),
        remote: addr("192.0.2.2:500"),
        payload,
    }
}

/// The IKE message of the `n`th datagram a node sent.
fn sent_message(node: &Node, n: usize) -> Message {
    let t = &node.sent[n];
    let bytes = if t.local.port() == 500 {
        &t.payload[..]
    } else {
        let Datagram::Ike(m) = classify(&t.payload) else {
            panic!()
        };
        m
    };
    Message::parse(bytes).unwrap()
}

#[test]
fn first_packets_lost_still_completes() {
    for lost in 1..=3usize {
        let mut p = Pair::ed25519();
        p.drop_fn = Some(Box::new(move |from_a, i, _| from_a && i < lost));
        p.connect(Some(PeerAuth::ed25519(public(2))));
        assert!(
            p.run_until(Duration::from_secs(2), |p| p.a.established() == 1),
            "lost {lost}: {:?}",
            p.a.events
        );
        assert_eq!(p.b.ep.stats().ike_sas, 1);
    }
}

#[test]
fn lost_responses_are_answered_from_the_cache() {
    let mut p = Pair::ed25519();
    // Drop b's IKE_SA_INIT response once and its IKE_AUTH response once.
    p.drop_fn = Some(Box::new(|from_a, i, _| !from_a && (i == 0 || i == 2)));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    assert!(p.run_until(Duration::from_secs(2), |p| p.a.established() == 1));
    assert_eq!(
        p.b.established(),
        1,
        "the responder did not create a second SA"
    );
    assert_eq!(p.b.ep.stats().ike_sas, 1);
    assert_eq!(p.b.ep.stats().established, 1);
    let auth_requests = p.a.sent.iter().filter(|t| t.local.port() == 4500).count();
    assert!(auth_requests >= 2, "IKE_AUTH was retransmitted");
    // The cached response went out again, byte for byte.
    assert_eq!(p.b.sent[0].payload, p.b.sent[1].payload);
    assert_eq!(p.b.sent[2].payload, p.b.sent[3].payload);
}

#[test]
fn duplicated_and_reordered_link() {
    let mut p = Pair::ed25519();
    p.duplicate = 0.5;
    p.reorder = 0.3;
    p.handshake();
    p.run_for(Duration::from_secs(1));
    assert_eq!((p.a.ep.stats().ike_sas, p.b.ep.stats().ike_sas), (1, 1));
    assert_eq!(p.b.established(), 1);
}

#[test]
fn dead_peer_times_out_at_the_deadline() {
    let mut p = Pair::ed25519();
    p.drop_fn = Some(Box::new(|_, _, _| true));
    let t0 = p.now;
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_for(Duration::from_secs(5));
    assert!(
        matches!(
            p.a.events.as_slice(),
            [Event::Failed {
                reason: Failure::Timeout {
                    exchange: "IKE_SA_INIT",
                    sends: 4
                },
                ..
            }]
        ),
        "{:?}",
        p.a.events
    );
    assert_eq!(
        p.a.failures()[0],
        "no response to IKE_SA_INIT after 4 sends"
    );
    assert_eq!(p.a.sent.len(), 4);
    assert_eq!(p.a.ep.stats().ike_sas, 0);
    assert_eq!(p.a.ep.poll_timeout(), None);
    let _ = t0;
}

#[test]
fn peer_dying_after_the_handshake_ends_the_sa() {
    let mut p = Pair::ed25519();
    p.handshake();
    p.drop_fn = Some(Box::new(|_, _, _| true));
    let (now, h) = (p.now, Pair::handle_of(&p.a, 0));
    p.a.ep.check_liveness(now, h);
    p.run_for(Duration::from_secs(40));
    assert!(p.a.events.iter().any(|e| matches!(
        e,
        Event::IkeSaDeleted {
            reason: Failure::Timeout { .. },
            ..
        }
    )));
    assert!(
        p.a.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { .. }))
    );
}

#[test]
fn cookie_above_the_threshold() {
    let mut b = ed25519_config(2, B);
    b.cookie_threshold = 0;
    let mut p = Pair::new(ed25519_config(1, A), b);
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    assert!(
        p.run_until(Duration::from_secs(2), |p| p.a.established() == 1
            && p.b.established() == 1)
    );
    assert_eq!(p.b.ep.stats().cookies_sent, 1);
    // The second request starts with the cookie.
    let second = sent_message(&p.a, 1);
    assert!(matches!(&second.payloads[0], Payload::Notify(n) if n.ty == NotifyType::COOKIE));
    // The cookie answer held no state.
    let first = sent_message(&p.b, 0);
    assert_eq!(first.payloads.len(), 1);
}

#[test]
fn cookie_needed_once_half_open_sas_pile_up() {
    let mut b = ed25519_config(2, B);
    b.cookie_threshold = 2;
    let mut p = Pair::new(ed25519_config(1, A), b);
    for spi in 1..=2 {
        p.send_raw(true, to_b(init_request(spi, DhGroup::CURVE25519, None)));
    }
    p.run_for(Duration::from_millis(5));
    assert_eq!(p.b.ep.stats().half_open, 2);
    assert_eq!(p.b.ep.stats().cookies_sent, 0);
    p.send_raw(true, to_b(init_request(3, DhGroup::CURVE25519, None)));
    p.run_for(Duration::from_millis(5));
    assert_eq!(
        p.b.ep.stats().half_open,
        2,
        "no state for a request without cookie"
    );
    assert_eq!(p.b.ep.stats().cookies_sent, 1);
    let answer = sent_message(&p.b, 2);
    let Some(Payload::Notify(cookie)) = answer.payloads.first() else {
        panic!()
    };
    assert_eq!(cookie.ty, NotifyType::COOKIE);
    // A wrong cookie gets a fresh one, the right one gets an SA.
    p.send_raw(
        true,
        to_b(init_request(3, DhGroup::CURVE25519, Some(vec![0; 33]))),
    );
    p.run_for(Duration::from_millis(5));
    assert_eq!(p.b.ep.stats().cookies_sent, 2);
    p.send_raw(
        true,
        to_b(init_request(
            3,
            DhGroup::CURVE25519,
            Some(cookie.data.clone()),
        )),
    );
    p.run_for(Duration::from_millis(5));
    assert_eq!(p.b.ep.stats().half_open, 3);
    // Half-open SAs expire.
    p.run_for(Duration::from_secs(6));
    assert_eq!(p.b.ep.stats().half_open, 0);
    assert_eq!(p.b.ep.stats().ike_sas, 0);
}

#[test]
fn half_open_limit_drops() {
    let mut b = ed25519_config(2, B);
    b.half_open_limit = 2;
    let mut p = Pair::new(ed25519_config(1, A), b);
    for spi in 1..=3 {
        p.send_raw(true, to_b(init_request(spi, DhGroup::CURVE25519, None)));
    }
    p.run_for(Duration::from_millis(5));
    assert_eq!(p.b.ep.stats().half_open, 2);
    assert_eq!(p.b.ep.stats().dropped, 1);
    assert_eq!(p.b.sent.len(), 2);
}

#[test]
fn invalid_ke_payload_names_group_31() {
    let mut p = Pair::ed25519();
    p.send_raw(true, to_b(init_request(7, DhGroup::ECP_256, None)));
    p.run_for(Duration::from_millis(5));
    let answer = sent_message(&p.b, 0);
    let n = answer
        .notify(NotifyType::INVALID_KE_PAYLOAD)
        .expect("INVALID_KE_PAYLOAD");
    assert_eq!(n.requested_group(), Some(DhGroup::CURVE25519));
    assert_eq!(answer.header.spi_r, 0);
    assert_eq!(p.b.ep.stats().ike_sas, 0);
}

#[test]
fn initiator_fails_readably_when_asked_for_an_unsupported_group() {
    let mut p = Pair::ed25519();
    p.drop_fn = Some(Box::new(|from_a, _, _| from_a));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    let request = sent_message(&p.a, 0);
    let answer = Message::new(
        Header::new(
            request.header.spi_i,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags::RESPONSE,
            0,
        ),
        vec![Payload::Notify(Notify::invalid_ke_payload(
            DhGroup::ECP_256,
        ))],
    );
    let mut bytes = Vec::new();
    answer.emit(&mut bytes);
    let now = p.now;
    p.a.ep
        .handle(now, addr("192.0.2.1:500"), addr("192.0.2.2:500"), &bytes);
    p.flush();
    let f = p.a.failures();
    assert_eq!(f.len(), 1);
    assert!(
        f[0].contains("ECP_256") && f[0].contains("does not support"),
        "{f:?}"
    );
}

#[test]
fn no_proposal_chosen() {
    let mut a = ed25519_config(1, A);
    a.ike_algs = vec![AeadAlg::ChaCha20Poly1305];
    let mut b = ed25519_config(2, B);
    b.ike_algs = vec![AeadAlg::Aes256Gcm];
    let mut p = Pair::new(a, b);
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_for(Duration::from_secs(1));
    assert!(matches!(
        p.a.events.as_slice(),
        [Event::Failed {
            reason: Failure::NoProposalChosen,
            ..
        }]
    ));
    assert_eq!(p.b.ep.stats().ike_sas, 0);
}

#[test]
fn esp_no_proposal_chosen_fails_the_connect() {
    let mut a = ed25519_config(1, A);
    a.esp_algs = vec![AeadAlg::ChaCha20Poly1305];
    let mut b = ed25519_config(2, B);
    b.esp_algs = vec![AeadAlg::Aes256Gcm];
    let mut p = Pair::new(a, b);
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_for(Duration::from_secs(1));
    let f = p.a.failures();
    assert!(f.len() == 1 && f[0].contains("NO_PROPOSAL_CHOSEN"), "{f:?}");
    assert_eq!(p.a.ep.stats().ike_sas, 0);
    // The initiator told the responder the IKE SA is gone.
    assert_eq!(p.b.ep.stats().ike_sas, 0);
}

#[test]
fn ts_unacceptable() {
    let mut p = Pair::ed25519();
    let ts = oemesh_core::ike::endpoint::TrafficSelectors {
        local: vec![AddrSelector::host("198.51.100.1".parse().unwrap())],
        remote: vec![AddrSelector::host(p.b.ip)],
    };
    let (now, deadline) = (p.now, p.now + Duration::from_secs(2));
    p.a.ep.connect(
        now,
        p.a.ip,
        p.b.ip,
        Some(PeerAuth::ed25519(public(2))),
        ts,
        deadline,
    );
    p.run_for(Duration::from_secs(1));
    let f = p.a.failures();
    assert!(f.len() == 1 && f[0].contains("TS_UNACCEPTABLE"), "{f:?}");
}

#[test]
fn garbage_is_dropped_and_counted() {
    let mut p = Pair::ed25519();
    p.handshake();
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let valid = p.a.sent.clone();
    let before = (p.a.ep.stats().dropped, p.b.ep.stats().dropped);
    let mut fed = 0;
    for i in 0..2000 {
        let len = (rng.next_u32() % 300) as usize;
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        if i % 3 == 0 {
            // A truncated or bit-flipped copy of a real message.
            let t = &valid[i % valid.len()];
            let Datagram::Ike(m) = classify(&t.payload) else {
                continue;
            };
            bytes = m.to_vec();
            let cut = rng.next_u32() as usize % bytes.len();
            if i % 2 == 0 {
                bytes.truncate(cut);
            } else {
                bytes[cut] ^= 1 << (rng.next_u32() % 8);
            }
        }
        let now = p.now;
        p.b.ep
            .handle(now, addr("192.0.2.2:4500"), addr("192.0.2.1:4500"), &bytes);
        p.a.ep
            .handle(now, addr("192.0.2.1:4500"), addr("192.0.2.2:4500"), &bytes);
        fed += 1;
        p.flush();
    }
    assert!(p.a.ep.stats().dropped > before.0 + fed / 2);
    assert!(p.b.ep.stats().dropped > before.1 + fed / 2);
    assert_eq!(p.a.ep.stats().established, 1);
    assert!(p.a.failures().is_empty());
}

#[test]
fn tampered_ike_auth_is_dropped_and_counted() {
    let mut p = Pair::ed25519();
    // Flip one bit of the first IKE_AUTH request in flight.
    let mut tampered = false;
    p.drop_fn = Some(Box::new(move |from_a, i, _| {
        from_a && i == 1 && !std::mem::replace(&mut tampered, true)
    }));
    p.connect(Some(PeerAuth::ed25519(public(2))));
    p.run_until(Duration::from_millis(5), |p| p.a.sent.len() >= 2);
    let mut t = p.a.sent[1].clone();
    let last = t.payload.len() - 5;
    t.payload[last] ^= 0x40;
    p.send_raw(true, t);
    assert!(p.run_until(Duration::from_secs(2), |p| p.a.established() == 1));
    assert_eq!(p.b.ep.stats().auth_failures, 1);
    assert!(p.b.ep.stats().dropped >= 1);
    assert_eq!(p.b.established(), 1);
}

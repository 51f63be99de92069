//! The responder answers strongSwan 5.9.8's real IKE_SA_INIT requests
//! (`tests/data/strongswan-*`) with the transforms strongSwan asked for first.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

use std::time::Instant;

use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config, Endpoint, LocalAuth};
use oemesh_core::ike::message::*;

fn answer(fixture: &str) -> Message {
    let request = std::fs::read(format!(
        "{}/tests/data/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let config = Config::new(
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[2; 32])),
        Identity::fqdn("b.oemesh.test"),
    );
    let mut ep = Endpoint::new(config, [1; 32]);
    ep.handle(
        Instant::now(),
        "192.0.2.2:500".parse().unwrap(),
        "192.0.2.1:500".parse().unwrap(),
        &request,
    );
    let t = ep.poll_transmit().expect("an answer");
    assert_eq!(t.remote.port(), 500);
    assert_eq!(ep.stats().half_open, 1);
    Message::parse(&t.payload).unwrap()
}

#[test]
fn answers_strongswan_aes_gcm_request() {
    for (fixture, encr) in [
        ("strongswan-ike_sa_init-req.bin", EncrId::AES_GCM_16),
        (
            "strongswan-chacha-ike_sa_init-req.bin",
            EncrId::CHACHA20_POLY1305,
        ),
    ] {
        let m = answer(fixture);
        let Some(Payload::Sa(sa)) = m.payload(PayloadType::SA) else {
            panic!("{m:?}")
        };
        let encrs: Vec<_> = sa.proposals[0]
            .transforms_of(TransformType::ENCR)
            .map(|t| EncrId(t.id))
            .collect();
        assert_eq!(encrs, [encr]);
        assert!(m.payload(PayloadType::KE).is_some() && m.payload(PayloadType::NONCE).is_some());
        assert!(m.notify(NotifyType::NAT_DETECTION_SOURCE_IP).is_some());
        assert!(m.notify(NotifyType::NAT_DETECTION_DESTINATION_IP).is_some());
        let algs = m
            .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .unwrap()
            .hash_algorithms()
            .unwrap();
        assert!(algs.contains(&HashAlgorithm::IDENTITY));
        assert!(m.header.flags.response() && !m.header.flags.initiator());
        assert_ne!(m.header.spi_r, 0);
    }
}

//! The codec against real strongSwan 5.9.8 messages (see `data/strongswan-README.md`):
//! every captured IKE message parses fully and re-emits byte for byte, and the
//! IKE_AUTH messages open with the logged SK_e keys and re-seal identically.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use oemesh_core::ike::message::*;

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(prefix: &str, name: &str) -> Vec<u8> {
    let text = String::from_utf8(data(&format!("{prefix}keys.txt"))).unwrap();
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim_start().strip_prefix('=')))
        .unwrap_or_else(|| panic!("{name} not in keys.txt"))
        .trim();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// An IKE AEAD with the RFC 5282 / RFC 7634 nonce: salt (last 4 key bytes) ‖ IV.
enum Aead {
    Gcm(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

struct RealCipher {
    aead: Aead,
    salt: [u8; 4],
}

impl RealCipher {
    fn new(chacha: bool, keymat: &[u8]) -> Self {
        let (k, salt) = keymat.split_at(32);
        let aead = if chacha {
            Aead::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(k).unwrap()))
        } else {
            Aead::Gcm(Box::new(Aes256Gcm::new_from_slice(k).unwrap()))
        };
        Self { aead, salt: salt.try_into().unwrap() }
    }

    fn nonce(&self, iv: &[u8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(iv);
        n
    }
}

impl SkCipher for RealCipher {
    fn iv_len(&self) -> usize {
        8
    }
    fn icv_len(&self) -> usize {
        16
    }
    fn block_size(&self) -> usize {
        1
    }
    fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let n = self.nonce(iv);
        match &self.aead {
            Aead::Gcm(a) => a.encrypt_in_place((&n).into(), aad, buf),
            Aead::ChaCha(a) => a.encrypt_in_place((&n).into(), aad, buf),
        }
        .map_err(|_| CryptoError::InvalidLength)
    }
    fn open(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let n = self.nonce(iv);
        match &self.aead {
            Aead::Gcm(a) => a.decrypt_in_place((&n).into(), aad, buf),
            Aead::ChaCha(a) => a.decrypt_in_place((&n).into(), aad, buf),
        }
        .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

fn types(m: &Message) -> Vec<PayloadType> {
    m.payloads.iter().map(Payload::payload_type).collect()
}

fn reemit(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.emit(&mut out);
    assert_eq!(out.len(), m.buffer_len());
    out
}

const PREFIXES: [(&str, bool); 2] = [("strongswan-", false), ("strongswan-chacha-", true)];

#[test]
fn ike_sa_init_request_parses_and_reemits_identically() {
    for (prefix, chacha) in PREFIXES {
        let bytes = data(&format!("{prefix}ike_sa_init-req.bin"));
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(reemit(&m), bytes, "{prefix}");
        assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
        assert!(m.header.flags.initiator() && !m.header.flags.response());
        assert_eq!((m.header.spi_r, m.header.message_id), (0, 0));
        use PayloadType as P;
        assert_eq!(types(&m), [P::SA, P::KE, P::NONCE, P::NOTIFY, P::NOTIFY, P::NOTIFY, P::NOTIFY, P::NOTIFY]);
        let notifies: Vec<_> = m.notifies().map(|n| n.ty).collect();
        assert_eq!(
            notifies,
            [
                NotifyType::NAT_DETECTION_SOURCE_IP,
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                NotifyType::FRAGMENTATION_SUPPORTED,
                NotifyType::SIGNATURE_HASH_ALGORITHMS,
                NotifyType::REDIRECT_SUPPORTED,
            ]
        );
        let hashes = m.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS).unwrap().hash_algorithms().unwrap();
        assert!(hashes.contains(&HashAlgorithm::IDENTITY), "{hashes:?}");

        let Some(Payload::Sa(sa)) = m.payload(PayloadType::SA) else { panic!() };
        assert_eq!(sa.proposals.len(), 2);
        let first = &sa.proposals[0];
        assert_eq!((first.number, first.protocol, first.spi.len()), (1, ProtocolId::IKE, 0));
        let encr = first.transforms_of(TransformType::ENCR).next().unwrap();
        if chacha {
            assert_eq!((EncrId(encr.id), encr.key_length()), (EncrId::CHACHA20_POLY1305, None));
        } else {
            assert_eq!((EncrId(encr.id), encr.key_length()), (EncrId::AES_GCM_16, Some(256)));
        }
        let dh = first.transforms_of(TransformType::DH).next().unwrap();
        assert_eq!(DhGroup(dh.id), DhGroup::CURVE25519);

        let Some(Payload::Ke(ke)) = m.payload(PayloadType::KE) else { panic!() };
        assert_eq!((ke.group, ke.data.clone()), (DhGroup::CURVE25519, key(prefix, "ke_i")));
        let Some(Payload::Nonce(nonce)) = m.payload(PayloadType::NONCE) else { panic!() };
        assert_eq!(nonce.0, key(prefix, "ni"));
    }
}

#[test]
fn ike_sa_init_response_parses_and_reemits_identically() {
    for (prefix, chacha) in PREFIXES {
        let bytes = data(&format!("{prefix}ike_sa_init-resp.bin"));
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(reemit(&m), bytes, "{prefix}");
        assert!(m.header.flags.response() && !m.header.flags.initiator());
        assert_ne!(m.header.spi_r, 0);
        let Some(Payload::Sa(sa)) = m.payload(PayloadType::SA) else { panic!() };
        assert_eq!(sa.proposals.len(), 1, "a response chooses one proposal");
        let encr = sa.proposals[0].transforms_of(TransformType::ENCR).next().unwrap();
        let want = if chacha { EncrId::CHACHA20_POLY1305 } else { EncrId::AES_GCM_16 };
        assert_eq!(EncrId(encr.id), want);
        let Some(Payload::Ke(ke)) = m.payload(PayloadType::KE) else { panic!() };
        assert_eq!(ke.data, key(prefix, "ke_r"));
        let Some(Payload::Nonce(nonce)) = m.payload(PayloadType::NONCE) else { panic!() };
        assert_eq!(nonce.0, key(prefix, "nr"));
        for ty in [
            NotifyType::NAT_DETECTION_SOURCE_IP,
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            NotifyType::FRAGMENTATION_SUPPORTED,
            NotifyType::SIGNATURE_HASH_ALGORITHMS,
            NotifyType::CHILDLESS_IKEV2_SUPPORTED,
            NotifyType::MULTIPLE_AUTH_SUPPORTED,
        ] {
            assert!(m.notify(ty).is_some(), "{prefix}: {ty:?} missing");
        }
    }
}

/// Opens an IKE_AUTH message, checks its payloads, and re-seals it with the same IV.
fn ike_auth(prefix: &str, chacha: bool, file: &str, key_name: &str) -> Message {
    let bytes = data(&format!("{prefix}{file}"));
    let sealed = Message::parse(&bytes).unwrap();
    assert_eq!(reemit(&sealed), bytes, "{prefix}{file} sealed");
    assert_eq!(types(&sealed), [PayloadType::SK]);

    let cipher = RealCipher::new(chacha, &key(prefix, key_name));
    let m = Message::parse_protected(&bytes, &cipher).unwrap();
    let Some(Payload::Sk(sk)) = sealed.payloads.last() else { panic!() };
    let mut out = vec![0xee]; // bytes already in the buffer stay in front
    Message::emit_protected(&m.header, &m.payloads, &cipher, &sk.body[..8], &mut out).unwrap();
    assert_eq!(out[0], 0xee);
    assert_eq!(out[1..], bytes[..], "{prefix}{file} re-sealed");

    let mut tampered = bytes.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let err = Message::parse_protected(&tampered, &cipher).unwrap_err();
    assert_eq!(err, Error::Crypto(CryptoError::AuthenticationFailed));
    assert_eq!(err.notify_type(), None, "an ICV failure is dropped silently");
    m
}

#[test]
fn ike_auth_opens_and_reseals_identically() {
    use PayloadType as P;
    for (prefix, chacha) in PREFIXES {
        let req = ike_auth(prefix, chacha, "ike_auth-req.bin", "sk_ei");
        assert_eq!(req.header.exchange, ExchangeType::IKE_AUTH);
        assert_eq!(req.header.message_id, 1);
        assert_eq!(&types(&req)[..7], [P::IDI, P::NOTIFY, P::IDR, P::AUTH, P::SA, P::TSI, P::TSR]);
        let Some(Payload::IdI(idi)) = req.payload(P::IDI) else { panic!() };
        assert_eq!(*idi, Identity::Other { ty: IdType::RFC822_ADDR, data: b"a@oemesh.test".to_vec() });
        assert!(req.notify(NotifyType::INITIAL_CONTACT).is_some());
        let Some(Payload::Auth(auth)) = req.payload(P::AUTH) else { panic!() };
        let (alg, sig) = auth.signature_parts().unwrap();
        assert_eq!((alg, sig.len()), (&ED25519_ALGORITHM_IDENTIFIER[..], 64));
        let Some(Payload::TsI(tsi)) = req.payload(P::TSI) else { panic!() };
        assert_eq!(tsi.selectors, [TrafficSelector::Addr(AddrSelector::host("10.1.0.1".parse().unwrap()))]);
        let Some(Payload::Sa(sa)) = req.payload(P::SA) else { panic!() };
        assert_eq!((sa.proposals[0].protocol, sa.proposals[0].spi.len()), (ProtocolId::ESP, 4));

        let resp = ike_auth(prefix, chacha, "ike_auth-resp.bin", "sk_er");
        assert_eq!(&types(&resp)[..5], [P::IDR, P::AUTH, P::SA, P::TSI, P::TSR]);
        let Some(Payload::TsR(tsr)) = resp.payload(P::TSR) else { panic!() };
        assert_eq!(tsr.selectors, [TrafficSelector::Addr(AddrSelector::host("10.2.0.1".parse().unwrap()))]);
    }
}

#[test]
fn wrong_key_is_an_integrity_failure() {
    let bytes = data("strongswan-ike_auth-req.bin");
    let cipher = RealCipher::new(false, &key("strongswan-", "sk_er"));
    assert_eq!(
        Message::parse_protected(&bytes, &cipher).unwrap_err(),
        Error::Crypto(CryptoError::AuthenticationFailed)
    );
}

//! The key schedule reproduces a real strongSwan 5.9.8 IKE SA, from the inputs
//! its level-4 log printed (`data/strongswan-README.md` says how the captures
//! were made): SKEYSEED, every SK_*, the first CHILD SA's KEYMAT; then the keys
//! open strongSwan's IKE_AUTH messages and the Ed25519 AUTH payloads inside
//! verify over the octets [`signed_octets`] builds.

use std::collections::HashMap;

use base64::Engine as _;
use oemesh_core::crypto::ed25519::Ed25519PublicKey;
use oemesh_core::crypto::x25519::SharedSecret;
use oemesh_core::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use oemesh_core::ike::keys::{ChildSaKeys, IkeSaKeys, Side, Skeyseed, signed_octets};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).expect("fixture")
}

fn keys_txt(prefix: &str) -> HashMap<String, Vec<u8>> {
    let text = String::from_utf8(read(&format!("{prefix}keys.txt"))).expect("utf-8");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("name = hex");
            (k.trim().to_string(), hex(v.trim()))
        })
        .collect()
}

fn public_key(name: &str) -> Ed25519PublicKey {
    let pem = String::from_utf8(read(name)).expect("utf-8");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    // SubjectPublicKeyInfo for Ed25519: 12 bytes of DER, then the 32-byte key.
    Ed25519PublicKey::from_slice(&der[12..]).expect("Ed25519 key")
}

/// Opens the single SK payload of an IKE_AUTH message (RFC 5282 §3: AAD = IKE
/// header and SK generic header, then IV 8, ciphertext, ICV 16) and returns the
/// first inner payload type and the inner payloads.
fn open_sk(message: &[u8], key: &AeadKey) -> (u8, Vec<u8>) {
    let sk_len = u16::from_be_bytes([message[30], message[31]]) as usize;
    let first = message[28];
    let iv: [u8; 8] = message[32..40].try_into().expect("iv");
    let mut body = message[40..28 + sk_len].to_vec();
    key.open_truncate(&iv, &message[..32], &mut body)
        .expect("SK payload opens");
    let pad_len = *body.last().expect("pad length") as usize;
    body.truncate(body.len() - 1 - pad_len);
    (first, body)
}

/// Finds payload `wanted` in a chain starting with type `first`; returns its body.
fn payload(mut next: u8, mut chain: &[u8], wanted: u8) -> Option<Vec<u8>> {
    while !chain.is_empty() {
        let len = u16::from_be_bytes([chain[2], chain[3]]) as usize;
        if next == wanted {
            return Some(chain[4..len].to_vec());
        }
        next = chain[0];
        chain = &chain[len..];
    }
    None
}

fn check(prefix: &str, alg: AeadAlg) {
    let v = keys_txt(prefix);
    let (ni, nr) = (&v["ni"], &v["nr"]);
    let init_req = read(&format!("{prefix}ike_sa_init-req.bin"));
    let init_resp = read(&format!("{prefix}ike_sa_init-resp.bin"));
    let spi_i: [u8; 8] = init_resp[..8].try_into().expect("SPIi");
    let spi_r: [u8; 8] = init_resp[8..16].try_into().expect("SPIr");

    let g_ir =
        SharedSecret::from_bytes(v["dh_shared_secret"].clone().try_into().expect("32 bytes"));
    let seed = Skeyseed::initial(ni, nr, &g_ir);
    assert_eq!(seed.as_bytes()[..], v["skeyseed"][..], "{prefix} SKEYSEED");
    let keys: IkeSaKeys = seed.ike_sa_keys(ni, nr, spi_i, spi_r);
    assert_eq!(keys.sk_d.as_bytes()[..], v["sk_d"][..], "{prefix} SK_d");
    assert_eq!(keys.sk_ei.as_bytes(), &v["sk_ei"][..], "{prefix} SK_ei");
    assert_eq!(keys.sk_er.as_bytes(), &v["sk_er"][..], "{prefix} SK_er");
    assert_eq!(keys.sk_pi.as_bytes()[..], v["sk_pi"][..], "{prefix} SK_pi");
    assert_eq!(keys.sk_pr.as_bytes()[..], v["sk_pr"][..], "{prefix} SK_pr");

    let child = ChildSaKeys::derive(&keys.sk_d, None, ni, nr);
    assert_eq!(
        child.initiator_to_responder.as_bytes(),
        &v["esp_key_i2r"][..]
    );
    assert_eq!(
        child.responder_to_initiator.as_bytes(),
        &v["esp_key_r2i"][..]
    );

    // IKE_AUTH, each way, through both providers; then the AUTH signatures.
    for provider in Provider::ALL {
        for (side, msg, sa_init, peer_nonce, id_type, pub_file) in [
            (
                Side::Initiator,
                "ike_auth-req.bin",
                &init_req,
                nr,
                35u8,
                "initiator.pub",
            ),
            (
                Side::Responder,
                "ike_auth-resp.bin",
                &init_resp,
                ni,
                36u8,
                "responder.pub",
            ),
        ] {
            let message = read(&format!("{prefix}{msg}"));
            let key = AeadKey::new(alg, provider, keys.sk_e(side).0);
            let (first, inner) = open_sk(&message, &key);
            let id = payload(first, &inner, id_type).expect("ID payload");
            let auth = payload(first, &inner, 39).expect("AUTH payload");
            assert_eq!(auth[0], 14, "Digital Signature auth method");
            let octets = signed_octets(sa_init, peer_nonce, keys.sk_p(side).0, &id);
            public_key(&format!("{prefix}{pub_file}"))
                .verify_auth_data(&octets, &auth[4..])
                .expect("strongSwan's AUTH verifies over our signed octets");
        }
    }
    // The key material also opens strongSwan's ESP (the full ESP decapsulation
    // test is in esp_strongswan.rs).
    let esp = read(&format!("{prefix}esp-i2r.bin"));
    let key = AeadKey::new(
        alg,
        Provider::Ring,
        &KeyAndSalt::from_slice(&v["esp_key_i2r"]).expect("36"),
    );
    let mut body = esp[16..].to_vec();
    key.open_truncate(&esp[8..16], &esp[..8], &mut body)
        .expect("ESP opens");
}

#[test]
fn strongswan_aes_gcm_ike_sa() {
    check("strongswan-", AeadAlg::Aes256Gcm);
}

#[test]
fn strongswan_chacha20_poly1305_ike_sa() {
    check("strongswan-chacha-", AeadAlg::ChaCha20Poly1305);
}

//! The IKEv2 key schedule against an independent computation.
//!
//! The expected values were produced once with Python 3.11's `hmac` and
//! `hashlib` (a 10-line `prf`/`prf+` written from RFC 7296 §2.13, nothing shared
//! with this crate), for these inputs: Ni = 00..1f, Nr = 20..3f, g^ir = the
//! RFC 7748 §6.1 shared secret, SPIi = 0102030405060708, SPIr = 1112131415161718;
//! for the CREATE_CHILD_SA cases Ni = a5 x16, Nr = 5a x24, g^ir = 33 x32.

use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::crypto::x25519::{SharedSecret, X25519Secret};
use oemesh_core::crypto::{AeadAlg, AeadKey, Provider};
use oemesh_core::ike::keys::{
    ChildSaKeys, IkeSaKeys, Side, Skeyseed, null_auth, shared_key_auth, signed_octets,
    verify_null_auth,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn inputs() -> (Vec<u8>, Vec<u8>, SharedSecret) {
    let ni: Vec<u8> = (0x00..0x20).collect();
    let nr: Vec<u8> = (0x20..0x40).collect();
    let gir = SharedSecret::from_bytes(
        hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
            .try_into()
            .expect("32 bytes"),
    );
    (ni, nr, gir)
}

const SPI_I: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const SPI_R: [u8; 8] = [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18];

fn ike_keys() -> IkeSaKeys {
    let (ni, nr, gir) = inputs();
    Skeyseed::initial(&ni, &nr, &gir).ike_sa_keys(&ni, &nr, SPI_I, SPI_R)
}

#[test]
fn skeyseed_and_sk_split() {
    let (ni, nr, gir) = inputs();
    let seed = Skeyseed::initial(&ni, &nr, &gir);
    assert_eq!(
        seed.as_bytes()[..],
        hex("f9248cca691bd74ddd9479bc6fadb2aeddd0e609fe92fc2d839ca617d1302cb6")[..]
    );
    let k = seed.ike_sa_keys(&ni, &nr, SPI_I, SPI_R);
    assert_eq!(
        k.sk_d.as_bytes()[..],
        hex("873cd5bd21d5d40481daa8b14d9ba50ba66f0fe9604764695d3714d94667b926")[..]
    );
    assert_eq!(
        k.sk_ei.as_bytes(),
        &hex("9302c66b947c55e0cf4e394c8fb0604c85818e0af336ec66259c2c3ead11d042b0b6adb1")[..]
    );
    assert_eq!(
        k.sk_er.as_bytes(),
        &hex("cde3859f71fd5713b11c80630bc6653e6849aac8e0ce3a609f017841a7f0d605c02db96f")[..]
    );
    assert_eq!(
        k.sk_pi.as_bytes()[..],
        hex("721d76bb7099af838ea90083fb88845179dfff839f5de7a793fca39600e596e0")[..]
    );
    assert_eq!(
        k.sk_pr.as_bytes()[..],
        hex("e6cfe467ae5711adb853b46d93717b9a66e4cae8f4c28cb062dc95becee57c5e")[..]
    );
    // Salt is the last 4 bytes of each SK_e.
    assert_eq!(k.sk_ei.salt(), &[0xb0, 0xb6, 0xad, 0xb1]);
    assert_eq!(k.sk_e(Side::Responder).0.as_bytes(), k.sk_er.as_bytes());
    assert_eq!(k.sk_p(Side::Initiator).1.as_bytes(), k.sk_pr.as_bytes());
    // Nothing secret in Debug.
    let dbg = format!("{k:?} {seed:?}");
    assert!(!dbg.contains("87") && !dbg.contains("f9"), "{dbg}");
}

#[test]
fn child_sa_keymat_without_and_with_pfs() {
    let k = ike_keys();
    let (ni, nr, _) = inputs();
    let child = ChildSaKeys::derive(&k.sk_d, None, &ni, &nr);
    assert_eq!(
        child.initiator_to_responder.as_bytes(),
        &hex("809cd037f5cd591ba412eddf8c9c0138079ebee6bd157dc4f4d7775119a0b493a9cbc919")[..]
    );
    assert_eq!(
        child.responder_to_initiator.as_bytes(),
        &hex("29d5b87ac70bb38f513ba4d2294f001411a254796ed750e33d166de2a574bbbb6a8530d8")[..]
    );
    let (out, inb) = child.split(Side::Responder);
    assert_eq!(out.as_bytes(), child.responder_to_initiator.as_bytes());
    assert_eq!(inb.as_bytes(), child.initiator_to_responder.as_bytes());

    let ni2 = [0xa5; 16];
    let nr2 = [0x5a; 24];
    let g2 = SharedSecret::from_bytes([0x33; 32]);
    let pfs = ChildSaKeys::derive(&k.sk_d, Some(&g2), &ni2, &nr2);
    assert_eq!(
        pfs.initiator_to_responder.as_bytes(),
        &hex("1977404ea9137e7e481f19b70aabe8560a3c6923cf0080b1a0796b1389cf76988aabb0da")[..]
    );
    assert_eq!(
        pfs.responder_to_initiator.as_bytes(),
        &hex("069e69b9220290e7d988155a32d156de8f18361b146c80401cc00f304be59730013f861b")[..]
    );
}

#[test]
fn ike_sa_rekey_skeyseed() {
    let k = ike_keys();
    let g2 = SharedSecret::from_bytes([0x33; 32]);
    let seed = Skeyseed::rekey(&k.sk_d, &g2, &[0xa5; 16], &[0x5a; 24]);
    assert_eq!(
        seed.as_bytes()[..],
        hex("afef74a55f4eb7fe2faa22b43181b51d4c9588135143b7e8a38d552e8a1bcdcc")[..]
    );
}

#[test]
fn auth_octets_and_null_auth() {
    let k = ike_keys();
    let (_, nr, _) = inputs();
    let id_rest = [1, 0, 0, 0, 10, 0, 77, 1]; // ID_IPV4_ADDR 10.0.77.1
    let octets = signed_octets(b"IKE_SA_INIT request bytes", &nr, &k.sk_pi, &id_rest);
    assert_eq!(
        octets,
        hex(
            "494b455f53415f494e49542072657175657374206279746573202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fe495fe1b38b61cf3b8bae16512d99028e04e7f22bc6971088ca1c379cf3931e0"
        )
    );
    let auth = null_auth(&k.sk_pi, &octets);
    assert_eq!(
        auth[..],
        hex("4b41431e86f8fb1d2444c17d3e1de03722268797fe0c79b245edf2cf4948719d")[..]
    );
    assert_eq!(auth, shared_key_auth(k.sk_pi.as_bytes(), &octets));
    assert!(verify_null_auth(&k.sk_pi, &octets, &auth));
    assert!(!verify_null_auth(&k.sk_pr, &octets, &auth));
    assert!(!verify_null_auth(&k.sk_pi, &octets, &auth[..31]));

    // Signatures sign the same octets.
    let key = Ed25519SigningKey::from_seed(&[9; 32]);
    let data = key.sign_auth_data(&octets);
    key.public_key().verify_auth_data(&octets, &data).unwrap();
}

/// Two ends running the schedule from their own X25519 halves agree, and the
/// SK_e keys they derive protect SK payloads the other can open.
#[test]
fn both_ends_agree() {
    let i = X25519Secret::from_random([0x11; 32]);
    let r = X25519Secret::from_random([0x22; 32]);
    let (ni, nr) = ([1u8; 32], [2u8; 32]);
    let ki = Skeyseed::initial(&ni, &nr, &i.diffie_hellman(&r.public_key()).unwrap())
        .ike_sa_keys(&ni, &nr, SPI_I, SPI_R);
    let kr = Skeyseed::initial(&ni, &nr, &r.diffie_hellman(&i.public_key()).unwrap())
        .ike_sa_keys(&ni, &nr, SPI_I, SPI_R);
    assert_eq!(ki.sk_d.as_bytes(), kr.sk_d.as_bytes());
    for alg in AeadAlg::ALL {
        let send = AeadKey::new(alg, Provider::Ring, ki.sk_e(Side::Initiator).0);
        let recv = AeadKey::new(alg, Provider::RustCrypto, kr.sk_e(Side::Responder).1);
        let mut msg = b"IDi AUTH SA TSi TSr".to_vec();
        send.seal_append(&[0; 8], b"hdr", &mut msg).unwrap();
        recv.open_truncate(&[0; 8], b"hdr", &mut msg).unwrap();
        assert_eq!(msg, b"IDi AUTH SA TSi TSr");
    }
}

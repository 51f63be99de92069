//! Published test vectors for the primitives under the key schedule and the data
//! path: RFC 4231 (HMAC-SHA-256), RFC 7748 (X25519), RFC 8032 (Ed25519),
//! RFC 8439 (ChaCha20-Poly1305) and the GCM specification's test case 16
//! (AES-256-GCM, McGrew & Viega), each AEAD through both providers.

use oemesh_core::crypto::ed25519::{ED25519_AUTH_PREFIX, Ed25519PublicKey, Ed25519SigningKey};
use oemesh_core::crypto::prf::{PRF_PLUS_MAX, prf, prf_plus};
use oemesh_core::crypto::x25519::X25519Secret;
use oemesh_core::crypto::{AeadAlg, AeadKey, CryptoError, KeyAndSalt, Provider};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().expect("length")
}

#[test]
fn hmac_sha256_rfc4231() {
    let cases: [(Vec<u8>, &[u8], &str); 4] = [
        (
            vec![0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (key, data, want) in cases {
        assert_eq!(prf(&key, &[data])[..], hex(want)[..]);
        // Split input gives the same MAC.
        let (a, b) = data.split_at(3);
        assert_eq!(prf(&key, &[a, b])[..], hex(want)[..]);
    }
}

#[test]
fn prf_plus_first_block_is_prf_of_seed_and_one() {
    let mut out = [0u8; 70];
    prf_plus(b"key", &[b"seed"], &mut out).unwrap();
    assert_eq!(out[..32], prf(b"key", &[b"seed", &[1]])[..]);
    let t1 = prf(b"key", &[b"seed", &[1]]);
    assert_eq!(out[32..64], prf(b"key", &[&t1[..], b"seed", &[2]])[..]);
    let mut too_long = vec![0u8; PRF_PLUS_MAX + 1];
    assert_eq!(
        prf_plus(b"key", &[b"seed"], &mut too_long),
        Err(CryptoError::PrfPlusTooLong(PRF_PLUS_MAX + 1))
    );
    let mut max = vec![0u8; PRF_PLUS_MAX];
    prf_plus(b"key", &[b"seed"], &mut max).unwrap();
}

#[test]
fn x25519_rfc7748_section_6_1() {
    let alice = X25519Secret::from_random(arr(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = X25519Secret::from_random(arr(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    assert_eq!(
        alice.public_key()[..],
        hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")[..]
    );
    assert_eq!(
        bob.public_key()[..],
        hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")[..]
    );
    let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(
        alice.diffie_hellman(&bob.public_key()).unwrap().as_bytes()[..],
        shared[..]
    );
    assert_eq!(
        bob.diffie_hellman(&alice.public_key()).unwrap().as_bytes()[..],
        shared[..]
    );
    assert!(!format!("{alice:?}").contains("77076d"));
}

#[test]
fn x25519_rejects_low_order_points_and_bad_lengths() {
    let me = X25519Secret::from_random([7; 32]);
    // The zero point and the point of order 8 with u = 1 both give all zeros.
    let mut one = [0u8; 32];
    one[0] = 1;
    for bad in [[0u8; 32], one] {
        assert_eq!(
            me.diffie_hellman(&bad).unwrap_err(),
            CryptoError::NonContributoryDh
        );
    }
    assert!(matches!(
        me.diffie_hellman(&[9; 31]),
        Err(CryptoError::InvalidLength {
            expected: 32,
            got: 31,
            ..
        })
    ));
}

#[test]
fn ed25519_rfc8032_tests_1_and_2() {
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (secret, public, msg, sig) in cases {
        let key = Ed25519SigningKey::from_seed(&arr(secret));
        assert_eq!(key.public_key().to_bytes()[..], hex(public)[..]);
        assert_eq!(key.sign(&hex(msg))[..], hex(sig)[..]);
        let pk = Ed25519PublicKey::from_slice(&hex(public)).unwrap();
        pk.verify(&hex(msg), &hex(sig)).unwrap();
        assert_eq!(
            pk.verify(b"other", &hex(sig)),
            Err(CryptoError::BadSignature)
        );
        assert!(!format!("{key:?}").contains(&secret[..8]));
    }
}

/// ℓ, the order of the Ed25519 base point (RFC 8032 §5.1), little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `a + b` for 256-bit little-endian numbers whose sum fits.
fn add_le(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    out
}

#[test]
fn ed25519_malleable_signature_is_refused() {
    // (R, S + ℓ) satisfies the verification equation as (R, S) does: a second
    // valid-looking signature anyone can derive from the first (RFC 8032 §8.4).
    // S < ℓ < 2^253, so S + ℓ < 2^254 keeps the top bits clear that the old
    // "high three bits" check looked at.
    let key = Ed25519SigningKey::from_seed(&[7; 32]);
    let pk = key.public_key();
    for msg in [&b""[..], b"signed octets", &[0x5a; 200]] {
        let sig = key.sign(msg);
        pk.verify(msg, &sig).unwrap();
        let mut twin = sig;
        twin[32..].copy_from_slice(&add_le(&sig[32..], &ELL));
        assert_ne!(twin, sig);
        assert_eq!(pk.verify(msg, &twin), Err(CryptoError::BadSignature));
        let mut auth = key.sign_auth_data(msg);
        auth[8 + 32..].copy_from_slice(&twin[32..]);
        assert_eq!(
            pk.verify_auth_data(msg, &auth),
            Err(CryptoError::BadSignature)
        );
    }
}

#[test]
fn ed25519_rfc8032_test_3_still_verifies() {
    let pk = Ed25519PublicKey::from_slice(&hex(
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    ))
    .unwrap();
    pk.verify(
        &hex("af82"),
        &hex("6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    )
    .unwrap();
}

/// The eight points of small order, canonically encoded (curve25519-dalek's
/// `EIGHT_TORSION`, as listed in "Taming the many EdDSAs").
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

#[test]
fn ed25519_small_order_public_keys_are_refused() {
    for k in SMALL_ORDER {
        assert_eq!(
            Ed25519PublicKey::from_slice(&hex(k)),
            Err(CryptoError::SmallOrderPublicKey),
            "{k}"
        );
    }
    // Non-canonical encodings of small-order points: x = 0 with the sign bit set
    // (y = 1, y = -1), and y + p for y = 0 and y = 1.
    for k in [
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ] {
        assert_eq!(
            Ed25519PublicKey::from_slice(&hex(k)),
            Err(CryptoError::SmallOrderPublicKey),
            "{k}"
        );
    }
}

#[test]
fn ed25519_non_canonical_public_keys_are_refused() {
    // y = 3 + p and y = 4 + p (either sign): points of large order, but not the
    // encoding RFC 8032 §5.1.2 produces for them; the canonical ones parse.
    for (odd, canonical) in [
        (
            "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "03",
        ),
        (
            "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "03",
        ),
        (
            "f1ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "04",
        ),
    ] {
        assert_eq!(
            Ed25519PublicKey::from_slice(&hex(odd)),
            Err(CryptoError::NonCanonicalPublicKey),
            "{odd}"
        );
        let mut y = [0u8; 32];
        y[0] = hex(canonical)[0];
        let ok = (0..2).any(|sign| {
            y[31] = sign << 7;
            Ed25519PublicKey::from_slice(&y).is_ok()
        });
        assert!(ok, "the canonical y = {canonical} decodes");
    }
    // Not on the curve at all (y = 2 has no x).
    let mut y2 = [0u8; 32];
    y2[0] = 2;
    assert_eq!(
        Ed25519PublicKey::from_slice(&y2),
        Err(CryptoError::InvalidPublicKey)
    );
}

#[test]
fn ed25519_rfc7427_auth_data() {
    // RFC 8420 Appendix A: the AlgorithmIdentifier of Ed25519, with the RFC 7427
    // one-octet length in front.
    assert_eq!(
        ED25519_AUTH_PREFIX,
        [7, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]
    );
    let key = Ed25519SigningKey::from_seed(&[3; 32]);
    let data = key.sign_auth_data(b"octets");
    assert_eq!(data.len(), 72);
    assert_eq!(data[..8], ED25519_AUTH_PREFIX);
    let pk = key.public_key();
    pk.verify_auth_data(b"octets", &data).unwrap();
    assert_eq!(
        pk.verify_auth_data(b"octetz", &data),
        Err(CryptoError::BadSignature)
    );
    let mut wrong_alg = data;
    wrong_alg[7] = 0x71; // Ed448
    assert_eq!(
        pk.verify_auth_data(b"octets", &wrong_alg),
        Err(CryptoError::WrongSignatureAlgorithm)
    );
}

/// (alg, key||salt, iv, aad, plaintext, ciphertext||tag)
type AeadVector = (AeadAlg, Vec<u8>, [u8; 8], Vec<u8>, Vec<u8>, Vec<u8>);

fn aead_vectors() -> Vec<AeadVector> {
    let mut chacha_key: Vec<u8> = (0x80..0xa0).collect();
    chacha_key.extend(hex("07000000")); // RFC 8439 §2.8.2 nonce = salt || IV
    let mut gcm_key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    gcm_key.extend(hex("cafebabe")); // GCM test case 16: IV cafebabe facedbaddecaf888
    vec![
        (
            AeadAlg::ChaCha20Poly1305,
            chacha_key,
            arr("4041424344454647"),
            hex("50515253c0c1c2c3c4c5c6c7"),
            b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec(),
            hex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116
                 1ae10b594f09e26a7e902ecbd0600691"),
        ),
        (
            AeadAlg::Aes256Gcm,
            gcm_key,
            arr("facedbaddecaf888"),
            hex("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
            hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"),
            hex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662
                 76fc6ece0f4e1768cddf8853bb2d551b"),
        ),
    ]
}

#[test]
fn aead_vectors_both_providers() {
    for (alg, key, iv, aad, pt, want) in aead_vectors() {
        for provider in Provider::ALL {
            let k = AeadKey::new(alg, provider, &KeyAndSalt::from_slice(&key).unwrap());
            // Detached, in place.
            let mut buf = pt.clone();
            let tag = k.seal_in_place_detached(&iv, &aad, &mut buf).unwrap();
            assert_eq!(buf[..], want[..pt.len()], "{alg:?} {provider:?}");
            assert_eq!(tag[..], want[pt.len()..], "{alg:?} {provider:?}");
            k.open_in_place_detached(&iv, &aad, &mut buf, &tag).unwrap();
            assert_eq!(buf, pt);
            // Appended, the SK payload shape.
            let mut v = pt.clone();
            k.seal_append(&iv, &aad, &mut v).unwrap();
            assert_eq!(v, want);
            k.open_truncate(&iv, &aad, &mut v).unwrap();
            assert_eq!(v, pt);
            // Tampering anywhere fails.
            for pos in [0, pt.len() - 1, pt.len(), want.len() - 1] {
                let mut bad = want.clone();
                bad[pos] ^= 1;
                assert_eq!(
                    k.open_in_place(&iv, &aad, &mut bad),
                    Err(CryptoError::AuthenticationFailed)
                );
            }
            let mut bad_aad = aad.clone();
            bad_aad[0] ^= 0x80;
            let mut ct = want.clone();
            assert_eq!(
                k.open_in_place(&iv, &bad_aad, &mut ct),
                Err(CryptoError::AuthenticationFailed)
            );
            let mut short = vec![0u8; 15];
            assert_eq!(
                k.open_in_place(&iv, &aad, &mut short),
                Err(CryptoError::AuthenticationFailed)
            );
            assert!(!format!("{k:?}").contains("fe"));
        }
    }
}

#[test]
fn providers_interoperate() {
    let material = KeyAndSalt::from_bytes([0x42; 36]);
    for alg in AeadAlg::ALL {
        let ring = AeadKey::new(alg, Provider::Ring, &material);
        let rc = AeadKey::new(alg, Provider::RustCrypto, &material);
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1400] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = pt.clone();
            buf.resize(len + 16, 0);
            ring.seal_in_place(&[1; 8], b"aad", &mut buf).unwrap();
            assert_eq!(
                rc.open_in_place(&[1; 8], b"aad", &mut buf).unwrap(),
                &pt[..]
            );
            let mut buf = pt.clone();
            buf.resize(len + 16, 0);
            rc.seal_in_place(&[2; 8], b"", &mut buf).unwrap();
            assert_eq!(ring.open_in_place(&[2; 8], b"", &mut buf).unwrap(), &pt[..]);
        }
    }
}

#[test]
fn key_material_length_is_checked() {
    assert!(matches!(
        KeyAndSalt::from_slice(&[0; 32]),
        Err(CryptoError::InvalidLength {
            expected: 36,
            got: 32,
            ..
        })
    ));
    let k = KeyAndSalt::from_slice(&(0..36).collect::<Vec<u8>>()).unwrap();
    assert_eq!(k.key()[..], (0..32).collect::<Vec<u8>>()[..]);
    assert_eq!(k.salt(), &[32, 33, 34, 35]);
    assert_eq!(format!("{k:?}"), "KeyAndSalt(<redacted>)");
    assert_eq!(AeadAlg::Aes256Gcm.transform_id(), 20);
    assert_eq!(AeadAlg::ChaCha20Poly1305.transform_id(), 28);
}

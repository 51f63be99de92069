//! Ed25519 signatures (RFC 8032) and their encoding in IKEv2's AUTH payload with
//! Digital Signature authentication (RFC 7427 §3, RFC 8420).

use std::fmt;

use ed25519_dalek::Signer;

use super::CryptoError;

/// Length of an Ed25519 seed (private key) and public key.
pub const ED25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const ED25519_SIG_LEN: usize = 64;

/// The RFC 7427 §3 prefix of the Authentication Data for Ed25519: the one-octet
/// ASN.1 length (7) followed by the DER AlgorithmIdentifier `id-Ed25519`
/// (OID 1.3.101.112, parameters absent), as RFC 8420 Appendix A lists it.
/// The signature over the raw octets follows (RFC 8420 §2: "Identity" hash).
pub const ED25519_AUTH_PREFIX: [u8; 8] = [0x07, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// AUTH payload method for Digital Signature (RFC 7427 §3).
pub const AUTH_METHOD_DIGITAL_SIGNATURE: u8 = 14;

/// An Ed25519 private key. Zeroized on drop; `Debug` shows the public key only.
pub struct Ed25519SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for Ed25519SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519SigningKey")
            .field("public", &self.public_key())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Ed25519SigningKey {
    /// From the 32-byte seed (the private key of RFC 8032 §5.1.5; what PKCS#8
    /// files carry).
    pub fn from_seed(seed: &[u8; ED25519_KEY_LEN]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The public key.
    pub fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey(self.0.verifying_key())
    }

    /// Signs arbitrary octets (Ed25519 hashes internally; RFC 8420 §2).
    pub fn sign(&self, message: &[u8]) -> [u8; ED25519_SIG_LEN] {
        self.0.sign(message).to_bytes()
    }

    /// The AUTH payload's Authentication Data: [`ED25519_AUTH_PREFIX`] then the
    /// signature of `signed_octets` (RFC 7427 §3).
    pub fn sign_auth_data(&self, signed_octets: &[u8]) -> [u8; 8 + ED25519_SIG_LEN] {
        let mut out = [0u8; 8 + ED25519_SIG_LEN];
        out[..8].copy_from_slice(&ED25519_AUTH_PREFIX);
        out[8..].copy_from_slice(&self.sign(signed_octets));
        out
    }
}

/// An Ed25519 public key (the 32 bytes an IPSECKEY algorithm 4 record carries).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519PublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey(")?;
        for b in self.0.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Ed25519PublicKey {
    /// Parses the 32-byte encoded point. Refused, each with its own error, so that
    /// a bad IPSECKEY is named before any IKE is tried: bytes that are not a
    /// point on the curve; a point of small order (one of the eight torsion
    /// points: [`verify`](Self::verify) refuses every signature under those, and
    /// a lenient verifier would accept forgeries such as `R = identity, S = 0`
    /// under the identity for any message); and a non-canonical encoding (`y ≥ p`,
    /// or `x = 0` with the sign bit set; RFC 8032 §5.1.3 says to fail decoding).
    /// Some of those encode points of large order, which strict verification
    /// alone would let through with `k` hashed over the odd bytes; OpenSSL and
    /// libsodium refuse them, and so do we, so that no peer's key means one thing
    /// here and another to strongSwan.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; ED25519_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "Ed25519 public key",
                expected: ED25519_KEY_LEN,
                got: bytes.len(),
            })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(CryptoError::SmallOrderPublicKey);
        }
        // ed25519-dalek decodes y modulo p and keeps the bytes it was given;
        // re-encoding the point shows whether they were the canonical form.
        if key.to_edwards().compress().to_bytes() != arr {
            return Err(CryptoError::NonCanonicalPublicKey);
        }
        Ok(Self(key))
    }

    /// The encoded key.
    pub fn to_bytes(&self) -> [u8; ED25519_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `message` (RFC 8032 §5.1.7), strictly: `S ≥ ℓ`
    /// (the malleable `S + ℓ` twin of a valid signature), a non-canonical `R`, and
    /// a small-order `R` or public key are all refused, so a signature is
    /// accepted only in the one form its signer produced, and a key of small order
    /// vouches for nothing. This is ed25519-dalek's `verify_strict`, the "Dalek
    /// strict" column of Chalkias, Garillot and Nikolaenko, "Taming the many
    /// EdDSAs" (SSR 2020).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)?;
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Verifies RFC 7427 Authentication Data: it must start with
    /// [`ED25519_AUTH_PREFIX`] and carry a valid signature of `signed_octets`.
    pub fn verify_auth_data(
        &self,
        signed_octets: &[u8],
        auth_data: &[u8],
    ) -> Result<(), CryptoError> {
        let signature = auth_data
            .strip_prefix(&ED25519_AUTH_PREFIX[..])
            .ok_or(CryptoError::WrongSignatureAlgorithm)?;
        self.verify(signed_octets, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect();
        v.try_into().expect("length")
    }

    /// A key as the curve library decodes it, without the refusals of
    /// [`Ed25519PublicKey::from_slice`]: so that `verify` itself is tested on the
    /// keys `from_slice` would keep out.
    fn lenient_key(bytes: &[u8; 32]) -> Ed25519PublicKey {
        Ed25519PublicKey(ed25519_dalek::VerifyingKey::from_bytes(bytes).expect("on the curve"))
    }

    /// The twelve edge cases of Chalkias, Garillot and Nikolaenko, "Taming the
    /// many EdDSAs" (SSR 2020), as published in novifinancial/ed25519-speccheck
    /// (`cases.txt`): (message, public key, signature, accepted by strict
    /// verification). Their results table has "Dalek strict" accept case 3 only;
    /// plain ed25519-dalek `verify` also accepts 0, 1 and 2 (small-order `R`) and
    /// 11 (small-order `A`), which strict verification exists to refuse.
    const SPECCHECK: [(&str, &str, &str, bool); 12] = [
        // 0: S = 0, small-order A and R.
        (
            "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000",
            false,
        ),
        // 1: 0 < S < L, small-order A and R.
        (
            "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
            false,
        ),
        // 2: mixed-order A, small-order R.
        (
            "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
            false,
        ),
        // 3: mixed-order A and R, passes the cofactorless equation: valid.
        (
            "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
            "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
            "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
            true,
        ),
        // 4: mixed-order A and R, passes the cofactored equation only.
        (
            "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
            "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
            "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
            false,
        ),
        // 5: passes the cofactored equation only with k pre-reduced.
        (
            "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
            "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
            "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
            false,
        ),
        // 6: S > L (the top byte is 0x14).
        (
            "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
            "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
            "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
            false,
        ),
        // 7: S >> L (bit 253 set).
        (
            "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
            "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
            "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
            false,
        ),
        // 8: non-canonical small-order R (x = 0 with the sign bit set).
        (
            "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
            false,
        ),
        // 9: the same R, with k over its non-canonical bytes.
        (
            "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
            false,
        ),
        // 10: non-canonical small-order A.
        (
            "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
            false,
        ),
        // 11: the same A, with k over its non-canonical bytes.
        (
            "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
            false,
        ),
    ];

    #[test]
    fn verify_is_strict_on_the_taming_eddsa_vectors() {
        let wrong: Vec<(usize, bool)> = SPECCHECK
            .into_iter()
            .enumerate()
            .filter_map(|(i, (msg, key, sig, accepted))| {
                let got = lenient_key(&hex(key)).verify(&hex::<32>(msg), &hex::<64>(sig));
                (got.is_ok() != accepted).then_some((i, got.is_ok()))
            })
            .collect();
        assert_eq!(
            wrong,
            [],
            "(case, accepted) where strict verification disagrees"
        );
    }

    #[test]
    fn the_identity_key_vouches_for_nothing() {
        // Under A = identity, R = identity and S = 0 satisfy [S]B = R + [k]A for
        // every message: a "signature" anyone can make for any IKE_AUTH.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = lenient_key(&identity);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        for msg in [&b""[..], b"IKE_AUTH signed octets", &[0xff; 300]] {
            assert_eq!(key.verify(msg, &sig), Err(CryptoError::BadSignature));
        }
        assert_eq!(
            Ed25519PublicKey::from_slice(&identity),
            Err(CryptoError::SmallOrderPublicKey)
        );
    }
}

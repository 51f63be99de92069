//! Ed25519 signatures (RFC 8032) and their encoding in IKEv2's AUTH payload with
//! Digital Signature authentication (RFC 7427 §3, RFC 8420).

use std::fmt;

use ed25519_dalek::{Signer, Verifier};

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
    /// Parses the 32-byte encoded point.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; ED25519_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "Ed25519 public key",
                expected: ED25519_KEY_LEN,
                got: bytes.len(),
            })?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(Self)
            .map_err(|_| CryptoError::InvalidPublicKey)
    }

    /// The encoded key.
    pub fn to_bytes(&self) -> [u8; ED25519_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `message` (RFC 8032 §5.1.7; non-canonical `S`
    /// is rejected).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)?;
        self.0
            .verify(message, &sig)
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

//! The cryptography oemesh's wire profile needs, behind small typed wrappers.
//!
//! Everything here is deterministic: keys and random bytes come in as arguments,
//! nothing reads the OS random source.
//!
//! - [`aead`]: the two AEADs of the wire profile, ENCR_AES_GCM_16 with a 256-bit key
//!   (RFC 4106 for ESP, RFC 5282 for IKE) and ENCR_CHACHA20_POLY1305 (RFC 7634),
//!   each available from two providers ([`Provider::Ring`], [`Provider::RustCrypto`]).
//!   This is the data path's hot spot: keys are expanded once per SA and seal/open
//!   work in place on the caller's buffer.
//! - [`prf`]: PRF_HMAC_SHA2_256 and `prf+` (RFC 7296 §2.13).
//! - [`x25519`]: Diffie-Hellman group 31 (RFC 8031).
//! - [`ed25519`]: Ed25519 signatures (RFC 8032) and their RFC 7427 / RFC 8420
//!   encoding in the AUTH payload.
//!
//! Secrets are zeroized on drop and print as `<redacted>` in `Debug`. One exception
//! the caller should know about: `ring` keeps its expanded AEAD key schedule in a
//! private type that does not zeroize on drop.

pub mod aead;
mod aead_ring;
mod aead_rustcrypto;
pub mod ed25519;
pub mod prf;
pub mod x25519;

pub use aead::{
    AeadAlg, AeadKey, ICV_LEN, IV_LEN, KEY_LEN, KeyAndSalt, NONCE_LEN, Provider, SALT_LEN,
};

use subtle::ConstantTimeEq;

/// What went wrong in a cryptographic operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The AEAD tag (ICV) did not verify: the data was modified or the key is wrong.
    #[error("authentication failed (ICV mismatch)")]
    AuthenticationFailed,
    /// An input had the wrong length.
    #[error("{what}: expected {expected} bytes, got {got}")]
    InvalidLength {
        /// Which input.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The message is longer than the AEAD can protect under one nonce.
    #[error("message too long for the AEAD")]
    MessageTooLong,
    /// `prf+` was asked for more than 255 blocks of output (RFC 7296 §2.13).
    #[error("prf+ output of {0} bytes exceeds 255 PRF blocks")]
    PrfPlusTooLong(usize),
    /// The X25519 shared secret is all zeros: the peer sent a small-order point
    /// (RFC 8031 §2.2, RFC 7748 §6.1).
    #[error("X25519 shared secret is all zeros (peer sent a low-order point)")]
    NonContributoryDh,
    /// The Ed25519 public key is not a valid curve point.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// The Ed25519 public key is a point of small order: signatures can verify
    /// under it for any message, so strict verification refuses it (RFC 8032
    /// §5.1.7 with the checks of "Taming the many EdDSAs").
    #[error("Ed25519 public key is a small-order point (it would vouch for any message)")]
    SmallOrderPublicKey,
    /// The Ed25519 public key is a non-canonical encoding of its point (RFC 8032
    /// §5.1.3: `y ≥ p`, or `x = 0` with the sign bit set).
    #[error("Ed25519 public key is not canonically encoded (RFC 8032 §5.1.3)")]
    NonCanonicalPublicKey,
    /// The signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// The RFC 7427 AUTH data does not carry the Ed25519 AlgorithmIdentifier.
    #[error("AUTH data does not name Ed25519 (RFC 8420)")]
    WrongSignatureAlgorithm,
}

/// Compares two byte strings in time independent of their contents (the lengths
/// are not secret). Use it for ICVs, AUTH values and anything else an attacker
/// could probe byte by byte.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}

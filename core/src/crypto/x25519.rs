//! Diffie-Hellman group 31, Curve25519 (RFC 8031), from caller-supplied randomness.
//!
//! The arithmetic is aws-lc's (through `aws-lc-rs`), which takes a raw private
//! key, so the core stays deterministic. It replaced curve25519-dalek's
//! Montgomery ladder because the two X25519 operations per side were over half
//! of a handshake's cost: aws-lc's is about 1.5× faster for the shared secret
//! and 2.5× for the public value on this machine (`docs/benchmarks.md`).

use std::fmt;

use aws_lc_rs::agreement;
use zeroize::Zeroizing;

use super::CryptoError;

/// Length of an X25519 public value, private value and shared secret.
pub const X25519_LEN: usize = 32;

/// An X25519 private key built from 32 random bytes the caller drew (the core
/// draws no randomness of its own). Zeroized on drop.
pub struct X25519Secret {
    private: Zeroizing<[u8; X25519_LEN]>,
    public: [u8; X25519_LEN],
}

impl fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519Secret(<redacted>)")
    }
}

impl X25519Secret {
    /// Uses `random` as the private scalar (clamped per RFC 7748 §5).
    pub fn from_random(random: [u8; X25519_LEN]) -> Self {
        let private = Zeroizing::new(random);
        let key = agreement::PrivateKey::from_private_key(&agreement::X25519, &private[..])
            .expect("any 32 bytes are an X25519 private key (RFC 7748 §5 clamps them)");
        let mut public = [0; X25519_LEN];
        public.copy_from_slice(
            key.compute_public_key()
                .expect("an X25519 public value always exists")
                .as_ref(),
        );
        Self { private, public }
    }

    /// The public value to send in the KE payload (RFC 8031 §2: 32 bytes, the
    /// u-coordinate little-endian).
    pub fn public_key(&self) -> [u8; X25519_LEN] {
        self.public
    }

    /// Computes `g^ir` from the peer's KE payload data.
    ///
    /// Rejects a peer value that is not 32 bytes and an all-zero result, which a
    /// low-order peer point produces (RFC 8031 §2.2, RFC 7748 §6.1); the check is
    /// constant time.
    pub fn diffie_hellman(&self, peer_public: &[u8]) -> Result<SharedSecret, CryptoError> {
        let peer: [u8; X25519_LEN] =
            peer_public
                .try_into()
                .map_err(|_| CryptoError::InvalidLength {
                    what: "X25519 public value",
                    expected: X25519_LEN,
                    got: peer_public.len(),
                })?;
        let key = agreement::PrivateKey::from_private_key(&agreement::X25519, &self.private[..])
            .map_err(|_| CryptoError::InvalidLength {
                what: "X25519 private value",
                expected: X25519_LEN,
                got: X25519_LEN,
            })?;
        let mut shared = Zeroizing::new([0; X25519_LEN]);
        // aws-lc refuses an all-zero result (a low-order peer point) with an error.
        agreement::agree(
            &key,
            agreement::UnparsedPublicKey::new(&agreement::X25519, &peer),
            CryptoError::NonContributoryDh,
            |secret| {
                shared.copy_from_slice(secret);
                Ok(())
            },
        )?;
        if super::ct_eq(&shared[..], &[0; X25519_LEN]) {
            return Err(CryptoError::NonContributoryDh);
        }
        Ok(SharedSecret(shared))
    }
}

/// The Diffie-Hellman shared secret `g^ir`. Zeroized on drop.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<[u8; X25519_LEN]>);

impl SharedSecret {
    /// Wraps bytes of a shared secret computed elsewhere (tests, logged vectors).
    pub fn from_bytes(bytes: [u8; X25519_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes, for the key schedule.
    pub fn as_bytes(&self) -> &[u8; X25519_LEN] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

//! Diffie-Hellman group 31, Curve25519 (RFC 8031), from caller-supplied randomness.

use std::fmt;

use zeroize::Zeroizing;

use super::CryptoError;

/// Length of an X25519 public value, private value and shared secret.
pub const X25519_LEN: usize = 32;

/// An X25519 private key built from 32 random bytes the caller drew (the core
/// draws no randomness of its own). Zeroized on drop.
pub struct X25519Secret(x25519_dalek::StaticSecret);

impl fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519Secret(<redacted>)")
    }
}

impl X25519Secret {
    /// Uses `random` as the private scalar (clamped per RFC 7748 §5).
    pub fn from_random(random: [u8; X25519_LEN]) -> Self {
        Self(x25519_dalek::StaticSecret::from(random))
    }

    /// The public value to send in the KE payload (RFC 8031 §2: 32 bytes, the
    /// u-coordinate little-endian).
    pub fn public_key(&self) -> [u8; X25519_LEN] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
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
        let shared = self.0.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributoryDh);
        }
        Ok(SharedSecret(Zeroizing::new(shared.to_bytes())))
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

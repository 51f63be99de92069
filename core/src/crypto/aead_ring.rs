//! The `ring` provider.

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

use super::CryptoError;
use super::aead::{AeadAlg, AeadBackend, ICV_LEN, KEY_LEN, NONCE_LEN};

/// A `ring` AEAD key. `LessSafeKey` because ESP and IKE choose their own nonces.
pub(crate) struct RingAead(LessSafeKey);

impl RingAead {
    pub(crate) fn new(alg: AeadAlg, key: &[u8; KEY_LEN]) -> Self {
        let algorithm = match alg {
            AeadAlg::Aes256Gcm => &AES_256_GCM,
            AeadAlg::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        };
        // Infallible: both algorithms take exactly KEY_LEN bytes.
        let unbound =
            UnboundKey::new(algorithm, key).unwrap_or_else(|_| unreachable!("key length is fixed"));
        Self(LessSafeKey::new(unbound))
    }
}

impl AeadBackend for RingAead {
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::MessageTooLong)?;
        tag.as_ref()
            .try_into()
            .map_err(|_| CryptoError::MessageTooLong)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; ICV_LEN],
    ) -> Result<(), CryptoError> {
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

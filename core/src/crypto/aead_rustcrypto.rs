//! The RustCrypto provider (`aes-gcm`, `chacha20poly1305`). Both ciphers zeroize
//! their key state on drop.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};

use super::CryptoError;
use super::aead::{AeadAlg, AeadBackend, ICV_LEN, KEY_LEN, NONCE_LEN};

/// A RustCrypto AEAD key.
#[allow(
    clippy::large_enum_variant,
    reason = "one per SA direction, never moved on the data path"
)]
pub(crate) enum RustCryptoAead {
    Aes(Aes256Gcm),
    ChaCha(ChaCha20Poly1305),
}

impl RustCryptoAead {
    pub(crate) fn new(alg: AeadAlg, key: &[u8; KEY_LEN]) -> Self {
        match alg {
            AeadAlg::Aes256Gcm => Self::Aes(Aes256Gcm::new(key.into())),
            AeadAlg::ChaCha20Poly1305 => Self::ChaCha(ChaCha20Poly1305::new(key.into())),
        }
    }
}

impl AeadBackend for RustCryptoAead {
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError> {
        let tag = match self {
            Self::Aes(c) => c.encrypt_in_place_detached(nonce.into(), aad, buf),
            Self::ChaCha(c) => c.encrypt_in_place_detached(nonce.into(), aad, buf),
        }
        .map_err(|_| CryptoError::MessageTooLong)?;
        Ok(tag.into())
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; ICV_LEN],
    ) -> Result<(), CryptoError> {
        match self {
            Self::Aes(c) => c.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
            Self::ChaCha(c) => c.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
        }
        .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

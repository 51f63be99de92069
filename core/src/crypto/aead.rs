//! The AEADs of the wire profile and the key object the data path reuses per SA.
//!
//! Both transforms use the same framing, which is why one key type serves both:
//! a 32-byte key followed by a 4-byte salt from the key material (RFC 4106 §8.1,
//! RFC 5282 §7, RFC 7634 §4), a 12-byte nonce `salt || IV` with an 8-byte IV
//! carried in the packet (RFC 4106 §4, RFC 7634 §2), and a 16-byte ICV.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;
use super::aead_ring::RingAead;
use super::aead_rustcrypto::RustCryptoAead;

/// AEAD key length (both transforms use 256-bit keys).
pub const KEY_LEN: usize = 32;
/// Salt length: the last 4 bytes of each encryption key's key material.
pub const SALT_LEN: usize = 4;
/// Explicit IV length carried in each ESP packet / SK payload.
pub const IV_LEN: usize = 8;
/// Nonce length: `salt || IV`.
pub const NONCE_LEN: usize = SALT_LEN + IV_LEN;
/// ICV (tag) length: 16 bytes for both transforms.
pub const ICV_LEN: usize = 16;

/// An AEAD transform of the wire profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlg {
    /// ENCR_AES_GCM_16 with a 256-bit key (RFC 4106, RFC 5282).
    Aes256Gcm,
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
}

impl AeadAlg {
    /// Both transforms, for tests and benchmarks.
    pub const ALL: [AeadAlg; 2] = [AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305];

    /// The IKEv2 Transform Type 1 ID (IANA "IKEv2 Transform Type 1").
    pub fn transform_id(self) -> u16 {
        match self {
            AeadAlg::Aes256Gcm => 20,
            AeadAlg::ChaCha20Poly1305 => 28,
        }
    }

    /// The key length attribute to send with the transform, if it takes one:
    /// AES-GCM does (RFC 5282 §8: 256), ChaCha20-Poly1305 must not (RFC 7634 §4).
    pub fn key_length_attribute(self) -> Option<u16> {
        match self {
            AeadAlg::Aes256Gcm => Some(256),
            AeadAlg::ChaCha20Poly1305 => None,
        }
    }

    /// Bytes of key material this transform takes from `prf+`: key plus salt.
    pub fn key_material_len(self) -> usize {
        KEY_LEN + SALT_LEN
    }
}

/// Which implementation performs the AEAD.
///
/// [`Provider::default()`] is the faster one on x86-64 by our measurement
/// (`docs/benchmarks.md`): `ring`, which uses AES-NI/PCLMULQDQ and AVX2 assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Provider {
    /// `ring` 0.17.
    #[default]
    Ring,
    /// RustCrypto's `aes-gcm` / `chacha20poly1305` 0.10.
    RustCrypto,
}

impl Provider {
    /// Both providers, for tests and benchmarks.
    pub const ALL: [Provider; 2] = [Provider::Ring, Provider::RustCrypto];
}

/// Key material of one AEAD key: 32 key bytes then 4 salt bytes, exactly as
/// they come out of `prf+`. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyAndSalt([u8; KEY_LEN + SALT_LEN]);

impl KeyAndSalt {
    /// Length of the key material.
    pub const LEN: usize = KEY_LEN + SALT_LEN;

    /// Takes key material from `prf+` output (must be exactly 36 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; Self::LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "AEAD key material",
            expected: Self::LEN,
            got: bytes.len(),
        })?;
        Ok(Self(arr))
    }

    /// Wraps 36 bytes of key material.
    pub fn from_bytes(bytes: [u8; KEY_LEN + SALT_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 key bytes.
    pub fn key(&self) -> &[u8; KEY_LEN] {
        self.0.first_chunk().unwrap_or(&[0; KEY_LEN])
    }

    /// The 4 salt bytes.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        self.0.last_chunk().unwrap_or(&[0; SALT_LEN])
    }

    /// All 36 bytes (for tests and logging under a debug flag only).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyAndSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyAndSalt(<redacted>)")
    }
}

/// What each provider implements: the raw AEAD on a 12-byte nonce, in place.
pub(crate) trait AeadBackend {
    /// Encrypts `buf` in place and returns the tag.
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError>;

    /// Verifies `tag` over `aad` and `buf`, then decrypts `buf` in place. On
    /// failure the contents of `buf` are unspecified.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; ICV_LEN],
    ) -> Result<(), CryptoError>;
}

/// The RustCrypto key (1,008 bytes) is boxed, so that every key of the
/// default provider is not as large as it (ring's: 544 bytes): two per ESP SA
/// pair, which the memory per SA pair counts (docs/benchmarks.md).
#[allow(
    clippy::large_enum_variant,
    reason = "the large variant is the default provider's, used in place"
)]
enum Backend {
    Ring(RingAead),
    RustCrypto(Box<RustCryptoAead>),
}

/// An expanded AEAD key plus its salt: build one per SA direction (or per IKE SA
/// direction) and reuse it for every packet. Seal and open never allocate,
/// except the `Vec` convenience forms for IKE's SK payload.
pub struct AeadKey {
    alg: AeadAlg,
    provider: Provider,
    salt: [u8; SALT_LEN],
    backend: Backend,
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey")
            .field("alg", &self.alg)
            .field("provider", &self.provider)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl AeadKey {
    /// Expands `material` for `alg` using `provider`.
    pub fn new(alg: AeadAlg, provider: Provider, material: &KeyAndSalt) -> Self {
        let backend = match provider {
            Provider::Ring => Backend::Ring(RingAead::new(alg, material.key())),
            Provider::RustCrypto => {
                Backend::RustCrypto(Box::new(RustCryptoAead::new(alg, material.key())))
            }
        };
        Self {
            alg,
            provider,
            salt: *material.salt(),
            backend,
        }
    }

    /// The transform.
    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    /// The provider doing the work.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    fn nonce(&self, iv: &[u8; IV_LEN]) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..SALT_LEN].copy_from_slice(&self.salt);
        nonce[SALT_LEN..].copy_from_slice(iv);
        nonce
    }

    fn backend(&self) -> &dyn AeadBackend {
        match &self.backend {
            Backend::Ring(k) => k,
            Backend::RustCrypto(k) => &**k,
        }
    }

    /// Encrypts `buf` in place under nonce `salt || iv` and returns the ICV.
    ///
    /// The IV must never repeat under one key; ESP uses the sequence number.
    pub fn seal_in_place_detached(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError> {
        self.backend().seal(&self.nonce(iv), aad, buf)
    }

    /// Verifies `icv` and decrypts `buf` in place. On failure `buf` holds garbage.
    pub fn open_in_place_detached(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), CryptoError> {
        self.backend().open(&self.nonce(iv), aad, buf, icv)
    }

    /// Encrypts the front of `buf` in place and writes the ICV into its last
    /// [`ICV_LEN`] bytes (the plaintext is `buf[..len - 16]`).
    pub fn seal_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<(), CryptoError> {
        let text_len = buf
            .len()
            .checked_sub(ICV_LEN)
            .ok_or(CryptoError::InvalidLength {
                what: "buffer for ciphertext and ICV",
                expected: ICV_LEN,
                got: buf.len(),
            })?;
        let (text, icv) = buf.split_at_mut(text_len);
        let tag = self.seal_in_place_detached(iv, aad, text)?;
        icv.copy_from_slice(&tag);
        Ok(())
    }

    /// Verifies and decrypts `ciphertext || ICV` in place and returns the plaintext
    /// part of `buf`.
    pub fn open_in_place<'a>(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        let text_len = buf
            .len()
            .checked_sub(ICV_LEN)
            .ok_or(CryptoError::AuthenticationFailed)?;
        let (text, icv) = buf.split_at_mut(text_len);
        let icv: &[u8; ICV_LEN] = (&*icv)
            .try_into()
            .map_err(|_| CryptoError::AuthenticationFailed)?;
        self.open_in_place_detached(iv, aad, text, icv)?;
        Ok(text)
    }

    /// Encrypts `buf` in place and appends the ICV: the shape IKE's SK payload
    /// wants (RFC 5282 §3, RFC 7634 §3). `iv` must be [`IV_LEN`] bytes.
    pub fn seal_append(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let iv = iv_array(iv)?;
        let tag = self.seal_in_place_detached(&iv, aad, buf)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Verifies and decrypts `ciphertext || ICV` in `buf`, leaving only the
    /// plaintext in it. `iv` must be [`IV_LEN`] bytes.
    pub fn open_truncate(
        &self,
        iv: &[u8],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let iv = iv_array(iv)?;
        let text_len = self.open_in_place(&iv, aad, buf)?.len();
        buf.truncate(text_len);
        Ok(())
    }
}

fn iv_array(iv: &[u8]) -> Result<[u8; IV_LEN], CryptoError> {
    iv.try_into().map_err(|_| CryptoError::InvalidLength {
        what: "AEAD IV",
        expected: IV_LEN,
        got: iv.len(),
    })
}

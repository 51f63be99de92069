//! The cipher interface of the SK payload (RFC 7296 §3.14, AEAD use per RFC 5282).
//!
//! The codec lays out SK — IV, encrypted payloads, padding, Pad Length, ICV — and
//! computes the associated data; an [`SkCipher`] only seals and opens. This keeps
//! the codec free of crypto crates: the IKE SA's AEADs (ChaCha20-Poly1305,
//! AES-GCM-16) implement the trait elsewhere.

/// Why an [`SkCipher`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The ICV did not verify: the message was altered or keyed differently.
    #[error("authentication tag mismatch")]
    AuthenticationFailed,
    /// The input is too short for the ICV, or too long for the cipher.
    #[error("input length not acceptable to the cipher")]
    InvalidLength,
}

/// An AEAD keyed for one direction of an IKE SA (SK_ei/SK_ai or SK_er/SK_ar).
pub trait SkCipher {
    /// Size of the explicit IV in the payload (8 for both AEADs of the profile).
    fn iv_len(&self) -> usize;
    /// Size of the ICV appended to the ciphertext (16 for both AEADs of the profile).
    fn icv_len(&self) -> usize;
    /// Padding granularity in bytes; 1 for AEADs (RFC 5282 §3 needs no padding,
    /// though Pad Length is always present).
    fn block_size(&self) -> usize;
    /// Encrypts `buf` in place and appends the ICV. `aad` is everything from the
    /// start of the IKE header to the end of the SK generic payload header
    /// (RFC 5282 §5.1); `iv` is the explicit IV written in the payload.
    fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError>;
    /// Verifies the ICV at the end of `buf`, decrypts in place and strips the ICV.
    fn open(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError>;
}

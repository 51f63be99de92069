//! PRF_HMAC_SHA2_256 (RFC 4868 §2.1.2 for IKEv2) and `prf+` (RFC 7296 §2.13).

use ring::hmac;
use zeroize::Zeroizing;

use super::CryptoError;

/// Output (and preferred key) length of PRF_HMAC_SHA2_256.
pub const PRF_LEN: usize = 32;

/// The most `prf+` may produce: 255 blocks (RFC 7296 §2.13).
pub const PRF_PLUS_MAX: usize = 255 * PRF_LEN;

/// `prf(key, data)` where `data` is the concatenation of `parts`.
///
/// Keys of any length are accepted (HMAC hashes keys longer than a block), as
/// IKEv2 needs for `prf(Ni | Nr, g^ir)`.
pub fn prf(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; PRF_LEN]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let mut out = Zeroizing::new([0u8; PRF_LEN]);
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Fills `out` with `prf+(key, S)` where `S` is the concatenation of `seed`:
///
/// ```text
/// prf+ (K,S) = T1 | T2 | T3 | T4 | ...
/// T1 = prf (K, S | 0x01)
/// T2 = prf (K, T2 | S | 0x02) ...
/// ```
///
/// Fails when `out` is longer than 255 blocks.
pub fn prf_plus(key: &[u8], seed: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
    if out.len() > PRF_PLUS_MAX {
        return Err(CryptoError::PrfPlusTooLong(out.len()));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut previous = Zeroizing::new([0u8; PRF_LEN]);
    for (index, chunk) in out.chunks_mut(PRF_LEN).enumerate() {
        let mut ctx = hmac::Context::with_key(&key);
        if index > 0 {
            ctx.update(&previous[..]);
        }
        for part in seed {
            ctx.update(part);
        }
        // index < 255 by the length check above.
        ctx.update(&[(index + 1) as u8]);
        previous.copy_from_slice(ctx.sign().as_ref());
        chunk.copy_from_slice(&previous[..chunk.len()]);
    }
    Ok(())
}

//! The SK payload's cipher (RFC 7296 §3.14) for the IKE SA's AEADs: AES-GCM-16
//! with a 256-bit key (RFC 5282) and ChaCha20-Poly1305 (RFC 7634).
//!
//! Both use an 8-byte explicit IV, a 16-byte ICV and no padding beyond the Pad
//! Length octet; the nonce is `salt | IV` with the salt from SK_e (RFC 5282 §4).

use crate::crypto::{AeadKey, CryptoError as AeadError, ICV_LEN, IV_LEN};
use crate::ike::message::{CryptoError, SkCipher};

impl SkCipher for AeadKey {
    fn iv_len(&self) -> usize {
        IV_LEN
    }

    fn icv_len(&self) -> usize {
        ICV_LEN
    }

    fn block_size(&self) -> usize {
        1
    }

    fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.seal_append(iv, aad, buf).map_err(map_error)
    }

    fn open(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.open_truncate(iv, aad, buf).map_err(map_error)
    }
}

fn map_error(e: AeadError) -> CryptoError {
    match e {
        AeadError::AuthenticationFailed => CryptoError::AuthenticationFailed,
        _ => CryptoError::InvalidLength,
    }
}

#[cfg(test)]
mod tests {
    use crate::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
    use crate::ike::message::*;

    #[test]
    fn seals_and_opens_a_protected_message() {
        for alg in AeadAlg::ALL {
            let key = AeadKey::new(alg, Provider::Ring, &KeyAndSalt::from_bytes([7; 36]));
            let header = Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::INITIATOR, 3);
            let inner = vec![Payload::Delete(Delete::ike())];
            let mut out = Vec::new();
            Message::emit_protected(&header, &inner, &key, &[1; 8], &mut out).unwrap();
            let parsed = Message::parse_protected(&out, &key).unwrap();
            assert_eq!(parsed.payloads, inner);
            let last = out.len() - 1;
            out[last] ^= 1;
            assert!(matches!(Message::parse_protected(&out, &key), Err(Error::Crypto(CryptoError::AuthenticationFailed))));
        }
    }
}

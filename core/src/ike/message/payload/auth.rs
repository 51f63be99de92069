//! The Authentication payload (RFC 7296 §3.8), with the RFC 7427 Digital
//! Signature layout of method 14.
//!
//! ```text
//! | Auth Method   |                RESERVED                       |
//! |                      Authentication Data ~                    |
//! ```
//!
//! For method 14 (RFC 7427 §3) the Authentication Data is
//! `ASN.1 Length (1) | AlgorithmIdentifier (DER) | Signature Value`; the
//! AlgorithmIdentifier is kept as DER bytes (RFC 8420 §3 gives Ed25519's).

use std::fmt;

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::AuthMethod;
use crate::ike::message::reader::Reader;

/// The DER AlgorithmIdentifier of Ed25519, `SEQUENCE { OID 1.3.101.112 }`
/// without parameters (RFC 8420 §3, RFC 8410 §3).
pub const ED25519_ALGORITHM_IDENTIFIER: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// An AUTH payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// How `data` authenticates the sender.
    pub method: AuthMethod,
    /// The Authentication Data; for [`AuthMethod::DIGITAL_SIGNATURE`] see
    /// [`Auth::signature_parts`].
    pub data: Vec<u8>,
}

impl Auth {
    /// A Digital Signature (method 14) AUTH from a DER AlgorithmIdentifier and the
    /// signature value (RFC 7427 §3). The identifier must be under 256 bytes.
    pub fn digital_signature(algorithm_identifier: &[u8], signature: &[u8]) -> Self {
        let mut data = Vec::with_capacity(1 + algorithm_identifier.len() + signature.len());
        data.push(algorithm_identifier.len() as u8);
        data.extend_from_slice(algorithm_identifier);
        data.extend_from_slice(signature);
        Self {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data,
        }
    }

    /// For method 14: the DER AlgorithmIdentifier and the signature value. `None`
    /// for other methods or when the ASN.1 Length points past the data.
    pub fn signature_parts(&self) -> Option<(&[u8], &[u8])> {
        if self.method != AuthMethod::DIGITAL_SIGNATURE {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let len = len as usize;
        (rest.len() >= len).then(|| rest.split_at(len))
    }

    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "AUTH payload");
        let method = AuthMethod(r.u8()?);
        r.take(3)?;
        Ok(Self {
            method,
            data: budget.copy(r.rest())?,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.method.0, 0, 0, 0]);
        out.extend_from_slice(&self.data);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Auth {{ method: {:?}, data: {} bytes }}",
            self.method,
            self.data.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digital_signature_bytes() {
        let sig = [0x5a; 64];
        let auth = Auth::digital_signature(&ED25519_ALGORITHM_IDENTIFIER, &sig);
        let mut out = Vec::new();
        auth.emit(&mut out);
        let mut expected = vec![14, 0, 0, 0, 7, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
        expected.extend_from_slice(&sig);
        assert_eq!(out, expected);
        assert_eq!(auth.buffer_len(), out.len());
        let parsed = Auth::parse(&out).unwrap();
        assert_eq!(parsed, auth);
        let (alg, s) = parsed.signature_parts().unwrap();
        assert_eq!(alg, ED25519_ALGORITHM_IDENTIFIER);
        assert_eq!(s, sig);
    }

    #[test]
    fn null_auth_and_bad_lengths() {
        let body = [13, 0, 0, 0, 1, 2, 3];
        let auth = Auth::parse(&body).unwrap();
        assert_eq!(auth.method, AuthMethod::NULL);
        assert_eq!(auth.data, [1, 2, 3]);
        assert_eq!(auth.signature_parts(), None);
        let bad = Auth {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: vec![9, 1],
        };
        assert_eq!(bad.signature_parts(), None);
        assert!(matches!(
            Auth::parse(&[14, 0, 0]),
            Err(Error::Truncated { .. })
        ));
    }
}

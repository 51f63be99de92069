//! The Key Exchange payload (RFC 7296 §3.4).
//!
//! ```text
//! |   Diffie-Hellman Group Num    |           RESERVED            |
//! |                       Key Exchange Data ~                     |
//! ```

use std::fmt;

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::DhGroup;
use crate::ike::message::reader::Reader;

/// A public key exchange value for a group.
#[derive(Clone, PartialEq, Eq)]
pub struct Ke {
    /// The group of `data`.
    pub group: DhGroup,
    /// The public value (32 bytes for Curve25519, RFC 8031 §3.1).
    pub data: Vec<u8>,
}

impl Ke {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "KE payload");
        let group = DhGroup(r.u16()?);
        r.take(2)?;
        Ok(Self {
            group,
            data: budget.copy(r.rest())?,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.group.0.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.data);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }
}

impl fmt::Debug for Ke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ke {{ group: {:?}, data: {} bytes }}",
            self.group,
            self.data.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        let body = [0, 31, 0, 0, 0xaa, 0xbb];
        let ke = Ke::parse(&body).unwrap();
        assert_eq!(
            ke,
            Ke {
                group: DhGroup::CURVE25519,
                data: vec![0xaa, 0xbb]
            }
        );
        let mut out = Vec::new();
        ke.emit(&mut out);
        assert_eq!(out, body);
        assert_eq!(ke.buffer_len(), body.len());
        assert!(matches!(
            Ke::parse(&[0, 31, 0]),
            Err(Error::Truncated { .. })
        ));
    }
}

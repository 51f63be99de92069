//! The Encrypted and Authenticated payload SK (RFC 7296 §3.14) and its fragment
//! form SKF (RFC 7383 §2.5), still sealed. [`crate::ike::message::Message::parse_protected`]
//! opens SK; SKF reassembly is left to the state machine.
//!
//! ```text
//! SK:  | Next Payload  |C|  RESERVED   |         Payload Length        |
//!      |                     Initialization Vector                     |
//!      ~                    Encrypted IKE Payloads                     ~
//!      |               |             Padding (0-255 octets)            |
//!      |                                               |  Pad Length   |
//!      ~                    Integrity Checksum Data                    ~
//! SKF: the same after Fragment Number (2) and Total Fragments (2).
//! ```

use std::fmt;

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::PayloadType;
use crate::ike::message::reader::Reader;

/// A sealed SK payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Sk {
    /// The type of the first encrypted payload (the SK header's Next Payload).
    pub first_inner: PayloadType,
    /// IV, ciphertext and ICV.
    pub body: Vec<u8>,
}

/// A sealed SKF payload (RFC 7383 §2.5).
#[derive(Clone, PartialEq, Eq)]
pub struct Skf {
    /// The first encrypted payload's type in fragment 1, [`PayloadType::NONE`] in the others.
    pub first_inner: PayloadType,
    /// Fragment Number, from 1.
    pub number: u16,
    /// Total Fragments.
    pub total: u16,
    /// IV, ciphertext and ICV.
    pub body: Vec<u8>,
}

impl Sk {
    /// Takes the whole body; `first_inner` comes from the generic header.
    pub fn parse(first_inner: PayloadType, body: &[u8]) -> Self {
        Self {
            first_inner,
            body: body.to_vec(),
        }
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        self.body.len()
    }
}

impl Skf {
    /// Parses the body; `first_inner` comes from the generic header.
    pub fn parse(first_inner: PayloadType, body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(first_inner, body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(
        first_inner: PayloadType,
        body: &[u8],
        budget: &mut Budget,
    ) -> Result<Self, Error> {
        let mut r = Reader::new(body, "SKF payload");
        let number = r.u16()?;
        let total = r.u16()?;
        Ok(Self {
            first_inner,
            number,
            total,
            body: budget.copy(r.rest())?,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.total.to_be_bytes());
        out.extend_from_slice(&self.body);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.body.len()
    }
}

impl fmt::Debug for Sk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sk {{ first_inner: {:?}, body: {} bytes }}",
            self.first_inner,
            self.body.len()
        )
    }
}

impl fmt::Debug for Skf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Skf {{ first_inner: {:?}, fragment: {}/{}, body: {} bytes }}",
            self.first_inner,
            self.number,
            self.total,
            self.body.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skf_bytes() {
        let body = [0, 1, 0, 3, 0xee, 0xff];
        let skf = Skf::parse(PayloadType::IDI, &body).unwrap();
        assert_eq!(
            (skf.number, skf.total, skf.body.as_slice()),
            (1, 3, &[0xee, 0xff][..])
        );
        let mut out = Vec::new();
        skf.emit(&mut out);
        assert_eq!(out, body);
        assert!(Skf::parse(PayloadType::NONE, &[0, 1, 0]).is_err());
    }
}

//! The Notify payload (RFC 7296 §3.10).
//!
//! ```text
//! |  Protocol ID  |   SPI Size    |      Notify Message Type      |
//! |                Security Parameter Index (SPI) ~               |
//! |                       Notification Data ~                     |
//! ```

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::{DhGroup, HashAlgorithm, NotifyType, ProtocolId};
use crate::ike::message::reader::Reader;

/// A notification: an error, or a status/capability announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// [`ProtocolId::NONE`] for notifications about the IKE SA as a whole;
    /// the SA's protocol when `spi` names a Child SA (§3.10).
    pub protocol: ProtocolId,
    /// The SPI the notification is about; empty for most (its size is SPI Size).
    pub spi: Vec<u8>,
    /// Notify Message Type.
    pub ty: NotifyType,
    /// Notification Data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notification about the IKE SA: protocol 0, no SPI.
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            ty,
            data,
        }
    }

    /// A notification about a Child SA, e.g. REKEY_SA (§1.3.3) with the ESP SPI.
    pub fn with_spi(protocol: ProtocolId, spi: Vec<u8>, ty: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol,
            spi,
            ty,
            data,
        }
    }

    /// N(SIGNATURE_HASH_ALGORITHMS) announcing `algorithms` (RFC 7427 §4).
    pub fn signature_hash_algorithms(algorithms: &[HashAlgorithm]) -> Self {
        let data = algorithms.iter().flat_map(|a| a.0.to_be_bytes()).collect();
        Self::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
    }

    /// The algorithms of N(SIGNATURE_HASH_ALGORITHMS); `None` for other types or
    /// data of odd length.
    pub fn hash_algorithms(&self) -> Option<Vec<HashAlgorithm>> {
        if self.ty != NotifyType::SIGNATURE_HASH_ALGORITHMS || !self.data.len().is_multiple_of(2) {
            return None;
        }
        Some(
            self.data
                .chunks_exact(2)
                .map(|c| HashAlgorithm(u16::from_be_bytes([c[0], c[1]])))
                .collect(),
        )
    }

    /// N(INVALID_KE_PAYLOAD) naming the group the responder wants (§1.2, §3.10.1).
    pub fn invalid_ke_payload(group: DhGroup) -> Self {
        Self::new(
            NotifyType::INVALID_KE_PAYLOAD,
            group.0.to_be_bytes().to_vec(),
        )
    }

    /// The group of N(INVALID_KE_PAYLOAD); `None` for other types or data not two octets.
    pub fn requested_group(&self) -> Option<DhGroup> {
        match (self.ty, self.data.as_slice()) {
            (NotifyType::INVALID_KE_PAYLOAD, &[hi, lo]) => {
                Some(DhGroup(u16::from_be_bytes([hi, lo])))
            }
            _ => None,
        }
    }

    /// Whether this is an error notification (type below 16384).
    pub fn is_error(&self) -> bool {
        self.ty.is_error()
    }

    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "Notify payload");
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let ty = NotifyType(r.u16()?);
        let spi = budget.copy(r.take(spi_size as usize)?)?;
        Ok(Self {
            protocol,
            spi,
            ty,
            data: budget.copy(r.rest())?,
        })
    }

    /// Appends the body. `spi` must be shorter than 256 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.protocol.0);
        out.push(self.spi.len() as u8);
        out.extend_from_slice(&self.ty.0.to_be_bytes());
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.spi.len() + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: &[u8], expected: &Notify) {
        let n = Notify::parse(body).unwrap();
        assert_eq!(&n, expected);
        let mut out = Vec::new();
        n.emit(&mut out);
        assert_eq!(out, body);
        assert_eq!(n.buffer_len(), body.len());
    }

    #[test]
    fn vectors() {
        round_trip(
            &[0, 0, 0x40, 0x2f, 0, 5],
            &Notify::signature_hash_algorithms(&[HashAlgorithm::IDENTITY]),
        );
        round_trip(
            &[0, 0, 0, 17, 0, 31],
            &Notify::invalid_ke_payload(DhGroup::CURVE25519),
        );
        round_trip(
            &[0, 0, 0x40, 0x06, 0xc0, 0x01],
            &Notify::new(NotifyType::COOKIE, vec![0xc0, 0x01]),
        );
        round_trip(
            &[3, 4, 0x40, 0x09, 0xca, 0xfe, 0xba, 0xbe],
            &Notify::with_spi(
                ProtocolId::ESP,
                vec![0xca, 0xfe, 0xba, 0xbe],
                NotifyType::REKEY_SA,
                vec![],
            ),
        );
        round_trip(&[0, 0, 0x9c, 0x41], &Notify::new(NotifyType(40001), vec![]));
    }

    #[test]
    fn helpers() {
        let n =
            Notify::signature_hash_algorithms(&[HashAlgorithm::SHA2_256, HashAlgorithm::IDENTITY]);
        assert_eq!(
            n.hash_algorithms().unwrap(),
            [HashAlgorithm::SHA2_256, HashAlgorithm::IDENTITY]
        );
        assert_eq!(
            Notify::invalid_ke_payload(DhGroup::ECP_256).requested_group(),
            Some(DhGroup::ECP_256)
        );
        assert_eq!(
            Notify::new(NotifyType::COOKIE, vec![1]).requested_group(),
            None
        );
        assert!(Notify::new(NotifyType::NO_PROPOSAL_CHOSEN, vec![]).is_error());
        assert!(matches!(
            Notify::parse(&[3, 4, 0x40, 0x09, 0xca]),
            Err(Error::Truncated { .. })
        ));
    }
}

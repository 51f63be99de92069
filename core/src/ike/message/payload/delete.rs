//! The Delete payload (RFC 7296 §3.11).
//!
//! ```text
//! | Protocol ID   |   SPI Size    |          Num of SPIs          |
//! |               Security Parameter Index(es) (SPI) ~            |
//! ```
//!
//! SPI Size must be 0 for IKE (the SPIs are in the header, and no SPIs are
//! listed) and 4 for ESP and AH. The SPIs are kept back to back in one
//! vector: a Delete costs one allocation of the size of its SPIs, however
//! many it lists. (Issue 11: one empty vector per SPI, with SPI Size 0 and
//! 65,535 SPIs announced in 4 bytes, made 8 bytes cost 1.5 MiB.)

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::ProtocolId;
use crate::ike::message::reader::Reader;

/// A request to delete the IKE SA (protocol IKE, no SPIs) or Child SAs by SPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// The protocol of the SAs.
    pub protocol: ProtocolId,
    /// SPI Size: 0 for IKE, 4 for ESP and AH.
    pub spi_size: u8,
    /// The SPIs of the SAs to delete (for Child SAs: the sender's inbound
    /// SPIs), back to back, `spi_size` bytes each; see [`Delete::spis`].
    pub spis: Vec<u8>,
}

impl Delete {
    /// Deletes the IKE SA the message belongs to.
    pub fn ike() -> Self {
        Self {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Deletes ESP SAs by SPI.
    pub fn esp(spis: &[u32]) -> Self {
        Self {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().flat_map(|s| s.to_be_bytes()).collect(),
        }
    }

    /// The SPIs, one slice each (none when SPI Size is 0).
    pub fn spis(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.spis
            .chunks_exact(usize::from(self.spi_size.max(1)))
            .take(self.spi_count())
    }

    /// Num of SPIs: how many whole SPIs `spis` holds.
    pub fn spi_count(&self) -> usize {
        match self.spi_size {
            0 => 0,
            size => self.spis.len() / usize::from(size),
        }
    }

    /// The SPIs as 32-bit values when they are four bytes each (ESP, AH).
    pub fn spis_u32(&self) -> Option<Vec<u32>> {
        if self.spi_size != 4 {
            return (self.spi_count() == 0).then(Vec::new);
        }
        Some(
            self.spis
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// Parses the body: SPI Size must suit the protocol and the SPIs fill
    /// the body exactly.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "Delete payload");
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let count = r.u16()?;
        let size_fits = match protocol {
            ProtocolId::IKE => spi_size == 0 && count == 0,
            ProtocolId::ESP | ProtocolId::AH => spi_size == 4,
            // Other protocols are not ours to judge, but SPIs of no bytes
            // cannot name anything.
            _ => spi_size != 0 || count == 0,
        };
        if !size_fits {
            return Err(Error::DeleteSpiSize {
                protocol,
                size: spi_size,
                count,
            });
        }
        let rest = r.rest();
        if rest.len() != usize::from(spi_size) * usize::from(count) {
            return Err(Error::DeleteSpis {
                size: spi_size,
                count,
                available: rest.len(),
            });
        }
        Ok(Self {
            protocol,
            spi_size,
            spis: budget.copy(rest)?,
        })
    }

    /// The SPIs written: whole ones, at most 65,535 (Num of SPIs is 16 bits).
    fn written(&self) -> usize {
        self.spi_count().min(usize::from(u16::MAX))
    }

    /// Appends the body: only whole SPIs are written, Num of SPIs counts them.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let count = self.written();
        out.push(self.protocol.0);
        out.push(self.spi_size);
        out.extend_from_slice(&(count as u16).to_be_bytes());
        out.extend_from_slice(&self.spis[..count * usize::from(self.spi_size)]);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.written() * usize::from(self.spi_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: &[u8], expected: &Delete) {
        let d = Delete::parse(body).unwrap();
        assert_eq!(&d, expected);
        let mut out = Vec::new();
        d.emit(&mut out);
        assert_eq!(out, body);
        assert_eq!(d.buffer_len(), body.len());
    }

    #[test]
    fn vectors() {
        round_trip(&[1, 0, 0, 0], &Delete::ike());
        round_trip(
            &[3, 4, 0, 2, 0, 0, 0, 1, 0xc0, 0, 0, 2],
            &Delete::esp(&[1, 0xc000_0002]),
        );
        let d = Delete::esp(&[7, 8]);
        assert_eq!(d.spis_u32(), Some(vec![7, 8]));
        assert_eq!(d.spi_count(), 2);
        assert_eq!(d.spis().collect::<Vec<_>>(), [[0, 0, 0, 7], [0, 0, 0, 8]]);
        assert_eq!(Delete::ike().spis_u32(), Some(vec![]));
        assert_eq!(Delete::ike().spis().len(), 0);
        // Another protocol with 2-byte SPIs: kept, not interpreted.
        round_trip(
            &[9, 2, 0, 2, 1, 2, 3, 4],
            &Delete {
                protocol: ProtocolId(9),
                spi_size: 2,
                spis: vec![1, 2, 3, 4],
            },
        );
    }

    #[test]
    fn spis_must_fill_body() {
        assert_eq!(
            Delete::parse(&[3, 4, 0, 2, 0, 0, 0, 1]).unwrap_err(),
            Error::DeleteSpis {
                size: 4,
                count: 2,
                available: 4
            }
        );
        assert!(matches!(
            Delete::parse(&[3, 4, 0, 0, 1]),
            Err(Error::DeleteSpis { .. })
        ));
    }

    /// Issue 11: SPI Size 0 with 65,535 SPIs fills no bytes, so it passed
    /// the length check and made 65,535 vectors.
    #[test]
    fn spi_size_zero_with_spis_is_refused() {
        for protocol in [0, 1, 3, 9] {
            let err = Delete::parse(&[protocol, 0, 0xff, 0xff]).unwrap_err();
            assert_eq!(
                err,
                Error::DeleteSpiSize {
                    protocol: ProtocolId(protocol),
                    size: 0,
                    count: 0xffff
                }
            );
            assert_eq!(
                err.notify_type(),
                Some(crate::ike::message::NotifyType::INVALID_SYNTAX)
            );
        }
    }

    #[test]
    fn spi_size_must_suit_the_protocol() {
        // IKE: size 0 and no SPIs.
        assert!(matches!(
            Delete::parse(&[1, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(Error::DeleteSpiSize { size: 8, .. })
        ));
        // ESP and AH: size 4, even when no SPIs are listed.
        assert!(matches!(
            Delete::parse(&[3, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(Error::DeleteSpiSize { size: 8, .. })
        ));
        assert!(matches!(
            Delete::parse(&[2, 0, 0, 0]),
            Err(Error::DeleteSpiSize { size: 0, .. })
        ));
        round_trip(
            &[2, 4, 0, 0],
            &Delete {
                protocol: ProtocolId::AH,
                spi_size: 4,
                spis: vec![],
            },
        );
    }

    #[test]
    fn emit_writes_whole_spis_only() {
        let d = Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![0, 0, 0, 9, 0xaa],
        };
        let mut out = Vec::new();
        d.emit(&mut out);
        assert_eq!(out, [3, 4, 0, 1, 0, 0, 0, 9]);
        assert_eq!(d.buffer_len(), out.len());
    }
}

//! The Delete payload (RFC 7296 §3.11).
//!
//! ```text
//! | Protocol ID   |   SPI Size    |          Num of SPIs          |
//! |               Security Parameter Index(es) (SPI) ~            |
//! ```

use crate::ike::message::Error;
use crate::ike::message::enums::ProtocolId;
use crate::ike::message::reader::Reader;

/// A request to delete the IKE SA (protocol IKE, no SPIs) or Child SAs by SPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// The protocol of the SAs.
    pub protocol: ProtocolId,
    /// SPI Size: 0 for IKE, 4 for ESP and AH. Each of `spis` must be this long.
    pub spi_size: u8,
    /// The SPIs of the SAs to delete (for Child SAs: the sender's inbound SPIs).
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Deletes the IKE SA the message belongs to.
    pub fn ike() -> Self {
        Self { protocol: ProtocolId::IKE, spi_size: 0, spis: Vec::new() }
    }

    /// Deletes ESP SAs by SPI.
    pub fn esp(spis: &[u32]) -> Self {
        Self { protocol: ProtocolId::ESP, spi_size: 4, spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect() }
    }

    /// The SPIs as 32-bit values when they are four bytes each (ESP, AH).
    pub fn spis_u32(&self) -> Option<Vec<u32>> {
        self.spis.iter().map(|s| <[u8; 4]>::try_from(s.as_slice()).ok().map(u32::from_be_bytes)).collect()
    }

    /// Parses the body; the SPIs must fill it exactly.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body, "Delete payload");
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let count = r.u16()?;
        let rest = r.rest();
        if rest.len() != spi_size as usize * count as usize {
            return Err(Error::DeleteSpis { size: spi_size, count, available: rest.len() });
        }
        let spis = if spi_size == 0 {
            vec![Vec::new(); count as usize]
        } else {
            rest.chunks_exact(spi_size as usize).map(<[u8]>::to_vec).collect()
        };
        Ok(Self { protocol, spi_size, spis })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.protocol.0);
        out.push(self.spi_size);
        out.extend_from_slice(&(self.spis.len() as u16).to_be_bytes());
        for spi in &self.spis {
            out.extend_from_slice(spi);
        }
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.spis.iter().map(Vec::len).sum::<usize>()
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
        round_trip(&[3, 4, 0, 2, 0, 0, 0, 1, 0xc0, 0, 0, 2], &Delete::esp(&[1, 0xc000_0002]));
        assert_eq!(Delete::esp(&[7, 8]).spis_u32(), Some(vec![7, 8]));
    }

    #[test]
    fn spis_must_fill_body() {
        assert_eq!(
            Delete::parse(&[3, 4, 0, 2, 0, 0, 0, 1]).unwrap_err(),
            Error::DeleteSpis { size: 4, count: 2, available: 4 }
        );
        assert!(matches!(Delete::parse(&[3, 4, 0, 0, 1]), Err(Error::DeleteSpis { .. })));
    }
}

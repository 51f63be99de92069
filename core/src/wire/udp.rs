//! The UDP header (RFC 768), as the test kit's floods build it.
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |   Source Port   |    Dest Port    |
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! ```

use super::checksum::Checksum;
use super::{Error, be16, put16};

/// The header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram (the IP payload).
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic unless
    /// [`Self::check_len`] passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer that holds a whole datagram (see [`Self::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header and a length field from 8 up to the buffer's length.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(Error::Truncated {
                what: "UDP",
                need: HEADER_LEN,
                have,
            });
        }
        let field = usize::from(self.len());
        if field < HEADER_LEN || field > have {
            return Err(Error::Length {
                what: "UDP",
                field,
                have,
            });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length of header and data.
    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the datagram carries no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field (0: none was computed, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The data, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, sum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    /// Computes the checksum over `pseudo` (the IP layer's pseudo-header sum),
    /// the header and the data up to the length field, and writes it; a
    /// computed 0 is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, pseudo: Checksum) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let sum = pseudo.add_bytes(&self.buffer.as_ref()[..len]).finish();
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::pseudo_header;

    #[test]
    fn fields_lengths_and_checksum() {
        let mut buf = [0u8; 12];
        let mut u = UdpPacket::new_unchecked(&mut buf[..]);
        u.set_src_port(4500);
        u.set_dst_port(500);
        u.set_len(11);
        let pseudo = pseudo_header(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, 11);
        u.fill_checksum(pseudo);
        let u = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (4500, 500, 11));
        assert_eq!(u.payload(), &[0; 3]);
        assert!(!u.is_empty());
        assert_eq!(
            pseudo.add_bytes(&buf[..11]).finish(),
            0,
            "checksum verifies"
        );
        assert!(matches!(
            UdpPacket::new_checked(&buf[..10]),
            Err(Error::Length {
                field: 11,
                have: 10,
                ..
            })
        ));
        assert!(matches!(
            UdpPacket::new_checked(&buf[..7]),
            Err(Error::Truncated { .. })
        ));
        buf[5] = 7;
        assert!(UdpPacket::new_checked(&buf[..]).is_err(), "length below 8");
    }
}

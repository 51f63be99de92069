//! The IPv6 fixed header (RFC 8200 §3). Extension headers are not followed:
//! [`Ipv6Packet::next_header`] is the fixed header's, and the payload is
//! everything after it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! |                  Source Address (16 bytes)                    |
//! |               Destination Address (16 bytes)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv6Addr;

use super::checksum::{Checksum, pseudo_header};
use super::{Error, be16, be32, put16};

/// The fixed header.
pub const HEADER_LEN: usize = 40;

mod field {
    use std::ops::Range;
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const PAYLOAD_LEN: usize = 4;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: Range<usize> = 8..24;
    pub(super) const DST: Range<usize> = 24..40;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic unless
    /// [`Self::check_len`] passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer that holds a whole IPv6 packet (see [`Self::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks version 6, the fixed header, and a payload length within the
    /// buffer (bytes after it are allowed and are not part of the payload).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                what: "IPv6",
                need: HEADER_LEN,
                have: len,
            });
        }
        if self.version() != 6 {
            return Err(Error::Version(self.version()));
        }
        let total = HEADER_LEN + usize::from(self.payload_len());
        if total > len {
            return Err(Error::Length {
                what: "IPv6",
                field: total,
                have: len,
            });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length: what follows the fixed header.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The fixed header's next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address's bytes.
    #[inline]
    pub fn src_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC]
    }

    /// The destination address's bytes.
    #[inline]
    pub fn dst_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DST]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut b = [0u8; 16];
        b.copy_from_slice(self.src_bytes());
        Ipv6Addr::from(b)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut b = [0u8; 16];
        b.copy_from_slice(self.dst_bytes());
        Ipv6Addr::from(b)
    }

    /// The payload: after the fixed header, up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// The pseudo-header sum for a `protocol` segment of `len` bytes.
    #[inline]
    pub fn pseudo_header(&self, protocol: u8, len: u32) -> Checksum {
        pseudo_header(self.src_bytes(), self.dst_bytes(), protocol, len)
    }
}

impl<'a> Ipv6Packet<&'a [u8]> {
    /// The payload, borrowed from the buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }
}

/// An IPv6 fixed header, as the tests build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The payload's protocol.
    pub next_header: u8,
    /// Length of the payload that follows.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// The header's length and the payload's.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header into `buf[..HEADER_LEN]` (traffic class and flow
    /// label zero); the payload is the caller's. Fails if the payload is longer
    /// than 65,535 bytes; panics if `buf` is shorter than [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| Error::Length {
            what: "IPv6",
            field: self.buffer_len(),
            have: HEADER_LEN + usize::from(u16::MAX),
        })?;
        let header = &mut buf[..HEADER_LEN];
        header[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        header[field::PAYLOAD_LEN..field::PAYLOAD_LEN + 2]
            .copy_from_slice(&payload_len.to_be_bytes());
        header[field::NEXT_HEADER] = self.next_header;
        header[field::HOP_LIMIT] = self.hop_limit;
        header[field::SRC].copy_from_slice(&self.src_addr.octets());
        header[field::DST].copy_from_slice(&self.dst_addr.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_read() {
        let r = Ipv6Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: 58,
            payload_len: 4,
            hop_limit: 64,
        };
        let mut buf = vec![0; r.buffer_len() + 2];
        r.emit(&mut buf).unwrap();
        buf[40..44].copy_from_slice(&[1, 2, 3, 4]);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.src_addr(), p.dst_addr()), (r.src_addr, r.dst_addr));
        assert_eq!(
            (p.next_header(), p.hop_limit(), p.payload_len()),
            (58, 64, 4)
        );
        assert_eq!(p.payload(), &[1, 2, 3, 4], "trailing bytes are not payload");
        assert_eq!((p.traffic_class(), p.flow_label()), (0, 0));
        buf[0] = 0x6a;
        buf[1] = 0xb1;
        buf[2] = 0x23;
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.traffic_class(), p.flow_label()), (0xab, 0x1_2300));
        let mut p = Ipv6Packet::new_checked(&mut buf[..]).unwrap();
        p.set_payload_len(6);
        assert_eq!(p.payload().len(), 6);
    }

    #[test]
    fn lengths_are_checked_once() {
        let mut buf = [0u8; 44];
        buf[0] = 0x60;
        buf[5] = 4;
        assert!(Ipv6Packet::new_checked(&buf[..]).is_ok());
        assert!(matches!(
            Ipv6Packet::new_checked(&buf[..43]),
            Err(Error::Length {
                field: 44,
                have: 43,
                ..
            })
        ));
        assert!(matches!(
            Ipv6Packet::new_checked(&buf[..39]),
            Err(Error::Truncated { need: 40, .. })
        ));
        buf[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..]).unwrap_err(),
            Error::Version(4)
        );
    }
}

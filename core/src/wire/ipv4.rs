//! The IPv4 header (RFC 791 §3.1). Options are carried, not interpreted.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP/ECN    |          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use super::checksum::{Checksum, checksum, pseudo_header};
use super::{Error, be16, put16};

/// The header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC: Range<usize> = 12..16;
    pub(super) const DST: Range<usize> = 16..20;
}

/// Don't Fragment, in the flags and fragment offset word.
const DF: u16 = 0x4000;
/// More Fragments.
const MF: u16 = 0x2000;
/// The fragment offset's 13 bits.
const OFFSET: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic unless
    /// [`Self::check_len`] passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer that holds a whole IPv4 packet (see [`Self::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks what every accessor relies on: version 4, a fixed header, a
    /// header length (IHL) from 20 bytes up to the total length, and a total
    /// length within the buffer. Bytes after the total length (link padding)
    /// are allowed and are not part of [`Self::payload`].
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                what: "IPv4",
                need: HEADER_LEN,
                have: len,
            });
        }
        if self.version() != 4 {
            return Err(Error::Version(self.version()));
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::HeaderLen {
                what: "IPv4",
                len: header_len,
            });
        }
        let total = usize::from(self.total_len());
        if total < header_len || total > len {
            return Err(Error::Length {
                what: "IPv4",
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
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP and ECN octet (the former type of service).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length: header and payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// The three flag bits (reserved, DF, MF) as the low bits of a byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLG_OFF] >> 5
    }

    /// Don't Fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & DF != 0
    }

    /// More Fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & MF != 0
    }

    /// The fragment offset in 8-byte units (0 for an unfragmented packet and
    /// the first fragment, the one that carries the transport header).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.flags_offset() & OFFSET
    }

    /// Whether this is one fragment of a larger datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum(self.header()) == 0
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
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: after the header, up to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// The pseudo-header sum for a `protocol` segment of `len` bytes.
    #[inline]
    pub fn pseudo_header(&self, protocol: u8, len: u32) -> Checksum {
        pseudo_header(self.src_bytes(), self.dst_bytes(), protocol, len)
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// The payload, borrowed from the buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, sum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, sum);
    }

    /// Computes the header checksum and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum(self.header());
        self.set_checksum(sum);
    }

    /// The payload, writable (after the header, up to the total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An IPv4 header without options, as the tests and floods build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// The payload's protocol.
    pub protocol: u8,
    /// Length of the payload that follows.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// The header's length and the payload's.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header, checksum included, into `buf[..HEADER_LEN]`; the
    /// payload is the caller's. Fails if the total length exceeds 65,535
    /// bytes; panics if `buf` is shorter than [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let total = u16::try_from(self.buffer_len()).map_err(|_| Error::Length {
            what: "IPv4",
            field: self.buffer_len(),
            have: usize::from(u16::MAX),
        })?;
        let header = &mut buf[..HEADER_LEN];
        header[field::VER_IHL] = 0x45;
        header[field::DSCP_ECN] = 0;
        header[field::LENGTH..field::LENGTH + 2].copy_from_slice(&total.to_be_bytes());
        header[field::IDENT..field::IDENT + 2].copy_from_slice(&self.ident.to_be_bytes());
        let flags = if self.dont_frag { DF } else { 0 };
        header[field::FLG_OFF..field::FLG_OFF + 2].copy_from_slice(&flags.to_be_bytes());
        header[field::TTL] = self.ttl;
        header[field::PROTOCOL] = self.protocol;
        header[field::SRC].copy_from_slice(&self.src_addr.octets());
        header[field::DST].copy_from_slice(&self.dst_addr.octets());
        Ipv4Packet::new_unchecked(header).fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

    fn repr(payload_len: usize) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: A,
            dst_addr: B,
            protocol: 17,
            payload_len,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
        }
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let r = repr(payload.len());
        let mut buf = vec![0; r.buffer_len()];
        r.emit(&mut buf).unwrap();
        buf[HEADER_LEN..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn emit_then_read() {
        let buf = packet(&[1, 2, 3, 4, 5]);
        assert_eq!(
            &buf[..HEADER_LEN],
            &[
                0x45, 0, 0, 25, 0x12, 0x34, 0x40, 0, 64, 17, 0xa4, 0x8a, 192, 0, 2, 1, 192, 0, 2,
                20
            ]
        );
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!((p.src_addr(), p.dst_addr(), p.protocol()), (A, B, 17));
        assert_eq!(
            (p.ttl(), p.ident(), p.total_len(), p.header_len()),
            (64, 0x1234, 25, 20)
        );
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!((p.flags(), p.dscp_ecn()), (0b010, 0));
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5]);
        assert!(
            repr(65_516).emit(&mut [0; 20]).is_err(),
            "longer than the total length field"
        );
    }

    #[test]
    fn lengths_are_checked_once() {
        let good = packet(&[0; 8]);
        for cut in 0..HEADER_LEN {
            assert!(matches!(
                Ipv4Packet::new_checked(&good[..cut]),
                Err(Error::Truncated { .. })
            ));
        }
        // The total length says 28: one byte less is refused, link padding is not.
        assert!(matches!(
            Ipv4Packet::new_checked(&good[..27]),
            Err(Error::Length {
                field: 28,
                have: 27,
                ..
            })
        ));
        let mut padded = good.clone();
        padded.extend_from_slice(&[0xee; 3]);
        let p = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &[0; 8]);
        // IHL below 5, or beyond the total length.
        for ihl in [0u8, 4, 8] {
            let mut bad = good.clone();
            bad[0] = 0x40 | ihl;
            assert!(
                matches!(
                    Ipv4Packet::new_checked(&bad[..]),
                    Err(Error::HeaderLen { .. } | Error::Length { .. })
                ),
                "IHL {ihl}"
            );
        }
        // Options: IHL 6 reaches into the payload.
        let mut opts = good.clone();
        opts[0] = 0x46;
        let p = Ipv4Packet::new_checked(&opts[..]).unwrap();
        assert_eq!((p.header_len(), p.payload().len()), (24, 4));
        let mut v6 = good;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Error::Version(6)
        );
    }

    #[test]
    fn fragments_and_setters() {
        let mut buf = packet(&[0; 8]);
        buf[6] = 0x20; // MF, offset 0: the first fragment
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.more_frags() && p.is_fragment() && p.frag_offset() == 0);
        buf[6] = 0x00;
        buf[7] = 0x03; // offset 24 bytes, last fragment
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.more_frags() && p.is_fragment() && p.frag_offset() == 3);
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_total_len(24);
        p.fill_checksum();
        p.payload_mut().fill(9);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[9; 4]);
    }
}

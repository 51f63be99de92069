//! Zero-copy views of the IP packets the ESP data path reads and writes, in
//! smoltcp's two levels: a `Packet<T: AsRef<[u8]>>` view whose `new_checked`
//! validates the lengths once, so that its field accessors are plain loads,
//! with setters over `AsMut<[u8]>` where the data path writes; and, for the
//! headers tests and floods build, a `Repr` with `emit`.
//!
//! - [`ipv4`]: IPv4 (RFC 791) without interpreting options.
//! - [`ipv6`]: the IPv6 fixed header (RFC 8200 §3); extension headers are not
//!   followed (the next header is the fixed header's).
//! - [`tcp`], [`udp`]: TCP (RFC 9293 §3.1) and UDP (RFC 768) headers.
//! - [`checksum`](mod@checksum): the one RFC 1071 checksum, over several slices and the
//!   pseudo-header.
//! - [`icmp`]: ICMP "fragmentation needed" / ICMPv6 "packet too big" for
//!   the hosts behind the TUN, and the checks on a path MTU a router reports.
//! - [`rewrite`]: one address of a packet rewritten in place, its checksums
//!   updated (RFC 1624), for client address translation (RFC 7296 §3.15).
//! - [`IpPacket`]: either version, picked by the version nibble, for code that
//!   takes both (addresses, protocol, payload).
//!
//! A view never panics on a buffer `new_checked` accepted: every accessor
//! stays inside the lengths it checked.

use std::net::IpAddr;

pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod rewrite;
pub mod tcp;
pub mod udp;

pub use checksum::{Checksum, checksum, pseudo_header};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::TcpPacket;
pub use udp::UdpPacket;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") the data
/// path and the tests name.
pub mod protocol {
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// SCTP (RFC 9260).
    pub const SCTP: u8 = 132;
    /// UDP-Lite (RFC 3828).
    pub const UDP_LITE: u8 = 136;
}

/// Why a buffer is not a packet a view accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the fixed header.
    #[error("{what}: {have} bytes, shorter than its {need}-byte header")]
    Truncated {
        /// The header.
        what: &'static str,
        /// Its fixed size.
        need: usize,
        /// The buffer's length.
        have: usize,
    },
    /// The version nibble is not the view's (or neither 4 nor 6).
    #[error("IP version {0}")]
    Version(u8),
    /// A header length field below the fixed header or beyond the packet.
    #[error("{what}: header length {len} out of range")]
    HeaderLen {
        /// The header.
        what: &'static str,
        /// The header length the field gives.
        len: usize,
    },
    /// A total or payload length field that disagrees with the buffer.
    #[error("{what}: length field {field}, buffer {have} bytes")]
    Length {
        /// The header.
        what: &'static str,
        /// The packet length the field gives.
        field: usize,
        /// The buffer's length.
        have: usize,
    },
}

/// A big-endian `u16` at `at` (callers checked the length).
#[inline]
fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// A big-endian `u32` at `at` (callers checked the length).
#[inline]
fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian `u16` at `at` (callers checked the length).
#[inline]
fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The source and destination ports, the first four octets of TCP, UDP, SCTP
/// and UDP-Lite alike; `None` if `segment` is shorter than that.
#[inline]
pub fn ports(segment: &[u8]) -> Option<(u16, u16)> {
    match *segment {
        [a, b, c, d, ..] => Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))),
        _ => None,
    }
}

/// An IPv4 or IPv6 packet, by its version nibble.
#[derive(Debug, Clone)]
pub enum IpPacket<T: AsRef<[u8]>> {
    /// Version 4.
    V4(Ipv4Packet<T>),
    /// Version 6.
    V6(Ipv6Packet<T>),
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Checks `buffer` as the version its first nibble names.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        match buffer.as_ref().first().map(|b| b >> 4) {
            Some(4) => Ipv4Packet::new_checked(buffer).map(IpPacket::V4),
            Some(6) => Ipv6Packet::new_checked(buffer).map(IpPacket::V6),
            Some(v) => Err(Error::Version(v)),
            None => Err(Error::Truncated {
                what: "IP",
                need: 1,
                have: 0,
            }),
        }
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.src_addr().into(),
            IpPacket::V6(p) => p.src_addr().into(),
        }
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.dst_addr().into(),
            IpPacket::V6(p) => p.dst_addr().into(),
        }
    }

    /// The IPv4 protocol or the IPv6 fixed header's next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        match self {
            IpPacket::V4(p) => p.protocol(),
            IpPacket::V6(p) => p.next_header(),
        }
    }

    /// What follows the (fixed) header, up to the length fields' end.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        match self {
            IpPacket::V4(p) => p.payload(),
            IpPacket::V6(p) => p.payload(),
        }
    }

    /// The pseudo-header sum for a `protocol` segment of `len` bytes.
    #[inline]
    pub fn pseudo_header(&self, protocol: u8, len: u32) -> Checksum {
        match self {
            IpPacket::V4(p) => p.pseudo_header(protocol, len),
            IpPacket::V6(p) => p.pseudo_header(protocol, len),
        }
    }
}

impl<'a> IpPacket<&'a [u8]> {
    /// The payload, borrowed from the buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        match self {
            IpPacket::V4(p) => p.into_payload(),
            IpPacket::V6(p) => p.into_payload(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_ports() {
        assert_eq!(
            IpPacket::new_checked(&[][..]).unwrap_err(),
            Error::Truncated {
                what: "IP",
                need: 1,
                have: 0
            }
        );
        assert_eq!(
            IpPacket::new_checked(&[0x10u8; 40][..]).unwrap_err(),
            Error::Version(1)
        );
        assert!(matches!(
            IpPacket::new_checked(&[0x45u8; 10][..]),
            Err(Error::Truncated { need: 20, .. })
        ));
        assert_eq!(ports(&[0, 1, 0, 2]), Some((1, 2)));
        assert_eq!(ports(&[0, 1, 0]), None);
    }
}

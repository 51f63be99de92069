//! IPv4 ICMP echo packets (RFC 792) with their IPv4 header (RFC 791): the inner
//! packets the interop test puts into ESP tunnel mode and expects back.
//!
//! [`Echo::to_packet`] builds a whole IPv4 datagram (20-byte header without
//! options, header checksum, ICMP checksum); [`Echo::parse`] checks all of that
//! on the way back, so a reply that a peer mangled fails loudly.

use std::net::Ipv4Addr;

use oemesh_core::wire::{Ipv4Packet, Ipv4Repr, checksum, protocol};

/// IPv4 header without options.
pub(crate) const IPV4_HEADER_LEN: usize = oemesh_core::wire::ipv4::HEADER_LEN;
/// ICMP echo header: type, code, checksum, identifier, sequence number.
pub(crate) const ECHO_HEADER_LEN: usize = 8;
/// TTL of the packets built here.
const TTL: u8 = 64;

/// Echo request or echo reply (RFC 792 types 8 and 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EchoKind {
    /// Type 8.
    Request,
    /// Type 0.
    Reply,
}

impl EchoKind {
    fn icmp_type(self) -> u8 {
        match self {
            EchoKind::Request => 8,
            EchoKind::Reply => 0,
        }
    }
}

/// One ICMP echo message inside its IPv4 datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Echo {
    /// IPv4 source.
    pub(crate) src: Ipv4Addr,
    /// IPv4 destination.
    pub(crate) dst: Ipv4Addr,
    /// Request or reply.
    pub(crate) kind: EchoKind,
    /// Identifier.
    pub(crate) id: u16,
    /// Sequence number.
    pub(crate) seq: u16,
    /// Data (a reply carries the request's data back).
    pub(crate) payload: Vec<u8>,
}

impl Echo {
    /// An echo request.
    pub(crate) fn request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Echo {
        Echo {
            src,
            dst,
            kind: EchoKind::Request,
            id,
            seq,
            payload: payload.to_vec(),
        }
    }

    /// The reply a host gives to this request: addresses swapped, same
    /// identifier, sequence number and data (RFC 792, "Echo or Echo Reply Message").
    pub(crate) fn reply(&self) -> Echo {
        Echo {
            src: self.dst,
            dst: self.src,
            kind: EchoKind::Reply,
            id: self.id,
            seq: self.seq,
            payload: self.payload.clone(),
        }
    }

    /// Length of the IPv4 datagram.
    pub(crate) fn packet_len(&self) -> usize {
        IPV4_HEADER_LEN + ECHO_HEADER_LEN + self.payload.len()
    }

    /// Writes the IPv4 datagram into `out[..self.packet_len()]` (for building
    /// it in place in an ESP buffer). Panics if `out` is too short.
    pub(crate) fn emit(&self, out: &mut [u8]) {
        let ip = Ipv4Repr {
            src_addr: self.src,
            dst_addr: self.dst,
            protocol: protocol::ICMP,
            payload_len: ECHO_HEADER_LEN + self.payload.len(),
            ttl: TTL,
            ident: self.seq,
            dont_frag: true,
        };
        ip.emit(out).expect("echo packet fits in 64 KiB");
        let icmp = &mut out[IPV4_HEADER_LEN..self.packet_len()];
        icmp[0] = self.kind.icmp_type();
        icmp[1] = 0;
        icmp[2..4].fill(0);
        icmp[4..6].copy_from_slice(&self.id.to_be_bytes());
        icmp[6..8].copy_from_slice(&self.seq.to_be_bytes());
        icmp[ECHO_HEADER_LEN..].copy_from_slice(&self.payload);
        let sum = checksum(icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    }

    /// The IPv4 datagram as a new vector.
    pub(crate) fn to_packet(&self) -> Vec<u8> {
        let mut out = vec![0; self.packet_len()];
        self.emit(&mut out);
        out
    }

    /// Parses an IPv4 datagram that must be an ICMP echo request or reply with
    /// correct lengths and checksums. Trailing bytes after the IPv4 total length
    /// are ignored (ESP padding never reaches here, but a TUN may add some).
    pub(crate) fn parse(packet: &[u8]) -> Result<Echo, String> {
        let ip = Ipv4Packet::new_checked(packet).map_err(|e| format!("bad IPv4 header: {e}"))?;
        if !ip.verify_checksum() {
            return Err("bad IPv4 header checksum".into());
        }
        if ip.protocol() != protocol::ICMP {
            return Err(format!("IP protocol {}, not ICMP", ip.protocol()));
        }
        let icmp = ip.payload();
        if icmp.len() < ECHO_HEADER_LEN {
            return Err(format!("ICMP message of {} bytes", icmp.len()));
        }
        if checksum(icmp) != 0 {
            return Err("bad ICMP checksum".into());
        }
        let kind = match (icmp[0], icmp[1]) {
            (8, 0) => EchoKind::Request,
            (0, 0) => EchoKind::Reply,
            (t, c) => return Err(format!("ICMP type {t} code {c}, not an echo")),
        };
        Ok(Echo {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            kind,
            id: u16::from_be_bytes([icmp[4], icmp[5]]),
            seq: u16::from_be_bytes([icmp[6], icmp[7]]),
            payload: icmp[ECHO_HEADER_LEN..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn echo_request_bytes() {
        let packet = Echo::request(B, A, 0x1234, 1, b"oemesh").to_packet();
        // Checksums computed independently (Python, RFC 1071 sum over the
        // IPv4 header and over the ICMP message).
        let expected: [u8; 34] = [
            0x45, 0x00, 0x00, 0x22, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xb6, 0xd6, 192, 0, 2, 2,
            192, 0, 2, 1, // IPv4
            0x08, 0x00, 0x95, 0x97, 0x12, 0x34, 0x00, 0x01, b'o', b'e', b'm', b'e', b's', b'h',
        ];
        assert_eq!(packet, expected);
    }

    #[test]
    fn parse_round_trip_and_reply() {
        let request = Echo::request(B, A, 7, 42, b"hello through libipsec");
        let packet = request.to_packet();
        assert_eq!(checksum(&packet[..IPV4_HEADER_LEN]), 0);
        assert_eq!(checksum(&packet[IPV4_HEADER_LEN..]), 0);
        assert_eq!(Echo::parse(&packet), Ok(request.clone()));
        let reply = request.reply();
        assert_eq!((reply.src, reply.dst, reply.kind), (A, B, EchoKind::Reply));
        let mut with_trailer = reply.to_packet();
        with_trailer.extend_from_slice(&[0; 3]);
        assert_eq!(Echo::parse(&with_trailer), Ok(reply));
    }

    #[test]
    fn parse_refuses_damage() {
        let good = Echo::request(B, A, 7, 42, b"x").to_packet();
        let mut bad_ip = good.clone();
        bad_ip[8] = 1; // TTL changed, checksum not
        assert!(
            Echo::parse(&bad_ip)
                .unwrap_err()
                .contains("IPv4 header checksum")
        );
        let mut bad_icmp = good.clone();
        bad_icmp[IPV4_HEADER_LEN + 8] ^= 1;
        assert!(
            Echo::parse(&bad_icmp)
                .unwrap_err()
                .contains("ICMP checksum")
        );
        assert!(Echo::parse(&good[..good.len() - 1]).is_err());
        assert!(Echo::parse(&good[..10]).is_err());
    }
}

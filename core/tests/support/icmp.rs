//! IPv4 ICMP echo packets (RFC 792) with their IPv4 header (RFC 791): the inner
//! packets the interop test puts into ESP tunnel mode and expects back.
//!
//! [`Echo::to_packet`] builds a whole IPv4 datagram (20-byte header without
//! options, header checksum, ICMP checksum); [`Echo::parse`] checks all of that
//! on the way back, so a reply that a peer mangled fails loudly.

use std::net::Ipv4Addr;

/// IPv4 header without options.
pub(crate) const IPV4_HEADER_LEN: usize = 20;
/// ICMP echo header: type, code, checksum, identifier, sequence number.
pub(crate) const ECHO_HEADER_LEN: usize = 8;
/// IP protocol number of ICMP.
const PROTO_ICMP: u8 = 1;
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
        let total = self.packet_len();
        let total16 = u16::try_from(total).expect("echo packet fits in 64 KiB");
        let out = &mut out[..total];
        let (ip, icmp) = out.split_at_mut(IPV4_HEADER_LEN);
        ip[0] = 0x45; // version 4, IHL 5
        ip[1] = 0;
        ip[2..4].copy_from_slice(&total16.to_be_bytes());
        ip[4..6].copy_from_slice(&self.seq.to_be_bytes()); // identification
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
        ip[8] = TTL;
        ip[9] = PROTO_ICMP;
        ip[10..12].fill(0);
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());

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
        if packet.len() < IPV4_HEADER_LEN {
            return Err(format!(
                "{} bytes: shorter than an IPv4 header",
                packet.len()
            ));
        }
        if packet[0] >> 4 != 4 {
            return Err(format!("IP version {}, not 4", packet[0] >> 4));
        }
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        if ihl < IPV4_HEADER_LEN || total < ihl || total > packet.len() {
            return Err(format!(
                "bad IPv4 lengths: IHL {ihl}, total {total}, have {}",
                packet.len()
            ));
        }
        if checksum(&packet[..ihl]) != 0 {
            return Err("bad IPv4 header checksum".into());
        }
        if packet[9] != PROTO_ICMP {
            return Err(format!("IP protocol {}, not ICMP", packet[9]));
        }
        let icmp = &packet[ihl..total];
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
        let addr =
            |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
        Ok(Echo {
            src: addr(12),
            dst: addr(16),
            kind,
            id: u16::from_be_bytes([icmp[4], icmp[5]]),
            seq: u16::from_be_bytes([icmp[6], icmp[7]]),
            payload: icmp[ECHO_HEADER_LEN..].to_vec(),
        })
    }
}

/// The Internet checksum (RFC 1071): ones' complement of the ones' complement
/// sum of 16-bit words, an odd last byte padded with zero. Over data that
/// already contains a correct checksum it yields 0.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (after the
        // end-around carry); the checksum is its complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

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

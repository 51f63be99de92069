//! TCP receive coalescing (GRO) for the TUN writer: consecutive segments of a
//! TCP flow, as they come out of ESP, are appended into one super-packet that
//! the kernel takes in one `write(2)` with a virtio-net header (IFF_VNET_HDR:
//! `GSO_TCPV4`/`GSO_TCPV6`, checksum partial), as a NIC's GRO would hand them up.
//!
//! Done here rather than by tun-rs's `GROTable` because the packet is then
//! copied once (decrypted datagram → super-packet buffer) instead of three
//! times with an allocation per packet (our buffer, tun-rs's copy of each
//! packet, its append): memmove, malloc and free were ~15 % of the receiving
//! agent's profile, and CPU per GB fell by 7–15 % without them.
//!
//! The rules are those of Linux's `tcp_gro_receive` and wireguard-go's
//! `tcpGRO`: a segment joins a flow's open super-packet when it carries data,
//! has only ACK (and PSH) set, a valid checksum, the next sequence number, the
//! same ACK number, TCP options and IP header fields (ToS/traffic class, TTL/hop
//! limit, DF), and is not longer than the first segment; a shorter segment or
//! PSH closes the super-packet. Any other packet of the flow (SYN, FIN, pure
//! ACK, bad checksum) is written on its own and closes it, so that a flow's
//! packets keep their order. Packets that are not plain TCP (UDP, ICMP, IPv4
//! with options or fragments, IPv6 with extension headers) are not taken: the
//! caller writes them.

use oemesh_core::wire::tcp::{ACK, PSH};
use oemesh_core::wire::{IpPacket, Ipv4Packet, Ipv6Packet, TcpPacket, ipv4, ipv6, protocol};
use tun_rs::VIRTIO_NET_HDR_LEN;

/// The largest super-packet (the IP length fields' limit).
const MAX_PACKET: usize = 65_535;
/// Open flows tracked at once; the oldest is closed when more arrive.
const MAX_FLOWS: usize = 16;
/// Capacity of each buffer: a virtio header and a whole super-packet.
pub const BUF_CAPACITY: usize = VIRTIO_NET_HDR_LEN + MAX_PACKET;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// Where the checksum field is in the TCP header (`csum_offset`).
const TCP_CHECKSUM_OFFSET: u16 = 16;

/// A parsed plain TCP packet.
#[derive(Debug, Clone, Copy)]
struct Tcp {
    v6: bool,
    /// IP header length (the fixed header: no options or extension headers).
    iph: usize,
    /// TCP header length.
    thl: usize,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: usize,
    /// The IP header fields segments of one super-packet share.
    ip_fields: IpFields,
    /// Data with only ACK (and PSH) and a valid checksum: may be coalesced.
    candidate: bool,
    key: FlowKey,
}

/// The IP header fields that must match (ToS, the flag bits and TTL of IPv4;
/// traffic class and hop limit of IPv6), as `tcp_gro_receive` compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpFields([u8; 3]);

/// Addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    bytes: [u8; 36],
}

/// What is known of one output buffer.
#[derive(Debug, Clone, Copy)]
struct Group {
    v6: bool,
    iph: usize,
    thl: usize,
    ack: u32,
    ip_fields: IpFields,
    /// Payload size of the first segment (the GSO size).
    gso_size: usize,
    segs: usize,
    next_seq: u32,
    /// Nothing may be appended any more (short segment or PSH).
    closed: bool,
}

/// Coalesces TCP segments into reused buffers, each a virtio-net header
/// followed by a packet.
#[derive(Debug, Default)]
pub struct Coalescer {
    bufs: Vec<Vec<u8>>,
    groups: Vec<Option<Group>>,
    count: usize,
    flows: Vec<(FlowKey, usize)>,
}

impl Coalescer {
    /// Takes `packet` if it is plain TCP (appended to its flow's super-packet
    /// or queued on its own); returns `false`, leaving it to the caller, if not.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Some(tcp) = parse(packet) else {
            return false;
        };
        let flow = self.flows.iter().position(|(k, _)| *k == tcp.key);
        if tcp.candidate
            && let Some(f) = flow
            && self.try_append(self.flows[f].1, packet, &tcp)
        {
            return true;
        }
        if let Some(f) = flow {
            self.flows.remove(f);
        }
        let i = self.next_buf();
        let buf = &mut self.bufs[i];
        buf.extend_from_slice(packet);
        self.groups[i] = tcp.candidate.then_some(Group {
            v6: tcp.v6,
            iph: tcp.iph,
            thl: tcp.thl,
            ack: tcp.ack,
            ip_fields: tcp.ip_fields,
            gso_size: tcp.payload,
            segs: 1,
            next_seq: tcp.seq.wrapping_add(tcp.payload as u32),
            closed: tcp.flags & PSH != 0,
        });
        if tcp.candidate {
            if self.flows.len() == MAX_FLOWS {
                self.flows.remove(0);
            }
            self.flows.push((tcp.key, i));
        }
        true
    }

    fn next_buf(&mut self) -> usize {
        if self.count == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(BUF_CAPACITY));
            self.groups.push(None);
        }
        let i = self.count;
        self.count += 1;
        let buf = &mut self.bufs[i];
        buf.clear();
        buf.resize(VIRTIO_NET_HDR_LEN, 0);
        i
    }

    fn try_append(&mut self, i: usize, packet: &[u8], tcp: &Tcp) -> bool {
        let Some(g) = self.groups[i].as_mut() else {
            return false;
        };
        let buf = &mut self.bufs[i];
        if g.closed
            || g.v6 != tcp.v6
            || g.iph != tcp.iph
            || g.thl != tcp.thl
            || tcp.seq != g.next_seq
            || tcp.payload > g.gso_size
            || buf.len() - VIRTIO_NET_HDR_LEN + tcp.payload > MAX_PACKET
            || g.ack != tcp.ack
            || g.ip_fields != tcp.ip_fields
        {
            return false;
        }
        // Both were parsed with these header lengths (`parse`).
        let segment = TcpPacket::new_unchecked(&packet[tcp.iph..]);
        let mut head = TcpPacket::new_unchecked(&mut buf[VIRTIO_NET_HDR_LEN + g.iph..]);
        if head.options() != segment.options() {
            return false;
        }
        if tcp.flags & PSH != 0 {
            head.set_flags(head.flags() | PSH);
            g.closed = true;
        }
        if tcp.payload < g.gso_size {
            g.closed = true;
        }
        g.segs += 1;
        g.next_seq = g.next_seq.wrapping_add(tcp.payload as u32);
        buf.extend_from_slice(segment.payload());
        true
    }

    /// Completes the headers of every super-packet and returns the buffers to
    /// write, in order (each a virtio-net header and a packet). Empties the
    /// coalescer for the next batch (the buffers are reused).
    pub fn finish(&mut self) -> &[Vec<u8>] {
        self.flows.clear();
        let n = std::mem::take(&mut self.count);
        for (buf, g) in self.bufs[..n].iter_mut().zip(&self.groups[..n]) {
            match g {
                Some(g) if g.segs > 1 => finalize(buf, g),
                _ => buf[..VIRTIO_NET_HDR_LEN].fill(0),
            }
        }
        &self.bufs[..n]
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Lengths, IPv4 header checksum, the TCP pseudo-header checksum (the kernel
/// completes it: checksum partial) and the virtio-net header of a super-packet.
fn finalize(buf: &mut [u8], g: &Group) {
    let (hdr, pkt) = buf.split_at_mut(VIRTIO_NET_HDR_LEN);
    let len = pkt.len();
    let l4_len = len - g.iph;
    // The head packet was parsed with these header lengths; only its length
    // fields are stale.
    let (gso_type, pseudo) = if g.v6 {
        let mut ip = Ipv6Packet::new_unchecked(&mut *pkt);
        ip.set_payload_len(l4_len as u16);
        let pseudo = ip.pseudo_header(protocol::TCP, l4_len as u32);
        (VIRTIO_NET_HDR_GSO_TCPV6, pseudo)
    } else {
        let mut ip = Ipv4Packet::new_unchecked(&mut *pkt);
        ip.set_total_len(len as u16);
        ip.fill_checksum();
        let pseudo = ip.pseudo_header(protocol::TCP, l4_len as u32);
        (VIRTIO_NET_HDR_GSO_TCPV4, pseudo)
    };
    TcpPacket::new_unchecked(&mut pkt[g.iph..]).set_checksum(pseudo.fold());
    // struct virtio_net_hdr, in native byte order (no TUNSETVNETLE/BE):
    // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = gso_type;
    hdr[2..4].copy_from_slice(&((g.iph + g.thl) as u16).to_ne_bytes());
    hdr[4..6].copy_from_slice(&(g.gso_size as u16).to_ne_bytes());
    hdr[6..8].copy_from_slice(&(g.iph as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&TCP_CHECKSUM_OFFSET.to_ne_bytes());
}

/// Plain TCP: IPv4 without options or fragmentation, or IPv6 with TCP as the
/// next header; lengths consistent (the IP length fields cover the packet
/// exactly).
fn parse(p: &[u8]) -> Option<Tcp> {
    let ip = IpPacket::new_checked(p).ok()?;
    let (v6, iph, ip_fields) = match &ip {
        IpPacket::V4(v4) => {
            if v4.header_len() != ipv4::HEADER_LEN
                || v4.protocol() != protocol::TCP
                || usize::from(v4.total_len()) != p.len()
                || v4.is_fragment()
            {
                return None;
            }
            let fields = IpFields([v4.dscp_ecn(), v4.flags(), v4.ttl()]);
            (false, ipv4::HEADER_LEN, fields)
        }
        IpPacket::V6(v6) => {
            if v6.next_header() != protocol::TCP
                || ipv6::HEADER_LEN + usize::from(v6.payload_len()) != p.len()
            {
                return None;
            }
            let fields = IpFields([v6.traffic_class(), v6.hop_limit(), 0]);
            (true, ipv6::HEADER_LEN, fields)
        }
    };
    let l4 = ip.payload();
    let t = TcpPacket::new_checked(l4).ok()?;
    let (src, dst) = match &ip {
        IpPacket::V4(v4) => (v4.src_bytes(), v4.dst_bytes()),
        IpPacket::V6(v6) => (v6.src_bytes(), v6.dst_bytes()),
    };
    let mut key = FlowKey { bytes: [0; 36] };
    key.bytes[..src.len()].copy_from_slice(src);
    key.bytes[src.len()..src.len() + dst.len()].copy_from_slice(dst);
    key.bytes[32..36].copy_from_slice(t.port_bytes());
    let flags = t.flags();
    let payload = t.payload().len();
    let candidate = (flags == ACK || flags == ACK | PSH)
        && payload > 0
        && ip
            .pseudo_header(protocol::TCP, l4.len() as u32)
            .add_bytes(l4)
            .finish()
            == 0;
    Some(Tcp {
        v6,
        iph,
        thl: t.header_len(),
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags,
        payload,
        ip_fields,
        candidate,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oemesh_core::wire::{Ipv4Repr, Ipv6Repr};

    /// A TCP packet 1000 → 2000 with valid checksums, over IPv4 10.0.0.1 →
    /// 10.0.0.2 or IPv6 2001:db8::1 → 2001:db8::2.
    fn tcp(v6: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let l4_len = 20 + payload.len();
        let mut p = if v6 {
            let repr = Ipv6Repr {
                src_addr: "2001:db8::1".parse().unwrap(),
                dst_addr: "2001:db8::2".parse().unwrap(),
                next_header: protocol::TCP,
                payload_len: l4_len,
                hop_limit: 64,
            };
            let mut p = vec![0u8; repr.buffer_len()];
            repr.emit(&mut p).unwrap();
            p
        } else {
            let repr = Ipv4Repr {
                src_addr: [10, 0, 0, 1].into(),
                dst_addr: [10, 0, 0, 2].into(),
                protocol: protocol::TCP,
                payload_len: l4_len,
                ttl: 64,
                ident: 0,
                dont_frag: true,
            };
            let mut p = vec![0u8; repr.buffer_len()];
            repr.emit(&mut p).unwrap();
            p
        };
        let iph = p.len() - l4_len;
        let mut t = TcpPacket::new_unchecked(&mut p[iph..]);
        t.set_src_port(1000);
        t.set_dst_port(2000);
        t.set_seq_number(seq);
        t.set_ack_number(7);
        t.set_header_len(20);
        t.set_flags(flags);
        t.set_window(500);
        t.payload_mut().copy_from_slice(payload);
        let pseudo = IpPacket::new_checked(&p[..])
            .unwrap()
            .pseudo_header(protocol::TCP, l4_len as u32);
        let sum = pseudo.add_bytes(&p[iph..]).finish();
        TcpPacket::new_unchecked(&mut p[iph..]).set_checksum(sum);
        p
    }

    fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        tcp(false, seq, flags, payload)
    }

    fn hdr(buf: &[u8]) -> (u8, u8, u16, u16) {
        let u = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        (buf[0], buf[1], u(2), u(4))
    }

    #[test]
    fn consecutive_segments_become_one_super_packet() {
        let mut c = Coalescer::default();
        assert!(c.push(&tcp4(100, ACK, &[1; 100])));
        assert!(c.push(&tcp4(200, ACK, &[2; 100])));
        assert!(c.push(&tcp4(300, ACK | PSH, &[3; 50])));
        let out = c.finish();
        assert_eq!(out.len(), 1);
        let buf = &out[0];
        assert_eq!(
            hdr(buf),
            (
                VIRTIO_NET_HDR_F_NEEDS_CSUM,
                VIRTIO_NET_HDR_GSO_TCPV4,
                40,
                100
            )
        );
        let p = &buf[VIRTIO_NET_HDR_LEN..];
        assert_eq!(p.len(), 40 + 250);
        let ip = Ipv4Packet::new_checked(p).unwrap();
        assert_eq!(ip.total_len(), 290);
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        // tun-rs's own checksum agrees (an implementation of its own).
        assert_eq!(tun_rs::checksum(&p[..20], 0), 0xffff);
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(t.flags(), ACK | PSH);
        assert_eq!(&t.payload()[..100], &[1; 100]);
        assert_eq!(&t.payload()[200..], &[3; 50]);
        // Partial checksum: the folded pseudo-header sum.
        let pseudo = ip.pseudo_header(protocol::TCP, 270);
        assert_eq!(t.checksum(), pseudo.fold());
        let addrs = tun_rs::checksum_no_fold(&p[12..20], 0);
        let theirs = tun_rs::checksum(&[0, 6, 0x01, 0x0e], addrs);
        assert_eq!(t.checksum(), theirs);
        assert!(c.is_empty());
    }

    #[test]
    fn order_is_kept_and_runs_break() {
        let mut c = Coalescer::default();
        c.push(&tcp4(100, ACK, &[0; 100]));
        c.push(&tcp4(200, ACK, &[0; 60])); // short: closes
        c.push(&tcp4(260, ACK, &[0; 60])); // new super-packet
        c.push(&tcp4(320, ACK | 0x01, &[])); // FIN: on its own, closes the flow
        c.push(&tcp4(320, ACK, &[0; 10])); // cannot join the one before the FIN
        c.push(&tcp4(999, ACK, &[0; 10])); // sequence gap
        let mut bad = tcp4(1009, ACK, &[0; 10]);
        bad[45] ^= 1; // a payload byte: bad checksum, on its own
        c.push(&bad);
        let lens: Vec<usize> = c
            .finish()
            .iter()
            .map(|b| b.len() - VIRTIO_NET_HDR_LEN)
            .collect();
        assert_eq!(lens, [200, 100, 40, 50, 50, 50]);
    }

    #[test]
    fn single_segments_and_other_protocols() {
        let mut c = Coalescer::default();
        let mut udp = tcp4(1, ACK, &[0; 10]);
        udp[9] = protocol::UDP; // the protocol field
        assert!(!c.push(&udp), "not TCP: left to the caller");
        assert!(!c.push(&[0x60; 10]), "truncated");
        c.push(&tcp4(1, ACK, &[0; 10]));
        let out = c.finish();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][..VIRTIO_NET_HDR_LEN], &[0; VIRTIO_NET_HDR_LEN]);
        assert_eq!(out[0][VIRTIO_NET_HDR_LEN..], tcp4(1, ACK, &[0; 10]));
    }

    #[test]
    fn ipv6_segments_coalesce_and_extension_headers_do_not() {
        let mut c = Coalescer::default();
        assert!(c.push(&tcp(true, 100, ACK, &[1; 100])));
        assert!(c.push(&tcp(true, 200, ACK, &[2; 100])));
        let mut hop_by_hop = tcp(true, 300, ACK, &[3; 100]);
        hop_by_hop[6] = 0; // next header: not TCP
        assert!(!c.push(&hop_by_hop), "left to the caller");
        let out = c.finish();
        assert_eq!(out.len(), 1);
        assert_eq!(
            hdr(&out[0]),
            (
                VIRTIO_NET_HDR_F_NEEDS_CSUM,
                VIRTIO_NET_HDR_GSO_TCPV6,
                60,
                100
            )
        );
        let ip = Ipv6Packet::new_checked(&out[0][VIRTIO_NET_HDR_LEN..]).unwrap();
        assert_eq!(ip.payload_len(), 220);
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(t.checksum(), ip.pseudo_header(protocol::TCP, 220).fold());
    }

    #[test]
    fn size_limit() {
        let mut c = Coalescer::default();
        let seg = 1360;
        for i in 0..60u32 {
            c.push(&tcp4(i * seg as u32, ACK, &vec![0; seg]));
        }
        let out = c.finish();
        assert!(
            out.iter()
                .all(|b| b.len() - VIRTIO_NET_HDR_LEN <= MAX_PACKET)
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len() - VIRTIO_NET_HDR_LEN, 40 + 48 * seg);
    }
}

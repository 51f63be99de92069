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

use tun_rs::{VIRTIO_NET_HDR_LEN, checksum, checksum_no_fold};

/// The largest super-packet (the IP length fields' limit).
const MAX_PACKET: usize = 65_535;
/// Open flows tracked at once; the oldest is closed when more arrive.
const MAX_FLOWS: usize = 16;
/// Capacity of each buffer: a virtio header and a whole super-packet.
pub const BUF_CAPACITY: usize = VIRTIO_NET_HDR_LEN + MAX_PACKET;

const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;

/// A parsed plain TCP packet.
#[derive(Debug, Clone, Copy)]
struct Tcp {
    v6: bool,
    iph: usize,
    thl: usize,
    seq: u32,
    flags: u8,
    payload: usize,
    key: FlowKey,
}

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
        let candidate = (tcp.flags == TCP_ACK || tcp.flags == TCP_ACK | TCP_PSH)
            && tcp.payload > 0
            && checksum_valid(packet, &tcp);
        if candidate
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
        self.groups[i] = candidate.then_some(Group {
            v6: tcp.v6,
            iph: tcp.iph,
            thl: tcp.thl,
            gso_size: tcp.payload,
            segs: 1,
            next_seq: tcp.seq.wrapping_add(tcp.payload as u32),
            closed: tcp.flags & TCP_PSH != 0,
        });
        if candidate {
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
        let head = &mut self.bufs[i][VIRTIO_NET_HDR_LEN..];
        let (iph, thl) = (tcp.iph, tcp.thl);
        if g.closed
            || g.v6 != tcp.v6
            || g.iph != iph
            || g.thl != thl
            || tcp.seq != g.next_seq
            || tcp.payload > g.gso_size
            || head.len() + tcp.payload > MAX_PACKET
            || head[iph + 8..iph + 12] != packet[iph + 8..iph + 12]
            || head[iph + 20..iph + thl] != packet[iph + 20..iph + thl]
            || !ip_headers_match(head, packet, tcp.v6)
        {
            return false;
        }
        if tcp.flags & TCP_PSH != 0 {
            head[iph + 13] |= TCP_PSH;
            g.closed = true;
        }
        if tcp.payload < g.gso_size {
            g.closed = true;
        }
        g.segs += 1;
        g.next_seq = g.next_seq.wrapping_add(tcp.payload as u32);
        self.bufs[i].extend_from_slice(&packet[iph + thl..]);
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
    let (gso_type, addrs) = if g.v6 {
        pkt[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        (VIRTIO_NET_HDR_GSO_TCPV6, 8..40)
    } else {
        pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        pkt[10..12].fill(0);
        let sum = !checksum(&pkt[..g.iph], 0);
        pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        (VIRTIO_NET_HDR_GSO_TCPV4, 12..20)
    };
    let pseudo = pseudo_header(&pkt[addrs], l4_len);
    let partial = checksum(&[], pseudo);
    pkt[g.iph + 16..g.iph + 18].copy_from_slice(&partial.to_be_bytes());
    // struct virtio_net_hdr, in native byte order (no TUNSETVNETLE/BE).
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = gso_type;
    hdr[2..4].copy_from_slice(&((g.iph + g.thl) as u16).to_ne_bytes());
    hdr[4..6].copy_from_slice(&(g.gso_size as u16).to_ne_bytes());
    hdr[6..8].copy_from_slice(&(g.iph as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
}

/// The sum of the TCP pseudo-header (addresses, protocol, length), unfolded.
fn pseudo_header(addrs: &[u8], l4_len: usize) -> u64 {
    let len = (l4_len as u16).to_be_bytes();
    checksum_no_fold(&[0, 6, len[0], len[1]], checksum_no_fold(addrs, 0))
}

fn checksum_valid(packet: &[u8], tcp: &Tcp) -> bool {
    let addrs = if tcp.v6 { 8..40 } else { 12..20 };
    let l4 = &packet[tcp.iph..];
    checksum(l4, pseudo_header(&packet[addrs], l4.len())) == 0xffff
}

fn ip_headers_match(a: &[u8], b: &[u8], v6: bool) -> bool {
    if v6 {
        // Version and traffic class; hop limit.
        a[0] == b[0] && a[1] >> 4 == b[1] >> 4 && a[7] == b[7]
    } else {
        // ToS; DF and the reserved bit; TTL.
        a[1] == b[1] && a[6] >> 5 == b[6] >> 5 && a[8] == b[8]
    }
}

/// Plain TCP: IPv4 without options or fragmentation, or IPv6 with TCP as the
/// next header; lengths consistent.
fn parse(p: &[u8]) -> Option<Tcp> {
    let (v6, iph) = match p.first()? >> 4 {
        4 => {
            if p.len() < 20
                || p[0] & 0x0f != 5
                || p[9] != 6
                || usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
                || p[6] & 0x3f != 0
                || p[7] != 0
            {
                return None;
            }
            (false, 20)
        }
        6 => {
            if p.len() < 40
                || p[6] != 6
                || usize::from(u16::from_be_bytes([p[4], p[5]])) != p.len() - 40
            {
                return None;
            }
            (true, 40)
        }
        _ => return None,
    };
    let t = p.get(iph..iph + 20)?;
    let thl = usize::from(t[12] >> 4) * 4;
    if thl < 20 || p.len() < iph + thl {
        return None;
    }
    let mut key = FlowKey { bytes: [0; 36] };
    let addrs = if v6 { &p[8..40] } else { &p[12..20] };
    key.bytes[..addrs.len()].copy_from_slice(addrs);
    key.bytes[32..36].copy_from_slice(&t[0..4]);
    Some(Tcp {
        v6,
        iph,
        thl,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        flags: t[13],
        payload: p.len() - iph - thl,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP packet 10.0.0.1:1000 → 10.0.0.2:2000 with valid checksums.
    fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = 40 + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let sum = !checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&2000u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&7u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&500u16.to_be_bytes());
        p[40..].copy_from_slice(payload);
        let sum = !checksum(&p[20..], pseudo_header(&p[12..20], len - 20));
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    fn hdr(buf: &[u8]) -> (u8, u8, u16, u16) {
        let u = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        (buf[0], buf[1], u(2), u(4))
    }

    #[test]
    fn consecutive_segments_become_one_super_packet() {
        let mut c = Coalescer::default();
        assert!(c.push(&tcp4(100, TCP_ACK, &[1; 100])));
        assert!(c.push(&tcp4(200, TCP_ACK, &[2; 100])));
        assert!(c.push(&tcp4(300, TCP_ACK | TCP_PSH, &[3; 50])));
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
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 290);
        assert_eq!(checksum(&p[..20], 0), 0xffff, "IPv4 header checksum");
        assert_eq!(p[33], TCP_ACK | TCP_PSH);
        assert_eq!(&p[40..140], &[1; 100]);
        assert_eq!(&p[240..], &[3; 50]);
        // Partial checksum: the folded pseudo-header sum.
        let partial = u16::from_be_bytes([p[36], p[37]]);
        assert_eq!(partial, checksum(&[], pseudo_header(&p[12..20], 270)));
        assert!(c.is_empty());
    }

    #[test]
    fn order_is_kept_and_runs_break() {
        let mut c = Coalescer::default();
        c.push(&tcp4(100, TCP_ACK, &[0; 100]));
        c.push(&tcp4(200, TCP_ACK, &[0; 60])); // short: closes
        c.push(&tcp4(260, TCP_ACK, &[0; 60])); // new super-packet
        c.push(&tcp4(320, TCP_ACK | 0x01, &[])); // FIN: on its own, closes the flow
        c.push(&tcp4(320, TCP_ACK, &[0; 10])); // cannot join the one before the FIN
        c.push(&tcp4(999, TCP_ACK, &[0; 10])); // sequence gap
        let mut bad = tcp4(1009, TCP_ACK, &[0; 10]);
        bad[45] ^= 1; // bad checksum: on its own
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
        let mut udp = tcp4(1, TCP_ACK, &[0; 10]);
        udp[9] = 17;
        assert!(!c.push(&udp), "not TCP: left to the caller");
        assert!(!c.push(&[0x60; 10]), "truncated");
        c.push(&tcp4(1, TCP_ACK, &[0; 10]));
        let out = c.finish();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][..VIRTIO_NET_HDR_LEN], &[0; VIRTIO_NET_HDR_LEN]);
        assert_eq!(out[0][VIRTIO_NET_HDR_LEN..], tcp4(1, TCP_ACK, &[0; 10]));
    }

    #[test]
    fn size_limit() {
        let mut c = Coalescer::default();
        let seg = 1360;
        for i in 0..60u32 {
            c.push(&tcp4(i * seg as u32, TCP_ACK, &vec![0; seg]));
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

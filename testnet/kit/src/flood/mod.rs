//! A traffic generator for flood tests: raw IPv4 packets with `IP_HDRINCL`,
//! so that source addresses can be spoofed, sent as fast as the socket takes
//! them (or paced to a rate) for a duration or a count.
//!
//! The kinds of flood ([`Kind`]):
//!
//! - [`Kind::IkeInit`]: well-formed IKE_SA_INIT requests (RFC 7296 §1.2), built
//!   once with oemesh-core's message codec (SA with AES-GCM-256 and
//!   ChaCha20-Poly1305, PRF HMAC-SHA2-256, group 31; KE, Nonce, NAT detection,
//!   SIGNATURE_HASH_ALGORITHMS), then per packet a fresh initiator SPI, nonce
//!   and KE value and a random source address in the given prefix, to UDP 500.
//! - [`Kind::EspRandomSpi`]: ESP-in-UDP (RFC 3948) to UDP 4500 with random
//!   SPIs, sequence numbers and bytes.
//! - [`Kind::Replay`]: UDP datagrams recorded earlier (e.g. ESP between two
//!   agents, from a [`crate::capture::Capture`]), sent again unchanged from
//!   their original source, round-robin.
//! - [`Kind::IkeRandomSpi`]: what looks like IKE_AUTH requests of IKE SAs
//!   that do not exist (random SPIs, an SK payload of random bytes) to UDP
//!   4500 with the non-ESP marker: the messages a worker cannot tell from an
//!   existing SA's, so they reach the responder's priority queue.
//! - [`Kind::IcmpUnreachable`]: forged ICMP port-unreachable errors (RFC 792)
//!   to a host, each quoting an IKE datagram from its UDP 500 to UDP 500 of a
//!   random address in the prefix (which the error claims to come from), with
//!   a random initiator SPI: what the host's kernel queues on its IKE socket.
//!
//! Each packet is rewritten in one buffer in place: nothing is allocated per
//! packet. The random numbers come from a xorshift generator (a flood needs
//! variety, not secrecy). Run it in the attacker's namespace ([`run`] uses the
//! calling thread's namespace; [`crate::netns::Netns::run`] puts it there).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_core::ike::message::{
    DhGroup, EncrId, ExchangeType, Flags, HEADER_LEN, HashAlgorithm, Header, Ke, Message, Nonce,
    Notify, NotifyType, Payload, PayloadType, PrfId, Proposal, ProtocolId, Sa, Transform,
};
use oemesh_core::wire::{Ipv4Repr, UdpPacket, protocol, pseudo_header};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::capture::Packet;

/// UDP port of IKE.
pub const IKE_PORT: u16 = 500;
/// UDP port of NAT-T and ESP-in-UDP.
pub const NAT_T_PORT: u16 = 4500;

const IPV4_HEADER: usize = oemesh_core::wire::ipv4::HEADER_LEN;
const UDP_HEADER: usize = oemesh_core::wire::udp::HEADER_LEN;
/// `IPPROTO_RAW`: a send-only raw socket that takes the whole IP header.
const IPPROTO_RAW: i32 = 255;

/// One UDP datagram to send again as it was ([`Kind::Replay`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Its source (spoofed when it is not ours).
    pub from: SocketAddr,
    /// Its destination.
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The datagram of a captured UDP packet over IPv4, if it is one.
    pub fn of_packet(p: &Packet) -> Option<Datagram> {
        let (sport, dport) = p.ports?;
        if !p.src.is_ipv4() || !p.dst.is_ipv4() {
            return None;
        }
        Some(Datagram {
            from: SocketAddr::new(p.src, sport),
            to: SocketAddr::new(p.dst, dport),
            payload: p.payload.clone(),
        })
    }
}

/// What to send.
#[derive(Clone, Debug)]
pub enum Kind {
    /// IKE_SA_INIT requests to `target`:500 from random sources in `sources`.
    IkeInit {
        /// The responder under attack.
        target: Ipv4Addr,
        /// Spoofed sources are drawn from this prefix.
        sources: (Ipv4Addr, u8),
    },
    /// ESP-in-UDP with random SPIs to `target`:4500 from random sources in
    /// `sources`, `len` bytes of ESP each (at least 16).
    EspRandomSpi {
        /// The host under attack.
        target: Ipv4Addr,
        /// Spoofed sources are drawn from this prefix.
        sources: (Ipv4Addr, u8),
        /// ESP bytes per datagram.
        len: usize,
    },
    /// These datagrams again, round-robin, from their own sources.
    Replay(Vec<Datagram>),
    /// IKE_AUTH-like requests with random SPIs to `target`:4500 (non-ESP
    /// marker, an SK payload of `len` random bytes, at least 32) from random
    /// sources in `sources`.
    IkeRandomSpi {
        /// The responder under attack.
        target: Ipv4Addr,
        /// Spoofed sources are drawn from this prefix.
        sources: (Ipv4Addr, u8),
        /// Bytes of the SK payload's body (IV, ciphertext, ICV).
        len: usize,
    },
    /// Forged "port unreachable" errors to `target` for IKE datagrams it
    /// never sent to random addresses in `sources`.
    IcmpUnreachable {
        /// The host under attack.
        target: Ipv4Addr,
        /// The unreachable addresses claimed, drawn from this prefix.
        sources: (Ipv4Addr, u8),
    },
}

/// How long and how fast.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop after this long (default 5 s).
    pub duration: Duration,
    /// Stop after this many packets, if given (whichever comes first).
    pub count: Option<u64>,
    /// Packets per second at most; `None`: as fast as the socket takes them.
    pub rate: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            duration: Duration::from_secs(5),
            count: None,
            rate: None,
        }
    }
}

/// What a flood did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Report {
    /// Packets the kernel took.
    pub sent: u64,
    /// Sends that failed (ENOBUFS and the like); not counted in `sent`.
    pub errors: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Report {
    /// Packets per second offered.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            #[allow(clippy::cast_precision_loss)] // a rate for people
            let sent = self.sent as f64;
            sent / s
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} packets in {:.2} s ({:.0} packets/s), {} send errors",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.errors
        )
    }
}

/// xorshift64*: fast, good enough to make every packet different.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// A random address in `prefix/len`, neither the first nor the last of it.
    fn addr_in(&mut self, (prefix, len): (Ipv4Addr, u8)) -> Ipv4Addr {
        let len = u32::from(len.min(32));
        let host_bits = 32 - len;
        let mask = if host_bits == 32 {
            u32::MAX
        } else {
            (1u32 << host_bits) - 1
        };
        let base = u32::from(prefix) & !mask;
        if mask < 3 {
            return Ipv4Addr::from(
                base | (u32::try_from(self.next_u64() >> 32).unwrap_or(0) & mask),
            );
        }
        let host = (u32::try_from(self.next_u64() >> 32).unwrap_or(1) % (mask - 1)) + 1;
        Ipv4Addr::from(base | host)
    }
}

/// Parses `a.b.c.d/len`.
pub fn parse_prefix(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (a, l) = s
        .split_once('/')
        .with_context(|| format!("{s:?}: expected an IPv4 prefix like 198.51.100.0/24"))?;
    let addr: Ipv4Addr = a.parse().with_context(|| format!("{s:?}: bad address"))?;
    let len: u8 = l.parse().with_context(|| format!("{s:?}: bad length"))?;
    if len > 32 {
        bail!("{s:?}: prefix length above 32");
    }
    Ok((addr, len))
}

/// An IKE_SA_INIT request as the codec emits it, and where in it the fields
/// that change per packet are.
#[derive(Debug)]
struct IkeTemplate {
    bytes: Vec<u8>,
    ke: std::ops::Range<usize>,
    nonce: std::ops::Range<usize>,
}

const KE_MARK: [u8; 32] = [0x5a; 32];
const NONCE_MARK: [u8; 32] = [0xa5; 32];

fn find(hay: &[u8], needle: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = hay.windows(needle.len()).position(|w| w == needle)?;
    Some(start..start + needle.len())
}

/// The IKE_SA_INIT request, emitted by oemesh-core's codec.
fn ike_template() -> Result<IkeTemplate> {
    let spi_i = 0x0123_4567_89ab_cdef;
    let sa = Sa {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: vec![
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::encr(EncrId::CHACHA20_POLY1305, None),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::CURVE25519),
            ],
        }],
    };
    let mut payloads = vec![
        Payload::Sa(sa),
        Payload::Ke(Ke {
            group: DhGroup::CURVE25519,
            data: KE_MARK.to_vec(),
        }),
        Payload::Nonce(Nonce(NONCE_MARK.to_vec())),
    ];
    // SHA-1-sized hashes that match nothing: to the responder a NAT (it
    // must compute its own to find out, RFC 7296 §2.23).
    for ty in [
        NotifyType::NAT_DETECTION_SOURCE_IP,
        NotifyType::NAT_DETECTION_DESTINATION_IP,
    ] {
        payloads.push(Payload::Notify(Notify::new(ty, vec![0x17; 20])));
    }
    payloads.push(Payload::Notify(Notify::signature_hash_algorithms(&[
        HashAlgorithm::IDENTITY,
    ])));
    let header = Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
    let mut bytes = Vec::new();
    Message::new(header, payloads).emit(&mut bytes);
    let ke = find(&bytes, &KE_MARK).context("KE data not found in the emitted message")?;
    let nonce = find(&bytes, &NONCE_MARK).context("nonce not found in the emitted message")?;
    Ok(IkeTemplate { bytes, ke, nonce })
}

/// Writes IPv4 and UDP headers in front of the `payload_len` bytes at
/// `buf[28..]`, with the UDP checksum. Returns the packet's length.
fn write_headers(
    buf: &mut [u8],
    from: SocketAddr,
    to: SocketAddr,
    payload_len: usize,
    ident: u16,
) -> Result<usize> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (from.ip(), to.ip()) else {
        bail!("{from} -> {to}: only IPv4 floods are supported");
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: protocol::UDP,
        payload_len: UDP_HEADER + payload_len,
        ttl: 64,
        ident,
        dont_frag: true,
    };
    let total = ip.buffer_len();
    ip.emit(buf).context("packet longer than 65535 bytes")?;
    let udp_len = u16::try_from(ip.payload_len).context("UDP datagram over 64 KiB")?;
    let mut udp = UdpPacket::new_unchecked(&mut buf[IPV4_HEADER..total]);
    udp.set_src_port(from.port());
    udp.set_dst_port(to.port());
    udp.set_len(udp_len);
    let pseudo = pseudo_header(&src.octets(), &dst.octets(), protocol::UDP, udp_len.into());
    udp.fill_checksum(pseudo);
    Ok(total)
}

/// Fills `buf` with the next packet of the flood; returns its length and
/// destination.
trait Source {
    fn next(&mut self, rng: &mut Rng, buf: &mut [u8]) -> Result<(usize, SocketAddr)>;
}

#[derive(Debug)]
struct IkeSource {
    template: IkeTemplate,
    target: SocketAddr,
    sources: (Ipv4Addr, u8),
}

impl Source for IkeSource {
    fn next(&mut self, rng: &mut Rng, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        let t = &self.template;
        let payload = &mut buf[IPV4_HEADER + UDP_HEADER..][..t.bytes.len()];
        payload.copy_from_slice(&t.bytes);
        let mut spi = [0u8; 8];
        while spi == [0; 8] {
            rng.fill(&mut spi);
        }
        payload[..8].copy_from_slice(&spi);
        rng.fill(&mut payload[t.ke.clone()]);
        rng.fill(&mut payload[t.nonce.clone()]);
        let from = SocketAddr::new(IpAddr::V4(rng.addr_in(self.sources)), IKE_PORT);
        let ident = u16::try_from(rng.next_u64() >> 48).unwrap_or(0);
        let len = write_headers(buf, from, self.target, t.bytes.len(), ident)?;
        Ok((len, self.target))
    }
}

#[derive(Debug)]
struct EspSource {
    target: SocketAddr,
    sources: (Ipv4Addr, u8),
    len: usize,
}

impl Source for EspSource {
    fn next(&mut self, rng: &mut Rng, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        let payload = &mut buf[IPV4_HEADER + UDP_HEADER..][..self.len];
        rng.fill(payload);
        // SPI 0 is the non-ESP marker (an IKE message follows, RFC 3948 §2.2).
        while payload[..4] == [0; 4] {
            rng.fill(&mut payload[..4]);
        }
        let from = SocketAddr::new(IpAddr::V4(rng.addr_in(self.sources)), NAT_T_PORT);
        let ident = u16::try_from(rng.next_u64() >> 48).unwrap_or(0);
        let len = write_headers(buf, from, self.target, self.len, ident)?;
        Ok((len, self.target))
    }
}

#[derive(Debug)]
struct IkeSpiSource {
    target: SocketAddr,
    sources: (Ipv4Addr, u8),
    len: usize,
}

impl Source for IkeSpiSource {
    fn next(&mut self, rng: &mut Rng, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        // Non-ESP marker, IKE header (RFC 7296 §3.1), SK payload (§3.14).
        let message = HEADER_LEN + 4 + self.len;
        let payload = &mut buf[IPV4_HEADER + UDP_HEADER..][..4 + message];
        rng.fill(payload);
        payload[..4].copy_from_slice(&[0; 4]);
        let ike = &mut payload[4..];
        let header = Header::new(0, 0, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        let total = u32::try_from(message).context("IKE message over 4 GiB")?;
        let h = header.to_bytes(PayloadType::SK, total);
        // Random SPIs (never zero: SPIr 0 would be an IKE_SA_INIT).
        ike[16..HEADER_LEN].copy_from_slice(&h[16..]);
        if ike[8..16] == [0; 8] {
            ike[15] = 1;
        }
        let sk_len = u16::try_from(4 + self.len).context("SK payload over 64 KiB")?;
        ike[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[PayloadType::IDI.0, 0, 0, 0]);
        ike[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&sk_len.to_be_bytes());
        let from = SocketAddr::new(IpAddr::V4(rng.addr_in(self.sources)), NAT_T_PORT);
        let ident = u16::try_from(rng.next_u64() >> 48).unwrap_or(0);
        let len = write_headers(buf, from, self.target, 4 + message, ident)?;
        Ok((len, self.target))
    }
}

#[derive(Debug)]
struct ReplaySource {
    datagrams: Vec<Datagram>,
    next: usize,
}

impl Source for ReplaySource {
    fn next(&mut self, rng: &mut Rng, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        let d = &self.datagrams[self.next % self.datagrams.len()];
        self.next = self.next.wrapping_add(1);
        buf[IPV4_HEADER + UDP_HEADER..][..d.payload.len()].copy_from_slice(&d.payload);
        let ident = u16::try_from(rng.next_u64() >> 48).unwrap_or(0);
        let len = write_headers(buf, d.from, d.to, d.payload.len(), ident)?;
        Ok((len, d.to))
    }
}

#[derive(Debug)]
struct IcmpSource {
    target: Ipv4Addr,
    sources: (Ipv4Addr, u8),
}

/// Bytes of the quoted IKE datagram: the header's SPIs and a little more.
const QUOTED_IKE: usize = 28;
const ICMP_HEADER: usize = 8;

impl Source for IcmpSource {
    fn next(&mut self, rng: &mut Rng, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        let unreachable = rng.addr_in(self.sources);
        // The quoted datagram, as the target would have sent it.
        let inner = IPV4_HEADER + ICMP_HEADER;
        rng.fill(&mut buf[inner + IPV4_HEADER + UDP_HEADER..][..QUOTED_IKE]);
        let from = SocketAddr::new(IpAddr::V4(self.target), IKE_PORT);
        let to = SocketAddr::new(IpAddr::V4(unreachable), IKE_PORT);
        let ident = u16::try_from(rng.next_u64() >> 48).unwrap_or(0);
        let quoted = write_headers(&mut buf[inner..], from, to, QUOTED_IKE, ident)?;
        // ICMP type 3 code 3, checksum over header and data (RFC 792).
        let icmp_len = ICMP_HEADER + quoted;
        let icmp = &mut buf[IPV4_HEADER..][..icmp_len];
        icmp[..ICMP_HEADER].copy_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        let sum = oemesh_core::wire::checksum(icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let ip = Ipv4Repr {
            src_addr: unreachable,
            dst_addr: self.target,
            protocol: protocol::ICMP,
            payload_len: icmp_len,
            ttl: 64,
            ident,
            dont_frag: false,
        };
        let total = ip.buffer_len();
        ip.emit(buf).context("ICMP packet too long")?;
        Ok((total, SocketAddr::new(IpAddr::V4(self.target), 0)))
    }
}

fn source_of(kind: Kind) -> Result<Box<dyn Source>> {
    Ok(match kind {
        Kind::IkeInit { target, sources } => Box::new(IkeSource {
            template: ike_template()?,
            target: SocketAddr::new(IpAddr::V4(target), IKE_PORT),
            sources,
        }),
        Kind::EspRandomSpi {
            target,
            sources,
            len,
        } => {
            if !(16..=1400).contains(&len) {
                bail!("ESP length {len}: use 16 to 1400 bytes");
            }
            Box::new(EspSource {
                target: SocketAddr::new(IpAddr::V4(target), NAT_T_PORT),
                sources,
                len,
            })
        }
        Kind::Replay(datagrams) => {
            if datagrams.is_empty() {
                bail!("nothing to replay");
            }
            if let Some(d) = datagrams.iter().find(|d| d.payload.len() > 1400) {
                bail!("a {}-byte datagram is too big to replay", d.payload.len());
            }
            Box::new(ReplaySource { datagrams, next: 0 })
        }
        Kind::IcmpUnreachable { target, sources } => Box::new(IcmpSource { target, sources }),
        Kind::IkeRandomSpi {
            target,
            sources,
            len,
        } => {
            if !(32..=1300).contains(&len) {
                bail!("SK payload length {len}: use 32 to 1300 bytes");
            }
            Box::new(IkeSpiSource {
                target: SocketAddr::new(IpAddr::V4(target), NAT_T_PORT),
                sources,
                len,
            })
        }
    })
}

/// Sends the flood from the calling thread's network namespace until a limit
/// is reached. `seed` makes the packets reproducible.
pub fn run(kind: Kind, limits: Limits, seed: u64) -> Result<Report> {
    let mut source = source_of(kind)?;
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))
        .context("raw IP socket (needs CAP_NET_RAW)")?;
    // Without this the first packets may go before the buffer matters; with
    // it, a blocking send paces us to what the interface takes.
    let _ = socket.set_send_buffer_size(4 << 20);
    let mut rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 1500];
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut report = Report::default();
    let interval = limits
        .rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs(1).div_f64(r as f64));
    let mut i: u64 = 0;
    loop {
        if limits.count.is_some_and(|c| report.sent >= c) {
            break;
        }
        // Reading the clock every packet would cost more than the packet.
        if i.is_multiple_of(64) && Instant::now() >= deadline {
            break;
        }
        if let Some(interval) = interval {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        i += 1;
        let (len, to) = source.next(&mut rng, &mut buf)?;
        match socket.send_to(&buf[..len], &SockAddr::from(SocketAddr::new(to.ip(), 0))) {
            Ok(_) => report.sent += 1,
            Err(_) => report.errors += 1,
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests;

//! Packet captures: `tcpdump -w` on an interface inside a namespace, and a small
//! reader for the resulting pcap file that finds IKE messages, ESP-in-UDP and
//! anything else in the clear.
//!
//! Only what the tests need is decoded: classic pcap (either byte order, micro- or
//! nanosecond timestamps), Ethernet (optionally one 802.1Q tag) or Linux cooked
//! capture, IPv4/IPv6 (no extension headers), UDP ports and ICMP.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::process::{self, Child};

/// The UDP port of IKE (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;
/// The UDP port of NAT-traversal IKE and ESP-in-UDP (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;

/// IP protocol numbers used below.
const PROTO_ICMP: u8 = 1;
const PROTO_UDP: u8 = 17;
const PROTO_ESP: u8 = 50;
const PROTO_ICMPV6: u8 = 58;

/// A running `tcpdump -w` inside a namespace; stopped by PID on drop.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    pcap: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i <iface> -U -s 0 -B 32768 -w <pcap> <filter>` in `ns`
    /// and waits (bounded) until it is listening. `filter` may be empty.
    pub fn start(ns: &Netns, iface: &str, filter: &str, pcap: &Path) -> Result<Capture> {
        process::require_programs(&["tcpdump"]);
        let log = pcap.with_extension("tcpdump.log");
        let pcap_s = pcap.to_str().context("pcap path is not UTF-8")?;
        let mut argv = vec![
            "tcpdump",
            "-i",
            iface,
            "-n",
            // Hand each packet to tcpdump at once: with the default ring-buffer
            // timeout, packets still in the kernel are lost on SIGTERM.
            "--immediate-mode",
            "-U",
            "-s",
            "0",
            // A 32 MiB kernel buffer (the default is 2 MiB): a 1 MiB transfer
            // on a busy two-core machine overran the default and tcpdump
            // dropped packets, which a "marker never seen" check cannot afford.
            "-B",
            "32768",
            "-Z",
            "root",
            "-w",
            pcap_s,
        ];
        argv.extend(filter.split_whitespace());
        let mut child = ns.spawn("tcpdump", &argv, &log)?;
        let ready = process::wait_until("tcpdump to listen", Duration::from_secs(5), || {
            !child.is_running()
                || std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening on"))
        });
        child.check_running()?;
        ready?;
        Ok(Capture {
            child,
            pcap: pcap.to_owned(),
        })
    }

    /// Stops tcpdump (flushing the file) and returns the packets captured.
    ///
    /// Packets the kernel dropped before tcpdump read them are not reported
    /// here: a check that something is *absent* from the wire should use
    /// [`Capture::stop_counted`] and distrust a capture with drops.
    pub fn stop(self) -> Result<Vec<Packet>> {
        Ok(self.stop_counted()?.packets)
    }

    /// Stops tcpdump and returns the packets and tcpdump's own counts, among
    /// them the packets the kernel dropped ([`CaptureStats::complete`]).
    pub fn stop_counted(mut self) -> Result<Captured> {
        // Let packets already on the wire reach the file first.
        std::thread::sleep(Duration::from_millis(100));
        self.child.stop()?;
        let log = std::fs::read_to_string(self.child.output_path()).unwrap_or_default();
        let stats = CaptureStats::parse(&log).with_context(|| {
            format!(
                "tcpdump printed no packet counts when it stopped; its output:\n{}",
                self.child.output_tail(10)
            )
        })?;
        Ok(Captured {
            packets: read_pcap(&self.pcap)?,
            stats,
        })
    }

    /// The pcap file being written.
    pub fn path(&self) -> &Path {
        &self.pcap
    }
}

/// What a stopped capture holds: the packets and tcpdump's counts.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The IP packets in the file.
    pub packets: Vec<Packet>,
    /// tcpdump's counts, printed when it stopped.
    pub stats: CaptureStats,
}

/// The counts tcpdump prints when it stops (`N packets captured`, `N packets
/// received by filter`, `N packets dropped by kernel`, and on some systems
/// `N packets dropped by interface`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Written to the file.
    pub captured: u64,
    /// Matched the filter.
    pub received_by_filter: u64,
    /// Lost in the kernel because tcpdump did not read them in time.
    pub dropped_by_kernel: u64,
    /// Lost by the interface (when the platform reports it).
    pub dropped_by_interface: u64,
}

impl CaptureStats {
    /// Reads the counts from tcpdump's output; `None` when the three lines
    /// every tcpdump prints are not all there (it was killed, or never ran).
    pub fn parse(output: &str) -> Option<CaptureStats> {
        let count = |what: &str| {
            output.lines().find_map(|l| {
                let (n, rest) = l.trim().split_once(' ')?;
                // "1 packet captured", "2 packets captured".
                (rest.replacen("packet ", "packets ", 1) == what)
                    .then(|| n.parse::<u64>().ok())
                    .flatten()
            })
        };
        Some(CaptureStats {
            captured: count("packets captured")?,
            received_by_filter: count("packets received by filter")?,
            dropped_by_kernel: count("packets dropped by kernel")?,
            dropped_by_interface: count("packets dropped by interface").unwrap_or(0),
        })
    }

    /// Packets lost before they reached the file.
    pub fn dropped(&self) -> u64 {
        self.dropped_by_kernel + self.dropped_by_interface
    }

    /// Whether the file holds every packet the interface saw: no drops.
    pub fn complete(&self) -> bool {
        self.dropped() == 0
    }
}

/// One captured IP packet, decoded as far as the tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Capture timestamp since the epoch.
    pub time: Duration,
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// IP protocol / IPv6 next header.
    pub protocol: u8,
    /// UDP ports, when `protocol` is UDP.
    pub ports: Option<(u16, u16)>,
    /// The IP payload after the UDP header for UDP, else after the IP header.
    pub payload: Vec<u8>,
}

impl Packet {
    /// Whether this is UDP with `port` as source or destination.
    pub fn is_udp_port(&self, port: u16) -> bool {
        self.ports.is_some_and(|(s, d)| s == port || d == port)
    }

    /// The IKE message carried, if any: UDP 500, or UDP 4500 starting with the
    /// four-zero-byte non-ESP marker (RFC 3948 §2.2), which is stripped.
    pub fn ike_message(&self) -> Option<&[u8]> {
        if self
            .ports
            .is_some_and(|(s, d)| s == IKE_PORT || d == IKE_PORT)
        {
            return Some(&self.payload);
        }
        if !self.is_udp_port(NAT_T_PORT) || self.payload.len() <= 4 {
            return None;
        }
        self.payload.strip_prefix(&[0, 0, 0, 0])
    }

    /// Whether this is an ESP packet in UDP 4500 (RFC 3948 §2.1: non-zero SPI;
    /// a lone 0xff byte is a NAT keepalive and not ESP).
    pub fn is_esp_in_udp(&self) -> bool {
        self.is_udp_port(NAT_T_PORT) && self.payload.len() >= 8 && self.payload[..4] != [0, 0, 0, 0]
    }

    /// Whether this is plain ESP (IP protocol 50).
    pub fn is_raw_esp(&self) -> bool {
        self.protocol == PROTO_ESP
    }

    /// Whether this is ICMP or ICMPv6.
    pub fn is_icmp(&self) -> bool {
        self.protocol == PROTO_ICMP || self.protocol == PROTO_ICMPV6
    }

    /// Whether this is IPv6 link-scope housekeeping a fresh interface sends by
    /// itself (neighbour discovery, DAD, MLD): ICMPv6 or a hop-by-hop header from
    /// `::` or `fe80::/10`, or to `ff02::/16`. Tests that assert "nothing else on
    /// the wire" skip these.
    pub fn is_link_local_control(&self) -> bool {
        const HOP_BY_HOP: u8 = 0;
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (self.src, self.dst) else {
            return false;
        };
        let link_scope = src.is_unspecified()
            || src.segments()[0] & 0xffc0 == 0xfe80
            || dst.segments()[0] == 0xff02;
        link_scope && (self.protocol == PROTO_ICMPV6 || self.protocol == HOP_BY_HOP)
    }

    /// Whether `addr` is the source or destination.
    pub fn involves(&self, addr: IpAddr) -> bool {
        self.src == addr || self.dst == addr
    }
}

/// Reads a classic pcap file. Frames that are not IPv4/IPv6 are skipped.
pub fn read_pcap(path: &Path) -> Result<Vec<Packet>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_pcap(&data).with_context(|| format!("parsing {}", path.display()))
}

/// Parses classic pcap bytes (see [`read_pcap`]).
pub fn parse_pcap(data: &[u8]) -> Result<Vec<Packet>> {
    if data.len() < 24 {
        bail!("short pcap header ({} bytes)", data.len());
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let (big_endian, nanos) = match magic {
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        _ => bail!("not a classic pcap file (magic {magic:02x?})"),
    };
    let u32_at = |b: &[u8], off: usize| -> u32 {
        let v = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        if big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let linktype = u32_at(data, 20);
    let mut packets = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let secs = u32_at(data, off);
        let frac = u32_at(data, off + 4);
        let caplen = usize::try_from(u32_at(data, off + 8))?;
        let start = off + 16;
        let Some(frame) = data.get(start..start + caplen) else {
            bail!("truncated record at offset {off}");
        };
        off = start + caplen;
        let time = Duration::new(
            u64::from(secs),
            if nanos {
                frac
            } else {
                frac.saturating_mul(1000)
            },
        );
        if let Some(p) = link_payload(linktype, frame).and_then(|ip| decode_ip(time, ip)) {
            packets.push(p);
        }
    }
    Ok(packets)
}

/// Strips the link-layer header; `None` for non-IP frames.
fn link_payload(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    const IPV4: u16 = 0x0800;
    const IPV6: u16 = 0x86dd;
    const VLAN: u16 = 0x8100;
    let be16 = |b: &[u8], o: usize| Some(u16::from_be_bytes([*b.get(o)?, *b.get(o + 1)?]));
    let (ethertype, rest) = match linktype {
        // Ethernet
        1 => {
            let mut t = be16(frame, 12)?;
            let mut o = 14;
            if t == VLAN {
                t = be16(frame, 16)?;
                o = 18;
            }
            (t, frame.get(o..)?)
        }
        // Linux cooked capture v1 (`-i any`)
        113 => (be16(frame, 14)?, frame.get(16..)?),
        // Linux cooked capture v2
        276 => (be16(frame, 0)?, frame.get(20..)?),
        // Raw IP (e.g. a TUN such as `ipsec0`)
        101 => return Some(frame),
        _ => return None,
    };
    matches!(ethertype, IPV4 | IPV6).then_some(rest)
}

fn decode_ip(time: Duration, ip: &[u8]) -> Option<Packet> {
    let version = ip.first()? >> 4;
    let (src, dst, protocol, body) = match version {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let end = total.min(ip.len());
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                *ip.get(9)?,
                ip.get(ihl..end)?,
            )
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let end = (40 + plen).min(ip.len());
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                *ip.get(6)?,
                ip.get(40..end)?,
            )
        }
        _ => return None,
    };
    let (ports, payload) = if protocol == PROTO_UDP {
        let sport = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
        let dport = u16::from_be_bytes([*body.get(2)?, *body.get(3)?]);
        (Some((sport, dport)), body.get(8..)?.to_vec())
    } else {
        (None, body.to_vec())
    };
    Some(Packet {
        time,
        src,
        dst,
        protocol,
        ports,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian pcap with one Ethernet/IPv4/UDP 4500 frame carrying a
    /// non-ESP marker and 4 bytes, and one ESP-in-UDP frame.
    fn sample() -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for payload in [&[0, 0, 0, 0, 1, 2, 3, 4][..], &[0, 0, 0, 7, 0, 0, 0, 1][..]] {
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            let total = u16::try_from(20 + 8 + payload.len()).expect("small");
            frame.extend_from_slice(&[0x45, 0]);
            frame.extend_from_slice(&total.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
            frame.extend_from_slice(&4500u16.to_be_bytes());
            frame.extend_from_slice(&4500u16.to_be_bytes());
            frame.extend_from_slice(&(total - 20).to_be_bytes());
            frame.extend_from_slice(&[0, 0]);
            frame.extend_from_slice(payload);
            let len = u32::try_from(frame.len()).expect("small");
            f.extend_from_slice(&5u32.to_le_bytes());
            f.extend_from_slice(&6u32.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&frame);
        }
        f
    }

    #[test]
    fn parses_ike_and_esp_in_udp() {
        let packets = parse_pcap(&sample()).expect("parses");
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].time, Duration::new(5, 6000));
        assert_eq!(packets[0].src, "192.0.2.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(packets[0].ike_message(), Some(&[1, 2, 3, 4][..]));
        assert!(!packets[0].is_esp_in_udp());
        assert!(packets[1].is_esp_in_udp());
        assert_eq!(packets[1].ike_message(), None);
    }

    #[test]
    fn reads_tcpdump_counts() {
        let out = "tcpdump: listening on br0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
                   2187 packets captured\n2216 packets received by filter\n29 packets dropped by kernel\n";
        let s = CaptureStats::parse(out).expect("counts");
        assert_eq!(
            s,
            CaptureStats {
                captured: 2187,
                received_by_filter: 2216,
                dropped_by_kernel: 29,
                dropped_by_interface: 0
            }
        );
        assert!(!s.complete());
        let one = "1 packet captured\n1 packet received by filter\n0 packets dropped by kernel\n\
                   0 packets dropped by interface\n";
        let s = CaptureStats::parse(one).expect("singular");
        assert_eq!((s.captured, s.dropped()), (1, 0));
        assert!(s.complete());
        assert_eq!(CaptureStats::parse("tcpdump: listening on br0\n"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_pcap(b"not a pcap file at all!!").is_err());
    }
}

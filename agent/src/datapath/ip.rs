//! The few IPv4/IPv6 header fields the data path reads: addresses, the
//! transport protocol and ports (for traffic selector checks, RFC 4301 §4.4.1).

use std::net::IpAddr;

use oemesh_core::ike::message::{AddrRange, AddrSelector};
use oemesh_core::wire::{IpPacket, ports, protocol};

/// The destination address of an IPv4 or IPv6 packet whose lengths are sound.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    Some(IpPacket::new_checked(packet).ok()?.dst_addr())
}

/// The source address of an IPv4 or IPv6 packet whose lengths are sound.
pub fn source(packet: &[u8]) -> Option<IpAddr> {
    Some(IpPacket::new_checked(packet).ok()?.src_addr())
}

/// Whether `dst` names one remote host: not multicast, broadcast, unspecified
/// or IPv6 link-local. Others come out of the TUN from the kernel's own link
/// chatter (router solicitations, MLD) and are no peer to decide about.
pub fn is_remote_unicast(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
        IpAddr::V6(a) => {
            !(a.is_multicast() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// What a traffic selector looks at in one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The transport protocol (IPv4 protocol, IPv6 next header of the fixed header).
    pub protocol: u8,
    /// Source and destination port for TCP (6), UDP (17), SCTP (132) and
    /// UDP-Lite (136) when the first fragment carries them.
    pub ports: Option<(u16, u16)>,
}

impl Flow {
    /// Reads the flow of an IPv4 or IPv6 packet: any bytes from any peer,
    /// `None` unless the header's lengths are sound. Ports come from the
    /// first four bytes of the payload; fragments after the first have none,
    /// and IPv6 extension headers are not followed.
    pub fn of(packet: &[u8]) -> Option<Flow> {
        let ip = IpPacket::new_checked(packet).ok()?;
        let l4 = match &ip {
            IpPacket::V4(v4) if v4.frag_offset() != 0 => None,
            _ => Some(ip.payload()),
        };
        let protocol = ip.next_header();
        let ports = match protocol {
            protocol::TCP | protocol::UDP | protocol::SCTP | protocol::UDP_LITE => {
                l4.and_then(ports)
            }
            _ => None,
        };
        Some(Flow {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol,
            ports,
        })
    }
}

/// Whether `addr` (with `protocol` and `port`) is inside `sel` (RFC 7296 §3.13.1:
/// protocol 0 is any; ports 0..=65535 are any).
pub fn selector_admits(sel: &AddrSelector, addr: IpAddr, protocol: u8, port: Option<u16>) -> bool {
    let addr_ok = match (sel.addrs, addr) {
        (AddrRange::V4(lo, hi), IpAddr::V4(a)) => lo <= a && a <= hi,
        (AddrRange::V6(lo, hi), IpAddr::V6(a)) => lo <= a && a <= hi,
        _ => false,
    };
    if !addr_ok || (sel.ip_protocol != 0 && sel.ip_protocol != protocol) {
        return false;
    }
    if sel.start_port == 0 && sel.end_port == u16::MAX {
        return true;
    }
    port.is_some_and(|p| sel.start_port <= p && p <= sel.end_port)
}

/// Whether an inbound packet's `flow` fits the SA: its source in the peer's
/// selectors, its destination in ours (RFC 4301 §5.2, step 4).
pub fn inbound_admits(flow: &Flow, local: &[AddrSelector], remote: &[AddrSelector]) -> bool {
    let (sport, dport) = match flow.ports {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    remote
        .iter()
        .any(|s| selector_admits(s, flow.src, flow.protocol, sport))
        && local
            .iter()
            .any(|s| selector_admits(s, flow.dst, flow.protocol, dport))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use oemesh_core::wire::{Ipv4Repr, Ipv6Repr, UdpPacket};

    /// A UDP datagram over IPv4 with 8 bytes of header and no data.
    pub(crate) fn v4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: src.into(),
            dst_addr: dst.into(),
            protocol: protocol::UDP,
            payload_len: 8,
            ttl: 64,
            ident: 0,
            dont_frag: false,
        };
        let mut p = vec![0u8; repr.buffer_len()];
        repr.emit(&mut p).unwrap();
        let mut udp = UdpPacket::new_unchecked(&mut p[20..]);
        udp.set_src_port(sport);
        udp.set_dst_port(dport);
        udp.set_len(8);
        p
    }

    #[test]
    fn addresses_and_flows() {
        let p = v4_udp([192, 0, 2, 1], [192, 0, 2, 20], 1000, 53);
        assert_eq!(destination(&p), Some("192.0.2.20".parse().unwrap()));
        assert_eq!(source(&p), Some("192.0.2.1".parse().unwrap()));
        let f = Flow::of(&p).unwrap();
        assert_eq!((f.protocol, f.ports), (17, Some((1000, 53))));
        let icmp6 = Ipv6Repr {
            src_addr: "2000::".parse().unwrap(),
            dst_addr: "2001::".parse().unwrap(),
            next_header: 58,
            payload_len: 0,
            hop_limit: 64,
        };
        let mut v6 = [0u8; 40];
        icmp6.emit(&mut v6).unwrap();
        assert_eq!(destination(&v6), Some("2001::".parse().unwrap()));
        assert_eq!(source(&v6), Some("2000::".parse().unwrap()));
        assert_eq!(Flow::of(&v6).unwrap().ports, None);
        assert_eq!(destination(&[0x45, 0]), None);
        assert_eq!(destination(&[]), None);
        assert_eq!(Flow::of(&[0x10]), None);
        for (ip, unicast) in [
            ("10.77.0.2", true),
            ("2001:db8::1", true),
            ("ff02::2", false),
            ("fe80::1", false),
            ("224.0.0.22", false),
            ("255.255.255.255", false),
        ] {
            assert_eq!(is_remote_unicast(ip.parse().unwrap()), unicast, "{ip}");
        }
    }

    #[test]
    fn flows_of_fragments_and_damaged_packets() {
        let p = v4_udp([192, 0, 2, 1], [192, 0, 2, 20], 1000, 53);
        // The first fragment carries the ports, the others do not.
        let mut first = p.clone();
        first[6] = 0x20;
        assert_eq!(Flow::of(&first).unwrap().ports, Some((1000, 53)));
        let mut later = p.clone();
        later[7] = 1;
        let f = Flow::of(&later).unwrap();
        assert_eq!((f.protocol, f.ports), (17, None));
        // Truncated, a bad IHL, a total length past the buffer: no flow.
        for cut in 0..20 {
            assert_eq!(Flow::of(&p[..cut]), None, "{cut} bytes");
        }
        for ihl in [0u8, 4, 15] {
            let mut bad = p.clone();
            bad[0] = 0x40 | ihl;
            assert_eq!(Flow::of(&bad), None, "IHL {ihl}");
        }
        assert_eq!(Flow::of(&p[..27]), None);
        // A transport header too short for ports.
        let mut short = p[..22].to_vec();
        short[3] = 22;
        assert_eq!(Flow::of(&short).unwrap().ports, None);
        // IPv6: a hop-by-hop header (next header 0) is not followed; a
        // payload length past the buffer is refused.
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        v6[6] = 0;
        let f = Flow::of(&v6).unwrap();
        assert_eq!((f.protocol, f.ports), (0, None));
        v6[6] = 17;
        v6[40..44].copy_from_slice(&[0, 7, 0, 9]);
        assert_eq!(Flow::of(&v6).unwrap().ports, Some((7, 9)));
        assert_eq!(Flow::of(&v6[..47]), None);
    }

    #[test]
    fn selectors() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.20".parse().unwrap();
        let local = [AddrSelector::host(b)];
        let remote = [AddrSelector::host(a)];
        let ok = Flow::of(&v4_udp([192, 0, 2, 1], [192, 0, 2, 20], 1, 2)).unwrap();
        assert!(inbound_admits(&ok, &local, &remote));
        let spoofed = Flow::of(&v4_udp([192, 0, 2, 9], [192, 0, 2, 20], 1, 2)).unwrap();
        assert!(!inbound_admits(&spoofed, &local, &remote));
        let mut dns_only = AddrSelector::host(a);
        dns_only.ip_protocol = 17;
        dns_only.start_port = 53;
        dns_only.end_port = 53;
        assert!(selector_admits(&dns_only, a, 17, Some(53)));
        assert!(!selector_admits(&dns_only, a, 17, Some(54)));
        assert!(!selector_admits(&dns_only, a, 6, Some(53)));
        assert!(!selector_admits(&dns_only, a, 17, None));
    }
}

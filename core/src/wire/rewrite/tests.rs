use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::wire::IpPacket;
use crate::wire::checksum::{checksum, pseudo_header};

/// IPv4 TCP SYN 192.168.1.10:40000 → 192.0.2.20:80 with "hello", checksums
/// computed from scratch by an independent script (not this module).
const TCP4: [u8; 45] = [
    0x45, 0x00, 0x00, 0x2d, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0xa4, 0xd0, 0xc0, 0xa8, 0x01, 0x0a,
    0xc0, 0x00, 0x02, 0x14, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x50, 0x02, 0xff, 0xff, 0x4b, 0xb3, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];
/// The same from 100.64.0.7.
const TCP4_FROM_ASSIGNED: [u8; 45] = [
    0x45, 0x00, 0x00, 0x2d, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x02, 0x3c, 0x64, 0x40, 0x00, 0x07,
    0xc0, 0x00, 0x02, 0x14, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x50, 0x02, 0xff, 0xff, 0xa9, 0x1e, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];
/// IPv6 UDP fd00::10:5353 → 2001:db8::20:53, "abc".
const UDP6: [u8; 51] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0b, 0xfb, 0x6d,
    0x61, 0x62, 0x63,
];
/// The same to 2001:db8::7.
const UDP6_TO_7: [u8; 51] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0b, 0xfb, 0x86,
    0x61, 0x62, 0x63,
];
/// ICMPv6 echo request fd00::10 → 2001:db8::20, id 7, seq 1, "ping".
const ICMP6: [u8; 52] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x80, 0x00, 0x75, 0xf6, 0x00, 0x07, 0x00, 0x01,
    0x70, 0x69, 0x6e, 0x67,
];
/// The same from 2001:db8:64::7.
const ICMP6_FROM_ASSIGNED: [u8; 52] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x64, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x80, 0x00, 0x44, 0xe3, 0x00, 0x07, 0x00, 0x01,
    0x70, 0x69, 0x6e, 0x67,
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn byte_vectors() {
    let mut p = TCP4;
    assert_eq!(set_source(&mut p, ip("100.64.0.7")), Ok(ip("192.168.1.10")));
    assert_eq!(p, TCP4_FROM_ASSIGNED);
    assert_eq!(set_source(&mut p, ip("192.168.1.10")), Ok(ip("100.64.0.7")));
    assert_eq!(p, TCP4);

    let mut p = UDP6;
    assert_eq!(
        set_destination(&mut p, ip("2001:db8::7")),
        Ok(ip("2001:db8::20"))
    );
    assert_eq!(p, UDP6_TO_7);

    let mut p = ICMP6;
    assert_eq!(set_source(&mut p, ip("2001:db8:64::7")), Ok(ip("fd00::10")));
    assert_eq!(p, ICMP6_FROM_ASSIGNED);
}

#[test]
fn refusals_leave_the_packet_alone() {
    let mut p = TCP4;
    assert_eq!(
        set_source(&mut p, ip("2001:db8::1")),
        Err(RewriteError::Family {
            version: 4,
            addr: ip("2001:db8::1")
        })
    );
    assert_eq!(p, TCP4);
    assert!(matches!(
        set_source(&mut [], ip("10.0.0.1")),
        Err(RewriteError::Malformed(Error::Truncated { .. }))
    ));
    assert!(matches!(
        set_source(&mut [0x50; 40], ip("10.0.0.1")),
        Err(RewriteError::Malformed(Error::Version(5)))
    ));
    // A TCP header cut before its checksum: total length 20 + 17.
    let mut short = TCP4;
    short[3] = 37;
    let before = short;
    assert_eq!(
        set_destination(&mut short, ip("10.0.0.1")),
        Err(RewriteError::Truncated { protocol: 6 })
    );
    assert_eq!(short, before);
    // A hop-by-hop header that runs past the payload.
    let mut p = UDP6;
    p[6] = ext::HOP_BY_HOP;
    p[41] = 200;
    assert_eq!(
        set_source(&mut p, ip("::1")),
        Err(RewriteError::ExtensionHeaders)
    );
}

#[test]
fn fragments_and_optional_udp_checksums() {
    // A non-first IPv4 fragment: only the IP header changes.
    let mut p = TCP4;
    p[6..8].copy_from_slice(&[0x00, 0x01]);
    p[10..12].fill(0);
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    let tail = p[20..].to_vec();
    set_source(&mut p, ip("100.64.0.7")).unwrap();
    assert_eq!(checksum(&p[..20]), 0);
    assert_eq!(&p[20..], &tail[..]);
    // An IPv4 UDP datagram without a checksum keeps none.
    let mut p = build(
        false,
        protocol::UDP,
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        b"x",
        0,
    );
    p[26..28].fill(0);
    set_destination(&mut p, ip("10.9.9.9")).unwrap();
    assert_eq!(&p[26..28], &[0, 0]);
    // ICMP over IPv4 has no pseudo-header: its checksum stays.
    let mut p = build(
        false,
        protocol::ICMP,
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        b"xy",
        0,
    );
    let icmp = p[20..].to_vec();
    set_source(&mut p, ip("100.64.0.7")).unwrap();
    assert_eq!(&p[20..], &icmp[..]);
    assert!(verifies(&p));
    // A non-first IPv6 fragment (Fragment header, offset 8).
    let mut p = UDP6;
    p[6] = ext::FRAGMENT;
    p[40..48].copy_from_slice(&[17, 0, 0, 8, 0, 0, 0, 1]);
    let payload = p[40..].to_vec();
    set_destination(&mut p, ip("2001:db8::7")).unwrap();
    assert_eq!(&p[40..], &payload[..]);
    // A routing header with segments left refuses a new destination only.
    let mut p = build(true, protocol::TCP, ip("fd00::1"), ip("fd00::2"), b"", 1);
    p[6] = ext::ROUTING;
    p[43] = 1;
    assert_eq!(
        set_destination(&mut p, ip("fd00::3")),
        Err(RewriteError::RoutingHeader)
    );
    assert!(set_source(&mut p, ip("fd00::3")).is_ok());
}

/// An ICMP (IPv4) or ICMPv6 error of `ty` from `src` to `dst` quoting `quote`,
/// with its checksum computed from scratch.
fn icmp_error(v6: bool, ty: u8, src: IpAddr, dst: IpAddr, quote: &[u8]) -> Vec<u8> {
    let proto = if v6 { ICMPV6 } else { protocol::ICMP };
    let mut p = build(v6, proto, src, dst, quote, 0);
    let at = if v6 { 40 } else { 20 };
    p[at] = ty;
    p[at + 2..at + 4].fill(0);
    let l4 = p[at..].to_vec();
    let sum = if v6 {
        let len = u32::try_from(l4.len()).unwrap();
        pseudo_header(&octets(src), &octets(dst), proto, len)
            .add_bytes(&l4)
            .finish()
    } else {
        checksum(&l4)
    };
    p[at + 2..at + 4].copy_from_slice(&sum.to_be_bytes());
    p
}

#[test]
fn icmp_errors_have_their_quoted_packet_translated_too() {
    let (own, given, bob, router) = (
        ip("192.168.1.10"),
        ip("100.64.0.7"),
        ip("192.0.2.20"),
        ip("203.0.113.1"),
    );
    // Inbound: "fragmentation needed" from a router beyond the peer about a
    // packet this host sent from the given address; the destination goes
    // back to this host's own, and so does the quoted packet's source.
    let sent = build(false, protocol::TCP, given, bob, b"data", 0);
    let mut p = icmp_error(false, 3, router, given, &sent);
    assert!(verifies(&p));
    assert_eq!(set_destination(&mut p, own), Ok(given));
    assert_eq!(&p[16..20], &octets(own)[..]);
    let quote = &p[28..];
    assert_eq!(&quote[12..16], &octets(own)[..], "quoted source translated");
    assert_eq!(&quote[16..20], &octets(bob)[..]);
    assert_eq!(checksum(&quote[..20]), 0, "quoted IPv4 header checksum");
    assert!(verifies(&p), "outer IPv4 header and ICMP checksums");
    // Outbound: this host's kernel answers bob with "port unreachable" about
    // a packet to its own address; the quote's destination becomes the given one.
    let received = build(false, protocol::UDP, bob, own, b"q", 0);
    let mut p = icmp_error(false, 3, own, bob, &received);
    assert_eq!(set_source(&mut p, given), Ok(own));
    assert_eq!(&p[28 + 16..28 + 20], &octets(given)[..]);
    assert_eq!(checksum(&p[28..48]), 0);
    assert!(verifies(&p));
    // IPv6 "packet too big" about a packet sent from the given address.
    let (own6, given6, bob6) = (ip("fd00::10"), ip("fd00:6f65::7"), ip("2001:db8::20"));
    let sent = build(true, protocol::TCP, given6, bob6, b"data", 0);
    let mut p = icmp_error(true, 2, ip("2001:db8::1"), given6, &sent);
    assert!(verifies(&p));
    assert_eq!(set_destination(&mut p, own6), Ok(given6));
    assert_eq!(&p[48 + 8..48 + 24], &octets(own6)[..]);
    assert!(verifies(&p), "ICMPv6 checksum with pseudo-header and quote");
    // Not an error (echo), or a quote of another address: only the outer
    // address changes.
    let mut echo = build(false, protocol::ICMP, router, given, &sent, 0);
    let tail = echo[28..].to_vec();
    set_destination(&mut echo, own).unwrap();
    assert_eq!(&echo[28..], &tail[..]);
    let other = build(false, protocol::TCP, ip("100.64.0.9"), bob, b"", 0);
    let mut p = icmp_error(false, 11, router, given, &other);
    let tail = p[28..].to_vec();
    set_destination(&mut p, own).unwrap();
    assert_eq!(&p[28..], &tail[..]);
    assert!(verifies(&p));
}

/// A packet with correct checksums: `exts` 8-byte Destination Options
/// headers before the upper layer on IPv6.
fn build(v6: bool, proto: u8, src: IpAddr, dst: IpAddr, data: &[u8], exts: usize) -> Vec<u8> {
    let (l4_len, sum_at) = match proto {
        protocol::TCP => (20, 16),
        protocol::UDP => (8, 6),
        _ => (8, 2),
    };
    let mut l4 = vec![0u8; l4_len];
    if sum_at != 2 {
        l4[..4].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
    }
    if proto == protocol::TCP {
        l4[12] = 0x50;
    }
    l4.extend_from_slice(data);
    if proto == protocol::UDP {
        let len = u16::try_from(l4.len()).unwrap();
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let len = u32::try_from(l4.len()).unwrap();
    let (s, d) = (octets(src), octets(dst));
    let mut sum = if proto == protocol::ICMP {
        Checksum::new()
    } else {
        pseudo_header(&s, &d, proto, len)
    }
    .add_bytes(&l4)
    .finish();
    if proto == protocol::UDP && sum == 0 {
        sum = 0xffff;
    }
    l4[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut p = Vec::new();
    if v6 {
        let payload = u16::try_from(l4.len() + 8 * exts).unwrap();
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&[if exts > 0 { ext::DEST_OPTS } else { proto }, 64]);
        p.extend_from_slice(&s);
        p.extend_from_slice(&d);
        for i in 0..exts {
            let next = if i + 1 == exts { proto } else { ext::DEST_OPTS };
            // PadN filling the 6 option bytes.
            p.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
    } else {
        let total = u16::try_from(20 + l4.len()).unwrap();
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&s);
        p.extend_from_slice(&d);
        let sum = checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    p.extend_from_slice(&l4);
    p
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Every checksum of a packet `build` made, computed from scratch.
fn verifies(p: &[u8]) -> bool {
    let (v6, s, d, mut next, mut at) = if p[0] >> 4 == 6 {
        (true, &p[8..24], &p[24..40], p[6], 40)
    } else {
        if checksum(&p[..20]) != 0 {
            return false;
        }
        (false, &p[12..16], &p[16..20], p[9], 20)
    };
    while v6 && next == ext::DEST_OPTS {
        next = p[at];
        at += 8;
    }
    let l4 = &p[at..];
    if next == protocol::ICMP {
        return checksum(l4) == 0;
    }
    if next == protocol::UDP && l4[6..8] == [0, 0] {
        return true;
    }
    let len = u32::try_from(l4.len()).unwrap();
    pseudo_header(s, d, next, len).add_bytes(l4).finish() == 0
}

fn addr(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        Ipv6Addr::from_bits(bits).into()
    } else {
        Ipv4Addr::from_bits(bits as u32).into()
    }
}

proptest! {
    // Small packets: thousands of cases take milliseconds.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn checksums_verify_from_scratch_after_a_rewrite(
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![protocol::TCP, protocol::UDP, ICMPV6, protocol::ICMP]),
        (src, dst, new) in (any::<u128>(), any::<u128>(), any::<u128>()),
        data in prop::collection::vec(any::<u8>(), 0..200),
        exts in 0usize..3,
        destination in any::<bool>(),
    ) {
        let proto = match (proto, v6) {
            (ICMPV6, false) => protocol::ICMP,
            (protocol::ICMP, true) => ICMPV6,
            (p, _) => p,
        };
        let mut p = build(v6, proto, addr(v6, src), addr(v6, dst), &data, exts);
        prop_assert!(verifies(&p));
        let (old, want) = if destination {
            (set_destination(&mut p, addr(v6, new)), addr(v6, dst))
        } else {
            (set_source(&mut p, addr(v6, new)), addr(v6, src))
        };
        prop_assert_eq!(old, Ok(want));
        prop_assert!(verifies(&p), "{:02x?}", p);
        let now = IpPacket::new_checked(&p[..]).unwrap();
        let moved = if destination { now.dst_addr() } else { now.src_addr() };
        prop_assert_eq!(moved, addr(v6, new));
    }

    #[test]
    fn mangled_packets_never_panic_and_refusals_write_nothing(
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![protocol::TCP, protocol::UDP, ICMPV6, ext::FRAGMENT]),
        exts in 0usize..3,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut p = build(v6, proto, addr(v6, 1), addr(v6, 2), b"payload", exts);
        for (at, b) in flips {
            let at = at.index(p.len());
            p[at] = b;
        }
        p.truncate(cut.index(p.len() + 1));
        for destination in [false, true] {
            let before = p.clone();
            let r = if destination {
                set_destination(&mut p, addr(v6, 9))
            } else {
                set_source(&mut p, addr(v6, 9))
            };
            if r.is_err() {
                prop_assert_eq!(&p, &before);
            }
        }
    }

    #[test]
    fn any_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..120), v6 in any::<bool>()) {
        let a = addr(v6, 0x0a00_0001);
        let _ = set_source(&mut data, a);
        let _ = set_destination(&mut data, a);
    }
}

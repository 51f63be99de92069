use super::*;
use crate::wire::{Ipv4Packet, Ipv6Packet, checksum};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const US: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// An IPv4 packet of `len` bytes from HOST to PEER, `proto`, with DF as given,
/// its payload counting up.
fn v4(len: usize, proto: u8, df: bool) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: HOST,
        dst_addr: PEER,
        protocol: proto,
        payload_len: len - ipv4::HEADER_LEN,
        ttl: 64,
        ident: 7,
        dont_frag: df,
    };
    let mut p = vec![0; len];
    repr.emit(&mut p).unwrap();
    for (i, b) in p[ipv4::HEADER_LEN..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn v6(len: usize, next: u8) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: "2001:db8::2".parse().unwrap(),
        dst_addr: "2001:db8:1::2".parse().unwrap(),
        next_header: next,
        payload_len: len - ipv6::HEADER_LEN,
        hop_limit: 64,
    };
    let mut p = vec![0; len];
    repr.emit(&mut p).unwrap();
    for (i, b) in p[ipv6::HEADER_LEN..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

#[test]
fn a_big_df_packet_gets_frag_needed_quoting_it_within_576_bytes() {
    let inner = v4(1400, protocol::TCP, true);
    let mut out = [0u8; 2048];
    let n = too_big_reply(&inner, 1300, US.into(), &mut out).unwrap();
    assert_eq!(n, MAX_REPLY_V4);
    let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (US, HOST));
    assert_eq!(ip.protocol(), protocol::ICMP);
    let icmp = ip.payload();
    assert_eq!(&icmp[..2], &[3, 4]);
    assert_eq!(&icmp[4..8], &[0, 0, 0x05, 0x14], "unused, then MTU 1300");
    assert_eq!(checksum(icmp), 0, "the ICMP checksum verifies");
    assert_eq!(&icmp[8..], &inner[..n - 28]);
}

#[test]
fn a_small_buffer_quotes_less_but_at_least_header_and_eight_bytes() {
    let inner = v4(1400, protocol::UDP, true);
    let mut out = [0u8; 56];
    assert_eq!(too_big_reply(&inner, 1300, US.into(), &mut out), Some(56));
    assert_eq!(&out[28..56], &inner[..28]);
    assert_eq!(too_big_reply(&inner, 1300, US.into(), &mut out[..55]), None);
    assert_eq!(too_big_reply(&inner, 1300, US.into(), &mut out[..10]), None);
}

#[test]
fn no_reply_where_a_router_would_send_none() {
    let mut out = [0u8; 2048];
    let reply = |p: &[u8], out: &mut [u8]| too_big_reply(p, 1300, US.into(), out);
    // Without DF the packet may be fragmented.
    assert_eq!(reply(&v4(1400, protocol::TCP, false), &mut out), None);
    // An ICMP error is never answered with one; an echo request is.
    let mut unreach = v4(1400, protocol::ICMP, true);
    unreach[20] = 3;
    assert_eq!(reply(&unreach, &mut out), None);
    let mut echo = v4(1400, protocol::ICMP, true);
    echo[20] = 8;
    assert!(reply(&echo, &mut out).is_some());
    // A non-initial fragment (offset 8 bytes, DF set anyway).
    let mut frag = v4(1400, protocol::TCP, true);
    frag[6..8].copy_from_slice(&0x4001u16.to_be_bytes());
    let mut ip = Ipv4Packet::new_unchecked(&mut frag[..]);
    ip.fill_checksum();
    assert_eq!(reply(&frag, &mut out), None);
    // Not a host's source.
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
    ] {
        let mut p = v4(1400, protocol::TCP, true);
        p[12..16].copy_from_slice(&src.octets());
        assert_eq!(reply(&p, &mut out), None, "{src}");
    }
    // Garbage, a truncated packet, the other family.
    assert_eq!(reply(&[0x45; 10], &mut out), None);
    assert_eq!(reply(&v4(1400, protocol::TCP, true)[..100], &mut out), None);
    let v6_from: IpAddr = "2001:db8::1".parse().unwrap();
    let inner = v4(1400, protocol::TCP, true);
    assert_eq!(too_big_reply(&inner, 1300, v6_from, &mut out), None);
    assert_eq!(too_big_reply(&v6(1400, 6), 1300, US.into(), &mut out), None);
}

#[test]
fn a_big_v6_packet_gets_packet_too_big_within_1280_bytes() {
    let inner = v6(1400, protocol::TCP);
    let us: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut out = [0u8; 2048];
    let n = too_big_reply(&inner, 1350, us.into(), &mut out).unwrap();
    assert_eq!(n, MAX_REPLY_V6);
    let ip = Ipv6Packet::new_checked(&out[..n]).unwrap();
    assert_eq!(ip.src_addr(), us);
    assert_eq!(ip.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(ip.next_header(), ICMPV6);
    let icmp = ip.payload();
    assert_eq!(&icmp[..2], &[2, 0]);
    assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1350);
    let sum = ip.pseudo_header(ICMPV6, icmp.len() as u32).add_bytes(icmp);
    assert_eq!(sum.finish(), 0, "the ICMPv6 checksum verifies");
    assert_eq!(&icmp[8..], &inner[..n - 48]);
    // Below the IPv6 minimum, the minimum is said.
    let n = too_big_reply(&inner, 1200, us.into(), &mut out).unwrap();
    assert_eq!(u32::from_be_bytes(out[44..48].try_into().unwrap()), 1280);
    let ip = Ipv6Packet::new_checked(&out[..n]).unwrap();
    let sum = ip
        .pseudo_header(ICMPV6, (n - 40) as u32)
        .add_bytes(ip.payload());
    assert_eq!(sum.finish(), 0);
    // ICMPv6 errors are not answered; informational messages are.
    let mut err = v6(1400, ICMPV6);
    err[40] = 1;
    assert_eq!(too_big_reply(&err, 1300, us.into(), &mut out), None);
    err[40] = 128;
    assert!(too_big_reply(&err, 1300, us.into(), &mut out).is_some());
}

#[test]
fn reported_path_mtus_are_clamped_and_only_lower() {
    assert_eq!(accepted_path_mtu(1300, false, None), Some(1300));
    assert_eq!(accepted_path_mtu(1300, false, Some(1400)), Some(1300));
    assert_eq!(accepted_path_mtu(1400, false, Some(1300)), None);
    assert_eq!(accepted_path_mtu(1300, false, Some(1300)), None);
    assert_eq!(accepted_path_mtu(68, false, None), Some(576), "clamped");
    assert_eq!(accepted_path_mtu(68, false, Some(576)), None);
    assert_eq!(accepted_path_mtu(1000, true, None), Some(1280));
    assert_eq!(accepted_path_mtu(0, false, None), None, "no MTU said");
    assert_eq!(accepted_path_mtu(100_000, false, None), Some(u16::MAX));
}

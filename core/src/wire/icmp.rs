//! "Packet too big" for the hosts behind the TUN: ICMP "fragmentation needed
//! and DF set" (RFC 792, type 3 code 4 with the next-hop MTU of RFC 1191 §4)
//! and ICMPv6 "packet too big" (RFC 4443 §3.2), built for an inner packet that
//! does not fit the path to its peer once sealed, and the checks on a path MTU
//! a router reports for our own ESP-in-UDP datagrams.
//!
//! The reply quotes the start of the packet (RFC 1812 §4.3.2.3: as much as
//! fits in 576 bytes; RFC 4443 §2.4(c): as much as fits in 1280), so that
//! the host's stack finds the socket it belongs to and lowers its path MTU to
//! that destination (TCP's MSS follows). No reply is built for a packet an
//! ICMP error must not answer (RFC 1122 §3.2.2, RFC 4443 §2.4(e)): an ICMP
//! error itself, a non-initial IPv4 fragment, or one from an address that is
//! not a single host's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::Checksum;
use super::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, ipv4, ipv6, protocol};

/// ICMPv6's next header value (RFC 4443 §1).
pub const ICMPV6: u8 = 58;
/// ICMP "destination unreachable" (RFC 792).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// Its code "fragmentation needed and DF set".
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 "packet too big" (RFC 4443 §3.2).
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// The ICMP header before the quoted packet: type, code, checksum, and the
/// 32 bits that hold the MTU.
pub const ICMP_HEADER_LEN: usize = 8;
/// The longest IPv4 reply (RFC 1812 §4.3.2.3).
pub const MAX_REPLY_V4: usize = 576;
/// The longest ICMPv6 reply (RFC 4443 §2.4(c)).
pub const MAX_REPLY_V6: usize = 1280;
/// The smallest path MTU taken from a router for an IPv4 path: every host
/// must accept datagrams of 576 bytes (RFC 791), and a smaller value is
/// either a broken router or someone trying to shrink our datagrams.
pub const MIN_PATH_MTU_V4: u16 = 576;
/// The smallest IPv6 link MTU (RFC 8200 §5).
pub const MIN_PATH_MTU_V6: u16 = 1280;
/// TTL / hop limit of a reply.
const HOP_LIMIT: u8 = 64;

/// Writes into `out` an ICMP "fragmentation needed" (IPv4 `inner`) or ICMPv6
/// "packet too big" (IPv6 `inner`) from `from` to `inner`'s source, saying
/// `mtu`, quoting as much of `inner` as the RFCs allow and `out` holds.
/// Returns the reply's length, or `None` when none may be sent: `inner` is
/// not a valid IP packet, `from` is of the other family, `inner` is an ICMP
/// error, a non-initial fragment, an IPv4 packet without DF (it may be
/// fragmented, so a router sends no such error for it either), from an
/// unspecified, multicast or broadcast source, or `out` is shorter than the
/// headers and eight bytes of the quote. An IPv6 `mtu` below 1280 is sent
/// as 1280 (RFC 8200 §5: no link is smaller).
pub fn too_big_reply(inner: &[u8], mtu: u16, from: IpAddr, out: &mut [u8]) -> Option<usize> {
    match from {
        IpAddr::V4(from) => reply_v4(inner, mtu, from, out),
        IpAddr::V6(from) => reply_v6(inner, mtu, from, out),
    }
}

fn reply_v4(inner: &[u8], mtu: u16, from: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    let p = Ipv4Packet::new_checked(inner).ok()?;
    let src = p.src_addr();
    if !p.dont_frag()
        || p.frag_offset() != 0
        || src.is_unspecified()
        || src.is_multicast()
        || src.is_broadcast()
        || (p.protocol() == protocol::ICMP && is_icmp_error(p.payload().first()))
    {
        return None;
    }
    let packet = &inner[..usize::from(p.total_len())];
    let room = out.len().min(MAX_REPLY_V4);
    let quoted = packet
        .len()
        .min(room.checked_sub(ipv4::HEADER_LEN + ICMP_HEADER_LEN)?);
    if quoted < p.header_len() + 8 {
        return None;
    }
    let icmp_len = ICMP_HEADER_LEN + quoted;
    let repr = Ipv4Repr {
        src_addr: from,
        dst_addr: src,
        protocol: protocol::ICMP,
        payload_len: icmp_len,
        ttl: HOP_LIMIT,
        ident: 0,
        dont_frag: false,
    };
    repr.emit(out).ok()?;
    let icmp = &mut out[ipv4::HEADER_LEN..ipv4::HEADER_LEN + icmp_len];
    icmp[..ICMP_HEADER_LEN].copy_from_slice(&[
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&packet[..quoted]);
    let sum = Checksum::new().add_bytes(icmp).finish();
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(ipv4::HEADER_LEN + icmp_len)
}

fn reply_v6(inner: &[u8], mtu: u16, from: Ipv6Addr, out: &mut [u8]) -> Option<usize> {
    let p = Ipv6Packet::new_checked(inner).ok()?;
    let src = p.src_addr();
    if src.is_unspecified()
        || src.is_multicast()
        || (p.next_header() == ICMPV6 && p.payload().first().is_some_and(|t| *t < 128))
    {
        return None;
    }
    let packet = &inner[..ipv6::HEADER_LEN + usize::from(p.payload_len())];
    let room = out.len().min(MAX_REPLY_V6);
    let quoted = packet
        .len()
        .min(room.checked_sub(ipv6::HEADER_LEN + ICMP_HEADER_LEN)?);
    if quoted < ipv6::HEADER_LEN + 8 {
        return None;
    }
    let icmp_len = ICMP_HEADER_LEN + quoted;
    let repr = Ipv6Repr {
        src_addr: from,
        dst_addr: src,
        next_header: ICMPV6,
        payload_len: icmp_len,
        hop_limit: HOP_LIMIT,
    };
    repr.emit(out).ok()?;
    let (header, rest) = out.split_at_mut(ipv6::HEADER_LEN);
    let icmp = &mut rest[..icmp_len];
    let mtu = u32::from(mtu.max(MIN_PATH_MTU_V6));
    icmp[..4].copy_from_slice(&[ICMPV6_PACKET_TOO_BIG, 0, 0, 0]);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&packet[..quoted]);
    let view = Ipv6Packet::new_unchecked(&header[..]);
    let sum = view
        .pseudo_header(ICMPV6, icmp_len as u32)
        .add_bytes(icmp)
        .finish();
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(ipv6::HEADER_LEN + icmp_len)
}

/// ICMP (v4) types that are errors (RFC 1122 §3.2.2): destination
/// unreachable, source quench, redirect, time exceeded, parameter problem.
fn is_icmp_error(icmp_type: Option<&u8>) -> bool {
    matches!(icmp_type, Some(3 | 4 | 5 | 11 | 12))
}

/// The path MTU to take from a router's "too big" error for a datagram we
/// sent over `v6` (the outer family), when `current` is the one known (or
/// `None`): the reported value when it is at least the family's minimum
/// ([`MIN_PATH_MTU_V4`], [`MIN_PATH_MTU_V6`]) and lowers what is known; the
/// minimum when it is below it (a router that reports less is broken or
/// lying, and what it reports must not shrink our datagrams to nothing);
/// `None` when it would not lower the known value (or is zero: the router
/// said nothing, RFC 1191 §5's old-style message).
pub fn accepted_path_mtu(reported: u32, v6: bool, current: Option<u16>) -> Option<u16> {
    if reported == 0 {
        return None;
    }
    let floor = if v6 { MIN_PATH_MTU_V6 } else { MIN_PATH_MTU_V4 };
    let mtu = u16::try_from(reported).unwrap_or(u16::MAX).max(floor);
    match current {
        Some(c) if mtu >= c => None,
        _ => Some(mtu),
    }
}

#[cfg(test)]
mod tests;

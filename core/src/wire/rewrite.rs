//! Rewriting one address of an IP packet in place, with the checksums that
//! cover it updated incrementally (RFC 1624 §3, eqn. 3: `HC' = ~(~HC + ~m + m')`),
//! for client address translation: an initiator that a responder gave an
//! address (RFC 7296 §3.15, INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS)
//! sends from it and receives to it, while its own kernel knows only its real
//! address.
//!
//! What is updated:
//! - the IPv4 header checksum (RFC 791);
//! - the checksums whose pseudo-header holds the address (RFC 9293 §3.1,
//!   RFC 768, RFC 8200 §8.1): TCP, UDP (an IPv4 UDP checksum of 0, "none",
//!   stays 0, as does an IPv6 one, RFC 6935; a result of 0 is sent as
//!   `0xffff`), UDP-Lite (RFC 3828 §3.1), DCCP (RFC 4340 §9.1) and ICMPv6
//!   (RFC 4443 §2.3). IPv4 ICMP has no pseudo-header: nothing to update.
//!
//! Fragments after the first (IPv4 offset, or an IPv6 Fragment header's)
//! carry no upper-layer header: only the IP header changes; the checksum of
//! the first fragment covers the whole datagram and is updated there. IPv6
//! extension headers (RFC 8200 §4: Hop-by-Hop, Routing, Fragment, Destination
//! Options, and AH, RFC 4302 §2.2) are walked to the upper layer. IPv4
//! options are not interpreted.
//!
//! An ICMP or ICMPv6 error (RFC 792, RFC 4443 §3) quotes the packet it is
//! about, which carries the same address the other way round: the quoted
//! packet's destination when the outer source changes, its source when the
//! outer destination does. Where it holds the old address it gets the new one
//! too, with the quoted IPv4 header checksum and the ICMP checksum updated
//! (RFC 5508 §4), so that the host's kernel matches a translated error (path
//! MTU, port unreachable) to its socket. The quoted transport checksum is left
//! as it is (it is usually cut short, and kernels do not check it).
//!
//! Everything is checked before the first byte is written: a refused packet
//! is left as it was. No allocation, and no panic on any input (the `rewrite`
//! fuzz target).

use std::net::IpAddr;
use std::ops::Range;

use super::checksum::Checksum;
use super::{Error, Ipv4Packet, Ipv6Packet, be16, protocol, put16};

/// IPv6 next-header values walked as extension headers (RFC 8200 §4).
mod ext {
    pub(super) const HOP_BY_HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const AH: u8 = 51;
    pub(super) const DEST_OPTS: u8 = 60;
}

/// DCCP (RFC 4340).
const DCCP: u8 = 33;
/// ICMPv6 (RFC 4443).
const ICMPV6: u8 = 58;

/// Why a packet's address was not rewritten (the packet is left unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The buffer is not an IPv4 or IPv6 packet whose lengths are sound.
    #[error("not an IP packet: {0}")]
    Malformed(#[from] Error),
    /// The new address is not of the packet's IP version.
    #[error("{addr} cannot go into an IPv{version} packet")]
    Family {
        /// The packet's IP version.
        version: u8,
        /// The address asked for.
        addr: IpAddr,
    },
    /// The IPv6 extension headers run past the payload: the upper layer,
    /// whose checksum may cover the address, is not found.
    #[error("IPv6 extension headers run past the payload")]
    ExtensionHeaders,
    /// The upper-layer header ends before its checksum field.
    #[error("protocol {protocol} header cut short before its checksum")]
    Truncated {
        /// The upper-layer protocol.
        protocol: u8,
    },
    /// An IPv6 Routing header with segments left: the upper-layer checksum
    /// covers its final destination, not the header's (RFC 8200 §8.1), so a
    /// new destination cannot be made to agree with it.
    #[error("IPv6 routing header with segments left")]
    RoutingHeader,
}

/// Sets the source address of the IPv4 or IPv6 packet at the start of
/// `packet` (bytes after its length are ignored) and updates the checksums
/// that cover it; returns the old source.
pub fn set_source(packet: &mut [u8], addr: IpAddr) -> Result<IpAddr, RewriteError> {
    rewrite(packet, Which::Source, addr)
}

/// Sets the destination address, as [`set_source`] does the source; returns
/// the old destination.
pub fn set_destination(packet: &mut [u8], addr: IpAddr) -> Result<IpAddr, RewriteError> {
    rewrite(packet, Which::Destination, addr)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Source,
    Destination,
}

/// How a checksum field treats zero.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    /// Any value is a checksum (IPv4 header, TCP, DCCP, ICMPv6).
    Plain,
    /// 0 means "no checksum" and stays; a computed 0 is sent as `0xffff` (UDP).
    Optional,
    /// Always a checksum; a computed 0 is sent as `0xffff` (UDP-Lite).
    Mandatory,
}

/// Where the writes go, found before any of them.
struct Plan {
    addr: Range<usize>,
    /// The IPv4 header checksum.
    header: Option<usize>,
    /// The upper layer's checksum field.
    upper: Option<(usize, Zero)>,
    /// An ICMP (false) or ICMPv6 (true) message: where it starts and where
    /// the packet ends.
    icmp: Option<(bool, usize, usize)>,
}

fn rewrite(packet: &mut [u8], which: Which, addr: IpAddr) -> Result<IpAddr, RewriteError> {
    let plan = match (packet.first().map(|b| b >> 4), addr) {
        (Some(4), IpAddr::V4(_)) => plan_v4(packet, which)?,
        (Some(6), IpAddr::V6(_)) => plan_v6(packet, which)?,
        (Some(version @ (4 | 6)), _) => return Err(RewriteError::Family { version, addr }),
        (Some(v), _) => return Err(Error::Version(v).into()),
        (None, _) => {
            return Err(Error::Truncated {
                what: "IP",
                need: 1,
                have: 0,
            }
            .into());
        }
    };
    let mut new = [0u8; 16];
    let new = match addr {
        IpAddr::V4(a) => {
            new[..4].copy_from_slice(&a.octets());
            &new[..4]
        }
        IpAddr::V6(a) => {
            new.copy_from_slice(&a.octets());
            &new[..]
        }
    };
    let field = &mut packet[plan.addr];
    let mut old = [0u8; 16];
    let old = &mut old[..field.len()];
    old.copy_from_slice(field);
    field.copy_from_slice(new);
    if let Some(at) = plan.header {
        update(packet, at, Zero::Plain, old, new);
    }
    if let Some((at, zero)) = plan.upper {
        update(packet, at, zero, old, new);
    }
    if let Some((v6, start, end)) = plan.icmp {
        quoted(packet, v6, start, end, which, old, new);
    }
    Ok(match *old {
        [a, b, c, d] => IpAddr::from([a, b, c, d]),
        _ => {
            let mut b = [0u8; 16];
            b.copy_from_slice(old);
            IpAddr::from(b)
        }
    })
}

fn plan_v4(packet: &[u8], which: Which) -> Result<Plan, RewriteError> {
    let ip = Ipv4Packet::new_checked(packet)?;
    let upper = if ip.frag_offset() != 0 {
        None
    } else {
        upper(
            ip.protocol(),
            false,
            ip.header_len(),
            usize::from(ip.total_len()),
        )?
    };
    Ok(Plan {
        addr: match which {
            Which::Source => 12..16,
            Which::Destination => 16..20,
        },
        header: Some(10),
        upper,
        icmp: (ip.frag_offset() == 0 && ip.protocol() == protocol::ICMP)
            .then(|| (false, ip.header_len(), usize::from(ip.total_len()))),
    })
}

fn plan_v6(packet: &[u8], which: Which) -> Result<Plan, RewriteError> {
    let ip = Ipv6Packet::new_checked(packet)?;
    let end = super::ipv6::HEADER_LEN + usize::from(ip.payload_len());
    let mut next = ip.next_header();
    let mut at = super::ipv6::HEADER_LEN;
    let addr = match which {
        Which::Source => 8..24,
        Which::Destination => 24..40,
    };
    loop {
        // Every extension header is at least 8 bytes (RFC 8200 §4; AH 12, RFC 4302 §2).
        let header = || {
            packet
                .get(at..end)
                .filter(|h| h.len() >= 8)
                .ok_or(RewriteError::ExtensionHeaders)
        };
        let len = match next {
            ext::HOP_BY_HOP | ext::DEST_OPTS => (usize::from(header()?[1]) + 1) * 8,
            ext::ROUTING => {
                let h = header()?;
                if which == Which::Destination && h[3] != 0 {
                    return Err(RewriteError::RoutingHeader);
                }
                (usize::from(h[1]) + 1) * 8
            }
            ext::FRAGMENT => {
                let h = header()?;
                if be16(h, 2) & 0xfff8 != 0 {
                    // Not the first fragment: no upper layer here.
                    return Ok(Plan {
                        addr,
                        header: None,
                        upper: None,
                        icmp: None,
                    });
                }
                8
            }
            ext::AH => (usize::from(header()?[1]) + 2) * 4,
            _ => break,
        };
        next = header()?[0];
        at += len;
        if at > end {
            return Err(RewriteError::ExtensionHeaders);
        }
    }
    Ok(Plan {
        addr,
        header: None,
        upper: upper(next, true, at, end)?,
        icmp: (next == ICMPV6).then_some((true, at, end)),
    })
}

/// The packet an ICMP error at `start` quotes (RFC 5508 §4): its address
/// field facing the other way (`which` of the outer packet changed from
/// `old` to `new`) gets `new` if it holds `old`, and the checksums follow.
/// Not an error, or a quote too short: nothing changes.
fn quoted(
    packet: &mut [u8],
    v6: bool,
    start: usize,
    end: usize,
    which: Which,
    old: &[u8],
    new: &[u8],
) {
    let Some(&ty) = packet.get(start) else { return };
    let error = if v6 {
        matches!(ty, 1..=4)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    };
    let inner = start + 8;
    if !error || end > packet.len() {
        return;
    }
    let (field, header) = match (v6, which) {
        // The outer source changed: the quote is of a packet sent to it.
        (false, Which::Source) => (inner + 16..inner + 20, Some(inner + 10)),
        (false, Which::Destination) => (inner + 12..inner + 16, Some(inner + 10)),
        (true, Which::Source) => (inner + 24..inner + 40, None),
        (true, Which::Destination) => (inner + 8..inner + 24, None),
    };
    let version = if v6 { 6 } else { 4 };
    let sound = field.end <= end
        && packet.get(inner).is_some_and(|b| b >> 4 == version)
        && packet.get(field.clone()) == Some(old);
    if !sound {
        return;
    }
    let mut before = [0u8; 2];
    if let Some(at) = header {
        before = [packet[at], packet[at + 1]];
    }
    packet[field].copy_from_slice(new);
    if let Some(at) = header {
        update(packet, at, Zero::Plain, old, new);
    }
    // The ICMP checksum covers the quote: the address, and for IPv4 the
    // quoted header checksum, changed in it.
    update(packet, start + 2, Zero::Plain, old, new);
    if let Some(at) = header {
        let after = [packet[at], packet[at + 1]];
        update(packet, start + 2, Zero::Plain, &before, &after);
    }
}

/// The checksum field of an upper layer that starts at `start` and ends at
/// `end`, if its checksum covers the pseudo-header.
fn upper(
    proto: u8,
    v6: bool,
    start: usize,
    end: usize,
) -> Result<Option<(usize, Zero)>, RewriteError> {
    let (offset, zero) = match proto {
        protocol::TCP => (16, Zero::Plain),
        protocol::UDP => (6, Zero::Optional),
        protocol::UDP_LITE => (6, Zero::Mandatory),
        DCCP => (6, Zero::Plain),
        ICMPV6 if v6 => (2, Zero::Plain),
        _ => return Ok(None),
    };
    if start + offset + 2 > end {
        return Err(RewriteError::Truncated { protocol: proto });
    }
    Ok(Some((start + offset, zero)))
}

/// RFC 1624 eqn. 3 on the field at `at`, for the words `old` replaced by `new`.
fn update(packet: &mut [u8], at: usize, zero: Zero, old: &[u8], new: &[u8]) {
    let field = be16(packet, at);
    if zero == Zero::Optional && field == 0 {
        return;
    }
    let mut negated = [0u8; 16];
    for (n, o) in negated.iter_mut().zip(old) {
        *n = !o;
    }
    let sum = Checksum::new()
        .add_bytes(&(!field).to_be_bytes())
        .add_bytes(&negated[..old.len()])
        .add_bytes(new)
        .finish();
    let sum = match (sum, zero) {
        (0, Zero::Optional | Zero::Mandatory) => 0xffff,
        (s, _) => s,
    };
    put16(packet, at, sum);
}

#[cfg(test)]
mod tests;

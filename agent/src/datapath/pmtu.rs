//! Path MTU through ESP: no silent black hole.
//!
//! Our ESP-in-UDP datagrams leave with DF set (quinn-udp's
//! `IP_PMTUDISC_PROBE`), so a router whose next link is too small for one
//! drops it and answers ICMP "fragmentation needed" / ICMPv6 "packet too
//! big" to us. The UDP 4500 workers read those from the socket's error queue
//! (`IP_RECVERR`, `crate::net::udp`), and [`learn`] keeps the MTU the router
//! reported in every outbound half to that peer ([`PathMtu`] in
//! [`Outbound`](super::sa_table::Outbound)), once the quoted datagram proves to be ours
//! (`SaTable::lower_path_mtu`) and with core's floor
//! (`wire::icmp::accepted_path_mtu`).
//!
//! On the TUN side, an inner packet that would not fit once sealed is not
//! sent: [`reply_too_big`] sends its source the same error, with the MTU the
//! inner packet may have, from this host's address of its family, through the
//! raw socket around the TUN (to this host over loopback, or to a host behind
//! a gateway by the main table). The TUN itself is no way in: the kernel drops
//! a packet arriving on an interface with one of its own addresses as source.
//! Its stack lowers its path MTU for that destination and TCP's MSS follows.
//!
//! An IPv4 packet without DF gets no such error (a router would fragment it,
//! and core's [`too_big_reply`] builds none): it is sealed and sent as it is,
//! and the path drops it (counted as `oversize_sent`). Fragmenting the inner
//! packet here would carry it; Linux's own sockets set DF on TCP.
//!
//! Answers are rate limited ([`TOO_BIG_PER_SECOND`], as the kernel bounds
//! its own ICMP errors with `net.ipv4.icmp_msgs_per_sec`): a host that keeps
//! sending big packets, or one that puts a neighbour's address as their
//! source to have errors sent there, gets no more; the rest are dropped
//! unanswered (`rate_limited`).
//!
//! A learned MTU expires after [`EXPIRES`], like Linux's PMTU cache
//! (`net.ipv4.route.mtu_expires`), so a path that grew is used whole again.
//! The data path reads the clock only for a packet above a learned MTU.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use oemesh_core::esp::{HEADER_LEN, MAX_TRAILER_LEN};
use oemesh_core::wire::icmp::{MAX_REPLY_V6, MIN_PATH_MTU_V6, too_big_reply};
use oemesh_core::wire::{ipv4, ipv6, udp};

use super::DataPath;
use crate::metrics::PmtuEvent;
use crate::net::udp::IcmpError;

/// At most this many "too big" answers leave in one second (the kernel's
/// default `icmp_msgs_per_sec`).
pub const TOO_BIG_PER_SECOND: u32 = 1000;

/// A budget of `limit` a second: the second it counts, and how many it
/// allowed in it.
#[derive(Debug, Default)]
struct PerSecond {
    second: AtomicU64,
    used: AtomicU32,
}

impl PerSecond {
    /// Whether one more is allowed in second `now` (racing threads may let a
    /// few more through at a second's turn; the bound holds within a second).
    fn allow(&self, now: u64, limit: u32) -> bool {
        let seen = self.second.load(Relaxed);
        if seen != now
            && self
                .second
                .compare_exchange(seen, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.used.store(0, Relaxed);
        }
        self.used.fetch_add(1, Relaxed) < limit
    }
}

/// The process's budget of "too big" answers.
fn too_big_budget() -> &'static PerSecond {
    static BUDGET: OnceLock<PerSecond> = OnceLock::new();
    BUDGET.get_or_init(PerSecond::default)
}

/// How long a learned path MTU holds.
pub const EXPIRES: Duration = Duration::from_secs(600);

/// The clock's origin for [`PathMtu`]'s expiry (seconds fit 48 bits).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn secs(now: Instant) -> u64 {
    now.saturating_duration_since(epoch()).as_secs()
}

/// A path MTU learned from a router, or none: one atomic word (the MTU in
/// the top 16 bits, when it expires in seconds from the process's first use below), so
/// that a packet under it costs one load.
#[derive(Debug, Default)]
pub struct PathMtu(AtomicU64);

impl PathMtu {
    /// The MTU learned, without looking at its expiry (hot path).
    #[inline]
    pub fn learned(&self) -> Option<u16> {
        let v = self.0.load(Relaxed);
        Some((v >> 48) as u16).filter(|m| *m != 0)
    }

    /// The MTU learned if it has not expired at `now`; an expired one is
    /// forgotten.
    pub fn current(&self, now: Instant) -> Option<u16> {
        let v = self.0.load(Relaxed);
        let mtu = (v >> 48) as u16;
        if mtu == 0 {
            return None;
        }
        if secs(now) >= v & ((1 << 48) - 1) {
            let _ = self.0.compare_exchange(v, 0, Relaxed, Relaxed);
            return None;
        }
        Some(mtu)
    }

    /// Learns `mtu` at `now`, for [`EXPIRES`].
    pub fn set(&self, mtu: u16, now: Instant) {
        let until = secs(now + EXPIRES) & ((1 << 48) - 1);
        self.0.store((u64::from(mtu) << 48) | until, Relaxed);
    }
}

/// The longest inner packet that fits a path of `path_mtu` once sealed as
/// ESP in UDP over an outer IPv6 (`outer_v6`) or IPv4 header, with the most
/// padding and the ICV (RFC 3948 §2.2, RFC 4303 §2).
pub fn inner_mtu(path_mtu: u16, outer_v6: bool) -> u16 {
    let ip = if outer_v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let overhead = ip + udp::HEADER_LEN + HEADER_LEN + MAX_TRAILER_LEN;
    path_mtu.saturating_sub(overhead as u16)
}

/// A "too big" ICMP error read from the UDP 4500 socket: if it is one for an
/// ESP datagram of ours, the peer's path MTU is lowered (see the module
/// docs). Returns what happened, logged and counted. Not the hot path.
pub fn learn(dp: &DataPath, e: &IcmpError, now: Instant) -> Option<PmtuEvent> {
    let reported = e.too_big()?;
    // The quoted ESP header's SPI, when the router quoted that far; zero is
    // the non-ESP marker of an IKE message (RFC 3948 §2.2).
    let spi = e.quoted.first_chunk::<4>().map(|s| u32::from_be_bytes(*s));
    let event = if spi == Some(0) {
        PmtuEvent::NotOurs
    } else {
        dp.sas.lower_path_mtu(e.to, spi, reported, now)
    };
    let from = e.from.map_or_else(|| "?".to_owned(), |a| a.to_string());
    match event {
        PmtuEvent::Lowered | PmtuEvent::Clamped => {
            tracing::info!(
                "{}: path MTU {reported} (reported by {from}): {event:?}",
                e.to
            );
        }
        _ => tracing::debug!(
            "{}: path MTU {reported} reported by {from} ignored: {event:?}",
            e.to
        ),
    }
    dp.metrics.pmtu(event);
    Some(event)
}

/// An inner packet (from the TUN) too big for its peer's path of `path_mtu`:
/// answers its source with "too big" ([`too_big_reply`]). Returns false when
/// no answer is allowed (IPv4 without DF, an ICMP error...): the caller then
/// sends the packet as it is. Rare path; nothing is allocated.
pub fn reply_too_big(dp: &DataPath, inner: &[u8], path_mtu: u16, outer_v6: bool) -> bool {
    let mtu = inner_mtu(path_mtu, outer_v6);
    let family = match inner.first().map(|b| b >> 4) {
        Some(6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    let from = dp.own_address(family);
    let mut out = [0u8; MAX_REPLY_V6];
    let Some(n) = too_big_reply(inner, mtu, from, &mut out) else {
        dp.metrics.pmtu(PmtuEvent::OversizeSent);
        return false;
    };
    if !too_big_budget().allow(secs(Instant::now()), TOO_BIG_PER_SECOND) {
        dp.metrics.pmtu(PmtuEvent::RateLimited);
        return true;
    }
    let sent = if from.is_unspecified() {
        Err(std::io::Error::other(
            "no address of this family to send it from",
        ))
    } else {
        match &dp.clear {
            Some(c) => c.send(&out[..n]),
            None => Err(std::io::Error::other("no raw socket")),
        }
    };
    match sent {
        Ok(()) => {
            let v6 = family.is_ipv6();
            let told = if v6 { mtu.max(MIN_PATH_MTU_V6) } else { mtu };
            tracing::debug!(
                "{} bytes for a path of {path_mtu}: told the host MTU {told}",
                inner.len()
            );
            if told > mtu {
                // RFC 8200 §5: no IPv6 link is below 1280, and the host does
                // not go lower; the outer datagram would have to be fragmented.
                tracing::debug!(
                    "the path leaves IPv6 only {mtu} bytes: packets of {told} are lost"
                );
            }
            dp.metrics.pmtu(PmtuEvent::TooBigSent);
        }
        Err(e) => {
            tracing::debug!("sending \"too big\" to the TUN's host: {e}");
            dp.metrics.pmtu(PmtuEvent::ReplyFailed);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_big_answers_are_bounded_per_second() {
        let budget = PerSecond::default();
        let allowed = (0..1500).filter(|_| budget.allow(7, 1000)).count();
        assert_eq!(allowed, 1000);
        // The next second has its own.
        assert!(budget.allow(8, 1000));
        assert_eq!((0..5000).filter(|_| budget.allow(8, 1000)).count(), 999);
    }

    #[test]
    fn a_learned_mtu_expires() {
        let m = PathMtu::default();
        let now = Instant::now();
        assert_eq!((m.learned(), m.current(now)), (None, None));
        m.set(1300, now);
        assert_eq!(m.learned(), Some(1300));
        assert_eq!(m.current(now + Duration::from_secs(599)), Some(1300));
        assert_eq!(m.current(now + EXPIRES + Duration::from_secs(1)), None);
        assert_eq!(m.learned(), None, "forgotten once expired");
    }

    #[test]
    fn inner_mtu_leaves_room_for_the_worst_case_esp_in_udp() {
        // 20 + 8 + 16 (SPI, sequence, IV) + 3 padding + 2 + 16 (ICV).
        assert_eq!(inner_mtu(1300, false), 1235);
        assert_eq!(inner_mtu(1300, true), 1215);
        let inner = usize::from(inner_mtu(1300, false));
        let esp = oemesh_core::esp::encapsulated_len(inner);
        assert!(ipv4::HEADER_LEN + udp::HEADER_LEN + esp <= 1300);
        assert_eq!(inner_mtu(10, false), 0);
    }
}

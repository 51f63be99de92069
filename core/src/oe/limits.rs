//! Small bounded helpers: the lookup rate limiter, the memory of peers that
//! were private (for downgrade detection), and the sources seen lately (for
//! the once-per-source bound of ESP with unknown SPIs).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket driven by the caller's clock: `rate` tokens per second, at
/// most `burst` saved up. Kept as time credit, so it is exact and float-free.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    interval: Duration,
    capacity: Duration,
    credit: Duration,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. `rate` 0 never admits anything.
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let interval = if rate == 0 {
            Duration::MAX
        } else {
            Duration::from_secs(1) / rate
        };
        let capacity = interval.saturating_mul(burst);
        Self {
            interval,
            capacity,
            credit: capacity,
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.take_above(now, Duration::ZERO)
    }

    /// Takes one token only if at least half the burst is left after it: for
    /// work that may wait, so it never uses up what the rest needs.
    pub(crate) fn take_spare(&mut self, now: Instant) -> bool {
        self.take_above(now, self.capacity / 2)
    }

    fn take_above(&mut self, now: Instant, reserve: Duration) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            self.credit = self.credit.saturating_add(elapsed).min(self.capacity);
        }
        self.last = Some(now);
        if self.interval != Duration::MAX && self.credit >= self.interval.saturating_add(reserve) {
            self.credit -= self.interval;
            true
        } else {
            false
        }
    }
}

/// Peers that were private, until when they are remembered. Bounded: when full,
/// expired entries go first, then the one expiring soonest (found in the
/// `by_until` index, O(log n), not by a scan of the memory).
#[derive(Debug)]
pub(crate) struct PrivateMemory {
    until: HashMap<IpAddr, Instant>,
    /// The same entries, by when they expire.
    by_until: BTreeSet<(Instant, IpAddr)>,
    limit: usize,
    keep: Duration,
}

impl PrivateMemory {
    pub(crate) fn new(limit: usize, keep: Duration) -> Self {
        Self {
            until: HashMap::new(),
            by_until: BTreeSet::new(),
            limit,
            keep,
        }
    }

    /// Remembers (or refreshes) `peer` as private at `now`.
    pub(crate) fn remember(&mut self, now: Instant, peer: IpAddr) {
        if self.limit == 0 {
            return;
        }
        if !self.until.contains_key(&peer) && self.until.len() >= self.limit {
            while let Some(&(until, p)) = self.by_until.first()
                && until <= now
            {
                self.by_until.pop_first();
                self.until.remove(&p);
            }
            if self.until.len() >= self.limit
                && let Some((_, oldest)) = self.by_until.pop_first()
            {
                self.until.remove(&oldest);
            }
        }
        let until = now + self.keep;
        if let Some(old) = self.until.insert(peer, until) {
            self.by_until.remove(&(old, peer));
        }
        self.by_until.insert((until, peer));
    }

    /// Whether `peer` was private within the memory window.
    pub(crate) fn was_private(&self, now: Instant, peer: IpAddr) -> bool {
        self.until.get(&peer).is_some_and(|until| *until > now)
    }

    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

/// Sources seen lately: each is kept `keep` after it was recorded, at most
/// `limit` at a time (the oldest forgotten first). One `keep` for all, so
/// insertion order is expiry order and a queue finds what to forget.
#[derive(Debug)]
pub(crate) struct RecentSources {
    since: HashMap<IpAddr, Instant>,
    order: VecDeque<(Instant, IpAddr)>,
    limit: usize,
    keep: Duration,
}

impl RecentSources {
    pub(crate) fn new(limit: usize, keep: Duration) -> Self {
        Self {
            since: HashMap::new(),
            order: VecDeque::new(),
            limit,
            keep,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, addr)) = self.order.front() {
            if now.saturating_duration_since(at) < self.keep && self.order.len() <= self.limit {
                break;
            }
            self.order.pop_front();
            if self.since.get(&addr) == Some(&at) {
                self.since.remove(&addr);
            }
        }
    }

    /// Whether `addr` was recorded less than `keep` ago (and not forgotten
    /// since to make room).
    pub(crate) fn seen(&mut self, now: Instant, addr: IpAddr) -> bool {
        self.expire(now);
        self.since.contains_key(&addr)
    }

    /// Records `addr` at `now` (call after [`Self::seen`] said no).
    pub(crate) fn record(&mut self, now: Instant, addr: IpAddr) {
        if self.limit == 0 {
            return;
        }
        self.since.insert(addr, now);
        self.order.push_back((now, addr));
        self.expire(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_sources_expire_and_the_oldest_goes_when_full() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        let mut r = RecentSources::new(3, s(10));
        for i in 1..=3 {
            assert!(!r.seen(t0, ip(i)));
            r.record(t0 + s(u64::from(i)), ip(i));
        }
        assert!(r.seen(t0 + s(5), ip(1)));
        // Full: recording a fourth forgets the oldest (1).
        r.record(t0 + s(5), ip(4));
        assert_eq!(r.since.len(), 3);
        assert!(!r.seen(t0 + s(5), ip(1)));
        assert!(r.seen(t0 + s(5), ip(2)));
        // 2 was recorded at 2 s: seen until 12 s, not at 12 s.
        assert!(r.seen(t0 + s(11), ip(2)));
        assert!(!r.seen(t0 + s(12), ip(2)));
        // Recorded again after it expired: kept once, for `keep` from then.
        r.record(t0 + s(12), ip(2));
        assert!(r.seen(t0 + s(21), ip(2)));
        assert!(!r.seen(t0 + s(22), ip(2)));
        assert_eq!(r.since.len(), r.order.len());
    }

    /// The memory against the plain rule it indexes: when full, expired
    /// entries go, then the one expiring soonest.
    #[test]
    fn a_full_memory_forgets_the_expired_then_the_oldest() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut m = PrivateMemory::new(3, s(10));
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        m.remember(t0, ip(1));
        m.remember(t0 + s(1), ip(2));
        m.remember(t0 + s(2), ip(3));
        // Refreshing an entry moves its expiry; nothing is forgotten.
        m.remember(t0 + s(3), ip(1));
        assert_eq!(m.len(), 3);
        // Full: the soonest to expire (2, at 11 s) goes.
        m.remember(t0 + s(4), ip(4));
        assert_eq!(m.len(), 3);
        assert!(!m.was_private(t0 + s(4), ip(2)));
        assert!(m.was_private(t0 + s(4), ip(1)) && m.was_private(t0 + s(4), ip(3)));
        // At 13 s, 3 (12 s) and 1 (13 s) have expired: both go at once.
        m.remember(t0 + s(13), ip(5));
        assert_eq!(m.len(), 2);
        assert!(m.was_private(t0 + s(13), ip(4)) && m.was_private(t0 + s(13), ip(5)));
        assert_eq!(m.by_until.len(), m.until.len());
        for (p, u) in &m.until {
            assert!(m.by_until.contains(&(*u, *p)));
        }
    }
}

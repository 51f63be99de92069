//! Small bounded helpers: the lookup rate limiter and the memory of peers that
//! were private (for downgrade detection).

use std::collections::HashMap;
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
/// expired entries go first, then the one expiring soonest (an O(n) scan, only
/// on insert into a full memory).
#[derive(Debug)]
pub(crate) struct PrivateMemory {
    until: HashMap<IpAddr, Instant>,
    limit: usize,
    keep: Duration,
}

impl PrivateMemory {
    pub(crate) fn new(limit: usize, keep: Duration) -> Self {
        Self {
            until: HashMap::new(),
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
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= self.limit
                && let Some(oldest) = self.until.iter().min_by_key(|(_, u)| **u).map(|(p, _)| *p)
            {
                self.until.remove(&oldest);
            }
        }
        self.until.insert(peer, now + self.keep);
    }

    /// Whether `peer` was private within the memory window.
    pub(crate) fn was_private(&self, now: Instant, peer: IpAddr) -> bool {
        self.until.get(&peer).is_some_and(|until| *until > now)
    }

    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

//! SA lifetimes (RFC 4301 §4.4.2.1): soft limits ask for a rekey, hard limits
//! end the SA. Limits count bytes of inner packets, packets and time; time comes
//! from the caller (`now`), the SA never reads a clock.

use std::time::{Duration, Instant};

/// One set of limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Inner packet bytes.
    pub bytes: Option<u64>,
    /// Packets.
    pub packets: Option<u64>,
    /// Time since the SA was installed.
    pub time: Option<Duration>,
}

impl Limits {
    /// No limit at all.
    pub const UNLIMITED: Limits = Limits {
        bytes: None,
        packets: None,
        time: None,
    };

    fn reached_by_count(&self, bytes: u64, packets: u64) -> bool {
        self.bytes.is_some_and(|l| bytes >= l) || self.packets.is_some_and(|l| packets >= l)
    }
}

/// Soft and hard limits of an SA. Soft limits should be lower than hard ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifetimeLimits {
    /// Reaching any of these asks for a rekey.
    pub soft: Limits,
    /// Reaching any of these ends the SA.
    pub hard: Limits,
}

impl LifetimeLimits {
    /// No limits (tests; real SAs always have a hard time limit).
    pub const UNLIMITED: LifetimeLimits = LifetimeLimits {
        soft: Limits::UNLIMITED,
        hard: Limits::UNLIMITED,
    };
}

/// Where an SA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LifetimeState {
    /// Below all limits.
    Live,
    /// A soft limit was reached: rekey, the SA still works.
    Rekey,
    /// A hard limit was reached: the SA must not be used.
    Expired,
}

/// A limit was crossed; reported once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LifetimeEvent {
    /// A soft limit: start a rekey (CREATE_CHILD_SA).
    SoftExpired,
    /// A hard limit: delete the SA.
    HardExpired,
}

/// Counts an SA's use against its limits.
#[derive(Debug, Clone)]
pub struct Lifetime {
    limits: LifetimeLimits,
    installed: Instant,
    bytes: u64,
    packets: u64,
    state: LifetimeState,
}

impl Lifetime {
    /// Starts counting at `now`.
    pub fn new(limits: LifetimeLimits, now: Instant) -> Self {
        Self {
            limits,
            installed: now,
            bytes: 0,
            packets: 0,
            state: LifetimeState::Live,
        }
    }

    /// The current state.
    pub fn state(&self) -> LifetimeState {
        self.state
    }

    /// Inner bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Packets counted so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// When the SA was installed.
    pub fn installed(&self) -> Instant {
        self.installed
    }

    /// The limits.
    pub fn limits(&self) -> &LifetimeLimits {
        &self.limits
    }

    fn enter(&mut self, soft: bool, hard: bool) -> Option<LifetimeEvent> {
        let next = if hard {
            LifetimeState::Expired
        } else if soft {
            LifetimeState::Rekey
        } else {
            LifetimeState::Live
        };
        if next <= self.state {
            return None;
        }
        self.state = next;
        Some(match next {
            LifetimeState::Expired => LifetimeEvent::HardExpired,
            _ => LifetimeEvent::SoftExpired,
        })
    }

    /// Counts one packet of `bytes` inner bytes; returns a limit it crossed.
    pub fn record(&mut self, bytes: usize) -> Option<LifetimeEvent> {
        self.bytes = self.bytes.saturating_add(bytes as u64);
        self.packets = self.packets.saturating_add(1);
        let soft = self.limits.soft.reached_by_count(self.bytes, self.packets);
        let hard = self.limits.hard.reached_by_count(self.bytes, self.packets);
        self.enter(soft, hard)
    }

    /// Checks the time limits at `now`; returns a limit it crossed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<LifetimeEvent> {
        let age = now.saturating_duration_since(self.installed);
        let soft = self.limits.soft.time.is_some_and(|t| age >= t);
        let hard = self.limits.hard.time.is_some_and(|t| age >= t);
        self.enter(soft, hard)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called:
    /// the next time limit not yet reached.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let soft = self
            .limits
            .soft
            .time
            .filter(|_| self.state < LifetimeState::Rekey);
        let hard = self
            .limits
            .hard
            .time
            .filter(|_| self.state < LifetimeState::Expired);
        let next = match (soft, hard) {
            (Some(s), Some(h)) => Some(s.min(h)),
            (s, h) => s.or(h),
        }?;
        self.installed.checked_add(next)
    }
}

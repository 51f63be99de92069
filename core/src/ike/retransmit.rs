//! Retransmission of requests (RFC 7296 §2.1, §2.4).
//!
//! The initiator of an exchange retransmits its request until the response
//! arrives, with exponential backoff, and gives up at a deadline the caller sets.
//! Opportunistic encryption wants a short one (about 2 s for the first exchange),
//! so that a peer that does not answer costs little before the flow goes clear.
//! The responder never retransmits on its own; it re-sends its last response when a
//! request is retransmitted to it (§2.1).

use std::time::{Duration, Instant};

/// When to resend and when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// The wait before the first resend.
    pub initial: Duration,
    /// The longest wait between two sends.
    pub max_interval: Duration,
    /// The number of resends after the first send at most.
    pub max_resends: u32,
}

impl Default for RetransmitConfig {
    /// 250 ms doubling up to 2 s, at most 7 resends: within 2 s an unanswered
    /// request is sent four times (0, 0.25, 0.75, 1.75 s).
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max_interval: Duration::from_secs(2),
            max_resends: 7,
        }
    }
}

/// The timer of one outstanding request.
#[derive(Clone, Debug)]
pub(crate) struct Retransmit {
    config: RetransmitConfig,
    deadline: Instant,
    next: Instant,
    resends: u32,
}

/// What [`Retransmit::on_timeout`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetransmitAction {
    /// Nothing is due yet.
    Wait,
    /// Send the request again now.
    Resend,
    /// The deadline passed or the resends ran out: the exchange failed.
    GiveUp,
}

impl Retransmit {
    /// A timer for a request first sent at `now`, to be abandoned at `deadline`.
    pub(crate) fn new(config: RetransmitConfig, now: Instant, deadline: Instant) -> Self {
        Self {
            config,
            deadline,
            next: now + config.initial,
            resends: 0,
        }
    }

    /// The next instant at which [`Self::on_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next.min(self.deadline)
    }

    /// Call when the clock reaches [`Self::poll_timeout`] (or later).
    pub(crate) fn on_timeout(&mut self, now: Instant) -> RetransmitAction {
        if now >= self.deadline {
            return RetransmitAction::GiveUp;
        }
        if now < self.next {
            return RetransmitAction::Wait;
        }
        if self.resends >= self.config.max_resends {
            return RetransmitAction::GiveUp;
        }
        self.resends += 1;
        let interval = self
            .config
            .initial
            .saturating_mul(1u32.checked_shl(self.resends).unwrap_or(u32::MAX))
            .min(self.config.max_interval);
        self.next = now + interval;
        RetransmitAction::Resend
    }

    /// How many times the request has been resent.
    pub(crate) fn resends(&self) -> u32 {
        self.resends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_and_gives_up_at_the_deadline() {
        let t0 = Instant::now();
        let mut r = Retransmit::new(RetransmitConfig::default(), t0, t0 + Duration::from_secs(2));
        let mut sends = vec![Duration::ZERO];
        loop {
            let at = r.poll_timeout();
            match r.on_timeout(at) {
                RetransmitAction::Resend => sends.push(at - t0),
                RetransmitAction::GiveUp => break,
                RetransmitAction::Wait => unreachable!("polled at the due time"),
            }
        }
        let ms: Vec<u128> = sends.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 750, 1750]);
    }

    #[test]
    fn gives_up_after_max_resends() {
        let t0 = Instant::now();
        let config = RetransmitConfig {
            max_resends: 2,
            ..RetransmitConfig::default()
        };
        let mut r = Retransmit::new(config, t0, t0 + Duration::from_secs(3600));
        assert_eq!(r.on_timeout(r.poll_timeout()), RetransmitAction::Resend);
        assert_eq!(r.on_timeout(r.poll_timeout()), RetransmitAction::Resend);
        assert_eq!(r.on_timeout(r.poll_timeout()), RetransmitAction::GiveUp);
        assert_eq!(r.resends(), 2);
    }

    #[test]
    fn early_timeout_waits() {
        let t0 = Instant::now();
        let mut r = Retransmit::new(RetransmitConfig::default(), t0, t0 + Duration::from_secs(2));
        assert_eq!(
            r.on_timeout(t0 + Duration::from_millis(10)),
            RetransmitAction::Wait
        );
    }
}

//! The IKE phase of an outbound decision: the attempts with each candidate
//! peer in turn (RFC 7296 IKE_SA_INIT + IKE_AUTH, run by the engine), their
//! results, and the outcome when one succeeds or all fail.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{IkePhase, Machine, Pending, Phase, Timer};
use crate::oe::action::{Action, DnsFailure, Dnssec, IkeResult};
use crate::oe::keys::Candidate;
use crate::oe::outcome::{AttemptFailure, Auth, Cause, NoKey, Outcome, State};
use crate::oe::unreachable::{Unreachable, UnreachableFate};

impl Machine {
    pub(super) fn start_ike(
        &mut self,
        now: Instant,
        dst: IpAddr,
        found: Vec<Candidate>,
        dnssec: Dnssec,
        no_key: Option<NoKey>,
        ttl_cap: Option<u32>,
    ) {
        let mut rest: VecDeque<Candidate> = found.into();
        let Some(first) = rest.pop_front() else {
            return;
        };
        let deadline = now + self.config.ike_timeout;
        let attempt = share(now, deadline, rest.len() + 1);
        // A keyless destination's anonymous attempt waits `anonymous_timeout`
        // for the peer's first answer; the engine keeps the whole share, so
        // an answering peer gets the rest (`on_ike_answered`).
        let unanswered = no_key.is_some();
        let wait = if unanswered {
            attempt.min(now + self.config.anonymous_timeout)
        } else {
            attempt
        };
        let timer = self.arm(wait, Timer::Ike(dst));
        let Some(p) = self.pending.get_mut(&dst) else {
            return;
        };
        p.phase = Phase::Ike(Box::new(IkePhase {
            current: first,
            peer_addr: None,
            rest,
            started: now,
            deadline,
            attempt_deadline: attempt,
            timer,
            unanswered,
            unreachable: None,
            dnssec,
            attempt_dnssec: dnssec,
            key_in_dns: no_key.is_none(),
            no_key,
            ttl_cap,
            failures: Vec::new(),
        }));
        if let Err(failure) = self.begin_attempt(now, dst) {
            self.next_attempt(now, dst, failure);
        }
    }

    /// The peer of the attempt for `dst` answered its IKE_SA_INIT: it speaks
    /// IKE, so the attempt has its whole share of the IKE timeout again, not
    /// just `anonymous_timeout` or the grace an ICMP error left it.
    pub fn on_ike_answered(&mut self, dst: IpAddr, peer_addr: IpAddr) {
        let Some(Pending {
            phase: Phase::Ike(ike),
            ..
        }) = self.pending.get_mut(&dst)
        else {
            return;
        };
        if ike.peer_addr != Some(peer_addr) {
            return;
        }
        let cut_short = std::mem::take(&mut ike.unanswered) | ike.unreachable.take().is_some();
        if cut_short && ike.timer.0 < ike.attempt_deadline {
            let at = ike.attempt_deadline;
            self.rearm(dst, at);
        }
    }

    /// An ICMP error for the IKE_SA_INIT of the attempt for `dst` with
    /// `peer_addr` (matched by the node: address, port, and the SPI when
    /// quoted). It ends the attempt at once only for a destination without a
    /// key, and only when it quoted the attempt's SPI; else it shortens the
    /// wait to `icmp_grace` (a forged error must not end an attempt with a
    /// keyed peer). See [`crate::oe::unreachable`].
    pub fn on_unreachable(
        &mut self,
        now: Instant,
        dst: IpAddr,
        peer_addr: IpAddr,
        error: Unreachable,
    ) -> UnreachableFate {
        let Some(Pending {
            phase: Phase::Ike(ike),
            ..
        }) = self.pending.get_mut(&dst)
        else {
            return UnreachableFate::Ignored;
        };
        if ike.peer_addr != Some(peer_addr) {
            return UnreachableFate::Ignored;
        }
        if !ike.key_in_dns && error.spi_i.is_some() {
            self.counters.unreachable_ended += 1;
            self.counters.ike_failures += 1;
            self.actions.push_back(Action::CancelIke { dst, peer_addr });
            let failure = ike.failure(Some(error.to_string()));
            self.next_attempt(now, dst, failure);
            return UnreachableFate::Ended;
        }
        ike.unreachable = Some(error);
        self.counters.unreachable_shortened += 1;
        let at = now + self.config.icmp_grace;
        if ike.timer.0 > at {
            self.rearm(dst, at);
        }
        UnreachableFate::Shortened
    }

    /// Moves the IKE timer of pending `dst` to `at`.
    fn rearm(&mut self, dst: IpAddr, at: Instant) {
        let key = self.arm(at, Timer::Ike(dst));
        let old = match self.pending.get_mut(&dst) {
            Some(Pending {
                phase: Phase::Ike(ike),
                ..
            }) => std::mem::replace(&mut ike.timer, key),
            _ => key,
        };
        self.timers.remove(&old);
    }

    /// Passthrough (`negotiation = "passthrough"`): the held packets of
    /// keyless `dst` go in clear now, and so do later ones (a provisional
    /// clear outcome without bypass route) until the anonymous attempt
    /// decides. `dst` stays pending.
    pub(super) fn passthrough(&mut self, now: Instant, dst: IpAddr) {
        let Some(Pending {
            policy,
            phase: Phase::Ike(ike),
        }) = self.pending.get(&dst)
        else {
            return;
        };
        let life = ike.deadline.saturating_duration_since(now);
        let outcome = Outcome::new(
            dst,
            State::Clear,
            Auth::None,
            *policy,
            Cause::Passthrough,
            now,
            Some(life),
        );
        self.counters.passthroughs += 1;
        let packets = self.hold.take(dst);
        self.actions
            .push_back(Action::Passthrough { outcome, packets });
    }

    /// How IKE for `dst` with `peer_addr` ended. Also call it when an IKE SA with
    /// `dst` was established by the peer (this host the responder): held packets
    /// then go out encrypted, and the outcome is private either way.
    pub fn on_ike_result(
        &mut self,
        now: Instant,
        dst: IpAddr,
        peer_addr: IpAddr,
        result: IkeResult,
    ) {
        let failure = match result {
            IkeResult::Established {
                anonymous,
                dnssec,
                lookup_failed,
            } => {
                return self.established(now, dst, peer_addr, anonymous, dnssec, lookup_failed);
            }
            IkeResult::Failed { reason } => Some(reason.to_string()),
            IkeResult::NotStarted { reason } => Some(reason.to_string()),
            IkeResult::TimedOut => None,
        };
        let failure = match self.pending.get(&dst).map(|p| &p.phase) {
            Some(Phase::Ike(ike)) if ike.peer_addr == Some(peer_addr) => ike.failure(failure),
            _ => {
                self.counters.stale_results += 1;
                return;
            }
        };
        match failure.reason {
            Some(_) => self.counters.ike_failures += 1,
            None => self.counters.ike_timeouts += 1,
        }
        self.next_attempt(now, dst, failure);
    }

    pub(super) fn established(
        &mut self,
        now: Instant,
        dst: IpAddr,
        peer_addr: IpAddr,
        anonymous: bool,
        dnssec: bool,
        lookup_failed: bool,
    ) {
        let (policy, state, skipped) = match self.pending.remove(&dst) {
            Some(p) => {
                let (state, skipped) = match &p.phase {
                    // Gateways whose names gave no usable address (a bogus
                    // answer among them) are said even when a later one worked.
                    Phase::Ike(ike) => (
                        Some(ike.attempt_dnssec),
                        ike.failures
                            .iter()
                            .filter(|f| f.unresolved())
                            .map(ToString::to_string)
                            .collect(),
                    ),
                    Phase::Dns { .. } => (None, Vec::new()),
                };
                self.leave_phase(dst, p.phase, Some(peer_addr));
                (p.policy, state, skipped)
            }
            None => (self.policy.lookup(dst), None, Vec::new()),
        };
        // An authenticated peer seen lately that comes back anonymous, in
        // either role, is a downgrade (flagged; `on_ike_request` refused it
        // under `refuse_downgrade`).
        let downgrade = anonymous && self.memory.was_private(now, dst);
        let auth = if anonymous {
            Auth::Anonymous
        } else {
            self.memory.remember(now, dst);
            self.authenticated_live.insert(dst);
            Auth::Authenticated
        };
        let cause = Cause::Established { peer_addr };
        let mut outcome = Outcome::new(dst, State::Private, auth, policy, cause, now, None);
        outcome = outcome.with_dnssec(dnssec && !anonymous, state);
        if anonymous && lookup_failed {
            outcome = outcome.note("anonymous (key lookup failed)");
        }
        for skipped in skipped {
            outcome = outcome.note(&format!("skipped {skipped}"));
        }
        if downgrade {
            self.counters.downgrades += 1;
            outcome = outcome.downgraded();
        }
        let packets = self.hold.take(dst);
        self.actions.push_back(Action::Private { outcome, packets });
    }

    /// Cleans up after a pending entry that is decided: its lookup or its IKE
    /// attempt (cancelled unless it is the one that `succeeded`).
    pub(super) fn leave_phase(&mut self, dst: IpAddr, phase: Phase, succeeded: Option<IpAddr>) {
        match phase {
            Phase::Dns { name } => {
                let Some(lookup) = self.lookups.get_mut(&name) else {
                    return;
                };
                lookup.outbound = None;
                if lookup.responders.is_empty() {
                    self.timers.remove(&lookup.timer);
                    self.lookups.remove(&name);
                    self.actions.push_back(Action::CancelLookup { name });
                }
            }
            Phase::Ike(ike) => {
                self.timers.remove(&ike.timer);
                // An attempt still resolving its gateway's name started no
                // IKE; the lookup's answer finds nothing pending and is
                // dropped as stale.
                if let (Some(peer_addr), Some(won)) = (ike.peer_addr, succeeded)
                    && won != peer_addr
                {
                    self.actions.push_back(Action::CancelIke { dst, peer_addr });
                }
            }
        }
    }

    /// The current attempt failed: the next candidate if time remains, else
    /// fail. A candidate whose gateway name cannot even be looked up fails at
    /// once, and the one after it is tried (a loop, not recursion: a DNS
    /// answer can hold many records).
    pub(super) fn next_attempt(&mut self, now: Instant, dst: IpAddr, failure: AttemptFailure) {
        let mut failure = failure;
        loop {
            let Some(Pending {
                phase: Phase::Ike(ike),
                ..
            }) = self.pending.get_mut(&dst)
            else {
                return;
            };
            self.timers.remove(&ike.timer);
            ike.failures.push(failure);
            if now < ike.deadline
                && let Some(next) = ike.rest.pop_front()
            {
                let attempt = share(now, ike.deadline, ike.rest.len() + 1);
                ike.current = next;
                ike.peer_addr = None;
                ike.attempt_deadline = attempt;
                ike.unreachable = None;
                ike.timer = (attempt, self.next_timer);
                self.next_timer += 1;
                self.timers.insert(ike.timer, Timer::Ike(dst));
                match self.begin_attempt(now, dst) {
                    Ok(()) => return,
                    Err(f) => {
                        failure = f;
                        continue;
                    }
                }
            }
            let cause = Cause::IkeFailed {
                attempts: std::mem::take(&mut ike.failures),
                after: now.saturating_duration_since(ike.started),
                key_in_dns: ike.key_in_dns,
            };
            let note = ike.no_key.as_ref().map(ToString::to_string);
            let ttl = ike.ttl_cap;
            return self.fail(now, dst, cause, ttl, note.as_deref());
        }
    }

    /// Ends `dst` as clear (fail open) or blocked (fail closed), per its group.
    pub(super) fn fail(
        &mut self,
        now: Instant,
        dst: IpAddr,
        cause: Cause,
        ttl: Option<u32>,
        note: Option<&str>,
    ) {
        let Some(p) = self.pending.remove(&dst) else {
            return;
        };
        let dnssec = match (&cause, &p.phase) {
            (Cause::DnsFailed(DnsFailure::Bogus(_)), _) => Some(Dnssec::Bogus),
            (Cause::DnsFailed(DnsFailure::Indeterminate(_)), _) => Some(Dnssec::Indeterminate),
            (_, Phase::Ike(ike)) => Some(ike.dnssec),
            (_, Phase::Dns { .. }) => None,
        };
        self.leave_phase(dst, p.phase, None);
        // design.md: a peer that was private recently and now goes clear (or
        // blocked) for any reason is a downgrade: IKE failing, its key gone
        // from DNS (a forged NXDOMAIN looks just like that), DNS failing.
        let downgrade = self.memory.was_private(now, dst);
        // require-dnssec: an answer that fails validation is an attack until
        // shown otherwise, so it never sends the destination to clear.
        let dnssec_closed = (p.policy.options.require_dnssec
            || self.policy.lookup(dst).options.require_dnssec)
            && matches!(&cause, Cause::DnsFailed(f) if f.is_dnssec());
        // A policy reloaded meanwhile may have made dst fail closed: the stricter wins.
        let closed = p.policy.group.fails_closed()
            || self.policy.lookup(dst).group.fails_closed()
            || (downgrade && self.config.refuse_downgrade)
            || dnssec_closed;
        let transient = match cause {
            Cause::DnsFailed(_) | Cause::DnsTimeout(_) => true,
            Cause::IkeFailed { .. } => closed,
            _ => closed && downgrade,
        };
        let mut life = if transient {
            self.config.retry_lifetime
        } else {
            self.config.clear_lifetime
        };
        if let Some(ttl) = ttl {
            life = life.min(Duration::from_secs(ttl.into()));
        }
        let state = if closed { State::Blocked } else { State::Clear };
        let mut outcome = Outcome::new(dst, state, Auth::None, p.policy, cause, now, Some(life));
        if let Some(note) = note {
            outcome = outcome.note(note);
        }
        if closed {
            outcome = outcome.note(if p.policy.group.fails_closed() {
                "policy private fails closed"
            } else if dnssec_closed {
                "require-dnssec fails closed"
            } else {
                "downgrade refused"
            });
        }
        if downgrade {
            self.counters.downgrades += 1;
            outcome = outcome.downgraded();
        }
        outcome.dnssec_state = dnssec;
        if closed {
            let dropped = self.hold.discard(dst);
            self.counters.failed_closed += dropped as u64;
            self.actions.push_back(Action::Drop { outcome, dropped });
        } else {
            let packets = self.hold.take(dst);
            self.actions
                .push_back(Action::PassClear { outcome, packets });
        }
    }
}

/// The deadline of one of `n` attempts sharing the time from `now` to `deadline`.
fn share(now: Instant, deadline: Instant, n: usize) -> Instant {
    let left = deadline.saturating_duration_since(now);
    now + left / u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

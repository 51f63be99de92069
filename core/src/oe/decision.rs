//! The per-destination decision machine: a packet to an undecided destination
//! starts DNS, then IKE, and ends in an [`Outcome`] (design.md, "What happens to
//! a packet", steps 2–5). The responder side is in `responder.rs`.
//!
//! Per destination, the pending entry goes
//!
//! ```text
//!   on_packet ──► Dns ──records──► Ike(candidate 1) ──fail/timeout──► Ike(candidate 2) ...
//!                  │  ╰─no key──► Ike(AUTH NULL)  (if the group allows anonymous)
//!                  ╰─no key / failure ─────────────────────────────────► clear | blocked
//!                  Ike ──established──► private        Ike ──all failed──► clear | blocked
//! ```
//!
//! and leaves the machine with one [`Action::Private`], [`Action::PassClear`] or
//! [`Action::Drop`] carrying the outcome and the held packets.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ipseckey::{DomainName, reverse_name};

use super::action::{Action, DnsResult, IkeResult, PacketFate, PeerKey};
use super::config::{Config, Counters};
use super::hold::{Held, HoldStore};
use super::keys::{Candidate, candidates};
use super::limits::{PrivateMemory, TokenBucket};
use super::outcome::{AttemptFailure, Auth, Cause, NoKey, Outcome, State};
use super::policy::{Group, Policy, PolicyMatch};
use super::responder::AddressLookup;
use super::responder::{Prefetched, Responder};

/// A timer's place in the ordered timer map: deadline, then a unique sequence.
pub(super) type TimerKey = (Instant, u64);

/// What a timer is for.
#[derive(Debug)]
pub(super) enum Timer {
    /// The DNS deadline of the lookup of this name.
    Dns(DomainName),
    /// The deadline of the current IKE attempt for this destination.
    Ike(IpAddr),
    /// The deadline of the A (`true`) or AAAA lookup of this name.
    Address(DomainName, bool),
}

/// One DNS lookup in flight, shared by everyone waiting for the same name.
#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) timer: TimerKey,
    /// The outbound destination waiting for it, if any.
    pub(super) outbound: Option<IpAddr>,
    /// Responder requests waiting for it.
    pub(super) responders: Vec<u64>,
}

/// What the agent's resolver said, or that it said nothing in time.
#[derive(Clone, Copy, Debug)]
pub(super) enum DnsAnswer<'a> {
    Result(&'a DnsResult),
    Timeout(Duration),
}

#[derive(Debug)]
struct Pending {
    policy: PolicyMatch,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    Dns { name: DomainName },
    Ike(IkePhase),
}

#[derive(Debug)]
struct IkePhase {
    current: Candidate,
    rest: VecDeque<Candidate>,
    started: Instant,
    deadline: Instant,
    timer: TimerKey,
    dnssec: bool,
    key_in_dns: bool,
    /// Why there was no key (anonymous attempt), for the reason line.
    no_key: Option<NoKey>,
    /// The negative TTL that bounds a clear outcome.
    ttl_cap: Option<u32>,
    failures: Vec<AttemptFailure>,
}

/// The opportunistic-encryption decision machine. See the [module docs](super).
#[derive(Debug)]
pub struct Machine {
    pub(super) config: Config,
    pub(super) policy: Policy,
    pending: HashMap<IpAddr, Pending>,
    pub(super) responders: HashMap<u64, Responder>,
    pub(super) lookups: HashMap<DomainName, Lookup>,
    timers: BTreeMap<TimerKey, Timer>,
    next_timer: u64,
    hold: HoldStore,
    pub(super) bucket: TokenBucket,
    /// The lookup budget of peers that start IKE with us (see `Config`).
    pub(super) inbound_bucket: TokenBucket,
    /// Keys looked up ahead of an IKE_AUTH, waiting for it.
    pub(super) prefetched: Prefetched,
    /// A/AAAA lookups of FQDN identities in flight, by (name, IPv4?).
    pub(super) address_lookups: HashMap<(DomainName, bool), AddressLookup>,
    pub(super) memory: PrivateMemory,
    /// Peers with a live private outcome that authenticated: an anonymous
    /// peer may not stand in for one of them.
    pub(super) authenticated_live: HashSet<IpAddr>,
    pub(super) actions: VecDeque<Action>,
    pub(super) counters: Counters,
}

impl Machine {
    /// A machine with this configuration and policy, nothing pending.
    pub fn new(config: Config, policy: Policy) -> Self {
        Self {
            hold: HoldStore::new(config.hold),
            bucket: TokenBucket::new(config.lookups_per_second, config.lookup_burst),
            inbound_bucket: TokenBucket::new(
                config.inbound_lookups_per_second,
                config.inbound_lookup_burst,
            ),
            address_lookups: HashMap::new(),
            authenticated_live: HashSet::new(),
            prefetched: Prefetched::new(config.max_responder_pending, config.dns_timeout),
            memory: PrivateMemory::new(config.private_memory_limit, config.private_memory),
            config,
            policy,
            pending: HashMap::new(),
            responders: HashMap::new(),
            lookups: HashMap::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
            actions: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// A packet from the TUN to `dst`, which has no cached outcome. Call
    /// [`Machine::poll_action`] afterwards.
    pub fn on_packet(&mut self, now: Instant, dst: IpAddr, packet: Vec<u8>) -> PacketFate {
        if self.pending.contains_key(&dst) {
            return self.hold_packet(dst, packet);
        }
        let policy = self.policy.lookup(dst);
        match policy.group {
            Group::Clear | Group::ClearOrPrivate => {
                let life = self.config.clear_lifetime;
                let outcome = Outcome::new(
                    dst,
                    State::Clear,
                    Auth::None,
                    policy,
                    Cause::Policy,
                    now,
                    Some(life),
                );
                let packets = self.hold.single(packet);
                self.actions
                    .push_back(Action::PassClear { outcome, packets });
                PacketFate::Decided
            }
            Group::Block => {
                self.counters.blocked_by_policy += 1;
                self.hold.give_buffer(packet);
                let life = self.config.clear_lifetime;
                let outcome = Outcome::new(
                    dst,
                    State::Blocked,
                    Auth::None,
                    policy,
                    Cause::Policy,
                    now,
                    Some(life),
                );
                self.actions.push_back(Action::Drop {
                    outcome,
                    dropped: 1,
                });
                PacketFate::Decided
            }
            Group::PrivateOrClear | Group::Private => {
                if self.pending.len() >= self.config.max_pending {
                    self.counters.pending_full += 1;
                    self.hold.give_buffer(packet);
                    return PacketFate::DroppedPendingFull;
                }
                let name = reverse_name(dst);
                if !self.lookups.contains_key(&name) && !self.bucket.take(now) {
                    self.counters.lookup_rate_limited += 1;
                    self.hold.give_buffer(packet);
                    return PacketFate::DroppedRateLimited;
                }
                self.pending.insert(
                    dst,
                    Pending {
                        policy,
                        phase: Phase::Dns { name: name.clone() },
                    },
                );
                self.start_lookup(now, dst, name, None);
                self.hold_packet(dst, packet)
            }
        }
    }

    fn hold_packet(&mut self, dst: IpAddr, packet: Vec<u8>) -> PacketFate {
        if !self.hold.admits(packet.len()) {
            self.hold.push(dst, packet); // counted as too big, buffer kept
            return PacketFate::DroppedTooBig;
        }
        self.hold.push(dst, packet);
        PacketFate::Held
    }

    /// Starts (or joins) the lookup of `name`, for outbound `dst` or responder `request`.
    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        dst: IpAddr,
        name: DomainName,
        request: Option<u64>,
    ) {
        if let Some(lookup) = self.lookups.get_mut(&name) {
            match request {
                Some(id) => lookup.responders.push(id),
                None => lookup.outbound = Some(dst),
            }
            return;
        }
        let deadline = now + self.config.dns_timeout;
        let timer = self.arm(deadline, Timer::Dns(name.clone()));
        let (outbound, responders) = match request {
            Some(id) => (None, vec![id]),
            None => (Some(dst), Vec::new()),
        };
        self.lookups.insert(
            name.clone(),
            Lookup {
                timer,
                outbound,
                responders,
            },
        );
        self.actions.push_back(Action::LookupKey {
            dst,
            name,
            deadline,
        });
    }

    /// Starts a lookup nobody waits for yet (see `on_ike_init`); an answer
    /// that comes first is kept in `prefetched`.
    pub(super) fn start_prefetch(&mut self, now: Instant, peer_addr: IpAddr, name: DomainName) {
        let deadline = now + self.config.dns_timeout;
        let timer = self.arm(deadline, Timer::Dns(name.clone()));
        self.lookups.insert(
            name.clone(),
            Lookup {
                timer,
                outbound: None,
                responders: Vec::new(),
            },
        );
        self.actions.push_back(Action::LookupKey {
            dst: peer_addr,
            name,
            deadline,
        });
    }

    pub(super) fn cancel_timer(&mut self, key: TimerKey) {
        self.timers.remove(&key);
    }

    pub(super) fn arm(&mut self, at: Instant, timer: Timer) -> TimerKey {
        let key = (at, self.next_timer);
        self.next_timer += 1;
        self.timers.insert(key, timer);
        key
    }

    /// The answer to an [`Action::LookupKey`] for `name` (the name in the action).
    pub fn on_dns_result(&mut self, now: Instant, name: &DomainName, result: DnsResult) {
        let Some(lookup) = self.lookups.remove(name) else {
            self.counters.stale_results += 1;
            return;
        };
        self.timers.remove(&lookup.timer);
        if matches!(result, DnsResult::Failed { .. }) {
            self.counters.dns_failures += 1;
        }
        if lookup.outbound.is_none() && lookup.responders.is_empty() {
            // A prefetch that finished before the IKE_AUTH it is for.
            self.prefetched.insert(now, name.clone(), result);
            return;
        }
        self.resolve_lookup(now, name, lookup, DnsAnswer::Result(&result));
    }

    fn resolve_lookup(
        &mut self,
        now: Instant,
        name: &DomainName,
        lookup: Lookup,
        a: DnsAnswer<'_>,
    ) {
        if let Some(dst) = lookup.outbound {
            self.outbound_dns(now, dst, name, a);
        }
        for id in lookup.responders {
            self.responder_dns(id, name, a);
        }
    }

    fn outbound_dns(&mut self, now: Instant, dst: IpAddr, name: &DomainName, a: DnsAnswer<'_>) {
        match self.pending.get(&dst).map(|p| &p.phase) {
            Some(Phase::Dns { name: n }) if n == name => {}
            _ => return,
        }
        match a {
            DnsAnswer::Result(DnsResult::Records {
                records,
                dnssec_validated,
                ttl,
            }) => {
                let (found, skipped) = candidates(dst, records);
                self.counters.unusable_records += skipped.len() as u64;
                if found.is_empty() {
                    self.no_key(now, dst, NoKey::Unusable(skipped), Some(*ttl));
                } else {
                    self.start_ike(now, dst, found, *dnssec_validated, None, None);
                }
            }
            DnsAnswer::Result(DnsResult::NoRecords { kind, negative_ttl }) => {
                self.no_key(now, dst, NoKey::NoRecord(*kind), *negative_ttl);
            }
            DnsAnswer::Result(DnsResult::Failed { reason }) => {
                self.fail(now, dst, Cause::DnsFailed(reason.clone()), None, None);
            }
            DnsAnswer::Timeout(after) => self.fail(now, dst, Cause::DnsTimeout(after), None, None),
        }
    }

    /// No usable key: anonymous IKE where allowed, else clear or blocked. A
    /// peer remembered as private is a downgrade (its key went away): under
    /// `refuse_downgrade` it is blocked at once, without trying AUTH NULL.
    fn no_key(&mut self, now: Instant, dst: IpAddr, why: NoKey, ttl: Option<u32>) {
        let Some(p) = self.pending.get(&dst) else {
            return;
        };
        if self.config.refuse_downgrade && self.memory.was_private(now, dst) {
            return self.fail(now, dst, Cause::NoKey(why), None, None);
        }
        if p.policy.options.allow_anonymous {
            let anon = Candidate {
                precedence: 0,
                peer_addr: dst,
                key: PeerKey::Null,
            };
            self.start_ike(now, dst, vec![anon], false, Some(why), ttl);
        } else {
            let note = "anonymous IKE not allowed (require-authenticated)";
            self.fail(now, dst, Cause::NoKey(why), ttl, Some(note));
        }
    }

    fn start_ike(
        &mut self,
        now: Instant,
        dst: IpAddr,
        found: Vec<Candidate>,
        dnssec: bool,
        no_key: Option<NoKey>,
        ttl_cap: Option<u32>,
    ) {
        let mut rest: VecDeque<Candidate> = found.into();
        let Some(first) = rest.pop_front() else {
            return;
        };
        let deadline = now + self.config.ike_timeout;
        let attempt = share(now, deadline, rest.len() + 1);
        let timer = self.arm(attempt, Timer::Ike(dst));
        let Some(p) = self.pending.get_mut(&dst) else {
            return;
        };
        let (peer_addr, key) = (first.peer_addr, first.key.clone());
        p.phase = Phase::Ike(IkePhase {
            current: first,
            rest,
            started: now,
            deadline,
            timer,
            dnssec,
            key_in_dns: no_key.is_none(),
            no_key,
            ttl_cap,
            failures: Vec::new(),
        });
        self.actions.push_back(Action::StartIke {
            dst,
            peer_addr,
            key,
            authenticated_by_dnssec: dnssec,
            deadline: attempt,
        });
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
        match self.pending.get(&dst).map(|p| &p.phase) {
            Some(Phase::Ike(ike)) if ike.current.peer_addr == peer_addr => {}
            _ => {
                self.counters.stale_results += 1;
                return;
            }
        }
        match failure {
            Some(_) => self.counters.ike_failures += 1,
            None => self.counters.ike_timeouts += 1,
        }
        self.next_attempt(
            now,
            dst,
            AttemptFailure {
                peer_addr,
                reason: failure,
            },
        );
    }

    fn established(
        &mut self,
        now: Instant,
        dst: IpAddr,
        peer_addr: IpAddr,
        anonymous: bool,
        dnssec: bool,
        lookup_failed: bool,
    ) {
        let policy = match self.pending.remove(&dst) {
            Some(p) => {
                self.leave_phase(dst, p.phase, Some(peer_addr));
                p.policy
            }
            None => self.policy.lookup(dst),
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
        outcome = outcome.with_dnssec(dnssec && !anonymous);
        if anonymous && lookup_failed {
            outcome = outcome.note("anonymous (key lookup failed)");
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
    fn leave_phase(&mut self, dst: IpAddr, phase: Phase, succeeded: Option<IpAddr>) {
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
                if succeeded.is_some_and(|a| a != ike.current.peer_addr) {
                    self.actions.push_back(Action::CancelIke {
                        dst,
                        peer_addr: ike.current.peer_addr,
                    });
                }
            }
        }
    }

    /// The current attempt failed: the next candidate if time remains, else fail.
    fn next_attempt(&mut self, now: Instant, dst: IpAddr, failure: AttemptFailure) {
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
            let (peer_addr, key) = (next.peer_addr, next.key.clone());
            ike.current = next;
            let dnssec = ike.dnssec;
            ike.timer = (attempt, self.next_timer);
            self.next_timer += 1;
            self.timers.insert(ike.timer, Timer::Ike(dst));
            self.actions.push_back(Action::StartIke {
                dst,
                peer_addr,
                key,
                authenticated_by_dnssec: dnssec,
                deadline: attempt,
            });
            return;
        }
        let cause = Cause::IkeFailed {
            attempts: std::mem::take(&mut ike.failures),
            after: now.saturating_duration_since(ike.started),
            key_in_dns: ike.key_in_dns,
        };
        let note = ike.no_key.as_ref().map(ToString::to_string);
        let ttl = ike.ttl_cap;
        self.fail(now, dst, cause, ttl, note.as_deref());
    }

    /// Ends `dst` as clear (fail open) or blocked (fail closed), per its group.
    fn fail(
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
        self.leave_phase(dst, p.phase, None);
        // design.md: a peer that was private recently and now goes clear (or
        // blocked) for any reason is a downgrade: IKE failing, its key gone
        // from DNS (a forged NXDOMAIN looks just like that), DNS failing.
        let downgrade = self.memory.was_private(now, dst);
        // A policy reloaded meanwhile may have made dst fail closed: the stricter wins.
        let closed = p.policy.group.fails_closed()
            || self.policy.lookup(dst).group.fails_closed()
            || (downgrade && self.config.refuse_downgrade);
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
            outcome = outcome.note(if downgrade && !p.policy.group.fails_closed() {
                "downgrade refused"
            } else {
                "policy private fails closed"
            });
        }
        if downgrade {
            self.counters.downgrades += 1;
            outcome = outcome.downgraded();
        }
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

    /// The next action for the agent, if any. Drain after every call.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Machine::handle_timeout`] must be called next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((at, _), _)| *at)
    }

    /// Fires every DNS and IKE deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Dns(name) => {
                    let Some(lookup) = self.lookups.remove(&name) else {
                        continue;
                    };
                    self.counters.dns_timeouts += 1;
                    self.actions
                        .push_back(Action::CancelLookup { name: name.clone() });
                    let after = DnsAnswer::Timeout(self.config.dns_timeout);
                    self.resolve_lookup(now, &name, lookup, after);
                }
                Timer::Address(name, v4) => self.address_timeout(now, name, v4),
                Timer::Ike(dst) => {
                    let Some(Pending {
                        phase: Phase::Ike(ike),
                        ..
                    }) = self.pending.get(&dst)
                    else {
                        continue;
                    };
                    let peer_addr = ike.current.peer_addr;
                    self.counters.ike_timeouts += 1;
                    self.actions.push_back(Action::CancelIke { dst, peer_addr });
                    let failure = AttemptFailure {
                        peer_addr,
                        reason: None,
                    };
                    self.next_attempt(now, dst, failure);
                }
            }
        }
    }

    /// Remembers `peer` as private now, if it is private and authenticated
    /// (call on every IKE or CHILD SA rekey, so that a long-lived SA keeps its
    /// peer remembered for downgrade detection; an anonymous peer is never
    /// remembered: it was never more than anonymous).
    pub fn remember_private(&mut self, now: Instant, peer: IpAddr) {
        if self.authenticated_live.contains(&peer) {
            self.memory.remember(now, peer);
        }
    }

    /// The last SA with `peer` is gone: its private outcome ended. An
    /// authenticated peer stays remembered (for `private_memory` from now),
    /// and anonymous peers may again be answered for its address.
    pub fn on_private_ended(&mut self, now: Instant, peer: IpAddr) {
        if self.authenticated_live.remove(&peer) {
            self.memory.remember(now, peer);
        }
    }

    /// The policy group and prefix for `addr` (`oemesh check ADDR`).
    pub fn check(&self, addr: IpAddr) -> crate::oe::PolicyMatch {
        self.policy.lookup(addr)
    }

    /// Replaces the policy. Decisions under way keep their group, except that a
    /// destination now failing closed will not go clear.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Counters for metrics.
    pub fn counters(&self) -> Counters {
        let drops = self.hold.drops();
        Counters {
            hold_dst_full: drops.dst_full,
            hold_total_full: drops.total_full,
            hold_too_big: drops.too_big,
            ..self.counters
        }
    }

    /// Destinations being decided.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether `dst` is being decided.
    pub fn is_pending(&self, dst: IpAddr) -> bool {
        self.pending.contains_key(&dst)
    }

    /// Peers remembered as private.
    pub fn remembered_private(&self) -> usize {
        self.memory.len()
    }

    /// The held-packet store (sizes, limits).
    pub fn hold(&self) -> &HoldStore {
        &self.hold
    }

    /// Gives back an emptied [`Held`] from an action, so its storage is reused.
    pub fn recycle(&mut self, held: Held) {
        self.hold.recycle(held);
    }

    /// An empty packet buffer from a dropped packet, to read the next packet into.
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.hold.spare_buffer()
    }
}

/// The deadline of one of `n` attempts sharing the time from `now` to `deadline`.
fn share(now: Instant, deadline: Instant, n: usize) -> Instant {
    let left = deadline.saturating_duration_since(now);
    now + left / u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

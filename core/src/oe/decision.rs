//! The per-destination decision machine: a packet to an undecided destination
//! starts DNS, then IKE, and ends in an [`Outcome`] (design.md, "What happens to
//! a packet", steps 2–5). The IKE attempts are in `decision/ike.rs`, the
//! responder side in `responder.rs`.
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

mod gateway;
mod ike;
mod stale;

pub use stale::StaleSpiFate;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ipseckey::{DomainName, reverse_name};

use super::action::{Action, DnsFailure, DnsResult, Dnssec, PacketFate, PeerKey};
use super::config::{Config, Counters};
use super::hold::{Held, HoldStore};
use super::keys::{Candidate, Peer, Prefer, candidates_for};
use super::limits::{PrivateMemory, RecentSources, TokenBucket};
use super::outcome::{AttemptFailure, AttemptPeer, Auth, Cause, NoKey, Outcome, State, human};
use super::policy::{Group, Negotiation, Policy, PolicyMatch};
use super::responder::AddressLookup;
use super::responder::{Prefetched, Responder};
use super::unreachable::Unreachable;

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
    Ike(Box<IkePhase>),
}

#[derive(Debug)]
struct IkePhase {
    current: Candidate,
    /// The address of the current attempt's IKE peer; `None` while the name
    /// of its gateway is being resolved (no IKE yet).
    peer_addr: Option<IpAddr>,
    rest: VecDeque<Candidate>,
    started: Instant,
    deadline: Instant,
    /// The current attempt's own deadline (its share of `deadline`).
    attempt_deadline: Instant,
    timer: TimerKey,
    /// An anonymous attempt that has not had the peer's first IKE answer:
    /// its timer is at `anonymous_timeout` at most, until that answer.
    unanswered: bool,
    /// An ICMP error shortened the current attempt's wait.
    unreachable: Option<Unreachable>,
    /// The DNSSEC status of the answer that started it.
    dnssec: Dnssec,
    /// The current attempt's: the key's, or the weaker of the key's and its
    /// gateway address's when the record named the gateway.
    attempt_dnssec: Dnssec,
    key_in_dns: bool,
    /// Why there was no key (anonymous attempt), for the reason line.
    no_key: Option<NoKey>,
    /// The negative TTL that bounds a clear outcome.
    ttl_cap: Option<u32>,
    failures: Vec<AttemptFailure>,
}

impl IkePhase {
    /// The current attempt failed (`None`: timed out).
    fn failure(&self, reason: Option<String>) -> AttemptFailure {
        let peer = match &self.current.peer {
            Peer::Addr(a) => AttemptPeer::Addr(self.peer_addr.unwrap_or(*a)),
            Peer::Name(name) => AttemptPeer::Named {
                name: name.clone(),
                addr: self.peer_addr,
            },
        };
        AttemptFailure { peer, reason }
    }
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
    /// Sources of ESP with unknown SPIs lately, and their own budget.
    stale_sources: RecentSources,
    stale_bucket: TokenBucket,
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
            stale_sources: RecentSources::new(config.stale_spi_sources, config.stale_spi_interval),
            stale_bucket: TokenBucket::new(config.stale_spi_per_second, config.stale_spi_burst),
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
        if let Some(state) = result.dnssec() {
            self.counters.dnssec[state as usize] += 1;
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
                dnssec,
                ttl,
            }) => {
                let prefer = Prefer::of(&self.config.protects);
                let (found, skipped) = candidates_for(dst, records, prefer);
                self.counters.unusable_records += skipped.len() as u64;
                if found.is_empty() {
                    self.no_key(now, dst, NoKey::Unusable(skipped), Some(*ttl), *dnssec);
                } else if self.requires_dnssec(dst) && !dnssec.is_secure() {
                    // Only a secure key authenticates here: an insecure or
                    // indeterminate one is as good as none.
                    self.no_key(now, dst, NoKey::NotSecure(*dnssec), Some(*ttl), *dnssec);
                } else {
                    self.start_ike(now, dst, found, *dnssec, None, None);
                }
            }
            DnsAnswer::Result(DnsResult::NoRecords {
                kind,
                negative_ttl,
                dnssec,
            }) => {
                if *dnssec == Dnssec::Indeterminate && self.requires_dnssec(dst) {
                    // A denial nobody vouches for, where a forged one is the
                    // attack require-dnssec is there to stop.
                    let why = format!("unproven {kind}");
                    let cause = Cause::DnsFailed(DnsFailure::Indeterminate(why));
                    self.fail(now, dst, cause, None, None);
                } else {
                    self.no_key(now, dst, NoKey::NoRecord(*kind), *negative_ttl, *dnssec);
                }
            }
            DnsAnswer::Result(DnsResult::Failed { reason }) => {
                self.fail(now, dst, Cause::DnsFailed(reason.clone()), None, None);
            }
            DnsAnswer::Timeout(after) => self.fail(now, dst, Cause::DnsTimeout(after), None, None),
        }
    }

    /// Whether `dst`'s group is in `require-dnssec`, when it started or now
    /// (a reloaded policy: the stricter wins, as for failing closed).
    pub(super) fn requires_dnssec(&self, dst: IpAddr) -> bool {
        self.pending
            .get(&dst)
            .is_some_and(|p| p.policy.options.require_dnssec)
            || self.policy.lookup(dst).options.require_dnssec
    }

    /// No usable key: anonymous IKE where allowed, else clear or blocked. A
    /// peer remembered as private is a downgrade (its key went away): under
    /// `refuse_downgrade` it is blocked at once, without trying AUTH NULL.
    fn no_key(&mut self, now: Instant, dst: IpAddr, why: NoKey, ttl: Option<u32>, dnssec: Dnssec) {
        let Some(p) = self.pending.get(&dst) else {
            return;
        };
        if self.config.refuse_downgrade && self.memory.was_private(now, dst) {
            return self.fail(now, dst, Cause::NoKey(why), None, None);
        }
        if p.policy.options.allow_anonymous {
            let passthrough = p.policy.options.negotiation == Negotiation::Passthrough
                && p.policy.group.initiates()
                && !self.memory.was_private(now, dst);
            let anon = Candidate::at(dst, PeerKey::Null);
            self.start_ike(now, dst, vec![anon], dnssec, Some(why), ttl);
            if passthrough {
                self.passthrough(now, dst);
            }
        } else {
            let note = "anonymous IKE not allowed (require-authenticated)";
            self.fail(now, dst, Cause::NoKey(why), ttl, Some(note));
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
                    let Some(peer_addr) = ike.peer_addr else {
                        self.gateway_unresolved_in_time(now, dst);
                        continue;
                    };
                    self.counters.ike_timeouts += 1;
                    if ike.unanswered {
                        self.counters.anonymous_timeouts += 1;
                    }
                    let grace = self.config.icmp_grace;
                    let reason = ike
                        .unreachable
                        .map(|u| format!("{u}, and no IKE answer within {}", human(grace)));
                    let failure = ike.failure(reason);
                    self.actions.push_back(Action::CancelIke { dst, peer_addr });
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

//! The responder side: whom to answer when a peer starts IKE with us (design.md,
//! "Inbound", "The trust model"). The answer goes out as [`Action::AnswerPeer`],
//! made for the IKE engine's `AuthorizePeer` event:
//!
//! | peer's group | AUTH NULL initiator | signing initiator |
//! |---|---|---|
//! | `clear`, `block` | refused | refused |
//! | `clear-or-private`, `private-or-clear`, `private` | anonymous if allowed (see below) | its identity bound to its address ([`crate::trust`]), then the keys at its address's reverse name; refused without one |
//!
//! An anonymous peer never stands in for a keyed one. It is refused when:
//! its group requires authentication; it has a live authenticated SA; it
//! publishes a usable key (`refuse_anonymous_with_key`); the lookup of its key
//! failed and its group fails closed (else it is accepted, recorded as
//! `anonymous (key lookup failed)`); or it was authenticated within
//! `private_memory` and `refuse_downgrade` is set (else the outcome is flagged
//! as a downgrade).
//!
//! Every lookup here is paid from the inbound budget, not from the one of this
//! host's own new flows.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ike::message::Identity;
use crate::ipseckey::{DomainName, reverse_name};
use crate::trust::{self, Binding, IdentityRefused};

use super::action::{Action, AddressResult, DnsResult, PeerAnswer};
use super::decision::{DnsAnswer, Machine, Timer, TimerKey};
use super::outcome::human;
use super::vouch::{self, VouchSlot, VouchedFor};
use crate::ike::message::AddrSelector;

pub(super) mod verdicts;

use verdicts::{anonymous_answer, keyed_answer};

/// A responder request waiting for DNS.
#[derive(Debug)]
pub(super) struct Responder {
    pub(super) peer_addr: IpAddr,
    pub(super) null_auth: bool,
    /// AUTH NULL whose key lookup fails is accepted (else refused: the group
    /// requires authentication or fails closed).
    pub(super) anonymous_on_failure: bool,
    /// `require-dnssec`: only a key from a secure answer authenticates.
    pub(super) require_dnssec: bool,
    /// The verdict of the key lookup, once in.
    pub(super) key: Option<PeerAnswer>,
    /// An FQDN identity: its name, and whether it resolves to `peer_addr`
    /// (with the DNSSEC status of its address records), once known.
    pub(super) fqdn: Option<(DomainName, Option<Result<bool, IdentityRefused>>)>,
    /// The proposed TSi selectors beyond its address that wait for DNS to
    /// vouch for them (gateway mode, [`super::vouch`]).
    pub(super) vouch: Vec<VouchSlot>,
    /// Why others are not vouched for.
    pub(super) not_vouched: Vec<String>,
}

/// Who waits for an A/AAAA lookup, and for which address.
#[derive(Debug, Clone, Copy)]
pub(super) enum Waiter {
    /// A responder request ([`Machine::on_ike_request`]).
    Responder(u64, IpAddr),
    /// An initiator's check of its responder ([`Machine::on_identity_check`]).
    Initiator(u64, IpAddr),
    /// The pending destination whose current attempt goes through the
    /// gateway of that name (`decision/gateway.rs`); the lookup is of the
    /// destination's family.
    Gateway(IpAddr),
}

/// One A/AAAA lookup in flight, shared by everyone waiting for the same name.
#[derive(Debug)]
pub(super) struct AddressLookup {
    timer: TimerKey,
    waiting: Vec<Waiter>,
}

/// Answers of lookups started at a peer's IKE_SA_INIT ([`Machine::on_ike_init`])
/// that came before its IKE_AUTH did. Each is kept `keep` (the DNS timeout:
/// IKE_AUTH follows IKE_SA_INIT within a round trip) and used once; at most
/// `limit` at a time.
#[derive(Debug)]
pub(super) struct Prefetched {
    answers: HashMap<DomainName, (Instant, DnsResult)>,
    /// Insertion order, which is expiry order (one lifetime for all).
    order: VecDeque<(Instant, DomainName)>,
    limit: usize,
    keep: Duration,
}

impl Prefetched {
    pub(super) fn new(limit: usize, keep: Duration) -> Self {
        Prefetched {
            answers: HashMap::new(),
            order: VecDeque::new(),
            limit,
            keep,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((until, name)) = self.order.front() {
            if *until > now && self.order.len() <= self.limit {
                break;
            }
            if self.answers.get(name).is_some_and(|(u, _)| u == until) {
                self.answers.remove(name);
            }
            self.order.pop_front();
        }
    }

    pub(super) fn insert(&mut self, now: Instant, name: DomainName, result: DnsResult) {
        let until = now + self.keep;
        self.order.push_back((until, name.clone()));
        self.answers.insert(name, (until, result));
        self.expire(now);
    }

    fn contains(&self, name: &DomainName) -> bool {
        self.answers.contains_key(name)
    }

    fn take(&mut self, now: Instant, name: &DomainName) -> Option<DnsResult> {
        self.expire(now);
        self.answers.remove(name).map(|(_, r)| r)
    }
}

impl Machine {
    /// A peer at `peer_addr` had its IKE_SA_INIT accepted (the engine's
    /// `IkeSaInitAccepted`): its IKE_AUTH comes one round trip later and will
    /// most likely need the key at its address's reverse name (whatever its
    /// identity: keys are always looked up there, [`crate::trust`]; an AUTH
    /// NULL initiator is checked for a published key there). The lookup
    /// starts now, so its answer is there or on its way when IKE_AUTH arrives,
    /// instead of costing a DNS round trip after it. It uses a token of the
    /// inbound budget only while half its burst is left: prefetching never
    /// starves lookups something waits for. (Half-open SAs are themselves
    /// bounded by cookies, so spoofed sources cannot drive this.)
    pub fn on_ike_init(&mut self, now: Instant, peer_addr: IpAddr) {
        if !self.policy.lookup(peer_addr).group.answers() {
            return;
        }
        let name = reverse_name(peer_addr);
        if self.lookups.contains_key(&name)
            || self.prefetched.contains(&name)
            || !self.inbound_bucket.take_spare(now)
        {
            return;
        }
        self.counters.prefetches += 1;
        self.start_prefetch(now, peer_addr, name);
    }

    /// A peer at `peer_addr` started IKE with identity `peer_id` (the engine's
    /// `AuthorizePeer { sa, remote, id, null_auth }`; pass `sa.0` as `request`
    /// and `remote.ip()` as `peer_addr`, the address the IKE SA is pinned to).
    /// The answer comes as [`Action::AnswerPeer`], at once or after DNS.
    pub fn on_ike_request(
        &mut self,
        now: Instant,
        request: u64,
        peer_addr: IpAddr,
        peer_id: &Identity,
        null_auth: bool,
    ) {
        self.on_ike_request_from(now, request, peer_addr, peer_id, null_auth, &[]);
    }

    /// [`Machine::on_ike_request`] with the TSi the peer proposed (the
    /// event's `ts_i`): the selectors beyond its own address are looked up
    /// for DNS to vouch for them (`oe::vouch`), and the answer carries
    /// those it does.
    pub fn on_ike_request_from(
        &mut self,
        now: Instant,
        request: u64,
        peer_addr: IpAddr,
        peer_id: &Identity,
        null_auth: bool,
        ts_i: &[AddrSelector],
    ) {
        let policy = self.policy.lookup(peer_addr);
        if !policy.group.answers() {
            return self.refuse(
                request,
                peer_addr,
                format!("policy {policy} does not answer OE"),
            );
        }
        if self.responders.contains_key(&request) {
            return; // already waiting for this one
        }
        let fqdn = match trust::bind(peer_id, peer_addr, null_auth) {
            Err(refused) => {
                self.counters.identity_refused += 1;
                return self.refuse(request, peer_addr, refused.to_string());
            }
            Ok(Binding::Address) => None,
            Ok(Binding::Fqdn(name)) => Some(name),
            Ok(Binding::Anonymous) => {
                if !policy.options.allow_anonymous {
                    let why = format!("AUTH NULL refused: policy {policy} requires authentication");
                    return self.refuse(request, peer_addr, why);
                }
                if self.authenticated_live.contains(&peer_addr) {
                    let why = format!(
                        "AUTH NULL refused: {peer_addr} has a live authenticated SA, which an \
                         anonymous peer cannot stand in for"
                    );
                    return self.refuse(request, peer_addr, why);
                }
                if self.config.refuse_downgrade && self.memory.was_private(now, peer_addr) {
                    self.counters.downgrades += 1;
                    let why = format!(
                        "AUTH NULL refused: DOWNGRADE: {peer_addr} was authenticated within {} \
                         (refuse_downgrade)",
                        human(self.config.private_memory)
                    );
                    return self.refuse(request, peer_addr, why);
                }
                if !self.config.refuse_anonymous_with_key {
                    let answer = PeerAnswer::Anonymous {
                        lookup_failed: false,
                    };
                    return self.answer(request, peer_addr, answer);
                }
                None
            }
        };
        let name = reverse_name(peer_addr);
        self.prefetched.expire(now);
        let key_lookup = !self.prefetched.contains(&name) && !self.lookups.contains_key(&name);
        let address_lookup = fqdn.as_ref().is_some_and(|f| {
            !self
                .address_lookups
                .contains_key(&(f.clone(), peer_addr.is_ipv4()))
        });
        // Refused before anything is used up: a kept answer stays for the
        // next request from there.
        if self.responders.len() >= self.config.max_responder_pending
            || (key_lookup && !self.inbound_bucket.take(now))
            || (address_lookup && !self.inbound_bucket.take(now))
        {
            self.counters.responder_overload += 1;
            return self.refuse(
                request,
                peer_addr,
                "overloaded: too many lookups".to_owned(),
            );
        }
        let (mut slots, mut not_vouched) = if null_auth {
            (Vec::new(), Vec::new())
        } else {
            vouch::slots(peer_addr, ts_i)
        };
        // A site is a source this host answers OE for, like the peer itself:
        // both ends of its range must be in a group that answers.
        self.retain_answering(&mut slots, &mut not_vouched);
        self.counters.not_vouched += not_vouched.len() as u64;
        // Each selector's lookup is paid like the key's; one the budget
        // cannot pay is not looked up (and so not vouched for).
        slots.retain(|s| self.lookups.contains_key(&s.name) || self.inbound_bucket.take(now));
        let prefetched = self.prefetched.take(now, &name);
        if prefetched.is_some() {
            self.counters.prefetch_hits += 1;
        } else if self
            .lookups
            .get(&name)
            .is_some_and(|l| l.outbound.is_none() && l.responders.is_empty())
        {
            // Joins a prefetch still in flight (a lookup nobody waited for);
            // joining an outbound lookup of the same name is no prefetch hit.
            self.counters.prefetch_hits += 1;
        }
        self.responders.insert(
            request,
            Responder {
                peer_addr,
                null_auth,
                anonymous_on_failure: policy.options.allow_anonymous
                    && !policy.group.fails_closed(),
                require_dnssec: policy.options.require_dnssec,
                key: None,
                fqdn: fqdn.clone().map(|n| (n, None)),
                vouch: Vec::new(),
                not_vouched,
            },
        );
        self.look_up_slots(now, request, peer_addr, slots);
        if let Some(fqdn) = fqdn {
            self.start_address_lookup(now, fqdn, Waiter::Responder(request, peer_addr));
        }
        match prefetched {
            Some(result) => self.responder_dns(request, &name, DnsAnswer::Result(&result)),
            None => self.start_lookup(now, peer_addr, name, Some(request)),
        }
    }

    /// The initiator's side of the trust rule: the responder at `peer_addr`
    /// signed under the FQDN identity `name` (the engine's `ConfirmIdentity`;
    /// pass `sa.0` as `request`). The answer comes as
    /// [`Action::IdentityChecked`] once the name's address records are in.
    pub fn on_identity_check(
        &mut self,
        now: Instant,
        request: u64,
        peer_addr: IpAddr,
        name: DomainName,
    ) {
        self.start_address_lookup(now, name, Waiter::Initiator(request, peer_addr));
    }

    /// Starts (or joins) the A/AAAA lookup of `name` for `waiter`.
    pub(super) fn start_address_lookup(&mut self, now: Instant, name: DomainName, waiter: Waiter) {
        let addr = match waiter {
            Waiter::Responder(_, a) | Waiter::Initiator(_, a) | Waiter::Gateway(a) => a,
        };
        let key = (name, addr.is_ipv4());
        if let Some(lookup) = self.address_lookups.get_mut(&key) {
            lookup.waiting.push(waiter);
            return;
        }
        let deadline = now + self.config.dns_timeout;
        let timer = self.arm(deadline, Timer::Address(key.0.clone(), key.1));
        self.actions.push_back(Action::LookupAddress {
            name: key.0.clone(),
            addr,
            deadline,
        });
        self.address_lookups.insert(
            key,
            AddressLookup {
                timer,
                waiting: vec![waiter],
            },
        );
    }

    /// The answer to an [`Action::LookupAddress`] for `name` and `addr` (as in
    /// the action).
    pub fn on_address_result(
        &mut self,
        now: Instant,
        name: &DomainName,
        addr: IpAddr,
        result: AddressResult,
    ) {
        let Some(lookup) = self.address_lookups.remove(&(name.clone(), addr.is_ipv4())) else {
            self.counters.stale_results += 1;
            return;
        };
        self.cancel_timer(lookup.timer);
        if matches!(result, AddressResult::Failed { .. }) {
            self.counters.dns_failures += 1;
        }
        for waiter in lookup.waiting {
            let peer = match waiter {
                Waiter::Responder(_, peer) | Waiter::Initiator(_, peer) => peer,
                Waiter::Gateway(dst) => {
                    self.gateway_address(now, dst, name, &result);
                    continue;
                }
            };
            let verdict = match &result {
                AddressResult::Addresses {
                    addrs,
                    dnssec_validated,
                } => trust::fqdn_resolves_to(name, addrs, peer).map(|()| *dnssec_validated),
                AddressResult::NoRecords { kind } => Err(IdentityRefused::FqdnElsewhere {
                    name: name.clone(),
                    addr: peer,
                    found: kind.to_string(),
                }),
                AddressResult::Failed { reason } => Err(IdentityRefused::FqdnUnconfirmed {
                    name: name.clone(),
                    addr: peer,
                    why: format!("the lookup failed: {reason}"),
                }),
            };
            self.address_verdict(waiter, verdict);
        }
    }

    /// An A/AAAA lookup's deadline passed (from `handle_timeout`).
    pub(super) fn address_timeout(&mut self, now: Instant, name: DomainName, v4: bool) {
        let Some(lookup) = self.address_lookups.remove(&(name.clone(), v4)) else {
            return;
        };
        self.counters.dns_timeouts += 1;
        let after = human(self.config.dns_timeout);
        for waiter in lookup.waiting {
            let peer = match waiter {
                Waiter::Responder(_, peer) | Waiter::Initiator(_, peer) => peer,
                Waiter::Gateway(dst) => {
                    self.gateway_lookup_timeout(now, dst, &name);
                    continue;
                }
            };
            let verdict = Err(IdentityRefused::FqdnUnconfirmed {
                name: name.clone(),
                addr: peer,
                why: format!("the lookup timed out after {after}"),
            });
            self.address_verdict(waiter, verdict);
        }
    }

    fn address_verdict(&mut self, waiter: Waiter, verdict: Result<bool, IdentityRefused>) {
        match waiter {
            // The engine counts an initiator's refusal (`Stats::identity_refused`).
            Waiter::Initiator(request, _) => {
                self.actions.push_back(Action::IdentityChecked {
                    request,
                    result: verdict,
                });
            }
            Waiter::Gateway(_) => {} // answered in `on_address_result`
            Waiter::Responder(request, _) => {
                let Some(r) = self.responders.get_mut(&request) else {
                    return;
                };
                if let Some((_, slot)) = r.fqdn.as_mut() {
                    *slot = Some(verdict);
                }
                self.maybe_answer(request);
            }
        }
    }

    /// The engine dropped `request` (half-open timeout, peer gone): stop waiting for it.
    pub fn cancel_request(&mut self, request: u64) {
        let Some(r) = self.responders.remove(&request) else {
            return;
        };
        if let Some((name, _)) = r.fqdn {
            let key = (name, r.peer_addr.is_ipv4());
            if let Some(l) = self.address_lookups.get_mut(&key) {
                l.waiting
                    .retain(|w| !matches!(w, Waiter::Responder(id, _) if *id == request));
                if l.waiting.is_empty()
                    && let Some(l) = self.address_lookups.remove(&key)
                {
                    self.cancel_timer(l.timer);
                }
            }
        }
        let names =
            std::iter::once(reverse_name(r.peer_addr)).chain(r.vouch.into_iter().map(|s| s.name));
        for name in names {
            let emptied = self.lookups.get_mut(&name).is_some_and(|l| {
                l.responders.retain(|id| *id != request);
                l.responders.is_empty() && l.outbound.is_none()
            });
            if emptied && let Some(lookup) = self.lookups.remove(&name) {
                self.cancel_timer(lookup.timer);
                self.actions.push_back(Action::CancelLookup { name });
            }
        }
    }

    pub(super) fn responder_dns(&mut self, request: u64, name: &DomainName, a: DnsAnswer<'_>) {
        let Some(r) = self.responders.get(&request) else {
            return;
        };
        // An initiator's request looks the gateway's own name up as a
        // selector to vouch for (`oe::vouch`), not as the key.
        if *name != reverse_name(r.peer_addr) || r.vouch.iter().any(|s| s.name == *name) {
            if self.vouch_dns(request, name, a) {
                self.maybe_answer(request);
            }
            return;
        }
        let Some(r) = self.responders.get_mut(&request) else {
            return;
        };
        r.key = Some(if r.null_auth {
            anonymous_answer(r, name, a)
        } else {
            keyed_answer(r.peer_addr, name, a, r.require_dnssec)
        });
        self.maybe_answer(request);
    }

    /// Answers `request` once nothing it needs is missing: a refusal as soon
    /// as one part refuses, else once the key and any FQDN check are in.
    pub(super) fn maybe_answer(&mut self, request: u64) {
        let Some(r) = self.responders.get(&request) else {
            return;
        };
        if r.vouch.iter().any(|s| s.keys.is_none()) {
            return;
        }
        let fqdn = r.fqdn.as_ref().map(|(_, v)| v.as_ref());
        let vouched: Vec<VouchedFor> = r
            .vouch
            .iter()
            .filter_map(|s| match &s.keys {
                Some((keys, _)) if !keys.is_empty() => Some(VouchedFor {
                    selector: s.selector.clone(),
                    keys: keys.clone(),
                }),
                _ => None,
            })
            .collect();
        let vouch_secure = r.vouch.iter().all(|s| {
            s.keys
                .as_ref()
                .is_none_or(|(k, secure)| k.is_empty() || *secure)
        });
        let not_vouched = r.not_vouched.clone();
        let key = match &r.key {
            // No key at its own address, but DNS vouches for what it
            // protects: a gateway with a wildcard and no host record.
            Some(PeerAnswer::Refuse { .. }) if !vouched.is_empty() && !r.null_auth => {
                Some(PeerAnswer::Ed25519 {
                    keys: Vec::new(),
                    dnssec: true,
                    vouched: Vec::new(),
                    not_vouched: Vec::new(),
                })
            }
            other => other.clone(),
        };
        let answer = match (&key, fqdn) {
            (Some(PeerAnswer::Refuse { reason }), _) => PeerAnswer::Refuse {
                reason: reason.clone(),
            },
            (_, Some(Some(Err(refused)))) => {
                self.counters.identity_refused += 1;
                PeerAnswer::Refuse {
                    reason: refused.to_string(),
                }
            }
            (None, _) | (_, Some(None)) => return,
            (Some(PeerAnswer::Ed25519 { keys, dnssec, .. }), Some(Some(Ok(fqdn_dnssec)))) => {
                PeerAnswer::Ed25519 {
                    keys: keys.clone(),
                    dnssec: *dnssec && *fqdn_dnssec && vouch_secure,
                    vouched,
                    not_vouched,
                }
            }
            (Some(PeerAnswer::Ed25519 { keys, dnssec, .. }), None) => PeerAnswer::Ed25519 {
                keys: keys.clone(),
                dnssec: *dnssec && vouch_secure,
                vouched,
                not_vouched,
            },
            (Some(other), _) => other.clone(),
        };
        let peer_addr = r.peer_addr;
        self.responders.remove(&request);
        if matches!(
            answer,
            PeerAnswer::Anonymous {
                lookup_failed: true
            }
        ) {
            self.counters.anonymous_lookup_failed += 1;
        }
        self.answer(request, peer_addr, answer);
    }

    fn refuse(&mut self, request: u64, peer_addr: IpAddr, reason: String) {
        self.answer(request, peer_addr, PeerAnswer::Refuse { reason });
    }

    fn answer(&mut self, request: u64, peer_addr: IpAddr, answer: PeerAnswer) {
        if matches!(answer, PeerAnswer::Refuse { .. }) {
            self.counters.refused_peers += 1;
        }
        self.actions.push_back(Action::AnswerPeer {
            request,
            peer_addr,
            answer,
        });
    }
}

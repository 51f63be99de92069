//! The responder side: whom to answer when a peer starts IKE with us (design.md,
//! "Inbound"). The answer goes out as [`Action::AnswerPeer`], made for the IKE
//! engine's `AuthorizePeer` event:
//!
//! | peer's group | AUTH NULL initiator | signing initiator |
//! |---|---|---|
//! | `clear`, `block` | refused | refused |
//! | `clear-or-private`, `private-or-clear`, `private` | anonymous if allowed, but refused if its address publishes a usable key (`refuse_anonymous_with_key`) | its key from DNS (by its address ID, or its FQDN ID), refused without one |

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ike::message::Identity;
use crate::ipseckey::{DomainName, reverse_name};

use super::action::{Action, DnsResult, PeerAnswer};
use super::decision::{DnsAnswer, Machine};
use super::keys::{candidates, responder_keys};
use super::outcome::{NoKey, human};

/// A responder request waiting for DNS.
#[derive(Debug)]
pub(super) struct Responder {
    peer_addr: IpAddr,
    null_auth: bool,
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
    /// most likely need the key at its address's reverse name (an address ID,
    /// or an AUTH NULL initiator checked for a published key). The lookup
    /// starts now, so its answer is there or on its way when IKE_AUTH arrives,
    /// instead of costing a DNS round trip after it. It uses a lookup token
    /// only while half the burst is left: the rate limit stays the limit, and
    /// prefetching never starves lookups something waits for. (Half-open SAs
    /// are themselves bounded by cookies, so spoofed sources cannot drive
    /// this.)
    pub fn on_ike_init(&mut self, now: Instant, peer_addr: IpAddr) {
        if !self.policy.lookup(peer_addr).group.answers() {
            return;
        }
        let name = reverse_name(peer_addr);
        if self.lookups.contains_key(&name)
            || self.prefetched.contains(&name)
            || !self.bucket.take_spare(now)
        {
            return;
        }
        self.counters.prefetches += 1;
        self.start_prefetch(now, peer_addr, name);
    }

    /// A peer at `peer_addr` started IKE with identity `peer_id` (the engine's
    /// `AuthorizePeer { sa, remote, id, null_auth }`; pass `sa.0` as `request`).
    /// The answer comes as [`Action::AnswerPeer`], at once or after a DNS lookup.
    pub fn on_ike_request(
        &mut self,
        now: Instant,
        request: u64,
        peer_addr: IpAddr,
        peer_id: &Identity,
        null_auth: bool,
    ) {
        let policy = self.policy.lookup(peer_addr);
        if !policy.group.answers() {
            return self.refuse(
                request,
                peer_addr,
                format!("policy {policy} does not answer OE"),
            );
        }
        let name = if null_auth {
            if !policy.options.allow_anonymous {
                let why = format!("AUTH NULL refused: policy {policy} requires authentication");
                return self.refuse(request, peer_addr, why);
            }
            if !self.config.refuse_anonymous_with_key {
                return self.answer(request, peer_addr, PeerAnswer::Anonymous);
            }
            reverse_name(peer_addr)
        } else {
            match lookup_name(peer_id) {
                Ok(name) => name,
                Err(why) => return self.refuse(request, peer_addr, why),
            }
        };
        if self.responders.contains_key(&request) {
            return; // already waiting for this one
        }
        if let Some(result) = self.prefetched.take(now, &name) {
            self.counters.prefetch_hits += 1;
            self.responders.insert(
                request,
                Responder {
                    peer_addr,
                    null_auth,
                },
            );
            return self.responder_dns(request, &name, DnsAnswer::Result(&result));
        }
        if self
            .lookups
            .get(&name)
            .is_some_and(|l| l.outbound.is_none() && l.responders.is_empty())
        {
            // Joins a prefetch still in flight (a lookup nobody waited for);
            // joining an outbound lookup of the same name is no prefetch hit.
            self.counters.prefetch_hits += 1;
        }
        if self.responders.len() >= self.config.max_responder_pending
            || (!self.lookups.contains_key(&name) && !self.bucket.take(now))
        {
            self.counters.responder_overload += 1;
            return self.refuse(
                request,
                peer_addr,
                "overloaded: too many lookups".to_owned(),
            );
        }
        self.responders.insert(
            request,
            Responder {
                peer_addr,
                null_auth,
            },
        );
        self.start_lookup(now, peer_addr, name, Some(request));
    }

    /// The engine dropped `request` (half-open timeout, peer gone): stop waiting for it.
    pub fn cancel_request(&mut self, request: u64) {
        if self.responders.remove(&request).is_none() {
            return;
        }
        let emptied: Option<DomainName> = self.lookups.iter_mut().find_map(|(name, l)| {
            let before = l.responders.len();
            l.responders.retain(|r| *r != request);
            let removed = l.responders.len() != before;
            (removed && l.responders.is_empty() && l.outbound.is_none()).then(|| name.clone())
        });
        if let Some(name) = emptied
            && let Some(lookup) = self.lookups.remove(&name)
        {
            self.cancel_timer(lookup.timer);
            self.actions.push_back(Action::CancelLookup { name });
        }
    }

    pub(super) fn responder_dns(&mut self, request: u64, name: &DomainName, a: DnsAnswer<'_>) {
        let Some(r) = self.responders.remove(&request) else {
            return;
        };
        let answer = if r.null_auth {
            match a {
                DnsAnswer::Result(DnsResult::Records { records, .. })
                    if !responder_keys(records).is_empty() =>
                {
                    PeerAnswer::Refuse {
                        reason: format!(
                            "{} used AUTH NULL but publishes an IPSECKEY at {name}",
                            r.peer_addr
                        ),
                    }
                }
                _ => PeerAnswer::Anonymous,
            }
        } else {
            keyed_answer(r.peer_addr, name, a)
        };
        self.answer(request, r.peer_addr, answer);
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

/// Where a signing initiator's key is published: its address's reverse name,
/// or its FQDN.
fn lookup_name(id: &Identity) -> Result<DomainName, String> {
    match id {
        Identity::Ipv4(a) => Ok(reverse_name(IpAddr::V4(*a))),
        Identity::Ipv6(a) => Ok(reverse_name(IpAddr::V6(*a))),
        Identity::Fqdn(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| DomainName::from_ascii(s).ok())
            .ok_or_else(|| {
                format!(
                    "FQDN ID {:?} is not a domain name",
                    String::from_utf8_lossy(bytes)
                )
            }),
        Identity::Null => Err("ID_NULL without AUTH NULL".to_owned()),
        other => Err(format!(
            "ID type {:?} has no published key",
            other.id_type()
        )),
    }
}

fn keyed_answer(peer_addr: IpAddr, name: &DomainName, a: DnsAnswer<'_>) -> PeerAnswer {
    let reason = match a {
        DnsAnswer::Result(DnsResult::Records {
            records,
            dnssec_validated,
            ..
        }) => {
            let keys = responder_keys(records);
            if !keys.is_empty() {
                return PeerAnswer::Ed25519 {
                    keys,
                    dnssec: *dnssec_validated,
                };
            }
            let (_, skipped) = candidates(peer_addr, records);
            format!("{} at {name}", NoKey::Unusable(skipped))
        }
        DnsAnswer::Result(DnsResult::NoRecords { kind, .. }) => {
            format!("no IPSECKEY at {name} ({kind})")
        }
        DnsAnswer::Result(DnsResult::Failed { reason }) => {
            format!("DNS lookup of {name} failed: {reason}")
        }
        DnsAnswer::Timeout(after) => {
            format!("DNS lookup of {name} timed out after {}", human(after))
        }
    };
    PeerAnswer::Refuse { reason }
}

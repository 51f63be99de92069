//! Gateways as initiators (issue 14): which of a peer's proposed source
//! selectors DNS vouches for (design.md, "The trust model": for a gateway,
//! the protected address is the traffic selector, not the outer address).
//!
//! A peer at `P` that signs may propose TSi selectors beyond its own address:
//! the hosts or subnets it is the gateway of. One is vouched for when the
//! IPSECKEY at its reverse name names `P` as gateway:
//!
//! | TSi selector | looked up at | vouches when |
//! |---|---|---|
//! | one host `H` (≠ `P`) | `reverse_name(H)` | a record's gateway is `P` |
//! | a subnet on a label boundary (`10.1.0.0/24`) | its wildcard owner `*.0.1.10.in-addr.arpa.` (the literal name: the wildcard's own records) | a record's gateway is `P` |
//! | a subnet that contains `P` | — (a gateway is not behind itself: refused, counted) | never |
//! | any other range | — | never |
//!
//! The keys of those records go to the engine with the selector
//! ([`crate::ike::endpoint::Endpoint::vouch`]); it widens TSi by a selector
//! only when the peer signed with one of them. At most
//! [`MAX_VOUCHED`] selectors per request, each paid from the inbound
//! lookup budget like the key lookup. A record whose gateway is a name does
//! not vouch here (the A/AAAA lookup it would need is left for later).

use std::net::IpAddr;
use std::time::Instant;

use crate::ike::endpoint::MAX_VOUCHED;
use crate::ike::message::{AddrRange, AddrSelector};
use crate::ike::ts;
use crate::ipseckey::{DomainName, Gateway, reverse_name, wildcard_name};

use super::action::{DnsResult, PeerAnswer};
use super::decision::{DnsAnswer, Machine};
use super::keys::responder_keys;
use super::outcome::human;
use super::responder::Responder;
use super::responder::verdicts::signs_for;

/// One selector of a request waiting for its lookup.
#[derive(Debug)]
pub(super) struct VouchSlot {
    pub(super) selector: AddrSelector,
    pub(super) name: DomainName,
    /// The keys of the records naming the peer as gateway, once in, and
    /// whether that answer was secure.
    pub(super) keys: Option<(Vec<[u8; 32]>, bool)>,
}

/// A selector DNS vouches for, with the keys of the records that do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VouchedFor {
    /// The addresses the peer may send from.
    pub selector: AddrSelector,
    /// The Ed25519 keys of the records that name it as their gateway.
    pub keys: Vec<[u8; 32]>,
}

/// What to look up for the selectors `ts_i` proposed by `peer_addr`, and why
/// any was refused outright.
pub(super) fn slots(peer_addr: IpAddr, ts_i: &[AddrSelector]) -> (Vec<VouchSlot>, Vec<String>) {
    let mut slots: Vec<VouchSlot> = Vec::new();
    let mut refused = Vec::new();
    for sel in ts_i.iter().take(MAX_VOUCHED) {
        let Some((start, len)) = sel.as_prefix() else {
            continue;
        };
        let full = if start.is_ipv4() { 32 } else { 128 };
        let peer = peer_addr.to_canonical();
        let name = if len == full {
            if start.to_canonical() == peer {
                continue; // its own address: the key lookup's business
            }
            reverse_name(start)
        } else {
            // A whole family (a NAT client's TSi) or a short prefix is no
            // reverse zone: nothing to look up.
            let Ok(name) = wildcard_name(start, len) else {
                continue;
            };
            if ts::contains(&covering(sel), &AddrSelector::host(peer)) {
                refused.push(format!(
                    "{start}/{len} contains the gateway {peer_addr} itself: not vouched for"
                ));
                continue;
            }
            name
        };
        if slots.iter().any(|s| s.name == name) {
            continue;
        }
        slots.push(VouchSlot {
            selector: sel.clone(),
            name,
            keys: None,
        });
    }
    (slots, refused)
}

/// How many lookups and refusals [`slots`] makes of `sel` alone.
fn vouch_slots_of(peer_addr: IpAddr, sel: &AddrSelector) -> (usize, usize) {
    let (found, refused) = slots(peer_addr, std::slice::from_ref(sel));
    (found.len(), refused.len())
}

/// Why this host's policy does not let `sel` be a source of OE: an end of
/// its range in a group that does not answer OE (`clear`, `block`).
pub(super) fn refused_by_policy(policy: &super::Policy, sel: &AddrSelector) -> Option<String> {
    let (lo, hi) = ends(sel);
    [lo, hi].into_iter().find_map(|a| {
        let m = policy.lookup(a);
        (!m.group.answers()).then(|| {
            format!(
                "{}: {a} is in policy {m}, which does not answer OE",
                ts::describe(sel)
            )
        })
    })
}

/// The first and last address of `sel`.
fn ends(sel: &AddrSelector) -> (IpAddr, IpAddr) {
    match sel.addrs {
        AddrRange::V4(lo, hi) => (IpAddr::V4(lo), IpAddr::V4(hi)),
        AddrRange::V6(lo, hi) => (IpAddr::V6(lo), IpAddr::V6(hi)),
    }
}

/// `sel`'s addresses with every protocol and port.
fn covering(sel: &AddrSelector) -> AddrSelector {
    AddrSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        addrs: sel.addrs,
    }
}

/// The keys that vouch for `peer_addr` in answer `a` (records whose gateway
/// is that address); with `require_dnssec`, only from a secure answer. The
/// reason when none does, for the log.
pub(super) fn vouching_keys(
    peer_addr: IpAddr,
    name: &DomainName,
    a: DnsAnswer<'_>,
    require_dnssec: bool,
) -> Result<(Vec<[u8; 32]>, bool), String> {
    let peer = peer_addr.to_canonical();
    match a {
        DnsAnswer::Result(DnsResult::Records {
            records, dnssec, ..
        }) => {
            if require_dnssec && !dnssec.is_secure() {
                return Err(format!("{name}: the answer is not DNSSEC-secure"));
            }
            // At the peer's own name, the records that sign for it (its own
            // key); elsewhere, those naming it as their gateway.
            let own = *name == reverse_name(peer_addr);
            let naming: Vec<_> = records
                .iter()
                .filter(|r| match &r.gateway {
                    _ if own => signs_for(r, peer_addr),
                    Gateway::Ipv4(a) => IpAddr::V4(*a) == peer,
                    Gateway::Ipv6(a) => IpAddr::V6(*a).to_canonical() == peer,
                    Gateway::None | Gateway::Name(_) => false,
                })
                .cloned()
                .collect();
            let keys = responder_keys(&naming);
            if keys.is_empty() && own {
                Err(format!("{name}: no usable IPSECKEY of {peer_addr} itself"))
            } else if keys.is_empty() {
                Err(format!(
                    "{name}: no usable IPSECKEY names {peer_addr} as gateway"
                ))
            } else {
                Ok((keys, dnssec.is_secure()))
            }
        }
        DnsAnswer::Result(DnsResult::NoRecords { kind, .. }) => {
            Err(format!("{name}: no IPSECKEY ({kind})"))
        }
        DnsAnswer::Result(DnsResult::Failed { reason }) => {
            Err(format!("{name}: the lookup failed: {reason}"))
        }
        DnsAnswer::Timeout(after) => Err(format!(
            "{name}: the lookup timed out after {}",
            human(after)
        )),
    }
}

impl Machine {
    /// Initiator (the engine's `VouchResponderTs`; pass `sa.0` as
    /// `request`): the gateway at `peer_addr` answered `ts_r` beyond the
    /// destination. Each is looked up as a responder looks up a gateway's
    /// TSi, and the gateway's own address, when answered, at its own name
    /// (vouched for by the keys there that sign for it); the answer comes as [`Action::AnswerPeer`](super::Action::AnswerPeer)
    /// with the keys empty and the selectors DNS vouches for, once every
    /// lookup is in. These lookups are not paid from the inbound budget:
    /// this host started the exchange, at most [`MAX_VOUCHED`] per IKE SA.
    pub fn on_responder_ts(
        &mut self,
        now: Instant,
        request: u64,
        peer_addr: IpAddr,
        ts_r: &[AddrSelector],
    ) {
        if self.responders.contains_key(&request) {
            return;
        }
        let (mut slots, mut not_vouched) = slots(peer_addr, ts_r);
        // What has no name to look up (not on a label boundary), unlike a
        // responder's TSi, is worth a line: the peer answered it.
        for sel in ts_r.iter().take(MAX_VOUCHED) {
            let own =
                sel.single_address().map(|a| a.to_canonical()) == Some(peer_addr.to_canonical());
            let (found, refused) = vouch_slots_of(peer_addr, sel);
            if !own && found == 0 && refused == 0 {
                not_vouched.push(format!(
                    "{}: no reverse zone of its own (not on a label boundary)",
                    ts::describe(sel)
                ));
            }
        }
        self.retain_answering(&mut slots, &mut not_vouched);
        // The gateway's own address, answered too: vouched for as it would
        // be were it the destination, by the keys at its own reverse name
        // that sign for it (no gateway, or naming itself).
        let peer_host = AddrSelector::host(peer_addr);
        if ts_r.iter().any(|s| ts::contains(s, &peer_host)) {
            match refused_by_policy(&self.policy, &peer_host) {
                Some(why) => not_vouched.push(why),
                None => slots.push(VouchSlot {
                    selector: peer_host,
                    name: reverse_name(peer_addr),
                    keys: None,
                }),
            }
        }
        self.counters.not_vouched += not_vouched.len() as u64;
        let require_dnssec = slots.iter().any(|s| {
            let (lo, hi) = ends(&s.selector);
            [lo, hi]
                .into_iter()
                .any(|a| self.policy.lookup(a).options.require_dnssec)
        });
        let key = PeerAnswer::Ed25519 {
            keys: Vec::new(),
            dnssec: true,
            vouched: Vec::new(),
            not_vouched: Vec::new(),
        };
        self.responders.insert(
            request,
            Responder {
                peer_addr,
                null_auth: false,
                anonymous_on_failure: false,
                require_dnssec,
                key: Some(key),
                fqdn: None,
                vouch: Vec::new(),
                not_vouched,
            },
        );
        self.look_up_slots(now, request, peer_addr, slots);
        self.maybe_answer(request);
    }

    /// Starts (or joins) the lookup of each of `slots` for `request`, whose
    /// answer then waits for them.
    pub(super) fn look_up_slots(
        &mut self,
        now: Instant,
        request: u64,
        peer_addr: IpAddr,
        slots: Vec<VouchSlot>,
    ) {
        for slot in &slots {
            let start = slot.selector.as_prefix().map_or(peer_addr, |(a, _)| a);
            self.start_lookup(now, start, slot.name.clone(), Some(request));
        }
        if let Some(r) = self.responders.get_mut(&request) {
            r.vouch = slots;
        }
    }

    /// Keeps the slots whose selectors this host's policy does OE with
    /// ([`refused_by_policy`]); says why of the others.
    pub(super) fn retain_answering(
        &self,
        slots: &mut Vec<VouchSlot>,
        not_vouched: &mut Vec<String>,
    ) {
        slots.retain(|s| match refused_by_policy(&self.policy, &s.selector) {
            Some(why) => {
                not_vouched.push(why);
                false
            }
            None => true,
        });
    }

    /// A lookup answer for `name` that request `request`'s selectors wait
    /// for; whether it was one.
    pub(super) fn vouch_dns(&mut self, request: u64, name: &DomainName, a: DnsAnswer<'_>) -> bool {
        let Some(r) = self.responders.get_mut(&request) else {
            return false;
        };
        let (peer_addr, require_dnssec) = (r.peer_addr, r.require_dnssec);
        let Some(slot) = r
            .vouch
            .iter_mut()
            .find(|s| s.name == *name && s.keys.is_none())
        else {
            return false;
        };
        slot.keys = Some(match vouching_keys(peer_addr, name, a, require_dnssec) {
            Ok(found) => found,
            Err(why) => {
                r.not_vouched.push(why);
                (Vec::new(), false)
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_is_looked_up_for_which_selector() {
        let gw = ip("192.0.2.31");
        let ts = [
            AddrSelector::host(gw),
            AddrSelector::subnet(ip("10.1.0.0"), 24),
            AddrSelector::host(ip("10.1.5.7")),
            AddrSelector::any_of(ip("0.0.0.0")),
            AddrSelector::subnet(ip("192.0.2.0"), 24),
        ];
        let (found, refused) = slots(gw, &ts);
        let names: Vec<String> = found.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(names, ["*.0.1.10.in-addr.arpa.", "7.5.1.10.in-addr.arpa."]);
        // The fifth is beyond MAX_VOUCHED; the same subnet earlier is refused.
        let (_, refused2) = slots(gw, &[AddrSelector::subnet(ip("192.0.2.0"), 24)]);
        assert!(refused.is_empty());
        assert_eq!(refused2.len(), 1);
        assert!(refused2[0].contains("contains the gateway 192.0.2.31 itself"));
    }
}

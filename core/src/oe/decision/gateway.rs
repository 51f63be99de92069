//! Gateways found by name (issue 14 part 3; RFC 4025 §2.3, gateway type 3):
//! an attempt whose record names its gateway by domain name first looks up
//! the name's address, then starts IKE with that address.
//!
//! - **One family, one lookup.** The A record for an IPv4 destination, the
//!   AAAA record for an IPv6 one (this host reaches the destination in that
//!   family, so it has an address of it), through the A/AAAA lookups the
//!   machine already makes for FQDN identities ([`Action::LookupAddress`],
//!   shared by everyone waiting for the same name). At most one lookup per
//!   candidate, so per destination at most as many as it has candidates; a
//!   new lookup costs a token of the outbound lookup budget.
//! - **Inside the IKE deadline.** The lookup runs in the attempt's share of
//!   the destination's IKE timeout: the attempt's timer keeps running, and
//!   IKE with the address gets what is left of the share.
//! - **DNSSEC as for the key.** The attempt is "authenticated by DNSSEC" only
//!   if the key's answer and the address's answer are both secure; its
//!   status is the weaker of the two. A bogus address answer is never used,
//!   and under `require-dnssec` neither is one that is not validated.
//! - **Failure is the next candidate.** A name that gives no usable address
//!   (NXDOMAIN, NODATA, a failure, a timeout, bogus) ends the attempt with
//!   the reason (`gateway gw.example. has no address: NXDOMAIN`), counted
//!   as an unusable record, and the next candidate is tried.
//!
//! The trust rule is the engine's, unchanged: the key is the one from the
//! destination's record, and the gateway's IKE identity must bind to the
//! address IKE went to ([`crate::trust::bind`]).

use std::net::IpAddr;
use std::time::Instant;

use super::{Machine, Pending, Phase};
use crate::ipseckey::DomainName;
use crate::oe::action::{Action, AddressResult, DnsFailure, Dnssec};
use crate::oe::keys::Peer;
use crate::oe::outcome::{AttemptFailure, AttemptPeer, human};
use crate::oe::responder::Waiter;

/// The DNSSEC status of an attempt through a named gateway: the key's, unless
/// the address answer was not validated where the key's was secure. The
/// resolver reports the address answer only as validated or not, so a secure
/// key with an unvalidated address is recorded as [`Dnssec::Unvalidated`].
fn weaker(key: Dnssec, address_validated: bool) -> Dnssec {
    if key.is_secure() && !address_validated {
        Dnssec::Unvalidated
    } else {
        key
    }
}

impl Machine {
    /// Starts the current attempt of pending `dst`: IKE at once with a peer
    /// known by address, else the lookup of its gateway's name. `Err`: the
    /// attempt could not start (the lookup budget is spent).
    pub(super) fn begin_attempt(
        &mut self,
        now: Instant,
        dst: IpAddr,
    ) -> Result<(), AttemptFailure> {
        let Some(Pending {
            phase: Phase::Ike(ike),
            ..
        }) = self.pending.get_mut(&dst)
        else {
            return Ok(());
        };
        let name = match &ike.current.peer {
            Peer::Addr(peer_addr) => {
                let peer_addr = *peer_addr;
                ike.peer_addr = Some(peer_addr);
                ike.attempt_dnssec = ike.dnssec;
                self.actions.push_back(Action::StartIke {
                    dst,
                    peer_addr,
                    key: ike.current.key.clone(),
                    authenticated_by_dnssec: ike.dnssec.is_secure() && ike.key_in_dns,
                    deadline: ike.attempt_deadline,
                });
                return Ok(());
            }
            Peer::Name(name) => name.clone(),
        };
        ike.peer_addr = None;
        let joins = self
            .address_lookups
            .contains_key(&(name.clone(), dst.is_ipv4()));
        if !joins && !self.bucket.take(now) {
            // Not `lookup_rate_limited`: that counts dropped packets.
            self.counters.unusable_records += 1;
            return Err(unresolved(
                name,
                "was not looked up: the DNS lookup rate limit",
            ));
        }
        self.start_address_lookup(now, name, Waiter::Gateway(dst));
        Ok(())
    }

    /// The answer to the lookup of gateway `name` for pending `dst` (from
    /// `on_address_result`): IKE with its address, or the next candidate.
    pub(in crate::oe) fn gateway_address(
        &mut self,
        now: Instant,
        dst: IpAddr,
        name: &DomainName,
        result: &AddressResult,
    ) {
        let require_dnssec = self.requires_dnssec(dst);
        let Some(Pending {
            phase: Phase::Ike(ike),
            ..
        }) = self.pending.get_mut(&dst)
        else {
            self.counters.stale_results += 1;
            return;
        };
        if ike.peer_addr.is_some() || ike.current.peer != Peer::Name(name.clone()) {
            self.counters.stale_results += 1;
            return;
        }
        let why = match result {
            AddressResult::Addresses {
                addrs,
                dnssec_validated,
            } => {
                let family = addrs.iter().find(|a| a.is_ipv4() == dst.is_ipv4());
                match family {
                    None => format!("has no {} address", family_name(dst)),
                    Some(addr) if require_dnssec && !dnssec_validated => format!(
                        "has an address ({addr}) that is not DNSSEC-validated, and the \
                         group requires DNSSEC"
                    ),
                    Some(&peer_addr) => {
                        let dnssec = weaker(ike.dnssec, *dnssec_validated);
                        ike.peer_addr = Some(peer_addr);
                        ike.attempt_dnssec = dnssec;
                        self.actions.push_back(Action::StartIke {
                            dst,
                            peer_addr,
                            key: ike.current.key.clone(),
                            authenticated_by_dnssec: dnssec.is_secure() && ike.key_in_dns,
                            deadline: ike.attempt_deadline,
                        });
                        return;
                    }
                }
            }
            AddressResult::NoRecords { kind } => format!("has no address: {kind}"),
            // A bogus answer is never an address (design.md, the trust model).
            AddressResult::Failed {
                reason: reason @ DnsFailure::Bogus(_),
            } => format!("has no usable address: {reason}; not used"),
            AddressResult::Failed { reason } => {
                format!("has no address: the lookup failed: {reason}")
            }
        };
        self.counters.unusable_records += 1;
        self.next_attempt(now, dst, unresolved(name.clone(), &why));
    }

    /// The lookup of gateway `name` for pending `dst` timed out (its own DNS
    /// deadline).
    pub(in crate::oe) fn gateway_lookup_timeout(
        &mut self,
        now: Instant,
        dst: IpAddr,
        name: &DomainName,
    ) {
        match self.pending.get(&dst).map(|p| &p.phase) {
            Some(Phase::Ike(ike))
                if ike.peer_addr.is_none() && ike.current.peer == Peer::Name(name.clone()) => {}
            _ => return,
        }
        self.counters.unusable_records += 1;
        let why = format!(
            "has no address: the lookup timed out after {}",
            human(self.config.dns_timeout)
        );
        self.next_attempt(now, dst, unresolved(name.clone(), &why));
    }

    /// The attempt's share of the IKE timeout ran out while its gateway's name
    /// was still being resolved (from `handle_timeout`).
    pub(super) fn gateway_unresolved_in_time(&mut self, now: Instant, dst: IpAddr) {
        let Some(Pending {
            phase: Phase::Ike(ike),
            ..
        }) = self.pending.get(&dst)
        else {
            return;
        };
        let why = "has no address within the attempt's share of the IKE timeout";
        let failure = ike.failure(Some(why.to_owned()));
        self.counters.unusable_records += 1;
        self.next_attempt(now, dst, failure);
    }
}

/// An attempt that ended before IKE: its gateway's name gave no address.
fn unresolved(name: DomainName, why: &str) -> AttemptFailure {
    AttemptFailure {
        peer: AttemptPeer::Named { name, addr: None },
        reason: Some(why.to_owned()),
    }
}

fn family_name(dst: IpAddr) -> &'static str {
    if dst.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weaker_status_is_recorded() {
        assert_eq!(weaker(Dnssec::Secure, true), Dnssec::Secure);
        assert_eq!(weaker(Dnssec::Secure, false), Dnssec::Unvalidated);
        assert_eq!(weaker(Dnssec::Insecure, true), Dnssec::Insecure);
        assert_eq!(weaker(Dnssec::Insecure, false), Dnssec::Insecure);
        assert_eq!(weaker(Dnssec::Unvalidated, true), Dnssec::Unvalidated);
    }
}

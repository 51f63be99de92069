//! The responder's verdicts on a peer from the lookup at its address: the
//! keys that may sign for it, or why it is anonymous or refused.

use std::net::IpAddr;

use super::Responder;
use crate::ipseckey::DomainName;
use crate::oe::action::{DnsResult, PeerAnswer};
use crate::oe::decision::DnsAnswer;
use crate::oe::keys::{candidates, responder_keys};
use crate::oe::outcome::{NoKey, human};

/// The verdict on an AUTH NULL initiator from the lookup at its address: a
/// usable key there means it may not be anonymous; no key means it may; no
/// answer means nobody knows, and only a group that neither requires
/// authentication nor fails closed takes the chance (and says so).
pub(super) fn anonymous_answer(r: &Responder, name: &DomainName, a: DnsAnswer<'_>) -> PeerAnswer {
    let failure = match a {
        DnsAnswer::Result(DnsResult::Records { records, .. }) => {
            if responder_keys(records).is_empty() {
                return PeerAnswer::Anonymous {
                    lookup_failed: false,
                };
            }
            return PeerAnswer::Refuse {
                reason: format!(
                    "{} used AUTH NULL but publishes an IPSECKEY at {name}",
                    r.peer_addr
                ),
            };
        }
        DnsAnswer::Result(DnsResult::NoRecords { .. }) => {
            return PeerAnswer::Anonymous {
                lookup_failed: false,
            };
        }
        DnsAnswer::Result(DnsResult::Failed { reason }) => format!("failed: {reason}"),
        DnsAnswer::Timeout(after) => format!("timed out after {}", human(after)),
    };
    if r.anonymous_on_failure {
        PeerAnswer::Anonymous {
            lookup_failed: true,
        }
    } else {
        PeerAnswer::Refuse {
            reason: format!(
                "AUTH NULL from {} refused: the lookup of its key at {name} {failure}, and an \
                 anonymous peer may not stand in for one that publishes a key where \
                 authentication is required or failure is closed",
                r.peer_addr
            ),
        }
    }
}

pub(super) fn keyed_answer(
    peer_addr: IpAddr,
    name: &DomainName,
    a: DnsAnswer<'_>,
    require_dnssec: bool,
) -> PeerAnswer {
    let reason = match a {
        DnsAnswer::Result(DnsResult::Records {
            records, dnssec, ..
        }) => {
            // A record naming a gateway carries the gateway's key, for IKE
            // from the gateway: it does not sign for the host itself (a
            // gateway, on the path, could otherwise pose as a host behind
            // it end to end). Gateway IKE is vouched for by its selectors
            // (`oe::vouch`).
            let own: Vec<_> = records
                .iter()
                .filter(|r| signs_for(r, peer_addr))
                .cloned()
                .collect();
            let keys = responder_keys(&own);
            if !keys.is_empty() && require_dnssec && !dnssec.is_secure() {
                format!("{} at {name}", NoKey::NotSecure(*dnssec))
            } else if !keys.is_empty() {
                return PeerAnswer::Ed25519 {
                    keys,
                    dnssec: dnssec.is_secure(),
                    vouched: Vec::new(),
                    not_vouched: Vec::new(),
                };
            } else if own.len() < records.len() && responder_keys(records).len() > keys.len() {
                format!(
                    "the IPSECKEY at {name} names a gateway: its key signs for \
                     IKE from that gateway, not from {peer_addr} itself"
                )
            } else {
                let (_, skipped) = candidates(peer_addr, records);
                format!("{} at {name}", NoKey::Unusable(skipped))
            }
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

/// Whether `record`'s key may sign for IKE from `peer_addr` itself: it names
/// no gateway (the host's own key), or names that very address.
pub(in crate::oe) fn signs_for(record: &crate::ipseckey::Ipseckey, peer_addr: IpAddr) -> bool {
    use crate::ipseckey::Gateway;
    let peer = peer_addr.to_canonical();
    match &record.gateway {
        Gateway::None => true,
        Gateway::Ipv4(a) => IpAddr::V4(*a) == peer,
        Gateway::Ipv6(a) => IpAddr::V6(*a).to_canonical() == peer,
        Gateway::Name(_) => false,
    }
}

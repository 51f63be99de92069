//! Choosing what to try from IPSECKEY records (RFC 4025 §1.2, §2): usable
//! records only, each aimed at its gateway or, with no gateway, at the
//! destination itself; records of the preferred kind first (with or without a
//! gateway, see [`candidates_for`]), lowest precedence first within each kind.

use std::net::IpAddr;

use crate::crypto::ed25519::Ed25519PublicKey;
use crate::ike::endpoint::MAX_PEER_KEYS;
use crate::ipseckey::{Algorithm, DomainName, Gateway, Ipseckey};

use super::action::PeerKey;
use super::outcome::{Unusable, UnusableWhy};

/// Whom an attempt goes to, as the record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The destination itself, or a gateway given by address (types 0, 1, 2).
    Addr(IpAddr),
    /// A gateway given by name (type 3): its A or AAAA record is looked up
    /// when its turn comes (`decision/gateway.rs`).
    Name(DomainName),
}

/// One IKE attempt to make: one peer, every usable key published for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) precedence: u8,
    pub(crate) peer: Peer,
    pub(crate) key: PeerKey,
}

impl Candidate {
    /// An attempt with a peer known by address.
    pub(crate) fn at(peer_addr: IpAddr, key: PeerKey) -> Self {
        Self {
            precedence: 0,
            peer: Peer::Addr(peer_addr),
            key,
        }
    }
}

/// Why `record` cannot be used, or its Ed25519 key: a point that is not on
/// the curve, of small order or not canonically encoded is refused here, so
/// the next record is tried instead of failing the attempt.
fn usable_key(record: &Ipseckey) -> Result<[u8; 32], UnusableWhy> {
    if record.algorithm != Algorithm::EDDSA {
        return Err(UnusableWhy::Algorithm(record.algorithm));
    }
    let key = record
        .ed25519_key()
        .ok_or(UnusableWhy::KeyLength(record.public_key.len()))?;
    Ed25519PublicKey::from_slice(&key).map_err(UnusableWhy::BadKey)?;
    Ok(key)
}

fn unusable(record: &Ipseckey, why: UnusableWhy) -> Unusable {
    Unusable {
        precedence: record.precedence,
        gateway: record.gateway.clone(),
        why,
    }
}

/// Which records an agent tries first (issue 14, "nested"): a host's own
/// traffic goes to the end host, a gateway's forwarded traffic to the far
/// gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefer {
    /// A host (`protects` empty): records without a gateway first.
    Direct,
    /// A gateway (`protects` non-empty): records naming a gateway first.
    Gateway,
}

impl Prefer {
    /// The preference of an agent that protects `protects`.
    pub(crate) fn of(protects: &[super::Cidr]) -> Self {
        if protects.is_empty() {
            Prefer::Direct
        } else {
            Prefer::Gateway
        }
    }

    /// 0 for a record of the preferred kind, 1 for the other.
    fn rank(self, record: &Ipseckey) -> u8 {
        let via_gateway = record.gateway != Gateway::None;
        u8::from(via_gateway != (self == Prefer::Gateway))
    }
}

/// The attempts for `dst`: one per IKE peer (the gateway, by address or by
/// name, or `dst` itself), with every usable key of that peer's records in
/// order, without duplicates, at most [`MAX_PEER_KEYS`] (a peer in a key
/// rollover publishes two: either may sign). Also the records that were
/// skipped, with the reason.
///
/// The order: records of the kind `prefer` names first, then the others;
/// within each kind lowest precedence first (records of equal precedence keep
/// their order; RFC 4025 §2.2 allows any).
///
/// - A host tries records without a gateway first: its own traffic to a
///   destination that runs its own agent goes host to host, even when the
///   destination also publishes (at any precedence) a record naming its
///   site's gateway; the gateway record is the fallback.
/// - A gateway tries records naming a gateway first: traffic it forwards for
///   its protected subnets goes gateway to gateway, so the WAN sees only
///   gateway ESP. Issue 14 says a gateway uses *only* such records; we prefer
///   them instead, and fall back to a destination's own key: a lone host that
///   publishes only its own key is still reached privately (the gateway
///   tunnels its subnets to that host) rather than in clear. Where both
///   exist the gateway record always wins, so the nested scenario behaves as
///   the issue asks.
pub(crate) fn candidates_for(
    dst: IpAddr,
    records: &[Ipseckey],
    prefer: Prefer,
) -> (Vec<Candidate>, Vec<Unusable>) {
    let mut sorted: Vec<&Ipseckey> = records.iter().collect();
    sorted.sort_by_key(|r| (prefer.rank(r), r.precedence));
    let mut out: Vec<Candidate> = Vec::with_capacity(records.len().min(MAX_PEER_KEYS));
    let mut skipped = Vec::new();
    for record in sorted {
        let key = match usable_key(record) {
            Ok(k) => k,
            Err(why) => {
                skipped.push(unusable(record, why));
                continue;
            }
        };
        let peer = match &record.gateway {
            Gateway::None => Peer::Addr(dst),
            Gateway::Ipv4(a) => Peer::Addr(IpAddr::V4(*a)),
            Gateway::Ipv6(a) => Peer::Addr(IpAddr::V6(*a)),
            Gateway::Name(n) => Peer::Name(n.clone()),
        };
        match out.iter_mut().find(|c| c.peer == peer) {
            Some(Candidate {
                key: PeerKey::Ed25519(keys),
                ..
            }) => {
                if !keys.contains(&key) && keys.len() < MAX_PEER_KEYS {
                    keys.push(key);
                }
            }
            Some(_) => {}
            None => out.push(Candidate {
                precedence: record.precedence,
                peer,
                key: PeerKey::Ed25519(vec![key]),
            }),
        }
    }
    (out, skipped)
}

/// [`candidates_for`] as a host orders them. The outbound decision passes
/// its own preference to `candidates_for`; this is for the responder, which
/// wants only the skipped records.
pub(crate) fn candidates(dst: IpAddr, records: &[Ipseckey]) -> (Vec<Candidate>, Vec<Unusable>) {
    candidates_for(dst, records, Prefer::Direct)
}

/// The usable Ed25519 keys, lowest precedence first, without duplicates, at
/// most [`MAX_PEER_KEYS`] (for checking an initiator's signature: the gateway
/// does not matter there).
pub(crate) fn responder_keys(records: &[Ipseckey]) -> Vec<[u8; 32]> {
    let mut usable: Vec<(u8, [u8; 32])> = records
        .iter()
        .filter_map(|r| usable_key(r).ok().map(|k| (r.precedence, k)))
        .collect();
    usable.sort_by_key(|(p, _)| *p);
    let mut keys: Vec<[u8; 32]> = Vec::with_capacity(usable.len().min(MAX_PEER_KEYS));
    for (_, k) in usable {
        if !keys.contains(&k) && keys.len() < MAX_PEER_KEYS {
            keys.push(k);
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn pk(n: u8) -> [u8; 32] {
        crate::crypto::ed25519::Ed25519SigningKey::from_seed(&[n; 32])
            .public_key()
            .to_bytes()
    }

    fn rec(precedence: u8, gateway: Gateway, n: u8) -> Ipseckey {
        Ipseckey::ed25519(precedence, gateway, pk(n))
    }

    fn peers(found: &[Candidate]) -> Vec<(u8, Peer)> {
        found
            .iter()
            .map(|c| (c.precedence, c.peer.clone()))
            .collect()
    }

    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 5));
    const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// The nested scenario (issue 14 part 6) and its variants: the
    /// destination's own key and a record naming its gateway, in either
    /// precedence order, plus a second gateway record.
    fn nested() -> Vec<Ipseckey> {
        let name = DomainName::from_ascii("gw.example.").unwrap();
        vec![
            rec(10, Gateway::Ipv4(GW), 2),
            rec(5, Gateway::None, 1),
            rec(3, Gateway::Name(name), 3),
        ]
    }

    #[test]
    fn a_host_tries_records_without_a_gateway_first() {
        let (found, skipped) = candidates_for(DST, &nested(), Prefer::Direct);
        assert!(skipped.is_empty());
        let name = DomainName::from_ascii("gw.example.").unwrap();
        assert_eq!(
            peers(&found),
            vec![
                (5, Peer::Addr(DST)),
                (3, Peer::Name(name)),
                (10, Peer::Addr(IpAddr::V4(GW))),
            ]
        );
        assert_eq!(found[0].key, PeerKey::Ed25519(vec![pk(1)]));
    }

    #[test]
    fn a_gateway_tries_records_with_a_gateway_first_and_falls_back_to_the_host() {
        let (found, _) = candidates_for(DST, &nested(), Prefer::Gateway);
        let name = DomainName::from_ascii("gw.example.").unwrap();
        assert_eq!(
            peers(&found),
            vec![
                (3, Peer::Name(name)),
                (10, Peer::Addr(IpAddr::V4(GW))),
                (5, Peer::Addr(DST)),
            ]
        );
        // A lone host publishing only its own key is still a candidate.
        let lone = [rec(10, Gateway::None, 1)];
        let (found, _) = candidates_for(DST, &lone, Prefer::Gateway);
        assert_eq!(peers(&found), vec![(10, Peer::Addr(DST))]);
    }

    #[test]
    fn the_preference_follows_protects() {
        assert_eq!(Prefer::of(&[]), Prefer::Direct);
        let subnet: super::super::Cidr = "10.1.0.0/24".parse().unwrap();
        assert_eq!(Prefer::of(&[subnet]), Prefer::Gateway);
    }

    #[test]
    fn records_naming_one_gateway_name_are_one_candidate_with_both_keys() {
        let name = DomainName::from_ascii("gw.example.").unwrap();
        let upper = DomainName::from_ascii("GW.Example.").unwrap();
        let records = [
            rec(20, Gateway::Name(name.clone()), 1),
            rec(10, Gateway::Name(upper), 2),
        ];
        let (found, _) = candidates(DST, &records);
        let [c] = found.as_slice() else {
            panic!("{found:?}")
        };
        assert_eq!(c.precedence, 10);
        assert_eq!(c.key, PeerKey::Ed25519(vec![pk(2), pk(1)]));
    }
}

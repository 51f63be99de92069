//! Choosing what to try from IPSECKEY records (RFC 4025 §1.2, §2): usable
//! records only, lowest precedence first, each aimed at its gateway or, with
//! no gateway, at the destination itself.

use std::net::IpAddr;

use crate::crypto::ed25519::Ed25519PublicKey;
use crate::ike::endpoint::MAX_PEER_KEYS;
use crate::ipseckey::{Algorithm, Gateway, Ipseckey};

use super::action::PeerKey;
use super::outcome::{Unusable, UnusableWhy};

/// One IKE attempt to make: one peer, every usable key published for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) precedence: u8,
    pub(crate) peer_addr: IpAddr,
    pub(crate) key: PeerKey,
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

/// The attempts for `dst`, lowest precedence first (records of equal precedence
/// keep their order; RFC 4025 §2.2 allows any): one per IKE peer (the gateway,
/// or `dst` itself), with every usable key of that peer's records in
/// precedence order, without duplicates, at most [`MAX_PEER_KEYS`] (a peer in
/// a key rollover publishes two: either may sign). Also the records that were
/// skipped, with the reason.
pub(crate) fn candidates(dst: IpAddr, records: &[Ipseckey]) -> (Vec<Candidate>, Vec<Unusable>) {
    let mut sorted: Vec<&Ipseckey> = records.iter().collect();
    sorted.sort_by_key(|r| r.precedence);
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
        let peer_addr = match &record.gateway {
            Gateway::None => dst,
            Gateway::Ipv4(a) => IpAddr::V4(*a),
            Gateway::Ipv6(a) => IpAddr::V6(*a),
            Gateway::Name(n) => {
                skipped.push(unusable(record, UnusableWhy::NameGateway(n.clone())));
                continue;
            }
        };
        match out.iter_mut().find(|c| c.peer_addr == peer_addr) {
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
                peer_addr,
                key: PeerKey::Ed25519(vec![key]),
            }),
        }
    }
    (out, skipped)
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

//! What an UPDATE should change, decided from the records the server holds
//! now. Pure: no I/O, so every decision is unit-tested.
//!
//! A plan touches only the IPSECKEY RRset at one name, and within it only
//! records that carry one of *our* keys; other keys, records that do not
//! decode, and other types at the name are left alone. Its prerequisite is the
//! RRset exactly as read (RFC 2136 §2.4.2, "RRset exists (value dependent)"),
//! or "RRset does not exist" (§2.4.3) when there was none, so a change made by
//! someone else between our read and our UPDATE makes the server refuse the
//! whole UPDATE instead of us clobbering it.

use oemesh_core::ipseckey::{Gateway, Ipseckey};

/// One record of the RRset as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// The RDATA bytes exactly as served (used for the prerequisite and deletes).
    pub rdata: Vec<u8>,
    /// The decoded RDATA, or `None` when it does not decode (left untouched).
    pub parsed: Option<Ipseckey>,
}

impl Current {
    /// A record from its RDATA bytes.
    pub fn from_rdata(rdata: Vec<u8>) -> Self {
        let parsed = Ipseckey::parse_wire(&rdata).ok();
        Self { rdata, parsed }
    }

    /// True when this record publishes `key` (Ed25519), whatever its precedence or gateway.
    pub fn carries(&self, key: &[u8; 32]) -> bool {
        self.parsed
            .as_ref()
            .and_then(Ipseckey::ed25519_key)
            .is_some_and(|k| &k == key)
    }
}

/// The IPSECKEY RRset at the name as read before the UPDATE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RrSet {
    /// The RRset's TTL (`None` when there are no records).
    pub ttl: Option<u32>,
    /// Its records.
    pub records: Vec<Current>,
}

/// The changes one UPDATE makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The RRset the UPDATE requires (exactly; empty = must not exist).
    pub prerequisite: Vec<Vec<u8>>,
    /// RDATA to delete (RFC 2136 §2.5.4, class NONE).
    pub delete: Vec<Vec<u8>>,
    /// Records to add (§2.5.1).
    pub add: Vec<Ipseckey>,
    /// TTL of the added records.
    pub ttl: u32,
}

impl Plan {
    /// True when the UPDATE would change nothing.
    pub fn is_noop(&self, current: &RrSet) -> bool {
        let added_all_present = self.add.iter().all(|a| {
            let mut wire = Vec::new();
            a.emit_wire(&mut wire);
            current.records.iter().any(|c| c.rdata == wire) && self.delete.contains(&wire)
        });
        let deletes_only_readded = self.delete.iter().all(|d| {
            self.add.iter().any(|a| {
                let mut wire = Vec::new();
                a.emit_wire(&mut wire);
                &wire == d
            })
        });
        added_all_present
            && deletes_only_readded
            && (self.add.is_empty() || current.ttl == Some(self.ttl))
    }
}

/// Why a rollover step cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// `rotate` needs the old key to be published.
    #[error("the old key is not published at {name}; use 'dnskeys publish' for a first key")]
    OldKeyMissing {
        /// the owner name
        name: String,
    },
    /// `rotate --finish` needs the new key to be published.
    #[error("the new key is not published at {name}; run 'dnskeys rotate' without --finish first")]
    NewKeyMissing {
        /// the owner name
        name: String,
    },
    /// The old key already has precedence 255: none is left that is less preferred.
    #[error(
        "the old key has precedence 255, so no less preferred value is left for the new key; \
             republish the old key with a lower --precedence first"
    )]
    NoPrecedenceLeft,
    /// Old and new are the same key.
    #[error("--old and --new hold the same key")]
    SameKey,
    /// `rotate --finish` before caches may have dropped the RRset as it was
    /// before step 1 (see [`crate::rollover`]).
    #[error(
        "too early to finish the rollover: step 1 ran at {step1}, and resolvers may serve \
         the records from before it (without the new key) until {finish_after}, \
         {remaining_s} s from now; run --finish then, or add --force if no cache can hold them"
    )]
    TooEarly {
        /// when step 1 ran (UTC)
        step1: String,
        /// when `--finish` may run (UTC)
        finish_after: String,
        /// seconds until then
        remaining_s: u64,
    },
    /// `rotate --finish` without a record of when step 1 ran.
    #[error(
        "no record of when step 1 ran: {path} is written by 'dnskeys rotate' (without \
         --finish) beside the --new key; run that step again here (it changes nothing in DNS \
         when done already, and says how long to wait), or add --force if it ran at least \
         the TTL ago"
    )]
    NoStep1Record {
        /// where the record was looked for
        path: String,
    },
    /// The record would be a wildcard that no gateway or its own gateway
    /// breaks (`rotate --subnet` keeps the old key's gateway by default).
    #[error("{0}")]
    Gateway(#[from] crate::subnet::GatewayProblem),
}

fn prerequisite(current: &RrSet) -> Vec<Vec<u8>> {
    current.records.iter().map(|c| c.rdata.clone()).collect()
}

fn records_of(current: &RrSet, key: &[u8; 32]) -> Vec<Vec<u8>> {
    current
        .records
        .iter()
        .filter(|c| c.carries(key))
        .map(|c| c.rdata.clone())
        .collect()
}

/// Publishes `record` (whose key is `key`), replacing any record with the same key.
pub fn publish(current: &RrSet, key: &[u8; 32], record: Ipseckey, ttl: u32) -> Plan {
    Plan {
        prerequisite: prerequisite(current),
        delete: records_of(current, key),
        add: vec![record],
        ttl,
    }
}

/// Removes every record carrying `key`.
pub fn remove(current: &RrSet, key: &[u8; 32]) -> Plan {
    Plan {
        prerequisite: prerequisite(current),
        delete: records_of(current, key),
        add: Vec::new(),
        ttl: current.ttl.unwrap_or(0),
    }
}

/// The precedence and gateway the old key is published with (the most preferred of its records).
fn old_record<'a>(current: &'a RrSet, old: &[u8; 32]) -> Option<&'a Ipseckey> {
    current
        .records
        .iter()
        .filter(|c| c.carries(old))
        .filter_map(|c| c.parsed.as_ref())
        .min_by_key(|k| k.precedence)
}

/// Rollover, step 1: publish `new` beside `old`, less preferred than `old`.
///
/// The new key gets the old one's precedence + 10 (at most 255) and, unless
/// `gateway` is given, the old one's gateway. `ttl` defaults to the RRset's.
pub fn rotate_start(
    current: &RrSet,
    name: &str,
    old: &[u8; 32],
    new: &[u8; 32],
    gateway: Option<Gateway>,
    ttl: Option<u32>,
) -> Result<Plan, PlanError> {
    if old == new {
        return Err(PlanError::SameKey);
    }
    let o =
        old_record(current, old).ok_or_else(|| PlanError::OldKeyMissing { name: name.into() })?;
    if o.precedence == u8::MAX {
        return Err(PlanError::NoPrecedenceLeft);
    }
    let precedence = o.precedence.saturating_add(10);
    let gateway = gateway.unwrap_or_else(|| o.gateway.clone());
    let ttl = ttl.or(current.ttl).unwrap_or(crate::record::DEFAULT_TTL);
    Ok(publish(
        current,
        new,
        Ipseckey::ed25519(precedence, gateway, *new),
        ttl,
    ))
}

/// Rollover, step 2: remove `old`, and give `new` the preferred precedence:
/// `precedence` if given, else the one the old key had.
pub fn rotate_finish(
    current: &RrSet,
    name: &str,
    old: &[u8; 32],
    new: &[u8; 32],
    precedence: Option<u8>,
    ttl: Option<u32>,
) -> Result<Plan, PlanError> {
    if old == new {
        return Err(PlanError::SameKey);
    }
    let n = current
        .records
        .iter()
        .filter(|c| c.carries(new))
        .filter_map(|c| c.parsed.as_ref())
        .min_by_key(|k| k.precedence)
        .ok_or_else(|| PlanError::NewKeyMissing { name: name.into() })?;
    let precedence = precedence
        .or_else(|| old_record(current, old).map(|o| o.precedence))
        .unwrap_or(n.precedence);
    let record = Ipseckey::ed25519(precedence, n.gateway.clone(), *new);
    let ttl = ttl.or(current.ttl).unwrap_or(crate::record::DEFAULT_TTL);
    let mut plan = publish(current, new, record, ttl);
    plan.delete.extend(records_of(current, old));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [0xaa; 32];
    const B: [u8; 32] = [0xbb; 32];
    const C: [u8; 32] = [0xcc; 32];

    fn wire(k: &Ipseckey) -> Vec<u8> {
        let mut w = Vec::new();
        k.emit_wire(&mut w);
        w
    }

    fn set(ttl: u32, keys: &[Ipseckey]) -> RrSet {
        RrSet {
            ttl: Some(ttl),
            records: keys.iter().map(|k| Current::from_rdata(wire(k))).collect(),
        }
    }

    fn ed(p: u8, k: [u8; 32]) -> Ipseckey {
        Ipseckey::ed25519(p, Gateway::None, k)
    }

    #[test]
    fn publish_on_empty_name_requires_absence() {
        let plan = publish(&RrSet::default(), &A, ed(10, A), 3600);
        assert!(plan.prerequisite.is_empty());
        assert!(plan.delete.is_empty());
        assert_eq!(plan.add, vec![ed(10, A)]);
    }

    #[test]
    fn publish_replaces_own_key_only() {
        let undecodable = vec![1, 9, 4]; // gateway type 9: does not decode
        let mut cur = set(300, &[ed(20, A), ed(10, C)]);
        cur.records.push(Current::from_rdata(undecodable.clone()));
        let plan = publish(&cur, &A, ed(5, A), 300);
        assert_eq!(plan.prerequisite.len(), 3);
        assert_eq!(plan.delete, vec![wire(&ed(20, A))]);
        assert_eq!(plan.add, vec![ed(5, A)]);
        assert!(!plan.is_noop(&cur));
    }

    #[test]
    fn republishing_the_same_record_is_a_noop() {
        let cur = set(3600, &[ed(10, A), ed(10, C)]);
        assert!(publish(&cur, &A, ed(10, A), 3600).is_noop(&cur));
        assert!(
            !publish(&cur, &A, ed(10, A), 60).is_noop(&cur),
            "TTL change is a change"
        );
        assert!(remove(&cur, &B).is_noop(&cur));
        assert!(!remove(&cur, &A).is_noop(&cur));
    }

    #[test]
    fn rotation() {
        let cur = set(600, &[ed(10, A), ed(10, C)]);
        let p = rotate_start(&cur, "n.", &A, &B, None, None).unwrap();
        assert_eq!(p.add, vec![ed(20, B)]);
        assert!(p.delete.is_empty());
        assert_eq!(p.ttl, 600);

        let mid = set(600, &[ed(10, A), ed(10, C), ed(20, B)]);
        let f = rotate_finish(&mid, "n.", &A, &B, None, None).unwrap();
        assert_eq!(f.add, vec![ed(10, B)]);
        assert_eq!(f.delete, vec![wire(&ed(20, B)), wire(&ed(10, A))]);
        // Running --finish again once done changes nothing.
        let done = set(600, &[ed(10, C), ed(10, B)]);
        assert!(
            rotate_finish(&done, "n.", &A, &B, None, None)
                .unwrap()
                .is_noop(&done)
        );

        assert_eq!(
            rotate_start(&RrSet::default(), "n.", &A, &B, None, None),
            Err(PlanError::OldKeyMissing { name: "n.".into() })
        );
        assert!(matches!(
            rotate_finish(&cur, "n.", &A, &B, None, None),
            Err(PlanError::NewKeyMissing { .. })
        ));
        assert_eq!(
            rotate_start(&set(1, &[ed(255, A)]), "n.", &A, &B, None, None),
            Err(PlanError::NoPrecedenceLeft)
        );
        assert_eq!(
            rotate_start(&cur, "n.", &A, &A, None, None),
            Err(PlanError::SameKey)
        );
    }
}

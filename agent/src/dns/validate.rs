//! `dns.dnssec = "validate"`: the agent checks the chain of trust itself,
//! with hickory's validator ([`DnssecDnsHandle`]) over the same marked
//! name-server pool, from the IANA root KSKs plus the anchors of
//! `dns.trust_anchors`. Nothing here judges a signature: it asks hickory, and
//! turns the proof hickory records on each answer into one of RFC 4035 §4.3's
//! states, with a reason a person can act on when it is bogus.
//!
//! - **The chain's records are kept** ([`ChainCache`]): DNSKEY and DS answers
//!   (positive or negative) for their TTL, at most [`CHAIN_CACHE`] of them, so
//!   that once a zone's keys are known a lookup costs its own query and nothing
//!   more. hickory's validation cache (proofs, bounded too) sits on top.
//! - **Islands.** A name under a configured anchor's zone is in a part of the
//!   tree the operator says is signed: there, "indeterminate" (the chain could
//!   not be fetched: an attacker dropping DNSKEY or DS queries) is bogus. Under
//!   only the root anchor it stays indeterminate, which is what an
//!   authoritative-only or non-DNSSEC resolver gives for every name
//!   (`require-dnssec` refuses it).
//! - **Anchors** are matched against their zone's DNSKEY set at start
//!   ([`Validator::prime`]); an anchored key that signs the set vouches for all
//!   of it (a KSK, or the key a DS names, for the ZSK that signs the records).
//!   A bogus answer under an anchored zone fetches the set again, at most
//!   every [`REBUILD_AFTER`]: a ZSK rollover needs no restart.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::StreamExt;
use hickory_resolver::NameServerPool;
use hickory_resolver::net::dnssec::DnssecDnsHandle;
use hickory_resolver::net::{DnsError, DnsHandle, NetError};
use hickory_resolver::proto::dnssec::rdata::{DNSKEY, DNSSECRData};
use hickory_resolver::proto::dnssec::{
    Algorithm, Proof, PublicKey, PublicKeyBuf, TrustAnchors, Verifier,
};
use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{LowerName, Name, RData, Record, RecordType};
use oemesh_core::anchors::{AnchorKind, TrustAnchor};
use oemesh_core::oe::Dnssec;
use tokio::sync::RwLock;

use super::bogus::{now_epoch, why_bogus, why_bogus_denial};
use super::chain::ChainCache;
use super::{MarkedRuntime, request};

/// Proofs kept by hickory's validation cache at most.
pub const PROOF_CACHE: usize = 1024;

type Pool = NameServerPool<MarkedRuntime>;
type Validating = DnssecDnsHandle<ChainCache<Pool>>;

/// Where an anchor came from: `anchors.txt:3`.
#[derive(Clone, Debug)]
pub struct LoadedAnchor {
    /// The parsed record.
    pub anchor: TrustAnchor,
    /// `file:line`.
    pub origin: String,
}

/// Reads and parses `dns.trust_anchors` files; the error names the file and
/// the line (`check-config` shows it as it is).
pub fn load_anchors(paths: &[std::path::PathBuf]) -> Result<Vec<LoadedAnchor>, String> {
    let mut all = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "{}: {e} (give a readable file of DNSKEY or DS records)",
                path.display()
            )
        })?;
        let anchors =
            oemesh_core::anchors::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        all.extend(anchors.into_iter().map(|anchor| LoadedAnchor {
            origin: format!("{}:{}", file_name(path), anchor.line),
            anchor,
        }));
    }
    Ok(all)
}

fn file_name(path: &Path) -> String {
    path.display().to_string()
}

/// The configured anchor whose zone is the closest enclosing one of `name`
/// (label by label, not by text), if any: where its chain of trust starts.
pub(super) fn covering_anchor<'a>(
    anchors: &'a [LoadedAnchor],
    name: &Name,
) -> Option<&'a LoadedAnchor> {
    anchors
        .iter()
        .filter_map(|a| Some((a, Name::from_ascii(&a.anchor.zone).ok()?)))
        .filter(|(_, zone)| !zone.is_root() && zone.zone_of(name))
        .max_by_key(|(_, zone)| zone.num_labels())
        .map(|(a, _)| a)
}

/// The result of one validated lookup.
#[derive(Debug)]
pub(super) enum Validated {
    /// An answer (positive or negative) and its state.
    Answer(Message, Dnssec),
    /// Validation failed: what failed, for the reason line.
    Bogus(String),
    /// The name is under no configured anchor and the servers give no root
    /// DNSKEY set, so no chain can be built (an authoritative-only server):
    /// the caller looks the name up plainly and calls it indeterminate.
    NoChain,
    /// The lookup itself failed (no DNSSEC verdict).
    Failed(NetError),
}

/// The validating side of [`super::KeyResolver`].
pub(super) struct Validator {
    chain: ChainCache<Pool>,
    anchors: Vec<LoadedAnchor>,
    islands: Vec<Name>,
    /// The handle and when it was built.
    handle: RwLock<Option<(Validating, Instant)>>,
    /// Whether the servers gave the root DNSKEY set, and when that was asked.
    root: Mutex<Option<(Instant, bool)>>,
}

/// A bogus answer under an anchored zone rebuilds the trusted key set from a
/// fresh DNSKEY set (a key rollover) at most this often.
const REBUILD_AFTER: Duration = Duration::from_secs(5);

/// How long the answer to "do the servers give the root DNSKEYs?" is kept.
const ROOT_PROBE_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("anchors", &self.anchors.len())
            .field("islands", &self.islands)
            .finish()
    }
}

impl Validator {
    /// A validator over `pool` from the root KSKs and `anchors`.
    pub(super) fn new(pool: Pool, anchors: Vec<LoadedAnchor>) -> Validator {
        let mut islands: Vec<Name> = Vec::new();
        for a in &anchors {
            if let Ok(n) = Name::from_ascii(&a.anchor.zone)
                && !n.is_root()
                && !islands.contains(&n)
            {
                islands.push(n);
            }
        }
        let chain = ChainCache::new(pool);
        Validator {
            chain,
            anchors,
            islands,
            handle: RwLock::new(None),
            root: Mutex::new(None),
        }
    }

    /// The configured anchors.
    pub(super) fn anchors(&self) -> &[LoadedAnchor] {
        &self.anchors
    }

    /// The validating handle, built on first use: each anchored zone's
    /// DNSKEY set is fetched, and when a key an anchor names (a DNSKEY, or the
    /// key a DS digests) signs that set, every key of the set is trusted, so
    /// a zone whose ZSK signs its records validates from an anchored KSK (or
    /// its DS) without the parent's DS. A zone whose set cannot be fetched
    /// keeps its DNSKEY anchors as given, and the handle is built again at
    /// the next lookup.
    async fn handle(&self) -> Result<Validating, String> {
        if let Some((h, _)) = self.handle.read().await.as_ref() {
            return Ok(h.clone());
        }
        let mut slot = self.handle.write().await;
        if let Some((h, _)) = slot.as_ref() {
            return Ok(h.clone());
        }
        let mut trust = TrustAnchors::default();
        let mut complete = true;
        let mut zones: Vec<&str> = self
            .anchors
            .iter()
            .map(|a| a.anchor.zone.as_str())
            .collect();
        zones.sort_unstable();
        zones.dedup();
        let of_zone = |zone: &str| -> Vec<&LoadedAnchor> {
            self.anchors
                .iter()
                .filter(|a| a.anchor.zone == zone)
                .collect()
        };
        // Every zone's DNSKEY set at once: one round trip, not one per zone.
        let fetched = futures_util::future::join_all(
            zones
                .iter()
                .map(|zone| async move { self.zone_keys(zone, &of_zone(zone)).await }),
        )
        .await;
        for (zone, keys) in zones.into_iter().zip(fetched) {
            let of_zone = of_zone(zone);
            match keys? {
                Some(keys) => {
                    for key in keys {
                        insert(&mut trust, &key, zone);
                    }
                }
                None => {
                    complete = false;
                    for a in &of_zone {
                        if let AnchorKind::Dnskey {
                            algorithm,
                            public_key,
                            ..
                        } = &a.anchor.kind
                        {
                            let key = PublicKeyBuf::new(
                                public_key.clone(),
                                Algorithm::from_u8(*algorithm),
                            );
                            insert(&mut trust, &key, zone);
                        }
                    }
                }
            }
        }
        let h = DnssecDnsHandle::with_trust_anchor(self.chain.clone(), Arc::new(trust))
            .validation_cache_size(PROOF_CACHE);
        if complete {
            *slot = Some((h.clone(), Instant::now()));
        }
        Ok(h)
    }

    /// The keys to trust for `zone`, from its DNSKEY set as served: the
    /// whole set when a key an anchor names signs it (valid now), else the
    /// named keys. `None`: the set could not be fetched. An error: only DS
    /// anchors, and none of them names a served key.
    async fn zone_keys(
        &self,
        zone: &str,
        anchors: &[&LoadedAnchor],
    ) -> Result<Option<Vec<PublicKeyBuf>>, String> {
        let Ok(name) = Name::from_ascii(zone) else {
            return Ok(None);
        };
        // Through the chain cache: hickory asks for the same set next.
        let request = request(name.clone(), RecordType::DNSKEY);
        let records = match self.chain.send(request).next().await {
            Some(Ok(r)) => r.into_message().answers,
            _ => return Ok(None),
        };
        let served: Vec<&DNSKEY> = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(k)) if r.name == name => Some(k),
                _ => None,
            })
            .collect();
        let named: Vec<&DNSKEY> = served
            .iter()
            .copied()
            .filter(|k| {
                let pk = k.public_key();
                anchors.iter().any(|a| {
                    a.anchor.matches_dnskey(
                        zone,
                        k.flags(),
                        3,
                        u8::from(pk.algorithm()),
                        pk.public_bytes(),
                    )
                })
            })
            .collect();
        let only_ds = anchors
            .iter()
            .all(|a| matches!(a.anchor.kind, AnchorKind::Ds { .. }));
        if named.is_empty() && only_ds {
            let origins: Vec<&str> = anchors.iter().map(|a| a.origin.as_str()).collect();
            return Err(format!(
                "trust anchor {} (DS for {zone}): no DNSKEY the servers give for the zone \
                 matches it; is the DS current?",
                origins.join(", ")
            ));
        }
        let trusted = if named.iter().any(|k| signs_keyset(k, &name, &records)) {
            served
        } else {
            named
        };
        let mut keys: Vec<PublicKeyBuf> = trusted.iter().map(|k| k.public_key().clone()).collect();
        // DNSKEY anchors the servers do not give stay trusted as written.
        for a in anchors {
            if let AnchorKind::Dnskey {
                algorithm,
                public_key,
                ..
            } = &a.anchor.kind
            {
                keys.push(PublicKeyBuf::new(
                    public_key.clone(),
                    Algorithm::from_u8(*algorithm),
                ));
            }
        }
        Ok(Some(keys))
    }

    /// Builds the validating handle now (the anchored zones' DNSKEY sets)
    /// and asks whether the servers give the root DNSKEY set, so that the
    /// first packet after a start does not wait for either.
    pub(super) async fn prime(&self) {
        if let Err(e) = self.handle().await {
            tracing::warn!("DNSSEC: {e}");
        }
        let _ = self.root_chain().await;
    }

    /// Looks `query` up and validates the answer.
    pub(super) async fn lookup(&self, query: Query) -> Validated {
        let first = self.lookup_once(&query).await;
        let Validated::Bogus(_) = &first else {
            return first;
        };
        // An anchored zone may have rolled a key (a new ZSK signs) since the
        // trusted set was built from its DNSKEYs: build it again from a fresh
        // set and ask once more, at most every REBUILD_AFTER.
        if !self.islands.iter().any(|z| z.zone_of(query.name())) || !self.rebuild().await {
            return first;
        }
        self.lookup_once(&query).await
    }

    /// Drops the handle and the kept chain answers when the handle is older
    /// than [`REBUILD_AFTER`]; whether it did.
    async fn rebuild(&self) -> bool {
        let mut slot = self.handle.write().await;
        match slot.as_ref() {
            Some((_, built)) if built.elapsed() >= REBUILD_AFTER => {
                *slot = None;
                self.chain.forget();
                tracing::debug!("DNSSEC: bogus under an anchored zone; trusted keys fetched again");
                true
            }
            _ => false,
        }
    }

    async fn lookup_once(&self, query: &Query) -> Validated {
        let query = query.clone();
        let name = query.name().clone();
        let handle = match self.handle().await {
            Ok(h) => h,
            Err(why) => return Validated::Bogus(why),
        };
        let island = self.islands.iter().find(|z| z.zone_of(&name)).cloned();
        if island.is_none() && !self.root_chain().await {
            return Validated::NoChain;
        }
        let result = handle
            .send(request(query.name().clone(), query.query_type()))
            .next()
            .await;
        match result {
            None => Validated::Failed(NetError::from("no response")),
            Some(Ok(response)) => {
                let message = response.into_message();
                let state = state_of(&message, &query);
                match (state, island) {
                    (Dnssec::Bogus, _) => Validated::Bogus(why_bogus(&message, &query)),
                    (Dnssec::Indeterminate, Some(zone)) => Validated::Bogus(format!(
                        "no chain of trust to the anchor of {zone} (DNSKEY or DS not available)"
                    )),
                    (state, _) => Validated::Answer(message, state),
                }
            }
            Some(Err(NetError::Dns(DnsError::Nsec {
                response, proof, ..
            }))) => {
                let message = response.into_message();
                match (proof, island) {
                    (Proof::Secure | Proof::Insecure, _) => {
                        let state = if proof == Proof::Secure {
                            Dnssec::Secure
                        } else {
                            Dnssec::Insecure
                        };
                        Validated::Answer(message, state)
                    }
                    (Proof::Indeterminate, None) => {
                        Validated::Answer(message, Dnssec::Indeterminate)
                    }
                    _ => Validated::Bogus(why_bogus_denial(&message)),
                }
            }
            Some(Err(e)) => Validated::Failed(e),
        }
    }
}

impl Validator {
    /// Whether `name` is known to need no validation attempt: it is under no
    /// configured anchor, and the servers were found (within the last
    /// minute) to give no root DNSKEY set. Then its answer is indeterminate
    /// whatever it says, and the cold path may send the query inline.
    pub(super) fn known_without_chain(&self, name: &Name) -> bool {
        if self.islands.iter().any(|z| z.zone_of(name)) {
            return false;
        }
        let root = *self
            .root
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        root.is_some_and(|(at, ok)| !ok && at.elapsed() < ROOT_PROBE_TTL)
    }

    /// Whether the servers hand out the root DNSKEY set, the start of every
    /// chain that no configured anchor starts (asked at most once a minute).
    async fn root_chain(&self) -> bool {
        let now = Instant::now();
        if let Some((at, ok)) = *self
            .root
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            && now.duration_since(at) < ROOT_PROBE_TTL
        {
            return ok;
        }
        let request = request(Name::root(), RecordType::DNSKEY);
        let ok = match self.chain.send(request).next().await {
            Some(Ok(r)) => r
                .answers
                .iter()
                .any(|r| r.record_type() == RecordType::DNSKEY),
            _ => false,
        };
        if !ok {
            tracing::debug!(
                "DNSSEC: the DNS servers give no root DNSKEY set; names under no trust anchor are indeterminate"
            );
        }
        *self
            .root
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, ok));
        ok
    }
}

/// Whether `key` made a signature over `zone`'s DNSKEY set in `records`
/// that is valid now (hickory's verifier checks it).
fn signs_keyset(key: &DNSKEY, zone: &Name, records: &[Record]) -> bool {
    let pk = key.public_key();
    let tag =
        oemesh_core::anchors::key_tag(key.flags(), 3, u8::from(pk.algorithm()), pk.public_bytes());
    let rrset: Vec<&Record> = records
        .iter()
        .filter(|r| r.record_type() == RecordType::DNSKEY && &r.name == zone)
        .collect();
    let now = now_epoch();
    records.iter().any(|r| {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data else {
            return false;
        };
        let i = sig.input();
        i.type_covered == RecordType::DNSKEY
            && i.key_tag == tag
            && (i.sig_expiration.get().wrapping_sub(now) as i32) >= 0
            && (now.wrapping_sub(i.sig_inception.get()) as i32) >= 0
            && key
                .verify_rrsig(zone, r.dns_class, sig, rrset.iter().copied())
                .is_ok()
    })
}

fn insert(trust: &mut TrustAnchors, key: &PublicKeyBuf, zone: &str) {
    if let Ok(name) = Name::from_ascii(zone) {
        trust.insert_with_name(key, LowerName::from(name));
    }
}

/// The state of an answer that hickory let through: its records of the
/// queried type (or, for a denial, its authority records).
fn state_of(message: &Message, query: &Query) -> Dnssec {
    let answers: Vec<Proof> = message
        .answers
        .iter()
        .filter(|r| r.record_type() == query.query_type() || r.record_type() == RecordType::CNAME)
        .map(|r| r.proof)
        .collect();
    let proofs = if answers.is_empty() {
        message
            .authorities
            .iter()
            .filter(|r| r.record_type() != RecordType::RRSIG)
            .map(|r| r.proof)
            .collect()
    } else {
        answers
    };
    if proofs.is_empty() {
        return Dnssec::Indeterminate;
    }
    if proofs.contains(&Proof::Bogus) {
        Dnssec::Bogus
    } else if proofs.contains(&Proof::Indeterminate) {
        Dnssec::Indeterminate
    } else if proofs.iter().all(|p| *p == Proof::Secure) {
        Dnssec::Secure
    } else {
        Dnssec::Insecure
    }
}

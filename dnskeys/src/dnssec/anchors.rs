//! Trust anchors for `verify --dnssec`: the `--trust-anchor` files
//! (parsed by [`oemesh_core::anchors`]) and the keys they make trusted for
//! hickory, fetched through the server.

use std::path::{Path, PathBuf};

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData};
use hickory_proto::dnssec::{Algorithm, PublicKey as _, PublicKeyBuf, TrustAnchors, Verifier as _};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use oemesh_core::anchors::{self, AnchorError, AnchorKind, TrustAnchor};

use super::{Link, sig_time};
use crate::transport::{Server, Transport};
use crate::verify::VerifyError;

/// A trust-anchor file that does not load (exit status 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorFileError {
    /// Unreadable.
    #[error("{path}: cannot read the trust anchor file: {source}")]
    Read {
        /// the file
        path: String,
        /// why
        source: std::io::Error,
    },
    /// Not an anchor file.
    #[error("{path}: {source}")]
    Parse {
        /// the file
        path: String,
        /// the line and what is wrong
        source: AnchorError,
    },
}

/// One anchor and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// `FILE:LINE`.
    pub source: String,
    /// The record.
    pub anchor: TrustAnchor,
}

/// Reads and parses `--trust-anchor` files.
pub fn load_anchor_files(paths: &[PathBuf]) -> Result<Vec<Anchor>, AnchorFileError> {
    let mut out = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AnchorFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let parsed = anchors::parse(&text).map_err(|source| AnchorFileError::Parse {
            path: shown.clone(),
            source,
        })?;
        out.extend(parsed.into_iter().map(|anchor| Anchor {
            source: format!("{}:{}", short(path), anchor.line),
            anchor,
        }));
    }
    Ok(out)
}

fn short(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The root anchors plus `anchors`. Per anchored zone, the DNSKEY RRset is
/// fetched through `server`: the keys an anchor names (a DNSKEY anchor: the
/// same key; a DS anchor: a key with that digest) are trusted, and when one
/// of them signs the RRset (a valid RRSIG now), every key in it is (RFC 4035
/// §5). hickory trusts a zone's RRset outright only when all its keys are
/// anchors, and otherwise asks the parent for DS records, which an
/// authoritative-only server for the zone cannot give; so a KSK alone
/// (`K*.key`, a DS) is enough here, as it is for unbound or BIND.
pub(super) async fn trust_anchors(
    server: &Server,
    anchors: &[Anchor],
    now: i64,
) -> Result<(TrustAnchors, Vec<Link>), VerifyError> {
    let mut trust = TrustAnchors::default();
    let mut links: Vec<Link> = [
        (20326, "built-in root anchor (KSK-2017)"),
        (38696, "built-in root anchor (KSK-2024)"),
    ]
    .into_iter()
    .map(|(key_tag, source)| Link {
        zone: ".".into(),
        flags: 257,
        algorithm: 8,
        key_tag,
        source: source.into(),
    })
    .collect();
    let mut zones: Vec<&str> = anchors.iter().map(|a| a.anchor.zone.as_str()).collect();
    zones.sort_unstable();
    zones.dedup();
    for zone_text in zones {
        let of_zone: Vec<&Anchor> = anchors
            .iter()
            .filter(|a| a.anchor.zone == zone_text)
            .collect();
        let zone = Name::from_ascii(zone_text).map_err(|e| VerifyError::Anchor {
            anchor: of_zone[0].source.clone(),
            why: format!("zone {zone_text} is not a name hickory takes: {e}"),
        })?;
        let rrset = fetch_dnskeys(server, &zone).await?;
        let keys: Vec<(&Record, &DNSKEY)> = rrset
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some((r, k)),
                _ => None,
            })
            .collect();
        // The served keys an anchor names, with the anchor.
        let mut named: Vec<(&DNSKEY, &Anchor)> = Vec::new();
        for a in &of_zone {
            let before = named.len();
            for (_, k) in &keys {
                let alg = u8::from(k.algorithm());
                if a.anchor.matches_dnskey(
                    zone_text,
                    k.flags(),
                    3,
                    alg,
                    k.public_key().public_bytes(),
                ) {
                    named.push((k, a));
                }
            }
            if named.len() > before {
                continue;
            }
            match &a.anchor.kind {
                AnchorKind::Ds { key_tag, .. } => {
                    return Err(VerifyError::Anchor {
                        anchor: a.source.clone(),
                        why: format!(
                            "no DNSKEY of {zone_text} at {server} matches this DS (key tag \
                             {key_tag}); is the DS current, and does the server answer for the zone?"
                        ),
                    });
                }
                // Not served (a stale anchor, or a server that hides it): trusted
                // as given; validation then says what it makes of it.
                AnchorKind::Dnskey {
                    flags,
                    algorithm,
                    public_key,
                    ..
                } => {
                    trust.insert_with_name(
                        &PublicKeyBuf::new(public_key.clone(), Algorithm::from_u8(*algorithm)),
                        LowerName::from(zone.clone()),
                    );
                    links.push(Link {
                        zone: zone_text.to_owned(),
                        flags: *flags,
                        algorithm: *algorithm,
                        key_tag: a.anchor.key_tag(),
                        source: a.source.clone(),
                    });
                }
            }
        }
        let signed_by_anchor = named
            .iter()
            .any(|(k, _)| signs_rrset(k, &zone, &rrset, now));
        let mut trusted: Vec<&DNSKEY> = named.iter().map(|(k, _)| *k).collect();
        if signed_by_anchor {
            trusted = keys.iter().map(|(_, k)| *k).collect();
        }
        for k in trusted {
            trust.insert_with_name(k.public_key(), LowerName::from(zone.clone()));
        }
        for (k, a) in named {
            let alg = u8::from(k.algorithm());
            let bytes = k.public_key().public_bytes();
            links.push(Link {
                zone: zone_text.to_owned(),
                flags: k.flags(),
                algorithm: alg,
                key_tag: anchors::key_tag(k.flags(), 3, alg, bytes),
                source: match a.anchor.kind {
                    AnchorKind::Ds { .. } => format!("{} (DS)", a.source),
                    AnchorKind::Dnskey { .. } => a.source.clone(),
                },
            });
        }
    }
    Ok((trust, links))
}

/// Whether `key` made a signature over the DNSKEY RRset in `records` that is valid at `now`.
fn signs_rrset(key: &DNSKEY, zone: &Name, records: &[Record], now: i64) -> bool {
    let alg = u8::from(key.algorithm());
    let tag = anchors::key_tag(key.flags(), 3, alg, key.public_key().public_bytes());
    let rrset: Vec<&Record> = records
        .iter()
        .filter(|r| r.record_type() == RecordType::DNSKEY && &r.name == zone)
        .collect();
    records.iter().any(|r| {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data else {
            return false;
        };
        let input = sig.input();
        input.type_covered == RecordType::DNSKEY
            && input.key_tag == tag
            && input.algorithm == key.algorithm()
            && sig_time(input.sig_inception.get(), now) <= now
            && now <= sig_time(input.sig_expiration.get(), now)
            && key
                .verify_rrsig(zone, r.dns_class, sig, rrset.iter().copied())
                .is_ok()
    })
}

/// The zone's DNSKEY RRset and its RRSIGs, as served (unvalidated: an
/// anchor vouches for a key, and the key for the RRset).
async fn fetch_dnskeys(server: &Server, zone: &Name) -> Result<Vec<Record>, VerifyError> {
    let mut id = [0u8; 2];
    getrandom::fill(&mut id)
        .map_err(|e| crate::update::UpdateError::Internal(format!("OS randomness: {e}")))?;
    let mut m = Message::new(u16::from_be_bytes(id), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(zone.clone(), RecordType::DNSKEY));
    m.metadata.recursion_desired = true;
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_dnssec_ok(true);
    m.set_edns(edns);
    let response = server.exchange(m, Transport::Udp).await?;
    Ok(response.answers.clone())
}

//! Why an answer is bogus, in words a person can act on: hickory records a
//! proof per record but not what failed, so the RRSIGs' dates and presence
//! are read here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, SigInput};
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, Record, RecordType};

/// `IPSECKEY`, not hickory's `Unknown`.
pub(super) fn type_name(t: RecordType) -> String {
    if u16::from(t) == super::IPSECKEY {
        "IPSECKEY".to_owned()
    } else {
        t.to_string()
    }
}

/// Seconds since the epoch, as RRSIG times are (RFC 4034 §3.1.5, serial arithmetic).
pub(super) fn now_epoch() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// What is wrong with signatures in `records` covering `rtype`, if their
/// times say it: expired or not yet valid.
fn signature_times(records: &[Record], rtype: Option<RecordType>) -> Option<String> {
    let now = now_epoch();
    let sigs: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input()),
            _ => None,
        })
        .filter(|i| rtype.is_none_or(|t| i.type_covered == t))
        .collect();
    if sigs.is_empty() {
        return None;
    }
    let expired = |i: &&SigInput| (i.sig_expiration.get().wrapping_sub(now) as i32) < 0;
    let early = |i: &&SigInput| (now.wrapping_sub(i.sig_inception.get()) as i32) < 0;
    if sigs.iter().all(expired) {
        let when = sigs
            .iter()
            .map(|i| i.sig_expiration.get())
            .max()
            .unwrap_or(0);
        return Some(format!(
            "RRSIG over {} expired at {}",
            type_name(sigs[0].type_covered),
            rfc3339(when)
        ));
    }
    if sigs.iter().all(early) {
        return Some(format!(
            "RRSIG over {} is not valid yet",
            type_name(sigs[0].type_covered)
        ));
    }
    None
}

/// What failed, for a positive answer hickory marked bogus.
pub(super) fn why_bogus(message: &Message, query: &Query) -> String {
    let covered = Some(query.query_type());
    if let Some(t) = signature_times(&message.answers, covered) {
        return format!("{t} (expired signature)");
    }
    let signed = message.answers.iter().any(|r| {
        matches!(&r.data, RData::DNSSEC(DNSSECRData::RRSIG(s)) if s.input().type_covered == query.query_type())
    });
    if !signed {
        return format!(
            "{} records without an RRSIG where the chain of trust says the zone is signed",
            type_name(query.query_type())
        );
    }
    format!(
        "the RRSIG over {} does not verify with a DNSKEY reached from a trust anchor (no DNSKEY, \
         no matching DS, or a bad signature)",
        type_name(query.query_type())
    )
}

/// What failed, for a denial without a valid proof.
pub(super) fn why_bogus_denial(message: &Message) -> String {
    let kind = if message.metadata.response_code == ResponseCode::NXDomain {
        "NXDOMAIN"
    } else {
        "NODATA"
    };
    if let Some(t) = signature_times(&message.authorities, None) {
        return format!("{kind}: {t} (expired signature)");
    }
    format!("{kind} without a valid NSEC/NSEC3 proof in a signed zone")
}

fn rfc3339(epoch: u32) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(epoch.into());
    humantime::format_rfc3339_seconds(t).to_string()
}

//! `dnskeys verify --dnssec`: DNSSEC validated here, not by the resolver.
//!
//! The IPSECKEY query goes through hickory's `DnssecDnsHandle`, which fetches
//! the DNSKEY and DS records it needs through the same server and checks the
//! chain from the trust anchors: the IANA root KSKs (built in) and the
//! `--trust-anchor` files ([`oemesh_core::anchors`]). The verdict is one of
//! the four states of RFC 4035 §4.3. Validation queries go over TCP: one
//! connection carries all of them, and no answer is truncated.

use std::fmt;
use std::sync::Arc;

use hickory_net::dnssec::DnssecDnsHandle;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::FirstAnswer as _;
use hickory_net::{DnsError, DnsHandle as _, NetError};
use hickory_proto::dnssec::Proof;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Message, MessageType, OpCode, Query,
};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{Value, json};

mod anchors;

use self::anchors::trust_anchors;
pub use self::anchors::{Anchor, AnchorFileError, load_anchor_files};
use crate::transport::{Server, TransportError};
use crate::update::IPSECKEY;
use crate::verify::VerifyError;

/// Warn when the signature expires sooner than this (seconds).
pub const EXPIRY_WARNING_S: i64 = 3 * 24 * 3600;

/// RFC 4035 §4.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A chain of signatures from a trust anchor.
    Secure,
    /// Provably unsigned (no DS where the chain would continue).
    Insecure,
    /// Should be signed, and the signatures do not check out.
    Bogus,
    /// Neither proven nor refuted.
    Indeterminate,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Secure => "secure",
            Self::Insecure => "insecure",
            Self::Bogus => "bogus",
            Self::Indeterminate => "indeterminate",
        })
    }
}

impl From<Proof> for State {
    fn from(p: Proof) -> Self {
        match p {
            Proof::Secure => Self::Secure,
            Proof::Insecure => Self::Insecure,
            Proof::Bogus => Self::Bogus,
            _ => Self::Indeterminate,
        }
    }
}

/// A trusted key the verdict rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The zone, absolute.
    pub zone: String,
    /// DNSKEY flags.
    pub flags: u16,
    /// DNSSEC algorithm number.
    pub algorithm: u8,
    /// RFC 4034 App. B key tag.
    pub key_tag: u16,
    /// `FILE:LINE`, `FILE:LINE (DS)`, or `built-in root anchor`.
    pub source: String,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} DNSKEY {} alg {} tag {} from trust anchor {}",
            self.zone, self.flags, self.algorithm, self.key_tag, self.source
        )
    }
}

/// What local validation concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// RFC 4035 §4.3 state of the answer.
    pub state: State,
    /// What failed, when not secure.
    pub why: Option<String>,
    /// The earliest expiration (Unix seconds) of the signatures the answer rests on.
    pub expires: Option<i64>,
    /// Seconds from the check to `expires`.
    pub expires_in: Option<i64>,
    /// The anchor keys of the zone that signed the answer (empty unless secure).
    pub chain: Vec<Link>,
}

impl Validation {
    /// The text after `DNSSEC: `.
    pub fn summary(&self) -> String {
        let mut s = self.state.to_string();
        match (&self.why, self.chain.is_empty()) {
            (Some(why), _) => s.push_str(&format!(" ({why})")),
            (None, false) => {
                let chain: Vec<String> = self.chain.iter().map(Link::to_string).collect();
                s.push_str(&format!(" (chain: {})", chain.join(", ")));
            }
            (None, true) => {}
        }
        if let (Some(at), Some(left), State::Secure) = (self.expires, self.expires_in, self.state) {
            s.push_str(&format!(
                "; RRSIG expires {} (in {})",
                human_time(at),
                human_duration(left)
            ));
        }
        s
    }

    /// The `dnssec` object of `verify --json --dnssec`.
    pub fn to_json(&self) -> Value {
        json!({
            "validated": self.state == State::Secure,
            "source": "local-validation",
            "state": self.state.to_string(),
            "reason": self.why,
            "expires": self.expires.map(rfc3339),
            "expires_in_s": self.expires_in,
            "chain": self.chain.iter().map(|l| json!({
                "zone": l.zone, "flags": l.flags, "algorithm": l.algorithm,
                "key_tag": l.key_tag, "anchor": l.source,
            })).collect::<Vec<_>>(),
            "summary": self.summary(),
        })
    }
}

/// Validates the IPSECKEY RRset (or its absence) at `name` from `anchors`
/// and the built-in root anchors; `now` is Unix seconds.
pub async fn validate(
    server: &Server,
    name: &Name,
    anchors: &[Anchor],
    now: i64,
) -> Result<Validation, VerifyError> {
    let (trust, links) = trust_anchors(server, anchors, now).await?;
    let provider = TokioRuntimeProvider::new();
    let bounded = async {
        let exchange =
            TcpClientStream::exchange(server.addr, None, server.timeout, None, provider.clone())
                .await?;
        let handle = DnssecDnsHandle::with_trust_anchor(exchange, Arc::new(trust));
        let mut m = Message::new(0, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(name.clone(), IPSECKEY));
        m.metadata.recursion_desired = true;
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = true;
        handle
            .send(DnsRequest::new(m, options))
            .first_answer()
            .await
    };
    let result = match tokio::time::timeout(server.timeout * 2, bounded).await {
        Ok(r) => r,
        Err(_) => {
            return Err(TransportError::Timeout {
                server: server.addr,
                timeout: server.timeout * 2,
            }
            .into());
        }
    };
    drop(provider);
    let (state, response) = match result {
        Ok(r) => (answer_state(&r), r),
        Err(NetError::Dns(DnsError::Nsec {
            proof, response, ..
        })) => (State::from(proof), *response),
        Err(NetError::Timeout) => {
            return Err(TransportError::Timeout {
                server: server.addr,
                timeout: server.timeout,
            }
            .into());
        }
        Err(other) => {
            return Err(TransportError::Failed {
                server: server.addr,
                detail: other.to_string(),
            }
            .into());
        }
    };
    let mut v = verdict(state, &response, &links, now);
    let own_anchor = links
        .iter()
        .filter(|l| l.zone != ".")
        .any(|l| Name::from_ascii(&l.zone).is_ok_and(|z| z.zone_of(name)));
    if let (State::Bogus, false, Some(why)) = (v.state, own_anchor, &v.why) {
        v.why = Some(format!(
            "no chain from the root trust anchor to {name}: {why}; the DS and DNSKEY records \
             from the root down come only through a resolver (an authoritative-only server \
             has none of them), or give the zone's own anchor with --trust-anchor"
        ));
    }
    Ok(v)
}

/// The state of a response hickory let through: that of the IPSECKEY
/// records, or for a negative answer, of the records proving it.
fn answer_state(r: &DnsResponse) -> State {
    let answers: Vec<&Record> = r
        .answers
        .iter()
        .filter(|x| x.record_type() != RecordType::RRSIG)
        .collect();
    let proofs: Vec<Proof> = if answers.is_empty() {
        r.authorities
            .iter()
            .filter(|x| x.record_type() != RecordType::RRSIG)
            .map(|x| x.proof)
            .collect()
    } else {
        answers.iter().map(|x| x.proof).collect()
    };
    let worst = [Proof::Bogus, Proof::Indeterminate, Proof::Insecure]
        .into_iter()
        .find(|p| proofs.contains(p));
    match (worst, proofs.is_empty()) {
        (Some(p), _) => State::from(p),
        (None, true) => State::Indeterminate,
        (None, false) => State::Secure,
    }
}

fn rrsigs(r: &DnsResponse) -> impl Iterator<Item = (&Record, &RRSIG)> {
    r.answers
        .iter()
        .chain(&r.authorities)
        .filter_map(|rec| match &rec.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some((rec, sig)),
            _ => None,
        })
}

/// A signature time (RFC 4034 §3.1.5: serial arithmetic) as Unix seconds near `now`.
fn sig_time(t: u32, now: i64) -> i64 {
    now + i64::from(t.wrapping_sub(now as u32) as i32)
}

fn verdict(state: State, r: &DnsResponse, links: &[Link], now: i64) -> Validation {
    let used: Vec<(&Record, &RRSIG)> = rrsigs(r)
        .filter(|(rec, _)| state != State::Secure || rec.proof == Proof::Secure)
        .collect();
    let expires = used
        .iter()
        .map(|(_, s)| sig_time(s.input().sig_expiration.get(), now))
        .min();
    let why = match state {
        State::Secure => None,
        State::Bogus => Some(bogus_reason(&used, now)),
        State::Insecure => Some(
            "provably unsigned: no DS on the path from the trust anchors to this name".to_owned(),
        ),
        State::Indeterminate => Some(
            "no chain from a trust anchor could be built or refuted; give the zone's anchor \
             with --trust-anchor, or ask a server that also answers for the parent zones"
                .to_owned(),
        ),
    };
    let chain = if state == State::Secure {
        let signers: Vec<Name> = used
            .iter()
            .map(|(_, s)| s.input().signer_name.clone())
            .collect();
        closest_anchor(links, &signers)
    } else {
        Vec::new()
    };
    Validation {
        state,
        why,
        expires,
        expires_in: expires.map(|e| e - now),
        chain,
    }
}

fn bogus_reason(sigs: &[(&Record, &RRSIG)], now: i64) -> String {
    if sigs.is_empty() {
        return "no RRSIG over the answer, though the trust anchors say the zone is signed \
                (a forged or unsigned copy of the zone?)"
            .into();
    }
    let expired = sigs
        .iter()
        .map(|(_, s)| sig_time(s.input().sig_expiration.get(), now))
        .filter(|&e| e < now)
        .min();
    if let Some(at) = expired {
        return format!(
            "expired signature (RRSIG expired {}); re-sign the zone",
            human_time(at)
        );
    }
    if let Some(at) = sigs
        .iter()
        .map(|(_, s)| sig_time(s.input().sig_inception.get(), now))
        .filter(|&i| i > now)
        .min()
    {
        return format!(
            "signature not yet valid (RRSIG inception {}); check the clocks",
            human_time(at)
        );
    }
    "the signatures do not verify with a DNSKEY chained to the trust anchors (missing \
     DNSKEY, a key the anchors do not hold, or no DS for it in the parent)"
        .into()
}

/// The anchors of the deepest anchored zone at or above the signers.
fn closest_anchor(links: &[Link], signers: &[Name]) -> Vec<Link> {
    let under = |zone: &str, signer: &Name| -> Option<usize> {
        let z = Name::from_ascii(zone).ok()?;
        z.zone_of(signer).then(|| usize::from(z.num_labels()))
    };
    let best = links
        .iter()
        .filter_map(|l| signers.iter().filter_map(|s| under(&l.zone, s)).max())
        .max();
    let zone: Vec<Link> = links
        .iter()
        .filter(|l| {
            best.is_some() && signers.iter().filter_map(|s| under(&l.zone, s)).max() == best
        })
        .cloned()
        .collect();
    // The key-signing keys (SEP flag) when the anchors include them.
    let sep: Vec<Link> = zone.iter().filter(|l| l.flags & 1 == 1).cloned().collect();
    if sep.is_empty() { zone } else { sep }
}

/// `2026-12-21 12:00:00 UTC`.
pub fn human_time(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// RFC 3339, `2026-12-21T12:00:00Z`.
pub fn rfc3339(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `14 days`, `5 hours`, `12 minutes`, or `expired 3 days ago`.
pub fn human_duration(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let text = match a {
        0..120 => format!("{a} seconds"),
        120..7200 => format!("{} minutes", a / 60),
        7200..172_800 => format!("{} hours", a / 3600),
        _ => format!("{} days", a / 86400),
    };
    if secs < 0 {
        format!("expired {text} ago")
    } else {
        text
    }
}

/// Unix seconds to UTC civil time (H. Hinnant's days_from_civil, inverted).
fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(human_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(rfc3339(1_798_200_000), "2026-12-25T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(human_duration(14 * 86400 + 5), "14 days");
        assert_eq!(human_duration(-3 * 86400), "expired 3 days ago");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        let now = 1_798_200_000;
        assert_eq!(sig_time(now as u32 + 10, now), now + 10);
        assert_eq!(sig_time(now as u32 - 10, now), now - 10);
    }
}

//! `dnskeys verify`: fetch the IPSECKEY records at a host's reverse name, decode
//! them, and say whether one carries the expected key and whether the answer
//! was DNSSEC-validated.
//!
//! Validation here is the resolver's: the query sets DO (RFC 3225) and AD
//! (RFC 6840 §5.7), and the answer's AD bit says whether the resolver
//! validated it (RFC 4035 §3.2.3). That is only as trustworthy as the path to
//! the resolver (use one on localhost); the report says so. With `--dnssec`
//! the answer is validated here instead, from trust anchors ([`crate::dnssec`]).
//!
//! `verify --subnet` ([`site`]) asks for the subnet's wildcard and for a host
//! name inside the subnet, and checks what a wildcard may not say.

pub mod site;

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use oemesh_core::crypto::ed25519::Ed25519PublicKey;
use oemesh_core::ipseckey::{DomainName, Ipseckey, reverse_name};
use serde_json::{Value, json};

use crate::dnssec::{Anchor, Validation};
use crate::record::{key_base64, rdata_json};
use crate::transport::{Server, Transport, TransportError};
use crate::update::{IPSECKEY, UpdateError, to_hickory_name};

/// One record found at the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its TTL as served.
    pub ttl: u32,
    /// The RDATA bytes.
    pub rdata: Vec<u8>,
    /// The decoded record, or why it does not decode / is not usable.
    pub decoded: Result<Ipseckey, String>,
    /// True when it carries the expected key.
    pub matches: bool,
}

impl Found {
    /// True when oemesh can use it: it decodes and holds a 32-byte Ed25519 key.
    pub fn usable(&self) -> bool {
        self.problem().is_none()
    }

    /// Why oemesh cannot use this record, if it cannot: it does not decode, it is
    /// not an Ed25519 key, or its 32 bytes are a key the agents refuse (not a
    /// curve point, a small-order point, a non-canonical encoding; see
    /// [`Ed25519PublicKey::from_slice`]).
    pub fn problem(&self) -> Option<String> {
        let k = match &self.decoded {
            Err(e) => return Some(e.clone()),
            Ok(k) => k,
        };
        let Some(key) = k.ed25519_key() else {
            return Some(format!(
                "not an Ed25519 key: algorithm {:?} with a {}-byte key (oemesh needs algorithm 4, 32 bytes)",
                k.algorithm,
                k.public_key.len()
            ));
        };
        Ed25519PublicKey::from_slice(&key)
            .err()
            .map(|e| format!("the key is refused by every agent: {e}"))
    }
}

/// Everything `verify` learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The address asked about (`None` for a subnet's wildcard).
    pub ip: Option<IpAddr>,
    /// Its reverse name.
    pub name: String,
    /// The server asked.
    pub server: Server,
    /// The response code.
    pub rcode: ResponseCode,
    /// The AD bit of the answer.
    pub authentic_data: bool,
    /// The AA bit (an authoritative server never sets AD).
    pub authoritative: bool,
    /// RRSIGs over the IPSECKEY RRset were present (DO was honoured and the zone is signed).
    pub rrsig_present: bool,
    /// CNAMEs followed to reach the records (RFC 2317 delegation).
    pub aliases: Vec<String>,
    /// The records.
    pub records: Vec<Found>,
    /// The key looked for.
    pub expected: Option<[u8; 32]>,
    /// Local validation (`--dnssec`), if asked for.
    pub validation: Option<Validation>,
}

impl Report {
    /// The verdict: with a key, a record carries it; without, some record is
    /// usable; with `--dnssec`, the answer is also secure.
    pub fn ok(&self) -> bool {
        let found = match self.expected {
            Some(_) => self.records.iter().any(|r| r.matches),
            None => self.records.iter().any(Found::usable),
        };
        let secure = self
            .validation
            .as_ref()
            .is_none_or(|v| v.state == crate::dnssec::State::Secure);
        found && secure
    }

    /// One sentence about DNSSEC, saying where the verdict comes from.
    pub fn dnssec_summary(&self) -> String {
        if let Some(v) = &self.validation {
            return v.summary();
        }
        if self.authentic_data {
            format!(
                "validated by the resolver at {} (AD bit set); trust it as far as you trust the \
                 path to that resolver",
                self.server
            )
        } else if self.authoritative {
            format!(
                "not validated: {} answered authoritatively, and authoritative servers do not \
                 validate (AD clear){}; ask a validating resolver to check the chain",
                self.server,
                if self.rrsig_present {
                    ", though the records are signed (RRSIG present)"
                } else {
                    ""
                }
            )
        } else if self.rrsig_present {
            format!(
                "not validated: the records are signed (RRSIG present) but the resolver at {} did \
                 not validate them (AD clear): is DNSSEC validation on, and is the DS in the parent?",
                self.server
            )
        } else {
            format!(
                "not validated: the resolver at {} did not set AD and the records carry no RRSIG (unsigned zone?)",
                self.server
            )
        }
    }

    /// The JSON shape documented in docs/dnskeys.md.
    pub fn to_json(&self) -> Value {
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|r| {
                let mut v = match &r.decoded {
                    Ok(k) => rdata_json(k),
                    Err(_) => json!({}),
                };
                if let Value::Object(m) = &mut v {
                    m.insert("error".into(), json!(r.problem()));
                    m.insert("ttl".into(), json!(r.ttl));
                    m.insert("valid".into(), json!(r.usable()));
                    m.insert("matches_key".into(), json!(r.matches));
                    m.insert("rdata_hex".into(), json!(hex(&r.rdata)));
                }
                v
            })
            .collect();
        let dnssec = match &self.validation {
            Some(v) => {
                let mut d = v.to_json();
                if let Value::Object(m) = &mut d {
                    m.insert("ad".into(), json!(self.authentic_data));
                    m.insert("aa".into(), json!(self.authoritative));
                    m.insert("rrsig_present".into(), json!(self.rrsig_present));
                }
                d
            }
            None => json!({
                "validated": self.authentic_data,
                "source": "resolver-ad-bit",
                "ad": self.authentic_data,
                "aa": self.authoritative,
                "rrsig_present": self.rrsig_present,
                "summary": self.dnssec_summary(),
            }),
        };
        json!({
            "ip": self.ip.map(|ip| ip.to_string()),
            "name": self.name,
            "server": self.server.addr.to_string(),
            "rcode": rcode_mnemonic(self.rcode),
            "key": self.expected.map(|k| key_base64(&k)),
            "records": records,
            "dnssec": dnssec,
            "aliases": self.aliases,
            "ok": self.ok(),
        })
    }
}

/// The RFC 1035 / RFC 6895 mnemonic of a response code (`NOERROR`, `NXDOMAIN`, ...).
pub fn rcode_mnemonic(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No answer.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered with an error (SERVFAIL is what a validating
    /// resolver returns for records that fail validation).
    #[error("{server} answered {code} for {name} IPSECKEY{hint}")]
    Failed {
        /// the server
        server: Server,
        /// the owner name
        name: String,
        /// the response code
        code: ResponseCode,
        /// advice
        hint: &'static str,
    },
    /// Building the query failed.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A DS trust anchor that no DNSKEY of its zone matches.
    #[error("{anchor}: {why}")]
    Anchor {
        /// `FILE:LINE`
        anchor: String,
        /// what is wrong
        why: String,
    },
}

/// Queries `server` for the IPSECKEY records of `ip` and checks them against
/// `expected`; with `dnssec` (the `--trust-anchor` anchors, maybe none),
/// also validates the answer here, at `now` (Unix seconds).
pub async fn verify(
    server: &Server,
    ip: IpAddr,
    expected: Option<[u8; 32]>,
    dnssec: Option<(&[Anchor], i64)>,
) -> Result<Report, VerifyError> {
    verify_name(server, &reverse_name(ip), Some(ip), expected, dnssec).await
}

/// [`verify`] for any owner name: `ip` is the address it is the reverse name
/// of, `None` for a wildcard.
pub async fn verify_name(
    server: &Server,
    owner: &DomainName,
    ip: Option<IpAddr>,
    expected: Option<[u8; 32]>,
    dnssec: Option<(&[Anchor], i64)>,
) -> Result<Report, VerifyError> {
    let name = to_hickory_name(owner)?;
    let mut id = [0u8; 2];
    getrandom::fill(&mut id).map_err(|e| UpdateError::Internal(format!("OS randomness: {e}")))?;
    let mut m = Message::new(u16::from_be_bytes(id), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), IPSECKEY));
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_dnssec_ok(true);
    m.set_edns(edns);

    let response = server.exchange(m, Transport::Udp).await?;
    let code = response.response_code;
    if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
        let hint = match code {
            ResponseCode::ServFail => {
                ": a validating resolver answers SERVFAIL when DNSSEC validation fails (check the \
                 zone's signatures and the DS in the parent), otherwise see the server's log"
            }
            ResponseCode::Refused => {
                ": it does not answer for this name; use --server with a resolver that does"
            }
            _ => "",
        };
        return Err(VerifyError::Failed {
            server: *server,
            name: name.to_ascii(),
            code,
            hint,
        });
    }
    let mut report = Report {
        ip,
        name: name.to_ascii(),
        server: *server,
        rcode: code,
        authentic_data: response.authentic_data,
        authoritative: response.authoritative,
        rrsig_present: false,
        aliases: Vec::new(),
        records: Vec::new(),
        expected,
        validation: None,
    };
    for r in &response.answers {
        match (&r.data, r.record_type()) {
            (RData::CNAME(target), _) => report.aliases.push(format!("{} -> {}", r.name, target.0)),
            (RData::Unknown { rdata, .. }, t) if t == IPSECKEY => {
                let bytes = rdata.anything.clone();
                let decoded = Ipseckey::parse_wire(&bytes).map_err(|e| e.to_string());
                let matches = match (&decoded, expected) {
                    (Ok(k), Some(want)) => k.ed25519_key() == Some(want),
                    _ => false,
                };
                report.records.push(Found {
                    ttl: r.ttl,
                    rdata: bytes,
                    decoded,
                    matches,
                });
            }
            (_, RecordType::RRSIG) => report.rrsig_present = true,
            _ => {}
        }
    }
    report
        .records
        .sort_by_key(|f| f.decoded.as_ref().map(|k| k.precedence).unwrap_or(u8::MAX));
    if let Some((anchors, now)) = dnssec {
        report.validation = Some(crate::dnssec::validate(server, &name, anchors, now).await?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oemesh_core::crypto::ed25519::Ed25519SigningKey;
    use oemesh_core::ipseckey::Gateway;

    fn found(rdata: Vec<u8>) -> Found {
        let decoded = Ipseckey::parse_wire(&rdata).map_err(|e| e.to_string());
        Found {
            ttl: 60,
            rdata,
            decoded,
            matches: false,
        }
    }

    #[test]
    fn undecodable_and_unusable_records_have_reasons() {
        let bad = found(vec![10, 9, 4, 1, 2, 3]);
        assert!(!bad.usable());
        assert!(
            bad.problem().unwrap().contains("gateway type 9"),
            "{:?}",
            bad.problem()
        );
        let short = found(vec![10]);
        assert!(
            short.problem().unwrap().contains("truncated"),
            "{:?}",
            short.problem()
        );
        let mut rsa = Vec::new();
        Ipseckey {
            precedence: 10,
            gateway: Gateway::None,
            algorithm: oemesh_core::ipseckey::Algorithm::RSA,
            public_key: vec![1, 2, 3],
        }
        .emit_wire(&mut rsa);
        assert!(found(rsa).problem().unwrap().contains("not an Ed25519 key"));
        let mut good = Vec::new();
        let key = Ed25519SigningKey::from_seed(&[7; 32])
            .public_key()
            .to_bytes();
        Ipseckey::ed25519(10, Gateway::None, key).emit_wire(&mut good);
        assert!(found(good).usable());
        // The identity point: a key under which "signatures" verify for any
        // message with a lenient verifier; the agents refuse it, and so does this.
        let mut identity = [0; 32];
        identity[0] = 1;
        let mut weak = Vec::new();
        Ipseckey::ed25519(10, Gateway::None, identity).emit_wire(&mut weak);
        let problem = found(weak).problem().unwrap();
        assert!(problem.contains("small-order"), "{problem}");
        let mut not_a_point = Vec::new();
        Ipseckey::ed25519(10, Gateway::None, [2; 32]).emit_wire(&mut not_a_point);
        let problem = found(not_a_point).problem();
        assert!(problem.is_some(), "{problem:?}");
    }

    #[test]
    fn rcode_names() {
        assert_eq!(rcode_mnemonic(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_mnemonic(ResponseCode::NotAuth), "RCODE9");
    }
}

//! The IPSECKEY record for a host key, and the ways `dnskeys record` prints it.
//!
//! The record is published at the address's reverse name (RFC 4025 §1.2): it
//! says "IKE with this address is authenticated with this key". Algorithm 4 is
//! EdDSA with the 32-byte RFC 8080 §3 key (RFC 9373).

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;
use oemesh_core::ipseckey::{DomainName, Gateway, Ipseckey, Record, reverse_name};
use serde_json::{Value, json};

use crate::subnet::{GatewayProblem, Subnet, check_gateway};

/// Precedence when none is given (RFC 4025 §2.2: lower is tried first).
pub const DEFAULT_PRECEDENCE: u8 = 10;
/// TTL when none is given, in seconds.
pub const DEFAULT_TTL: u32 = 3600;

/// A `--gateway` value that is none of `none`, an IP address or a domain name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--gateway {value:?} is not 'none', an IP address or a domain name: {reason}")]
pub struct GatewayError {
    /// the text given
    pub value: String,
    /// why it is not a name
    pub reason: String,
}

/// Parses `--gateway`: `none` (or `.`), an IPv4 or IPv6 address, or a domain name.
pub fn parse_gateway(text: &str) -> Result<Gateway, GatewayError> {
    if text.eq_ignore_ascii_case("none") || text == "." {
        return Ok(Gateway::None);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V4(a) => Gateway::Ipv4(a),
            IpAddr::V6(a) => Gateway::Ipv6(a),
        });
    }
    DomainName::from_ascii(text)
        .map(Gateway::Name)
        .map_err(|e| GatewayError {
            value: text.to_owned(),
            reason: e.to_string(),
        })
}

/// Where a record is published: `--ip` or `--subnet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// One host: its reverse name.
    Host(IpAddr),
    /// A site behind a gateway: the wildcard under the subnet's reverse zone.
    Subnet(Subnet),
}

impl Owner {
    /// The owner name: the host's reverse name or the subnet's wildcard.
    pub fn name(&self) -> DomainName {
        match self {
            Owner::Host(ip) => reverse_name(*ip),
            Owner::Subnet(s) => s.wildcard(),
        }
    }

    /// What the flags said, for messages: `--ip 192.0.2.10`, `--subnet 10.1.0.0/24`.
    pub fn flag(&self) -> String {
        match self {
            Owner::Host(ip) => format!("--ip {ip}"),
            Owner::Subnet(s) => format!("--subnet {s}"),
        }
    }

    /// Checks a record's gateway for this owner: anything goes for a host; a
    /// subnet's wildcard needs a gateway outside the subnet ([`check_gateway`]).
    pub fn check_gateway(&self, gateway: &Gateway) -> Result<(), GatewayProblem> {
        match self {
            Owner::Host(_) => Ok(()),
            Owner::Subnet(s) => check_gateway(s, gateway),
        }
    }
}

/// The record publishing `public_key` at `owner` (no gateway check: see [`Owner::check_gateway`]).
pub fn owner_record(
    owner: &Owner,
    public_key: [u8; 32],
    precedence: u8,
    gateway: Gateway,
    ttl: u32,
) -> Record {
    Record {
        owner: owner.name(),
        ttl,
        rdata: Ipseckey::ed25519(precedence, gateway, public_key),
    }
}

/// The record publishing `public_key` for `ip`.
pub fn host_record(
    ip: IpAddr,
    public_key: [u8; 32],
    precedence: u8,
    gateway: Gateway,
    ttl: u32,
) -> Record {
    Record {
        owner: reverse_name(ip),
        ttl,
        rdata: Ipseckey::ed25519(precedence, gateway, public_key),
    }
}

/// How `dnskeys record` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One zone-file line, for a zone file or `named-checkzone`.
    Zone,
    /// Input for `nsupdate -k TSIGKEY`.
    Nsupdate,
    /// A JSON object (see docs/dnskeys.md).
    Json,
}

/// Renders `record` in `format`, ending with a newline.
pub fn render(record: &Record, format: Format) -> String {
    match format {
        Format::Zone => format!("{record}\n"),
        Format::Nsupdate => {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "; feed to: nsupdate -k TSIG-KEY-FILE (add a 'server HOST PORT' line first)"
            );
            let _ = writeln!(s, "update add {record}");
            let _ = writeln!(s, "send");
            s
        }
        Format::Json => {
            let mut v = rdata_json(&record.rdata);
            if let Value::Object(m) = &mut v {
                m.insert("owner".into(), json!(record.owner.to_string()));
                m.insert("ttl".into(), json!(record.ttl));
                m.insert("class".into(), json!("IN"));
                m.insert("type".into(), json!("IPSECKEY"));
                m.insert("zone_line".into(), json!(record.to_string()));
            }
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
    }
}

/// The JSON form of one RDATA, as `record --format json` and `verify --json` print it.
pub fn rdata_json(k: &Ipseckey) -> Value {
    let gateway = match &k.gateway {
        Gateway::None => ".".to_owned(),
        Gateway::Ipv4(a) => a.to_string(),
        Gateway::Ipv6(a) => a.to_string(),
        Gateway::Name(n) => n.to_string(),
    };
    json!({
        "precedence": k.precedence,
        "gateway_type": k.gateway_type(),
        "gateway": gateway,
        "algorithm": k.algorithm.0,
        "public_key": base64::engine::general_purpose::STANDARD.encode(&k.public_key),
        "rdata": k.to_string(),
    })
}

/// Base64 (standard alphabet, padded) of a public key, as `dnskeys pubkey` prints it.
pub fn key_base64(public_key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(public_key)
}

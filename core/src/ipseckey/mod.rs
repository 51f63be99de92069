//! The IPSECKEY resource record, RFC 4025, with the EdDSA algorithm of RFC 9373.
//!
//! RR type 45. RDATA on the wire:
//!
//! ```text
//!  precedence(u8) gateway-type(u8) algorithm(u8) gateway(variable) public-key(rest)
//! ```
//!
//! Presentation form (RFC 4025 §3.1): `10 0 4 . <base64 key>`; BIND may also
//! write it in parentheses over several lines, and any RR may appear in the
//! generic RFC 3597 form `\# <len> <hex>`.
//!
//! API CONTRACT (stub, filled in by the codec work): the signatures below are what
//! `dnskeys` and the agent build against; keep them.

// Stub bodies until the codec lands.
#![allow(clippy::todo, unused_variables)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The RR TYPE code of IPSECKEY (RFC 4025 §2).
pub const RR_TYPE: u16 = 45;

/// An absolute DNS name, validated: labels of 1..=63 octets, at most 255 octets
/// in wire form. Comparison is ASCII case-insensitive.
#[derive(Clone)]
pub struct DomainName {
    /// Labels without the root, as raw octets (may hold any byte, escaped in text).
    labels: Vec<Vec<u8>>,
}

/// The public key algorithm field (RFC 4025 §2.4, RFC 9373 §2). Unknown values are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Algorithm(pub u8);

impl Algorithm {
    /// 0: no key present.
    pub const NONE: Self = Self(0);
    /// 1: DSA (RFC 4025).
    pub const DSA: Self = Self(1);
    /// 2: RSA (RFC 4025).
    pub const RSA: Self = Self(2);
    /// 3: ECDSA (RFC 8005).
    pub const ECDSA: Self = Self(3);
    /// 4: EdDSA, the RFC 8080 §3 key form (RFC 9373). Ed25519 keys are 32 bytes.
    pub const EDDSA: Self = Self(4);
}

/// Where to send IKE for this key (RFC 4025 §2.3, §2.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Gateway {
    /// Type 0: no gateway; the host itself is the peer. Written `.`.
    None,
    /// Type 1: an IPv4 gateway.
    Ipv4(Ipv4Addr),
    /// Type 2: an IPv6 gateway.
    Ipv6(Ipv6Addr),
    /// Type 3: a domain name, uncompressed on the wire.
    Name(DomainName),
}

/// One IPSECKEY RDATA.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ipseckey {
    /// Lower is tried first.
    pub precedence: u8,
    /// The gateway; its variant decides the gateway-type octet.
    pub gateway: Gateway,
    /// The key algorithm; unknown values are kept as they are.
    pub algorithm: Algorithm,
    /// The raw public key bytes (for EdDSA: the 32-byte Ed25519 key).
    pub public_key: Vec<u8>,
}

/// A full resource record as in a zone file: `owner ttl IN IPSECKEY rdata`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// The owner name, absolute.
    pub owner: DomainName,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The RDATA.
    pub rdata: Ipseckey,
}

/// Why RDATA or a name on the wire did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the fixed header or the gateway needs.
    #[error("IPSECKEY RDATA truncated: need {need} bytes, have {have}")]
    Truncated {
        /// bytes needed
        need: usize,
        /// bytes present
        have: usize,
    },
    /// Gateway type other than 0..=3 (RFC 4025 §2.3 defines no others; the
    /// gateway length is then unknown, so the RDATA cannot be split).
    #[error("IPSECKEY gateway type {0} is not defined (RFC 4025 §2.3 knows 0-3)")]
    UnknownGatewayType(u8),
    /// A gateway domain name that is malformed or compressed.
    #[error("IPSECKEY gateway name is malformed: {0}")]
    BadName(&'static str),
}

/// Why presentation (zone file) text did not parse. Messages name the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresentationError {
    /// Detail is a human-readable description naming the offending field and value.
    #[error("{0}")]
    Invalid(String),
    /// The RFC 3597 form decoded, but the bytes are not valid RDATA.
    #[error("generic RDATA (\\# form) is not a valid IPSECKEY: {0}")]
    Wire(#[from] WireError),
}

/// Why a string is not a domain name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Detail names the problem (empty label, label over 63, name over 255, bad escape).
    #[error("invalid domain name {name:?}: {reason}")]
    Invalid {
        /// the input
        name: String,
        /// what is wrong
        reason: &'static str,
    },
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> Self {
        Self { labels: Vec::new() }
    }
    /// Parses presentation form (`host.example.` or `host.example`, treated as
    /// absolute), with `\.` and `\DDD` escapes.
    pub fn from_ascii(text: &str) -> Result<Self, NameError> {
        todo!()
    }
    /// Labels without the root label.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        self.labels.iter().map(Vec::as_slice)
    }
    /// True when `self` equals `zone` or lies below it (case-insensitive).
    pub fn is_subdomain_of(&self, zone: &DomainName) -> bool {
        todo!()
    }
    /// The parent name (one label less); `None` for the root.
    pub fn parent(&self) -> Option<DomainName> {
        todo!()
    }
    /// Uncompressed wire form, root label included.
    pub fn emit_wire(&self, out: &mut Vec<u8>) {
        todo!()
    }
    /// Length of the uncompressed wire form.
    pub fn wire_len(&self) -> usize {
        todo!()
    }
    /// Parses an uncompressed wire name at the start of `buf`; returns it and the bytes used.
    pub fn parse_wire(buf: &[u8]) -> Result<(Self, usize), WireError> {
        todo!()
    }
}

/// Displays the absolute presentation form with the trailing dot (`.` for the root).
impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl Ipseckey {
    /// An EdDSA (algorithm 4) record for a 32-byte Ed25519 key.
    pub fn ed25519(precedence: u8, gateway: Gateway, public_key: [u8; 32]) -> Self {
        Self {
            precedence,
            gateway,
            algorithm: Algorithm::EDDSA,
            public_key: public_key.to_vec(),
        }
    }
    /// The gateway-type octet (0..=3) implied by [`Ipseckey::gateway`].
    pub fn gateway_type(&self) -> u8 {
        todo!()
    }
    /// Parses RDATA (the RR's RDATA bytes only).
    pub fn parse_wire(rdata: &[u8]) -> Result<Self, WireError> {
        todo!()
    }
    /// Appends the RDATA wire form to `out`.
    pub fn emit_wire(&self, out: &mut Vec<u8>) {
        todo!()
    }
    /// Length of the RDATA wire form.
    pub fn wire_len(&self) -> usize {
        todo!()
    }
    /// Parses the RDATA part of presentation form: `10 0 4 . KEY`, possibly in
    /// parentheses across lines with `;` comments, or RFC 3597 `\# len hex`.
    pub fn parse_presentation(text: &str) -> Result<Self, PresentationError> {
        todo!()
    }
    /// The Ed25519 key, when this is algorithm 4 with a 32-byte key.
    pub fn ed25519_key(&self) -> Option<[u8; 32]> {
        todo!()
    }
}

/// Displays the one-line presentation form, `10 0 4 . BASE64`.
impl fmt::Display for Ipseckey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl Record {
    /// Parses one zone-file record `owner [ttl] [IN] IPSECKEY rdata` (TTL and class in
    /// either order, as BIND allows; a missing TTL is an error, since there is no `$TTL` here).
    pub fn parse_presentation(text: &str) -> Result<Self, PresentationError> {
        todo!()
    }
}

/// Displays `owner ttl IN IPSECKEY rdata`.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

/// The reverse owner name an address's keys live at: `d.c.b.a.in-addr.arpa.` for
/// IPv4 (RFC 1035 §3.5), 32 nibbles under `ip6.arpa.` for IPv6 (RFC 3596 §2.5).
pub fn reverse_name(addr: IpAddr) -> DomainName {
    todo!()
}

/// `DomainName("host.example.")`.
impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({:?})", self.to_string())
    }
}

/// ASCII case-insensitive (RFC 4343).
impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        todo!()
    }
}
impl Eq for DomainName {}

/// Consistent with the case-insensitive equality.
impl std::hash::Hash for DomainName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        todo!()
    }
}

/// Names known values (`EdDSA(4)`) and prints unknown ones as numbers.
impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

//! The IPSECKEY resource record, RFC 4025, with the EdDSA algorithm of RFC 9373.
//!
//! RR type 45. RDATA on the wire (RFC 4025 §2.1):
//!
//! ```text
//!  precedence(u8) gateway-type(u8) algorithm(u8) gateway(variable) public-key(rest)
//! ```
//!
//! Presentation form (RFC 4025 §3.1): `10 0 4 . <base64 key>`; BIND may also
//! write it in parentheses over several lines, and any RR may appear in the
//! generic RFC 3597 form `\# <len> <hex>`.
//!
//! The module is split by concept:
//!
//! - `name`: [`DomainName`], the uncompressed names of gateway type 3 and owners;
//! - `wire`: [`Ipseckey::parse_wire`] / [`Ipseckey::emit_wire`];
//! - `text` (tokenizer) and `presentation`: zone-file text for RDATA and [`Record`];
//! - `reverse`: [`reverse_name`], where an address's keys are published.
//!
//! ```
//! use oemesh_core::ipseckey::{Gateway, Ipseckey, Record};
//!
//! let rr = Record::parse_presentation(
//!     "38.2.0.192.in-addr.arpa. 7200 IN IPSECKEY ( 10 1 2\n\
//!      192.0.2.38 ; the gateway\n\
//!      AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ== )",
//! )?;
//! assert_eq!(rr.rdata.gateway, Gateway::Ipv4("192.0.2.38".parse().unwrap()));
//!
//! let mut wire = Vec::new();
//! rr.rdata.emit_wire(&mut wire);
//! assert_eq!(Ipseckey::parse_wire(&wire)?, rr.rdata);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! API CONTRACT: the signatures here are what `dnskeys` and the agent build against.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

mod name;
mod presentation;
mod reverse;
mod text;
mod wire;

pub use name::{DomainName, NameError};
pub use presentation::GenericRdata;
pub use reverse::{ReverseZoneError, reverse_name, reverse_zone, wildcard_name};

/// The RR TYPE code of IPSECKEY (RFC 4025 §2).
pub const RR_TYPE: u16 = 45;

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

    /// The IANA registry's short name for a known value (`"EdDSA"`), `None` otherwise.
    pub fn name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("None"),
            1 => Some("DSA"),
            2 => Some("RSA"),
            3 => Some("ECDSA"),
            4 => Some("EdDSA"),
            _ => None,
        }
    }
}

/// Names known values (`EdDSA(4)`) and prints unknown ones as numbers.
impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "Algorithm({})", self.0),
        }
    }
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

impl Gateway {
    /// The gateway-type octet for this variant (RFC 4025 §2.3).
    pub fn type_code(&self) -> u8 {
        match self {
            Gateway::None => 0,
            Gateway::Ipv4(_) => 1,
            Gateway::Ipv6(_) => 2,
            Gateway::Name(_) => 3,
        }
    }
}

/// What each defined gateway type holds, for messages: `"IPv4"` for 1.
fn gateway_type_name(code: u8) -> &'static str {
    match code {
        0 => "none",
        1 => "IPv4",
        2 => "IPv6",
        3 => "domain name",
        _ => "undefined",
    }
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
        self.gateway.type_code()
    }

    /// The Ed25519 key, when this is algorithm 4 with a 32-byte key.
    ///
    /// RFC 9373 carries every EdDSA key in the RFC 8080 §3 form, so an Ed448 key
    /// (57 bytes) is also algorithm 4; it yields `None` here.
    pub fn ed25519_key(&self) -> Option<[u8; 32]> {
        if self.algorithm != Algorithm::EDDSA {
            return None;
        }
        self.public_key.as_slice().try_into().ok()
    }
}

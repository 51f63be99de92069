//! The Identification payloads IDi and IDr (RFC 7296 §3.5, ID_NULL from RFC 7619).
//!
//! ```text
//! |   ID Type     |                 RESERVED                      |
//! |                   Identification Data ~                       |
//! ```
//!
//! The body is also what AUTH signs: the `RestOfInitIDPayload` /
//! `RestOfRespIDPayload` octets of §2.15 are exactly [`Identity::emit`]'s output.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::IdType;
use crate::ike::message::reader::Reader;

/// An identity as carried in IDi or IDr.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_IPV4_ADDR: four octets.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR: sixteen octets.
    Ipv6(Ipv6Addr),
    /// ID_FQDN: the name's octets, no terminator. Kept as bytes, not checked.
    Fqdn(Vec<u8>),
    /// ID_NULL (RFC 7619 §3) with empty data, for NULL authentication.
    Null,
    /// Any other type (and ID_NULL with data), kept as it came.
    Other {
        /// the ID Type
        ty: IdType,
        /// the Identification Data
        data: Vec<u8>,
    },
}

impl Identity {
    /// Whether it is an address (ID_IPV4_ADDR or ID_IPV6_ADDR).
    pub fn is_address(&self) -> bool {
        matches!(self, Identity::Ipv4(_) | Identity::Ipv6(_))
    }

    /// An ID_FQDN identity.
    pub fn fqdn(name: &str) -> Self {
        Identity::Fqdn(name.as_bytes().to_vec())
    }

    /// The ID Type written for this identity.
    pub fn id_type(&self) -> IdType {
        match self {
            Identity::Ipv4(_) => IdType::IPV4_ADDR,
            Identity::Ipv6(_) => IdType::IPV6_ADDR,
            Identity::Fqdn(_) => IdType::FQDN,
            Identity::Null => IdType::NULL,
            Identity::Other { ty, .. } => *ty,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Identity::Ipv4(_) => 4,
            Identity::Ipv6(_) => 16,
            Identity::Fqdn(name) => name.len(),
            Identity::Null => 0,
            Identity::Other { data, .. } => data.len(),
        }
    }

    /// Parses the body. Address types must have their exact size.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "ID payload");
        let ty = IdType(r.u8()?);
        r.take(3)?;
        let data = r.rest();
        let exact = |expected: usize| {
            if data.len() == expected {
                Ok(())
            } else {
                Err(Error::IdLength {
                    ty,
                    length: data.len(),
                    expected,
                })
            }
        };
        Ok(match ty {
            IdType::IPV4_ADDR => {
                exact(4)?;
                Identity::Ipv4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
            }
            IdType::IPV6_ADDR => {
                exact(16)?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(data);
                Identity::Ipv6(Ipv6Addr::from(octets))
            }
            IdType::FQDN => Identity::Fqdn(budget.copy(data)?),
            IdType::NULL if data.is_empty() => Identity::Null,
            _ => Identity::Other {
                ty,
                data: budget.copy(data)?,
            },
        })
    }

    /// Appends the body (ID Type, three reserved octets, data).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.id_type().0, 0, 0, 0]);
        match self {
            Identity::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Identity::Ipv6(a) => out.extend_from_slice(&a.octets()),
            Identity::Fqdn(name) => out.extend_from_slice(name),
            Identity::Null => {}
            Identity::Other { data, .. } => out.extend_from_slice(data),
        }
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data_len()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => write!(f, "Ipv4({a})"),
            Identity::Ipv6(a) => write!(f, "Ipv6({a})"),
            Identity::Fqdn(name) => write!(f, "Fqdn({:?})", String::from_utf8_lossy(name)),
            Identity::Null => f.write_str("Null"),
            Identity::Other { ty, data } => write!(f, "Other({ty:?}, {} bytes)", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: &[u8], expected: Identity) {
        let id = Identity::parse(body).unwrap();
        assert_eq!(id, expected);
        let mut out = Vec::new();
        id.emit(&mut out);
        assert_eq!(out, body);
        assert_eq!(id.buffer_len(), body.len());
    }

    #[test]
    fn vectors() {
        round_trip(
            &[1, 0, 0, 0, 10, 0, 77, 10],
            Identity::Ipv4(Ipv4Addr::new(10, 0, 77, 10)),
        );
        let mut v6 = vec![5, 0, 0, 0];
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        round_trip(&v6, Identity::Ipv6("2001:db8::1".parse().unwrap()));
        round_trip(b"\x02\0\0\0alice.example", Identity::fqdn("alice.example"));
        round_trip(&[13, 0, 0, 0], Identity::Null);
        round_trip(
            &[13, 0, 0, 0, 1],
            Identity::Other {
                ty: IdType::NULL,
                data: vec![1],
            },
        );
        round_trip(
            &[11, 0, 0, 0, 0xde, 0xad],
            Identity::Other {
                ty: IdType::KEY_ID,
                data: vec![0xde, 0xad],
            },
        );
        round_trip(
            &[99, 0, 0, 0],
            Identity::Other {
                ty: IdType(99),
                data: vec![],
            },
        );
    }

    #[test]
    fn wrong_address_size() {
        assert_eq!(
            Identity::parse(&[1, 0, 0, 0, 10, 0, 77]).unwrap_err(),
            Error::IdLength {
                ty: IdType::IPV4_ADDR,
                length: 3,
                expected: 4
            }
        );
        assert!(matches!(
            Identity::parse(&[5, 0, 0, 0, 1]),
            Err(Error::IdLength { .. })
        ));
        assert!(matches!(
            Identity::parse(&[1, 0]),
            Err(Error::Truncated { .. })
        ));
    }
}

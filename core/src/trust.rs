//! Who vouches for what (design.md, "The trust model"): the one rule that binds
//! a peer's IKE identity to the address an SA protects, for both roles.
//!
//! A key from DNS authenticates a peer only for the address it is published
//! for: the IPSECKEY at the reverse name of the address the SA protects. In
//! host-to-host OE that address is the peer's outer address (where its IKE
//! comes from, pinned at IKE_SA_INIT) and its traffic selector alike. So:
//!
//! | IDi / IDr | accepted when | key looked up at |
//! |---|---|---|
//! | ID_IPV4_ADDR, ID_IPV6_ADDR | it equals the address | the address's reverse name |
//! | ID_FQDN | the name's A/AAAA records include the address | the address's reverse name |
//! | ID_NULL with AUTH NULL (RFC 7619) | always, as *anonymous* | nowhere (binds to nothing) |
//! | anything else | never: AUTHENTICATION_FAILED | — |
//!
//! An FQDN is never where the key comes from: whoever controls a forward zone
//! can point a name at any address, but only the holder of the key published
//! at the address's reverse name can sign for it. The FQDN is checked (a name
//! that does not resolve to the address is a lie, and is refused) so that what
//! `oemesh peers` shows is true; its DNSSEC status joins the key's, the weaker
//! of the two counting.
//!
//! The IKE engine applies [`bind`] itself where no DNS is needed (an address
//! ID must be the address, in both roles); the OE decision machine applies it
//! to every peer it answers and does the lookups an FQDN needs.

use std::fmt;
use std::net::IpAddr;

use crate::ike::message::{IdType, Identity};
use crate::ipseckey::DomainName;

/// How a peer's identity is tied to the address its SA protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// An address ID equal to the address: nothing more to check.
    Address,
    /// An FQDN ID: accepted once the name's A/AAAA records include the address.
    Fqdn(DomainName),
    /// AUTH NULL: anonymous, bound to nothing; its ID is not evidence of anything.
    Anonymous,
}

/// Why an identity cannot be bound to the address. `Display` is the log line's
/// reason, naming the claimed ID and the address.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityRefused {
    /// An address ID that is not the address the SA protects.
    OtherAddress {
        /// What the peer claimed.
        claimed: IpAddr,
        /// The address the SA protects.
        addr: IpAddr,
    },
    /// An FQDN ID that is not a valid domain name.
    BadFqdn {
        /// The ID's bytes, lossily as text.
        claimed: String,
        /// The address the SA protects.
        addr: IpAddr,
    },
    /// ID_NULL with a signature: there is no key to check it against.
    NullIdSigned {
        /// The address the SA protects.
        addr: IpAddr,
    },
    /// An ID type with no rule (ID_RFC822_ADDR, ID_DER_ASN1_DN, ID_KEY_ID, …).
    UnsupportedType {
        /// The type claimed.
        ty: IdType,
        /// The address the SA protects.
        addr: IpAddr,
    },
    /// An FQDN whose A/AAAA records do not include the address.
    FqdnElsewhere {
        /// The name claimed.
        name: DomainName,
        /// The address the SA protects.
        addr: IpAddr,
        /// What the forward lookup said, for people.
        found: String,
    },
    /// An FQDN whose address records could not be had (DNS failed or timed out).
    FqdnUnconfirmed {
        /// The name claimed.
        name: DomainName,
        /// The address the SA protects.
        addr: IpAddr,
        /// Why, for people.
        why: String,
    },
}

impl fmt::Display for IdentityRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityRefused::OtherAddress { claimed, addr } => write!(
                f,
                "identity {claimed} is not the address {addr} the SA would protect"
            ),
            IdentityRefused::BadFqdn { claimed, addr } => {
                write!(
                    f,
                    "FQDN identity {claimed:?} from {addr} is not a domain name"
                )
            }
            IdentityRefused::NullIdSigned { addr } => {
                write!(f, "ID_NULL from {addr} with a signature (no key to check)")
            }
            IdentityRefused::UnsupportedType { ty, addr } => {
                write!(
                    f,
                    "identity of type {ty:?} from {addr} has no published key"
                )
            }
            IdentityRefused::FqdnElsewhere { name, addr, found } => write!(
                f,
                "FQDN identity {name} does not resolve to {addr} ({found})"
            ),
            IdentityRefused::FqdnUnconfirmed { name, addr, why } => write!(
                f,
                "FQDN identity {name} could not be checked against {addr}: {why}"
            ),
        }
    }
}

/// The address an SA protects, as compared: an IPv4-mapped IPv6 address is
/// the IPv4 address it carries.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// Binds `id`, presented with AUTH NULL (`null_auth`) or a signature, to the
/// address `addr` that the SA would protect. The one place of this rule.
pub fn bind(id: &Identity, addr: IpAddr, null_auth: bool) -> Result<Binding, IdentityRefused> {
    if null_auth {
        return Ok(Binding::Anonymous);
    }
    let addr = canonical(addr);
    let claimed = match id {
        Identity::Ipv4(a) => IpAddr::V4(*a),
        Identity::Ipv6(a) => canonical(IpAddr::V6(*a)),
        Identity::Fqdn(bytes) => {
            let name = std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| DomainName::from_ascii(s).ok())
                .ok_or_else(|| IdentityRefused::BadFqdn {
                    claimed: String::from_utf8_lossy(bytes).into_owned(),
                    addr,
                })?;
            return Ok(Binding::Fqdn(name));
        }
        Identity::Null => return Err(IdentityRefused::NullIdSigned { addr }),
        other => {
            return Err(IdentityRefused::UnsupportedType {
                ty: other.id_type(),
                addr,
            });
        }
    };
    if claimed == addr {
        Ok(Binding::Address)
    } else {
        Err(IdentityRefused::OtherAddress { claimed, addr })
    }
}

/// The second half of an FQDN binding: whether the name's A/AAAA records
/// (`addrs`) include the address the SA protects.
pub fn fqdn_resolves_to(
    name: &DomainName,
    addrs: &[IpAddr],
    addr: IpAddr,
) -> Result<(), IdentityRefused> {
    let addr = canonical(addr);
    if addrs.iter().any(|a| canonical(*a) == addr) {
        return Ok(());
    }
    let found = if addrs.is_empty() {
        "no address records".to_owned()
    } else {
        let list: Vec<String> = addrs.iter().take(4).map(ToString::to_string).collect();
        let more = if addrs.len() > 4 { ", …" } else { "" };
        format!("it resolves to {}{more}", list.join(", "))
    };
    Err(IdentityRefused::FqdnElsewhere {
        name: name.clone(),
        addr,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_id_must_be_the_address() {
        let a = ip("192.0.2.10");
        assert_eq!(
            bind(&Identity::Ipv4([192, 0, 2, 10].into()), a, false),
            Ok(Binding::Address)
        );
        assert_eq!(
            bind(&Identity::Ipv4([192, 0, 2, 20].into()), a, false),
            Err(IdentityRefused::OtherAddress {
                claimed: ip("192.0.2.20"),
                addr: a
            })
        );
        let v6 = ip("2001:db8::1");
        assert_eq!(
            bind(&Identity::Ipv6("2001:db8::1".parse().unwrap()), v6, false),
            Ok(Binding::Address)
        );
        // An IPv4-mapped ID is the IPv4 address it carries.
        let mapped = Identity::Ipv6("::ffff:192.0.2.10".parse().unwrap());
        assert_eq!(bind(&mapped, a, false), Ok(Binding::Address));
    }

    #[test]
    fn fqdn_ids_need_their_forward_records() {
        let a = ip("192.0.2.10");
        let Ok(Binding::Fqdn(name)) = bind(&Identity::fqdn("alice.example"), a, false) else {
            panic!()
        };
        assert_eq!(name.to_string(), "alice.example.");
        assert!(fqdn_resolves_to(&name, &[ip("198.51.100.1"), a], a).is_ok());
        let err = fqdn_resolves_to(&name, &[ip("198.51.100.1")], a).unwrap_err();
        assert_eq!(
            err.to_string(),
            "FQDN identity alice.example. does not resolve to 192.0.2.10 (it resolves to 198.51.100.1)"
        );
        assert!(matches!(
            bind(&Identity::Fqdn(b"bad name\xff".to_vec()), a, false),
            Err(IdentityRefused::BadFqdn { .. })
        ));
    }

    #[test]
    fn null_and_other_types() {
        let a = ip("192.0.2.10");
        assert_eq!(bind(&Identity::Null, a, true), Ok(Binding::Anonymous));
        // AUTH NULL binds to nothing, whatever ID it names.
        assert_eq!(
            bind(&Identity::Ipv4([192, 0, 2, 20].into()), a, true),
            Ok(Binding::Anonymous)
        );
        assert_eq!(
            bind(&Identity::Null, a, false),
            Err(IdentityRefused::NullIdSigned { addr: a })
        );
        let other = Identity::Other {
            ty: IdType::RFC822_ADDR,
            data: b"a@b".to_vec(),
        };
        assert!(matches!(
            bind(&other, a, false),
            Err(IdentityRefused::UnsupportedType { .. })
        ));
    }
}

//! Reverse owner names: where the IPSECKEY for an address is published
//! (RFC 4025 §1.2).

use std::net::IpAddr;

use super::DomainName;

/// The reverse owner name an address's keys live at: `d.c.b.a.in-addr.arpa.` for
/// IPv4 (RFC 1035 §3.5), 32 nibbles under `ip6.arpa.` for IPv6 (RFC 3596 §2.5).
///
/// IPv6 nibbles are written in lower case, least significant first, as `dig -x` does.
pub fn reverse_name(addr: IpAddr) -> DomainName {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // At most 34 labels of at most 7 octets: far inside the limits. One
    // buffer of labels, not a `Vec` per label.
    let mut text = String::with_capacity(73);
    match addr {
        IpAddr::V4(v4) => {
            for o in v4.octets().iter().rev() {
                text.push_str(&o.to_string());
                text.push('.');
            }
            text.push_str("in-addr.arpa.");
        }
        IpAddr::V6(v6) => {
            for octet in v6.octets().iter().rev() {
                for nibble in [octet & 0x0f, octet >> 4] {
                    text.push(HEX.get(usize::from(nibble)).map_or('0', |&c| char::from(c)));
                    text.push('.');
                }
            }
            text.push_str("ip6.arpa.");
        }
    }
    DomainName::from_ascii(&text).unwrap_or_else(|_| DomainName::root())
}

/// Why a prefix has no reverse zone of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReverseZoneError {
    /// The prefix length is not on a label boundary: a multiple of 8 for
    /// IPv4 (one octet per label), of 4 for IPv6 (one nibble per label).
    #[error(
        "/{len} is not on a reverse-zone boundary (a multiple of {step} for IPv{family}): \
         publish for the next shorter or longer prefix that is, or one record per host"
    )]
    NotOnBoundary {
        /// The prefix length given.
        len: u8,
        /// 8 or 4.
        step: u8,
        /// 4 or 6.
        family: u8,
    },
    /// Longer than the address, or a whole family (no reverse zone names "every address").
    #[error("/{len} is not a prefix of an IPv{family} subnet (1 to {max} bits)")]
    BadLength {
        /// The prefix length given.
        len: u8,
        /// 4 or 6.
        family: u8,
        /// 32 or 128.
        max: u8,
    },
}

/// The reverse zone of the subnet `addr/len` (host bits ignored): for
/// `10.1.0.0/24`, `0.1.10.in-addr.arpa.`; for `2001:db8:1::/48`,
/// `1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.`. Only prefixes on label boundaries
/// have one (RFC 2317's classless delegation is not a zone of names under
/// which a wildcard covers exactly the subnet).
pub fn reverse_zone(addr: IpAddr, len: u8) -> Result<DomainName, ReverseZoneError> {
    let (family, max, step) = match addr {
        IpAddr::V4(_) => (4, 32, 8),
        IpAddr::V6(_) => (6, 128, 4),
    };
    if len == 0 || len > max {
        return Err(ReverseZoneError::BadLength { len, family, max });
    }
    if !len.is_multiple_of(step) {
        return Err(ReverseZoneError::NotOnBoundary { len, step, family });
    }
    let full = reverse_name(addr);
    // The host's name has one label per step; the zone drops the labels of
    // the host bits (the leftmost ones).
    let drop = usize::from((max - len) / step);
    let labels: Vec<&[u8]> = full.labels().skip(drop).collect();
    Ok(DomainName::from_labels(labels).unwrap_or_else(|_| DomainName::root()))
}

/// The owner name of the wildcard IPSECKEY that covers the subnet `addr/len`
/// (RFC 4592): `*.` and [`reverse_zone`]. Every address inside the subnet
/// whose own reverse name holds no records is answered from it; a query for
/// this very name returns the wildcard's own records, which is how a
/// responder checks that a whole subnet is vouched for.
pub fn wildcard_name(addr: IpAddr, len: u8) -> Result<DomainName, ReverseZoneError> {
    let zone = reverse_zone(addr, len)?;
    let labels = std::iter::once(&b"*"[..]).chain(zone.labels());
    Ok(DomainName::from_labels(labels).unwrap_or_else(|_| DomainName::root()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4() {
        let name = reverse_name("192.0.2.38".parse().unwrap());
        assert_eq!(name.to_string(), "38.2.0.192.in-addr.arpa.");
    }

    #[test]
    fn zones_and_wildcards() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            reverse_zone(ip("10.1.0.77"), 24).unwrap().to_string(),
            "0.1.10.in-addr.arpa."
        );
        assert_eq!(
            wildcard_name(ip("10.1.0.0"), 16).unwrap().to_string(),
            "*.1.10.in-addr.arpa."
        );
        assert_eq!(
            reverse_zone(ip("10.1.0.5"), 32).unwrap(),
            reverse_name(ip("10.1.0.5"))
        );
        assert_eq!(
            wildcard_name(ip("2001:db8:1::"), 48).unwrap().to_string(),
            "*.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert_eq!(
            reverse_zone(ip("2001:db8:1::"), 52).unwrap().to_string(),
            "0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        let err = wildcard_name(ip("10.1.0.0"), 23).unwrap_err();
        assert_eq!(
            err,
            ReverseZoneError::NotOnBoundary {
                len: 23,
                step: 8,
                family: 4
            }
        );
        assert!(
            err.to_string()
                .contains("/23 is not on a reverse-zone boundary")
        );
        assert!(matches!(
            wildcard_name(ip("10.0.0.0"), 0),
            Err(ReverseZoneError::BadLength { .. })
        ));
        assert!(matches!(
            wildcard_name(ip("::"), 129),
            Err(ReverseZoneError::BadLength { .. })
        ));
    }

    #[test]
    fn ipv6() {
        let name = reverse_name("2001:db8::567:89ab".parse().unwrap());
        assert_eq!(
            name.to_string(),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }
}

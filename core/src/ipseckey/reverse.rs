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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4() {
        let name = reverse_name("192.0.2.38".parse().unwrap());
        assert_eq!(name.to_string(), "38.2.0.192.in-addr.arpa.");
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

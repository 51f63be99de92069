//! `address`: this host's identity, one address or a list with at most one
//! per family (`address = ["192.0.2.10", "2001:db8::10"]`).

use std::net::IpAddr;

use oemesh_core::oe::Addresses;

use super::raw::RawAddress;

/// The addresses of `raw`, or each problem as (key, message): the key names
/// the list index (`address[1]`) when the value is a list.
pub(super) fn parse(raw: RawAddress) -> Result<Addresses, Vec<(String, String)>> {
    let (items, listed) = match raw {
        RawAddress::One(a) => (vec![a], false),
        RawAddress::List(l) => (l, true),
    };
    let mut errors = Vec::new();
    if items.is_empty() {
        let msg = "is an empty list; give this host's address(es) or remove the key to take them from the default routes";
        errors.push(("address".to_owned(), msg.to_owned()));
    }
    let mut addresses = Addresses::default();
    for (i, a) in items.iter().enumerate() {
        let key = if listed {
            format!("address[{i}]")
        } else {
            "address".to_owned()
        };
        match a.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => errors.push((
                key,
                format!("{a:?} cannot identify a host; give this host's unicast address or remove the key"),
            )),
            Ok(ip) if ip.to_canonical() != ip => errors.push((
                key,
                format!("{a:?} is an IPv4-mapped IPv6 address; write the IPv4 address"),
            )),
            Ok(ip) => {
                if let Some(before) = addresses.set(ip) {
                    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                    errors.push((
                        key,
                        format!("{a:?} is a second {family} address (after {before}); give at most one address per family"),
                    ));
                }
            }
            Err(_) => errors.push((
                key,
                format!("{a:?} is not an IPv4 or IPv6 address (write e.g. \"192.0.2.10\")"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(addresses)
    } else {
        Err(errors)
    }
}

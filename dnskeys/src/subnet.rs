//! `--subnet`: one wildcard IPSECKEY for a whole site behind a gateway.
//!
//! A site of 250 hosts behind one gateway needs one record, not 250:
//! `*.0.1.10.in-addr.arpa. IN IPSECKEY 10 1 4 192.0.2.1 <gateway key>` is
//! served for every address in 10.1.0.0/24 whose reverse name does not exist
//! (RFC 4592 §2.2.1), and says "IKE for this address goes to 192.0.2.1,
//! authenticated with this key". The owner name is core's
//! [`wildcard_name`], under the subnet's [`reverse_zone`], so only prefixes
//! on label boundaries qualify: a multiple of 8 bits for IPv4, of 4 for IPv6.
//!
//! Two records are refused here, before anything is sent
//! ([`check_gateway`]):
//! - a wildcard without a gateway: it would tell every host in the subnet to
//!   do IKE with itself under ONE key, which only one host can hold;
//! - a wildcard whose gateway address is inside the subnet: it covers the
//!   gateway itself, so peers would look up the gateway's own key at a name
//!   that says "go through the gateway", a loop. The gateway publishes its
//!   own record with `--ip` (a name with records of its own is not covered by
//!   the wildcard), and the subnet must not contain it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use oemesh_core::ipseckey::{DomainName, Gateway, ReverseZoneError, reverse_zone, wildcard_name};

/// A subnet given with `--subnet`: its network address (host bits zero) and
/// prefix length, on a reverse-zone label boundary, shorter than one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    network: IpAddr,
    len: u8,
}

/// Why a `--subnet` value is refused. Each message names the flag and says what to give instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubnetError {
    /// Not `ADDRESS/LENGTH`.
    #[error(
        "--subnet {value:?} is not a prefix: give ADDRESS/LENGTH, e.g. 10.1.0.0/24 or \
         2001:db8:1::/64"
    )]
    Syntax {
        /// the text given
        value: String,
    },
    /// Bits set after the prefix.
    #[error(
        "--subnet {value}: host bits are set after the /{len} prefix; give the network \
         address, --subnet {network}/{len}"
    )]
    HostBits {
        /// the text given
        value: String,
        /// the address with the host bits cleared
        network: IpAddr,
        /// the prefix length
        len: u8,
    },
    /// No reverse zone of its own (not on a label boundary, or not a prefix length).
    #[error("--subnet {value}: {source}")]
    Zone {
        /// the text given
        value: String,
        /// core's reason
        source: ReverseZoneError,
    },
    /// A /32 or /128: one host, whose record belongs at its own name.
    #[error(
        "--subnet {value} is a single address; publish a host's record with --ip {network} \
         instead (a wildcard under it would cover no address)"
    )]
    SingleHost {
        /// the text given
        value: String,
        /// the address
        network: IpAddr,
    },
}

impl Subnet {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside the subnet (never for the other address family).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(a, self.len) == n,
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(a, self.len) == n,
            _ => false,
        }
    }

    /// The subnet's reverse zone, `0.1.10.in-addr.arpa.` for 10.1.0.0/24.
    pub fn reverse_zone(&self) -> DomainName {
        // Checked at parse time: on a boundary, 1..max bits.
        reverse_zone(self.network, self.len).unwrap_or_else(|_| DomainName::root())
    }

    /// The owner name of the wildcard, `*.0.1.10.in-addr.arpa.` for 10.1.0.0/24.
    pub fn wildcard(&self) -> DomainName {
        wildcard_name(self.network, self.len).unwrap_or_else(|_| DomainName::root())
    }

    /// The first host address (the network address + 1), whose reverse name
    /// `verify` asks for to see the wildcard answer for a host inside.
    pub fn first_host(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n).wrapping_add(1))),
            IpAddr::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n).wrapping_add(1))),
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Self, SubnetError> {
        let value = text.trim().to_owned();
        let syntax = || SubnetError::Syntax {
            value: value.clone(),
        };
        let (addr, len) = value.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        // Length and boundary first: core's message says what to give.
        reverse_zone(addr, len).map_err(|source| SubnetError::Zone {
            value: value.clone(),
            source,
        })?;
        let (network, max) = match addr {
            IpAddr::V4(a) => (IpAddr::V4(mask_v4(a, len)), 32),
            IpAddr::V6(a) => (IpAddr::V6(mask_v6(a, len)), 128),
        };
        if network != addr {
            return Err(SubnetError::HostBits {
                value,
                network,
                len,
            });
        }
        if len == max {
            return Err(SubnetError::SingleHost { value, network });
        }
        Ok(Self { network, len })
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(a) & mask)
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(a) & mask)
}

/// Why a wildcard record's gateway is refused (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayProblem {
    /// No gateway: every host would do IKE with itself under one key.
    #[error(
        "--subnet {subnet} needs --gateway IP|NAME (the site's gateway): a wildcard without a \
         gateway tells every host in {subnet} to do IKE with itself, all with one key that only \
         one host can hold; give the gateway's address or name, or publish each host's own key \
         with --ip"
    )]
    NoGateway {
        /// the subnet
        subnet: Subnet,
    },
    /// The gateway's address is inside the subnet: the wildcard covers the gateway itself.
    #[error(
        "--gateway {gateway} is inside --subnet {subnet}: the wildcard would cover the gateway \
         itself; publish the gateway's own record with 'dnskeys publish --ip {gateway}' (a name \
         with records of its own is not covered by the wildcard), and give a --subnet that does \
         not contain {gateway}"
    )]
    CoversGateway {
        /// the subnet
        subnet: Subnet,
        /// the gateway's address
        gateway: IpAddr,
    },
}

/// Checks the gateway of a record for the wildcard of `subnet`. A gateway
/// given by name passes here (its addresses are not known without DNS).
pub fn check_gateway(subnet: &Subnet, gateway: &Gateway) -> Result<(), GatewayProblem> {
    let ip = match gateway {
        Gateway::None => return Err(GatewayProblem::NoGateway { subnet: *subnet }),
        Gateway::Name(_) => return Ok(()),
        Gateway::Ipv4(a) => IpAddr::V4(*a),
        Gateway::Ipv6(a) => IpAddr::V6(*a),
    };
    if subnet.contains(ip) {
        return Err(GatewayProblem::CoversGateway {
            subnet: *subnet,
            gateway: ip,
        });
    }
    Ok(())
}

/// The wildcard of a `--subnet` is not inside the `--zone` given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--subnet {subnet}: its wildcard {wildcard} is not inside --zone {zone}{why}; give --zone \
     the zone that holds the whole subnet's reverse names ({reverse_zone} or a zone above it), \
     or a --subnet inside {zone}"
)]
pub struct OutsideZone {
    /// the subnet
    pub subnet: Subnet,
    /// its wildcard's name
    pub wildcard: String,
    /// the zone given
    pub zone: String,
    /// the subnet's reverse zone
    pub reverse_zone: String,
    /// why, when it is a common mistake
    pub why: &'static str,
}

/// Checks that the wildcard of `subnet` is inside `zone` (absolute or not).
/// A /16 wildcard cannot live in a /24 zone: that zone holds only part of
/// the /16's reverse names.
pub fn check_zone(subnet: &Subnet, zone: &DomainName) -> Result<(), OutsideZone> {
    let wildcard = subnet.wildcard();
    if wildcard.is_subdomain_of(zone) {
        return Ok(());
    }
    let reverse_zone = subnet.reverse_zone();
    let why = if zone.is_subdomain_of(&reverse_zone) {
        " (that zone is below the subnet's reverse zone: it holds the reverse names of only \
         part of the subnet)"
    } else {
        ""
    };
    Err(OutsideZone {
        subnet: *subnet,
        wildcard: wildcard.to_string(),
        zone: zone.to_string(),
        reverse_zone: reverse_zone.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    fn refusal(s: &str) -> String {
        s.parse::<Subnet>().unwrap_err().to_string()
    }

    #[test]
    fn names_of_ipv4_and_ipv6_subnets() {
        let s = subnet("10.1.0.0/24");
        assert_eq!(s.wildcard().to_string(), "*.0.1.10.in-addr.arpa.");
        assert_eq!(s.reverse_zone().to_string(), "0.1.10.in-addr.arpa.");
        assert_eq!(s.first_host().to_string(), "10.1.0.1");
        assert_eq!(s.to_string(), "10.1.0.0/24");
        assert_eq!(
            subnet("10.0.0.0/8").wildcard().to_string(),
            "*.10.in-addr.arpa."
        );
        let v6 = subnet("2001:db8:1::/64");
        assert_eq!(
            v6.wildcard().to_string(),
            "*.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert_eq!(v6.first_host().to_string(), "2001:db8:1::1");
        assert_eq!(
            subnet("2001:db8:1::/52").wildcard().to_string(),
            "*.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }

    #[test]
    fn wildcard_must_be_inside_the_zone() {
        let zone = |z: &str| DomainName::from_ascii(z).unwrap();
        let s24 = subnet("10.1.0.0/24");
        assert!(check_zone(&s24, &zone("0.1.10.in-addr.arpa.")).is_ok());
        assert!(check_zone(&s24, &zone("10.in-addr.arpa")).is_ok());
        let s16 = subnet("10.1.0.0/16");
        let e = check_zone(&s16, &zone("0.1.10.in-addr.arpa."))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "--subnet 10.1.0.0/16: its wildcard *.1.10.in-addr.arpa. is not inside --zone \
                 0.1.10.in-addr.arpa. (that zone is below the subnet's reverse zone"
            ) && e.contains("1.10.in-addr.arpa. or a zone above it"),
            "{e}"
        );
        let e = check_zone(&s24, &zone("example.test."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not inside --zone example.test.;") && !e.contains("below"),
            "{e}"
        );
    }

    #[test]
    fn contains() {
        let s = subnet("10.1.0.0/24");
        assert!(s.contains("10.1.0.0".parse().unwrap()));
        assert!(s.contains("10.1.0.255".parse().unwrap()));
        assert!(!s.contains("10.1.1.0".parse().unwrap()));
        assert!(!s.contains("::ffff:10.1.0.1".parse().unwrap()));
        let v6 = subnet("2001:db8:1::/64");
        assert!(v6.contains("2001:db8:1::ffff".parse().unwrap()));
        assert!(!v6.contains("2001:db8:1:1::".parse().unwrap()));
    }

    #[test]
    fn prefix_not_on_a_boundary_is_refused_with_cores_reason() {
        let e = refusal("10.1.0.0/23");
        assert!(
            e.starts_with("--subnet 10.1.0.0/23: /23 is not on a reverse-zone boundary"),
            "{e}"
        );
        assert!(e.contains("multiple of 8"), "{e}");
        let e = refusal("2001:db8::/50");
        assert!(
            e.contains("--subnet 2001:db8::/50") && e.contains("multiple of 4 for IPv6"),
            "{e}"
        );
        let e = refusal("10.0.0.0/0");
        assert!(e.contains("--subnet") && e.contains("1 to 32 bits"), "{e}");
        assert!(refusal("10.0.0.0/33").contains("1 to 32 bits"));
    }

    #[test]
    fn host_bits_are_refused_with_the_network_to_give() {
        let e = refusal("10.1.0.5/24");
        assert_eq!(
            e,
            "--subnet 10.1.0.5/24: host bits are set after the /24 prefix; give the network \
             address, --subnet 10.1.0.0/24"
        );
        let e = refusal("2001:db8:1::5/64");
        assert!(e.contains("--subnet 2001:db8:1::/64"), "{e}");
    }

    #[test]
    fn single_hosts_and_non_prefixes_are_refused() {
        let e = refusal("10.1.0.5/32");
        assert!(
            e.contains("single address") && e.contains("--ip 10.1.0.5"),
            "{e}"
        );
        assert!(refusal("2001:db8::1/128").contains("--ip 2001:db8::1"));
        for bad in ["10.1.0.0", "10.1.0.0/x", "host/24", ""] {
            let e = refusal(bad);
            assert!(
                e.contains("--subnet") && e.contains("ADDRESS/LENGTH"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn wildcard_without_a_gateway_is_refused() {
        let s = subnet("10.1.0.0/24");
        let e = check_gateway(&s, &Gateway::None).unwrap_err();
        assert_eq!(e, GatewayProblem::NoGateway { subnet: s });
        let text = e.to_string();
        assert!(
            text.contains("--subnet 10.1.0.0/24 needs --gateway IP|NAME") && text.contains("--ip"),
            "{text}"
        );
    }

    #[test]
    fn wildcard_covering_its_gateway_is_refused() {
        let s = subnet("10.1.0.0/24");
        let e = check_gateway(&s, &Gateway::Ipv4("10.1.0.1".parse().unwrap())).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("--gateway 10.1.0.1 is inside --subnet 10.1.0.0/24")
                && text.contains("dnskeys publish --ip 10.1.0.1")
                && text.contains("does not contain 10.1.0.1"),
            "{text}"
        );
        let v6 = subnet("2001:db8:1::/64");
        assert!(check_gateway(&v6, &Gateway::Ipv6("2001:db8:1::1".parse().unwrap())).is_err());
        // Outside, the other family, or a name: fine.
        assert!(check_gateway(&s, &Gateway::Ipv4("192.0.2.1".parse().unwrap())).is_ok());
        assert!(check_gateway(&s, &Gateway::Ipv6("2001:db8::1".parse().unwrap())).is_ok());
        let name = oemesh_core::ipseckey::DomainName::from_ascii("gw.example.").unwrap();
        assert!(check_gateway(&s, &Gateway::Name(name)).is_ok());
    }
}

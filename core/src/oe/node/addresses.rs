//! This host's addresses: at most one per family, as a dual-stack host has
//! them (`address = ["192.0.2.10", "2001:db8::10"]`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// This host's addresses, at most one per family: the local address of IKE
/// SAs and the local traffic selector towards a peer of that family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addresses {
    /// The IPv4 address, if this host has one.
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 address, if this host has one.
    pub v6: Option<Ipv6Addr>,
}

impl Addresses {
    /// Only `ip` (its family's), none of the other family.
    pub fn one(ip: IpAddr) -> Addresses {
        let mut a = Addresses::default();
        a.set(ip);
        a
    }

    /// Sets the address of `ip`'s family to `ip`; returns the one it replaced.
    pub fn set(&mut self, ip: IpAddr) -> Option<IpAddr> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.replace(a).map(IpAddr::V4),
            IpAddr::V6(a) => self.v6.replace(a).map(IpAddr::V6),
        }
    }

    /// This host's address of `of`'s family (an IPv4-mapped IPv6 address
    /// counts as IPv4), or `None` if it has none.
    pub fn for_family(&self, of: IpAddr) -> Option<IpAddr> {
        match of.to_canonical() {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    /// The address of `of`'s family, else the unspecified address of that
    /// family (the kernel then picks a source).
    pub fn for_family_or_unspecified(&self, of: IpAddr) -> IpAddr {
        self.for_family(of).unwrap_or(match of.to_canonical() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        })
    }

    /// The first address, IPv4 before IPv6.
    pub fn first(&self) -> Option<IpAddr> {
        self.iter().next()
    }

    /// The addresses, IPv4 before IPv6.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + use<> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.for_family(ip) == Some(ip.to_canonical())
    }

    /// No address of either family.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }
}

/// `192.0.2.10, 2001:db8::10`; `-` for none.
impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_family() {
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let mut a = Addresses::one(v4);
        assert_eq!(a.for_family("198.51.100.1".parse().unwrap()), Some(v4));
        assert_eq!(a.for_family("2001:db8::3".parse().unwrap()), None);
        assert_eq!(
            a.for_family_or_unspecified("2001:db8::3".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
        assert_eq!(a.set(v6), None);
        assert_eq!(a.for_family("2001:db8::3".parse().unwrap()), Some(v6));
        assert_eq!(
            a.for_family("::ffff:198.51.100.1".parse().unwrap()),
            Some(v4)
        );
        assert_eq!(a.iter().collect::<Vec<_>>(), [v4, v6]);
        assert_eq!(a.first(), Some(v4));
        assert!(a.contains(v6) && !a.contains("192.0.2.11".parse().unwrap()));
        assert_eq!(a.to_string(), "192.0.2.10, 2001:db8::10");
        assert_eq!(Addresses::default().to_string(), "-");
        assert_eq!(a.set("192.0.2.11".parse().unwrap()), Some(v4));
    }
}

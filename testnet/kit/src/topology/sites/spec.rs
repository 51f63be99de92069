//! The sites' addresses and names: every address of the two-site layout is
//! a constant here, and everything else is derived from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::super::FORWARD_ZONE;

/// The host part of a gateway's LAN address (`10.1.0.1`).
pub const GATEWAY_HOST: u8 = 1;
/// The host part of the LAN host without an agent (`a-plain`, `10.1.0.10`).
pub const PLAIN_HOST: u8 = 10;
/// The host part of the LAN host with an agent (`a-agent`, `10.1.0.11`).
pub const AGENT_HOST: u8 = 11;
/// The LANs' IPv4 prefix length.
pub const LAN_V4_LEN: u8 = 24;
/// The LANs' IPv6 prefix length.
pub const LAN_V6_LEN: u8 = 64;
/// The precedence of an agent host's own record (no gateway): tried first.
pub const OWN_PRECEDENCE: u8 = 5;
/// The precedence of the records that name a gateway (the wildcard and the
/// agent hosts' second record).
pub const GATEWAY_PRECEDENCE: u8 = 10;

/// One site: its gateway's name and WAN addresses, its LAN prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// `a`, `b`: the prefix of its LAN hosts' names (`a-plain`, `a-agent`).
    pub name: &'static str,
    /// The gateway's host name (`gw-a`).
    pub gateway: &'static str,
    /// The gateway's address on the WAN (the testnet's switch).
    pub wan_v4: Ipv4Addr,
    /// The gateway's IPv6 address on the WAN.
    pub wan_v6: Ipv6Addr,
    /// The LAN's IPv4 network address (length [`LAN_V4_LEN`]).
    pub lan_v4: Ipv4Addr,
    /// The LAN's IPv6 network address (length [`LAN_V6_LEN`]).
    pub lan_v6: Ipv6Addr,
}

/// Site A: `gw-a` at 192.0.2.31, LAN 10.1.0.0/24.
pub const SITE_A: SiteSpec = SiteSpec {
    name: "a",
    gateway: "gw-a",
    wan_v4: Ipv4Addr::new(192, 0, 2, 31),
    wan_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x31),
    lan_v4: Ipv4Addr::new(10, 1, 0, 0),
    lan_v6: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0),
};

/// Site B: `gw-b` at 192.0.2.32, LAN 10.2.0.0/24.
pub const SITE_B: SiteSpec = SiteSpec {
    name: "b",
    gateway: "gw-b",
    wan_v4: Ipv4Addr::new(192, 0, 2, 32),
    wan_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x32),
    lan_v4: Ipv4Addr::new(10, 2, 0, 0),
    lan_v6: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0),
};

/// Both sites, A first.
pub const SITES: [SiteSpec; 2] = [SITE_A, SITE_B];

impl SiteSpec {
    /// The LAN address with host part `host` (`10.1.0.<host>`).
    pub fn lan_host_v4(&self, host: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.lan_v4.octets();
        Ipv4Addr::new(a, b, c, host)
    }

    /// The LAN IPv6 address with host part `host` (`2001:db8:1::<host>`).
    pub fn lan_host_v6(&self, host: u8) -> Ipv6Addr {
        let mut s = self.lan_v6.segments();
        s[7] = u16::from(host);
        Ipv6Addr::from(s)
    }

    /// The gateway's LAN address (`10.1.0.1`).
    pub fn lan_gateway_v4(&self) -> Ipv4Addr {
        self.lan_host_v4(GATEWAY_HOST)
    }

    /// `10.1.0.0/24`.
    pub fn lan_prefix(&self) -> String {
        format!("{}/{LAN_V4_LEN}", self.lan_v4)
    }

    /// `2001:db8:1::/64`.
    pub fn lan_prefix_v6(&self) -> String {
        format!("{}/{LAN_V6_LEN}", self.lan_v6)
    }

    /// Whether `addr` is inside the IPv4 LAN.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let IpAddr::V4(a) = addr else { return false };
        let mask = u32::MAX << (32 - u32::from(LAN_V4_LEN));
        u32::from(a) & mask == u32::from(self.lan_v4) & mask
    }

    /// `a-plain`: the LAN host without an agent.
    pub fn plain_name(&self) -> String {
        format!("{}-plain", self.name)
    }

    /// `a-agent`: the LAN host with an agent.
    pub fn agent_name(&self) -> String {
        format!("{}-agent", self.name)
    }

    /// The LAN's reverse zone (`0.1.10.in-addr.arpa.`), one of
    /// [`crate::bind::SITE_ZONES`].
    pub fn reverse_zone(&self) -> String {
        oemesh_core::ipseckey::reverse_zone(IpAddr::V4(self.lan_v4), LAN_V4_LEN)
            .map(|z| z.to_string())
            .unwrap_or_default()
    }

    /// The owner of the LAN's wildcard record (`*.0.1.10.in-addr.arpa.`).
    pub fn wildcard(&self) -> String {
        format!("*.{}", self.reverse_zone())
    }

    /// The gateway's name in the forward zone (`gw-a.oe.test.`).
    pub fn gateway_fqdn(&self) -> String {
        format!("{}.{FORWARD_ZONE}", self.gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names() {
        assert_eq!(SITE_A.lan_prefix(), "10.1.0.0/24");
        assert_eq!(SITE_B.lan_prefix_v6(), "2001:db8:2::/64");
        assert_eq!(SITE_A.lan_host_v4(AGENT_HOST), Ipv4Addr::new(10, 1, 0, 11));
        assert_eq!(SITE_B.lan_gateway_v4(), Ipv4Addr::new(10, 2, 0, 1));
        assert!(SITE_A.contains("10.1.0.200".parse().unwrap()));
        assert!(!SITE_A.contains("10.2.0.10".parse().unwrap()));
        assert_eq!(SITE_A.wildcard(), "*.0.1.10.in-addr.arpa.");
        assert_eq!(SITE_B.gateway_fqdn(), "gw-b.oe.test.");
        let zones: Vec<String> = SITES.iter().map(SiteSpec::reverse_zone).collect();
        assert_eq!(
            zones,
            crate::bind::SITE_ZONES,
            "BIND serves the sites' zones"
        );
    }
}

//! The agent's contact with the kernel: the TUN device ([`tun`]), policy routing
//! over netlink ([`routes`]), this host's addresses as they change ([`addresses`]), nftables enforcement ([`nft`], its set updates over
//! netlink in [`nfnl`]) and the UDP sockets
//! for IKE and ESP ([`udp`]); a gateway's forwarding settings ([`forwarding`]).

pub mod addresses;
pub mod forwarding;
pub mod nfnl;
pub mod nft;
pub mod policy_routes;
pub mod routes;
pub mod tun;
pub mod udp;

/// Whether IPv6 is on in this host's network namespace: the kernel lists an
/// IPv6 address (`::1` on an up loopback at least) in `/proc/self/net/if_inet6`.
/// With `disable_ipv6` the list is empty, with `ipv6.disable=1` it is absent,
/// and either way IPv6 routes cannot be added. `/proc/self` is readable under
/// the unit's `ProcSubset=pid`, where `/proc/sys` is not.
pub fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/self/net/if_inet6").is_ok_and(|list| !list.trim().is_empty())
}

/// The subnets of this host's interface addresses (address and netmask, as
/// `getifaddrs` lists them).
pub fn interface_subnets() -> Vec<oemesh_core::oe::Cidr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        let subnet = match (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            (Some(a), Some(m)) => {
                Some((std::net::IpAddr::V4(a.ip()), m.ip().to_bits().count_ones()))
            }
            _ => match (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (Some(a), Some(m)) => Some((
                    std::net::IpAddr::V6(a.ip()),
                    u128::from(m.ip()).count_ones(),
                )),
                _ => None,
            },
        };
        if let Some((ip, len)) = subnet
            && let Ok(len) = u8::try_from(len)
        {
            out.push(oemesh_core::oe::Cidr::truncating(ip, len));
        }
    }
    out
}

/// The `nat.pool` prefixes that overlap one of `subnets`, each with the
/// subnet: routed into the TUN, they would capture this host's traffic to
/// its own network (a carrier-grade NAT's 100.64.0.0/10, its gateway, its
/// resolver).
pub fn pool_overlaps(
    pool: &[oemesh_core::oe::Cidr],
    subnets: &[oemesh_core::oe::Cidr],
) -> Vec<(oemesh_core::oe::Cidr, oemesh_core::oe::Cidr)> {
    let overlap = |a: &oemesh_core::oe::Cidr, b: &oemesh_core::oe::Cidr| {
        a.contains(b.addr()) || b.contains(a.addr())
    };
    pool.iter()
        .flat_map(|p| {
            subnets
                .iter()
                .filter(move |s| overlap(p, s))
                .map(move |s| (*p, *s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pool_overlaps;
    use oemesh_core::oe::Cidr;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pool_inside_or_around_a_host_subnet_overlaps() {
        let pool = [c("100.64.0.0/16"), c("fd00:6f65::/112")];
        // A carrier-grade NAT's /10 holds the pool; a LAN elsewhere does not.
        let subnets = [c("100.64.0.0/10"), c("192.168.1.0/24"), c("fe80::/64")];
        assert_eq!(
            pool_overlaps(&pool, &subnets),
            vec![(c("100.64.0.0/16"), c("100.64.0.0/10"))]
        );
        // A host address inside the pool (a /24 in it) overlaps too.
        assert_eq!(pool_overlaps(&pool, &[c("100.64.3.0/24")]).len(), 1);
        assert!(pool_overlaps(&pool, &[c("100.128.0.0/10")]).is_empty());
    }
}

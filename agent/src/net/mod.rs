//! The agent's contact with the kernel: the TUN device ([`tun`]), policy routing
//! over netlink ([`routes`]), nftables enforcement ([`nft`], its set updates over
//! netlink in [`nfnl`]) and the UDP sockets
//! for IKE and ESP ([`udp`]).

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

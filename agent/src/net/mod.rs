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

/// Whether the kernel has IPv6 on (`net.ipv6.conf.all.disable_ipv6` is 0 and
/// the family exists): off, IPv6 routes cannot be added.
pub fn ipv6_enabled() -> bool {
    match std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
        Ok(v) => v.trim() == "0",
        Err(_) => false,
    }
}

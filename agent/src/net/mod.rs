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

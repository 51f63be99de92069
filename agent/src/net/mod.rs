//! The agent's contact with the kernel: the TUN device ([`tun`]), policy routing
//! over netlink ([`routes`]), nftables enforcement ([`nft`]) and the UDP sockets
//! for IKE and ESP ([`udp`]).

pub mod nft;
pub mod routes;
pub mod tun;
pub mod udp;

//! The addresses a responder gives initiators behind a NAT (issue 13, RFC
//! 7296 §3.15) are never decided: a packet to one without an SA is dropped,
//! with no key lookup and no clear fallback, which would send it out of the
//! TUN's route to wherever the main table points.
#![allow(clippy::unwrap_used, clippy::panic)]

mod oe_common;

use std::time::{Duration, Instant};

use oe_common::{ip, policy};
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config as IkeConfig, Endpoint, LocalAuth};
use oemesh_core::ike::message::Identity;
use oemesh_core::ike::pool::PoolPrefix;
use oemesh_core::oe::{
    Command, Config, Group, GroupOptions, Machine, Node, NodeConfig, PacketFate,
};

fn node(now: Instant) -> Node {
    let key = Ed25519SigningKey::from_seed(&[3; 32]);
    let mut ike = IkeConfig::new(
        LocalAuth::Ed25519(key),
        Identity::Ipv4("192.0.2.20".parse().unwrap()),
    );
    ike.address_pool = vec![PoolPrefix::new(ip("100.64.0.0"), 16).unwrap()];
    let endpoint = Endpoint::new(ike, [3; 32]);
    // Even a policy that makes every address private-or-clear.
    let options = [(Group::PrivateOrClear, GroupOptions::default())];
    let machine = Machine::new(Config::default(), policy(&options));
    let config = NodeConfig {
        addresses: oemesh_core::oe::Addresses::one(ip("192.0.2.20")),
        idle_timeout: Duration::from_secs(60),
    };
    Node::new(config, endpoint, machine, now)
}

fn packet_to(dst: &str) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 20];
    p.extend(dst.parse::<std::net::Ipv4Addr>().unwrap().octets());
    p
}

#[test]
fn a_packet_to_a_pool_address_without_an_sa_is_dropped_undecided() {
    let now = Instant::now();
    let mut n = node(now);
    let fate = n.handle_packet(now, ip("100.64.0.5"), packet_to("100.64.0.5"));
    assert_eq!(fate, PacketFate::DroppedPoolAddress);
    let mut commands = Vec::new();
    while let Some(c) = n.poll_command(now) {
        commands.push(c);
    }
    assert!(
        !commands.iter().any(|c| matches!(
            c,
            Command::LookupKey { .. } | Command::SendClear { .. } | Command::Bypass { .. }
        )),
        "{commands:?}"
    );
    assert!(n.pending().is_empty());
    // An address outside the pool is decided as usual.
    let fate = n.handle_packet(now, ip("198.51.100.7"), packet_to("198.51.100.7"));
    assert_ne!(fate, PacketFate::DroppedPoolAddress);
}

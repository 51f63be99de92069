//! Shared helpers of the `oe_*` tests: a virtual clock, machines, record builders.
#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use oemesh_core::ipseckey::{Algorithm, DomainName, Gateway, Ipseckey, reverse_name};
use oemesh_core::oe::{
    Action, Config, DnsResult, Dnssec, Group, GroupOptions, Held, Machine, NoRecord, Policy,
};

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The standard test policy: one prefix per group.
pub fn policy(options: &[(Group, GroupOptions)]) -> Policy {
    let entries = [
        (Group::Clear, "10.0.0.0/24"),
        (Group::ClearOrPrivate, "10.0.1.0/24"),
        (Group::PrivateOrClear, "10.0.2.0/24"),
        (Group::Private, "10.0.3.0/24"),
        (Group::Block, "10.0.4.0/24"),
        (Group::PrivateOrClear, "2001:db8::/32"),
    ];
    Policy::new(
        entries
            .iter()
            .map(|(g, c)| (*g, c.parse().expect("test prefix"))),
        options.iter().copied(),
    )
    .expect("test policy")
}

pub fn machine() -> Machine {
    Machine::new(Config::default(), policy(&[]))
}

pub fn machine_with(config: Config, options: &[(Group, GroupOptions)]) -> Machine {
    Machine::new(config, policy(options))
}

pub fn drain(m: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

/// A real Ed25519 public key per number (small-order and non-canonical
/// points are refused as unusable, so the tests need curve points).
pub fn pk(n: u8) -> [u8; 32] {
    oemesh_core::crypto::ed25519::Ed25519SigningKey::from_seed(&[n; 32])
        .public_key()
        .to_bytes()
}

pub fn ed(precedence: u8, gateway: Gateway, n: u8) -> Ipseckey {
    Ipseckey::ed25519(precedence, gateway, pk(n))
}

pub fn rsa(precedence: u8) -> Ipseckey {
    Ipseckey {
        precedence,
        gateway: Gateway::None,
        algorithm: Algorithm::RSA,
        public_key: vec![1, 2, 3],
    }
}

pub fn records(records: Vec<Ipseckey>, dnssec: bool) -> DnsResult {
    DnsResult::Records {
        records,
        dnssec: if dnssec {
            Dnssec::Secure
        } else {
            Dnssec::Insecure
        },
        ttl: 3600,
    }
}

pub fn nxdomain(ttl: Option<u32>) -> DnsResult {
    DnsResult::NoRecords {
        kind: NoRecord::Nxdomain,
        negative_ttl: ttl,
        dnssec: Dnssec::Insecure,
    }
}

pub fn name_of(dst: IpAddr) -> DomainName {
    reverse_name(dst)
}

/// The packets in order, as byte vectors.
pub fn bytes(held: &Held) -> Vec<Vec<u8>> {
    held.iter().map(<[u8]>::to_vec).collect()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn t0() -> Instant {
    Instant::now()
}

pub const NO_ANON: GroupOptions = GroupOptions::REQUIRE_AUTHENTICATED;

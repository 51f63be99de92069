//! A gateway named by name, end to end through the node and the IKE engine on
//! the virtual-clock net: the node asks for the name's address
//! (`Command::LookupAddress`), IKE goes to that address, and the peer there
//! must sign with the key from the destination's record.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod oe_common;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use oe_common::{ed, ip, policy, records};
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config as IkeConfig, Endpoint, LocalAuth, Transmit};
use oemesh_core::ike::message::Identity;
use oemesh_core::ike::udp_encap::Datagram;
use oemesh_core::ipseckey::{DomainName, Gateway, reverse_name};
use oemesh_core::oe::{
    AddressResult, Addresses, Cause, Command, Config, DnsResult, Group, GroupOptions, Machine,
    Node, NodeConfig, Outcome, State,
};
use oemesh_core::test_util::{self, Net};

/// One host: its node, its DNS, and what it looked up, connected to and decided.
struct Host {
    node: Node,
    ip: IpAddr,
    keys: HashMap<DomainName, DnsResult>,
    addresses: HashMap<DomainName, AddressResult>,
    address_lookups: Vec<(DomainName, IpAddr)>,
    ike_peers: Vec<IpAddr>,
    outcomes: Vec<Outcome>,
    outbox: VecDeque<Transmit>,
}

impl Host {
    fn new(addr: &str, seed: u8, now: Instant) -> Host {
        let addr = ip(addr);
        let key = Ed25519SigningKey::from_seed(&[seed; 32]);
        let IpAddr::V4(v4) = addr else { panic!() };
        let mut ike = IkeConfig::new(LocalAuth::Ed25519(key), Identity::Ipv4(v4));
        ike.dpd_interval = None;
        let endpoint = Endpoint::new(ike, [seed; 32]);
        let options = [(Group::PrivateOrClear, GroupOptions::default())];
        let machine = Machine::new(Config::default(), policy(&options));
        let config = NodeConfig {
            addresses: Addresses::one(addr),
            idle_timeout: Duration::from_secs(60),
        };
        Host {
            node: Node::new(config, endpoint, machine, now),
            ip: addr,
            keys: HashMap::new(),
            addresses: HashMap::new(),
            address_lookups: Vec::new(),
            ike_peers: Vec::new(),
            outcomes: Vec::new(),
            outbox: VecDeque::new(),
        }
    }

    /// `peer`'s key (seed `seed`) at its reverse name, its own record.
    fn knows(&mut self, peer: IpAddr, seed: u8) {
        let answer = records(vec![ed(10, Gateway::None, seed)], true);
        self.keys.insert(reverse_name(peer), answer);
    }

    fn drive(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let (mut keys, mut addrs) = (Vec::new(), Vec::new());
            while let Some(c) = self.node.poll_command(now) {
                any = true;
                match c {
                    Command::Transmit(t) => self.outbox.push_back(t),
                    Command::LookupKey { name } => {
                        if let Some(a) = self.keys.get(&name) {
                            keys.push((name, a.clone()));
                        }
                    }
                    Command::LookupAddress { name, addr } => {
                        self.address_lookups.push((name.clone(), addr));
                        if let Some(a) = self.addresses.get(&name) {
                            addrs.push((name, addr, a.clone()));
                        }
                    }
                    Command::Track { peer, .. } => self.ike_peers.push(peer),
                    Command::Decided { outcome } => self.outcomes.push(outcome),
                    _ => {}
                }
            }
            if keys.is_empty() && addrs.is_empty() {
                return any;
            }
            for (name, answer) in keys {
                self.node.handle_dns(now, &name, answer);
            }
            for (name, addr, answer) in addrs {
                self.node.handle_address(now, &name, addr, answer);
            }
        }
    }
}

impl test_util::Node for Host {
    fn addr(&self) -> IpAddr {
        self.ip
    }

    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]) {
        if let Datagram::Ike(message) = test_util::demux(datagram, local.port(), 500) {
            self.node.handle_ike(now, local, remote, message);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    fn poll_events(&mut self, now: Instant) -> bool {
        self.drive(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.node.poll_timeout())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
    }
}

fn gw_name() -> DomainName {
    DomainName::from_ascii("gw.example.").unwrap()
}

/// A (10.0.2.1) sends to B (10.0.2.2), whose record names its gateway
/// `gw.example.` with B's key; the name resolves to `gateway`. C (10.0.2.3)
/// is another keyed host. Returns A after the decision.
fn a_to_b_through(gateway: &str) -> Host {
    let now = Instant::now();
    let mut net = Net::new(now);
    let mut a = Host::new("10.0.2.1", 1, now);
    let mut b = Host::new("10.0.2.2", 2, now);
    let mut c = Host::new("10.0.2.3", 3, now);
    let record = ed(10, Gateway::Name(gw_name()), 2);
    a.keys
        .insert(reverse_name(b.ip), records(vec![record], true));
    let resolved = AddressResult::Addresses {
        addrs: vec![ip(gateway)],
        dnssec_validated: true,
    };
    a.addresses.insert(gw_name(), resolved);
    b.knows(a.ip, 1);
    c.knows(a.ip, 1);
    a.node.handle_packet(now, b.ip, b"hello".to_vec());
    net.run_for(&mut [&mut a, &mut b, &mut c], Duration::from_secs(5));
    a
}

#[test]
fn ike_goes_to_the_address_the_gateway_name_resolves_to() {
    let a = a_to_b_through("10.0.2.2");
    assert_eq!(a.address_lookups, vec![(gw_name(), ip("10.0.2.2"))]);
    assert_eq!(a.ike_peers, vec![ip("10.0.2.2")]);
    let [outcome] = a.outcomes.as_slice() else {
        panic!("{:?}", a.outcomes)
    };
    assert_eq!(outcome.state, State::Private, "{outcome}");
    assert_eq!(
        outcome.cause,
        Cause::Established {
            peer_addr: ip("10.0.2.2")
        }
    );
    assert!(outcome.dnssec, "{outcome}");
}

#[test]
fn the_gateway_must_sign_with_the_key_in_the_destinations_record() {
    // The name points at C, which signs with its own key, not B's.
    let a = a_to_b_through("10.0.2.3");
    assert_eq!(a.ike_peers, vec![ip("10.0.2.3")]);
    let [outcome] = a.outcomes.as_slice() else {
        panic!("{:?}", a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear, "{outcome}");
    assert!(
        outcome.reason.starts_with(
            "IKE with 10.0.2.3 (gateway gw.example.) failed: the peer failed authentication"
        ),
        "{outcome}"
    );
}

//! The OE node when this host's addresses change under it
//! (`Node::handle_addresses`), on a virtual clock: SAs on a vanished address
//! go (their peers are told), new IKE starts from the new address, and
//! outcomes decided for want of an address are forgotten when one comes.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod oe_common;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use oe_common::{ed, ip, policy, records};
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config as IkeConfig, Endpoint, LocalAuth, Transmit};
use oemesh_core::ike::message::Identity;
use oemesh_core::ike::udp_encap::Datagram;
use oemesh_core::ipseckey::{DomainName, Gateway, reverse_name};
use oemesh_core::oe::node::Note;
use oemesh_core::oe::{
    Addresses, Command, Config, DnsResult, Machine, Node, NodeConfig, PacketFate, State,
};
use oemesh_core::test_util::{self, Net};

/// What a node asked its driver to do, in short.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Did {
    /// An IKE datagram from this address.
    Transmit(IpAddr),
    Install {
        dst: IpAddr,
    },
    Remove {
        spi: u32,
    },
    Decided {
        dst: IpAddr,
        state: State,
    },
    PrivateEnded {
        dst: IpAddr,
    },
    SetPrivate {
        added: Vec<IpAddr>,
        removed: Vec<IpAddr>,
    },
    Forgotten {
        dst: IpAddr,
    },
    Addresses(String),
    LocalGone(IpAddr),
}

struct Host {
    node: Node,
    ip: IpAddr,
    did: Vec<Did>,
    dns: HashMap<DomainName, DnsResult>,
    outbox: VecDeque<Transmit>,
}

impl Host {
    /// A host with an Ed25519 key (seed `seed`) at `addresses`.
    fn new(addresses: Addresses, seed: u8, now: Instant) -> Host {
        let addr = addresses.first().unwrap();
        let key = Ed25519SigningKey::from_seed(&[seed; 32]);
        let id = match addr {
            IpAddr::V4(a) => Identity::Ipv4(a),
            IpAddr::V6(a) => Identity::Ipv6(a),
        };
        let mut ike = IkeConfig::new(LocalAuth::Ed25519(key), id);
        ike.dpd_interval = None;
        let machine = Machine::new(Config::default(), policy(&[]));
        let config = NodeConfig {
            addresses,
            idle_timeout: std::time::Duration::from_secs(600),
        };
        Host {
            node: Node::new(config, Endpoint::new(ike, [seed; 32]), machine, now),
            ip: addr,
            did: Vec::new(),
            dns: HashMap::new(),
            outbox: VecDeque::new(),
        }
    }

    /// `at` publishes the Ed25519 key of seed `seed`.
    fn knows(&mut self, at: IpAddr, seed: u8) {
        let answer = records(vec![ed(10, Gateway::None, seed)], true);
        self.dns.insert(reverse_name(at), answer);
    }

    /// This host's addresses are now `addresses` (the net routes to the first).
    fn moves(&mut self, now: Instant, addresses: Addresses) -> (usize, usize) {
        if let Some(a) = addresses.first() {
            self.ip = a;
        }
        let r = self.node.handle_addresses(now, addresses);
        self.drive(now);
        r
    }

    fn drive(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let mut answers = Vec::new();
            while let Some(c) = self.node.poll_command(now) {
                any = true;
                match c {
                    Command::Transmit(t) => {
                        self.did.push(Did::Transmit(t.local.ip()));
                        self.outbox.push_back(t);
                    }
                    Command::LookupKey { name } => {
                        if let Some(a) = self.dns.get(&name) {
                            answers.push((name, a.clone()));
                        }
                    }
                    Command::InstallChild { dst, .. } => self.did.push(Did::Install { dst }),
                    Command::RemoveChild { inbound_spi } => {
                        self.did.push(Did::Remove { spi: inbound_spi });
                    }
                    Command::Decided { outcome } => self.did.push(Did::Decided {
                        dst: outcome.dst,
                        state: outcome.state,
                    }),
                    Command::PrivateEnded { dst } => self.did.push(Did::PrivateEnded { dst }),
                    Command::SetPrivatePeers { added, removed } => {
                        self.did.push(Did::SetPrivate { added, removed });
                    }
                    Command::ForgetOutcome { dst } => self.did.push(Did::Forgotten { dst }),
                    Command::Log { note, .. } => match note {
                        Note::Addresses { .. } => self.did.push(Did::Addresses(note.to_string())),
                        Note::LocalGone { local } => self.did.push(Did::LocalGone(local)),
                        _ => {}
                    },
                    _ => {}
                }
            }
            if answers.is_empty() {
                return any;
            }
            for (name, answer) in answers {
                self.node.handle_dns(now, &name, answer);
            }
        }
    }

    fn has(&self, what: &Did) -> bool {
        self.did.contains(what)
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

const A1: &str = "10.0.2.1";
const A2: &str = "10.0.2.11";
const B: &str = "10.0.2.2";

/// A (first at A1, later at A2: its key is published for both) and B.
struct World {
    net: Net,
    now: Instant,
    a: Host,
    b: Host,
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        let mut a = Host::new(Addresses::one(ip(A1)), 1, now);
        let mut b = Host::new(Addresses::one(ip(B)), 2, now);
        a.knows(ip(B), 2);
        b.knows(ip(A1), 1);
        b.knows(ip(A2), 1);
        World {
            net: Net::new(now),
            now,
            a,
            b,
        }
    }

    fn settle(&mut self) {
        let now = self.now;
        self.net.run(&mut [&mut self.a, &mut self.b], now);
        self.now = self.net.now;
    }

    fn a_sends(&mut self, dst: &str) -> PacketFate {
        let fate = self
            .a
            .node
            .handle_packet(self.now, ip(dst), b"ping".to_vec());
        self.a.drive(self.now);
        fate
    }

    /// A and B private with each other (A started it).
    fn private() -> World {
        let mut w = World::new();
        assert_eq!(w.a_sends(B), PacketFate::Held);
        w.settle();
        let private = Did::Decided {
            dst: ip(B),
            state: State::Private,
        };
        assert!(w.a.has(&private), "{:#?}", w.a.did);
        assert!(w.b.has(&Did::Install { dst: ip(A1) }), "{:#?}", w.b.did);
        w.a.did.clear();
        w.b.did.clear();
        w
    }
}

#[test]
fn an_sa_on_a_vanished_address_goes_and_the_next_flow_is_private_from_the_new_one() {
    let mut w = World::private();
    let now = w.now;
    let (closed, forgotten) = w.a.moves(now, Addresses::one(ip(A2)));
    assert_eq!((closed, forgotten), (1, 0));
    let a = &w.a.did;
    assert!(
        matches!(&a[0], Did::Addresses(line) if line.contains("10.0.2.1 → 10.0.2.11")),
        "{a:#?}"
    );
    assert!(w.a.has(&Did::LocalGone(ip(A1))), "{a:#?}");
    // The node lets go at once, not when the DELETE is answered.
    assert!(a.iter().any(|d| matches!(d, Did::Remove { .. })), "{a:#?}");
    assert!(w.a.has(&Did::PrivateEnded { dst: ip(B) }), "{a:#?}");
    assert!(w.a.has(&Did::SetPrivate {
        added: vec![],
        removed: vec![ip(B)],
    }));
    // The DELETE goes out from the SA's address (the host sends it where it still can).
    assert!(w.a.has(&Did::Transmit(ip(A1))), "{a:#?}");
    w.settle();
    // B was told: its SAs with A1 are gone.
    assert!(
        w.b.has(&Did::PrivateEnded { dst: ip(A1) }),
        "{:#?}",
        w.b.did
    );

    // The next flow: IKE from A2, private on both sides.
    w.a.did.clear();
    assert_eq!(w.a_sends(B), PacketFate::Held);
    w.settle();
    let a = &w.a.did;
    assert!(a.iter().any(|d| *d == Did::Transmit(ip(A2))), "{a:#?}");
    assert!(!a.iter().any(|d| *d == Did::Transmit(ip(A1))), "{a:#?}");
    assert!(w.a.has(&Did::Decided {
        dst: ip(B),
        state: State::Private,
    }));
    assert!(w.b.has(&Did::Install { dst: ip(A2) }), "{:#?}", w.b.did);
}

#[test]
fn the_same_addresses_again_change_nothing() {
    let mut w = World::private();
    let now = w.now;
    assert_eq!(w.a.moves(now, Addresses::one(ip(A1))), (0, 0));
    assert!(w.a.did.is_empty(), "{:#?}", w.a.did);
    // An address added beside A1 leaves the SA on A1 alone.
    let mut both = Addresses::one(ip(A1));
    both.set(ip("2001:db8::1"));
    assert_eq!(w.a.moves(now, both), (0, 0));
    assert!(!w.a.did.iter().any(|d| matches!(d, Did::LocalGone(_))));
}

#[test]
fn an_attempt_in_its_handshake_starts_again_from_the_new_address() {
    let mut w = World::new();
    assert_eq!(w.a_sends(B), PacketFate::Held);
    // IKE_SA_INIT left from A1 and is lost with the old network.
    assert!(w.a.has(&Did::Transmit(ip(A1))));
    w.a.outbox.clear();
    w.a.did.clear();
    let now = w.now;
    assert_eq!(w.a.moves(now, Addresses::one(ip(A2))), (1, 0));
    assert!(w.a.has(&Did::LocalGone(ip(A1))));
    assert!(w.a.has(&Did::Transmit(ip(A2))), "{:#?}", w.a.did);
    w.settle();
    assert!(w.a.has(&Did::Decided {
        dst: ip(B),
        state: State::Private,
    }));
    assert!(w.b.has(&Did::Install { dst: ip(A2) }), "{:#?}", w.b.did);
}

#[test]
fn a_family_without_an_address_pauses_and_resumes_when_it_has_one() {
    let mut w = World::new();
    let now = w.now;
    // A loses its only address: OE for IPv4 pauses.
    w.a.moves(now, Addresses::default());
    let a = &w.a.did;
    assert!(
        matches!(&a[0], Did::Addresses(line) if line.contains("OE for IPv4 pauses")),
        "{a:#?}"
    );
    w.a.did.clear();
    w.a_sends(B);
    w.settle();
    assert!(
        w.a.has(&Did::Decided {
            dst: ip(B),
            state: State::Clear,
        }),
        "{:#?}",
        w.a.did
    );
    assert!(!w.a.did.iter().any(|d| matches!(d, Did::Transmit(_))));
    // An IPv6 address only: the IPv4 outcome stays.
    let now = w.now;
    assert_eq!(w.a.moves(now, Addresses::one(ip("2001:db8::1"))), (0, 0));
    assert!(!w.a.has(&Did::Forgotten { dst: ip(B) }));
    // The IPv4 address is back: the outcome is forgotten, the next packet
    // decides again, private.
    let mut both = Addresses::one(ip(A2));
    both.set(ip("2001:db8::1"));
    assert_eq!(w.a.moves(now, both), (0, 1));
    assert!(w.a.has(&Did::Forgotten { dst: ip(B) }));
    w.a.did.clear();
    assert_eq!(w.a_sends(B), PacketFate::Held);
    w.settle();
    assert!(
        w.a.has(&Did::Decided {
            dst: ip(B),
            state: State::Private,
        }),
        "{:#?}",
        w.a.did
    );
}

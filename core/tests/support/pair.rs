//! Two IKE endpoints joined by a virtual link, driven by a virtual clock
//! (quinn's `tests/util.rs` `Pair`): deterministic, seeded loss, duplication
//! and reordering. The link and the clock are core's harness
//! (`oemesh_core::test_util::Net`); this file adds the nodes the engine tests
//! look into.

use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use oemesh_core::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use oemesh_core::ike::endpoint::{
    ChildSa, Config, Endpoint, Event, LocalAuth, PeerAuth, SaHandle, TrafficSelectors, Transmit,
};
use oemesh_core::ike::message::{AddrSelector, Identity};
use oemesh_core::ike::udp_encap::Datagram;
use oemesh_core::test_util::{self, Net, answer_and_record, demux};

pub const A: &str = "192.0.2.1";
pub const B: &str = "192.0.2.2";

/// A deterministic signing key per name.
pub fn key(seed: u8) -> Ed25519SigningKey {
    Ed25519SigningKey::from_seed(&[seed; 32])
}

pub fn public(seed: u8) -> Ed25519PublicKey {
    key(seed).public_key()
}

/// A config with Ed25519 (key seed `seed`) and the address as identity.
pub fn ed25519_config(seed: u8, ip: &str) -> Config {
    let mut c = Config::new(
        LocalAuth::Ed25519(key(seed)),
        Identity::Ipv4(ip.parse().unwrap()),
    );
    c.dpd_interval = None;
    c
}

pub fn null_config() -> Config {
    let mut c = Config::new(LocalAuth::Null, Identity::Null);
    c.dpd_interval = None;
    c
}

/// What a node answers to [`Event::AuthorizePeer`].
#[derive(Clone, Debug)]
pub enum Authorizer {
    /// Answer at once with this.
    Answer(Option<PeerAuth>),
    /// Leave it to the test.
    Manual,
}

pub struct Node {
    pub ep: Endpoint,
    pub ip: IpAddr,
    pub events: Vec<Event>,
    pub authorizer: Authorizer,
    /// IKE datagrams this node sent.
    pub sent: Vec<Transmit>,
    /// ESP datagrams that arrived for this node.
    pub esp_rx: Vec<Vec<u8>>,
}

impl Node {
    pub fn new(config: Config, ip: &str, seed: u8) -> Self {
        Self {
            ep: Endpoint::new(config, [seed; 32]),
            ip: ip.parse().unwrap(),
            events: Vec::new(),
            authorizer: Authorizer::Manual,
            sent: Vec::new(),
            esp_rx: Vec::new(),
        }
    }

    pub fn established(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::IkeSaEstablished { .. }))
            .count()
    }

    pub fn children(&self) -> Vec<&ChildSa> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished { child, .. } => Some(child),
                Event::ChildSaRekeyed { new, .. } => Some(new),
                _ => None,
            })
            .collect()
    }

    pub fn failures(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Failed { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// A node on the pair's net: it keeps what it sent, its events and the ESP
/// that reached it, and answers `AuthorizePeer` as its [`Authorizer`] says.
impl test_util::Node for Node {
    fn addr(&self) -> IpAddr {
        self.ip
    }

    /// As a UDP receiver would: the marker off on 4500, ESP kept aside.
    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]) {
        match demux(datagram, local.port(), self.ep.config().ike_port) {
            Datagram::Ike(m) => self.ep.handle(now, local, remote, m),
            Datagram::Esp(e) => self.esp_rx.push(e.to_vec()),
            _ => {}
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.ep.poll_transmit()?;
        self.sent.push(t.clone());
        Some(t)
    }

    fn poll_events(&mut self, now: Instant) -> bool {
        let authorizer = &self.authorizer;
        answer_and_record(&mut self.ep, now, &mut self.events, |_| match authorizer {
            Authorizer::Answer(answer) => Some(answer.clone()),
            Authorizer::Manual => None,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }
}

/// Decides per datagram whether to drop it: `(from_a, index of the datagram from that side)`.
pub type DropFn = Box<dyn FnMut(bool, usize, &Transmit) -> bool>;

/// `a` and `b` on core's harness net ([`Net`]: the clock `now`, `latency`,
/// `loss`, `duplicate` and `reorder`, through `Deref`), 1 ms apart.
pub struct Pair {
    pub a: Node,
    pub b: Node,
    /// Handed to the net's filter at the next step.
    pub drop_fn: Option<DropFn>,
    net: Net,
}

impl Deref for Pair {
    type Target = Net;

    fn deref(&self) -> &Net {
        &self.net
    }
}

impl DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut Net {
        &mut self.net
    }
}

impl Pair {
    pub fn new(a: Config, b: Config) -> Self {
        let mut net = Net::new(Instant::now());
        net.latency = Duration::from_millis(1);
        Self {
            a: Node::new(a, A, 1),
            b: Node::new(b, B, 2),
            drop_fn: None,
            net,
        }
    }

    /// The net and the nodes (`a` is node 0), the drop function handed over.
    fn parts(&mut self) -> (&mut Net, [&mut dyn test_util::Node; 2]) {
        if let Some(mut f) = self.drop_fn.take() {
            self.net.filter = Some(Box::new(move |from, i, t: &mut Transmit| {
                f(from == 0, i, t)
            }));
        }
        (&mut self.net, [&mut self.a, &mut self.b])
    }

    /// Ed25519 on both sides, each authorizing the other's key.
    pub fn ed25519() -> Self {
        let mut p = Self::new(ed25519_config(1, A), ed25519_config(2, B));
        p.a.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(2))));
        p.b.authorizer = Authorizer::Answer(Some(PeerAuth::ed25519(public(1))));
        p
    }

    pub fn host_ts(&self) -> TrafficSelectors {
        TrafficSelectors {
            local: vec![AddrSelector::host(self.a.ip)],
            remote: vec![AddrSelector::host(self.b.ip)],
        }
    }

    /// `a` connects to `b` with the given peer key and a 2 s deadline.
    pub fn connect(&mut self, peer: Option<PeerAuth>) -> SaHandle {
        let ts = self.host_ts();
        let deadline = self.now + Duration::from_secs(2);
        let h = self
            .a
            .ep
            .connect(self.now, self.a.ip, self.b.ip, peer, ts, deadline);
        self.flush();
        h
    }

    /// Moves transmits onto the wire and answers/collects events, until quiet.
    pub fn flush(&mut self) {
        let (net, mut nodes) = self.parts();
        net.flush(&mut nodes);
    }

    /// Puts a datagram that did not come from an endpoint (ESP, crafted IKE) on the wire.
    pub fn send_raw(&mut self, from_a: bool, t: Transmit) {
        let (net, _) = self.parts();
        net.send(usize::from(!from_a), t);
    }

    /// The handle of the `n`th IKE SA a node saw established.
    pub fn handle_of(node: &Node, n: usize) -> SaHandle {
        node.events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaEstablished { sa, .. } => Some(*sa),
                _ => None,
            })
            .nth(n)
            .expect("established")
    }

    /// Delivers one datagram to its node, as a UDP receiver would (marker off on 4500).
    pub fn deliver(&mut self, to_b: bool, t: &Transmit) {
        let (net, mut nodes) = self.parts();
        net.deliver_to(&mut nodes, usize::from(to_b), t);
    }

    /// Runs one step: advances the clock to the next wire delivery or timer.
    /// Returns false when nothing is left to do before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let (net, mut nodes) = self.parts();
        net.step(&mut nodes, limit)
    }

    /// Runs for `d` of virtual time (or until nothing is left to do).
    pub fn run_for(&mut self, d: Duration) {
        let (net, mut nodes) = self.parts();
        net.run_for(&mut nodes, d);
    }

    /// Runs until `done` holds, at most `d` of virtual time. Returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let limit = self.now + d;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(limit) {
                return done(self);
            }
        }
    }

    /// Connects with Ed25519 on both sides and runs until both are up.
    pub fn handshake(&mut self) -> SaHandle {
        let h = self.connect(Some(PeerAuth::ed25519(public(2))));
        assert!(
            self.run_until(Duration::from_secs(3), |p| p.a.established() == 1
                && p.b.established() == 1)
        );
        h
    }
}

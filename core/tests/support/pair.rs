//! Two IKE endpoints joined by a virtual link, driven by a virtual clock
//! (quinn's `tests/util.rs` `Pair`): deterministic, seeded loss, duplication
//! and reordering.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use oemesh_core::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use oemesh_core::ike::endpoint::{
    ChildSa, Config, Endpoint, Event, LocalAuth, PeerAuth, SaHandle, TrafficSelectors, Transmit,
};
use oemesh_core::ike::message::{AddrSelector, Identity};
use oemesh_core::ike::udp_encap::{Datagram, classify};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

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

/// One datagram on the wire.
struct InFlight {
    at: Instant,
    to_b: bool,
    t: Transmit,
}

/// Decides per datagram whether to drop it: `(from_a, index of the datagram from that side)`.
pub type DropFn = Box<dyn FnMut(bool, usize, &Transmit) -> bool>;

pub struct Pair {
    pub t0: Instant,
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    pub latency: Duration,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub drop_fn: Option<DropFn>,
    rng: ChaCha20Rng,
    wire: VecDeque<InFlight>,
    sent_a: usize,
    sent_b: usize,
}

impl Pair {
    pub fn new(a: Config, b: Config) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            a: Node::new(a, A, 1),
            b: Node::new(b, B, 2),
            latency: Duration::from_millis(1),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            drop_fn: None,
            rng: ChaCha20Rng::from_seed([9; 32]),
            wire: VecDeque::new(),
            sent_a: 0,
            sent_b: 0,
        }
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

    fn node(&mut self, is_a: bool) -> &mut Node {
        if is_a { &mut self.a } else { &mut self.b }
    }

    /// Moves transmits onto the wire and answers/collects events, until quiet.
    pub fn flush(&mut self) {
        loop {
            let mut progress = false;
            for is_a in [true, false] {
                while let Some(t) = self.node(is_a).ep.poll_transmit() {
                    progress = true;
                    self.node(is_a).sent.push(t.clone());
                    self.put_on_wire(is_a, t);
                }
                while let Some(e) = self.node(is_a).ep.poll_event() {
                    progress = true;
                    let now = self.now;
                    let node = self.node(is_a);
                    if let (Event::AuthorizePeer { sa, .. }, Authorizer::Answer(answer)) =
                        (&e, &node.authorizer)
                    {
                        let (sa, answer) = (*sa, answer.clone());
                        node.events.push(e);
                        node.ep.authorize(now, sa, answer);
                    } else {
                        node.events.push(e);
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Puts a datagram that did not come from an endpoint (ESP, crafted IKE) on the wire.
    pub fn send_raw(&mut self, from_a: bool, t: Transmit) {
        self.put_on_wire(from_a, t);
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

    fn put_on_wire(&mut self, from_a: bool, t: Transmit) {
        let index = if from_a { self.sent_a } else { self.sent_b };
        if from_a {
            self.sent_a += 1
        } else {
            self.sent_b += 1
        }
        if let Some(f) = self.drop_fn.as_mut()
            && f(from_a, index, &t)
        {
            return;
        }
        if self.chance(self.loss) {
            return;
        }
        let mut at = self.now + self.latency;
        if self.chance(self.reorder) {
            at += self.latency * 3;
        }
        if self.chance(self.duplicate) {
            self.insert(InFlight {
                at: at + self.latency,
                to_b: from_a,
                t: t.clone(),
            });
        }
        self.insert(InFlight {
            at,
            to_b: from_a,
            t,
        });
    }

    fn insert(&mut self, f: InFlight) {
        let pos = self
            .wire
            .iter()
            .position(|x| x.at > f.at)
            .unwrap_or(self.wire.len());
        self.wire.insert(pos, f);
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    /// Delivers one datagram to its node, as a UDP receiver would (marker off on 4500).
    pub fn deliver(&mut self, to_b: bool, t: &Transmit) {
        let now = self.now;
        let node = if to_b { &mut self.b } else { &mut self.a };
        let ike_port = node.ep.config().ike_port;
        let payload = if t.remote.port() == ike_port {
            &t.payload[..]
        } else {
            match classify(&t.payload) {
                Datagram::Ike(m) => m,
                Datagram::Esp(e) => {
                    node.esp_rx.push(e.to_vec());
                    return;
                }
                _ => return,
            }
        };
        node.ep.handle(now, t.remote, t.local, payload);
    }

    /// The next instant something happens.
    fn next_at(&self) -> Option<Instant> {
        [
            self.wire.front().map(|f| f.at),
            self.a.ep.poll_timeout(),
            self.b.ep.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs one step: advances the clock to the next wire delivery or timer.
    /// Returns false when nothing is left to do before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let Some(at) = self.next_at() else {
            return false;
        };
        if at > limit {
            return false;
        }
        self.now = self.now.max(at);
        while self.wire.front().is_some_and(|f| f.at <= self.now) {
            let f = self.wire.pop_front().unwrap();
            self.deliver(f.to_b, &f.t);
            self.flush();
        }
        for is_a in [true, false] {
            if self
                .node(is_a)
                .ep
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                self.node(is_a).ep.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Runs for `d` of virtual time (or until nothing is left to do).
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = self.now.max(limit);
        self.flush();
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

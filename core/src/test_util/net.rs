//! The virtual network: a clock, and a wire that delivers each datagram to
//! the node whose address it names, after a latency, with seeded loss,
//! duplication and reordering (deterministic: the same seed, the same run).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::peer::Node;
use crate::ike::endpoint::Transmit;

/// Sees every datagram a node sends before it goes on the wire:
/// `(sender's index, index of the datagram among the sender's, the datagram)`.
/// It may alter the datagram; returning true drops it.
pub type Filter = Box<dyn FnMut(usize, usize, &mut Transmit) -> bool>;

/// One datagram on the wire.
struct InFlight {
    at: Instant,
    t: Transmit,
}

/// The clock and the wire between the nodes (which the caller keeps, and
/// passes to each call as `&mut [&mut dyn Node]`).
pub struct Net {
    /// Where the clock started.
    pub t0: Instant,
    /// The virtual clock.
    pub now: Instant,
    /// How long a datagram takes (zero: delivered at the instant it is sent).
    pub latency: Duration,
    /// The share of datagrams lost.
    pub loss: f64,
    /// The share of datagrams that arrive twice, a latency apart.
    pub duplicate: f64,
    /// The share of datagrams delayed by three latencies more.
    pub reorder: f64,
    /// Drops, alters or inspects datagrams as they are sent.
    pub filter: Option<Filter>,
    /// The node that gets datagrams to an address no node has (an on-path
    /// attacker sees the answers to an address it spoofed); `None` drops them.
    pub fallback: Option<usize>,
    rng: ChaCha20Rng,
    wire: VecDeque<InFlight>,
    /// Datagrams sent per node, for the filter's index.
    sent: Vec<usize>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("now", &(self.now - self.t0))
            .field("latency", &self.latency)
            .field("in_flight", &self.wire.len())
            .finish_non_exhaustive()
    }
}

impl Net {
    /// A lossless net without latency whose clock starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            t0: now,
            now,
            latency: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            filter: None,
            fallback: None,
            rng: ChaCha20Rng::from_seed([9; 32]),
            wire: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    /// Moves every node's datagrams onto the wire and has it act on its
    /// events, until all are quiet (acting on an event may send more).
    /// Returns whether anything moved.
    pub fn flush(&mut self, nodes: &mut [&mut dyn Node]) -> bool {
        let mut moved = false;
        loop {
            let mut progress = false;
            for (i, node) in nodes.iter_mut().enumerate() {
                while let Some(t) = node.poll_transmit() {
                    progress = true;
                    self.send(i, t);
                }
                progress |= node.poll_events(self.now);
            }
            if !progress {
                return moved;
            }
            moved = true;
        }
    }

    /// Puts a datagram from node `from` on the wire, through the filter and
    /// the link's loss, reordering and duplication. Also for datagrams no
    /// endpoint made (ESP, crafted IKE).
    pub fn send(&mut self, from: usize, mut t: Transmit) {
        if self.sent.len() <= from {
            self.sent.resize(from + 1, 0);
        }
        let index = self.sent[from];
        self.sent[from] += 1;
        if let Some(f) = self.filter.as_mut()
            && f(from, index, &mut t)
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
                t: t.clone(),
            });
        }
        self.insert(InFlight { at, t });
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
        p > 0.0 && (f64::from(self.rng.next_u32()) / f64::from(u32::MAX)) < p
    }

    /// Takes the next datagram due by now off the wire.
    pub fn pop_due(&mut self) -> Option<Transmit> {
        if self.wire.front().is_some_and(|f| f.at <= self.now) {
            self.wire.pop_front().map(|f| f.t)
        } else {
            None
        }
    }

    /// The node a datagram goes to: the one at its destination address, or
    /// the fallback.
    pub fn route(&self, nodes: &[&mut dyn Node], t: &Transmit) -> Option<usize> {
        nodes
            .iter()
            .position(|n| n.addr() == t.remote.ip())
            .or(self.fallback)
    }

    /// Hands `t` to the node it is for (see [`Net::route`]) now.
    pub fn deliver(&mut self, nodes: &mut [&mut dyn Node], t: &Transmit) {
        if let Some(to) = self.route(nodes, t) {
            self.deliver_to(nodes, to, t);
        }
    }

    /// Hands `t` to node `to` now, as its UDP socket on `t.remote` would.
    pub fn deliver_to(&mut self, nodes: &mut [&mut dyn Node], to: usize, t: &Transmit) {
        if let Some(node) = nodes.get_mut(to) {
            node.receive(self.now, t.remote, t.local, &t.payload);
        }
    }

    /// The next instant something happens: a delivery or a timer.
    pub fn next_at(&self, nodes: &[&mut dyn Node]) -> Option<Instant> {
        let timers = nodes.iter().filter_map(|n| n.poll_timeout());
        self.wire
            .front()
            .map(|f| f.at)
            .into_iter()
            .chain(timers)
            .min()
    }

    /// Runs one step: advances the clock to the next delivery or timer, if
    /// that is not after `limit`, delivers what is due and runs the timers
    /// that are. Returns false when nothing is left to do by `limit`.
    pub fn step(&mut self, nodes: &mut [&mut dyn Node], limit: Instant) -> bool {
        self.flush(nodes);
        let Some(at) = self.next_at(nodes) else {
            return false;
        };
        if at > limit {
            return false;
        }
        self.now = self.now.max(at);
        while let Some(t) = self.pop_due() {
            self.deliver(nodes, &t);
            self.flush(nodes);
        }
        let now = self.now;
        for node in nodes.iter_mut() {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        self.flush(nodes);
        true
    }

    /// Steps until nothing is left to do by `limit`; the clock stays at the
    /// last thing that happened.
    pub fn run(&mut self, nodes: &mut [&mut dyn Node], limit: Instant) {
        while self.step(nodes, limit) {}
    }

    /// Runs for `d` of virtual time (or until nothing is left to do); the
    /// clock ends `d` later.
    pub fn run_for(&mut self, nodes: &mut [&mut dyn Node], d: Duration) {
        let limit = self.now + d;
        self.run(nodes, limit);
        self.now = self.now.max(limit);
        self.flush(nodes);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;

    /// Answers every datagram with the same bytes, until `echoes` run out.
    struct Echo {
        addr: IpAddr,
        echoes: usize,
        out: VecDeque<Transmit>,
        received: Vec<(Instant, Vec<u8>)>,
    }

    impl Echo {
        fn new(addr: &str, echoes: usize) -> Echo {
            Echo {
                addr: addr.parse().expect("address"),
                echoes,
                out: VecDeque::new(),
                received: Vec::new(),
            }
        }
    }

    impl Node for Echo {
        fn addr(&self) -> IpAddr {
            self.addr
        }

        fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, d: &[u8]) {
            self.received.push((now, d.to_vec()));
            if self.echoes > 0 {
                self.echoes -= 1;
                self.out.push_back(to(local, remote, d));
            }
        }

        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop_front()
        }

        fn poll_events(&mut self, _: Instant) -> bool {
            false
        }

        fn poll_timeout(&self) -> Option<Instant> {
            None
        }

        fn handle_timeout(&mut self, _: Instant) {}
    }

    fn to(local: SocketAddr, remote: SocketAddr, payload: &[u8]) -> Transmit {
        Transmit {
            local,
            remote,
            payload: payload.to_vec(),
        }
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn delivers_by_address_after_the_latency() {
        let (mut a, mut b) = (Echo::new("192.0.2.1", 0), Echo::new("192.0.2.2", 1));
        let t0 = Instant::now();
        let mut net = Net::new(t0);
        net.latency = Duration::from_millis(5);
        net.send(0, to(sock("192.0.2.1:500"), sock("192.0.2.2:500"), b"hi"));
        net.run_for(&mut [&mut a, &mut b], Duration::from_secs(1));
        let ms = |at: Instant| (at - t0).as_millis();
        assert_eq!(b.received.len(), 1);
        assert_eq!(ms(b.received[0].0), 5);
        assert_eq!(a.received.len(), 1, "the echo came back");
        assert_eq!(
            (ms(a.received[0].0), &a.received[0].1[..]),
            (10, &b"hi"[..])
        );
        assert_eq!(ms(net.now), 1000);
    }

    #[test]
    fn the_filter_drops_and_alters_and_the_fallback_takes_the_rest() {
        let (mut a, mut b) = (Echo::new("192.0.2.1", 0), Echo::new("192.0.2.2", 0));
        let mut net = Net::new(Instant::now());
        net.filter = Some(Box::new(|from, i, t| {
            t.payload.push(u8::try_from(i).unwrap_or(u8::MAX));
            from == 0 && i == 0
        }));
        net.fallback = Some(0);
        for dst in ["192.0.2.2:500", "192.0.2.2:500", "198.51.100.1:500"] {
            net.send(0, to(sock("192.0.2.1:500"), sock(dst), b"x"));
        }
        net.run(&mut [&mut a, &mut b], net.now);
        let payloads = |n: &Echo| n.received.iter().map(|r| r.1.clone()).collect::<Vec<_>>();
        assert_eq!(payloads(&b), [b"x\x01".to_vec()], "the first was dropped");
        assert_eq!(payloads(&a), [b"x\x02".to_vec()], "to nobody: the fallback");
    }
}

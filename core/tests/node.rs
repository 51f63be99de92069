//! The OE node on a virtual clock: two nodes exchange IKE through the shared
//! harness (`oemesh_core::test_util::Net`), DNS answers come from the test,
//! and each node's commands are recorded in order.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod oe_common;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use oe_common::{ed, ip, nxdomain, policy, records};
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config as IkeConfig, Endpoint, LocalAuth, SaHandle, Transmit};
use oemesh_core::ike::message::Identity;
use oemesh_core::ike::udp_encap::Datagram;
use oemesh_core::ipseckey::{DomainName, Gateway, reverse_name};
use oemesh_core::oe::node::Note;
use oemesh_core::oe::{
    Addresses, Auth, Cause, Command, Config, DnsResult, Group, GroupOptions, Machine, Negotiation,
    Node, NodeConfig, Outcome, PacketFate, StaleSpiFate, State, Unreachable, UnreachableFate,
    UnreachableKind,
};
use oemesh_core::test_util::{self, Net};

const IDLE: Duration = Duration::from_secs(60);

#[path = "node/gateway.rs"]
mod gateway;

/// What a node asked its driver to do, in short.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Did {
    Transmit,
    Install {
        dst: IpAddr,
        publish: bool,
    },
    Publish {
        dst: IpAddr,
    },
    Remove {
        spi: u32,
    },
    SendHeld {
        dst: IpAddr,
        packets: Vec<Vec<u8>>,
    },
    SendClear {
        packets: usize,
    },
    Decided {
        state: State,
    },
    PrivateEnded {
        dst: IpAddr,
    },
    SetPrivate {
        added: Vec<IpAddr>,
        removed: Vec<IpAddr>,
    },
    Idle,
    Bypass,
    Unbypass,
    Expired {
        dst: IpAddr,
    },
    Forgotten {
        dst: IpAddr,
    },
    Cached {
        state: State,
        passthrough: bool,
    },
    Track,
    Forget,
    ChildRefused(String),
    NotVouched(String),
    CancelLookup(DomainName),
}

/// One host: its node, what it did, and the ESP packets its SAs carried.
struct Host {
    node: Node,
    ip: IpAddr,
    did: Vec<Did>,
    outcomes: Vec<Outcome>,
    /// Installed pairs: IKE SA and inbound SPI.
    installed: Vec<(SaHandle, u32)>,
    /// Packets per IKE SA, as the data path would count them.
    packets: HashMap<SaHandle, u64>,
    /// IPSECKEY answers by owner name; a name without one is never answered.
    dns: HashMap<DomainName, DnsResult>,
    /// IKE datagrams the node asked to send, for the net to take.
    outbox: VecDeque<Transmit>,
    /// Every CHILD SA installed, with its traffic selectors.
    children: Vec<oemesh_core::ike::endpoint::ChildSa>,
}

impl Host {
    fn new(ip_s: &str, seed: u8, anonymous: bool, now: Instant) -> Host {
        Host::with_options(ip_s, seed, anonymous, now, GroupOptions::default())
    }

    fn with_options(
        ip_s: &str,
        seed: u8,
        anonymous: bool,
        now: Instant,
        options: GroupOptions,
    ) -> Host {
        let addresses = Addresses::one(ip(ip_s));
        Host::with_addresses(addresses, seed, anonymous, now, options)
    }

    /// A host with `addresses` (one per family); `ip` is the first.
    fn with_addresses(
        addresses: Addresses,
        seed: u8,
        anonymous: bool,
        now: Instant,
        options: GroupOptions,
    ) -> Host {
        let addr = addresses.first().unwrap();
        let mut ike = if anonymous {
            IkeConfig::new(LocalAuth::Null, Identity::Null)
        } else {
            // The identity of the first address; the engine speaks as the
            // address each IKE SA is on (`id_is_sa_address`).
            let key = Ed25519SigningKey::from_seed(&[seed; 32]);
            let id = match addr {
                IpAddr::V4(a) => Identity::Ipv4(a),
                IpAddr::V6(a) => Identity::Ipv6(a),
            };
            IkeConfig::new(LocalAuth::Ed25519(key), id)
        };
        ike.dpd_interval = None;
        let endpoint = Endpoint::new(ike, [seed; 32]);
        let options = [(Group::PrivateOrClear, options)];
        let machine = Machine::new(Config::default(), policy(&options));
        let config = NodeConfig {
            addresses,
            idle_timeout: IDLE,
        };
        Host {
            node: Node::new(config, endpoint, machine, now),
            ip: addr,
            did: Vec::new(),
            outcomes: Vec::new(),
            installed: Vec::new(),
            packets: HashMap::new(),
            dns: HashMap::new(),
            outbox: VecDeque::new(),
            children: Vec::new(),
        }
    }

    /// Publishes `peer`'s Ed25519 key (seed `seed`) at its reverse name.
    fn knows(&mut self, peer: &Host, seed: u8) {
        let name = reverse_name(peer.ip);
        let answer = records(vec![ed(10, Gateway::None, seed)], true);
        self.dns.insert(name, answer);
    }

    /// `peer` publishes no key.
    fn knows_no_key(&mut self, peer: &Host) {
        self.dns.insert(reverse_name(peer.ip), nxdomain(Some(300)));
    }

    /// No IPSECKEY at `name`.
    fn knows_no_key_at(&mut self, name: DomainName) {
        self.dns.insert(name, nxdomain(Some(300)));
    }

    /// Carries out the node's commands until the round ends: IKE to the
    /// outbox, DNS answers fed back at once. Returns whether there were any.
    fn drive(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let mut answers = Vec::new();
            while let Some(c) = self.node.poll_command(now) {
                any = true;
                match c {
                    Command::Transmit(t) => {
                        self.did.push(Did::Transmit);
                        self.outbox.push_back(t);
                    }
                    Command::LookupKey { name } => {
                        if let Some(a) = self.dns.get(&name) {
                            answers.push((name, a.clone()));
                        }
                    }
                    Command::CancelLookup { name } => self.did.push(Did::CancelLookup(name)),
                    Command::InstallChild {
                        sa,
                        dst,
                        publish,
                        child,
                    } => {
                        self.packets.entry(sa).or_insert(0);
                        self.installed.push((sa, child.spis.inbound));
                        self.did.push(Did::Install { dst, publish });
                        self.children.push(child);
                    }
                    Command::PublishOutbound { dst } => self.did.push(Did::Publish { dst }),
                    Command::RemoveChild { inbound_spi } => {
                        self.did.push(Did::Remove { spi: inbound_spi });
                    }
                    Command::SendHeld { dst, mut packets } => {
                        let packets = packets.drain().collect();
                        self.did.push(Did::SendHeld { dst, packets });
                    }
                    Command::SendClear { mut packets } => {
                        let packets = packets.drain().count();
                        self.did.push(Did::SendClear { packets });
                    }
                    Command::Decided { outcome } => {
                        self.did.push(Did::Decided {
                            state: outcome.state,
                        });
                        self.outcomes.push(outcome);
                    }
                    Command::PrivateEnded { dst } => self.did.push(Did::PrivateEnded { dst }),
                    Command::SetPrivatePeers { added, removed } => {
                        self.did.push(Did::SetPrivate { added, removed });
                    }
                    Command::Log {
                        note: Note::Idle { .. },
                        ..
                    } => self.did.push(Did::Idle),
                    Command::Log {
                        note: Note::ChildRefused { reason, .. },
                        ..
                    } => self.did.push(Did::ChildRefused(reason)),
                    Command::Log {
                        note: Note::NotVouched { why, .. },
                        ..
                    } => self.did.push(Did::NotVouched(why)),
                    Command::Bypass { .. } => self.did.push(Did::Bypass),
                    Command::Unbypass { .. } => self.did.push(Did::Unbypass),
                    Command::OutcomeExpired { dst } => self.did.push(Did::Expired { dst }),
                    Command::ForgetOutcome { dst } => self.did.push(Did::Forgotten { dst }),
                    Command::Track { .. } => self.did.push(Did::Track),
                    Command::Forget { .. } => self.did.push(Did::Forget),
                    Command::CacheOutcome { outcome } => self.did.push(Did::Cached {
                        state: outcome.state,
                        passthrough: outcome.cause == Cause::Passthrough,
                    }),
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

    fn position(&self, what: &Did) -> usize {
        self.did
            .iter()
            .position(|d| d == what)
            .unwrap_or_else(|| panic!("{what:?} not in {:#?}", self.did))
    }

    fn count(&self, pred: impl Fn(&Did) -> bool) -> usize {
        self.did.iter().filter(|d| pred(d)).count()
    }
}

/// A node on the harness' net: datagrams in through `handle_ike`, its
/// commands carried out when the net asks for events, and the data path's
/// packet counts fed to each idle scan.
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
        if self.node.idle_scan_due(now) {
            self.node.handle_activity(now, self.packets.clone());
        }
    }
}

/// Two hosts on the harness' net (which may drop everything), and its clock.
struct World {
    net: Net,
    now: Instant,
    a: Host,
    b: Host,
}

impl World {
    fn new(anonymous: bool) -> World {
        let now = Instant::now();
        let a = Host::new("10.0.2.1", 1, anonymous, now);
        let b = Host::new("10.0.2.2", 2, anonymous, now);
        World {
            net: Net::new(now),
            now,
            a,
            b,
        }
    }

    /// Both publish their keys, and each finds the other's.
    fn authenticated() -> World {
        let mut w = World::new(false);
        let (a, b) = (&mut w.a, &mut w.b);
        a.knows(b, 2);
        b.knows(a, 1);
        w
    }

    /// Neither publishes a key: anonymous IKE.
    fn anonymous() -> World {
        let mut w = World::new(true);
        let (a, b) = (&mut w.a, &mut w.b);
        a.knows_no_key(b);
        b.knows_no_key(a);
        w
    }

    /// [`World::anonymous`], with A's group passing packets through.
    fn anonymous_passthrough() -> World {
        let mut w = World::anonymous();
        let options = GroupOptions {
            negotiation: Negotiation::Passthrough,
            ..GroupOptions::default()
        };
        w.a = Host::with_options("10.0.2.1", 1, true, w.now, options);
        w.a.knows_no_key(&w.b);
        w
    }

    /// From now on the link loses every datagram.
    fn cut_link(&mut self) {
        self.net.filter = Some(Box::new(|_, _, _| true));
    }

    /// Runs both nodes until nothing is in flight or due now.
    fn settle(&mut self) {
        let now = self.now;
        self.net.run(&mut [&mut self.a, &mut self.b], now);
        self.now = self.net.now;
    }

    /// Moves the clock by `d`, firing timers (and idle scans, with the
    /// hosts' packet counts) as they fall due.
    fn advance(&mut self, d: Duration) {
        self.net.run_for(&mut [&mut self.a, &mut self.b], d);
        self.now = self.net.now;
    }

    /// A packet from A to B (held: B is undecided).
    fn a_sends(&mut self, packet: &[u8]) -> PacketFate {
        let dst = self.b.ip;
        self.a.node.handle_packet(self.now, dst, packet.to_vec())
    }
}

#[test]
fn an_oe_handshake_installs_a_child_on_both_sides() {
    let mut w = World::authenticated();
    assert_eq!(w.a_sends(b"hello"), PacketFate::Held);
    assert_eq!(w.a.node.pending().len(), 1);
    w.settle();
    let (a, b) = (w.a.ip, w.b.ip);
    w.a.position(&Did::Install {
        dst: b,
        publish: false,
    });
    w.b.position(&Did::Install {
        dst: a,
        publish: false,
    });
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Private);
    assert!(matches!(outcome.cause, Cause::Established { .. }));
    assert!(w.a.node.pending().is_empty());
    // B answered A's IKE: it is private too, with A in its set.
    w.b.position(&Did::SetPrivate {
        added: vec![a],
        removed: vec![],
    });
}

#[test]
fn a_responder_installs_its_child_before_its_ike_auth_response_leaves() {
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    let a = w.a.ip;
    let install = w.b.position(&Did::Install {
        dst: a,
        publish: false,
    });
    // B's last datagram is its IKE_AUTH response: A's first ESP (the held
    // packet) may follow it at once, and must find the SA.
    let last = w.b.did.iter().rposition(|d| *d == Did::Transmit);
    assert!(Some(install) < last, "{:#?}", w.b.did);
}

#[test]
fn held_packets_go_out_after_install_and_before_publish() {
    let mut w = World::authenticated();
    w.a_sends(b"one");
    w.a_sends(b"two");
    w.settle();
    let b = w.b.ip;
    let install = w.a.position(&Did::Install {
        dst: b,
        publish: false,
    });
    let decided = w.a.position(&Did::Decided {
        state: State::Private,
    });
    let held = w.a.position(&Did::SendHeld {
        dst: b,
        packets: vec![b"one".to_vec(), b"two".to_vec()],
    });
    let publish = w.a.position(&Did::Publish { dst: b });
    let set = w.a.position(&Did::SetPrivate {
        added: vec![b],
        removed: vec![],
    });
    assert!(install < decided && decided < held && held < publish && publish < set);
    // The nftables update closes the round.
    assert_eq!(set, w.a.did.len() - 1, "{:#?}", w.a.did);
}

#[test]
fn an_idle_sa_is_closed_and_a_busy_one_is_not() {
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    // Traffic on A's SA every scan: nothing closes for twice the timeout.
    for _ in 0..8 {
        for n in w.a.packets.values_mut() {
            *n += 1;
        }
        w.advance(IDLE / 4);
    }
    assert_eq!(w.a.count(|d| *d == Did::Idle), 0, "{:#?}", w.a.did);
    // Silence: A closes it after the idle timeout and a scan interval.
    w.advance(IDLE + IDLE / 2);
    assert_eq!(w.a.count(|d| *d == Did::Idle), 1, "{:#?}", w.a.did);
    assert_eq!(w.a.count(|d| matches!(d, Did::Remove { .. })), 1);
    assert_eq!(w.b.count(|d| matches!(d, Did::Remove { .. })), 1);
}

#[test]
fn a_private_outcome_ends_with_its_last_sa() {
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    let (a, b) = (w.a.ip, w.b.ip);
    assert_eq!(w.a.count(|d| matches!(d, Did::PrivateEnded { .. })), 0);
    w.advance(IDLE * 2);
    let removed = w.a.position(&Did::Remove {
        spi: removed_spi(&w.a),
    });
    let ended = w.a.position(&Did::PrivateEnded { dst: b });
    let set = w.a.did.iter().rposition(|d| match d {
        Did::SetPrivate { added, removed } => added.is_empty() && removed.contains(&b),
        _ => false,
    });
    assert!(removed < ended && Some(ended) < set, "{:#?}", w.a.did);
    w.b.position(&Did::PrivateEnded { dst: a });
    // The authenticated peer stays remembered (downgrade detection).
    assert_eq!(w.a.node.machine().remembered_private(), 1);
    // The next packet decides again.
    assert_eq!(w.a_sends(b"again"), PacketFate::Held);
}

#[test]
fn a_rekeyed_pair_keeps_the_outcome_when_the_old_one_goes() {
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    let [(sa, old)] = w.a.installed[..] else {
        panic!("{:?}", w.a.installed)
    };
    // The data path says the pair reached its soft byte limit: rekey.
    let soft = oemesh_core::esp::LifetimeEvent::SoftExpired;
    w.a.node.handle_lifetime(w.now, sa, old, soft);
    w.settle();
    let b = w.b.ip;
    assert_eq!(w.a.installed.len(), 2, "{:#?}", w.a.did);
    w.a.position(&Did::Install {
        dst: b,
        publish: true,
    });
    w.a.position(&Did::Remove { spi: old });
    assert_eq!(w.a.count(|d| matches!(d, Did::PrivateEnded { .. })), 0);
}

fn removed_spi(h: &Host) -> u32 {
    h.did
        .iter()
        .find_map(|d| match d {
            Did::Remove { spi } => Some(*spi),
            _ => None,
        })
        .expect("a removal")
}

#[test]
fn an_anonymous_peer_is_never_remembered_as_private() {
    let mut w = World::anonymous();
    w.a_sends(b"x");
    w.settle();
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Private);
    assert_eq!(outcome.auth, oemesh_core::oe::Auth::Anonymous);
    w.advance(IDLE * 2);
    let b = w.b.ip;
    w.a.position(&Did::PrivateEnded { dst: b });
    assert_eq!(w.a.node.machine().remembered_private(), 0);
    assert_eq!(w.b.node.machine().remembered_private(), 0);
}

#[test]
fn a_wrong_key_fails_the_attempt_and_the_destination_goes_clear() {
    let mut w = World::authenticated();
    w.a.knows(&w.b, 9); // not B's key
    w.a_sends(b"x");
    w.settle();
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
    let Cause::IkeFailed { attempts, .. } = &outcome.cause else {
        panic!("{outcome}")
    };
    assert!(attempts.iter().all(|a| a.reason.is_some()), "{outcome}");
    let bypass = w.a.position(&Did::Bypass);
    let clear = w.a.position(&Did::SendClear { packets: 1 });
    assert!(bypass < clear);
    assert_eq!(w.a.count(|d| matches!(d, Did::Install { .. })), 0);
}

#[test]
fn an_unanswered_attempt_times_out_and_the_outcome_says_so() {
    let mut w = World::authenticated();
    w.cut_link();
    w.a_sends(b"x");
    w.settle();
    w.advance(Duration::from_secs(30));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
    let Cause::IkeFailed { attempts, .. } = &outcome.cause else {
        panic!("{outcome}")
    };
    assert!(attempts.iter().all(|a| a.reason.is_none()), "{outcome}");
    // The clear outcome expires: its bypass is undone by the driver.
    let expires = outcome.expires_at.expect("a clear outcome expires");
    let left = expires.saturating_duration_since(w.now);
    w.advance(left + Duration::from_secs(1));
    let b = w.b.ip;
    assert!(w.a.position(&Did::Bypass) < w.a.position(&Did::Expired { dst: b }));
}

/// Records where A's first IKE_SA_INIT goes and its SPIi (what an attacker
/// on the path sees); with `drop_all`, the link loses everything A sends.
fn capture_a_init(
    w: &mut World,
    drop_all: bool,
) -> std::rc::Rc<std::cell::RefCell<Option<(SocketAddr, u64)>>> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
    let s = seen.clone();
    w.net.filter = Some(Box::new(move |from, _, t: &mut Transmit| {
        if from == 0 && s.borrow().is_none() && t.payload.len() >= 8 {
            let spi = u64::from_be_bytes(t.payload[..8].try_into().unwrap());
            *s.borrow_mut() = Some((t.remote, spi));
        }
        drop_all && from == 0
    }));
    seen
}

fn port_unreachable(to: SocketAddr, spi_i: Option<u64>) -> Unreachable {
    Unreachable {
        to,
        from: Some(to.ip()),
        kind: UnreachableKind::Port,
        spi_i,
    }
}

#[test]
fn a_keyless_destination_that_answers_port_unreachable_goes_clear_at_once() {
    let mut w = World::anonymous();
    let seen = capture_a_init(&mut w, true);
    let start = w.now;
    w.a_sends(b"x");
    w.settle();
    let (to, spi) = seen.borrow().expect("an IKE_SA_INIT left");
    // An error that quotes another SPI is not about this attempt.
    let forged = port_unreachable(to, Some(spi ^ 1));
    assert_eq!(
        w.a.node.handle_unreachable(w.now, forged),
        UnreachableFate::Ignored
    );
    assert!(w.a.outcomes.is_empty());
    let fate =
        w.a.node
            .handle_unreachable(w.now, port_unreachable(to, Some(spi)));
    assert_eq!(fate, UnreachableFate::Ended);
    w.a.drive(w.now);
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
    assert_eq!(outcome.decided_at, start, "no clock tick needed");
    assert!(outcome.reason.contains("port unreachable"), "{outcome}");
    w.a.position(&Did::SendClear { packets: 1 });
    assert_eq!(w.a.node.machine().counters().unreachable_ended, 1);
}

#[test]
fn a_forged_port_unreachable_does_not_end_an_attempt_with_a_keyed_peer() {
    let mut w = World::authenticated();
    w.net.latency = Duration::from_millis(40);
    let seen = capture_a_init(&mut w, false);
    w.a_sends(b"x");
    w.a.drive(w.now);
    w.advance(Duration::from_millis(1)); // the IKE_SA_INIT is on the wire
    let (to, spi) = seen.borrow().expect("an IKE_SA_INIT left");
    // On the path, the attacker quotes the real SPI: the key in DNS says the
    // peer runs IKE, so the error only shortens the wait.
    let fate =
        w.a.node
            .handle_unreachable(w.now, port_unreachable(to, Some(spi)));
    assert_eq!(fate, UnreachableFate::Shortened);
    w.advance(Duration::from_secs(1));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Private, "{outcome}");
}

#[test]
fn a_keyed_peer_that_stays_unreachable_fails_after_the_grace_and_says_why() {
    let mut w = World::authenticated();
    let seen = capture_a_init(&mut w, true);
    w.a_sends(b"x");
    w.settle();
    let (to, spi) = seen.borrow().expect("an IKE_SA_INIT left");
    let fate =
        w.a.node
            .handle_unreachable(w.now, port_unreachable(to, Some(spi)));
    assert_eq!(fate, UnreachableFate::Shortened);
    let at = w.now;
    w.advance(Duration::from_secs(5));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
    assert_eq!(
        outcome.decided_at - at,
        Config::default().icmp_grace,
        "{outcome}"
    );
    assert!(
        outcome.reason.contains("port unreachable") && outcome.reason.contains("no IKE answer"),
        "{outcome}"
    );
}

#[test]
fn an_error_without_the_spi_only_shortens_even_a_keyless_attempt() {
    let mut w = World::anonymous();
    let seen = capture_a_init(&mut w, true);
    w.a_sends(b"x");
    w.settle();
    let (to, _) = seen.borrow().expect("an IKE_SA_INIT left");
    let fate =
        w.a.node
            .handle_unreachable(w.now, port_unreachable(to, None));
    assert_eq!(fate, UnreachableFate::Shortened);
    assert!(w.a.outcomes.is_empty());
}

#[test]
fn a_silent_keyless_destination_waits_the_anonymous_timeout_only() {
    let mut w = World::anonymous();
    w.cut_link();
    let start = w.now;
    w.a_sends(b"x");
    w.settle();
    w.advance(Duration::from_secs(5));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
    assert_eq!(
        outcome.decided_at - start,
        Config::default().anonymous_timeout
    );
    assert_eq!(w.a.node.machine().counters().anonymous_timeouts, 1);
}

#[test]
fn an_anonymous_peer_that_answers_gets_the_whole_ike_timeout() {
    // 100 ms each way: IKE_SA_INIT is answered within the anonymous timeout,
    // IKE_AUTH completes long after it.
    let mut w = World::anonymous();
    w.net.latency = Duration::from_millis(100);
    let start = w.now;
    w.a_sends(b"x");
    w.settle();
    w.advance(Duration::from_secs(2));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Private, "{outcome}");
    assert!(outcome.decided_at - start > Config::default().anonymous_timeout);
}

#[test]
fn passthrough_sends_in_clear_at_once_and_moves_to_esp_without_a_bypass() {
    let mut w = World::anonymous_passthrough();
    w.net.latency = Duration::from_millis(5);
    w.a_sends(b"first");
    w.a.drive(w.now);
    // Before any IKE answer: the held packet went in clear, and a provisional
    // clear outcome is cached, without a bypass route.
    w.a.position(&Did::SendClear { packets: 1 });
    w.a.position(&Did::Cached {
        state: State::Clear,
        passthrough: true,
    });
    assert!(w.a.outcomes.is_empty(), "not decided yet");
    assert!(w.a.node.pending().contains_key(&w.b.ip));
    w.settle();
    w.advance(Duration::from_millis(100));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Private);
    let b = w.b.ip;
    w.a.position(&Did::Publish { dst: b });
    w.a.position(&Did::Cached {
        state: State::Private,
        passthrough: false,
    });
    assert_eq!(w.a.count(|d| *d == Did::Bypass), 0);
    assert_eq!(w.a.node.machine().counters().passthroughs, 1);
}

#[test]
fn passthrough_to_a_silent_destination_ends_clear_with_the_bypass() {
    let mut w = World::anonymous_passthrough();
    w.cut_link();
    w.a_sends(b"first");
    w.settle();
    w.advance(Duration::from_secs(5));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
    assert!(w.a.position(&Did::SendClear { packets: 1 }) < w.a.position(&Did::Bypass));
}

#[test]
fn attempts_that_end_before_their_sa_is_up_are_forgotten() {
    // A timeout (keyed), an ICMP error (keyless) and the anonymous timeout:
    // each SA the node told its driver to track is forgotten again.
    for case in 0..3 {
        let mut w = if case == 0 {
            World::authenticated()
        } else {
            World::anonymous()
        };
        let seen = capture_a_init(&mut w, true);
        w.a_sends(b"x");
        w.settle();
        if case == 1 {
            let (to, spi) = seen.borrow().expect("an IKE_SA_INIT left");
            w.a.node
                .handle_unreachable(w.now, port_unreachable(to, Some(spi)));
            w.a.drive(w.now);
        }
        w.advance(Duration::from_secs(5));
        assert_eq!(w.a.outcomes.len(), 1, "case {case}: {:?}", w.a.outcomes);
        let tracked = w.a.count(|d| *d == Did::Track);
        assert!(tracked >= 1, "case {case}");
        assert_eq!(
            w.a.count(|d| *d == Did::Forget),
            tracked,
            "case {case}: {:#?}",
            w.a.did
        );
    }
}

#[test]
fn a_forged_error_does_not_cut_a_far_keyed_peer_short_once_it_answers() {
    // 80 ms each way: the IKE_SA_INIT answer comes within the grace, the
    // IKE_AUTH answer long after it. Once the peer has answered, it runs
    // IKE: the error's shortened wait must not end the handshake.
    let mut w = World::authenticated();
    w.net.latency = Duration::from_millis(80);
    let seen = capture_a_init(&mut w, false);
    w.a_sends(b"x");
    w.a.drive(w.now);
    w.advance(Duration::from_millis(1));
    let (to, spi) = seen.borrow().expect("an IKE_SA_INIT left");
    let fate =
        w.a.node
            .handle_unreachable(w.now, port_unreachable(to, Some(spi)));
    assert_eq!(fate, UnreachableFate::Shortened);
    w.advance(Duration::from_secs(2));
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Private, "{outcome}");
}

/// [`oe_common::policy`] with B's address (10.0.2.2) moved into `group`.
fn policy_moving_b(group: Group, options: &[(Group, GroupOptions)]) -> oemesh_core::oe::Policy {
    let base = policy(options);
    let entries = base
        .entries()
        .chain([(group, "10.0.2.2/32".parse().unwrap())])
        .collect::<Vec<_>>();
    oemesh_core::oe::Policy::new(entries, options.iter().copied()).unwrap()
}

#[test]
fn reconfigure_closes_the_sas_a_new_policy_forbids_and_keeps_the_others() {
    for (group, closed) in [
        (Group::Clear, true),
        (Group::Block, true),
        (Group::Private, false),
        (Group::ClearOrPrivate, false),
    ] {
        let mut w = World::authenticated();
        w.a_sends(b"x");
        w.settle();
        let b = w.b.ip;
        let (got, _) =
            w.a.node
                .reconfigure(w.now, Some(policy_moving_b(group, &[])), None);
        w.settle();
        let ended = w.a.count(|d| matches!(d, Did::PrivateEnded { .. }));
        if closed {
            assert_eq!(got.len(), 1, "{group:?}: {got:?}");
            assert_eq!(got[0].0, b);
            assert_eq!(ended, 1, "{group:?}: {:#?}", w.a.did);
            // The peer got the DELETE: its SA went too.
            assert_eq!(w.b.count(|d| matches!(d, Did::PrivateEnded { .. })), 1);
        } else {
            assert!(got.is_empty(), "{group:?}: {got:?}");
            assert_eq!(ended, 0, "{group:?}: {:#?}", w.a.did);
        }
    }
}

#[test]
fn reconfigure_closes_anonymous_sas_where_a_signature_is_now_required() {
    let require = [(Group::PrivateOrClear, GroupOptions::REQUIRE_AUTHENTICATED)];
    // Anonymous: closed.
    let mut w = World::anonymous();
    w.a_sends(b"x");
    w.settle();
    let (got, _) = w.a.node.reconfigure(w.now, Some(policy(&require)), None);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.contains("signature"), "{got:?}");
    // Authenticated: stays.
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    let (got, _) = w.a.node.reconfigure(w.now, Some(policy(&require)), None);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn a_new_local_key_signs_the_next_ike_sa_and_spares_the_live_one() {
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    let installs = w.b.count(|d| matches!(d, Did::Install { .. }));
    // A rolls its key over to seed 7; B learns the new key only.
    let IpAddr::V4(v4) = w.a.ip else { panic!() };
    let new = (
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[7; 32])),
        Identity::Ipv4(v4),
    );
    let (got, _) = w.a.node.reconfigure(w.now, None, Some(new));
    assert!(got.is_empty(), "{got:?}");
    w.b.knows(&w.a, 7);
    w.settle();
    assert_eq!(w.a.count(|d| matches!(d, Did::PrivateEnded { .. })), 0);
    // B's next IKE SA with A (after the idle close) authenticates the new key.
    w.advance(IDLE * 2);
    assert_eq!(w.b.count(|d| matches!(d, Did::PrivateEnded { .. })), 1);
    let dst = w.a.ip;
    assert_eq!(
        w.b.node.handle_packet(w.now, dst, b"y".to_vec()),
        PacketFate::Held
    );
    w.settle();
    assert_eq!(
        w.b.count(|d| matches!(d, Did::Install { .. })),
        installs + 1,
        "{:#?}",
        w.b.did
    );
    let last = w.b.outcomes.last().unwrap();
    assert_eq!(last.state, State::Private, "{last:?}");
    assert_eq!(last.auth, oemesh_core::oe::Auth::Authenticated, "{last:?}");
}

/// Issue 18: B restarts (a crash: A still has its SA and keeps sending ESP
/// under it). ESP from A under an SPI B does not know starts OE toward A at
/// once, with nothing held; its IKE_AUTH carries INITIAL_CONTACT, and A
/// replaces its stale SA with the new one, not after its dead peer detection.
#[test]
fn stale_esp_after_a_restart_gets_new_sas_at_once() {
    let mut w = World::authenticated();
    w.a_sends(b"x");
    w.settle();
    let (a, b) = (w.a.ip, w.b.ip);
    // While A has an SA with B, ESP from B under an unknown SPI is a
    // leftover (of a rekey, say): nothing starts.
    assert_eq!(w.a.node.handle_stale_spi(w.now, b), StaleSpiFate::Known);
    let stale: Vec<u32> = w.a.installed.iter().map(|(_, spi)| *spi).collect();
    assert_eq!(stale.len(), 1);

    w.b = Host::new("10.0.2.2", 2, false, w.now);
    w.b.knows(&w.a, 1);
    assert_eq!(w.b.node.handle_stale_spi(w.now, a), StaleSpiFate::Started);
    assert_eq!(w.b.node.pending().len(), 1);
    w.settle();
    w.b.position(&Did::Decided {
        state: State::Private,
    });
    w.a.position(&Did::Remove { spi: stale[0] });
    let stats = w.a.node.endpoint().stats();
    assert_eq!(stats.initial_contact_replaced, 1, "{stats:?}");
    assert_eq!(stats.ike_sas, 1, "{stats:?}");
    // A's private set still has B: the new SA took over in the same round.
    let last_set = w.a.did.iter().rev().find_map(|d| match d {
        Did::SetPrivate { added, removed } => Some((added.clone(), removed.clone())),
        _ => None,
    });
    assert_eq!(last_set, Some((vec![b], vec![])), "{:#?}", w.a.did);
    // Now B has an SA with A: more reports change nothing.
    assert_eq!(w.b.node.handle_stale_spi(w.now, a), StaleSpiFate::Known);
}

#[test]
fn reconfigure_forgets_clear_outcomes_whose_group_changed() {
    for (group, forgotten) in [(Group::Private, 1), (Group::PrivateOrClear, 0)] {
        let mut w = World::anonymous();
        w.cut_link();
        w.a_sends(b"x");
        w.advance(Duration::from_secs(5));
        let last = w.a.outcomes.last().unwrap();
        assert_eq!(last.state, State::Clear, "{last:?}");
        let (_, n) =
            w.a.node
                .reconfigure(w.now, Some(policy_moving_b(group, &[])), None);
        w.settle();
        assert_eq!(n, forgotten, "{group:?}");
        let did = w.a.count(|d| matches!(d, Did::Forgotten { .. }));
        assert_eq!(did, forgotten, "{group:?}: {:#?}", w.a.did);
        // A forgotten outcome does not expire later as well.
        w.advance(Duration::from_secs(3600));
        let expired = w.a.count(|d| matches!(d, Did::Expired { .. }));
        assert_eq!(expired, 1 - forgotten, "{group:?}");
    }
}

/// Runs `hosts` with no latency: each one's IKE datagrams go to the host
/// that has the destination address (of either family), until quiet.
fn exchange(hosts: &mut [&mut Host], addresses: &[Addresses], now: Instant) {
    loop {
        let mut moved = false;
        for i in 0..hosts.len() {
            hosts[i].drive(now);
            while let Some(t) = hosts[i].outbox.pop_front() {
                moved = true;
                let Some(to) = addresses.iter().position(|a| a.contains(t.remote.ip())) else {
                    continue;
                };
                test_util::Node::receive(&mut *hosts[to], now, t.remote, t.local, &t.payload);
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn a_dual_stack_pair_is_private_and_authenticated_on_both_families_at_once() {
    let now = Instant::now();
    let dual = |v4: &str, v6: &str| {
        let mut a = Addresses::one(ip(v4));
        a.set(ip(v6));
        a
    };
    let a_addrs = dual("10.0.2.1", "2001:db8::1");
    let b_addrs = dual("10.0.2.2", "2001:db8::2");
    let options = GroupOptions::default();
    let mut a = Host::with_addresses(a_addrs, 1, false, now, options);
    let mut b = Host::with_addresses(b_addrs, 2, false, now, options);
    // Each key is published at both of its host's reverse names.
    for (host, peer, seed) in [(&mut a, b_addrs, 2), (&mut b, a_addrs, 1)] {
        for addr in peer.iter() {
            let answer = records(vec![ed(10, Gateway::None, seed)], true);
            host.dns.insert(reverse_name(addr), answer);
        }
    }
    let (b4, b6) = (ip("10.0.2.2"), ip("2001:db8::2"));
    for dst in [b4, b6] {
        assert_eq!(
            a.node.handle_packet(now, dst, b"hello".to_vec()),
            PacketFate::Held
        );
    }
    exchange(&mut [&mut a, &mut b], &[a_addrs, b_addrs], now);
    for (host, peers) in [(&a, [b4, b6]), (&b, [ip("10.0.2.1"), ip("2001:db8::1")])] {
        for dst in peers {
            let o = host
                .outcomes
                .iter()
                .find(|o| o.dst == dst)
                .unwrap_or_else(|| panic!("no outcome for {dst}: {:#?}", host.outcomes));
            assert_eq!(o.state, State::Private, "{o:?}");
            assert_eq!(o.auth, Auth::Authenticated, "{o:?}");
        }
        assert_eq!(
            host.count(|d| matches!(d, Did::Install { .. })),
            2,
            "{:#?}",
            host.did
        );
    }
}

#[test]
fn a_destination_of_a_family_without_an_address_goes_clear_and_says_why() {
    let now = Instant::now();
    let mut a = Host::new("10.0.2.1", 1, false, now);
    let b6 = ip("2001:db8::2");
    a.dns.insert(
        reverse_name(b6),
        records(vec![ed(10, Gateway::None, 2)], true),
    );
    assert_eq!(
        a.node.handle_packet(now, b6, b"hi".to_vec()),
        PacketFate::Held
    );
    a.drive(now);
    assert!(
        a.outbox.is_empty(),
        "no IKE from an address of the other family"
    );
    let [o] = a.outcomes.as_slice() else {
        panic!("{:#?}", a.outcomes)
    };
    assert_eq!(o.state, State::Clear);
    assert!(
        o.reason.contains("no address of 2001:db8::2's family"),
        "{}",
        o.reason
    );
}

//! The OE node: the IKE [`Endpoint`] and the decision [`Machine`] joined,
//! sans-IO. It turns the engine's events into the machine's inputs and the
//! machine's actions into the engine's calls, keeps what that needs (which
//! destination an IKE SA protects, who is anonymous, which SAs are idle), and
//! tells its driver what to do in plain [`Command`]s: install or remove an
//! ESP SA pair, send held packets, publish an outbound SA, add or remove a
//! bypass route, change the set of private peers, send an IKE datagram, look
//! up DNS.
//!
//! How to drive it (quinn-proto's model; nothing here reads a clock):
//!
//! | input | call |
//! |---|---|
//! | a packet to a destination without SA or outcome | [`Node::handle_packet`] |
//! | an IKE datagram | [`Node::handle_ike`] |
//! | an IPSECKEY answer / an A or AAAA answer | [`Node::handle_dns`] / [`Node::handle_address`] |
//! | an ESP SA reached a byte or packet limit | [`Node::handle_lifetime`] |
//! | this host's addresses changed | [`Node::handle_addresses`] |
//! | an ICMP error for an IKE datagram (the socket's error queue) | [`Node::handle_unreachable`] |
//! | ESP with an unknown SPI from a source without a cached outcome | [`Node::handle_stale_spi`] |
//! | authenticated ESP from a new port (a NAT rebinding) | [`Node::handle_esp_moved`] |
//! | the timer at [`Node::poll_timeout`] | [`Node::handle_timeout`], then, if [`Node::idle_scan_due`], [`Node::handle_activity`] |
//!
//! After each input, drain [`Node::poll_command`] and carry the commands out
//! in order. A round ends when it returns `None`; its last command is
//! [`Command::SetPrivatePeers`] when the set changed, so that the nftables
//! update follows the round's messages.
//!
//! The policy it holds:
//! - the destination a CHILD SA protects: the attempt's, else the IKE SA's,
//!   else the one host its remote selector names, else the peer;
//! - the first CHILD SA of a destination is installed with its outbound half
//!   unpublished; the held packets go out through it, and only then is it
//!   published (packets stay in order);
//! - a private outcome ends with the last SA of its peer;
//! - an IKE SA whose ESP carried nothing for the idle timeout is closed.

mod addresses;
mod children;
mod command;
mod glue;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::esp::LifetimeEvent;
use crate::ike::endpoint::{Endpoint, SaHandle, Transmit};
use crate::ipseckey::DomainName;
use crate::oe::{
    AddressResult, DnsResult, Held, Machine, PacketFate, StaleSpiFate, Unreachable, UnreachableFate,
};

pub use addresses::Addresses;
use children::Children;
pub use command::{Command, Level, Note, esp_sas};

/// What the node needs besides the engine's and the machine's configuration.
#[derive(Clone, Copy, Debug)]
pub struct NodeConfig {
    /// This host's addresses, at most one per family: towards a peer, the
    /// one of its family is the IKE SA's local address and the local traffic
    /// selector; a peer of a family without one is not started
    /// ([`crate::oe::NotStarted::NoAddressOfFamily`]).
    pub addresses: Addresses,
    /// An IKE SA whose ESP carried nothing this long is closed.
    pub idle_timeout: Duration,
}

/// An IKE attempt this host started for a destination.
#[derive(Debug, Clone)]
struct Attempt {
    dst: IpAddr,
    peer_addr: IpAddr,
    started: Instant,
    dnssec: bool,
    /// What it was started with: an attempt whose local address vanished
    /// starts again from the new one ([`Node::handle_addresses`]).
    key: crate::oe::PeerKey,
    deadline: Instant,
}

/// What the node knows of one IKE SA.
#[derive(Debug, Clone, Copy)]
struct SaInfo {
    anonymous: bool,
    dnssec: bool,
    /// Anonymous, accepted although the lookup of its key failed.
    lookup_failed: bool,
    /// The destination its CHILD SAs protect, once known.
    dst: Option<IpAddr>,
}

/// Traffic of one IKE SA at the last idle scan.
#[derive(Debug, Clone, Copy)]
struct Activity {
    packets: u64,
    since: Instant,
}

/// Where [`Node::poll_command`] is in a round: engine events, then engine
/// transmits, then machine actions, again until all three are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Events,
    Transmits,
    Actions,
}

/// See the module docs.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    endpoint: Endpoint,
    machine: Machine,
    attempts: HashMap<SaHandle, Attempt>,
    sas: HashMap<SaHandle, SaInfo>,
    children: Children,
    /// Destinations being decided, since when.
    pending: HashMap<IpAddr, Instant>,
    /// Clear and blocked outcomes by expiry.
    expiries: BTreeSet<(Instant, IpAddr)>,
    /// Destinations whose IKE did not start for want of an address of a
    /// family (→ the address): forgotten when the family gets one.
    no_address: HashMap<IpAddr, IpAddr>,
    activity: HashMap<SaHandle, Activity>,
    next_idle_scan: Instant,
    /// Peers that became private this round.
    newly_private: Vec<IpAddr>,
    /// Peers whose last SA went this round (a peer is in at most one list).
    ended_private: Vec<IpAddr>,
    commands: VecDeque<Command>,
    phase: Phase,
    busy: bool,
}

impl Node {
    /// A node around a configured engine and machine, started at `now`.
    pub fn new(config: NodeConfig, endpoint: Endpoint, machine: Machine, now: Instant) -> Node {
        Node {
            next_idle_scan: now + idle_scan_interval(config.idle_timeout),
            config,
            endpoint,
            machine,
            attempts: HashMap::new(),
            sas: HashMap::new(),
            children: Children::default(),
            pending: HashMap::new(),
            expiries: BTreeSet::new(),
            no_address: HashMap::new(),
            activity: HashMap::new(),
            newly_private: Vec::new(),
            ended_private: Vec::new(),
            commands: VecDeque::new(),
            phase: Phase::Events,
            busy: false,
        }
    }

    /// A packet to `dst`, which has neither an SA nor a cached outcome.
    pub fn handle_packet(&mut self, now: Instant, dst: IpAddr, packet: Vec<u8>) -> PacketFate {
        // Only an SA carries packets to the addresses this host gives peers
        // behind a NAT: no lookup, no clear fallback (it would leak them).
        if self.endpoint.is_pool_address(dst) {
            return PacketFate::DroppedPoolAddress;
        }
        let fate = self.machine.on_packet(now, dst, packet);
        if fate == PacketFate::Held && !self.pending.contains_key(&dst) {
            self.pending.insert(dst, now);
            self.log(None, Note::FirstHeld { dst });
        }
        fate
    }

    /// An IKE datagram from `remote` to `local`.
    pub fn handle_ike(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, msg: &[u8]) {
        self.endpoint.handle(now, local, remote, msg);
    }

    /// The answer to a [`Command::LookupKey`].
    pub fn handle_dns(&mut self, now: Instant, name: &DomainName, result: DnsResult) {
        self.machine.on_dns_result(now, name, result);
    }

    /// The answer to a [`Command::LookupAddress`].
    pub fn handle_address(
        &mut self,
        now: Instant,
        name: &DomainName,
        addr: IpAddr,
        result: AddressResult,
    ) {
        self.machine.on_address_result(now, name, addr, result);
    }

    /// An ICMP error for one of our IKE datagrams. It counts only for an
    /// attempt still waiting for the peer's IKE_SA_INIT response, sent to the
    /// error's address and port, with the SPI the error quoted (when it
    /// quoted one); the machine then decides whether it ends the attempt.
    pub fn handle_unreachable(&mut self, now: Instant, error: Unreachable) -> UnreachableFate {
        let found = self.attempts.iter().find_map(|(&sa, a)| {
            if a.peer_addr.to_canonical() != error.to.ip() {
                return None;
            }
            let (remote, spi_i) = self.endpoint.init_sent(sa)?;
            let to = SocketAddr::new(remote.ip().to_canonical(), remote.port());
            (to == error.to && error.spi_i.is_none_or(|s| s == spi_i)).then(|| (sa, a.clone()))
        });
        let Some((sa, a)) = found else {
            return UnreachableFate::Ignored;
        };
        let fate = self.machine.on_unreachable(now, a.dst, a.peer_addr, error);
        if fate != UnreachableFate::Ignored {
            self.log(Some(sa), Note::Unreachable { error, fate });
        }
        fate
    }

    /// ESP from `src` whose SPI names no SA here, and `src` has no cached
    /// outcome (the driver checks its cache, as for [`Node::handle_packet`]).
    /// This host may have restarted while `src` still holds SAs with it:
    /// unless an SA with `src` or a decision for it exists, OE toward `src`
    /// starts as a first packet would start it (nothing is held), so that
    /// the IKE_AUTH carries INITIAL_CONTACT and the peer replaces its stale
    /// SAs at once, not after its dead peer detection. Nobody vouches for
    /// the ESP's source: see [`Machine::on_stale_spi`] for the bounds.
    pub fn handle_stale_spi(&mut self, now: Instant, src: IpAddr) -> StaleSpiFate {
        let src = src.to_canonical();
        if self.pending.contains_key(&src)
            || self.children.serves(src)
            || self.endpoint.has_sa_with(src)
        {
            return StaleSpiFate::Known;
        }
        let fate = self.machine.on_stale_spi(now, src);
        if fate == StaleSpiFate::Started {
            self.pending.insert(src, now);
            self.log(None, Note::StaleSpi { src });
        }
        fate
    }

    /// Authenticated ESP of IKE SA `sa` came from `from`, not from where its
    /// SAs send (the data path checked the ICV and the replay window): a NAT
    /// rebinding of a peer behind a NAT. See [`Endpoint::esp_moved`]; the
    /// [`Command::MovePeer`] follows. Returns whether the peer moved.
    pub fn handle_esp_moved(&mut self, sa: SaHandle, from: SocketAddr) -> bool {
        self.endpoint.esp_moved(sa, from)
    }

    /// An ESP SA of IKE SA `sa` reached its soft (rekey) or hard (delete)
    /// byte or packet limit.
    pub fn handle_lifetime(
        &mut self,
        now: Instant,
        sa: SaHandle,
        inbound_spi: u32,
        event: LifetimeEvent,
    ) {
        match event {
            LifetimeEvent::SoftExpired => self.endpoint.rekey_child(now, sa, inbound_spi),
            LifetimeEvent::HardExpired => self.endpoint.delete_child(now, sa, inbound_spi),
        }
    }

    /// When [`Node::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Instant {
        [
            self.endpoint.poll_timeout(),
            self.machine.poll_timeout(),
            self.expiries.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .fold(self.next_idle_scan, Instant::min)
    }

    /// The timer fired: the engine's and the machine's timeouts, and
    /// [`Command::OutcomeExpired`] for each outcome that ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
        }
        while let Some(&(at, dst)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.remove(&(at, dst));
            self.no_address.remove(&dst);
            self.commands.push_back(Command::OutcomeExpired { dst });
        }
    }

    /// Whether the driver should count each IKE SA's ESP packets now and
    /// pass them to [`Node::handle_activity`].
    pub fn idle_scan_due(&self, now: Instant) -> bool {
        self.next_idle_scan <= now
    }

    /// Packets carried so far (both directions) by the ESP SAs of each IKE
    /// SA that has any: closes those idle for the idle timeout.
    pub fn handle_activity(&mut self, now: Instant, totals: HashMap<SaHandle, u64>) {
        self.activity.retain(|sa, _| totals.contains_key(sa));
        for (sa, packets) in totals {
            let a = self.activity.entry(sa).or_insert(Activity {
                packets,
                since: now,
            });
            if a.packets != packets {
                *a = Activity {
                    packets,
                    since: now,
                };
                // The engine evicts the idlest anonymous SAs first.
                self.endpoint.note_activity(now, sa);
            } else if now.saturating_duration_since(a.since) >= self.config.idle_timeout {
                let idle = self.config.idle_timeout;
                self.log(Some(sa), Note::Idle { idle });
                self.endpoint.close(now, sa);
                self.activity.remove(&sa);
            }
        }
        self.next_idle_scan = now + idle_scan_interval(self.config.idle_timeout);
    }

    /// The next thing to do, or `None` at the end of a round. See
    /// [`Command`] for the order.
    pub fn poll_command(&mut self, now: Instant) -> Option<Command> {
        loop {
            if let Some(c) = self.commands.pop_front() {
                return Some(c);
            }
            match self.phase {
                // Events before transmits: a responder's CHILD SA must be
                // installed before its IKE_AUTH response leaves, or the
                // initiator's first ESP packets (the held ones) can arrive
                // to an unknown SPI.
                Phase::Events => match self.endpoint.poll_event() {
                    Some(event) => {
                        self.busy = true;
                        self.on_event(now, event);
                    }
                    None => self.phase = Phase::Transmits,
                },
                Phase::Transmits => match self.endpoint.poll_transmit() {
                    Some(t) => {
                        self.busy = true;
                        return Some(Command::Transmit(t));
                    }
                    None => self.phase = Phase::Actions,
                },
                Phase::Actions => match self.machine.poll_action() {
                    Some(action) => {
                        self.busy = true;
                        self.on_action(now, action);
                    }
                    None => {
                        self.phase = Phase::Events;
                        if std::mem::take(&mut self.busy) {
                            continue;
                        }
                        return self.end_round();
                    }
                },
            }
        }
    }

    /// After the round's messages have left (the initiator's first ESP need
    /// not wait for it): the private peers that changed, in one command.
    fn end_round(&mut self) -> Option<Command> {
        if self.newly_private.is_empty() && self.ended_private.is_empty() {
            return None;
        }
        Some(Command::SetPrivatePeers {
            added: std::mem::take(&mut self.newly_private),
            removed: std::mem::take(&mut self.ended_private),
        })
    }

    /// Closes every IKE SA (the host shuts down); the DELETE requests come
    /// from [`Node::poll_transmit`].
    pub fn close_all(&mut self, now: Instant) {
        let handles: Vec<SaHandle> = self
            .sas
            .keys()
            .chain(self.attempts.keys())
            .copied()
            .collect();
        for sa in handles {
            self.endpoint.close(now, sa);
        }
    }

    /// An IKE datagram to send, bypassing the round (for shutdown only).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.endpoint.poll_transmit()
    }

    /// Gives back the emptied packets of [`Command::SendHeld`] or
    /// [`Command::SendClear`], so their storage is reused.
    pub fn recycle(&mut self, held: Held) {
        self.machine.recycle(held);
    }

    /// Destinations being decided, and since when.
    pub fn pending(&self) -> &HashMap<IpAddr, Instant> {
        &self.pending
    }

    /// The IKE engine (statistics).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The decision machine (counters, held packets, policy).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// A new policy and/or a new credential (`oemesh reload`).
    ///
    /// - The machine decides with `policy`, when given, from now on; decisions under way
    ///   keep the group they started in ([`Machine::set_policy`]).
    /// - `local`, when given, signs every IKE_AUTH from now on
    ///   ([`Endpoint::set_local`]); SAs already up stay up.
    /// - A clear or blocked outcome whose destination the new policy puts in
    ///   another group is forgotten ([`Command::ForgetOutcome`]): a prefix
    ///   moved from `clear` to `private` must not stay clear until the
    ///   outcome expires.
    /// - An IKE SA whose destination the new policy no longer allows to be
    ///   private is closed (DELETE to the peer; its CHILD SAs and private
    ///   outcome end through the usual commands): its group no longer answers
    ///   OE (`clear`, `block`), or requires a signature it did not give, or a
    ///   DNSSEC-validated key it was not authenticated with.
    ///
    /// Returns the destinations whose SAs were closed, and why, and how many
    /// outcomes were forgotten.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        policy: Option<crate::oe::Policy>,
        local: Option<(
            crate::ike::endpoint::LocalAuth,
            crate::ike::message::Identity,
        )>,
    ) -> (Vec<(IpAddr, &'static str)>, usize) {
        let mut forgotten = 0;
        if let Some(policy) = policy {
            let regrouped: Vec<(Instant, IpAddr)> = self
                .expiries
                .iter()
                .filter(|&&(_, dst)| self.machine.check(dst).group != policy.lookup(dst).group)
                .copied()
                .collect();
            self.machine.set_policy(policy);
            for expiry in regrouped {
                self.expiries.remove(&expiry);
                self.no_address.remove(&expiry.1);
                self.commands
                    .push_back(Command::ForgetOutcome { dst: expiry.1 });
                forgotten += 1;
            }
        }
        if let Some((auth, id)) = local {
            self.endpoint.set_local(auth, id);
        }
        let mut closing: Vec<(SaHandle, IpAddr, &'static str)> = Vec::new();
        for (&sa, info) in &self.sas {
            let Some(dst) = info.dst else { continue };
            let group = self.machine.check(dst).group;
            let options = self.machine.policy.options(group);
            let why = if !group.answers() {
                Some(if group == crate::oe::Group::Block {
                    "now in `block`"
                } else {
                    "now in `clear`"
                })
            } else if info.anonymous && options.require_authenticated() {
                Some("anonymous, and its group now requires a signature")
            } else if !info.anonymous && !info.dnssec && options.require_dnssec {
                Some("its key was not DNSSEC-validated, and its group now requires that")
            } else {
                None
            };
            if let Some(why) = why {
                closing.push((sa, dst, why));
            }
        }
        closing.sort_by_key(|&(sa, ..)| sa.0);
        let mut closed = Vec::with_capacity(closing.len());
        for (sa, dst, why) in closing {
            self.endpoint.close(now, sa);
            if !closed.iter().any(|&(d, _)| d == dst) {
                closed.push((dst, why));
            }
        }
        (closed, forgotten)
    }

    fn log(&mut self, sa: Option<SaHandle>, note: Note) {
        self.commands.push_back(Command::Log { sa, note });
    }
}

fn idle_scan_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

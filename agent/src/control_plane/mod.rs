//! The control plane: **one task** owns core's IKE [`Endpoint`] and OE
//! decision [`Machine`], and does nothing but read an input, call core, and
//! carry out what core says (quinn's driver pattern):
//!
//! | input | core call |
//! |---|---|
//! | a packet to a destination without SA (TUN workers, bounded channel) | `Machine::on_packet` |
//! | an IKE message (UDP workers) | `Endpoint::handle` |
//! | a DNS answer (spawned lookups) | `Machine::on_dns_result` |
//! | a control-socket request | replies from the outcome cache, SA table and core |
//! | the timer: min(endpoint, machine, outcome expiries, idle scan) | `handle_timeout` |
//! | a data-path notice (byte/packet lifetime) | `Endpoint::rekey_child` / `delete_child` |
//!
//! After each input, `ControlPlane::drive` drains `Endpoint::poll_transmit`
//! (sent on UDP 500/4500), `Endpoint::poll_event` (`events`: SAs installed
//! into the data path, IKE results fed to the machine) and
//! `Machine::poll_action` (`actions`: lookups, IKE starts, held packets sent
//! encrypted or in clear, outcomes cached and logged), until all are empty.

mod actions;
mod events;
mod replies;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oemesh_core::ike::endpoint::{Endpoint, SaHandle};
use oemesh_core::ipseckey::DomainName;
use oemesh_core::oe::{self, Machine};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::control::proto::{Reply, Request};
use crate::datapath::sa_table::{Notice, Outbound};
use crate::datapath::{DataPath, IkeDatagram, Undecided};
use crate::dns::KeyResolver;
use crate::driver::KernelActions;
use crate::net::udp::UdpEndpoint;

pub use replies::StatusInfo;

/// An A/AAAA answer: the name, the address it must resolve to, the result.
type AddressAnswer = (DomainName, IpAddr, oe::AddressResult);

/// A control-socket request with the way back.
pub type ControlRequest = (Request, oneshot::Sender<Reply>);

/// The receiving ends of the control plane's inputs.
#[derive(Debug)]
pub struct Inputs {
    /// Packets to undecided destinations.
    pub undecided: mpsc::Receiver<Undecided>,
    /// IKE messages.
    pub ike: mpsc::Receiver<IkeDatagram>,
    /// Data-path notices.
    pub notices: mpsc::UnboundedReceiver<Notice>,
    /// Control-socket requests.
    pub requests: mpsc::Receiver<ControlRequest>,
    /// Shutdown: the control plane deletes its IKE SAs (so peers stop sending
    /// to this host at once, RFC 7296 §1.4.1) and answers on the inner sender.
    pub shutdown: oneshot::Receiver<oneshot::Sender<()>>,
}

/// Settings the control plane needs besides core's own configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This host's address (IKE source, traffic selector).
    pub address: IpAddr,
    /// UDP port of IKE (500).
    pub ike_port: u16,
    /// UDP port of NAT-T and ESP (4500).
    pub natt_port: u16,
    /// An SA pair that carried nothing this long is closed.
    pub idle_timeout: Duration,
}

/// An IKE attempt this host started for a destination.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    dst: IpAddr,
    peer_addr: IpAddr,
    started: Instant,
    dnssec: bool,
}

/// What the control plane knows of one IKE SA.
#[derive(Debug)]
struct SaInfo {
    span: tracing::Span,
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

/// The control-plane task's state. See the module docs.
#[derive(Debug)]
pub struct ControlPlane {
    settings: Settings,
    endpoint: Endpoint,
    machine: Machine,
    dp: Arc<DataPath>,
    kernel: Arc<KernelActions>,
    resolver: Option<Arc<KeyResolver>>,
    ike_socket: Arc<UdpEndpoint>,
    status: StatusInfo,
    inputs: Inputs,
    dns_tx: mpsc::UnboundedSender<(DomainName, oe::DnsResult)>,
    dns_rx: mpsc::UnboundedReceiver<(DomainName, oe::DnsResult)>,
    /// A/AAAA answers for FQDN identities: (name, address it must match, result).
    addr_tx: mpsc::UnboundedSender<AddressAnswer>,
    addr_rx: mpsc::UnboundedReceiver<AddressAnswer>,
    lookups: HashMap<DomainName, AbortHandle>,
    attempts: HashMap<SaHandle, Attempt>,
    sas: HashMap<SaHandle, SaInfo>,
    /// Destinations being decided (for `peers`), since when.
    pending: HashMap<IpAddr, Instant>,
    /// Clear/blocked outcomes by expiry, for the bypass route's removal.
    expiries: BTreeSet<(Instant, IpAddr)>,
    bypassed: HashSet<IpAddr>,
    /// Bytes (in, out) of SAs already removed, per destination.
    traffic: HashMap<IpAddr, (u64, u64)>,
    activity: HashMap<SaHandle, Activity>,
    next_idle_scan: Instant,
    last_counters: oe::Counters,
    last_ike_auth_failures: u64,
    /// Scratch buffer for sealing held packets.
    scratch: Vec<u8>,
    /// Outbound halves of first SAs not yet visible to the data path: they
    /// carry the held packets first (see `SaTable::install`).
    unpublished: HashMap<IpAddr, Arc<Outbound>>,
    /// Peers that just became private, for the nftables set once the
    /// messages of this round are out.
    newly_private: Vec<IpAddr>,
    /// Peers whose last SA just went, out of the nftables set at the end of
    /// the round (a peer is in at most one of the two lists).
    ended_private: Vec<IpAddr>,
}

impl ControlPlane {
    /// The control plane around a configured endpoint and machine.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        endpoint: Endpoint,
        machine: Machine,
        dp: Arc<DataPath>,
        kernel: Arc<KernelActions>,
        resolver: Option<Arc<KeyResolver>>,
        ike_socket: Arc<UdpEndpoint>,
        status: StatusInfo,
        inputs: Inputs,
    ) -> ControlPlane {
        let (dns_tx, dns_rx) = mpsc::unbounded_channel();
        let (addr_tx, addr_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        ControlPlane {
            next_idle_scan: now + idle_scan_interval(settings.idle_timeout),
            settings,
            endpoint,
            machine,
            dp,
            kernel,
            resolver,
            ike_socket,
            status,
            inputs,
            dns_tx,
            dns_rx,
            addr_tx,
            addr_rx,
            lookups: HashMap::new(),
            attempts: HashMap::new(),
            sas: HashMap::new(),
            pending: HashMap::new(),
            expiries: BTreeSet::new(),
            bypassed: HashSet::new(),
            traffic: HashMap::new(),
            activity: HashMap::new(),
            last_counters: oe::Counters::default(),
            last_ike_auth_failures: 0,
            scratch: Vec::new(),
            unpublished: HashMap::new(),
            newly_private: Vec::new(),
            ended_private: Vec::new(),
        }
    }

    /// Runs until every input is closed (the agent shuts down).
    pub async fn run(mut self) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                done = &mut self.inputs.shutdown => {
                    self.close_all().await;
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                req = self.inputs.requests.recv() => match req {
                    Some((req, reply)) => self.on_request(req, reply),
                    None => return,
                },
                Some(d) = self.inputs.ike.recv() => {
                    let now = Instant::now();
                    self.endpoint.handle(now, d.local, d.remote, &d.message);
                    // Under a flood the queue is never empty: take a bounded
                    // batch before driving, so the per-round costs (timer,
                    // metrics, select) are paid once per batch.
                    for _ in 1..IKE_BATCH {
                        let Ok(d) = self.inputs.ike.try_recv() else { break };
                        self.endpoint.handle(now, d.local, d.remote, &d.message);
                    }
                }
                Some((name, result)) = self.dns_rx.recv() => {
                    self.lookups.remove(&name);
                    self.machine.on_dns_result(Instant::now(), &name, result);
                }
                Some((name, addr, result)) = self.addr_rx.recv() => {
                    self.machine.on_address_result(Instant::now(), &name, addr, result);
                }
                Some(n) = self.inputs.notices.recv() => self.on_notice(n),
                Some(u) = self.inputs.undecided.recv() => self.on_undecided(u).await,
                () = tokio::time::sleep_until(deadline.into()) => self.on_timeout(Instant::now()).await,
            }
            self.drive().await;
        }
    }

    /// Deletes every IKE SA and sends the INFORMATIONAL requests once, without
    /// waiting for answers: the host is going away, and a peer that misses the
    /// request still finds out through its liveness checks.
    async fn close_all(&mut self) {
        let now = Instant::now();
        let handles: Vec<SaHandle> = self
            .sas
            .keys()
            .chain(self.attempts.keys())
            .copied()
            .collect();
        for &sa in &handles {
            self.endpoint.close(now, sa);
        }
        let mut sent = 0;
        while let Some(t) = self.endpoint.poll_transmit() {
            self.transmit(t).await;
            sent += 1;
        }
        if sent > 0 {
            tracing::info!("shutdown: sent IKE DELETE to {sent} peer(s)");
        }
    }

    /// Carries out everything core has queued, until nothing is left.
    async fn drive(&mut self) {
        loop {
            let mut busy = false;
            // Events before transmits: a responder's CHILD SA must be installed
            // before its IKE_AUTH response leaves, or the initiator's first ESP
            // packet (the held ones) can arrive to an unknown SPI.
            while let Some(event) = self.endpoint.poll_event() {
                busy = true;
                self.on_event(event).await;
            }
            while let Some(t) = self.endpoint.poll_transmit() {
                busy = true;
                self.transmit(t).await;
            }
            while let Some(action) = self.machine.poll_action() {
                busy = true;
                self.on_action(action).await;
            }
            if !busy {
                break;
            }
        }
        // After the messages above have left (the initiator's first ESP need
        // not wait for it): one nftables transaction each for the peers that
        // became private and those whose last SA went, on the set worker.
        let newly_private = std::mem::take(&mut self.newly_private);
        if !newly_private.is_empty() {
            self.kernel.private_all(&newly_private);
        }
        let ended = std::mem::take(&mut self.ended_private);
        if !ended.is_empty() {
            self.kernel.private_ended_all(&ended);
        }
        self.sync_metrics();
    }

    async fn transmit(&self, t: oemesh_core::ike::endpoint::Transmit) {
        let socket = if t.local.port() == self.settings.ike_port {
            &self.ike_socket
        } else {
            &self.dp.natt
        };
        let from = Some(t.local.ip()).filter(|ip| !ip.is_unspecified());
        if let Err(e) = socket.send(t.remote, from, &t.payload, None).await {
            tracing::debug!("IKE to {}: {e}", t.remote);
        }
    }

    /// A packet from the TUN whose destination had no SA then: it may have one
    /// now (the channel is a queue), else the machine decides.
    async fn on_undecided(&mut self, u: Undecided) {
        let now = Instant::now();
        if self.dp.sas.outbound(u.dst).is_some() {
            self.send_private(u.dst, &u.packet).await;
            return;
        }
        match self.dp.outcomes.state(u.dst) {
            Some(oe::State::Clear) => return self.dp.send_clear(&u.packet),
            Some(oe::State::Blocked) => {
                self.dp
                    .metrics
                    .packet(crate::metrics::PacketOutcome::Dropped, u.packet.len());
                return;
            }
            _ => {}
        }
        let len = u.packet.len();
        match self.machine.on_packet(now, u.dst, u.packet) {
            oe::PacketFate::Held => {
                self.pending.entry(u.dst).or_insert_with(|| {
                    tracing::debug!("{}: first packet held, deciding", u.dst);
                    now
                });
                self.dp
                    .metrics
                    .packet(crate::metrics::PacketOutcome::Held, len);
            }
            oe::PacketFate::Decided => {}
            _ => self
                .dp
                .metrics
                .packet(crate::metrics::PacketOutcome::Dropped, len),
        }
    }

    /// Seals one packet with `dst`'s outbound SA and sends it (held packets and
    /// stragglers: not the hot path, which is the TUN workers').
    async fn send_private(&mut self, dst: IpAddr, packet: &[u8]) {
        use crate::metrics::PacketOutcome;
        use oemesh_core::esp::{HEADER_LEN, MAX_TRAILER_LEN};
        let Some(sa) = self
            .dp
            .sas
            .outbound(dst)
            .or_else(|| self.unpublished.get(&dst).cloned())
        else {
            self.dp.metrics.packet(PacketOutcome::Dropped, packet.len());
            return;
        };
        let buf = &mut self.scratch;
        buf.clear();
        buf.resize(HEADER_LEN + packet.len() + MAX_TRAILER_LEN, 0);
        buf[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(packet);
        match sa.seal(buf, packet.len()) {
            Ok(len) => {
                let from = Some(sa.local.ip()).filter(|ip| !ip.is_unspecified());
                match self.dp.natt.send(sa.remote, from, &buf[..len], None).await {
                    Ok(()) => self
                        .dp
                        .metrics
                        .packet(PacketOutcome::Encrypted, packet.len()),
                    Err(e) => {
                        tracing::debug!("ESP to {}: {e}", sa.remote);
                        self.dp.metrics.packet(PacketOutcome::Dropped, packet.len());
                    }
                }
            }
            Err(e) => {
                tracing::debug!("{dst}: ESP refused: {e}");
                self.dp.metrics.packet(PacketOutcome::Dropped, packet.len());
            }
        }
    }

    fn on_notice(&mut self, n: Notice) {
        let now = Instant::now();
        match n {
            Notice::Lifetime {
                sa,
                inbound_spi,
                event,
            } => match event {
                oemesh_core::esp::LifetimeEvent::SoftExpired => {
                    self.in_span(sa, || {
                        tracing::info!("ESP SA {inbound_spi:#010x}: soft limit, rekeying")
                    });
                    self.endpoint.rekey_child(now, sa, inbound_spi);
                }
                oemesh_core::esp::LifetimeEvent::HardExpired => {
                    self.in_span(sa, || {
                        tracing::warn!("ESP SA {inbound_spi:#010x}: hard limit, deleting")
                    });
                    self.endpoint.delete_child(now, sa, inbound_spi);
                }
            },
        }
    }

    fn next_deadline(&self) -> Instant {
        [
            self.endpoint.poll_timeout(),
            self.machine.poll_timeout(),
            self.expiries.first().map(|(at, _)| *at),
            Some(self.next_idle_scan),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_idle_scan)
    }

    async fn on_timeout(&mut self, now: Instant) {
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
            self.outcome_expired(dst).await;
        }
        if self.next_idle_scan <= now {
            self.idle_scan(now);
            self.next_idle_scan = now + idle_scan_interval(self.settings.idle_timeout);
        }
    }

    /// A clear or blocked outcome ran out: undo its bypass route, unless a
    /// newer outcome for the destination still wants it.
    async fn outcome_expired(&mut self, dst: IpAddr) {
        if self.dp.outcomes.state(dst) == Some(oe::State::Clear) {
            return; // decided again meanwhile, with a later expiry
        }
        self.dp.outcomes.remove(dst);
        if self.bypassed.remove(&dst) {
            if let Err(e) = self.kernel.clear_expired(dst).await {
                tracing::error!("{dst}: removing the bypass route: {e}");
            }
            tracing::debug!("{dst}: clear outcome expired; the next packet decides again");
        }
    }

    /// Closes IKE SAs whose ESP carried nothing for `idle_timeout`.
    fn idle_scan(&mut self, now: Instant) {
        let mut totals: HashMap<SaHandle, u64> = HashMap::new();
        for i in self.dp.sas.inbound_all() {
            *totals.entry(i.sa).or_default() += i.counters().0;
        }
        for o in self.dp.sas.outbound_all() {
            *totals.entry(o.sa).or_default() += o.counters().0;
        }
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
            } else if now.saturating_duration_since(a.since) >= self.settings.idle_timeout {
                let idle = self.settings.idle_timeout;
                self.in_span(sa, || {
                    tracing::info!("idle for {}: closing", oe::outcome::human(idle));
                });
                self.endpoint.close(now, sa);
                self.activity.remove(&sa);
            }
        }
    }

    fn sync_metrics(&mut self) {
        let c = self.machine.counters();
        let last = self.last_counters;
        let held = |c: &oe::Counters| c.hold_dst_full + c.hold_total_full + c.hold_too_big;
        let delta = held(&c).saturating_sub(held(&last));
        if delta > 0 {
            self.dp.metrics.hold_drops_add(delta);
        }
        self.last_counters = c;
        let stats = self.endpoint.stats();
        self.dp.metrics.set_ike_cookies_sent(stats.cookies_sent);
        {
            use crate::metrics::TrustEvent as T;
            let m = &self.dp.metrics;
            m.set_trust(T::WrongAddress, stats.wrong_address);
            m.set_trust(T::HalfOpenSourceFull, stats.half_open_source_full);
            m.set_trust(
                T::IdentityRefused,
                stats.identity_refused + c.identity_refused,
            );
            m.set_trust(T::InitialContactIgnored, stats.initial_contact_ignored);
            m.set_trust(T::AnonymousEvicted, stats.anonymous_evicted);
            m.set_trust(T::AnonymousLookupFailed, c.anonymous_lookup_failed);
            m.set_trust(T::Downgrade, c.downgrades);
        }
        let auth = stats.auth_failures;
        if auth > self.last_ike_auth_failures {
            self.dp
                .metrics
                .ike_auth_failures_add(auth - self.last_ike_auth_failures);
            self.last_ike_auth_failures = auth;
        }
    }

    fn in_span(&self, sa: SaHandle, f: impl FnOnce()) {
        match self.sas.get(&sa) {
            Some(info) => info.span.in_scope(f),
            None => f(),
        }
    }
}

/// IKE messages handled per round of the control plane at most.
const IKE_BATCH: usize = 64;

fn idle_scan_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

//! The control plane: **one task** owns core's OE [`Node`] (the IKE engine
//! and the decision machine joined) and does nothing but read an input, call
//! the node, and carry out its commands (quinn's driver pattern):
//!
//! | input | node call |
//! |---|---|
//! | a packet to a destination without SA (TUN workers, bounded channel) | `Node::handle_packet` |
//! | an IKE message (UDP workers) | `Node::handle_ike` |
//! | a DNS answer (`driver::Lookups`) | `Node::handle_dns` / `handle_address` |
//! | a control-socket request | `control::answers`, from the outcome cache, SA table and node |
//! | a reloaded configuration | `crate::reload::Parts::apply` |
//! | the timer (`Node::poll_timeout`) | `handle_timeout`, and `handle_activity` with the SAs' packet counts |
//! | a data-path notice (byte/packet lifetime) | `Node::handle_lifetime` |
//! | an ICMP error queued on an IKE socket (`IP_RECVERR`; its UDP worker reads it) | `Node::handle_unreachable` |
//! | the source of ESP with an unknown SPI (UDP workers, bounded channel) | `Node::handle_stale_spi` |
//! | a new port of a peer behind a NAT (UDP workers, bounded channel) | `Node::handle_esp_moved` |
//!
//! After each input, `ControlPlane::drive` carries out `Node::poll_command`
//! until the round ends (`commands`): IKE datagrams sent on UDP 500/4500,
//! SA pairs installed into and removed from the data path, held packets sent
//! encrypted or in clear, bypass routes (`KernelActions`), outcomes cached
//! and logged, DNS lookups started, and the nftables set of private peers
//! updated once at the end of the round.

mod commands;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oemesh_core::ike::endpoint::{Endpoint, SaHandle};
use oemesh_core::oe::{self, Machine, Node, NodeConfig, UnreachableFate::Ignored};
use tokio::sync::{mpsc, oneshot};

use crate::control::answers::View;
use crate::control::proto::{Reply, Request};
use crate::datapath::ike_queue::IkeInbox;
use crate::datapath::sa_table::{Notice, Outbound};
use crate::datapath::{DataPath, Undecided};
use crate::dns::KeyResolver;
use crate::driver::{Answer, KernelActions, Lookups};
use crate::metrics::{NodeTotals, PacketOutcome};
use crate::net::tun::TunWriter;
use crate::net::udp::{IcmpError, UdpEndpoint};

pub use crate::control::answers::StatusInfo;

/// A control-socket request with the way back.
pub type ControlRequest = (Request, oneshot::Sender<Reply>);

/// The receiving ends of the control plane's inputs.
#[derive(Debug)]
pub struct Inputs {
    /// Packets to undecided destinations.
    pub undecided: mpsc::Receiver<Undecided>,
    /// IKE messages, priority first.
    pub ike: IkeInbox,
    /// ICMP errors for IKE datagrams, from the IKE socket group's workers.
    pub icmp: mpsc::Receiver<IcmpError>,
    /// Sources of ESP with unknown SPIs, from the UDP workers.
    pub stale: crate::datapath::stale::StaleInbox,
    /// New ports of peers behind a NAT, seen in authenticated ESP.
    pub moved: mpsc::Receiver<crate::datapath::moved::Moved>,
    /// This host's addresses as they change (`crate::net::addresses`).
    pub addresses: tokio::sync::watch::Receiver<oe::Addresses>,
    /// Data-path notices.
    pub notices: mpsc::UnboundedReceiver<Notice>,
    /// Control-socket requests.
    pub requests: mpsc::Receiver<ControlRequest>,
    /// Reloaded configurations (`crate::reload`).
    pub reconfig: mpsc::Receiver<crate::reload::ReconfigRequest>,
    /// Shutdown: the control plane deletes its IKE SAs (so peers stop sending
    /// to this host at once, RFC 7296 §1.4.1) and answers on the inner sender.
    pub shutdown: oneshot::Receiver<oneshot::Sender<()>>,
}

/// Settings the control plane needs besides core's own configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This host's addresses, one per family (IKE source, traffic selector).
    pub address: oemesh_core::oe::Addresses,
    /// UDP port of IKE (500).
    pub ike_port: u16,
    /// UDP port of NAT-T and ESP (4500).
    pub natt_port: u16,
    /// An SA pair that carried nothing this long is closed.
    pub idle_timeout: Duration,
}

/// The control-plane task's state. See the module docs.
#[derive(Debug)]
pub struct ControlPlane {
    settings: Settings,
    node: Node,
    dp: Arc<DataPath>,
    kernel: Arc<KernelActions>,
    ike_socket: Arc<UdpEndpoint>,
    /// For ESP datagrams that arrived just before their SA (`datapath::parked`).
    tun: TunWriter,
    status: StatusInfo,
    inputs: Inputs,
    lookups: Lookups,
    /// One log span per IKE SA the node tracks.
    spans: HashMap<SaHandle, tracing::Span>,
    /// Bytes (in, out) of SAs already removed, per destination.
    traffic: HashMap<IpAddr, (u64, u64)>,
    /// What the metrics last took from the node.
    synced: NodeTotals,
    /// Scratch buffer for sealing held packets.
    scratch: Vec<u8>,
    /// Outbound halves of first SAs not yet visible to the data path: they
    /// carry the held packets first (see `SaTable::install`).
    unpublished: HashMap<IpAddr, Arc<Outbound>>,
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
        tun: TunWriter,
        status: StatusInfo,
        inputs: Inputs,
    ) -> ControlPlane {
        let config = NodeConfig {
            addresses: settings.address,
            idle_timeout: settings.idle_timeout,
        };
        ControlPlane {
            node: Node::new(config, endpoint, machine, Instant::now()),
            settings,
            dp,
            kernel,
            lookups: Lookups::new(resolver),
            ike_socket,
            tun,
            status,
            inputs,
            spans: HashMap::new(),
            traffic: HashMap::new(),
            synced: NodeTotals::default(),
            scratch: Vec::new(),
            unpublished: HashMap::new(),
        }
    }

    /// Runs until every input is closed (the agent shuts down).
    pub async fn run(mut self) {
        loop {
            let deadline = self.node.poll_timeout();
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
                    Some((req, reply)) => self.view().answer(req, reply),
                    None => return,
                },
                Some((r, reply)) = self.inputs.reconfig.recv() => {
                    let parts = crate::reload::Parts {
                        node: &mut self.node,
                        lookups: &mut self.lookups,
                        status: &mut self.status,
                    };
                    let done = parts.apply(r);
                    // Carried out before the reply: once `oemesh reload`
                    // returns, no outcome of the old policy is left.
                    self.drive().await;
                    let _ = reply.send(done);
                }
                Some(d) = self.inputs.ike.recv() => {
                    let now = Instant::now();
                    self.node.handle_ike(now, d.local, d.remote, &d.message);
                    // Under a flood the queue is never empty: take a bounded
                    // batch before driving, so the per-round costs (timer,
                    // metrics, select) are paid once per batch.
                    for _ in 1..IKE_BATCH {
                        let Some(d) = self.inputs.ike.try_recv() else { break };
                        self.node.handle_ike(now, d.local, d.remote, &d.message);
                    }
                    // ICMP errors the workers passed on meanwhile.
                    self.icmp_errors(None);
                }
                answer = self.lookups.next() => match answer {
                    Answer::Key(name, r) => self.node.handle_dns(Instant::now(), &name, r),
                    Answer::Address(name, addr, r) => {
                        self.node.handle_address(Instant::now(), &name, addr, r);
                    }
                },
                Ok(()) = self.inputs.addresses.changed() => crate::net::addresses::apply(*self.inputs.addresses.borrow_and_update(), &mut self.node, &mut self.settings.address, &self.dp, &mut self.status),
                Some(n) = self.inputs.notices.recv() => self.on_notice(n),
                Some(e) = self.inputs.icmp.recv() => self.icmp_errors(Some(e)),
                Some(s) = self.inputs.stale.recv() => self.inputs.stale.pass(s, &mut self.node, &self.dp),
                Some(m) = self.inputs.moved.recv() => crate::datapath::moved::pass(m, &mut self.node, &mut self.inputs.moved),
                Some(u) = self.inputs.undecided.recv() => self.on_undecided(u).await,
                () = tokio::time::sleep_until(deadline.into()) => self.on_timeout(Instant::now()),
            }
            self.drive().await;
        }
    }

    /// Deletes every IKE SA and sends the INFORMATIONAL requests once, without
    /// waiting for answers: the host is going away, and a peer that misses the
    /// request still finds out through its liveness checks.
    async fn close_all(&mut self) {
        self.node.close_all(Instant::now());
        let mut sent = 0;
        while let Some(t) = self.node.poll_transmit() {
            self.transmit(t).await;
            sent += 1;
        }
        if sent > 0 {
            tracing::info!("shutdown: sent IKE DELETE to {sent} peer(s)");
        }
    }

    /// Carries out everything the node has queued, until the round ends.
    async fn drive(&mut self) {
        while let Some(command) = self.node.poll_command(Instant::now()) {
            self.on_command(command).await;
        }
        self.dp.metrics.sync(&self.node, &mut self.synced);
    }

    /// A packet from the TUN whose destination had no SA then: it may have one
    /// now (the channel is a queue), else the node decides.
    async fn on_undecided(&mut self, u: Undecided) {
        if self.dp.sas.outbound(u.dst).is_some() {
            self.send_private(u.dst, &u.packet).await;
            return;
        }
        let len = u.packet.len();
        match self.dp.outcomes.state(u.dst) {
            Some(oe::State::Clear) => return self.dp.send_clear(&u.packet),
            Some(oe::State::Blocked) => return self.dp.metrics.packet(PacketOutcome::Dropped, len),
            _ => {}
        }
        let fate = match self.node.handle_packet(Instant::now(), u.dst, u.packet) {
            oe::PacketFate::Held => PacketOutcome::Held,
            oe::PacketFate::Decided => return,
            _ => PacketOutcome::Dropped,
        };
        self.dp.metrics.packet(fate, len);
    }

    /// ICMP errors for our IKE_SA_INITs (UDP 500): `next`, then those queued
    /// now, a bounded batch. The UDP workers read them: the kernel queues an
    /// error on the member of the port's `SO_REUSEPORT` group that the
    /// quoted datagram's addresses hash to, not on the one that sent it.
    fn icmp_errors(&mut self, mut next: Option<IcmpError>) {
        let now = Instant::now();
        for _ in 0..ICMP_BATCH {
            let next = next.take().or_else(|| self.inputs.icmp.try_recv().ok());
            let Some(e) = next else { return };
            let u = e.unreachable(false);
            let fate = u.map_or(Ignored, |u| self.node.handle_unreachable(now, u));
            if fate == Ignored {
                tracing::debug!("{e:?}: no IKE attempt waits for it");
            }
            self.dp.metrics.icmp_error(fate);
        }
    }

    fn on_notice(&mut self, n: Notice) {
        let Notice::Lifetime {
            sa,
            inbound_spi,
            event,
        } = n;
        self.in_span(sa, || {
            crate::datapath::sa_table::log_lifetime(inbound_spi, event)
        });
        self.node
            .handle_lifetime(Instant::now(), sa, inbound_spi, event);
    }

    fn on_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
        if self.node.idle_scan_due(now) {
            self.node
                .handle_activity(now, self.dp.sas.packets_per_ike_sa());
        }
    }

    /// What the control socket's answers read.
    fn view(&self) -> View<'_> {
        View {
            status: &self.status,
            address: self.settings.address,
            node: &self.node,
            dp: &self.dp,
            traffic: &self.traffic,
            resolver: self.lookups.resolver(),
        }
    }

    fn in_span(&self, sa: SaHandle, f: impl FnOnce()) {
        match self.spans.get(&sa) {
            Some(span) => span.in_scope(f),
            None => f(),
        }
    }
}

/// ICMP errors handled per round of the control plane at most.
const ICMP_BATCH: usize = 64;

/// IKE messages handled per round of the control plane at most.
const IKE_BATCH: usize = 64;

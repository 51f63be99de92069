//! The packet loops: thin workers that read a batch, call the data path and
//! core, and flush. Everything around them — the TUN, sockets, routes,
//! nftables, control socket, metrics — is set up by [`crate::run`].
//!
//! - [`tun_loop`] (one per TUN queue): per packet, [`DataPath::outbound`]:
//!   an installed SA seals it in place in the reader's slot (headroom for the
//!   ESP header, tailroom for the trailer) into a GSO batch for UDP 4500; a
//!   clear outcome re-sends it marked around the TUN; a blocked one drops it;
//!   anything else goes to the control plane ([`crate::control_plane`]),
//!   where core's decision machine holds it.
//! - [`udp_loop`] (UDP 500 and 4500, one per socket of each port's
//!   `SO_REUSEPORT` group): IKE messages go to the control plane, which owns
//!   core's IKE endpoint, or are answered with a cookie on the spot under a
//!   flood ([`crate::datapath::ike_queue`]); ESP finds its SA by SPI, is checked
//!   against replay, decrypted in place, its inner packet checked against the
//!   SA's traffic selectors and written to the TUN, one flush per batch.
//!   Every refusal is counted, none stops the loop.
//! - [`Lookups`]: the DNS queries core's OE node asks for (IPSECKEY, and
//!   A/AAAA of FQDN identities). An IPSECKEY query leaves at once and its
//!   answer is awaited in the control-plane task itself (no task hop between
//!   the socket and the node); A/AAAA lookups each run in a task. The
//!   answers come back in arrival order.
//! - [`KernelActions`]: outcomes change kernel state — a clear outcome adds a
//!   bypass route, a private one adds the peer to the nftables set, and expiry
//!   undoes either.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::FuturesUnordered;

use oemesh_core::esp::{DecapError, peek_spi};
use oemesh_core::ike::udp_encap::{self, Datagram};
use oemesh_core::ipseckey::DomainName;
use oemesh_core::oe::{AddressResult, DnsFailure, DnsResult, StaleSpiFate};
use tokio::sync::{Mutex, mpsc};

use crate::datapath::DataPath;
use crate::datapath::gso::GsoBatch;
use crate::datapath::ike_queue::CookieReplies;
use crate::datapath::moved::Moved;
use crate::datapath::parked::Parking;
use crate::datapath::sa_table::OpenError;
use crate::datapath::stale::Reported;
use crate::dns::KeyResolver;
use crate::metrics::PacketOutcome;
use crate::net::nft::Enforcer;
use crate::net::routes::{RouteError, Routing};
use crate::net::tun::{TunReader, TunWriter};
use crate::net::udp::UdpEndpoint;

/// An answer from [`Lookups::next`].
#[derive(Debug)]
pub enum Answer {
    /// IPSECKEY records at a name.
    Key(DomainName, DnsResult),
    /// A/AAAA records of a name that must resolve to the address.
    Address(DomainName, IpAddr, AddressResult),
}

/// An IPSECKEY answer being awaited.
type KeyAnswer = Pin<Box<dyn Future<Output = (DomainName, DnsResult)> + Send>>;

/// DNS lookups in flight. See the module docs.
pub struct Lookups {
    resolver: Option<Arc<KeyResolver>>,
    /// The IPSECKEY answers awaited, polled by [`Lookups::next`] (so by the
    /// control-plane task), each abortable by name through `keys`. In a
    /// `Mutex` only so that `Lookups` is `Sync` (the futures are `Send`, not
    /// `Sync`); it is reached through `get_mut`, locked only by `Debug`.
    inflight: std::sync::Mutex<FuturesUnordered<Abortable<KeyAnswer>>>,
    keys: HashMap<DomainName, AbortHandle>,
    addrs_tx: mpsc::UnboundedSender<(DomainName, IpAddr, AddressResult)>,
    addrs_rx: mpsc::UnboundedReceiver<(DomainName, IpAddr, AddressResult)>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("resolver", &self.resolver)
            .field("inflight", &lock(&self.inflight).len())
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Lookups {
    /// Lookups through `resolver`; without one, each fails at once.
    pub fn new(resolver: Option<Arc<KeyResolver>>) -> Lookups {
        let (addrs_tx, addrs_rx) = mpsc::unbounded_channel();
        Lookups {
            resolver,
            inflight: std::sync::Mutex::new(FuturesUnordered::new()),
            keys: HashMap::new(),
            addrs_tx,
            addrs_rx,
        }
    }

    /// The resolver, if one is configured.
    pub fn resolver(&self) -> Option<Arc<KeyResolver>> {
        self.resolver.clone()
    }

    /// Replaces the resolver (`oemesh reload` with new `[dns]` settings).
    /// Lookups in flight finish with the one they started with.
    pub fn set_resolver(&mut self, resolver: Option<Arc<KeyResolver>>) {
        self.resolver = resolver;
    }

    /// The next answer (IPSECKEY answers first). Cancel-safe: an answer
    /// not yet taken stays for the next call.
    pub async fn next(&mut self) -> Answer {
        let inflight = self
            .inflight
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            tokio::select! {
                biased;
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    // Err: cancelled or replaced; its name is no longer ours.
                    if let Ok((name, result)) = done {
                        self.keys.remove(&name);
                        return Answer::Key(name, result);
                    }
                }
                Some((name, addr, result)) = self.addrs_rx.recv() => {
                    return Answer::Address(name, addr, result);
                }
            }
        }
    }

    /// Starts an IPSECKEY lookup at `name` (replacing one under way).
    pub fn key(&mut self, name: DomainName) {
        let key = name.clone();
        let Some(resolver) = self.resolver.clone() else {
            let reason = DnsFailure::NoResolver;
            let failed = (name, DnsResult::Failed { reason });
            return self.await_key(key, Box::pin(std::future::ready(failed)));
        };
        let owner = name.to_string();
        let started = Instant::now();
        // The query leaves now; the answer is awaited in `next`.
        let sent = resolver.send_query(&owner);
        let answer: KeyAnswer = Box::pin(async move {
            let result = match sent {
                Ok(q) => resolver.answer(q).await,
                Err(e) => {
                    tracing::debug!("{owner}: IPSECKEY query over UDP: {e}; through the pool");
                    resolver.lookup_name(&owner).await
                }
            }
            .into_dns_result();
            let ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::debug!("{owner}: IPSECKEY lookup answered in {ms:.2} ms");
            (name, result)
        });
        self.await_key(key, answer);
    }

    /// Puts `answer` among those [`Lookups::next`] polls, abortable by `name`
    /// (replacing one under way).
    fn await_key(&mut self, key: DomainName, answer: KeyAnswer) {
        let (handle, registration) = AbortHandle::new_pair();
        self.inflight
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Abortable::new(answer, registration));
        if let Some(old) = self.keys.insert(key, handle) {
            old.abort();
        }
    }

    /// The IPSECKEY answer at `name` is no longer wanted.
    pub fn cancel(&mut self, name: &DomainName) {
        if let Some(task) = self.keys.remove(name) {
            task.abort();
        }
    }

    /// Starts an A (IPv4 `addr`) or AAAA lookup of `name`.
    pub fn address(&mut self, name: DomainName, addr: IpAddr) {
        let tx = self.addrs_tx.clone();
        let Some(resolver) = self.resolver.clone() else {
            let reason = DnsFailure::NoResolver;
            let _ = tx.send((name, addr, AddressResult::Failed { reason }));
            return;
        };
        tokio::spawn(async move {
            let result = resolver
                .lookup_addresses(&name.to_string(), addr.is_ipv4())
                .await;
            let _ = tx.send((name, addr, result));
        });
    }
}

/// Reads batches from one TUN queue and sends each packet its way. Runs until
/// the TUN fails; one instance per queue.
pub async fn tun_loop(mut reader: TunReader, dp: Arc<DataPath>) -> io::Result<()> {
    let mut gso = GsoBatch::new(dp.natt.max_gso_segments());
    loop {
        let n = reader.read_batch().await?;
        for i in 0..n {
            let (buf, range) = reader.slot_mut(i);
            dp.outbound(buf, range, &mut gso).await;
        }
        gso.flush(&dp.natt, &dp.metrics).await;
    }
}

/// Reads batches from a UDP socket (IKE on 500, or NAT-T/ESP on 4500 when
/// `natt`) and dispatches each datagram.
pub async fn udp_loop(
    endpoint: Arc<UdpEndpoint>,
    natt: bool,
    mut tun: TunWriter,
    dp: Arc<DataPath>,
) -> io::Result<()> {
    let mut batch = endpoint.recv_batch();
    let mut cookies = CookieReplies::default();
    let port = endpoint.port();
    if natt && let Err(e) = endpoint.enable_icmp_errors() {
        tracing::warn!("UDP {port}: no ICMP errors (IP_RECVERR: {e}): path MTUs stay unknown");
    }
    loop {
        // The error queues (IP_RECVERR): on 500 for the control plane, on
        // 4500 for path MTUs (datapath::pmtu). Both arms are cancel-safe.
        let received = tokio::select! {
            r = endpoint.recv(&mut batch) => r,
            e = endpoint.icmp_error() => {
                icmp_error(&dp, e, natt);
                continue;
            }
        };
        if let Err(e) = received {
            // ICMP errors reported on the socket (a peer without IKE) are not ours to die of.
            if transient(&e) {
                tracing::debug!("UDP {port}: {e}");
                continue;
            }
            return Err(e);
        }
        let now = Instant::now();
        for d in batch.datagrams_mut() {
            let kind = if natt {
                udp_encap::classify(d.data)
            } else {
                Datagram::Ike(d.data)
            };
            match kind {
                Datagram::Ike(message) => {
                    let ours = || dp.own_address(d.from.ip());
                    let local = SocketAddr::new(d.to.unwrap_or_else(ours), port);
                    dp.ike
                        .offer(now, local, d.from, message, &mut cookies, &dp.metrics);
                }
                Datagram::Esp(_) => inbound_esp(&dp, d.from, d.data, &mut tun),
                Datagram::Keepalive => {}
                Datagram::Invalid => dp.metrics.packet(PacketOutcome::Dropped, d.data.len()),
            }
        }
        cookies.flush(&dp.ike, &endpoint, natt, &dp.metrics);
        tun.flush().await?;
    }
}

/// An ICMP error read from an IKE socket: to the control plane, or ignored
/// and counted when its queue is full. On 4500 only "too big" is read.
fn icmp_error(dp: &DataPath, e: io::Result<crate::net::udp::IcmpError>, natt: bool) {
    match e {
        Ok(e) if natt => _ = crate::datapath::pmtu::learn(dp, &e, Instant::now()),
        Ok(e) => {
            if dp.icmp.try_send(e).is_err() {
                dp.metrics
                    .icmp_error(oemesh_core::oe::UnreachableFate::Ignored);
            }
        }
        Err(e) => tracing::debug!("reading an ICMP error: {e}"),
    }
}

fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), WouldBlock | Interrupted) || crate::net::udp::icmp_reported(e)
}

/// One ESP packet: SA by SPI, replay check and decryption in place, traffic
/// selector check, then into the TUN batch.
pub(crate) fn inbound_esp(dp: &DataPath, from: SocketAddr, data: &mut [u8], tun: &mut TunWriter) {
    let len = data.len();
    let spi = peek_spi(data);
    let Some(sa) = spi.and_then(|spi| dp.sas.inbound(spi)) else {
        tracing::trace!(%from, "ESP with unknown SPI");
        dp.metrics.esp_unknown_spi();
        // Perhaps this host restarted and `from` still uses SAs from before:
        // the control plane may start OE toward it (datapath::stale).
        if dp.stale.report(Instant::now(), from.ip()) == Reported::QueueFull {
            dp.metrics.stale_spi(StaleSpiFate::QueueFull);
        }
        // Perhaps its SA is being installed right now (datapath::parked).
        match spi.map(|spi| dp.parked.park(spi, from, data)) {
            Some(Parking::Kept) => {}
            // The oldest parked one is lost (its length is not kept).
            Some(Parking::KeptDroppingOldest) => dp.metrics.packets(PacketOutcome::Dropped, 1, 0),
            _ => dp.metrics.packet(PacketOutcome::Dropped, len),
        }
        return;
    };
    match sa.open(data) {
        Ok(inner) => {
            // Authentic, so a new port is the peer's NAT rebinding (RFC 7296
            // §2.23): the control plane moves the SA (datapath::moved).
            if sa.moved(from) {
                let moved = Moved { sa: sa.sa, from };
                let _ = dp.moved.report(Instant::now(), moved);
            }
            let packet = &data[inner];
            dp.metrics.packet(PacketOutcome::Decrypted, packet.len());
            tun.push(packet);
        }
        Err(e) => {
            match &e {
                OpenError::Esp(DecapError::Replayed { .. } | DecapError::OutsideWindow { .. }) => {
                    dp.metrics.replay_failure();
                }
                OpenError::Esp(DecapError::AuthenticationFailed) => dp.metrics.esp_auth_failure(),
                OpenError::TsMismatch => dp.metrics.esp_ts_mismatch(),
                _ => {}
            }
            tracing::trace!(%from, "ESP dropped: {e}");
            dp.metrics.packet(PacketOutcome::Dropped, len);
        }
    }
}

/// The kernel side of outcomes: bypass routes for clear peers, the nftables
/// set for private ones. Shared by the control-plane task (`Arc`).
///
/// Set updates go to a thread of their own, in order: an nftables commit that
/// deletes set elements can wait for an RCU grace period (10–20 ms measured
/// here), and done inline that stalled the control plane whenever many SAs
/// ended at once (anonymous SAs evicted under a flood took the IKE rate from
/// ~2,000 to ~300 handshakes/s). Queued updates are applied in order, those
/// waiting together in as few transactions as the order allows.
#[derive(Debug)]
pub struct KernelActions {
    routing: Mutex<Option<Routing>>,
    /// Peers with a bypass route.
    bypassed: std::sync::Mutex<HashSet<IpAddr>>,
    sets: std::sync::Mutex<Option<SetWorker>>,
}

/// The thread that applies private-peer set updates, and the way to it
/// (`None` if no thread could be started: then updates are applied inline).
#[derive(Debug)]
struct SetWorker {
    thread: Option<(
        std::sync::mpsc::Sender<SetUpdate>,
        std::thread::JoinHandle<()>,
    )>,
    enforcer: Arc<Enforcer>,
}

/// One request to the set worker.
#[derive(Debug)]
enum SetUpdate {
    Add(Vec<IpAddr>),
    Remove(Vec<IpAddr>),
    /// Answered once everything queued before it is applied.
    Settle(tokio::sync::oneshot::Sender<()>),
}

impl SetWorker {
    fn start(enforcer: Enforcer) -> SetWorker {
        let enforcer = Arc::new(enforcer);
        let (tx, rx) = std::sync::mpsc::channel::<SetUpdate>();
        let e = enforcer.clone();
        let spawned = std::thread::Builder::new()
            .name("oemesh-nft".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    apply(&e, batch);
                }
            });
        let thread = match spawned {
            Ok(handle) => Some((tx, handle)),
            Err(e) => {
                tracing::warn!("no thread for nftables set updates ({e}): applying them inline");
                None
            }
        };
        SetWorker { thread, enforcer }
    }
}

/// Applies `batch` in order: each run of adds (or of removals) is one transaction.
fn apply(enforcer: &Enforcer, batch: Vec<SetUpdate>) {
    let mut run: Vec<IpAddr> = Vec::new();
    let mut adding = true;
    let flush = |run: &mut Vec<IpAddr>, adding: bool| {
        if run.is_empty() {
            return;
        }
        // A peer twice in one transaction makes its second delete fail, and
        // the kernel then drops the whole transaction.
        run.sort_unstable();
        run.dedup();
        let result = if adding {
            enforcer.add_private_peers(run)
        } else {
            enforcer.remove_private_peers(run)
        };
        if let Err(e) = result {
            let peers: Vec<String> = run.iter().map(IpAddr::to_string).collect();
            let what = if adding { "adding" } else { "removing" };
            tracing::error!("{what} {} in the private peers set: {e}", peers.join(", "));
        }
        run.clear();
    };
    for update in batch {
        match update {
            SetUpdate::Add(peers) | SetUpdate::Remove(peers) if peers.is_empty() => {}
            SetUpdate::Add(peers) => {
                if !adding {
                    flush(&mut run, adding);
                    adding = true;
                }
                run.extend(peers);
            }
            SetUpdate::Remove(peers) => {
                if adding {
                    flush(&mut run, adding);
                    adding = false;
                }
                run.extend(peers);
            }
            SetUpdate::Settle(done) => {
                flush(&mut run, adding);
                let _ = done.send(());
            }
        }
    }
    flush(&mut run, adding);
}

impl KernelActions {
    /// Wraps the installed routing and enforcement, and starts the set worker.
    pub fn new(routing: Routing, enforcer: Enforcer) -> Self {
        KernelActions {
            routing: Mutex::new(Some(routing)),
            bypassed: std::sync::Mutex::default(),
            sets: std::sync::Mutex::new(Some(SetWorker::start(enforcer))),
        }
    }

    fn send(&self, update: SetUpdate) {
        let sets = lock(&self.sets);
        match sets.as_ref() {
            Some(SetWorker {
                thread: Some((tx, _)),
                ..
            }) => {
                let _ = tx.send(update);
            }
            Some(w) => apply(&w.enforcer, vec![update]),
            None => {}
        }
    }

    /// `peer` went clear: its packets take the main table from now on (a
    /// failure is logged).
    pub async fn bypass(&self, peer: IpAddr) {
        match self.clear(peer).await {
            Ok(()) => {
                lock(&self.bypassed).insert(peer);
            }
            Err(e) => tracing::error!("{peer}: adding the bypass route: {e}"),
        }
    }

    /// Removes `peer`'s bypass route, if [`Self::bypass`] added one; whether
    /// it had (a failure to remove it is logged).
    pub async fn unbypass(&self, peer: IpAddr) -> bool {
        if !lock(&self.bypassed).remove(&peer) {
            return false;
        }
        if let Err(e) = self.clear_expired(peer).await {
            tracing::error!("{peer}: removing the bypass route: {e}");
        }
        true
    }

    /// `peer` went clear: its packets take the main table from now on.
    pub async fn clear(&self, peer: IpAddr) -> Result<(), RouteError> {
        match self.routing.lock().await.as_mut() {
            Some(r) => r.add_bypass(peer).await,
            None => Ok(()),
        }
    }

    /// A reloaded policy: the routes of the prefixes that changed
    /// ([`Routing::apply_policy`]).
    pub async fn apply_policy(
        &self,
        tun_index: u32,
        old: &[(crate::config::Cidr, crate::config::Group)],
        new: &[(crate::config::Cidr, crate::config::Group)],
        source: crate::config::Addresses,
    ) -> Result<crate::net::policy_routes::PolicyRouteChanges, RouteError> {
        let mut routing = self.routing.lock().await;
        let Some(r) = routing.as_mut() else {
            return Ok(Default::default());
        };
        let changes = r.apply_policy(tun_index, old, new, source).await?;
        // Host prefixes that replaced a bypass (see `apply_policy`).
        let mut bypassed = lock(&self.bypassed);
        for peer in &changes.replaced_bypasses {
            bypassed.remove(peer);
        }
        Ok(changes)
    }

    /// This host's addresses changed: the routes of the policy's prefixes
    /// again, with `source` as their preferred source addresses.
    pub async fn set_source(
        &self,
        tun_index: u32,
        source: crate::config::Addresses,
    ) -> Result<(), RouteError> {
        match self.routing.lock().await.as_mut() {
            Some(r) => r.set_source(tun_index, source).await,
            None => Ok(()),
        }
    }

    /// `peer`'s clear outcome expired: its next packet reaches the agent again.
    pub async fn clear_expired(&self, peer: IpAddr) -> Result<(), RouteError> {
        match self.routing.lock().await.as_mut() {
            Some(r) => r.remove_bypass(peer).await,
            None => Ok(()),
        }
    }

    /// Peers that got live SAs: their cleartext is dropped from now on (one
    /// nftables transaction for all of them, on the set worker: the call
    /// returns at once, failures are logged there).
    pub fn private_all(&self, peers: &[IpAddr]) {
        self.send(SetUpdate::Add(peers.to_vec()));
    }

    /// Peers whose last SA is gone: their cleartext is accepted again (one
    /// transaction, on the set worker).
    pub fn private_ended_all(&self, peers: &[IpAddr]) {
        self.send(SetUpdate::Remove(peers.to_vec()));
    }

    /// Waits until every set update asked for so far is applied.
    pub async fn settle_private_set(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(SetUpdate::Settle(tx));
        let _ = rx.await;
    }

    /// Removes everything (at exit): the set worker finishes what is queued,
    /// then the table and the routes go.
    pub async fn teardown(self) {
        let worker = lock(&self.sets).take();
        if let Some(SetWorker { thread, enforcer }) = worker {
            if let Some((tx, handle)) = thread {
                drop(tx);
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            }
            match Arc::try_unwrap(enforcer) {
                Ok(e) => e.teardown(),
                Err(_) => tracing::error!("teardown: the nftables enforcer is still in use"),
            }
        }
        if let Some(r) = self.routing.lock().await.take() {
            r.teardown().await;
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! The installed ESP SAs, read by every TUN and UDP worker without a global
//! lock: two tables (outbound by destination, inbound by SPI), each split into
//! [`SHARDS`] `arc-swap` snapshots of `HashMap`s. The control plane (the only
//! writer) replaces one shard when an SA comes or goes, so an install copies
//! about 1/[`SHARDS`] of the table, not all of it. A packet takes its shard's
//! snapshot (a few atomic operations), finds its SA and locks that SA's own
//! `Mutex` for the sequence number or replay window: workers only contend when
//! they carry traffic of one peer.
//!
//! Lifetime events (RFC 4303 byte/packet limits) seen by a worker go to the
//! control plane as [`Notice`]s; it rekeys or deletes through the IKE engine.
//!
//! Client address translation (issue 13): an initiator that the responder
//! gave an address (RFC 7296 §3.15) seals packets from that address and
//! opens packets to its own ([`Translation`]). NAT rebinding (RFC 7296 §2.23,
//! RFC 3948): a peer behind a NAT may come back from a new port; the UDP
//! workers report it ([`Inbound::moved`], `datapath::moved`), and the control
//! plane points the IKE SA's halves at it ([`SaTable::move_peer`]).
//!
//! Writers (install, publish, remove) hold one `Mutex` that the data path never
//! takes. It makes each shard's read-copy-update safe even if a second writer
//! ever appeared, and guards a per-peer count of inbound halves, so that
//! [`SaTable::serves`], asked on every SA removal, is a lookup, not a scan.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use oemesh_core::esp::{DecapError, EncapError, HEADER_LEN, InboundSa, LifetimeEvent, OutboundSa};
use oemesh_core::ike::endpoint::SaHandle;
use oemesh_core::ike::message::AddrSelector;
use oemesh_core::wire::rewrite::{RewriteError, set_destination, set_source};
use tokio::sync::mpsc::UnboundedSender;

use super::ip::{Flow, inbound_admits};
use super::pmtu::PathMtu;
pub use super::shards::SHARDS;
use super::shards::Shards;
use super::sites::Sites;
use crate::metrics::PmtuEvent;
use oemesh_core::wire::icmp::accepted_path_mtu;

/// Something the data path tells the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// An SA crossed a byte/packet limit: `SoftExpired` → rekey, `HardExpired` → delete.
    Lifetime {
        /// The IKE SA.
        sa: SaHandle,
        /// The inbound SPI naming the CHILD SA pair.
        inbound_spi: u32,
        /// Which limit.
        event: LifetimeEvent,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Client address translation for one SA pair, on the initiator (RFC 7296
/// §3.15): the responder narrowed this host's traffic selector to an address
/// it assigned, while the packets the kernel writes to the TUN carry this
/// host's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The address the peer gave this host (INTERNAL_IP4/6_ADDRESS): the
    /// source of sealed packets, the destination the peer sends to.
    pub assigned: IpAddr,
    /// This host's own address, which TUN packets carry.
    pub own: IpAddr,
}

impl Translation {
    /// Behind a NAT with an address the peer gave (`assigned`): TUN packets
    /// carry this host's own, `local` (the IKE SA's), else `fallback`.
    pub fn of(assigned: Option<IpAddr>, local: IpAddr, fallback: IpAddr) -> Option<Self> {
        let own = Some(local)
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(fallback);
        assigned.map(|assigned| Translation { assigned, own })
    }
}

/// Why an outbound packet was not sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// ESP refused it (expired, sequence exhausted, buffer).
    #[error(transparent)]
    Esp(#[from] EncapError),
    /// Its source could not be set to the assigned address: dropped.
    #[error("inner packet not translatable: {0}")]
    Translate(RewriteError),
}

/// The sending half of one CHILD SA, with where its packets go.
#[derive(Debug)]
pub struct Outbound {
    /// The IKE SA it belongs to.
    pub sa: SaHandle,
    /// The inbound SPI of the same pair (names the pair to the engine).
    pub inbound_spi: u32,
    /// The destination it protects (the key of the table).
    pub dst: IpAddr,
    /// This host's UDP 4500 address.
    pub local: SocketAddr,
    /// The peer's UDP 4500 address ([`Self::remote`]); a NAT may move it.
    remote: ArcSwap<SocketAddr>,
    /// Source translation, on an initiator given an address.
    pub translate: Option<Translation>,
    /// The path MTU to [`Self::remote`] a router reported (`datapath::pmtu`).
    pub pmtu: PathMtu,
    /// Its remote selectors wider than one address (a gateway's site):
    /// packets to any address inside go through it too (`datapath::sites`).
    site: Vec<AddrSelector>,
    esp: Mutex<OutboundSa>,
    notices: UnboundedSender<Notice>,
}

impl Outbound {
    /// The peer's UDP address now (hot path: one atomic load).
    #[inline]
    pub fn remote(&self) -> SocketAddr {
        **self.remote.load()
    }

    /// Encapsulates the inner packet at `buf[HEADER_LEN..HEADER_LEN + inner_len]`
    /// in place (see [`OutboundSa::encapsulate`]); returns the ESP length.
    /// With a [`Translation`], the inner source becomes the assigned address
    /// first (and is put back if ESP then refuses the packet, which may go
    /// another way).
    pub fn seal(&self, buf: &mut [u8], inner_len: usize) -> Result<usize, SealError> {
        let inner = HEADER_LEN..HEADER_LEN.saturating_add(inner_len);
        let own = match self.translate {
            None => None,
            Some(t) => Some(
                set_source(buf.get_mut(inner.clone()).unwrap_or_default(), t.assigned)
                    .map_err(SealError::Translate)?,
            ),
        };
        let (result, event) = {
            let mut esp = lock(&self.esp);
            let r = esp.encapsulate(buf, inner_len);
            (r, esp.poll_event())
        };
        if let Some(event) = event {
            let _ = self.notices.send(Notice::Lifetime {
                sa: self.sa,
                inbound_spi: self.inbound_spi,
                event,
            });
        }
        if result.is_err()
            && let Some(own) = own
            && let Some(inner) = buf.get_mut(inner)
        {
            let _ = set_source(inner, own);
        }
        result.map_err(SealError::Esp)
    }

    /// The outbound SPI.
    pub fn spi(&self) -> u32 {
        lock(&self.esp).spi()
    }

    /// Packets and inner bytes sent so far.
    pub fn counters(&self) -> (u64, u64) {
        let c = *lock(&self.esp).counters();
        (c.packets, c.bytes)
    }
}

/// Why an inbound ESP packet was dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// ESP refused it (replay, ICV, padding, lifetime).
    #[error(transparent)]
    Esp(#[from] DecapError),
    /// The inner packet is outside the SA's traffic selectors.
    #[error("inner packet outside the SA's traffic selectors")]
    TsMismatch,
    /// Its destination could not be set back to this host's own address.
    #[error("inner packet not translatable: {0}")]
    Translate(RewriteError),
}

/// The receiving half of one CHILD SA.
#[derive(Debug)]
pub struct Inbound {
    /// The IKE SA it belongs to.
    pub sa: SaHandle,
    /// The destination (peer) its outbound half protects.
    pub peer: IpAddr,
    /// The peer is behind a NAT: its port may change (RFC 7296 §2.23).
    pub floats: bool,
    /// Destination translation, on an initiator given an address.
    pub translate: Option<Translation>,
    /// The peer's UDP address as last installed or moved.
    remote: ArcSwap<SocketAddr>,
    local_ts: Vec<AddrSelector>,
    remote_ts: Vec<AddrSelector>,
    esp: Mutex<InboundSa>,
    notices: UnboundedSender<Notice>,
}

impl Inbound {
    /// Checks and decrypts an ESP packet in place and checks the inner packet
    /// against the traffic selectors; returns where the inner packet lies.
    pub fn open(&self, packet: &mut [u8]) -> Result<Range<usize>, OpenError> {
        let (result, event, spi) = {
            let mut esp = lock(&self.esp);
            let r = esp.decapsulate(packet);
            (r, esp.poll_event(), esp.spi())
        };
        if let Some(event) = event {
            let _ = self.notices.send(Notice::Lifetime {
                sa: self.sa,
                inbound_spi: spi,
                event,
            });
        }
        let inner = result?.inner;
        let admitted = packet
            .get(inner.clone())
            .and_then(Flow::of)
            .is_some_and(|f| inbound_admits(&f, &self.local_ts, &self.remote_ts));
        if !admitted {
            return Err(OpenError::TsMismatch);
        }
        // The selectors (narrowed to the assigned address) held: the
        // destination is `assigned`, and the kernel knows it as `own`.
        if let Some(t) = self.translate {
            let bytes = packet.get_mut(inner.clone()).unwrap_or_default();
            set_destination(bytes, t.own).map_err(OpenError::Translate)?;
        }
        Ok(inner)
    }

    /// The peer's UDP address as last installed or moved.
    pub fn remote(&self) -> SocketAddr {
        **self.remote.load()
    }

    /// Whether an authentic packet from `from` shows the peer behind a NAT
    /// on a new port: the SA floats, and `from` is the remembered address
    /// with another port. Another IP is never a move (an SA's addresses are
    /// fixed at IKE_SA_INIT; only the port may change, design "trust model").
    pub fn moved(&self, from: SocketAddr) -> bool {
        if !self.floats {
            return false;
        }
        let was = self.remote();
        from.port() != was.port() && from.ip().to_canonical() == was.ip().to_canonical()
    }

    /// Packets and inner bytes received so far.
    pub fn counters(&self) -> (u64, u64) {
        let c = *lock(&self.esp).counters();
        (c.packets, c.bytes)
    }
}

/// What to install for one CHILD SA pair.
#[derive(Debug)]
pub struct Install {
    /// The IKE SA.
    pub sa: SaHandle,
    /// The destination it protects.
    pub dst: IpAddr,
    /// Sending half.
    pub outbound: OutboundSa,
    /// Receiving half.
    pub inbound: InboundSa,
    /// This host's selectors.
    pub local_ts: Vec<AddrSelector>,
    /// The peer's selectors.
    pub remote_ts: Vec<AddrSelector>,
    /// This host's UDP 4500 address.
    pub local: SocketAddr,
    /// The peer's UDP 4500 address.
    pub remote: SocketAddr,
    /// Client address translation (this host is an initiator the peer gave
    /// an address, RFC 7296 §3.15), or `None`.
    pub translate: Option<Translation>,
    /// The peer is behind a NAT (RFC 7296 §2.23): its port may change, and
    /// packets from a new port are reported (`datapath::moved`).
    pub floats: bool,
}

/// What the writers keep beside the shards, under their lock.
#[derive(Debug, Default)]
struct Writers {
    /// How many inbound halves each peer has in the table (`Inbound::peer`);
    /// peers with none are absent.
    inbound_per_peer: HashMap<IpAddr, usize>,
}

impl Writers {
    fn added(&mut self, peer: IpAddr) {
        *self.inbound_per_peer.entry(peer).or_default() += 1;
    }

    fn removed(&mut self, peer: IpAddr) {
        if let Some(n) = self.inbound_per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.inbound_per_peer.remove(&peer);
            }
        }
    }
}

/// The SA table. See the module docs.
#[derive(Debug)]
pub struct SaTable {
    outbound: Shards<IpAddr, Arc<Outbound>>,
    /// Outbound halves that carry a whole site, for destinations without
    /// one of their own.
    sites: Sites,
    inbound: Shards<u32, Arc<Inbound>>,
    writers: Mutex<Writers>,
    notices: UnboundedSender<Notice>,
}

impl SaTable {
    /// An empty table whose SAs report lifetime events to `notices`.
    pub fn new(notices: UnboundedSender<Notice>) -> SaTable {
        SaTable {
            outbound: Shards::new(),
            sites: Sites::default(),
            inbound: Shards::new(),
            writers: Mutex::default(),
            notices,
        }
    }

    /// The outbound SA for packets to `dst` (hot path): its own, else one
    /// whose site covers it.
    pub fn outbound(&self, dst: IpAddr) -> Option<Arc<Outbound>> {
        self.outbound.get(&dst).or_else(|| self.sites.find(dst))
    }

    /// The inbound SA with `spi` (hot path).
    pub fn inbound(&self, spi: u32) -> Option<Arc<Inbound>> {
        self.inbound.get(&spi)
    }

    /// Installs a pair; the outbound half replaces any older one for the same
    /// destination (a rekey), older inbound halves stay until [`Self::remove_pair`].
    ///
    /// With `publish_outbound` false only the inbound half goes in, and the
    /// outbound half is returned for [`Self::publish`]: the first SA of a
    /// destination must not carry new packets from the TUN before the packets
    /// held while it was negotiated, or they would arrive out of order.
    pub fn install(&self, i: Install, publish_outbound: bool) -> Arc<Outbound> {
        let inbound_spi = i.inbound.spi();
        let out = Arc::new(Outbound {
            sa: i.sa,
            inbound_spi,
            dst: i.dst,
            local: i.local,
            remote: ArcSwap::from_pointee(i.remote),
            translate: i.translate,
            pmtu: PathMtu::default(),
            site: i
                .remote_ts
                .iter()
                .filter(|t| t.single_address().is_none())
                .cloned()
                .collect(),
            esp: Mutex::new(i.outbound),
            notices: self.notices.clone(),
        });
        let inb = Arc::new(Inbound {
            sa: i.sa,
            peer: i.dst,
            floats: i.floats,
            translate: i.translate,
            remote: ArcSwap::from_pointee(i.remote),
            local_ts: i.local_ts,
            remote_ts: i.remote_ts,
            esp: Mutex::new(i.inbound),
            notices: self.notices.clone(),
        });
        let mut writers = lock(&self.writers);
        writers.added(inb.peer);
        // SPIs are the engine's and unique; should one come back, the half it
        // replaces no longer serves its peer.
        if let Some(old) = self.inbound.insert(inbound_spi, inb) {
            writers.removed(old.peer);
        }
        if publish_outbound {
            self.publish_locked(out.clone());
        }
        out
    }

    /// Publishes `out` under its destination, and its site; the writer lock held.
    fn publish_locked(&self, out: Arc<Outbound>) {
        if !out.site.is_empty() || !self.sites.is_empty() {
            self.sites.publish(&out, &out.site);
        }
        self.outbound.insert(out.dst, out);
    }

    /// Makes an outbound half from [`Self::install`] the one the data path uses.
    pub fn publish(&self, out: Arc<Outbound>) {
        let _writers = lock(&self.writers);
        self.publish_locked(out);
    }

    /// Removes the inbound SA `spi` and, if it is the pair of the current
    /// outbound SA of its destination, that one too. Returns what was removed.
    pub fn remove_pair(&self, inbound_spi: u32) -> (Option<Arc<Inbound>>, Option<Arc<Outbound>>) {
        let mut writers = lock(&self.writers);
        let inb = self.inbound.remove(&inbound_spi);
        if let Some(i) = &inb {
            writers.removed(i.peer);
        }
        // The pair's outbound half is under the inbound half's peer; without
        // the inbound half, look through all of them.
        let dst = match &inb {
            Some(i) => Some(i.peer).filter(|dst| {
                self.outbound
                    .get(dst)
                    .is_some_and(|o| o.inbound_spi == inbound_spi)
            }),
            None => self
                .outbound
                .values()
                .into_iter()
                .find(|o| o.inbound_spi == inbound_spi)
                .map(|o| o.dst),
        };
        let removed_out = dst.and_then(|dst| self.outbound.remove(&dst));
        if let Some(o) = &removed_out {
            self.sites.remove(o);
        }
        (inb, removed_out)
    }

    /// Points every half of IKE SA `sa` at `remote`: the peer behind a NAT
    /// came back from a new port (RFC 7296 §2.23, RFC 3948). The control
    /// plane calls it once core accepted the move; halves installed later
    /// take the address from their [`Install`]. Outbound halves not yet
    /// published are the caller's to move.
    pub fn move_peer(&self, sa: SaHandle, remote: SocketAddr) {
        let _writers = lock(&self.writers);
        let remote = Arc::new(remote);
        for o in self.outbound.values().iter().filter(|o| o.sa == sa) {
            o.remote.store(remote.clone());
        }
        for i in self.inbound.values().iter().filter(|i| i.sa == sa) {
            i.remote.store(remote.clone());
        }
    }

    /// Whether any SA (either direction) still serves `peer`: a published
    /// outbound half to it, or an inbound half from it. Two lookups, however
    /// many SAs there are (the control plane asks on every SA removal).
    pub fn serves(&self, peer: IpAddr) -> bool {
        self.outbound.contains(&peer) || lock(&self.writers).inbound_per_peer.contains_key(&peer)
    }

    /// A router reported path MTU `reported` for an ESP datagram we sent to
    /// `remote` (quoting its SPI, `spi`, when it quoted that far): if an
    /// outbound half to `remote` exists (with that SPI), every half to
    /// `remote` takes it at `now`, as core's [`accepted_path_mtu`] allows
    /// (only lower, never below the family's minimum). An error that names no
    /// such half is not ours: an off-path sender must guess a peer's address,
    /// port and current SPI to shrink anything.
    pub fn lower_path_mtu(
        &self,
        remote: SocketAddr,
        spi: Option<u32>,
        reported: u32,
        now: std::time::Instant,
    ) -> PmtuEvent {
        let halves: Vec<_> = self
            .outbound
            .values()
            .into_iter()
            .filter(|o| o.remote() == remote)
            .collect();
        if halves.is_empty() || spi.is_some_and(|spi| !halves.iter().any(|o| o.spi() == spi)) {
            return PmtuEvent::NotOurs;
        }
        let mut event = PmtuEvent::NotLower;
        for o in &halves {
            if let Some(mtu) = accepted_path_mtu(reported, remote.is_ipv6(), o.pmtu.current(now)) {
                o.pmtu.set(mtu, now);
                event = if u32::from(mtu) > reported {
                    PmtuEvent::Clamped
                } else {
                    PmtuEvent::Lowered
                };
            }
        }
        event
    }

    /// Every inbound SA (for counters and idle checks).
    pub fn inbound_all(&self) -> Vec<Arc<Inbound>> {
        self.inbound.values()
    }

    /// Every outbound SA.
    pub fn outbound_all(&self) -> Vec<Arc<Outbound>> {
        self.outbound.values()
    }

    /// Packets carried so far per IKE SA, both directions (the node closes
    /// idle IKE SAs from these).
    pub fn packets_per_ike_sa(&self) -> HashMap<SaHandle, u64> {
        let mut totals = HashMap::new();
        for i in self.inbound_all() {
            *totals.entry(i.sa).or_default() += i.counters().0;
        }
        for o in self.outbound_all() {
            *totals.entry(o.sa).or_default() += o.counters().0;
        }
        totals
    }

    /// Number of installed SAs (inbound, outbound).
    pub fn len(&self) -> (usize, usize) {
        (self.inbound.len(), self.outbound.len())
    }
}

/// Logs an ESP SA reaching its soft or hard lifetime limit.
pub fn log_lifetime(inbound_spi: u32, event: LifetimeEvent) {
    match event {
        LifetimeEvent::SoftExpired => {
            tracing::info!("ESP SA {inbound_spi:#010x}: soft limit, rekeying")
        }
        LifetimeEvent::HardExpired => {
            tracing::warn!("ESP SA {inbound_spi:#010x}: hard limit, deleting")
        }
    }
}

#[cfg(test)]
mod tests;

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
//! Writers (install, publish, remove) hold one `Mutex` that the data path never
//! takes. It makes each shard's read-copy-update safe even if a second writer
//! ever appeared, and guards a per-peer count of inbound halves, so that
//! [`SaTable::serves`], asked on every SA removal, is a lookup, not a scan.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use oemesh_core::esp::{DecapError, EncapError, InboundSa, LifetimeEvent, OutboundSa};
use oemesh_core::ike::endpoint::SaHandle;
use oemesh_core::ike::message::AddrSelector;
use tokio::sync::mpsc::UnboundedSender;

use super::ip::{Flow, inbound_admits};
pub use super::shards::SHARDS;
use super::shards::Shards;

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
    /// The peer's UDP 4500 address.
    pub remote: SocketAddr,
    esp: Mutex<OutboundSa>,
    notices: UnboundedSender<Notice>,
}

impl Outbound {
    /// Encapsulates the inner packet at `buf[HEADER_LEN..HEADER_LEN + inner_len]`
    /// in place (see [`OutboundSa::encapsulate`]); returns the ESP length.
    pub fn seal(&self, buf: &mut [u8], inner_len: usize) -> Result<usize, EncapError> {
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
        result
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
}

/// The receiving half of one CHILD SA.
#[derive(Debug)]
pub struct Inbound {
    /// The IKE SA it belongs to.
    pub sa: SaHandle,
    /// The destination (peer) its outbound half protects.
    pub peer: IpAddr,
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
        if admitted {
            Ok(inner)
        } else {
            Err(OpenError::TsMismatch)
        }
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
    inbound: Shards<u32, Arc<Inbound>>,
    writers: Mutex<Writers>,
    notices: UnboundedSender<Notice>,
}

impl SaTable {
    /// An empty table whose SAs report lifetime events to `notices`.
    pub fn new(notices: UnboundedSender<Notice>) -> SaTable {
        SaTable {
            outbound: Shards::new(),
            inbound: Shards::new(),
            writers: Mutex::default(),
            notices,
        }
    }

    /// The outbound SA for packets to `dst` (hot path).
    pub fn outbound(&self, dst: IpAddr) -> Option<Arc<Outbound>> {
        self.outbound.get(&dst)
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
            remote: i.remote,
            esp: Mutex::new(i.outbound),
            notices: self.notices.clone(),
        });
        let inb = Arc::new(Inbound {
            sa: i.sa,
            peer: i.dst,
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
            self.outbound.insert(out.dst, out.clone());
        }
        out
    }

    /// Makes an outbound half from [`Self::install`] the one the data path uses.
    pub fn publish(&self, out: Arc<Outbound>) {
        let _writers = lock(&self.writers);
        self.outbound.insert(out.dst, out);
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
        (inb, removed_out)
    }

    /// Whether any SA (either direction) still serves `peer`: a published
    /// outbound half to it, or an inbound half from it. Two lookups, however
    /// many SAs there are (the control plane asks on every SA removal).
    pub fn serves(&self, peer: IpAddr) -> bool {
        self.outbound.contains(&peer) || lock(&self.writers).inbound_per_peer.contains_key(&peer)
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
mod tests {
    use super::*;
    use crate::datapath::ip::tests::v4_udp;
    use oemesh_core::crypto::{AeadAlg, KeyAndSalt, Provider};
    use oemesh_core::esp::{HEADER_LEN, LifetimeLimits, MAX_TRAILER_LEN, SaConfig};
    use std::time::Instant;

    fn pair(spi_in: u32, spi_out: u32, key: &KeyAndSalt) -> (OutboundSa, InboundSa) {
        let cfg = |spi| SaConfig {
            spi,
            alg: AeadAlg::Aes256Gcm,
            provider: Provider::default(),
            esn: true,
            limits: LifetimeLimits::UNLIMITED,
        };
        let now = Instant::now();
        (
            OutboundSa::new(cfg(spi_out), key, now),
            InboundSa::new(cfg(spi_in), key, now),
        )
    }

    /// Installs the pair `spi_in`/`spi_out` of IKE SA `sa` between `local`
    /// and `dst` (host selectors, port 4500).
    fn install(
        table: &SaTable,
        sa: u64,
        (spi_in, spi_out): (u32, u32),
        (local, dst): (IpAddr, IpAddr),
        publish: bool,
    ) -> Arc<Outbound> {
        let key = KeyAndSalt::from_slice(&[7u8; 36]).unwrap();
        let (outbound, inbound) = pair(spi_in, spi_out, &key);
        let install = Install {
            sa: SaHandle(sa),
            dst,
            outbound,
            inbound,
            local_ts: vec![AddrSelector::host(local)],
            remote_ts: vec![AddrSelector::host(dst)],
            local: SocketAddr::new(local, 4500),
            remote: SocketAddr::new(dst, 4500),
        };
        table.install(install, publish)
    }

    #[test]
    fn unpublished_outbound_is_invisible_until_published() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let table = SaTable::new(tx);
        let (local, dst): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.20".parse().unwrap());
        let out = install(&table, 1, (1, 2), (local, dst), false);
        assert!(
            table.outbound(dst).is_none(),
            "new packets must wait for the held ones"
        );
        assert!(table.inbound(1).is_some(), "the peer may already send");
        table.publish(out);
        assert_eq!(table.outbound(dst).map(|o| o.inbound_spi), Some(1));
    }

    #[test]
    fn seal_open_and_selectors() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let table = SaTable::new(tx);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.20".parse().unwrap();
        // One table holding both ends: out SPI 2 is the in SPI of the other end.
        install(&table, 1, (1, 2), (a, b), true);
        install(&table, 2, (2, 1), (b, a), true);
        let udp = |src| v4_udp(src, [192, 0, 2, 20], 1, 2);
        let mut inner = udp([192, 0, 2, 1]);
        let mut buf = vec![0u8; HEADER_LEN + inner.len() + MAX_TRAILER_LEN];
        buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
        let len = table
            .outbound(b)
            .unwrap()
            .seal(&mut buf, inner.len())
            .unwrap();
        let spi = oemesh_core::esp::peek_spi(&buf[..len]).unwrap();
        assert_eq!(spi, 2);
        // B's inbound SA 2: the inner packet's source A is the peer: admitted.
        let range = table.inbound(2).unwrap().open(&mut buf[..len]).unwrap();
        assert_eq!(&buf[range], &inner[..]);
        // A spoofed inner source is refused.
        inner = udp([192, 0, 2, 99]);
        buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
        let len = table
            .outbound(b)
            .unwrap()
            .seal(&mut buf, inner.len())
            .unwrap();
        assert!(matches!(
            table.inbound(2).unwrap().open(&mut buf[..len]),
            Err(OpenError::TsMismatch)
        ));
        assert!(table.serves(b));
        let (i, o) = table.remove_pair(1);
        assert!(i.is_some() && o.is_some());
        assert!(table.outbound(b).is_none());
        assert_eq!(table.len(), (1, 1));
    }

    #[test]
    fn many_pairs_across_shards() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let table = SaTable::new(tx);
        let local: IpAddr = "2001:db8::1".parse().unwrap();
        let n = 2000u32;
        let dst = |i: u32| {
            IpAddr::from(std::net::Ipv6Addr::from_bits(
                (0x2001_0db8_0001u128 << 80) | u128::from(i),
            ))
        };
        for i in 0..n {
            install(
                &table,
                u64::from(i),
                (1000 + i, 5000 + i),
                (local, dst(i)),
                true,
            );
        }
        assert_eq!(table.len(), (n as usize, n as usize));
        let used = table
            .inbound
            .shards
            .iter()
            .filter(|s| !s.load().is_empty())
            .count();
        assert!(used > SHARDS / 2, "SPIs spread over the shards: {used}");
        let used = table
            .outbound
            .shards
            .iter()
            .filter(|s| !s.load().is_empty())
            .count();
        assert!(
            used > SHARDS / 2,
            "addresses spread over the shards: {used}"
        );
        for i in 0..n {
            assert_eq!(
                table.outbound(dst(i)).map(|o| o.inbound_spi),
                Some(1000 + i)
            );
            assert_eq!(table.inbound(1000 + i).map(|s| s.peer), Some(dst(i)));
        }
        // A rekey: a second pair for destination 7; the old inbound half stays.
        install(&table, 7, (9999, 9998), (local, dst(7)), true);
        // Removing the old pair leaves the new outbound half alone.
        let (i, o) = table.remove_pair(1007);
        assert!(i.is_some() && o.is_none());
        assert_eq!(table.outbound(dst(7)).map(|o| o.inbound_spi), Some(9999));
        assert!(table.serves(dst(7)));
        let (i, o) = table.remove_pair(9999);
        assert!(i.is_some() && o.is_some());
        assert!(!table.serves(dst(7)));
        let (i, o) = table.remove_pair(9999);
        assert!(i.is_none() && o.is_none());
        assert_eq!(table.len(), (n as usize - 1, n as usize - 1));
        assert_eq!(table.inbound_all().len(), n as usize - 1);
    }

    /// `serves` as it was first written: a scan of every inbound half.
    fn serves_by_scan(table: &SaTable, peer: IpAddr) -> bool {
        table.outbound.contains(&peer) || table.inbound_all().iter().any(|i| i.peer == peer)
    }

    #[test]
    fn serves_agrees_with_a_scan_under_random_installs_and_removals() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let local: IpAddr = "192.0.2.1".parse().unwrap();
        // Six peers that come and go, and one that never has an SA.
        let peers: Vec<IpAddr> = (10..17u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        for seed in [1u64, 0x5eed, 0xdead_beef, 42_424_242] {
            let table = SaTable::new(tx.clone());
            let mut rng = seed;
            let mut next = |n: u64| {
                // xorshift64: a fixed sequence per seed.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut unpublished: Vec<Arc<Outbound>> = Vec::new();
            for step in 0..3000 {
                // 24 SPIs for ~6 live pairs: removals often miss, and now and
                // then an install reuses a live SPI (replacing that half).
                let spi = 1 + u32::try_from(next(24)).unwrap();
                match next(8) {
                    0..=3 => {
                        let dst = peers[usize::try_from(next(6)).unwrap()];
                        let out = install(
                            &table,
                            u64::from(spi),
                            (spi, 1000 + spi),
                            (local, dst),
                            next(2) == 0,
                        );
                        if table.outbound(dst).is_none_or(|o| !Arc::ptr_eq(&o, &out)) {
                            unpublished.push(out);
                        }
                    }
                    4 if !unpublished.is_empty() => {
                        let i = usize::try_from(next(unpublished.len() as u64)).unwrap();
                        table.publish(unpublished.swap_remove(i));
                    }
                    _ => {
                        table.remove_pair(spi);
                    }
                }
                for &peer in &peers {
                    assert_eq!(
                        table.serves(peer),
                        serves_by_scan(&table, peer),
                        "seed {seed:#x}, step {step}, peer {peer}"
                    );
                }
            }
            // Emptied, the table keeps no count behind.
            for spi in 1..=24 {
                table.remove_pair(spi);
            }
            let outbound_left = table.outbound_all();
            assert!(table.inbound_all().is_empty());
            assert!(lock(&table.writers).inbound_per_peer.is_empty());
            for peer in &peers {
                assert_eq!(
                    table.serves(*peer),
                    outbound_left.iter().any(|o| o.dst == *peer)
                );
            }
        }
    }
}

//! The ESP data path: batched, in place, no allocation per packet on the
//! encrypted paths, no global lock.
//!
//! - [`sa_table`]: installed SAs, outbound by destination and inbound by SPI,
//!   in `arc-swap` snapshots (`shards`) with a `Mutex` per SA (sequence
//!   number, replay window).
//! - [`gso`]: runs of equal-sized ESP-in-UDP datagrams to one peer leave in one
//!   UDP GSO send.
//! - [`clear`]: raw IP sockets with the fwmark for packets that go in clear
//!   around the TUN.
//! - [`ip`]: addresses and flows of packets (on `oemesh_core::wire`'s views)
//!   and the traffic selector check of inbound packets.
//! - [`gro`]: TCP receive coalescing for the TUN writer.
//! - [`parked`]: ESP datagrams that arrived just before their SA.
//! - [`stale`]: the sources of ESP whose SA is unknown, for the control plane.
//! - [`moved`]: peers behind a NAT seen on a new port, for the control plane.
//! - [`pmtu`]: path MTUs routers report for our ESP, and "too big" for the
//!   TUN's packets that no longer fit.
//!
//! [`DataPath`] is what the TUN and UDP workers ([`crate::driver`]) share; the
//! control plane ([`crate::control_plane`]) installs and removes SAs and
//! outcomes in it.

pub mod clear;
pub mod gro;
pub mod gso;
pub mod ike_queue;
pub mod ip;
pub mod moved;
pub mod parked;
pub mod pmtu;
pub mod reports;
pub mod sa_table;
mod shards;
pub mod sites;
pub mod stale;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use oemesh_core::esp::{HEADER_LEN, MAX_TRAILER_LEN};
use tokio::sync::mpsc;

use crate::metrics::{Metrics, PacketOutcome};
use crate::net::udp::UdpEndpoint;
use crate::outcomes::OutcomeCache;
use clear::ClearSender;
use gso::GsoBatch;
use sa_table::SaTable;

/// A packet to a destination without an SA, for the control plane.
#[derive(Debug)]
pub struct Undecided {
    /// Its destination.
    pub dst: IpAddr,
    /// The whole IP packet.
    pub packet: Vec<u8>,
}

/// An IKE message received on UDP 500 or 4500 (non-ESP marker removed).
#[derive(Debug)]
pub struct IkeDatagram {
    /// The local address and port it arrived at.
    pub local: SocketAddr,
    /// The sender.
    pub remote: SocketAddr,
    /// The IKE message.
    pub message: Vec<u8>,
}

/// Everything the workers share.
#[derive(Debug)]
pub struct DataPath {
    /// Installed SAs.
    pub sas: SaTable,
    /// Decided outcomes.
    pub outcomes: OutcomeCache,
    /// Cleartext around the TUN; `None` if no raw socket could be opened.
    pub clear: Option<ClearSender>,
    /// The NAT-T socket ESP leaves from.
    pub natt: Arc<UdpEndpoint>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// This host's addresses, one per family (for datagrams whose local
    /// address is unknown: the one of the sender's family); they change
    /// with the host's (`crate::net::addresses`).
    pub address: arc_swap::ArcSwap<oemesh_core::oe::Addresses>,
    /// Packets for the control plane (bounded).
    pub undecided: mpsc::Sender<Undecided>,
    /// IKE messages for the control plane (bounded, two queues), and the
    /// cookie replies the UDP workers send themselves.
    pub ike: ike_queue::IkeOutbox,
    /// ICMP errors read by the IKE sockets' workers, for the control plane.
    pub icmp: mpsc::Sender<crate::net::udp::IcmpError>,
    /// Packets dropped because the control plane's queue was full.
    pub queue_drops: AtomicU64,
    /// ESP datagrams whose SA was not installed yet.
    pub parked: parked::Parked,
    /// Sources of ESP with unknown SPIs, for the control plane.
    pub stale: stale::StaleReports,
    /// Peers behind a NAT that came back from a new port, for the control plane.
    pub moved: moved::MovedReports,
}

impl DataPath {
    /// This host's address of `of`'s family now, else the unspecified
    /// address of that family.
    pub fn own_address(&self, of: std::net::IpAddr) -> std::net::IpAddr {
        self.address.load().for_family_or_unspecified(of)
    }

    /// One packet from the TUN, in its slot `buf` at `range` (with headroom in
    /// front and tailroom after): private → sealed in place and added to `gso`
    /// (flushed first when the run breaks); clear → re-sent marked; blocked →
    /// dropped; anything else → the control plane.
    pub async fn outbound(
        &self,
        buf: &mut [u8],
        range: std::ops::Range<usize>,
        gso: &mut GsoBatch,
    ) {
        let len = range.len();
        let Some(dst) = buf.get(range.clone()).and_then(ip::destination) else {
            self.metrics.packet(PacketOutcome::Dropped, len);
            return;
        };
        if let Some(sa) = self.sas.outbound(dst)
            && let Some(start) = range.start.checked_sub(HEADER_LEN)
            && buf.len() >= range.end + MAX_TRAILER_LEN
        {
            // Too big for the peer's path once sealed (a router said so):
            // its source hears "too big" instead (datapath::pmtu).
            // The hot path reads one atomic; the rest only for a big packet.
            if let Some(path) = sa.pmtu.learned()
                && len > usize::from(pmtu::inner_mtu(path, sa.remote().is_ipv6()))
                && sa.pmtu.current(std::time::Instant::now()).is_some()
                && pmtu::reply_too_big(self, &buf[range.clone()], path, sa.remote().is_ipv6())
            {
                self.metrics.packet(PacketOutcome::Dropped, len);
                return;
            }
            match sa.seal(&mut buf[start..], len) {
                Ok(esp_len) => {
                    let from = Some(sa.local.ip()).filter(|ip| !ip.is_unspecified());
                    let remote = sa.remote();
                    if !gso.fits(remote, from, esp_len) {
                        gso.flush(&self.natt, &self.metrics).await;
                    }
                    gso.push(remote, from, &buf[start..start + esp_len], len);
                    return;
                }
                Err(e @ sa_table::SealError::Translate(_)) => {
                    tracing::trace!("{dst}: dropped: {e}");
                    self.metrics.packet(PacketOutcome::Dropped, len);
                    return;
                }
                Err(e) => {
                    // Expired or exhausted: the control plane hears of it
                    // (lifetime notice); this packet goes the slow way.
                    tracing::debug!("{dst}: ESP refused: {e}");
                }
            }
        }
        if !ip::is_remote_unicast(dst) {
            tracing::trace!("{dst}: link chatter from the TUN dropped");
            self.metrics.packet(PacketOutcome::Dropped, len);
            return;
        }
        match self.outcomes.state(dst) {
            Some(oemesh_core::oe::State::Clear) => {
                self.send_clear(&buf[range]);
            }
            Some(oemesh_core::oe::State::Blocked) => {
                self.metrics.packet(PacketOutcome::Dropped, len);
            }
            _ => self.to_control(dst, &buf[range]),
        }
    }

    /// The peer of IKE SA `sa`, behind a NAT, is now at `remote`: its SA pairs
    /// send there (`SaTable::move_peer`), counted.
    pub fn move_peer(&self, sa: oemesh_core::ike::endpoint::SaHandle, remote: SocketAddr) {
        self.sas.move_peer(sa, remote);
        self.metrics.nat_moved();
    }

    /// Hands a packet to the control plane (a copy: it may be held).
    pub fn to_control(&self, dst: IpAddr, packet: &[u8]) {
        let len = packet.len();
        match self.undecided.try_send(Undecided {
            dst,
            packet: packet.to_vec(),
        }) {
            Ok(()) => {}
            Err(_) => {
                self.queue_drops.fetch_add(1, Relaxed);
                self.metrics.hold_drop();
                self.metrics.packet(PacketOutcome::Dropped, len);
            }
        }
    }

    /// Sends a packet in clear around the TUN, counting it.
    pub fn send_clear(&self, packet: &[u8]) {
        let sent = match &self.clear {
            Some(c) => c.send(packet),
            None => Err(std::io::Error::other("no raw socket")),
        };
        match sent {
            Ok(()) => self.metrics.packet(PacketOutcome::Clear, packet.len()),
            Err(e) => {
                tracing::debug!("cleartext send: {e}");
                self.metrics.packet(PacketOutcome::Dropped, packet.len());
            }
        }
    }

    /// Seals one packet with `sa` in `scratch` and sends it, counting it
    /// (held packets and stragglers, from the control plane: not the hot
    /// path, which is the TUN workers').
    pub async fn send_sealed(&self, sa: &sa_table::Outbound, packet: &[u8], scratch: &mut Vec<u8>) {
        use oemesh_core::esp::{HEADER_LEN, MAX_TRAILER_LEN};
        scratch.clear();
        scratch.resize(HEADER_LEN + packet.len() + MAX_TRAILER_LEN, 0);
        scratch[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(packet);
        let fate = match sa.seal(scratch, packet.len()) {
            Ok(len) => {
                let from = Some(sa.local.ip()).filter(|ip| !ip.is_unspecified());
                let remote = sa.remote();
                match self.natt.send(remote, from, &scratch[..len], None).await {
                    Ok(()) => PacketOutcome::Encrypted,
                    Err(e) => {
                        tracing::debug!("ESP to {remote}: {e}");
                        PacketOutcome::Dropped
                    }
                }
            }
            Err(e) => {
                tracing::debug!("{}: ESP refused: {e}", sa.dst);
                PacketOutcome::Dropped
            }
        };
        self.metrics.packet(fate, packet.len());
    }
}

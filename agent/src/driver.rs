//! The packet loops: **the integration point** for the IKE engine, the decision
//! machine and the ESP data path (all in core). Everything around them — the
//! TUN, sockets, routes, nftables, control socket, metrics — is set up by
//! [`crate::run`] and handed in here.
//!
//! Until core's pieces are wired in, packets read from the TUN are counted and
//! dropped, and IKE/ESP datagrams are classified, counted and dropped. Each
//! place to fill is marked `INTEGRATION(<part>)`:
//!
//! - `INTEGRATION(decision)`: [`tun_loop`], per packet read from the TUN — look up
//!   the destination's state (SA table / decision machine): private → ESP; unknown
//!   → hold and start a decision; block → drop.
//! - `INTEGRATION(esp-out)`: [`tun_loop`], encrypt in place in the reader's slot
//!   (headroom and tailroom are there for ESP) and send as one GSO batch per peer.
//! - `INTEGRATION(engine)`: [`udp_loop`], IKE messages go to the control-plane
//!   task that owns core's IKE endpoint; its transmits go out through
//!   [`UdpEndpoint::send`] on the port they came in on.
//! - `INTEGRATION(esp-in)`: [`udp_loop`], SA by SPI → anti-replay → decrypt into
//!   [`TunWriter::push_with`] → inner packet checked against the SA's traffic
//!   selectors.
//! - Outcomes change kernel state through [`KernelActions`]: a clear outcome adds
//!   a bypass route, a private one adds the peer to the nftables set, and expiry
//!   undoes either.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use oemesh_core::ike::udp_encap::{self, Datagram};
use tokio::sync::Mutex;

use crate::metrics::{Metrics, PacketOutcome};
use crate::net::nft::{Enforcer, NftError};
use crate::net::routes::{RouteError, Routing};
use crate::net::tun::{TunReader, TunWriter};
use crate::net::udp::UdpEndpoint;

/// Reads batches from one TUN queue and decides per packet. Runs until the
/// TUN fails; one instance per queue.
pub async fn tun_loop(
    mut reader: TunReader,
    natt: Arc<UdpEndpoint>,
    metrics: Arc<Metrics>,
) -> io::Result<()> {
    let _ = &natt; // INTEGRATION(esp-out): ESP leaves through the NAT-T socket.
    loop {
        let n = reader.read_batch().await?;
        for i in 0..n {
            let (_buf, range) = reader.slot_mut(i);
            let len = range.len();
            let dst = ip_destination(reader.packet(i));
            // INTEGRATION(decision): match the destination's state:
            //   private → INTEGRATION(esp-out): seal in place in `_buf` around
            //             `range`, collect per peer, `natt.send(peer, None, batch, Some(seg))`;
            //   pending/unknown → hold a copy in the peer's bounded queue
            //             (config.hold), start the decision if new;
            //   clear   → should not arrive (bypass route); re-send marked;
            //   block   → drop.
            tracing::trace!(
                ?dst,
                len,
                "TUN packet dropped: decision machine not wired in"
            );
            metrics.packet(PacketOutcome::Dropped, len);
        }
    }
}

/// Reads batches from a UDP socket (IKE on 500, or NAT-T/ESP on 4500 when
/// `natt`) and dispatches each datagram.
pub async fn udp_loop(
    endpoint: Arc<UdpEndpoint>,
    natt: bool,
    mut tun: TunWriter,
    metrics: Arc<Metrics>,
) -> io::Result<()> {
    let mut batch = endpoint.recv_batch();
    loop {
        endpoint.recv(&mut batch).await?;
        for d in batch.datagrams() {
            let kind = if natt {
                udp_encap::classify(d.data)
            } else {
                Datagram::Ike(d.data)
            };
            match kind {
                Datagram::Ike(message) => {
                    // INTEGRATION(engine): hand (d.from, d.to, message) to the
                    // control-plane task owning the IKE endpoint; it replies via
                    // `endpoint.send(d.from, d.to, ..)` (with the non-ESP marker on 4500).
                    tracing::trace!(from = %d.from, len = message.len(), "IKE dropped: engine not wired in");
                    metrics.packet(PacketOutcome::Dropped, d.data.len());
                }
                Datagram::Esp(esp) => {
                    // INTEGRATION(esp-in): SA by SPI, replay check (metrics.replay_failure),
                    // open (metrics.esp_auth_failure), then
                    // `tun.push_with(|buf| /* decrypt into buf */)`.
                    tracing::trace!(from = %d.from, len = esp.len(), "ESP dropped: data path not wired in");
                    metrics.packet(PacketOutcome::Dropped, d.data.len());
                }
                Datagram::Keepalive => {}
                Datagram::Invalid => metrics.packet(PacketOutcome::Dropped, d.data.len()),
            }
        }
        tun.flush().await?;
    }
}

/// The kernel side of outcomes: bypass routes for clear peers, the nftables
/// set for private ones. Shared by the control-plane task (`Arc`).
#[derive(Debug)]
pub struct KernelActions {
    routing: Mutex<Option<Routing>>,
    enforcer: Option<Enforcer>,
}

impl KernelActions {
    /// Wraps the installed routing and enforcement.
    pub fn new(routing: Routing, enforcer: Enforcer) -> Self {
        KernelActions {
            routing: Mutex::new(Some(routing)),
            enforcer: Some(enforcer),
        }
    }

    /// `peer` went clear: its packets take the main table from now on.
    pub async fn clear(&self, peer: IpAddr) -> Result<(), RouteError> {
        match self.routing.lock().await.as_mut() {
            Some(r) => r.add_bypass(peer).await,
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

    /// `peer` has a live SA: its cleartext is dropped from now on.
    pub async fn private(&self, peer: IpAddr) -> Result<(), NftError> {
        self.nft(move |e| e.add_private_peer(peer)).await
    }

    /// `peer`'s last SA is gone: its cleartext is accepted again.
    pub async fn private_ended(&self, peer: IpAddr) -> Result<(), NftError> {
        self.nft(move |e| e.remove_private_peer(peer)).await
    }

    async fn nft(&self, f: impl FnOnce(&Enforcer) -> Result<(), NftError>) -> Result<(), NftError> {
        match &self.enforcer {
            // Short `nft` runs; rare (once per SA, not per packet).
            Some(e) => tokio::task::block_in_place(|| f(e)),
            None => Ok(()),
        }
    }

    /// Removes everything (at exit).
    pub async fn teardown(mut self) {
        if let Some(e) = self.enforcer.take() {
            e.teardown();
        }
        if let Some(r) = self.routing.lock().await.take() {
            r.teardown().await;
        }
    }
}

/// The destination address of an IPv4 or IPv6 packet.
// TODO(integration): use core's IP packet helpers once they exist.
pub fn ip_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[192, 0, 2, 20]);
        assert_eq!(ip_destination(&v4), Some("192.0.2.20".parse().unwrap()));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24] = 0x20;
        v6[25] = 0x01;
        assert_eq!(ip_destination(&v6), Some("2001::".parse().unwrap()));
        assert_eq!(ip_destination(&[0x45, 0]), None);
        assert_eq!(ip_destination(&[]), None);
    }
}

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
//! - [`udp_loop`] (UDP 500 and 4500): IKE messages go to the control plane,
//!   which owns core's IKE endpoint; ESP finds its SA by SPI, is checked
//!   against replay, decrypted in place, its inner packet checked against the
//!   SA's traffic selectors and written to the TUN, one flush per batch.
//!   Every refusal is counted, none stops the loop.
//! - [`KernelActions`]: outcomes change kernel state — a clear outcome adds a
//!   bypass route, a private one adds the peer to the nftables set, and expiry
//!   undoes either.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use oemesh_core::esp::{DecapError, peek_spi};
use oemesh_core::ike::cookie;
use oemesh_core::ike::udp_encap::{self, Datagram};
use tokio::sync::Mutex;

use crate::datapath::gso::GsoBatch;
use crate::datapath::sa_table::OpenError;
use crate::datapath::{DataPath, IkeDatagram};
use crate::metrics::PacketOutcome;
use crate::net::nft::{Enforcer, NftError};
use crate::net::routes::{RouteError, Routing};
use crate::net::tun::{TunReader, TunWriter};
use crate::net::udp::UdpEndpoint;

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
    let port = endpoint.port();
    loop {
        if let Err(e) = endpoint.recv(&mut batch).await {
            // ICMP errors reported on the socket (a peer without IKE) are not ours to die of.
            if transient(&e) {
                tracing::debug!("UDP {port}: {e}");
                continue;
            }
            return Err(e);
        }
        for d in batch.datagrams_mut() {
            let kind = if natt {
                udp_encap::classify(d.data)
            } else {
                Datagram::Ike(d.data)
            };
            match kind {
                Datagram::Ike(message) => {
                    // The last quarter of the queue is kept for messages
                    // that are not plain IKE_SA_INIT requests (a spoofed
                    // flood's), so that IKE_AUTH and requests with a
                    // cookie still get in while a flood is being shed.
                    let reserve = dp.ike.max_capacity() / 4;
                    let shed = dp.ike.capacity() < reserve && cookie::sheddable(message);
                    let local = SocketAddr::new(d.to.unwrap_or(dp.address), port);
                    let queued = !shed
                        && dp
                            .ike
                            .try_send(IkeDatagram {
                                local,
                                remote: d.from,
                                message: message.to_vec(),
                            })
                            .is_ok();
                    if !queued {
                        tracing::trace!(from = %d.from, "IKE dropped: control plane busy");
                        dp.metrics.ike_queue_drop();
                        dp.metrics.packet(PacketOutcome::Dropped, d.data.len());
                    }
                }
                Datagram::Esp(_) => inbound_esp(&dp, d.from, d.data, &mut tun),
                Datagram::Keepalive => {}
                Datagram::Invalid => dp.metrics.packet(PacketOutcome::Dropped, d.data.len()),
            }
        }
        tun.flush().await?;
    }
}

fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        WouldBlock
            | Interrupted
            | ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
    )
}

/// One ESP packet: SA by SPI, replay check and decryption in place, traffic
/// selector check, then into the TUN batch.
fn inbound_esp(dp: &DataPath, from: SocketAddr, data: &mut [u8], tun: &mut TunWriter) {
    let len = data.len();
    let Some(sa) = peek_spi(data).and_then(|spi| dp.sas.inbound(spi)) else {
        tracing::trace!(%from, "ESP with unknown SPI");
        dp.metrics.esp_unknown_spi();
        dp.metrics.packet(PacketOutcome::Dropped, len);
        return;
    };
    match sa.open(data) {
        Ok(inner) => {
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

    /// Peers that got live SAs: their cleartext is dropped from now on. One
    /// nftables transaction (over netlink) for all of them.
    pub async fn private_all(&self, peers: &[IpAddr]) -> Result<(), NftError> {
        self.nft(move |e| e.add_private_peers(peers)).await
    }

    /// `peer`'s last SA is gone: its cleartext is accepted again.
    pub async fn private_ended(&self, peer: IpAddr) -> Result<(), NftError> {
        self.nft(move |e| e.remove_private_peer(peer)).await
    }

    async fn nft(&self, f: impl FnOnce(&Enforcer) -> Result<(), NftError>) -> Result<(), NftError> {
        match &self.enforcer {
            // One netlink round trip to the kernel (tens of microseconds),
            // once per control-plane round with new SAs, never per packet:
            // cheaper done inline than handed to a blocking thread.
            Some(e) => f(e),
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

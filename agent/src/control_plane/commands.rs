//! Carrying out the node's [`Command`]s: sockets, the SA table, the outcome
//! cache, routes, nftables, DNS tasks, logs and metrics.

use std::net::IpAddr;
use std::time::Instant;

use oemesh_core::ike::endpoint::{ChildSa, SaHandle, Transmit};
use oemesh_core::oe::node::{Level, Note, esp_sas};
use oemesh_core::oe::{Command, State};

use super::ControlPlane;
use crate::datapath::sa_table::{Install, Translation};
use crate::metrics::PacketOutcome;

fn log(note: &Note) {
    match note.level() {
        Level::Debug => tracing::debug!("{note}"),
        Level::Info => tracing::info!("{note}"),
        Level::Warn => tracing::warn!("{note}"),
    }
}

impl ControlPlane {
    pub(super) async fn on_command(&mut self, command: Command) {
        match command {
            Command::Transmit(t) => self.transmit(t).await,
            Command::LookupKey { name } => self.lookups.key(name),
            Command::CancelLookup { name } => self.lookups.cancel(&name),
            Command::LookupAddress { name, addr } => self.lookups.address(name, addr),
            Command::Track { sa, peer } => {
                let span = tracing::info_span!("ike", peer = %peer, sa = sa.0, spi = tracing::field::Empty);
                self.spans.insert(sa, span);
            }
            Command::Forget { sa } => drop(self.spans.remove(&sa)),
            Command::Log { sa: Some(sa), note } => self.in_span(sa, || log(&note)),
            Command::Log { sa: None, note } => log(&note),
            Command::Handshake { took } => self.dp.metrics.handshake(took),
            Command::InstallChild {
                sa,
                dst,
                child,
                publish,
            } => self.install(sa, dst, child, publish).await,
            Command::MovePeer { sa, remote } => self.dp.move_peer(sa, remote),
            Command::PublishOutbound { dst } => {
                if let Some(out) = self.unpublished.remove(&dst) {
                    self.dp.sas.publish(out);
                }
            }
            Command::RemoveChild { inbound_spi } => {
                self.unpublished.retain(|_, o| o.inbound_spi != inbound_spi);
                let (inb, out) = self.dp.sas.remove_pair(inbound_spi);
                let peer = inb.as_ref().map(|i| i.peer).or(out.as_ref().map(|o| o.dst));
                if let Some(peer) = peer {
                    let t = self.traffic.entry(peer).or_default();
                    t.0 += inb.map_or(0, |i| i.counters().1);
                    t.1 += out.map_or(0, |o| o.counters().1);
                }
            }
            Command::SendHeld { dst, mut packets } => {
                for packet in packets.drain() {
                    self.send_private(dst, &packet).await;
                }
                self.node.recycle(packets);
            }
            Command::SendClear { mut packets } => {
                for packet in packets.drain() {
                    self.dp.send_clear(&packet);
                }
                self.node.recycle(packets);
            }
            Command::Dropped { packets } => {
                let n = packets as u64;
                self.dp.metrics.packets(PacketOutcome::Dropped, n, 0);
            }
            Command::Bypass { dst } => self.kernel.bypass(dst).await,
            Command::Unbypass { dst } => drop(self.kernel.unbypass(dst).await),
            Command::Decided { outcome } => {
                // Info, or warn for blocks, downgrades and peers that publish
                // a key but went clear.
                if outcome.is_warning() {
                    tracing::warn!("{outcome}");
                } else {
                    tracing::info!("{outcome}");
                }
                self.dp.metrics.decision(outcome.cause.label());
            }
            Command::CacheOutcome { outcome } => self.dp.outcomes.insert(outcome),
            Command::OutcomeExpired { dst } => {
                if self.dp.outcomes.state(dst) == Some(State::Clear) {
                    return; // decided again meanwhile, with a later expiry
                }
                self.dp.outcomes.remove(dst);
                if self.kernel.unbypass(dst).await {
                    tracing::debug!("{dst}: clear outcome expired; the next packet decides again");
                }
            }
            Command::ForgetOutcome { dst } => {
                self.dp.outcomes.remove(dst);
                self.kernel.unbypass(dst).await;
            }
            Command::PrivateEnded { dst } => {
                if self.dp.outcomes.state(dst) == Some(State::Private) {
                    self.dp.outcomes.remove(dst);
                    tracing::info!(
                        "{dst}: no SA left → private ended; the next packet decides again"
                    );
                }
            }
            Command::SetPrivatePeers { added, removed } => {
                if !added.is_empty() {
                    self.kernel.private_all(&added);
                }
                if !removed.is_empty() {
                    self.kernel.private_ended_all(&removed);
                }
            }
        }
    }

    pub(super) async fn transmit(&self, t: Transmit) {
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

    /// Seals one packet with `dst`'s outbound SA and sends it (held packets and
    /// stragglers: not the hot path, which is the TUN workers').
    pub(super) async fn send_private(&mut self, dst: IpAddr, packet: &[u8]) {
        let Some(sa) = self
            .dp
            .sas
            .outbound(dst)
            .or_else(|| self.unpublished.get(&dst).cloned())
        else {
            self.dp.metrics.packet(PacketOutcome::Dropped, packet.len());
            return;
        };
        self.dp.send_sealed(&sa, packet, &mut self.scratch).await;
    }

    /// Installs a CHILD SA pair for `dst`; see `SaTable::install` for `publish`.
    /// Then opens the ESP that overtook the IKE_AUTH response (`datapath::parked`).
    async fn install(&mut self, sa: SaHandle, dst: IpAddr, child: ChildSa, publish: bool) {
        let spi = child.spis.inbound;
        let (outbound, inbound) = esp_sas(&child, Instant::now());
        if let Some(span) = self.spans.get(&sa) {
            span.record("spi", format!("{:08x}", child.spis.inbound));
        }
        let own = self.dp.own_address(child.local.ip());
        let install = Install {
            sa,
            dst,
            outbound,
            inbound,
            local_ts: child.local_ts,
            remote_ts: child.remote_ts,
            local: child.local,
            remote: child.remote,
            translate: Translation::of(child.local_vip, child.local.ip(), own),
            floats: child.peer_behind_nat,
        };
        let out = self.dp.sas.install(install, publish);
        if !publish {
            self.unpublished.insert(dst, out);
        }
        let n = crate::datapath::parked::open_into(&self.dp, spi, &mut self.tun);
        if n > 0 && self.tun.flush().await.is_err() {
            tracing::debug!("TUN: {n} parked ESP datagram(s) not written");
        }
    }
}

//! Handling the IKE engine's [`Event`]s: CHILD SAs into the data path, IKE
//! results into the decision machine, one span per IKE SA for the logs.

use std::net::IpAddr;
use std::time::Instant;

use oemesh_core::crypto::Provider;
use oemesh_core::esp::{InboundSa, LifetimeLimits, Limits, OutboundSa, SaConfig};
use oemesh_core::ike::endpoint::{ChildSa, Event, Failure, PeerAuthenticated, SaHandle};
use oemesh_core::oe::IkeResult;

use super::{ControlPlane, SaInfo};
use crate::datapath::ip::single_host;
use crate::datapath::sa_table::Install;

/// The data path's limits: bytes and packets only. Time limits are the IKE
/// engine's (it rekeys at the soft one and deletes at the hard one itself).
fn data_limits(l: &LifetimeLimits) -> LifetimeLimits {
    let strip = |l: &Limits| Limits { time: None, ..*l };
    LifetimeLimits {
        soft: strip(&l.soft),
        hard: strip(&l.hard),
    }
}

impl ControlPlane {
    pub(super) async fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            // The peer's key is looked up now, not after its IKE_AUTH arrives.
            Event::IkeSaInitAccepted { remote, .. } => self.machine.on_ike_init(now, remote.ip()),
            Event::AuthorizePeer {
                sa,
                remote,
                id,
                null_auth,
            } => {
                let span = tracing::info_span!("ike", peer = %remote.ip(), sa = sa.0, spi = tracing::field::Empty);
                span.in_scope(|| {
                    tracing::debug!(
                        "IKE_AUTH from {remote} as {id:?}{}",
                        if null_auth { " (AUTH NULL)" } else { "" }
                    );
                });
                self.sas.insert(
                    sa,
                    SaInfo {
                        span,
                        anonymous: null_auth,
                        dnssec: false,
                        lookup_failed: false,
                        dst: None,
                    },
                );
                self.machine
                    .on_ike_request(now, sa.0, remote.ip(), &id, null_auth);
            }
            Event::IkeSaEstablished {
                sa,
                remote,
                peer_id,
                auth,
                initiator,
            } => {
                let anonymous = auth == PeerAuthenticated::Null;
                if let Some(info) = self.sas.get_mut(&sa) {
                    info.anonymous = anonymous;
                }
                if initiator && let Some(a) = self.attempts.get(&sa) {
                    self.dp
                        .metrics
                        .handshake(now.saturating_duration_since(a.started));
                }
                self.in_span(sa, || {
                    tracing::info!(
                        "IKE SA established with {remote} ({peer_id:?}, {}, {})",
                        if anonymous { "AUTH NULL" } else { "Ed25519" },
                        if initiator { "initiator" } else { "responder" }
                    );
                });
            }
            Event::ConfirmIdentity { sa, remote, name } => {
                self.in_span(sa, || {
                    tracing::debug!("{remote} signed as {name}: checking that it resolves there");
                });
                self.machine.on_identity_check(now, sa.0, remote.ip(), name);
            }
            Event::ChildSaEstablished { sa, child } => {
                let dst = self.install(sa, child, None, false);
                self.child_established(now, sa, dst).await;
            }
            Event::ChildSaRekeyed { sa, old, new } => {
                let dst = self.dp.sas.inbound(old.inbound).map(|i| i.peer);
                let dst = self.install(sa, new, dst, true);
                self.machine.remember_private(now, dst);
                self.in_span(sa, || {
                    tracing::info!("CHILD SA rekeyed (old inbound SPI {:#010x})", old.inbound);
                });
            }
            Event::ChildSaDeleted { sa, spis } => {
                self.unpublished
                    .retain(|_, o| o.inbound_spi != spis.inbound);
                let (inb, out) = self.dp.sas.remove_pair(spis.inbound);
                let peer = inb.as_ref().map(|i| i.peer).or(out.as_ref().map(|o| o.dst));
                if let Some(peer) = peer {
                    let t = self.traffic.entry(peer).or_default();
                    t.0 += inb.map_or(0, |i| i.counters().1);
                    t.1 += out.map_or(0, |o| o.counters().1);
                    self.in_span(sa, || {
                        tracing::debug!("CHILD SA {:#010x} deleted", spis.inbound);
                    });
                    self.private_gone(peer).await;
                }
            }
            Event::IkeSaRekeyed { sa } => {
                if let Some(dst) = self.sas.get(&sa).and_then(|i| i.dst) {
                    self.machine.remember_private(now, dst);
                }
                self.in_span(sa, || tracing::info!("IKE SA rekeyed"));
            }
            Event::IkeSaDeleted { sa, reason } => {
                self.in_span(sa, || tracing::info!("IKE SA deleted: {reason}"));
                self.machine.cancel_request(sa.0);
                self.activity.remove(&sa);
                if let Some(a) = self.attempts.remove(&sa) {
                    let result = IkeResult::Failed {
                        reason: reason.to_string(),
                    };
                    self.machine.on_ike_result(now, a.dst, a.peer_addr, result);
                }
                if let Some(dst) = self.sas.remove(&sa).and_then(|i| i.dst) {
                    self.private_gone(dst).await;
                }
            }
            Event::Failed { sa, remote, reason } => {
                self.in_span(sa, || tracing::info!("IKE with {remote} failed: {reason}"));
                if let Some(a) = self.attempts.remove(&sa) {
                    self.sas.remove(&sa);
                    let result = match reason {
                        Failure::Timeout { .. } => IkeResult::TimedOut,
                        other => IkeResult::Failed {
                            reason: other.to_string(),
                        },
                    };
                    self.machine.on_ike_result(now, a.dst, a.peer_addr, result);
                }
            }
        }
    }

    /// Installs a CHILD SA pair; returns the destination it protects.
    /// Installs a CHILD SA pair for `dst`; see `SaTable::install` for `publish`.
    fn install(
        &mut self,
        sa: SaHandle,
        child: ChildSa,
        dst: Option<IpAddr>,
        publish: bool,
    ) -> IpAddr {
        let dst = dst
            .or_else(|| self.attempts.get(&sa).map(|a| a.dst))
            .or_else(|| self.sas.get(&sa).and_then(|i| i.dst))
            .or_else(|| single_host(&child.remote_ts))
            .unwrap_or(child.remote.ip());
        let limits = data_limits(&child.lifetime);
        let config = |spi| SaConfig {
            spi,
            alg: child.alg,
            provider: Provider::default(),
            esn: child.esn,
            limits,
        };
        let now = Instant::now();
        let outbound = OutboundSa::new(config(child.spis.outbound), &child.outbound_key, now);
        let inbound = InboundSa::new(config(child.spis.inbound), &child.inbound_key, now);
        if let Some(info) = self.sas.get_mut(&sa) {
            info.dst = Some(dst);
            info.span
                .record("spi", format!("{:08x}", child.spis.inbound));
        }
        self.in_span(sa, || {
            tracing::debug!(
                "ESP SA pair for {dst}: in {:#010x}, out {:#010x} to {} ({:?}{})",
                child.spis.inbound,
                child.spis.outbound,
                child.remote,
                child.alg,
                if child.esn { ", ESN" } else { "" }
            );
        });
        let out = self.dp.sas.install(
            Install {
                sa,
                dst,
                outbound,
                inbound,
                local_ts: child.local_ts,
                remote_ts: child.remote_ts,
                local: child.local,
                remote: child.remote,
            },
            publish,
        );
        if !publish {
            self.unpublished.insert(dst, out);
        }
        dst
    }

    /// The first CHILD SA of an IKE SA is in: the peer is private (nftables),
    /// and the machine decides `dst` (sending its held packets encrypted).
    async fn child_established(&mut self, now: Instant, sa: SaHandle, dst: IpAddr) {
        let (anonymous, mut dnssec, lookup_failed) =
            self.sas.get(&sa).map_or((true, false, false), |i| {
                (i.anonymous, i.dnssec, i.lookup_failed)
            });
        let peer_addr = match self.attempts.remove(&sa) {
            Some(a) => {
                dnssec = a.dnssec;
                a.peer_addr
            }
            None => self.dp.sas.outbound(dst).map_or(dst, |o| o.remote.ip()),
        };
        self.machine.on_ike_result(
            now,
            dst,
            peer_addr,
            IkeResult::Established {
                anonymous,
                dnssec,
                lookup_failed,
            },
        );
        // The held packets go out first (the machine's `Private` action), and
        // only then may the TUN loop seal new ones with this SA: in order.
        while let Some(action) = self.machine.poll_action() {
            self.on_action(action).await;
        }
        if let Some(out) = self.unpublished.remove(&dst) {
            self.dp.sas.publish(out);
        }
        // A peer is in at most one of the two lists (the set worker keeps
        // their order and names each peer once per transaction).
        self.ended_private.retain(|p| *p != dst);
        self.newly_private.push(dst);
    }

    /// An SA of `peer` went away: if none is left, so is its private outcome
    /// (the next packet decides again) and its nftables entry.
    async fn private_gone(&mut self, peer: IpAddr) {
        if self.dp.sas.serves(peer) {
            return;
        }
        self.machine.on_private_ended(Instant::now(), peer);
        if self.dp.outcomes.state(peer) == Some(oemesh_core::oe::State::Private) {
            self.dp.outcomes.remove(peer);
            tracing::info!("{peer}: no SA left → private ended; the next packet decides again");
        }
        // Out of the nftables set at the end of the round, with the others.
        self.newly_private.retain(|p| *p != peer);
        self.ended_private.push(peer);
    }
}

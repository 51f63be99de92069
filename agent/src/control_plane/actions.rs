//! Carrying out the decision machine's [`Action`]s.

use std::net::IpAddr;
use std::time::Instant;

use oemesh_core::crypto::ed25519::Ed25519PublicKey;
use oemesh_core::ike::endpoint::{PeerAuth, SaHandle, TrafficSelectors};
use oemesh_core::ike::message::AddrSelector;
use oemesh_core::oe::{Action, Cause, IkeResult, NoKey, Outcome, PeerAnswer, PeerKey};

use super::{Attempt, ControlPlane, SaInfo};
use crate::metrics::PacketOutcome;

/// A short, stable label of what decided an outcome, for
/// `oemesh_decisions_total{reason=...}`.
pub(super) fn reason_label(cause: &Cause) -> &'static str {
    match cause {
        Cause::Policy => "policy",
        Cause::NoKey(NoKey::NoRecord(_)) => "no_ipseckey",
        Cause::NoKey(NoKey::Unusable(_)) => "unusable_ipseckey",
        Cause::DnsFailed(_) => "dns_failed",
        Cause::DnsTimeout(_) => "dns_timeout",
        Cause::Established { .. } => "ike_established",
        Cause::IkeFailed { attempts, .. } if attempts.iter().all(|a| a.reason.is_none()) => {
            "ike_timeout"
        }
        Cause::IkeFailed { .. } => "ike_failed",
        _ => "other",
    }
}

/// The decision log line: info, or warn for blocks, downgrades and peers
/// that publish a key but went clear ([`Outcome::is_warning`]).
pub(super) fn log_decision(outcome: &Outcome) {
    if outcome.is_warning() {
        tracing::warn!("{outcome}");
    } else {
        tracing::info!("{outcome}");
    }
}

impl ControlPlane {
    pub(super) async fn on_action(&mut self, action: Action) {
        let now = Instant::now();
        match action {
            Action::LookupKey { name, .. } => self.lookup(name),
            Action::CancelLookup { name } => {
                if let Some(task) = self.lookups.remove(&name) {
                    task.abort();
                }
            }
            Action::StartIke {
                dst,
                peer_addr,
                key,
                authenticated_by_dnssec,
                deadline,
            } => self.start_ike(now, dst, peer_addr, key, authenticated_by_dnssec, deadline),
            Action::CancelIke { dst, peer_addr } => {
                let found = self
                    .attempts
                    .iter()
                    .find(|(_, a)| a.dst == dst && a.peer_addr == peer_addr)
                    .map(|(h, _)| *h);
                if let Some(h) = found {
                    self.attempts.remove(&h);
                    self.endpoint.close(now, h);
                }
            }
            Action::Private {
                outcome,
                mut packets,
            } => {
                let dst = outcome.dst;
                self.decided(&outcome);
                for packet in packets.drain() {
                    self.send_private(dst, &packet).await;
                }
                self.machine.recycle(packets);
                if self.bypassed.remove(&dst)
                    && let Err(e) = self.kernel.clear_expired(dst).await
                {
                    tracing::error!("{dst}: removing the bypass route: {e}");
                }
                self.dp.outcomes.insert(outcome);
            }
            Action::PassClear {
                outcome,
                mut packets,
            } => {
                let dst = outcome.dst;
                self.decided(&outcome);
                match self.kernel.clear(dst).await {
                    Ok(()) => {
                        self.bypassed.insert(dst);
                    }
                    Err(e) => tracing::error!("{dst}: adding the bypass route: {e}"),
                }
                for packet in packets.iter() {
                    self.dp.send_clear(packet);
                }
                packets.drain().for_each(drop);
                self.machine.recycle(packets);
                if let Some(at) = outcome.expires_at {
                    self.expiries.insert((at, dst));
                }
                self.dp.outcomes.insert(outcome);
            }
            Action::Drop { outcome, dropped } => {
                self.decided(&outcome);
                self.dp
                    .metrics
                    .packets(PacketOutcome::Dropped, dropped as u64, 0);
                if let Some(at) = outcome.expires_at {
                    self.expiries.insert((at, outcome.dst));
                }
                self.dp.outcomes.insert(outcome);
            }
            Action::AnswerPeer {
                request,
                peer_addr,
                answer,
            } => self.answer_peer(now, SaHandle(request), peer_addr, answer),
            Action::LookupAddress { name, addr, .. } => self.lookup_address(name, addr),
            Action::IdentityChecked { request, result } => {
                let sa = SaHandle(request);
                let result = match result {
                    Ok(dnssec) => {
                        // The weaker of the key's and the name's DNSSEC status.
                        if let Some(a) = self.attempts.get_mut(&sa) {
                            a.dnssec &= dnssec;
                        }
                        if let Some(info) = self.sas.get_mut(&sa) {
                            info.dnssec &= dnssec;
                        }
                        Ok(())
                    }
                    Err(refused) => {
                        self.in_span(sa, || tracing::warn!("refusing the responder: {refused}"));
                        Err(refused)
                    }
                };
                self.endpoint.confirm_identity(now, sa, result);
            }
            other => tracing::debug!("unhandled decision action {other:?}"),
        }
    }

    /// Logs and counts a decision; the destination is no longer pending.
    fn decided(&mut self, outcome: &Outcome) {
        self.pending.remove(&outcome.dst);
        log_decision(outcome);
        self.dp.metrics.decision(reason_label(&outcome.cause));
    }

    /// Starts an IPSECKEY lookup; the answer comes back on `dns_rx`.
    fn lookup(&mut self, name: oemesh_core::ipseckey::DomainName) {
        let tx = self.dns_tx.clone();
        let Some(resolver) = self.resolver.clone() else {
            let failed = oemesh_core::oe::DnsResult::Failed {
                reason: "no DNS resolver configured".to_owned(),
            };
            let _ = tx.send((name, failed));
            return;
        };
        let owner = name.to_string();
        let key = name.clone();
        let started = std::time::Instant::now();
        // The query leaves now; the spawned task only waits for the answer.
        let sent = resolver.send_query(&owner);
        let task = tokio::spawn(async move {
            let result = match sent {
                Ok(q) => resolver.answer(q).await,
                Err(e) => {
                    tracing::debug!("{owner}: IPSECKEY query over UDP: {e}; through the pool");
                    resolver.lookup_name(&owner).await
                }
            }
            .into_dns_result();
            tracing::debug!(
                "{owner}: IPSECKEY lookup answered in {:.2} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
            let _ = tx.send((name, result));
        });
        if let Some(old) = self.lookups.insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    /// Starts an A/AAAA lookup of an FQDN identity; the answer comes back on `addr_rx`.
    fn lookup_address(&mut self, name: oemesh_core::ipseckey::DomainName, addr: IpAddr) {
        let tx = self.addr_tx.clone();
        let Some(resolver) = self.resolver.clone() else {
            let failed = oemesh_core::oe::AddressResult::Failed {
                reason: "no DNS resolver configured".to_owned(),
            };
            let _ = tx.send((name, addr, failed));
            return;
        };
        tokio::spawn(async move {
            let result = resolver
                .lookup_addresses(&name.to_string(), addr.is_ipv4())
                .await;
            let _ = tx.send((name, addr, result));
        });
    }

    fn start_ike(
        &mut self,
        now: Instant,
        dst: IpAddr,
        peer_addr: IpAddr,
        key: PeerKey,
        dnssec: bool,
        deadline: Instant,
    ) {
        let local = self.settings.address;
        let peer = match key {
            PeerKey::Ed25519(keys) => {
                let parsed: Result<Vec<_>, _> = keys
                    .iter()
                    .map(|k| Ed25519PublicKey::from_slice(k))
                    .collect();
                match parsed {
                    Ok(keys) => PeerAuth::Ed25519(keys),
                    Err(e) => {
                        let reason = format!("an IPSECKEY is not a valid Ed25519 key: {e}");
                        return self.machine.on_ike_result(
                            now,
                            dst,
                            peer_addr,
                            IkeResult::Failed { reason },
                        );
                    }
                }
            }
            PeerKey::Null => PeerAuth::Null,
        };
        if local.is_ipv4() != peer_addr.is_ipv4() {
            let reason = format!("this host has no address of {peer_addr}'s family");
            return self
                .machine
                .on_ike_result(now, dst, peer_addr, IkeResult::Failed { reason });
        }
        let ts = TrafficSelectors {
            local: vec![AddrSelector::host(local)],
            remote: vec![AddrSelector::host(dst)],
        };
        let anonymous = matches!(peer, PeerAuth::Null);
        let handle = self
            .endpoint
            .connect(now, local, peer_addr, Some(peer), ts, deadline);
        let span = tracing::info_span!("ike", peer = %peer_addr, sa = handle.0, spi = tracing::field::Empty);
        span.in_scope(|| {
            tracing::debug!(
                "IKE_SA_INIT to {peer_addr} for {dst} ({})",
                if anonymous {
                    "AUTH NULL"
                } else {
                    "Ed25519 key from DNS"
                }
            );
        });
        self.sas.insert(
            handle,
            SaInfo {
                span,
                anonymous,
                dnssec,
                lookup_failed: false,
                dst: Some(dst),
            },
        );
        self.attempts.insert(
            handle,
            Attempt {
                dst,
                peer_addr,
                started: now,
                dnssec,
            },
        );
    }

    fn answer_peer(&mut self, now: Instant, sa: SaHandle, peer_addr: IpAddr, answer: PeerAnswer) {
        let auth = match answer {
            PeerAnswer::Ed25519 { keys, dnssec } => {
                if let Some(info) = self.sas.get_mut(&sa) {
                    info.dnssec = dnssec;
                }
                // Every published key is a candidate (a rollover has two).
                let keys: Vec<Ed25519PublicKey> = keys
                    .iter()
                    .filter_map(|k| Ed25519PublicKey::from_slice(k).ok())
                    .collect();
                (!keys.is_empty()).then_some(PeerAuth::Ed25519(keys))
            }
            PeerAnswer::Anonymous { lookup_failed } => {
                if let Some(info) = self.sas.get_mut(&sa) {
                    info.lookup_failed = lookup_failed;
                }
                if lookup_failed {
                    self.in_span(sa, || {
                        tracing::warn!(
                            "accepting {peer_addr} as anonymous although the lookup of its key failed"
                        );
                    });
                }
                Some(PeerAuth::Null)
            }
            PeerAnswer::Refuse { reason } => {
                self.in_span(sa, || {
                    tracing::info!("refusing IKE from {peer_addr}: {reason}")
                });
                None
            }
            other => {
                tracing::debug!("unhandled peer answer {other:?}");
                None
            }
        };
        if auth.is_none() {
            self.sas.remove(&sa);
        }
        self.endpoint.authorize(now, sa, auth);
    }
}

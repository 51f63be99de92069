//! CREATE_CHILD_SA (RFC 7296 §1.3): rekeying CHILD SAs (§1.3.3) and the IKE SA
//! (§1.3.2), with the collision rules of §2.8.1 and §2.8.2.
//!
//! ```text
//! CHILD SA rekey:  HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  -->
//!                                        <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//! IKE SA rekey:    HDR, SK {SA, Ni, KEi}  -->  <--  HDR, SK {SA, Nr, KEr}
//! ```
//!
//! After a rekey the initiator of the rekey deletes the old SA (§2.8). A rekeyed
//! CHILD SA is announced with [`Event::ChildSaRekeyed`] on both sides; the old
//! pair stays until its [`Event::ChildSaDeleted`]. A rekeyed IKE SA keeps its
//! handle: the new SA takes over the CHILD SAs, the old one lingers only to be
//! deleted.
//!
//! Collisions: when both ends rekey the same SA at once, each answers the
//! other's request, so two new SAs exist. The one created by the exchange with
//! the lowest of the four nonces is redundant and is deleted by whoever
//! initiated that exchange; the initiator of the surviving exchange deletes the
//! old SA. Each side decides when its own request is answered (it then knows
//! all four nonces) and only then announces the survivor.

use std::time::{Duration, Instant};

use rand_core::RngCore;

use crate::crypto::x25519::X25519Secret;
use crate::ike::child_sa::{self, Child, ChildParams, ChildStatus, PeerRekey};
use crate::ike::endpoint::{ChildSpis, Endpoint, Event, Exchange, Failure, ProtocolError, Refusal};
use crate::ike::error::{RequestError, check_nonce};
use crate::ike::keys::{Side, Skeyseed};
use crate::ike::message::{
    ExchangeType, Ke, Message, Nonce, Notify, NotifyType, Payload, PayloadType, ProtocolId,
};
use crate::ike::sa::{Fate, IkeCrypto, IkeSa, Outstanding, Request, SaCore, State};
use crate::ike::sa_init::NONCE_LEN;
use crate::ike::{proposal, ts};

/// How long to wait before trying a refused rekey again (§2.25).
const RETRY: Duration = Duration::from_secs(2);

/// A rekey of a CHILD SA that this host started.
#[derive(Debug)]
pub(crate) struct RekeyChildRequest {
    old_inbound: u32,
    new_spi: u32,
    ni: Vec<u8>,
    dh: Option<X25519Secret>,
}

/// A rekey of the IKE SA that this host started.
#[derive(Debug)]
pub(crate) struct RekeyIkeRequest {
    new_spi: u64,
    ni: Vec<u8>,
    dh: X25519Secret,
}

/// The peer's rekey of the IKE SA that crossed ours: its nonces and the new
/// SA it made (in `sas`, retiring until the collision is decided).
#[derive(Debug)]
pub(crate) struct PeerIkeRekey {
    nonces: (Vec<u8>, Vec<u8>),
    sa_id: u64,
}

/// §2.8.1/§2.8.2: whether our exchange made the redundant SA, i.e. holds the
/// lowest of the four nonces.
fn ours_is_redundant(ours: (&[u8], &[u8]), theirs: (&[u8], &[u8])) -> bool {
    ours.0.min(ours.1) < theirs.0.min(theirs.1)
}

fn nonce_of(m: &Message) -> Option<&Vec<u8>> {
    match m.payload(PayloadType::NONCE) {
        Some(Payload::Nonce(Nonce(n))) => Some(n),
        _ => None,
    }
}

fn ke_of(m: &Message) -> Option<&Ke> {
    match m.payload(PayloadType::KE) {
        Some(Payload::Ke(k)) => Some(k),
        _ => None,
    }
}

fn selectors(m: &Message, ty: PayloadType) -> Option<Vec<crate::ike::message::AddrSelector>> {
    match m.payload(ty) {
        Some(Payload::TsI(t) | Payload::TsR(t)) => Some(ts::addr_selectors(t)),
        _ => None,
    }
}

fn error_notify(m: &Message) -> Option<NotifyType> {
    m.notifies().find(|n| n.is_error()).map(|n| n.ty)
}

impl Endpoint {
    fn random_nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut n);
        n
    }

    fn random_dh(&mut self) -> X25519Secret {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        X25519Secret::from_random(s)
    }

    /// Starts rekeying the CHILD SA with inbound SPI `spi` (§1.3.3).
    pub(crate) fn start_rekey_child(&mut self, now: Instant, sa: &mut IkeSa, spi: u32) {
        let Some(i) = sa.child_by_inbound(spi) else {
            return;
        };
        if sa.children[i].status != ChildStatus::Live || !sa.children[i].announced {
            return;
        }
        sa.children[i].status = ChildStatus::Rekeying;
        let new_spi = self.new_child_spi();
        let ni = self.random_nonce();
        let dh = self.config.pfs.then(|| self.random_dh());
        let child = &sa.children[i];
        let mut payloads = vec![
            Payload::Notify(Notify::with_spi(
                ProtocolId::ESP,
                spi.to_be_bytes().to_vec(),
                NotifyType::REKEY_SA,
                vec![],
            )),
            Payload::Sa(proposal::esp_offer(
                &self.config.esp_algs,
                new_spi,
                dh.is_some(),
            )),
            Payload::Nonce(Nonce(ni.clone())),
        ];
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke(Ke {
                group: proposal::GROUP,
                data: dh.public_key().to_vec(),
            }));
        }
        payloads.push(Payload::TsI(ts::to_payload(&child.local_ts)));
        payloads.push(Payload::TsR(ts::to_payload(&child.remote_ts)));
        let request = Request::RekeyChild(Box::new(RekeyChildRequest {
            old_inbound: spi,
            new_spi,
            ni,
            dh,
        }));
        let timer = self.request_timer(now, None);
        let t = sa.send_request(ExchangeType::CREATE_CHILD_SA, &payloads, request, timer);
        self.out.transmits.push_back(t);
    }

    /// Starts rekeying the IKE SA (§1.3.2).
    pub(crate) fn start_rekey_ike(&mut self, now: Instant, sa: &mut IkeSa) {
        let new_spi = self.new_ike_spi();
        let ni = self.random_nonce();
        let dh = self.random_dh();
        let payloads = vec![
            Payload::Sa(proposal::ike_offer(&self.config.ike_algs, Some(new_spi))),
            Payload::Nonce(Nonce(ni.clone())),
            Payload::Ke(Ke {
                group: proposal::GROUP,
                data: dh.public_key().to_vec(),
            }),
        ];
        let timer = self.request_timer(now, None);
        let request = Request::RekeyIke(Box::new(RekeyIkeRequest { new_spi, ni, dh }));
        let t = sa.send_request(ExchangeType::CREATE_CHILD_SA, &payloads, request, timer);
        self.out.transmits.push_back(t);
    }

    /// The peer's CREATE_CHILD_SA request.
    pub(crate) fn on_create_child_sa_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        message: Message,
    ) -> Fate {
        let msg_id = message.header.message_id;
        let result = if matches!(sa.state, State::Retiring { .. }) {
            Err(RequestError::TemporaryFailure(
                "the IKE SA is being replaced",
            ))
        } else {
            let ike = matches!(message.payload(PayloadType::SA), Some(Payload::Sa(s)) if s.proposals.iter().any(|p| p.protocol == ProtocolId::IKE));
            if ike {
                self.answer_rekey_ike(now, sa, &message)
            } else if let Some(n) = message.notify(NotifyType::REKEY_SA) {
                let spi = <[u8; 4]>::try_from(n.spi.as_slice())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                self.answer_rekey_child(now, sa, &message, spi)
            } else {
                Err(RequestError::NoAdditionalSas)
            }
        };
        let payloads = match result {
            Ok(p) => p,
            Err(e) => e.to_notify().map(Payload::Notify).into_iter().collect(),
        };
        let t = sa.send_response(ExchangeType::CREATE_CHILD_SA, msg_id, &payloads);
        self.out.transmits.push_back(t);
        Fate::Keep
    }

    fn answer_rekey_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        m: &Message,
        spi: u32,
    ) -> Result<Vec<Payload>, RequestError> {
        let i = sa
            .child_by_outbound(spi)
            .ok_or(RequestError::ChildSaNotFound(spi))?;
        match sa.children[i].status {
            ChildStatus::Live | ChildStatus::Rekeying => {}
            ChildStatus::Rekeyed | ChildStatus::Deleting | ChildStatus::Redundant => {
                return Err(RequestError::TemporaryFailure(
                    "the CHILD SA is already being replaced or deleted",
                ));
            }
        }
        let Some(Payload::Sa(offer)) = m.payload(PayloadType::SA) else {
            return Err(RequestError::MissingPayload(PayloadType::SA));
        };
        let ni = nonce_of(m)
            .ok_or(RequestError::MissingPayload(PayloadType::NONCE))?
            .clone();
        check_nonce(&ni)?;
        let (Some(tsi), Some(tsr)) = (
            selectors(m, PayloadType::TSI),
            selectors(m, PayloadType::TSR),
        ) else {
            return Err(RequestError::MissingPayload(PayloadType::TSI));
        };
        let (tsi, tsr) = self
            .config
            .responder_ts
            .apply(&tsi, &tsr, sa.remote.ip(), sa.local.ip())
            .ok_or(RequestError::TsUnacceptable)?;
        let ke = ke_of(m);
        let new_spi = self.new_child_spi();
        let (answer, choice, peer_spi) = match proposal::select_esp(
            offer,
            &self.config.esp_algs,
            new_spi,
            ke.map(|k| k.group),
        ) {
            Ok(x) => x,
            Err(e) => {
                self.release_child_spi(new_spi);
                return Err(e);
            }
        };
        let mut ke_r = None;
        let g_ir = match (choice.pfs, ke) {
            (true, Some(ke)) => {
                let dh = self.random_dh();
                let g = dh.diffie_hellman(&ke.data).map_err(|e| {
                    self.release_child_spi(new_spi);
                    RequestError::KeyExchange(e)
                })?;
                ke_r = Some(Ke {
                    group: proposal::GROUP,
                    data: dh.public_key().to_vec(),
                });
                Some(g)
            }
            _ => None,
        };
        let nr = self.random_nonce();
        let Some(crypto) = sa.crypto.as_ref() else {
            return Err(RequestError::NoProposalChosen);
        };
        let params = ChildParams {
            spis: ChildSpis {
                inbound: new_spi,
                outbound: peer_spi,
            },
            choice,
            local_ts: tsr.clone(),
            remote_ts: tsi.clone(),
            local: sa.local,
            remote: sa.remote,
            natt_port: self.config.natt_port,
            lifetime: self.config.child_lifetime,
            sk_d: &crypto.sk_d,
        };
        let new = child_sa::keyed(params, Side::Responder, g_ir.as_ref(), &ni, &nr);
        let mut payloads = vec![Payload::Sa(answer), Payload::Nonce(Nonce(nr.clone()))];
        payloads.extend(ke_r.map(Payload::Ke));
        payloads.push(Payload::TsI(ts::to_payload(&tsi)));
        payloads.push(Payload::TsR(ts::to_payload(&tsr)));

        let jitter = self.rng.next_u32();
        let old = &mut sa.children[i];
        let old_spis = old.spis;
        if old.status == ChildStatus::Rekeying {
            // §2.8.1: our rekey of the same SA is outstanding; decide when it is answered.
            let tracked = Child::new(&new, now, jitter, false);
            old.peer_rekey = Some(Box::new(PeerRekey {
                nonces: (ni, nr),
                new,
            }));
            sa.children.push(tracked);
        } else {
            old.status = ChildStatus::Rekeyed;
            sa.children.push(Child::new(&new, now, jitter, true));
            self.out.events.push_back(Event::ChildSaRekeyed {
                sa: sa.handle,
                old: old_spis,
                new,
            });
        }
        Ok(payloads)
    }

    /// The answer to our CHILD SA rekey.
    pub(crate) fn on_rekey_child_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        r: RekeyChildRequest,
        m: Message,
    ) -> Fate {
        let old_index = sa.child_by_inbound(r.old_inbound);
        let new = match self.rekeyed_child(sa, &r, &m) {
            Ok(new) => new,
            Err(reason) => {
                self.release_child_spi(r.new_spi);
                if let Some(i) = old_index {
                    let old = &mut sa.children[i];
                    if let Some(peer) = old.peer_rekey.take() {
                        // The peer's rekey of it went through: that one survives.
                        old.status = ChildStatus::Rekeyed;
                        let old_spis = old.spis;
                        self.announce_child(sa, old_spis, peer.new);
                        return Fate::Keep;
                    }
                    old.status = ChildStatus::Live;
                    old.rekey_at = Some(now + RETRY);
                }
                self.out.events.push_back(Event::Failed {
                    sa: sa.handle,
                    remote: sa.remote,
                    reason,
                });
                return Fate::Keep;
            }
        };
        let jitter = self.rng.next_u32();
        let Some(i) = old_index else {
            // The old SA was deleted meanwhile: the new one stands on its own.
            sa.children.push(Child::new(&new, now, jitter, true));
            self.out.events.push_back(Event::ChildSaEstablished {
                sa: sa.handle,
                child: new,
            });
            return Fate::Keep;
        };
        let old = &mut sa.children[i];
        let old_spis = old.spis;
        old.status = ChildStatus::Rekeyed;
        let peer = old.peer_rekey.take();
        let ni = r.ni.clone();
        let nr = nonce_of(&m).cloned().unwrap_or_default();
        match peer {
            Some(peer) if ours_is_redundant((&ni, &nr), (&peer.nonces.0, &peer.nonces.1)) => {
                // Ours is redundant: delete it; the peer's survives and the peer deletes the old one.
                let mut tracked = Child::new(&new, now, jitter, false);
                tracked.status = ChildStatus::Redundant;
                let redundant = tracked.spis.inbound;
                sa.children.push(tracked);
                self.announce_child(sa, old_spis, peer.new);
                sa.queue
                    .push_back(crate::ike::sa::Queued::DeleteChild(redundant));
            }
            _ => {
                // Ours survives (the peer deletes its own if it made one); we delete the old one.
                sa.children.push(Child::new(&new, now, jitter, true));
                self.out.events.push_back(Event::ChildSaRekeyed {
                    sa: sa.handle,
                    old: old_spis,
                    new,
                });
                sa.queue
                    .push_back(crate::ike::sa::Queued::DeleteChild(r.old_inbound));
            }
        }
        Fate::Keep
    }

    /// Announces a CHILD SA that was tracked but held back.
    fn announce_child(
        &mut self,
        sa: &mut IkeSa,
        old: ChildSpis,
        new: crate::ike::endpoint::ChildSa,
    ) {
        if let Some(i) = sa.child_by_inbound(new.spis.inbound) {
            sa.children[i].announced = true;
        }
        self.out.events.push_back(Event::ChildSaRekeyed {
            sa: sa.handle,
            old,
            new,
        });
    }

    fn rekeyed_child(
        &mut self,
        sa: &IkeSa,
        r: &RekeyChildRequest,
        m: &Message,
    ) -> Result<crate::ike::endpoint::ChildSa, Failure> {
        if let Some(notify) = error_notify(m) {
            return Err(Failure::PeerRefused(Refusal::Notify {
                exchange: Exchange::RekeyChildSa,
                notify,
            }));
        }
        let Some(Payload::Sa(answer)) = m.payload(PayloadType::SA) else {
            return Err(Failure::missing(Exchange::RekeyChildSa, "SA"));
        };
        let (choice, peer_spi) =
            proposal::accept_esp(answer, &self.config.esp_algs, r.dh.is_some())?;
        let nr = nonce_of(m).ok_or_else(|| Failure::missing(Exchange::RekeyChildSa, "Nonce"))?;
        check_nonce(nr).map_err(|_| ProtocolError::NonceLength(nr.len()))?;
        let g_ir = match (choice.pfs, &r.dh, ke_of(m)) {
            (true, Some(dh), Some(ke)) => Some(
                dh.diffie_hellman(&ke.data)
                    .map_err(ProtocolError::KeyExchange)?,
            ),
            (true, _, _) => {
                return Err(ProtocolError::PfsWithoutKe.into());
            }
            _ => None,
        };
        let old = sa.child_by_inbound(r.old_inbound).map(|i| &sa.children[i]);
        let (Some(tsi), Some(tsr)) = (
            selectors(m, PayloadType::TSI),
            selectors(m, PayloadType::TSR),
        ) else {
            return Err(Failure::missing(Exchange::RekeyChildSa, "TSi/TSr"));
        };
        if let Some(old) = old
            && (!ts::is_subset(&tsi, &old.local_ts) || !ts::is_subset(&tsr, &old.remote_ts))
        {
            return Err(ProtocolError::RekeyedTsWider.into());
        }
        let Some(crypto) = sa.crypto.as_ref() else {
            return Err(ProtocolError::NoKeys.into());
        };
        let params = ChildParams {
            spis: ChildSpis {
                inbound: r.new_spi,
                outbound: peer_spi,
            },
            choice,
            local_ts: tsi,
            remote_ts: tsr,
            local: sa.local,
            remote: sa.remote,
            natt_port: self.config.natt_port,
            lifetime: self.config.child_lifetime,
            sk_d: &crypto.sk_d,
        };
        Ok(child_sa::keyed(
            params,
            Side::Initiator,
            g_ir.as_ref(),
            &r.ni,
            nr,
        ))
    }

    fn answer_rekey_ike(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        m: &Message,
    ) -> Result<Vec<Payload>, RequestError> {
        let ours_outstanding = matches!(
            sa.outstanding.as_deref(),
            Some(Outstanding {
                request: Request::RekeyIke(_),
                ..
            })
        );
        if sa.outstanding.is_some() && !ours_outstanding {
            // §2.25: CHILD SA exchanges in flight would lose their IKE SA.
            return Err(RequestError::TemporaryFailure(
                "another exchange is in progress",
            ));
        }
        if sa.children.iter().any(|c| c.peer_rekey.is_some()) {
            return Err(RequestError::TemporaryFailure(
                "a CHILD SA rekey collision is being settled",
            ));
        }
        let Some(Payload::Sa(offer)) = m.payload(PayloadType::SA) else {
            return Err(RequestError::MissingPayload(PayloadType::SA));
        };
        let ni = nonce_of(m)
            .ok_or(RequestError::MissingPayload(PayloadType::NONCE))?
            .clone();
        check_nonce(&ni)?;
        let ke = ke_of(m).ok_or(RequestError::MissingPayload(PayloadType::KE))?;
        let new_spi_r = self.new_ike_spi();
        let (answer, choice, peer_spi) =
            proposal::select_ike(offer, &self.config.ike_algs, Some(new_spi_r))?;
        if ke.group != proposal::GROUP {
            return Err(RequestError::InvalidKe {
                got: ke.group,
                wanted: proposal::GROUP,
            });
        }
        let new_spi_i = <[u8; 8]>::try_from(peer_spi.as_slice())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        if new_spi_i == 0 {
            return Err(RequestError::NoProposalChosen);
        }
        let dh = self.random_dh();
        let g_ir = dh
            .diffie_hellman(&ke.data)
            .map_err(RequestError::KeyExchange)?;
        let nr = self.random_nonce();
        let Some(old) = sa.crypto.as_ref() else {
            return Err(RequestError::NoProposalChosen);
        };
        // §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
        let keys = Skeyseed::rekey(&old.sk_d, &g_ir, &ni, &nr).ike_sa_keys(
            &ni,
            &nr,
            new_spi_i.to_be_bytes(),
            new_spi_r.to_be_bytes(),
        );
        let spis = (new_spi_i, new_spi_r);
        let mut new = self.new_sa(now, sa.handle, false, spis, (sa.local, sa.remote));
        new.crypto = Some(IkeCrypto::new(
            &keys,
            choice.alg,
            self.config.provider,
            false,
        ));
        new.peer_id = sa.peer_id.clone();
        new.inherit(sa);
        let payloads = vec![
            Payload::Sa(answer),
            Payload::Nonce(Nonce(nr.clone())),
            Payload::Ke(Ke {
                group: proposal::GROUP,
                data: dh.public_key().to_vec(),
            }),
        ];
        if ours_outstanding {
            // §2.8.2: decided when our own rekey is answered.
            let until = now + self.config.exchange_timeout;
            sa.peer_ike_rekey = Some(Box::new(PeerIkeRekey {
                nonces: (ni, nr),
                sa_id: new.id,
            }));
            self.by_spi.insert(new.local_spi(), new.id);
            self.put(Box::new(IkeSa {
                core: new,
                state: State::Retiring { until },
            }));
        } else {
            self.promote(now, sa, new);
            sa.state = State::Retiring {
                until: now + self.config.exchange_timeout,
            };
        }
        Ok(payloads)
    }

    /// The answer to our IKE SA rekey.
    pub(crate) fn on_rekey_ike_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        r: RekeyIkeRequest,
        m: Message,
    ) -> Fate {
        let peer = sa.peer_ike_rekey.take();
        let new = match self.rekeyed_ike(now, sa, &r, &m) {
            Ok(new) => new,
            Err(reason) => {
                if let Some(peer) = peer {
                    // The peer's rekey went through: its SA takes over; it deletes this one.
                    if let Some(cand) = self.sas.remove(&peer.sa_id) {
                        self.promote(now, sa, cand);
                        sa.state = State::Retiring {
                            until: now + self.config.exchange_timeout,
                        };
                    }
                    return Fate::Keep;
                }
                sa.rekey_at = Some(now + RETRY);
                self.out.events.push_back(Event::Failed {
                    sa: sa.handle,
                    remote: sa.remote,
                    reason,
                });
                return Fate::Keep;
            }
        };
        let nr = nonce_of(&m).cloned().unwrap_or_default();
        let until = now + self.config.exchange_timeout;
        match peer {
            Some(peer) if ours_is_redundant((&r.ni, &nr), (&peer.nonces.0, &peer.nonces.1)) => {
                // Ours is redundant: the peer's takes over, and we delete ours.
                let mut ours = IkeSa {
                    core: new,
                    state: State::Retiring { until },
                };
                let timer = self.request_timer(now, None);
                let t = ours.send_request(
                    ExchangeType::INFORMATIONAL,
                    &[Payload::Delete(crate::ike::message::Delete::ike())],
                    Request::DeleteIke,
                    timer,
                );
                self.out.transmits.push_back(t);
                self.by_spi.insert(ours.local_spi(), ours.id);
                self.put(Box::new(ours));
                if let Some(cand) = self.sas.remove(&peer.sa_id) {
                    self.promote(now, sa, cand);
                }
                sa.state = State::Retiring { until };
            }
            _ => {
                // Ours survives (a colliding one of the peer's is deleted by the peer); we delete the old SA.
                self.promote(now, sa, new);
                sa.state = State::Retiring { until };
                let timer = self.request_timer(now, None);
                let t = sa.send_request(
                    ExchangeType::INFORMATIONAL,
                    &[Payload::Delete(crate::ike::message::Delete::ike())],
                    Request::DeleteIke,
                    timer,
                );
                self.out.transmits.push_back(t);
            }
        }
        Fate::Keep
    }

    fn rekeyed_ike(
        &mut self,
        now: Instant,
        sa: &IkeSa,
        r: &RekeyIkeRequest,
        m: &Message,
    ) -> Result<SaCore, Failure> {
        if let Some(notify) = error_notify(m) {
            return Err(Failure::PeerRefused(Refusal::Notify {
                exchange: Exchange::RekeyIkeSa,
                notify,
            }));
        }
        let Some(Payload::Sa(answer)) = m.payload(PayloadType::SA) else {
            return Err(Failure::missing(Exchange::RekeyIkeSa, "SA"));
        };
        let (choice, spi) = proposal::accept_ike(answer, &self.config.ike_algs, 8)?;
        let spi_r = <[u8; 8]>::try_from(spi.as_slice())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let nr = nonce_of(m).ok_or_else(|| Failure::missing(Exchange::RekeyIkeSa, "Nonce"))?;
        check_nonce(nr).map_err(|_| ProtocolError::NonceLength(nr.len()))?;
        let ke = ke_of(m).ok_or_else(|| Failure::missing(Exchange::RekeyIkeSa, "KE"))?;
        if ke.group != proposal::GROUP || spi_r == 0 {
            return Err(ProtocolError::RekeyIkeKeOrSpi.into());
        }
        let g_ir =
            r.dh.diffie_hellman(&ke.data)
                .map_err(ProtocolError::KeyExchange)?;
        let Some(old) = sa.crypto.as_ref() else {
            return Err(ProtocolError::NoKeys.into());
        };
        let keys = Skeyseed::rekey(&old.sk_d, &g_ir, &r.ni, nr).ike_sa_keys(
            &r.ni,
            nr,
            r.new_spi.to_be_bytes(),
            spi_r.to_be_bytes(),
        );
        let mut new = self.new_sa(
            now,
            sa.handle,
            true,
            (r.new_spi, spi_r),
            (sa.local, sa.remote),
        );
        new.crypto = Some(IkeCrypto::new(
            &keys,
            choice.alg,
            self.config.provider,
            true,
        ));
        new.peer_id = sa.peer_id.clone();
        new.inherit(sa);
        Ok(new)
    }

    /// Makes `new` the IKE SA behind `old`'s handle: it takes the CHILD SAs,
    /// queued exchanges and timers (§2.18); `old` is left to be deleted.
    fn promote(&mut self, now: Instant, old: &mut IkeSa, new: impl Into<Box<IkeSa>>) {
        let mut new = new.into();
        new.handle = old.handle;
        new.children = std::mem::take(&mut old.children);
        new.queue = std::mem::take(&mut old.queue);
        new.peer_id = old.peer_id.clone();
        new.inherit(old);
        new.announced = old.announced;
        new.state = State::Established;
        new.last_heard = now;
        old.announced = false;
        old.rekey_at = None;
        old.hard_expiry = None;
        self.schedule_ike_rekey(now, &mut new);
        self.handles.insert(new.handle, new.id);
        self.by_spi.insert(new.local_spi(), new.id);
        self.out
            .events
            .push_back(Event::IkeSaRekeyed { sa: new.handle });
        self.start_next(now, &mut new);
        self.put(new);
    }
}

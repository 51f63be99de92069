//! CREATE_CHILD_SA rekeying a CHILD SA (RFC 7296 §1.3.3, §2.8, collisions
//! §2.8.1): starting one, answering the peer's, and taking the answer.
//!
//! ```text
//! HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  -->
//!                       <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//! ```

use crate::ike::sa::{IkeSa, RekeyChildRequest, Request};
use std::time::Instant;

use rand_core::RngCore;

use crate::ike::child_sa::{self, Child, ChildParams, ChildStatus, PeerRekey};
use crate::ike::endpoint::Endpoint;
use crate::ike::error::{RequestError, check_nonce};
use crate::ike::event::{ChildSpis, Event};
use crate::ike::failure::{Exchange, Failure, ProtocolError, Refusal};
use crate::ike::keys::Side;
use crate::ike::message::{
    ExchangeType, Ke, Message, Nonce, Notify, NotifyType, Payload, PayloadType, ProtocolId,
};
use crate::ike::state::Fate;
use crate::ike::{proposal, ts};

use super::{RETRY, error_notify, ke_of, nonce_of, ours_is_redundant, selectors};

impl Endpoint {
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

    pub(super) fn answer_rekey_child(
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
            .apply(
                &tsi,
                &tsr,
                (sa.ts_remote(), &sa.peer_ts),
                (sa.ts_local(), &self.config.protects),
            )
            .map(|(i, r)| (sa.without_peer_host(i), r))
            .filter(|(i, _)| !i.is_empty())
            .ok_or_else(|| {
                self.out.stats.ts_refused += 1;
                RequestError::TsUnacceptable
            })?;
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
            local_vip: sa.local_vip,
            peer_behind_nat: sa.peer_behind_nat,
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
    pub(super) fn announce_child(
        &mut self,
        sa: &mut IkeSa,
        old: ChildSpis,
        new: crate::ike::event::ChildSa,
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

    pub(super) fn rekeyed_child(
        &mut self,
        sa: &IkeSa,
        r: &RekeyChildRequest,
        m: &Message,
    ) -> Result<crate::ike::event::ChildSa, Failure> {
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
            local_vip: sa.local_vip,
            peer_behind_nat: sa.peer_behind_nat,
        };
        Ok(child_sa::keyed(
            params,
            Side::Initiator,
            g_ir.as_ref(),
            &r.ni,
            nr,
        ))
    }
}

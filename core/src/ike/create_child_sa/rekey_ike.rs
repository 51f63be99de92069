//! CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18, collisions
//! §2.8.2): starting one, answering the peer's, taking the answer, and the
//! new IKE SA taking over the old one's handle and CHILD SAs.
//!
//! ```text
//! HDR, SK {SA, Ni, KEi}  -->  <--  HDR, SK {SA, Nr, KEr}
//! ```

use crate::ike::sa::{
    IkeCrypto, IkeSa, Outstanding, PeerIkeRekey, RekeyIkeRequest, Request, SaCore,
};
use std::time::Instant;

use crate::ike::endpoint::Endpoint;
use crate::ike::error::{RequestError, check_nonce};
use crate::ike::event::Event;
use crate::ike::failure::{Exchange, Failure, ProtocolError, Refusal};
use crate::ike::keys::Skeyseed;
use crate::ike::message::{ExchangeType, Ke, Message, Nonce, Payload, PayloadType};
use crate::ike::proposal;
use crate::ike::state::{Fate, State};

use super::{RETRY, error_notify, ke_of, nonce_of, ours_is_redundant};

impl Endpoint {
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

    pub(super) fn answer_rekey_ike(
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

    pub(super) fn rekeyed_ike(
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
    pub(super) fn promote(&mut self, now: Instant, old: &mut IkeSa, new: impl Into<Box<IkeSa>>) {
        let mut new = new.into();
        new.handle = old.handle;
        new.children = std::mem::take(&mut old.children);
        new.queue = std::mem::take(&mut old.queue);
        new.peer_id = old.peer_id.clone();
        new.inherit(old);
        if let Some(a) = new.peer_vip {
            self.pool.transfer(a, old.id, new.id);
        }
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

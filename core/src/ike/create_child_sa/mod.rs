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
use crate::ike::endpoint::Endpoint;
use crate::ike::error::RequestError;
use crate::ike::keys::NONCE_LEN;
use crate::ike::message::{
    ExchangeType, Ke, Message, Nonce, NotifyType, Payload, PayloadType, ProtocolId,
};
use crate::ike::sa::IkeSa;
use crate::ike::state::{Fate, State};
use crate::ike::ts;

/// How long to wait before trying a refused rekey again (§2.25).
pub(super) const RETRY: Duration = Duration::from_secs(2);

/// §2.8.1/§2.8.2: whether our exchange made the redundant SA, i.e. holds the
/// lowest of the four nonces.
pub(super) fn ours_is_redundant(ours: (&[u8], &[u8]), theirs: (&[u8], &[u8])) -> bool {
    ours.0.min(ours.1) < theirs.0.min(theirs.1)
}

pub(super) fn nonce_of(m: &Message) -> Option<&Vec<u8>> {
    match m.payload(PayloadType::NONCE) {
        Some(Payload::Nonce(Nonce(n))) => Some(n),
        _ => None,
    }
}

pub(super) fn ke_of(m: &Message) -> Option<&Ke> {
    match m.payload(PayloadType::KE) {
        Some(Payload::Ke(k)) => Some(k),
        _ => None,
    }
}

pub(super) fn selectors(
    m: &Message,
    ty: PayloadType,
) -> Option<Vec<crate::ike::message::AddrSelector>> {
    match m.payload(ty) {
        Some(Payload::TsI(t) | Payload::TsR(t)) => Some(ts::addr_selectors(t)),
        _ => None,
    }
}

pub(super) fn error_notify(m: &Message) -> Option<NotifyType> {
    m.notifies().find(|n| n.is_error()).map(|n| n.ty)
}

mod rekey_child;
mod rekey_ike;

impl Endpoint {
    pub(super) fn random_nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut n);
        n
    }

    pub(super) fn random_dh(&mut self) -> X25519Secret {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        X25519Secret::from_random(s)
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
            Err(e) => {
                self.child_refused(&sa.core, &message, &e);
                e.to_notify().map(Payload::Notify).into_iter().collect()
            }
        };
        let t = sa.send_response(ExchangeType::CREATE_CHILD_SA, msg_id, &payloads);
        self.out.transmits.push_back(t);
        Fate::Keep
    }
}

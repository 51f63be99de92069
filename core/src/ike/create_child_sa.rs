//! CREATE_CHILD_SA (RFC 7296 §1.3): rekeying CHILD SAs and the IKE SA.
use std::time::Instant;

use crate::ike::endpoint::{Endpoint, Fate};
use crate::ike::message::Message;
use crate::ike::sa::IkeSa;

/// A rekey of a CHILD SA that this host started.
#[derive(Debug)]
pub(crate) struct RekeyChildRequest {}

/// A rekey of the IKE SA that this host started.
#[derive(Debug)]
pub(crate) struct RekeyIkeRequest {}

impl Endpoint {
    pub(crate) fn on_create_child_sa_request(&mut self, _now: Instant, _sa: &mut IkeSa, _message: Message) -> Fate {
        Fate::Keep
    }
    pub(crate) fn on_rekey_child_response(&mut self, _now: Instant, _sa: &mut IkeSa, _r: RekeyChildRequest, _m: Message) -> Fate {
        Fate::Keep
    }
    pub(crate) fn on_rekey_ike_response(&mut self, _now: Instant, _sa: &mut IkeSa, _r: RekeyIkeRequest, _m: Message) -> Fate {
        Fate::Keep
    }
    pub(crate) fn start_rekey_child(&mut self, _now: Instant, _sa: &mut IkeSa, _spi: u32) {}
    pub(crate) fn start_rekey_ike(&mut self, _now: Instant, _sa: &mut IkeSa) {}
}

//! INFORMATIONAL exchanges (RFC 7296 §1.4): deleting SAs and checking liveness.
//!
//! - `D(ESP, spis)`: the peer deletes CHILD SAs by its inbound SPIs; this host
//!   answers with the paired SPIs of its own side and removes them (§1.4.1).
//! - `D(IKE)`: the IKE SA and all its CHILD SAs are gone; the answer is empty.
//! - no payloads: a liveness check (dead peer detection), answered empty.
//!
//! Notifications this host does not act on are ignored (§3.10.1).

use std::time::Instant;

use crate::ike::child_sa::ChildStatus;
use crate::ike::endpoint::Endpoint;
use crate::ike::event::Event;
use crate::ike::failure::Failure;
use crate::ike::message::{Delete, ExchangeType, Message, Payload, ProtocolId};
use crate::ike::sa::{IkeSa, Request, SaCore};
use crate::ike::state::{Fate, State};

impl Endpoint {
    /// The peer's INFORMATIONAL request.
    pub(crate) fn on_informational_request(
        &mut self,
        _now: Instant,
        sa: &mut IkeSa,
        message: Message,
    ) -> Fate {
        let msg_id = message.header.message_id;
        let mut delete_ike = false;
        let mut ours = Vec::new();
        for p in &message.payloads {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                ProtocolId::IKE => delete_ike = true,
                ProtocolId::ESP => {
                    for spi in d.spis_u32().unwrap_or_default() {
                        let Some(i) = sa.child_by_outbound(spi) else {
                            continue;
                        };
                        let child = &sa.children[i];
                        // §1.4.1: if we are deleting it too, our request already names it.
                        if child.status != ChildStatus::Deleting {
                            ours.push(child.spis.inbound);
                        }
                        let inbound = child.spis.inbound;
                        self.remove_child(sa, inbound);
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            let t = sa.send_response(ExchangeType::INFORMATIONAL, msg_id, &[]);
            self.out.transmits.push_back(t);
            return match sa.state {
                State::Retiring { .. } => Fate::Remove(None),
                _ => Fate::Remove(Some(Failure::DeletedByPeer)),
            };
        }
        let payloads = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete::esp(&ours))]
        };
        let t = sa.send_response(ExchangeType::INFORMATIONAL, msg_id, &payloads);
        self.out.transmits.push_back(t);
        Fate::Keep
    }

    /// Starts deleting one CHILD SA (§1.4.1).
    pub(crate) fn start_delete_child(&mut self, now: Instant, sa: &mut IkeSa, inbound: u32) {
        let Some(i) = sa.child_by_inbound(inbound) else {
            return;
        };
        sa.children[i].status = ChildStatus::Deleting;
        let spis = sa.children[i].spis;
        let timer = self.request_timer(now, None);
        let t = sa.send_request(
            ExchangeType::INFORMATIONAL,
            &[Payload::Delete(Delete::esp(&[inbound]))],
            Request::DeleteChild(spis),
            timer,
        );
        self.out.transmits.push_back(t);
    }
}

impl Endpoint {
    /// Tells the peer the IKE SA is gone, once, without waiting for an answer.
    pub(crate) fn send_delete_ike_once(&mut self, sa: &mut SaCore) {
        let msg_id = sa.next_msg_id;
        sa.next_msg_id = sa.next_msg_id.wrapping_add(1);
        let header = sa.header(ExchangeType::INFORMATIONAL, false, msg_id);
        let datagram = sa.emit_sealed(&header, &[Payload::Delete(Delete::ike())]);
        let t = sa.transmit(datagram);
        self.out.transmits.push_back(t);
    }
    /// Removes a CHILD SA and tells the data path if it knew it.
    pub(crate) fn remove_child(&mut self, sa: &mut IkeSa, inbound: u32) {
        if let Some(i) = sa.child_by_inbound(inbound) {
            let child = sa.children.remove(i);
            // After a rekey the list is back to one or two: give the room back.
            sa.children.shrink_to_fit();
            self.child_spis.remove(&child.spis.inbound);
            if child.announced {
                self.out.events.push_back(Event::ChildSaDeleted {
                    sa: sa.handle,
                    spis: child.spis,
                });
            }
        }
    }
}

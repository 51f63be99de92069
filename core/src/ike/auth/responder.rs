//! IKE_AUTH, the responder's side (RFC 7296 §1.2, §2.15, §2.21.2): holding
//! the initiator's request until the caller names its key, verifying its
//! AUTH and identity, answering with IDr, AUTH and the first CHILD SA, or
//! with N(AUTHENTICATION_FAILED).

use crate::ike::state::{HalfOpen, ResponderAuthorize, State};
use std::net::SocketAddr;
use std::time::Instant;

use rand_core::RngCore;

use crate::ike::child_sa::{self, Child, ChildParams};
use crate::ike::config::{MAX_PEER_KEYS, MAX_VOUCHED, PeerAuth, Vouched};
use crate::ike::endpoint::Endpoint;
use crate::ike::endpoint::SaHandle;
use crate::ike::error::{AddressRefusal, RequestError};
use crate::ike::event::{ChildSpis, Event, PeerAuthenticated};
use crate::ike::keys::Side;
use crate::ike::message::{
    AuthMethod, CfgType, Cp, ExchangeType, Message, Notify, NotifyType, Payload, PayloadType,
};
use crate::ike::sa::SaCore;
use crate::ike::{proposal, ts};
use crate::trust::{self};

use super::{local_id, own_auth, ts_of, verify_auth_by};

impl Endpoint {
    /// Before [`Endpoint::authorize`] of a responder's peer: the subnets (or
    /// hosts) beyond the peer's own address that DNS vouches it may send
    /// from (gateway mode, issue 14). Its traffic selector is widened by
    /// those whose keys include the one it signed with; the rest are narrowed
    /// away. Keys are tried after those given to `authorize`, and all of them
    /// together at most [`MAX_PEER_KEYS`].
    pub fn vouch(&mut self, sa: SaHandle, vouched: Vec<Vouched>) {
        if let Some(ike) = self.handles.get(&sa).and_then(|id| self.sas.get_mut(id)) {
            ike.core.vouch_offers = vouched;
        }
    }

    /// Responder: the IKE_AUTH request (decrypted). Holds it and asks the caller.
    pub(crate) fn on_auth_request(
        &mut self,
        sa: &mut SaCore,
        half: HalfOpen,
        request: Message,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<State> {
        let msg_id = request.header.message_id;
        sa.peer_msg_id = msg_id.wrapping_add(1);
        // §2.23: the initiator may have moved to port 4500; answer where it is now.
        sa.local = local;
        sa.remote = remote;
        let (Some(Payload::IdI(id)), Some(Payload::Auth(auth))) = (
            request.payload(PayloadType::IDI),
            request.payload(PayloadType::AUTH),
        ) else {
            let n = RequestError::MissingPayload(PayloadType::AUTH).to_notify();
            let t = sa.send_response(
                ExchangeType::IKE_AUTH,
                msg_id,
                &n.map(Payload::Notify).into_iter().collect::<Vec<_>>(),
            );
            self.out.transmits.push_back(t);
            return None;
        };
        let ts_i = ts_of(&request, PayloadType::TSI)
            .unwrap_or_default()
            .into_iter()
            .take(MAX_VOUCHED)
            .collect();
        self.out.events.push_back(Event::AuthorizePeer {
            sa: sa.handle,
            remote,
            id: id.clone(),
            null_auth: auth.method == AuthMethod::NULL,
            ts_i,
        });
        let expires = half.expires;
        let mut held = ResponderAuthorize {
            half,
            request,
            msg_id,
        };
        held.half.expires = expires;
        Some(State::ResponderAuthorize(Box::new(held)))
    }

    /// Responder: the caller's answer. Returns whether the SA lives on.
    pub(crate) fn finish_responder(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        held: ResponderAuthorize,
        peer: Option<PeerAuth>,
    ) -> Option<State> {
        let ResponderAuthorize {
            half,
            request,
            msg_id,
        } = held;
        let refuse = |this: &mut Self, sa: &mut SaCore| {
            let n = Notify::new(NotifyType::AUTHENTICATION_FAILED, Vec::new());
            let t = sa.send_response(ExchangeType::IKE_AUTH, msg_id, &[Payload::Notify(n)]);
            this.out.transmits.push_back(t);
            None
        };
        let (Some(Payload::IdI(id)), Some(Payload::Auth(auth)), Some(crypto)) = (
            request.payload(PayloadType::IDI),
            request.payload(PayloadType::AUTH),
            sa.crypto.as_ref(),
        ) else {
            return refuse(self, sa);
        };
        let Some(peer) = peer else {
            return refuse(self, sa);
        };
        let offers = std::mem::take(&mut sa.vouch_offers);
        let (peer, own) = with_vouched_keys(peer, &offers);
        let (how, signer) = match verify_auth_by(
            &peer,
            &crypto.sk_pi,
            &half.real_message1,
            &half.nr,
            id,
            auth,
        ) {
            Ok(how) => how,
            Err(_) => {
                self.out.stats.auth_failures += 1;
                return refuse(self, sa);
            }
        };
        // Gateway mode: the peer may send from what DNS vouched for with the
        // key that signed, and from its own address only if that key is one
        // published there (the first `own` keys).
        let signer = match (&peer, signer) {
            (PeerAuth::Ed25519(keys), Some(i)) => keys.get(i).map(|k| (i, k)),
            _ => None,
        };
        sa.peer_ts = offers
            .into_iter()
            .filter(|o| signer.is_some_and(|(_, k)| o.keys.contains(k)))
            .map(|o| o.selector)
            .collect();
        sa.peer_host_unvouched = signer.is_some_and(|(i, _)| i >= own);
        // The trust rule again, whatever the caller said: an address ID must
        // be the address the IKE SA is pinned to (an FQDN the caller checked).
        if trust::bind(id, sa.remote.ip(), how == PeerAuthenticated::Null).is_err() {
            self.out.stats.identity_refused += 1;
            return refuse(self, sa);
        }
        if how == PeerAuthenticated::Null {
            self.make_room_for_anonymous(sa.remote.ip());
        }
        let my_id = local_id(&self.config, &self.config.local_auth, sa.local.ip());
        let my_auth = own_auth(
            &self.config.local_auth,
            &crypto.sk_pr,
            &half.real_message2,
            &half.ni,
            &my_id,
        );
        sa.peer_id = Some(id.clone());
        // §2.4: INITIAL_CONTACT replaces the SAs of the same authenticated
        // identity at the same address; an anonymous peer replaces nothing.
        self.honour_initial_contact(sa, &request, id, how);
        let mut payloads = vec![Payload::IdR(my_id)];
        // Ours, when this is our only IKE SA with anyone at that address
        // (first contact since we started, or the others were just replaced):
        // the initiator may then forget the SAs it still has from before.
        if self.config.initial_contact && !self.index.others_at(sa.remote.ip(), sa) {
            payloads.push(self.initial_contact());
        }
        payloads.push(Payload::Auth(my_auth));
        let child = self.responder_child(sa, &request, &half);
        match &child {
            Ok((c, answer)) => {
                if let Some(a) = sa.peer_vip {
                    payloads.push(Payload::Cp(Cp::address_reply(a)));
                }
                payloads.push(Payload::Sa(answer.clone()));
                payloads.push(Payload::TsI(ts::to_payload(&c.remote_ts)));
                payloads.push(Payload::TsR(ts::to_payload(&c.local_ts)));
            }
            Err(e) => {
                self.child_refused(sa, &request, e);
                payloads.extend(e.to_notify().map(Payload::Notify));
            }
        }
        let t = sa.send_response(ExchangeType::IKE_AUTH, msg_id, &payloads);
        self.out.transmits.push_back(t);
        self.establish(now, sa, how);
        if let Ok((child, _)) = child {
            let jitter = self.rng.next_u32();
            // The first CHILD SA: room for one, not the four a first push makes.
            sa.children.reserve_exact(1);
            sa.children.push(Child::new(&child, now, jitter, true));
            self.out.events.push_back(Event::ChildSaEstablished {
                sa: sa.handle,
                child,
            });
        }
        Some(State::Established)
    }

    pub(super) fn responder_child(
        &mut self,
        sa: &mut SaCore,
        request: &Message,
        half: &HalfOpen,
    ) -> Result<(crate::ike::event::ChildSa, crate::ike::message::Sa), RequestError> {
        self.assign_address(sa, request)?;
        let child = self.responder_child_keyed(sa, request, half);
        if child.is_err()
            && let Some(a) = sa.peer_vip.take()
        {
            self.pool.release(a, sa.id);
        }
        child
    }

    /// An initiator behind a NAT that asks for an address (CP(CFG_REQUEST),
    /// §3.15) gets one from the pool, held by this IKE SA; its TSi is then
    /// narrowed to it. Any address it asked for is not looked at: the pool
    /// chooses. A refusal is counted and reported ([`Event::AddressRequest`]).
    fn assign_address(&mut self, sa: &mut SaCore, request: &Message) -> Result<(), RequestError> {
        let Some(cp) = request.payloads.iter().find_map(|p| match p {
            Payload::Cp(cp) if cp.cfg_type == CfgType::CFG_REQUEST => Some(cp),
            _ => None,
        }) else {
            return Ok(());
        };
        let family = sa.remote.ip();
        let result = match cp.requested() {
            Err(e) => Err(AddressRefusal::Malformed(e)),
            Ok(req) if !req.wants(family) => Err(AddressRefusal::OtherFamily),
            Ok(_) if !sa.peer_behind_nat => Err(AddressRefusal::NotBehindNat),
            Ok(_) => self
                .pool
                .assign(family, sa.id)
                .map_err(AddressRefusal::Pool),
        };
        match result {
            Ok(_) => self.out.stats.addresses_assigned += 1,
            Err(r) => self.out.stats.addresses_refused[r.index()] += 1,
        }
        self.out.events.push_back(Event::AddressRequest {
            sa: sa.handle,
            remote: sa.remote,
            result,
        });
        sa.peer_vip = Some(result.map_err(RequestError::Address)?);
        Ok(())
    }

    fn responder_child_keyed(
        &mut self,
        sa: &SaCore,
        request: &Message,
        half: &HalfOpen,
    ) -> Result<(crate::ike::event::ChildSa, crate::ike::message::Sa), RequestError> {
        let Some(crypto) = sa.crypto.as_ref() else {
            return Err(RequestError::NoProposalChosen);
        };
        let Some(Payload::Sa(offer)) = request.payload(PayloadType::SA) else {
            return Err(RequestError::MissingPayload(PayloadType::SA));
        };
        let (Some(tsi), Some(tsr)) = (
            ts_of(request, PayloadType::TSI),
            ts_of(request, PayloadType::TSR),
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
                (sa.local.ip(), &self.config.protects),
            )
            .map(|(i, r)| (sa.without_peer_host(i), r))
            .filter(|(i, _)| !i.is_empty())
            .ok_or_else(|| {
                self.out.stats.ts_refused += 1;
                RequestError::TsUnacceptable
            })?;
        let spi = self.new_child_spi();
        let (answer, choice, peer_spi) =
            match proposal::select_esp(offer, &self.config.esp_algs, spi, None) {
                Ok(x) => x,
                Err(e) => {
                    self.release_child_spi(spi);
                    return Err(e);
                }
            };
        let params = ChildParams {
            spis: ChildSpis {
                inbound: spi,
                outbound: peer_spi,
            },
            choice,
            local_ts: tsr,
            remote_ts: tsi,
            local: sa.local,
            remote: sa.remote,
            natt_port: self.config.natt_port,
            lifetime: self.config.child_lifetime,
            sk_d: &crypto.sk_d,
            local_vip: None,
            peer_behind_nat: sa.peer_behind_nat,
        };
        Ok((
            child_sa::keyed(params, Side::Responder, None, &half.ni, &half.nr),
            answer,
        ))
    }
}

impl SaCore {
    /// `selectors` without the peer's own address when DNS did not vouch for
    /// it (`peer_host_unvouched`): what a narrowing to the host let through.
    pub(crate) fn without_peer_host(
        &self,
        mut selectors: Vec<crate::ike::message::AddrSelector>,
    ) -> Vec<crate::ike::message::AddrSelector> {
        if self.peer_host_unvouched {
            let host = crate::ike::message::AddrSelector::host(self.ts_remote());
            selectors.retain(|s| {
                !crate::ike::ts::contains(&host, s)
                    || self.peer_ts.iter().any(|v| crate::ike::ts::contains(v, s))
            });
        }
        selectors
    }
}

impl Endpoint {
    /// Reports a CHILD SA refused to the peer ([`Event::ChildSaRefused`]),
    /// naming what it proposed and what this host answers for.
    pub(crate) fn child_refused(&mut self, sa: &SaCore, request: &Message, e: &RequestError) {
        let mut reason = e.to_string();
        if *e == RequestError::TsUnacceptable {
            let show = |sels: &[crate::ike::message::AddrSelector]| {
                let v: Vec<String> = sels.iter().take(4).map(ts::describe).collect();
                v.join(", ")
            };
            let tsi = ts_of(request, PayloadType::TSI).unwrap_or_default();
            let tsr = ts_of(request, PayloadType::TSR).unwrap_or_default();
            let mut ours = vec![crate::ike::message::AddrSelector::host(sa.local.ip())];
            ours.extend(self.config.protects.iter().cloned());
            reason = format!(
                "{reason}: it proposed TSi {} and TSr {}; this host answers for {}",
                show(&tsi),
                show(&tsr),
                show(&ours)
            );
        }
        self.out.events.push_back(Event::ChildSaRefused {
            sa: sa.handle,
            remote: sa.remote,
            reason,
        });
    }
}

/// `peer`'s keys followed by the vouching ones not among them, at most
/// [`MAX_PEER_KEYS`] in all; and how many of them are the peer's own.
fn with_vouched_keys(peer: PeerAuth, offers: &[Vouched]) -> (PeerAuth, usize) {
    match peer {
        PeerAuth::Ed25519(mut keys) => {
            let own = keys.len();
            for k in offers.iter().flat_map(|o| o.keys.iter()) {
                if keys.len() >= MAX_PEER_KEYS {
                    break;
                }
                if !keys.contains(k) {
                    keys.push(*k);
                }
            }
            (PeerAuth::Ed25519(keys), own)
        }
        other => (other, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;
    use crate::ike::config::{Config, LocalAuth};
    use crate::ike::endpoint::SaHandle;
    use crate::ike::message::{CfgType, CpError, Flags, Header, Identity};
    use crate::ike::pool::PoolPrefix;

    /// A responder with a pool and a half-made SA from a peer behind a NAT.
    fn responder() -> (Endpoint, SaCore) {
        let mut config = Config::new(LocalAuth::Null, Identity::Null);
        config.address_pool = vec![PoolPrefix::new("100.64.0.0".parse().unwrap(), 24).unwrap()];
        let ep = Endpoint::new(config, [9; 32]);
        let local: SocketAddr = "192.0.2.20:4500".parse().unwrap();
        let remote: SocketAddr = "198.51.100.1:34500".parse().unwrap();
        let mut sa = SaCore::new(
            1,
            Instant::now(),
            SaHandle(1),
            false,
            (7, 8),
            (local, remote),
            500,
        );
        sa.peer_behind_nat = true;
        (ep, sa)
    }

    fn request(cp: Cp) -> Message {
        let header = Header::new(7, 8, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        Message {
            header,
            payloads: vec![Payload::Cp(cp)],
        }
    }

    #[test]
    fn a_malformed_request_is_refused_with_invalid_syntax_and_counted() {
        let (mut ep, mut sa) = responder();
        // An INTERNAL_IP4_ADDRESS announcing 4 bytes with 1 there.
        let m = request(Cp::from_raw(CfgType::CFG_REQUEST, vec![0, 1, 0, 4, 10]));
        let refused = ep.assign_address(&mut sa, &m).unwrap_err();
        let reason = AddressRefusal::Malformed(CpError::Truncated { index: 0 });
        assert_eq!(refused, RequestError::Address(reason));
        assert_eq!(refused.notify_type(), Some(NotifyType::INVALID_SYNTAX));
        assert_eq!(sa.peer_vip, None);
        let stats = ep.stats();
        assert_eq!(stats.addresses_refused[reason.index()], 1);
        assert_eq!(stats.addresses_out, 0);
        assert!(matches!(
            ep.poll_event(),
            Some(Event::AddressRequest { result: Err(r), .. }) if r == reason
        ));
        // A sound request from the same SA afterwards gets the pool's first.
        let m = request(Cp::address_request("0.0.0.0".parse().unwrap()));
        ep.assign_address(&mut sa, &m).unwrap();
        assert_eq!(sa.peer_vip, Some("100.64.0.1".parse().unwrap()));
    }

    #[test]
    fn an_address_asked_for_is_not_the_one_given() {
        let (mut ep, mut sa) = responder();
        // It asks for the responder's own address; the pool chooses.
        let m = request(Cp::from_raw(
            CfgType::CFG_REQUEST,
            vec![0, 1, 0, 4, 192, 0, 2, 20],
        ));
        ep.assign_address(&mut sa, &m).unwrap();
        assert_eq!(sa.peer_vip, Some("100.64.0.1".parse().unwrap()));
        // One for another family only: refused.
        let (mut ep, mut sa) = responder();
        let m = request(Cp::address_request("::".parse().unwrap()));
        assert_eq!(
            ep.assign_address(&mut sa, &m),
            Err(RequestError::Address(AddressRefusal::OtherFamily))
        );
        assert_eq!(
            RequestError::Address(AddressRefusal::OtherFamily).notify_type(),
            Some(NotifyType::INTERNAL_ADDRESS_FAILURE)
        );
    }
}

//! IKE_AUTH, the initiator's side (RFC 7296 §1.2, §2.15): sending IDi and
//! AUTH with the first CHILD SA's proposal, and taking the response: the
//! caller names the responder's key (or has already), its AUTH is verified,
//! its identity bound to its address ([`crate::trust`]), and the first CHILD
//! SA installed.

use crate::ike::state::{
    AuthSent, InitSent, InitiatorAuthorize, InitiatorConfirm, InitiatorVouch, State,
};
use std::time::Instant;

use rand_core::RngCore;

use crate::crypto::ed25519::Ed25519PublicKey;
use crate::ike::child_sa::{self, Child, ChildParams};
use crate::ike::config::PeerAuth;
use crate::ike::config::{LocalAuth, RequestAddress};
use crate::ike::endpoint::Endpoint;
use crate::ike::event::{ChildSpis, Event, PeerAuthenticated};
use crate::ike::failure::{Exchange, Failure, ProtocolError, Refusal};
use crate::ike::keys::Side;
use crate::ike::message::{
    AddrSelector, AuthMethod, CfgType, Cp, ExchangeType, Message, Payload, PayloadType,
};
use crate::ike::sa::{IkeCrypto, Request, SaCore};
use crate::ike::{proposal, ts};
use crate::trust::{self, Binding, IdentityRefused};

use super::{local_id, own_auth, ts_of, verify_auth_by, vouch};

impl Endpoint {
    /// Initiator: sends IKE_AUTH after a successful IKE_SA_INIT.
    pub(crate) fn send_auth_request(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        init: InitSent,
        nr: Vec<u8>,
        response: Vec<u8>,
    ) -> Result<State, Failure> {
        let Some(crypto) = sa.crypto.as_ref() else {
            return Err(ProtocolError::NoKeys.into());
        };
        // Behind a NAT this host's address is not the one the responder sees,
        // so an address identity cannot bind (crate::trust): speak as
        // anonymous instead, and ask for an address to use inside the SA.
        let nat = sa.local_behind_nat;
        let anonymous = LocalAuth::Null;
        let local_auth =
            if nat && self.config.anonymous_behind_nat && self.config.local_id.is_address() {
                &anonymous
            } else {
                &self.config.local_auth
            };
        let id = local_id(&self.config, local_auth, sa.local.ip());
        let auth = own_auth(local_auth, &crypto.sk_pi, &init.request, &nr, &id);
        let child_spi = self.new_child_spi();
        let asked_address = match self.config.request_address {
            RequestAddress::Never => false,
            RequestAddress::BehindNat => nat,
            RequestAddress::Always => true,
        };
        let mut ts = init.ts;
        let mut payloads = Vec::with_capacity(7);
        payloads.push(Payload::IdI(id));
        // §2.4: only when this is our only IKE SA with anyone at that
        // address (the responder's rule). Two gateways keep one IKE SA per
        // destination behind them; each new one saying INITIAL_CONTACT
        // made the peer delete the others.
        if self.config.initial_contact && !self.index.others_at(sa.remote.ip(), sa) {
            payloads.push(self.initial_contact());
        }
        payloads.push(Payload::Auth(auth));
        if asked_address {
            payloads.push(Payload::Cp(Cp::address_request(sa.local.ip())));
            ts.local = vec![AddrSelector::any_of(sa.local.ip())];
        }
        payloads.extend([
            Payload::Sa(proposal::esp_offer(&self.config.esp_algs, child_spi, false)),
            Payload::TsI(ts::to_payload(&ts.local)),
            Payload::TsR(ts::to_payload(&ts.remote)),
        ]);
        let timer = self.request_timer(now, Some(init.deadline));
        let t = sa.send_request(ExchangeType::IKE_AUTH, &payloads, Request::Handshake, timer);
        self.out.transmits.push_back(t);
        Ok(State::AuthSent(Box::new(AuthSent {
            ni: init.ni,
            nr,
            real_message2: response,
            peer: init.peer,
            ts,
            child_spi,
            deadline: init.deadline,
            asked_address,
        })))
    }

    /// Initiator: the IKE_AUTH response (already decrypted).
    pub(crate) fn on_auth_response(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        sent: AuthSent,
        response: Message,
    ) -> Result<State, Failure> {
        sa.outstanding = None;
        if response.payload(PayloadType::AUTH).is_none() {
            let reason = response
                .notifies()
                .find(|n| n.is_error())
                .map_or(Refusal::NoAuth, |n| Refusal::Notify {
                    exchange: Exchange::IkeAuth,
                    notify: n.ty,
                });
            self.release_child_spi(sent.child_spi);
            return Err(Failure::PeerRefused(reason));
        }
        let Some(Payload::IdR(id)) = response.payload(PayloadType::IDR) else {
            self.release_child_spi(sent.child_spi);
            return Err(Failure::missing(Exchange::IkeAuth, "IDr"));
        };
        match sent.peer.clone() {
            Some(peer) => self.finish_initiator(now, sa, sent, response, peer),
            None => {
                let null_auth = matches!(response.payload(PayloadType::AUTH), Some(Payload::Auth(a)) if a.method == AuthMethod::NULL);
                self.out.events.push_back(Event::AuthorizePeer {
                    sa: sa.handle,
                    remote: sa.remote,
                    id: id.clone(),
                    null_auth,
                    ts_i: Vec::new(),
                });
                Ok(State::InitiatorAuthorize(Box::new(InitiatorAuthorize {
                    sent,
                    response,
                })))
            }
        }
    }

    /// Initiator: verifies the responder and installs the first CHILD SA.
    pub(crate) fn finish_initiator(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        sent: AuthSent,
        response: Message,
        peer: PeerAuth,
    ) -> Result<State, Failure> {
        let fail = |this: &mut Self, f: Failure| {
            this.release_child_spi(sent.child_spi);
            Err(f)
        };
        let (Some(Payload::IdR(id)), Some(Payload::Auth(auth)), Some(crypto)) = (
            response.payload(PayloadType::IDR),
            response.payload(PayloadType::AUTH),
            sa.crypto.as_ref(),
        ) else {
            return fail(self, Failure::missing(Exchange::IkeAuth, "IDr or AUTH"));
        };
        let (how, signer) = match verify_auth_by(
            &peer,
            &crypto.sk_pr,
            &sent.real_message2,
            &sent.ni,
            id,
            auth,
        ) {
            Ok((how, i)) => {
                let signer = match (&peer, i) {
                    (PeerAuth::Ed25519(keys), Some(i)) => keys.get(i).cloned(),
                    _ => None,
                };
                (how, signer)
            }
            Err(reason) => {
                self.out.stats.auth_failures += 1;
                // The responder has installed its side already: delete the IKE
                // SA (§2.21.2 allows a separate INFORMATIONAL here), or it
                // keeps a dead SA and drops our cleartext as a private peer's.
                self.send_delete_ike_once(sa);
                return fail(self, Failure::AuthenticationFailed(reason));
            }
        };
        // The trust rule (crate::trust): IDr must be the address IKE went to,
        // or a name the caller confirms resolves to it.
        match trust::bind(id, sa.remote.ip(), how == PeerAuthenticated::Null) {
            Ok(Binding::Address | Binding::Anonymous) => {}
            Ok(Binding::Fqdn(name)) => {
                sa.peer_id = Some(id.clone());
                self.out.events.push_back(Event::ConfirmIdentity {
                    sa: sa.handle,
                    remote: sa.remote,
                    name,
                });
                return Ok(State::InitiatorConfirm(Box::new(InitiatorConfirm {
                    sent,
                    response,
                    how,
                    signer,
                })));
            }
            Err(refused) => {
                self.out.stats.identity_refused += 1;
                self.send_delete_ike_once(sa);
                return fail(self, Failure::IdentityRefused(refused));
            }
        }
        self.finish_initiator_child(now, sa, sent, response, how, signer)
    }

    /// Initiator: the caller's answer to [`Event::ConfirmIdentity`].
    pub(crate) fn confirmed(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        held: InitiatorConfirm,
        result: Result<(), IdentityRefused>,
    ) -> Result<State, Failure> {
        let InitiatorConfirm {
            sent,
            response,
            how,
            signer,
        } = held;
        if let Err(refused) = result {
            self.out.stats.identity_refused += 1;
            self.release_child_spi(sent.child_spi);
            self.send_delete_ike_once(sa);
            return Err(Failure::IdentityRefused(refused));
        }
        self.finish_initiator_child(now, sa, sent, response, how, signer)
    }

    /// Initiator: the responder is authenticated and bound to its address:
    /// its selectors beyond the destination go to DNS first (`vouch`), then
    /// the first CHILD SA is installed.
    pub(super) fn finish_initiator_child(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        sent: AuthSent,
        response: Message,
        how: PeerAuthenticated,
        signer: Option<Ed25519PublicKey>,
    ) -> Result<State, Failure> {
        let beyond = vouch::to_vouch(&sent, &response);
        if let Some(signer) = signer
            && !beyond.is_empty()
        {
            self.out.events.push_back(Event::VouchResponderTs {
                sa: sa.handle,
                remote: sa.remote,
                ts_r: beyond,
            });
            return Ok(State::InitiatorVouch(Box::new(InitiatorVouch {
                sent,
                response,
                how,
                signer,
            })));
        }
        self.install_initiator_child(now, sa, sent, &response, how, &[])
    }

    /// Initiator: installs the first CHILD SA, its remote selectors narrowed
    /// to the destination and `vouched` (what DNS vouched for beyond it).
    pub(super) fn install_initiator_child(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        sent: AuthSent,
        response: &Message,
        how: PeerAuthenticated,
        vouched: &[AddrSelector],
    ) -> Result<State, Failure> {
        let Some(Payload::IdR(id)) = response.payload(PayloadType::IDR) else {
            self.release_child_spi(sent.child_spi);
            return Err(Failure::missing(Exchange::IkeAuth, "IDr"));
        };
        let Some(crypto) = sa.crypto.as_ref() else {
            self.release_child_spi(sent.child_spi);
            return Err(ProtocolError::NoKeys.into());
        };
        let child = match self.initiator_child(sa, &sent, response, crypto, vouched) {
            Ok(c) => c,
            Err(reason) => {
                // The IKE SA is authenticated but useless without its CHILD SA: delete it.
                self.release_child_spi(sent.child_spi);
                self.send_delete_ike_once(sa);
                return Err(Failure::PeerRefused(reason));
            }
        };
        sa.peer_id = Some(id.clone());
        sa.local_vip = child.local_vip;
        // A gateway's key was published for the destination: the gateway's
        // own address is no selector of its unless DNS vouched for it too.
        sa.peer_host_unvouched = vouch::is_gateway(&sent.ts.remote, sa.remote.ip())
            && !vouched
                .iter()
                .any(|v| ts::contains(v, &AddrSelector::host(sa.remote.ip())));
        // What the responder carries (a gateway's host or site behind it):
        // a rekey it starts may name it again.
        sa.peer_ts = child.remote_ts.clone();
        // §2.4: a responder with no other IKE SA with us (it restarted) says
        // so; ours with it are dead: forget them, as a responder does.
        self.honour_initial_contact(sa, response, id, how);
        self.establish(now, sa, how);
        let jitter = self.rng.next_u32();
        // The first CHILD SA: room for one, not the four a first push makes.
        sa.children.reserve_exact(1);
        sa.children.push(Child::new(&child, now, jitter, true));
        self.out.events.push_back(Event::ChildSaEstablished {
            sa: sa.handle,
            child,
        });
        Ok(State::Established)
    }

    pub(super) fn initiator_child(
        &self,
        sa: &SaCore,
        sent: &AuthSent,
        response: &Message,
        crypto: &IkeCrypto,
        vouched: &[AddrSelector],
    ) -> Result<crate::ike::event::ChildSa, Refusal> {
        if let Some(n) = response.notifies().find(|n| n.is_error()) {
            return Err(Refusal::Notify {
                exchange: Exchange::FirstChildSa,
                notify: n.ty,
            });
        }
        let refused = Refusal::FirstChildSa;
        let Some(Payload::Sa(answer)) = response.payload(PayloadType::SA) else {
            return Err(refused(ProtocolError::MissingPayload {
                exchange: Exchange::FirstChildSa,
                missing: "SA",
            }));
        };
        let (choice, peer_spi) =
            proposal::accept_esp(answer, &self.config.esp_algs, false).map_err(refused)?;
        let (Some(tsi), Some(tsr)) = (
            ts_of(response, PayloadType::TSI),
            ts_of(response, PayloadType::TSR),
        ) else {
            return Err(refused(ProtocolError::MissingPayload {
                exchange: Exchange::FirstChildSa,
                missing: "TSi/TSr",
            }));
        };
        if !ts::is_subset(&tsi, &sent.ts.local) || !ts::is_subset(&tsr, &sent.ts.remote) {
            return Err(refused(ProtocolError::TsNotProposed));
        }
        // Only the destination and what DNS vouched for, whatever else the
        // responder answered (`vouch`).
        let tsr = vouch::narrowed(&tsr, &sent.ts.remote, vouched);
        if tsr.is_empty() {
            return Err(refused(ProtocolError::TsNotProposed));
        }
        let local_vip = if sent.asked_address {
            Some(assigned_address(sa, response, &tsi).map_err(refused)?)
        } else {
            None
        };
        let params = ChildParams {
            spis: ChildSpis {
                inbound: sent.child_spi,
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
            local_vip: local_vip.filter(|a| *a != sa.local.ip()),
            peer_behind_nat: sa.peer_behind_nat,
        };
        Ok(child_sa::keyed(
            params,
            Side::Initiator,
            None,
            &sent.ni,
            &sent.nr,
        ))
    }
}

/// Behind a NAT, the address this host uses inside the SA: the one the
/// responder's CP(CFG_REPLY) gives, which TSi must then name alone (§3.15.4);
/// without a CP reply (a responder with no pool, §3.15.4 allows it to ignore
/// the request), the one host it narrowed TSi to.
fn assigned_address(
    sa: &SaCore,
    response: &Message,
    tsi: &[AddrSelector],
) -> Result<std::net::IpAddr, ProtocolError> {
    let host = match tsi {
        [one] if one.ip_protocol == 0 && (one.start_port, one.end_port) == (0, u16::MAX) => {
            one.single_address()
        }
        _ => None,
    };
    let reply = response.payloads.iter().find_map(|p| match p {
        Payload::Cp(cp) if cp.cfg_type == CfgType::CFG_REPLY => Some(cp),
        _ => None,
    });
    let given = match reply {
        Some(cp) => cp
            .assigned(sa.local.ip())
            .map_err(ProtocolError::BadConfigReply)?,
        None => None,
    };
    match (given, host) {
        (Some(a), Some(h)) if a == h => Ok(a),
        (None, Some(h)) => Ok(h),
        (Some(a), _) => Err(ProtocolError::AddressNotInTs { assigned: a }),
        (None, None) => Err(ProtocolError::NoAddressAssigned),
    }
}

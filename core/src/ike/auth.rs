//! IKE_AUTH (RFC 7296 §1.2, §2.15): each side proves its identity over the
//! IKE_SA_INIT messages, and the first CHILD SA is created.
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {IDi, N(INITIAL_CONTACT), AUTH, SAi2, TSi, TSr}  -->
//!                              <--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
//! ```
//!
//! Authentication is RFC 7427 method 14 with Ed25519 (RFC 8420) or NULL
//! (method 13, RFC 7619). The peer's key comes from the caller: with
//! `connect(peer: Some(..))` or in answer to [`Event::AuthorizePeer`]; while the
//! caller decides, the message is held (responder: the request; initiator: the
//! response) and nothing is sent. A responder that cannot authenticate the
//! initiator answers N(AUTHENTICATION_FAILED) and forgets the SA (§2.21.2).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_core::RngCore;

use crate::ike::child_sa::{self, Child, ChildParams};
use crate::ike::endpoint::{
    AuthFailure, ChildSpis, Config, Endpoint, Event, Exchange, Failure, LocalAuth, MAX_PEER_KEYS,
    PeerAuth, PeerAuthenticated, ProtocolError, Refusal, TrafficSelectors,
};
use crate::ike::error::RequestError;
use crate::ike::keys::{Side, SkP, null_auth, signed_octets, verify_null_auth};
use crate::ike::message::{
    Auth, AuthMethod, ExchangeType, Identity, Message, Notify, NotifyType, Payload, PayloadType,
};
use crate::ike::sa::{IkeCrypto, Request, SaCore, State};
use crate::ike::sa_init::InitSent;
use crate::ike::{proposal, ts};
use crate::trust::{self, Binding, IdentityRefused};

/// Initiator: IKE_AUTH sent.
#[derive(Debug)]
pub(crate) struct AuthSent {
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
    /// The responder's IKE_SA_INIT response as received (RealMessage2, §2.15).
    pub(crate) real_message2: Vec<u8>,
    pub(crate) peer: Option<PeerAuth>,
    pub(crate) ts: TrafficSelectors,
    pub(crate) child_spi: u32,
    pub(crate) deadline: Instant,
}

/// Initiator: the IKE_AUTH response, held for [`Endpoint::authorize`].
#[derive(Debug)]
pub(crate) struct InitiatorAuthorize {
    pub(crate) sent: AuthSent,
    pub(crate) response: Message,
}

/// Initiator: the responder's AUTH verified under an FQDN identity, held for
/// [`Endpoint::confirm_identity`] (the name must resolve to its address).
#[derive(Debug)]
pub(crate) struct InitiatorConfirm {
    pub(crate) sent: AuthSent,
    pub(crate) response: Message,
    pub(crate) how: PeerAuthenticated,
}

/// Responder: IKE_SA_INIT answered.
#[derive(Debug)]
pub(crate) struct HalfOpen {
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
    /// The initiator's request as received (RealMessage1).
    pub(crate) real_message1: Vec<u8>,
    /// Our response as sent, without marker (RealMessage2).
    pub(crate) real_message2: Vec<u8>,
    /// Our response as sent, for a retransmitted request.
    pub(crate) datagram: Vec<u8>,
    pub(crate) expires: Instant,
}

/// Responder: the IKE_AUTH request, held for [`Endpoint::authorize`].
#[derive(Debug)]
pub(crate) struct ResponderAuthorize {
    pub(crate) half: HalfOpen,
    pub(crate) request: Message,
    pub(crate) msg_id: u32,
}

fn id_body(id: &Identity) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.buffer_len());
    id.emit(&mut out);
    out
}

/// This host's AUTH payload (§2.15 with RFC 7427 / RFC 7619).
fn own_auth(
    local_auth: &LocalAuth,
    sk_p: &SkP,
    real_message: &[u8],
    peer_nonce: &[u8],
    id: &Identity,
) -> Auth {
    let octets = signed_octets(real_message, peer_nonce, sk_p, &id_body(id));
    match local_auth {
        LocalAuth::Ed25519(key) => Auth {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: key.sign_auth_data(&octets).to_vec(),
        },
        LocalAuth::Null => Auth {
            method: AuthMethod::NULL,
            data: null_auth(sk_p, &octets).to_vec(),
        },
    }
}

/// Checks the peer's AUTH payload against what the caller said about the peer.
fn verify_auth(
    peer: &PeerAuth,
    sk_p: &SkP,
    real_message: &[u8],
    own_nonce: &[u8],
    id: &Identity,
    auth: &Auth,
) -> Result<PeerAuthenticated, AuthFailure> {
    let octets = signed_octets(real_message, own_nonce, sk_p, &id_body(id));
    match (peer, auth.method) {
        (PeerAuth::Ed25519(keys), AuthMethod::DIGITAL_SIGNATURE) => {
            // Every published key is a candidate (a rollover publishes two);
            // at most MAX_PEER_KEYS signature checks per message.
            let mut last = None;
            for key in keys.iter().take(MAX_PEER_KEYS) {
                match key.verify_auth_data(&octets, &auth.data) {
                    Ok(()) => return Ok(PeerAuthenticated::Ed25519),
                    Err(e) => last = Some(e),
                }
            }
            let id = id.clone();
            Err(match last {
                None => AuthFailure::NoKey { id },
                Some(error) => AuthFailure::BadSignature {
                    id,
                    keys: keys.len().min(MAX_PEER_KEYS),
                    error,
                },
            })
        }
        (PeerAuth::Null, AuthMethod::NULL) => {
            if verify_null_auth(sk_p, &octets, &auth.data) {
                Ok(PeerAuthenticated::Null)
            } else {
                Err(AuthFailure::NullAuth { id: id.clone() })
            }
        }
        (PeerAuth::Null, AuthMethod::DIGITAL_SIGNATURE) => {
            Err(AuthFailure::UnexpectedSignature { id: id.clone() })
        }
        (_, method) => Err(AuthFailure::UnexpectedMethod {
            id: id.clone(),
            method,
        }),
    }
}

fn ts_of(m: &Message, ty: PayloadType) -> Option<Vec<crate::ike::message::AddrSelector>> {
    match m.payload(ty) {
        Some(Payload::TsI(t) | Payload::TsR(t)) => Some(ts::addr_selectors(t)),
        _ => None,
    }
}

/// This host's IDi/IDr on an IKE SA whose local address is `sa_local`: with
/// an address identity, the address the SA is on (peers bind the ID to the
/// address IKE comes from, [`crate::trust`], so a dual-stack host that
/// answers on IPv6 speaks as its IPv6 address); an FQDN as configured;
/// ID_NULL with AUTH NULL. With `id_is_sa_address` off, `local_id` as it is.
fn local_id(config: &Config, sa_local: IpAddr) -> Identity {
    match (&config.local_auth, &config.local_id) {
        // As configured, whatever it is (a test's lying peer).
        (_, id) if !config.id_is_sa_address => id.clone(),
        (LocalAuth::Null, _) => Identity::Null,
        (LocalAuth::Ed25519(_), Identity::Ipv4(_) | Identity::Ipv6(_))
            if config.id_is_sa_address && !sa_local.is_unspecified() =>
        {
            match sa_local.to_canonical() {
                IpAddr::V4(a) => Identity::Ipv4(a),
                IpAddr::V6(a) => Identity::Ipv6(a),
            }
        }
        (LocalAuth::Ed25519(_), id) => id.clone(),
    }
}

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
        let id = local_id(&self.config, sa.local.ip());
        let auth = own_auth(
            &self.config.local_auth,
            &crypto.sk_pi,
            &init.request,
            &nr,
            &id,
        );
        let child_spi = self.new_child_spi();
        let mut payloads = Vec::with_capacity(6);
        payloads.push(Payload::IdI(id));
        if self.config.initial_contact {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        payloads.extend([
            Payload::Auth(auth),
            Payload::Sa(proposal::esp_offer(&self.config.esp_algs, child_spi, false)),
            Payload::TsI(ts::to_payload(&init.ts.local)),
            Payload::TsR(ts::to_payload(&init.ts.remote)),
        ]);
        let timer = self.request_timer(now, Some(init.deadline));
        let t = sa.send_request(ExchangeType::IKE_AUTH, &payloads, Request::Handshake, timer);
        self.out.transmits.push_back(t);
        Ok(State::AuthSent(Box::new(AuthSent {
            ni: init.ni,
            nr,
            real_message2: response,
            peer: init.peer,
            ts: init.ts,
            child_spi,
            deadline: init.deadline,
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
        let how = match verify_auth(
            &peer,
            &crypto.sk_pr,
            &sent.real_message2,
            &sent.ni,
            id,
            auth,
        ) {
            Ok(how) => how,
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
                })));
            }
            Err(refused) => {
                self.out.stats.identity_refused += 1;
                self.send_delete_ike_once(sa);
                return fail(self, Failure::IdentityRefused(refused));
            }
        }
        self.finish_initiator_child(now, sa, sent, &response, how)
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
        } = held;
        if let Err(refused) = result {
            self.out.stats.identity_refused += 1;
            self.release_child_spi(sent.child_spi);
            self.send_delete_ike_once(sa);
            return Err(Failure::IdentityRefused(refused));
        }
        self.finish_initiator_child(now, sa, sent, &response, how)
    }

    /// Initiator: the responder is authenticated and bound to its address:
    /// install the first CHILD SA.
    fn finish_initiator_child(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        sent: AuthSent,
        response: &Message,
        how: PeerAuthenticated,
    ) -> Result<State, Failure> {
        let Some(Payload::IdR(id)) = response.payload(PayloadType::IDR) else {
            self.release_child_spi(sent.child_spi);
            return Err(Failure::missing(Exchange::IkeAuth, "IDr"));
        };
        let Some(crypto) = sa.crypto.as_ref() else {
            self.release_child_spi(sent.child_spi);
            return Err(ProtocolError::NoKeys.into());
        };
        let child = match self.initiator_child(sa, &sent, response, crypto) {
            Ok(c) => c,
            Err(reason) => {
                // The IKE SA is authenticated but useless without its CHILD SA: delete it.
                self.release_child_spi(sent.child_spi);
                self.send_delete_ike_once(sa);
                return Err(Failure::PeerRefused(reason));
            }
        };
        sa.peer_id = Some(id.clone());
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

    fn initiator_child(
        &self,
        sa: &SaCore,
        sent: &AuthSent,
        response: &Message,
        crypto: &IkeCrypto,
    ) -> Result<crate::ike::endpoint::ChildSa, Refusal> {
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
        };
        Ok(child_sa::keyed(
            params,
            Side::Initiator,
            None,
            &sent.ni,
            &sent.nr,
        ))
    }

    /// Both roles: the IKE SA is authenticated (its next state is
    /// `State::Established`).
    fn establish(&mut self, now: Instant, sa: &mut SaCore, how: PeerAuthenticated) {
        sa.announced = true;
        sa.last_heard = now;
        sa.last_active = now;
        sa.peer_auth = Some(how);
        self.schedule_ike_rekey(now, sa);
        self.out.stats.established += 1;
        self.out.events.push_back(Event::IkeSaEstablished {
            sa: sa.handle,
            remote: sa.remote,
            peer_id: sa.peer_id.clone().unwrap_or(Identity::Null),
            auth: how,
            initiator: sa.initiator,
        });
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
        self.out.events.push_back(Event::AuthorizePeer {
            sa: sa.handle,
            remote,
            id: id.clone(),
            null_auth: auth.method == AuthMethod::NULL,
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
        let how = match verify_auth(
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
        // The trust rule again, whatever the caller said: an address ID must
        // be the address the IKE SA is pinned to (an FQDN the caller checked).
        if trust::bind(id, sa.remote.ip(), how == PeerAuthenticated::Null).is_err() {
            self.out.stats.identity_refused += 1;
            return refuse(self, sa);
        }
        if how == PeerAuthenticated::Null {
            self.make_room_for_anonymous(sa.remote.ip());
        }
        let my_id = local_id(&self.config, sa.local.ip());
        let my_auth = own_auth(
            &self.config.local_auth,
            &crypto.sk_pr,
            &half.real_message2,
            &half.ni,
            &my_id,
        );
        let mut payloads = vec![Payload::IdR(my_id), Payload::Auth(my_auth)];
        let child = self.responder_child(sa, &request, &half);
        match &child {
            Ok((c, answer)) => {
                payloads.push(Payload::Sa(answer.clone()));
                payloads.push(Payload::TsI(ts::to_payload(&c.remote_ts)));
                payloads.push(Payload::TsR(ts::to_payload(&c.local_ts)));
            }
            Err(e) => payloads.extend(e.to_notify().map(Payload::Notify)),
        }
        let t = sa.send_response(ExchangeType::IKE_AUTH, msg_id, &payloads);
        self.out.transmits.push_back(t);
        sa.peer_id = Some(id.clone());
        // §2.4: INITIAL_CONTACT replaces the SAs of the same authenticated
        // identity at the same address; an anonymous peer replaces nothing.
        if request.notify(NotifyType::INITIAL_CONTACT).is_some() {
            if how == PeerAuthenticated::Ed25519 {
                self.replace_peer(sa.remote.ip(), id, sa.id);
            } else {
                self.out.stats.initial_contact_ignored += 1;
            }
        }
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

    fn responder_child(
        &mut self,
        sa: &SaCore,
        request: &Message,
        half: &HalfOpen,
    ) -> Result<(crate::ike::endpoint::ChildSa, crate::ike::message::Sa), RequestError> {
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
            .apply(&tsi, &tsr, sa.remote.ip(), sa.local.ip())
            .ok_or(RequestError::TsUnacceptable)?;
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
        };
        Ok((
            child_sa::keyed(params, Side::Responder, None, &half.ni, &half.nr),
            answer,
        ))
    }
}

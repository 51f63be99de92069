//! IKE_AUTH (RFC 7296 §1.2, §2.15): each side proves its identity over the
//! IKE_SA_INIT messages, and the first CHILD SA is created.
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {IDi, N(INITIAL_CONTACT), AUTH, SAi2, TSi, TSr}  -->
//!           <--  HDR, SK {IDr, [N(INITIAL_CONTACT),] AUTH, SAr2, TSi, TSr}
//! ```
//!
//! INITIAL_CONTACT (§2.4) says "I have no other IKE SA with you": the
//! receiver forgets the ones it still has with that identity at that address
//! (they died with the sender's restart), but only from a peer that signed.
//! The initiator sends it in every IKE_AUTH (`Config::initial_contact`); the
//! responder when it has no other IKE SA with anyone at the initiator's
//! address (`SaIndex::others_at`), after honouring the initiator's own. So a
//! host that restarted tells its peers in whichever role it meets them first.
//!
//! Authentication is RFC 7427 method 14 with Ed25519 (RFC 8420) or NULL
//! (method 13, RFC 7619). The peer's key comes from the caller: with
//! `connect(peer: Some(..))` or in answer to [`Event::AuthorizePeer`]; while the
//! caller decides, the message is held (responder: the request; initiator: the
//! response) and nothing is sent. A responder that cannot authenticate the
//! initiator answers N(AUTHENTICATION_FAILED) and forgets the SA (§2.21.2).

use std::net::IpAddr;
use std::time::Instant;

use crate::ike::config::{Config, LocalAuth, MAX_PEER_KEYS, PeerAuth};
use crate::ike::endpoint::Endpoint;
use crate::ike::event::{Event, PeerAuthenticated};
use crate::ike::failure::{AuthFailure, Failure};
use crate::ike::keys::{SkP, null_auth, signed_octets, verify_null_auth};
use crate::ike::message::{
    Auth, AuthMethod, Identity, Message, Notify, NotifyType, Payload, PayloadType,
};
use crate::ike::sa::SaCore;
use crate::ike::ts;

pub(super) fn id_body(id: &Identity) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.buffer_len());
    id.emit(&mut out);
    out
}

/// This host's AUTH payload (§2.15 with RFC 7427 / RFC 7619).
pub(super) fn own_auth(
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

/// Checks the peer's AUTH payload against what the caller said about the
/// peer; with Ed25519, also which of its keys signed (the index).
pub(super) fn verify_auth_by(
    peer: &PeerAuth,
    sk_p: &SkP,
    real_message: &[u8],
    own_nonce: &[u8],
    id: &Identity,
    auth: &Auth,
) -> Result<(PeerAuthenticated, Option<usize>), AuthFailure> {
    let octets = signed_octets(real_message, own_nonce, sk_p, &id_body(id));
    match (peer, auth.method) {
        (PeerAuth::Ed25519(keys), AuthMethod::DIGITAL_SIGNATURE) => {
            // Every published key is a candidate (a rollover publishes two);
            // at most MAX_PEER_KEYS signature checks per message.
            let mut last = None;
            for (i, key) in keys.iter().take(MAX_PEER_KEYS).enumerate() {
                match key.verify_auth_data(&octets, &auth.data) {
                    Ok(()) => return Ok((PeerAuthenticated::Ed25519, Some(i))),
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
                Ok((PeerAuthenticated::Null, None))
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

pub(super) fn ts_of(
    m: &Message,
    ty: PayloadType,
) -> Option<Vec<crate::ike::message::AddrSelector>> {
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
pub(super) fn local_id(config: &Config, auth: &LocalAuth, sa_local: IpAddr) -> Identity {
    match (auth, &config.local_id) {
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

mod initiator;
mod responder;
mod vouch;

impl Endpoint {
    /// Both roles: the peer's IKE_AUTH message `msg` (request or response)
    /// carries INITIAL_CONTACT (§2.4). From a peer that signed as `id`, its
    /// other IKE SAs at this address are forgotten (reason `Replaced`, with
    /// their CHILD SAs, as events); from an anonymous one it replaces nothing
    /// and is counted (anyone can claim an address ID with AUTH NULL).
    pub(super) fn honour_initial_contact(
        &mut self,
        sa: &SaCore,
        msg: &Message,
        id: &Identity,
        how: PeerAuthenticated,
    ) {
        if msg.notify(NotifyType::INITIAL_CONTACT).is_none() {
            return;
        }
        if how != PeerAuthenticated::Ed25519 {
            self.out.stats.initial_contact_ignored += 1;
            return;
        }
        let before = self.sas.len();
        self.replace_peer(sa.remote.ip(), id, sa.id);
        let replaced = before.saturating_sub(self.sas.len());
        self.out.stats.initial_contact_replaced += replaced as u64;
    }

    /// Whether this host has an IKE SA with someone at `addr`: authenticated
    /// (any identity), or a handshake it started and that is still under way
    /// (responder handshakes under way do not count: anyone can start one).
    /// The same count decides whether a responder sends INITIAL_CONTACT.
    pub fn has_sa_with(&self, addr: IpAddr) -> bool {
        self.index.any_at(addr)
    }

    /// An N(INITIAL_CONTACT) payload to send, counted.
    pub(super) fn initial_contact(&mut self) -> Payload {
        self.out.stats.initial_contact_sent += 1;
        Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, Vec::new()))
    }

    /// Both roles: the IKE SA is authenticated (its next state is
    /// `State::Established`).
    pub(super) fn establish(&mut self, now: Instant, sa: &mut SaCore, how: PeerAuthenticated) {
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
}

impl crate::ike::endpoint::Endpoint {
    /// Replaces this host's credential and identity (a host key rolled over,
    /// `oemesh reload`). Every IKE_AUTH from now on signs with the new key:
    /// those of new IKE SAs, also of half-open ones that have not reached
    /// IKE_AUTH yet. Established SAs are not re-authenticated; they live on
    /// until they are rekeyed or closed (a rekey of an IKE SA, §2.18, carries
    /// no AUTH).
    pub fn set_local(
        &mut self,
        auth: crate::ike::config::LocalAuth,
        id: crate::ike::message::Identity,
    ) {
        self.config.local_auth = auth;
        self.config.local_id = id;
    }
}

impl Endpoint {
    /// INITIAL_CONTACT (§2.4) from a peer that signed as `id` at `addr`: it
    /// has no other SAs with us any more; forget those of the same identity at
    /// the same address (reason `Replaced`), found in the `by_peer` index, not
    /// by a scan. Call it only for an authenticated peer: an anonymous one
    /// replaces nothing.
    pub(crate) fn replace_peer(&mut self, addr: IpAddr, id: &Identity, except: u64) {
        let stale = self.index.peers(addr, id, except);
        for sid in stale {
            if let Some(sa) = self.sas.remove(&sid) {
                self.discard(sa, Some(Failure::Replaced));
            }
        }
    }
}

//! Where an IKE SA is (rustls style: one struct per state, moved by value):
//! the handshake states of IKE_SA_INIT (`sa_init`) and IKE_AUTH (`auth`),
//! what each holds, and what a step in them leads to. The exchanges' logic
//! lives in the files named after them; this module only defines their data,
//! so that the SA record and the endpoint need not import the exchanges.

use std::time::Instant;

use crate::crypto::ed25519::Ed25519PublicKey;
use crate::crypto::x25519::X25519Secret;
use crate::ike::config::PeerAuth;
use crate::ike::event::{PeerAuthenticated, TrafficSelectors};
use crate::ike::failure::Failure;
use crate::ike::message::{DhGroup, Message};

/// What becomes of an IKE SA after a step.
#[derive(Debug)]
pub(crate) enum Fate {
    Keep,
    /// Forget it; with a reason, the caller is told it is gone (if it was up).
    Remove(Option<Failure>),
}

/// Where a handshake step leads: the SA's next state, or its end (with a
/// reason the caller is told, if the SA was up).
pub(crate) type Step = Result<State, Option<Failure>>;

/// Where the IKE SA is (rustls style: one struct per state).
#[derive(Debug)]
pub(crate) enum State {
    /// Initiator: IKE_SA_INIT request sent (§1.2).
    InitSent(Box<InitSent>),
    /// Initiator: IKE_AUTH request sent.
    AuthSent(Box<AuthSent>),
    /// Initiator: IKE_AUTH response held until the caller names the peer's key.
    InitiatorAuthorize(Box<InitiatorAuthorize>),
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    HalfOpen(Box<HalfOpen>),
    /// Responder: IKE_AUTH request held until the caller names the peer's key.
    ResponderAuthorize(Box<ResponderAuthorize>),
    /// Initiator: the responder's AUTH verified, its FQDN identity held until
    /// the caller confirms that the name resolves to its address.
    InitiatorConfirm(Box<InitiatorConfirm>),
    /// Initiator: the responder authenticated, its answered TSr wider than
    /// the destination held until the caller says what DNS vouches for.
    InitiatorVouch(Box<InitiatorVouch>),
    /// Authenticated; CREATE_CHILD_SA and INFORMATIONAL exchanges run.
    Established,
    /// Replaced by a rekey, or a collision's loser: only INFORMATIONAL runs,
    /// until it is deleted or `until` passes (§2.8).
    Retiring { until: Instant },
}

impl State {
    pub(crate) fn is_half_open_responder(&self) -> bool {
        matches!(self, State::HalfOpen(_) | State::ResponderAuthorize(_))
    }

    /// Whether the handshake is over (authenticated, live or being replaced).
    pub(crate) fn is_authenticated(&self) -> bool {
        matches!(self, State::Established | State::Retiring { .. })
    }
}

/// Initiator: IKE_SA_INIT sent.
#[derive(Debug)]
pub(crate) struct InitSent {
    pub(crate) dh: X25519Secret,
    pub(crate) group: DhGroup,
    pub(crate) ni: Vec<u8>,
    pub(crate) cookie: Option<Vec<u8>>,
    /// The request as sent, without the non-ESP marker (RealMessage1, §2.15).
    pub(crate) request: Vec<u8>,
    pub(crate) peer: Option<PeerAuth>,
    pub(crate) ts: TrafficSelectors,
    pub(crate) deadline: Instant,
    pub(crate) retries: u32,
}

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
    /// Behind a NAT: an address was asked for (CP(CFG_REQUEST), §3.15) and
    /// `ts.local` is the whole family, for the responder to narrow to it.
    pub(crate) asked_address: bool,
}

/// Initiator: the IKE_AUTH response, held for [`Endpoint::authorize`](crate::ike::endpoint::Endpoint::authorize).
#[derive(Debug)]
pub(crate) struct InitiatorAuthorize {
    pub(crate) sent: AuthSent,
    pub(crate) response: Message,
}

/// Initiator: the responder's AUTH verified under an FQDN identity, held for
/// [`Endpoint::confirm_identity`](crate::ike::endpoint::Endpoint::confirm_identity) (the name must resolve to its address).
#[derive(Debug)]
pub(crate) struct InitiatorConfirm {
    pub(crate) sent: AuthSent,
    pub(crate) response: Message,
    pub(crate) how: PeerAuthenticated,
    /// The key that signed (Ed25519).
    pub(crate) signer: Option<Ed25519PublicKey>,
}

/// Initiator: the responder is authenticated and bound; its TSr answer holds
/// selectors beyond the destination (a gateway's site), held for
/// [`Endpoint::vouch_responder_ts`](crate::ike::endpoint::Endpoint::vouch_responder_ts).
#[derive(Debug)]
pub(crate) struct InitiatorVouch {
    pub(crate) sent: AuthSent,
    pub(crate) response: Message,
    pub(crate) how: PeerAuthenticated,
    pub(crate) signer: Ed25519PublicKey,
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

/// Responder: the IKE_AUTH request, held for [`Endpoint::authorize`](crate::ike::endpoint::Endpoint::authorize).
#[derive(Debug)]
pub(crate) struct ResponderAuthorize {
    pub(crate) half: HalfOpen,
    pub(crate) request: Message,
    pub(crate) msg_id: u32,
}

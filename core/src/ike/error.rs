//! Why this host refused a peer's request, and the error notification each
//! reason puts in the response (RFC 7296 §2.21, §3.10.1).

use crate::crypto::CryptoError;
use crate::ike::failure::AuthFailure;
use crate::ike::message::{self, DhGroup, NotifyType, PayloadType};

/// A refused request. [`RequestError::notify_type`] names the notification the
/// response carries; `None` means the message is dropped without an answer
/// (an ICV failure, §2.21.2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The message did not parse (§2.21.1, §3.10.1).
    #[error("malformed message: {0}")]
    Syntax(#[from] message::Error),
    /// A payload the exchange needs is missing (§3.10.1 INVALID_SYNTAX).
    #[error("{0:?} payload missing")]
    MissingPayload(PayloadType),
    /// A nonce outside 16..=256 octets (§2.10, §3.9).
    #[error("nonce of {0} bytes outside 16..=256")]
    NonceLength(usize),
    /// No proposal had a transform set this host accepts (§2.7).
    #[error("no acceptable proposal")]
    NoProposalChosen,
    /// The KE payload's group is not the chosen one (§1.2, §1.3).
    #[error("KE payload for {got:?}, {wanted:?} is required")]
    InvalidKe {
        /// The group of the KE payload received.
        got: DhGroup,
        /// The group of the chosen proposal.
        wanted: DhGroup,
    },
    /// The KE data was not a usable public value (RFC 8031 §2.2).
    #[error("bad key exchange value: {0}")]
    KeyExchange(CryptoError),
    /// The peer's AUTH did not verify, or the caller refused the peer (§2.15, §2.21.2).
    #[error("authentication failed: {0}")]
    Authentication(AuthFailure),
    /// Narrowing left no traffic selector (§2.9).
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    /// The CHILD SA the request names does not exist (§2.25, RFC 7296 §3.10.1).
    #[error("no CHILD SA with SPI {0:#010x}")]
    ChildSaNotFound(u32),
    /// The request collides with an exchange in progress (§2.25).
    #[error("temporary failure: {0}")]
    TemporaryFailure(&'static str),
    /// CREATE_CHILD_SA for an additional CHILD SA, which this host does not do (§1.3).
    #[error("no additional CHILD SAs")]
    NoAdditionalSas,
    /// A configuration request (CP, §3.15) this host does not grant.
    #[error("address request refused: {0}")]
    Address(AddressRefusal),
}

/// Why a responder gave no address to an initiator that asked (RFC 7296
/// §3.15.4: INTERNAL_ADDRESS_FAILURE, or INVALID_SYNTAX for a request that
/// cannot be read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressRefusal {
    /// Its NAT_DETECTION_SOURCE_IP matched: its own address is the one it
    /// comes from, and it may use that.
    #[error("the initiator is not behind a NAT")]
    NotBehindNat,
    /// The request's attributes do not add up.
    #[error("malformed CP payload: {0}")]
    Malformed(message::CpError),
    /// It asks for no address of the IKE SA's family.
    #[error("no address of the IKE SA's family asked for")]
    OtherFamily,
    /// No pool of that family, or it is exhausted.
    #[error("{0}")]
    Pool(crate::ike::pool::PoolError),
}

impl AddressRefusal {
    /// Every reason, in the order of `Stats::addresses_refused`.
    pub const ALL: [&'static str; 4] = ["not_behind_nat", "malformed", "other_family", "pool"];

    /// Its index in [`Self::ALL`] (the metric label).
    pub fn index(self) -> usize {
        match self {
            AddressRefusal::NotBehindNat => 0,
            AddressRefusal::Malformed(_) => 1,
            AddressRefusal::OtherFamily => 2,
            AddressRefusal::Pool(_) => 3,
        }
    }
}

impl RequestError {
    /// The error notification this refusal calls for.
    pub fn notify_type(&self) -> Option<NotifyType> {
        Some(match self {
            RequestError::Syntax(e) => return e.notify_type(),
            RequestError::MissingPayload(_)
            | RequestError::NonceLength(_)
            | RequestError::KeyExchange(_) => NotifyType::INVALID_SYNTAX,
            RequestError::NoProposalChosen => NotifyType::NO_PROPOSAL_CHOSEN,
            RequestError::InvalidKe { .. } => NotifyType::INVALID_KE_PAYLOAD,
            RequestError::Authentication(_) => NotifyType::AUTHENTICATION_FAILED,
            RequestError::TsUnacceptable => NotifyType::TS_UNACCEPTABLE,
            RequestError::ChildSaNotFound(_) => NotifyType::CHILD_SA_NOT_FOUND,
            RequestError::TemporaryFailure(_) => NotifyType::TEMPORARY_FAILURE,
            RequestError::NoAdditionalSas => NotifyType::NO_ADDITIONAL_SAS,
            RequestError::Address(AddressRefusal::Malformed(_)) => NotifyType::INVALID_SYNTAX,
            RequestError::Address(_) => NotifyType::INTERNAL_ADDRESS_FAILURE,
        })
    }

    /// The Notify payload to answer with (data included where §3.10.1 defines it).
    pub fn to_notify(&self) -> Option<message::Notify> {
        match self {
            RequestError::Syntax(e) => e.to_notify(),
            RequestError::InvalidKe { wanted, .. } => {
                Some(message::Notify::invalid_ke_payload(*wanted))
            }
            other => Some(message::Notify::new(other.notify_type()?, Vec::new())),
        }
    }
}

/// Checks a nonce's size (§2.10: at least 16 octets; §3.9: at most 256).
pub(crate) fn check_nonce(nonce: &[u8]) -> Result<(), RequestError> {
    if (16..=256).contains(&nonce.len()) {
        Ok(())
    } else {
        Err(RequestError::NonceLength(nonce.len()))
    }
}

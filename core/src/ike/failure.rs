//! Why an IKE SA or an exchange of this host ended ([`Failure`]), typed down
//! to what the peer sent: the error notify it refused with ([`Refusal`]), why
//! its AUTH did not verify ([`AuthFailure`]), which rule of RFC 7296 its
//! response broke ([`ProtocolError`]). `Display` of each is a sentence (or a
//! clause of one) for logs.

use std::fmt;

use thiserror::Error;

use crate::crypto::CryptoError;
use crate::ike::message::{AuthMethod, DhGroup, Identity, NotifyType, Proposal, Sa};
use crate::trust::IdentityRefused;

/// Why an IKE SA or exchange ended. `Display` is a sentence for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No response before the deadline.
    Timeout {
        /// Which exchange was outstanding.
        exchange: &'static str,
        /// Requests sent.
        sends: u32,
    },
    /// The peer answered with an error notify (NO_PROPOSAL_CHOSEN, AUTHENTICATION_FAILED, …),
    /// or without what this host asked for.
    PeerRefused(Refusal),
    /// The peer's AUTH did not verify against the key given.
    AuthenticationFailed(AuthFailure),
    /// The caller refused the peer in `authorize`.
    NotAuthorized,
    /// The peer's identity is not bound to its address ([`crate::trust`]).
    IdentityRefused(IdentityRefused),
    /// An anonymous SA evicted to make room for a newer one (the idlest goes
    /// first, per source and in total).
    Evicted,
    /// No proposal in common.
    NoProposalChosen,
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The peer deleted the SA.
    DeletedByPeer,
    /// This host closed it.
    Closed,
    /// The peer started over (INITIAL_CONTACT from the same identity).
    Replaced,
    /// The IKE SA reached its hard lifetime without a successful rekey.
    Expired,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout { exchange, sends } => {
                let s = if *sends == 1 { "" } else { "s" };
                write!(f, "no response to {exchange} after {sends} send{s}")
            }
            Failure::PeerRefused(why) => write!(f, "the peer refused: {why}"),
            Failure::AuthenticationFailed(why) => {
                write!(f, "the peer failed authentication: {why}")
            }
            Failure::NotAuthorized => f.write_str("the peer was not authorized"),
            Failure::IdentityRefused(why) => write!(f, "the peer's identity is refused: {why}"),
            Failure::Evicted => {
                f.write_str("evicted: the idlest anonymous SA made room for a new one")
            }
            Failure::NoProposalChosen => {
                f.write_str("no proposal in common with the peer (NO_PROPOSAL_CHOSEN)")
            }
            Failure::Protocol(why) => write!(f, "the peer broke the protocol: {why}"),
            Failure::DeletedByPeer => f.write_str("the peer deleted the IKE SA"),
            Failure::Closed => f.write_str("closed by this host"),
            Failure::Replaced => {
                f.write_str("the peer started over (INITIAL_CONTACT) and replaced the IKE SA")
            }
            Failure::Expired => {
                f.write_str("the IKE SA reached its hard lifetime without being rekeyed")
            }
        }
    }
}

impl Failure {
    /// A response to `exchange` without the `payloads` it needs.
    pub(crate) fn missing(exchange: Exchange, payloads: &'static str) -> Self {
        Failure::Protocol(ProtocolError::MissingPayload {
            exchange,
            missing: payloads,
        })
    }
}

impl From<ProtocolError> for Failure {
    fn from(e: ProtocolError) -> Self {
        Failure::Protocol(e)
    }
}

/// The exchange of this host that a response answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// IKE_SA_INIT (§1.2).
    IkeSaInit,
    /// IKE_AUTH (§1.2).
    IkeAuth,
    /// The first CHILD SA, set up inside IKE_AUTH.
    FirstChildSa,
    /// CREATE_CHILD_SA rekeying a CHILD SA (§1.3.3).
    RekeyChildSa,
    /// CREATE_CHILD_SA rekeying the IKE SA (§1.3.2).
    RekeyIkeSa,
}

impl Exchange {
    /// What a response to it is called in a log line ("IKE_AUTH response").
    fn response(self) -> &'static str {
        match self {
            Exchange::IkeSaInit => "IKE_SA_INIT response",
            Exchange::IkeAuth | Exchange::FirstChildSa => "IKE_AUTH response",
            Exchange::RekeyChildSa => "CREATE_CHILD_SA response",
            Exchange::RekeyIkeSa => "IKE SA rekey response",
        }
    }
}

/// How the peer refused an exchange of this host.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// It answered with this error notify (§3.10.1).
    #[error("{}", notify_sentence(*.notify, *.exchange))]
    Notify {
        /// What it answered.
        exchange: Exchange,
        /// The notify type it sent.
        notify: NotifyType,
    },
    /// An IKE_AUTH response with neither AUTH nor an error notify.
    #[error("IKE_AUTH response without AUTH")]
    NoAuth,
    /// It authenticated, but its answer for the first CHILD SA is unusable
    /// (the IKE SA is deleted: it is useless without it).
    #[error("{0}")]
    FirstChildSa(ProtocolError),
}

fn notify_sentence(notify: NotifyType, exchange: Exchange) -> String {
    let what = match exchange {
        Exchange::IkeSaInit => "in answer to IKE_SA_INIT",
        Exchange::IkeAuth => "in answer to IKE_AUTH",
        Exchange::FirstChildSa => "for the first CHILD SA",
        Exchange::RekeyChildSa => "in answer to a CHILD SA rekey",
        Exchange::RekeyIkeSa => "in answer to an IKE SA rekey",
    };
    format!("{notify:?} {what}")
}

/// Why the peer's AUTH payload did not verify (§2.15).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AuthFailure {
    /// A signature, but the caller gave no key (an empty key list).
    #[error("no key to check the Ed25519 AUTH of {id:?} against")]
    NoKey {
        /// The peer's ID.
        id: Identity,
    },
    /// The signature verifies with none of the keys tried.
    #[error("{}", bad_signature(.id, *.keys, .error))]
    BadSignature {
        /// The peer's ID.
        id: Identity,
        /// How many keys were tried (at most `MAX_PEER_KEYS`).
        keys: usize,
        /// Why the last one refused it.
        error: CryptoError,
    },
    /// AUTH NULL whose MAC does not verify (RFC 7619).
    #[error("NULL AUTH of {id:?} does not verify")]
    NullAuth {
        /// The peer's ID.
        id: Identity,
    },
    /// A signature from a peer the caller allowed to be anonymous only.
    #[error("{id:?} signed, but no key to check the signature against was given")]
    UnexpectedSignature {
        /// The peer's ID.
        id: Identity,
    },
    /// An AUTH method other than the one the caller expects.
    #[error("{id:?} used AUTH method {method:?}, which was not expected")]
    UnexpectedMethod {
        /// The peer's ID.
        id: Identity,
        /// The method it used.
        method: AuthMethod,
    },
}

fn bad_signature(id: &Identity, keys: usize, error: &CryptoError) -> String {
    if keys == 1 {
        format!("Ed25519 AUTH of {id:?}: {error}")
    } else {
        format!("Ed25519 AUTH of {id:?} verifies with none of its {keys} published keys: {error}")
    }
}

/// Which rule of RFC 7296 a response of the peer broke.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// It lacks payloads the exchange requires.
    #[error("{} without {missing}", .exchange.response())]
    MissingPayload {
        /// The exchange it answers.
        exchange: Exchange,
        /// Which payloads ("SA, KE or Nonce").
        missing: &'static str,
    },
    /// The responder kept answering IKE_SA_INIT with a COOKIE (§2.6).
    #[error("the responder keeps asking for a COOKIE")]
    CookieLoop,
    /// INVALID_KE_PAYLOAD naming a group this host cannot use, or again (§1.2).
    #[error("the responder asks for key exchange group {0:?}, which this host does not support")]
    UnsupportedGroup(DhGroup),
    /// The responder's KE is not for the group offered.
    #[error("the responder's KE is for {0:?}")]
    KeGroup(DhGroup),
    /// A nonce outside 16..=256 octets (§2.10, §3.9).
    #[error("nonce of {0} bytes outside 16..=256")]
    NonceLength(usize),
    /// The responder's IKE SPI is zero (§3.1).
    #[error("the responder's SPI is zero")]
    ZeroSpi,
    /// The KE data was not a usable public value (RFC 8031 §2.2).
    #[error("{0}")]
    KeyExchange(CryptoError),
    /// The responder chose other than one IKE proposal (§3.3.6).
    #[error("the responder chose {0} IKE proposals, not one")]
    IkeProposalCount(usize),
    /// The responder chose an IKE proposal that was not offered (§3.3.6).
    #[error("the responder chose an IKE proposal that was not offered: {0:?}")]
    IkeProposalNotOffered(Box<Proposal>),
    /// The responder chose an ESP proposal that was not offered (§3.3.6).
    #[error("the responder chose an ESP proposal that was not offered: {0:?}")]
    EspProposalNotOffered(Box<Sa>),
    /// The responder chose PFS for a CHILD SA rekey but sent no KE (§1.3.3).
    #[error("PFS chosen without a KE payload")]
    PfsWithoutKe,
    /// The responder's selectors are wider than those proposed (§2.9).
    #[error("the responder's traffic selectors are not within the proposed ones")]
    TsNotProposed,
    /// A rekeyed CHILD SA's selectors are wider than the old one's (§2.9).
    #[error("the rekeyed CHILD SA's selectors are not within the old ones")]
    RekeyedTsWider,
    /// An IKE SA rekey response with another KE group or a zero SPI (§1.3.2).
    #[error("bad KE group or SPI in the IKE SA rekey response")]
    RekeyIkeKeOrSpi,
    /// A response that needs the IKE SA's keys before it has any.
    #[error("no keys")]
    NoKeys,
    /// Behind a NAT, the responder's CP(CFG_REPLY) could not be read (§3.15).
    #[error("unusable CP reply: {0}")]
    BadConfigReply(crate::ike::message::CpError),
    /// The address the responder assigned is not the one TSi names (§3.15.4).
    #[error("the responder assigned {assigned} but narrowed TSi to something else")]
    AddressNotInTs {
        /// The address its CP reply gave.
        assigned: std::net::IpAddr,
    },
    /// Behind a NAT, the responder gave no address: no CP reply, and TSi not
    /// narrowed to one host.
    #[error("behind a NAT, the responder assigned no address (no CP reply, TSi not one host)")]
    NoAddressAssigned,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sentences logs had when these payloads were strings.
    #[test]
    fn display_reads_as_the_strings_did() {
        let id = Identity::Ipv4("192.0.2.7".parse().expect("address"));
        let cases = [
            (
                Failure::PeerRefused(Refusal::Notify {
                    exchange: Exchange::IkeSaInit,
                    notify: NotifyType::TEMPORARY_FAILURE,
                }),
                "the peer refused: TEMPORARY_FAILURE in answer to IKE_SA_INIT".to_string(),
            ),
            (
                Failure::PeerRefused(Refusal::Notify {
                    exchange: Exchange::FirstChildSa,
                    notify: NotifyType::TS_UNACCEPTABLE,
                }),
                "the peer refused: TS_UNACCEPTABLE for the first CHILD SA".to_string(),
            ),
            (
                Failure::PeerRefused(Refusal::NoAuth),
                "the peer refused: IKE_AUTH response without AUTH".to_string(),
            ),
            (
                Failure::missing(Exchange::IkeSaInit, "SA, KE or Nonce"),
                "the peer broke the protocol: IKE_SA_INIT response without SA, KE or Nonce"
                    .to_string(),
            ),
            (
                Failure::missing(Exchange::RekeyIkeSa, "KE"),
                "the peer broke the protocol: IKE SA rekey response without KE".to_string(),
            ),
            (
                ProtocolError::NonceLength(8).into(),
                "the peer broke the protocol: nonce of 8 bytes outside 16..=256".to_string(),
            ),
            (
                Failure::AuthenticationFailed(AuthFailure::BadSignature {
                    id: id.clone(),
                    keys: 2,
                    error: CryptoError::BadSignature,
                }),
                format!(
                    "the peer failed authentication: Ed25519 AUTH of {id:?} verifies with none \
                     of its 2 published keys: {}",
                    CryptoError::BadSignature
                ),
            ),
            (
                Failure::AuthenticationFailed(AuthFailure::UnexpectedSignature { id: id.clone() }),
                format!(
                    "the peer failed authentication: {id:?} signed, but no key to check the \
                     signature against was given"
                ),
            ),
        ];
        for (failure, sentence) in cases {
            assert_eq!(failure.to_string(), sentence);
        }
    }
}

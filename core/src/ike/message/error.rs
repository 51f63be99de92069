//! Why a received IKE message was refused, and which notification that causes.

use super::enums::{IdType, NotifyType, PayloadType, ProtocolId, TsType};
use super::payload::Notify;
use super::sk::CryptoError;

/// A message that did not parse (or, for [`Error::IvLength`], could not be built).
///
/// Each variant is one reason; [`Error::notify_type`] says which error notification
/// (RFC 7296 §3.10.1) it calls for, and [`Error::to_notify`] builds that payload.
/// Whether to send it at all is the state machine's decision (RFC 7296 §2.21:
/// errors in unauthenticated messages are usually only logged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A structure ends before its fixed fields or announced contents.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// the structure being read
        what: &'static str,
        /// bytes needed
        need: usize,
        /// bytes present
        have: usize,
    },
    /// The IKE header's Length differs from the datagram's size (RFC 7296 §3.1).
    #[error("IKE header length {header} differs from the message size {datagram}")]
    LengthMismatch {
        /// the Length field
        header: u32,
        /// bytes received
        datagram: usize,
    },
    /// The header's major version is not 2 (RFC 7296 §2.5, §3.1).
    #[error("IKE major version {0} is not 2")]
    InvalidMajorVersion(u8),
    /// A generic payload header announces a length below 4 or beyond the message.
    #[error("{payload:?} payload length {length} outside 4..={available}")]
    PayloadLength {
        /// the payload's type
        payload: PayloadType,
        /// its Payload Length field
        length: u16,
        /// bytes left in the message, header included
        available: usize,
    },
    /// The payload chain ended (Next Payload 0) with bytes left over.
    #[error("{count} bytes after the last payload")]
    TrailingBytes {
        /// bytes left over
        count: usize,
    },
    /// A payload this code does not understand has the critical bit set (RFC 7296 §2.5).
    #[error("unsupported critical payload {0:?}")]
    UnsupportedCriticalPayload(PayloadType),
    /// A payload whose body has a fixed length has another one.
    #[error("{payload:?} payload body of {length} bytes, expected {expected}")]
    BodyLength {
        /// the payload's type
        payload: PayloadType,
        /// body bytes present
        length: usize,
        /// body bytes the payload needs
        expected: usize,
    },
    /// A Proposal or Transform length is below its fixed part or beyond its container (§3.3.1, §3.3.2).
    #[error("{what} length {length} outside {min}..={available}")]
    SubstructureLength {
        /// "proposal", "transform" or "transform attribute"
        what: &'static str,
        /// the announced length
        length: usize,
        /// the smallest valid length
        min: usize,
        /// bytes left in the container
        available: usize,
    },
    /// A Last Substruc field is neither the continuation value nor 0 at the end (§3.3.1, §3.3.2).
    #[error("{what}: Last Substruc {value} where {expected} was expected")]
    LastSubstruc {
        /// "proposal" or "transform"
        what: &'static str,
        /// the field's value
        value: u8,
        /// 0 for the last substructure, 2 (proposal) or 3 (transform) otherwise
        expected: u8,
    },
    /// A proposal's Num Transforms differs from the transforms it holds (§3.3.1).
    #[error("proposal announces {announced} transforms but holds {found}")]
    TransformCount {
        /// Num Transforms
        announced: u8,
        /// transforms present
        found: usize,
    },
    /// An ID payload's data does not have the size its ID Type requires (§3.5).
    #[error("{ty:?} identification of {length} bytes, expected {expected}")]
    IdLength {
        /// the ID Type
        ty: IdType,
        /// data bytes present
        length: usize,
        /// data bytes the type requires
        expected: usize,
    },
    /// A traffic selector's Selector Length is wrong for its TS Type (§3.13.1).
    #[error("{ty:?} traffic selector of length {length}")]
    SelectorLength {
        /// the TS Type
        ty: TsType,
        /// Selector Length
        length: u16,
    },
    /// A TS payload's Number of TSs differs from the selectors it holds (§3.13).
    #[error("TS payload announces {announced} selectors but holds {found}")]
    SelectorCount {
        /// Number of TSs
        announced: u8,
        /// selectors present
        found: usize,
    },
    /// A Delete payload's SPI Size times Num of SPIs does not fill its body (§3.11).
    #[error("Delete payload: {count} SPIs of {size} bytes do not fill {available} bytes")]
    DeleteSpis {
        /// SPI Size
        size: u8,
        /// Num of SPIs
        count: u16,
        /// bytes holding the SPIs
        available: usize,
    },
    /// A Delete payload's SPI Size does not fit its protocol: 0 with SPIs
    /// listed, anything but 0 and no SPIs for IKE, anything but 4 for ESP
    /// and AH (§3.11).
    #[error("Delete payload: {count} SPIs of size {size} for protocol {protocol:?}")]
    DeleteSpiSize {
        /// Protocol ID
        protocol: ProtocolId,
        /// SPI Size
        size: u8,
        /// Num of SPIs
        count: u16,
    },
    /// More payloads than one message may carry ([`super::MAX_PAYLOADS`]),
    /// outside and inside SK together.
    #[error("more than {limit} payloads in one message")]
    TooManyPayloads {
        /// the limit
        limit: usize,
    },
    /// More substructures of a kind than one payload may carry: proposals in
    /// an SA, attributes in a transform ([`super::payload::MAX_PROPOSALS`],
    /// [`super::payload::MAX_ATTRIBUTES`]).
    #[error("more than {limit} {what}s in one payload")]
    TooManySubstructures {
        /// "proposal" or "transform attribute"
        what: &'static str,
        /// the limit
        limit: usize,
    },
    /// The parsed message would take more memory than its size allows
    /// ([`super::parse_allocation_bound`]).
    #[error("the message would take more than {limit} bytes of memory to parse")]
    AllocationLimit {
        /// the budget of this message, in bytes
        limit: usize,
    },
    /// An SK or SKF payload that is not the last payload (RFC 7296 §3.14).
    #[error("encrypted payload is not the last payload")]
    SkNotLast,
    /// An SK or SKF payload inside the encrypted payloads.
    #[error("encrypted payload nested inside an encrypted payload")]
    NestedSk,
    /// A protected message was expected but there is no SK payload.
    #[error("message has no SK payload")]
    NotProtected,
    /// The SK payload is shorter than its IV and ICV (RFC 7296 §3.14).
    #[error("SK payload of {length} bytes is shorter than IV + ICV ({need})")]
    SkTooShort {
        /// SK body bytes
        length: usize,
        /// IV + ICV + pad length octet
        need: usize,
    },
    /// The AEAD refused the SK payload: the ICV did not verify.
    #[error("SK payload failed integrity check: {0}")]
    Crypto(#[from] CryptoError),
    /// After decryption, the Pad Length octet points before the start (RFC 7296 §3.14).
    #[error("pad length {pad} exceeds the {available} decrypted bytes before it")]
    PadLength {
        /// Pad Length
        pad: u8,
        /// bytes before the Pad Length octet
        available: usize,
    },
    /// Building a protected message: the IV is not the cipher's IV length. A local error.
    #[error("IV of {got} bytes, the cipher needs {expected}")]
    IvLength {
        /// bytes given
        got: usize,
        /// the cipher's IV length
        expected: usize,
    },
}

impl Error {
    /// The error notification this failure calls for, `None` where the message
    /// must be dropped silently (an SK payload that fails integrity, RFC 7296
    /// §2.21.2) or the error is local.
    pub fn notify_type(&self) -> Option<NotifyType> {
        match self {
            Error::InvalidMajorVersion(_) => Some(NotifyType::INVALID_MAJOR_VERSION),
            Error::UnsupportedCriticalPayload(_) => Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD),
            Error::Crypto(_) | Error::SkTooShort { .. } | Error::IvLength { .. } => None,
            Error::Truncated { .. }
            | Error::LengthMismatch { .. }
            | Error::PayloadLength { .. }
            | Error::TrailingBytes { .. }
            | Error::BodyLength { .. }
            | Error::SubstructureLength { .. }
            | Error::LastSubstruc { .. }
            | Error::TransformCount { .. }
            | Error::IdLength { .. }
            | Error::SelectorLength { .. }
            | Error::SelectorCount { .. }
            | Error::DeleteSpis { .. }
            | Error::DeleteSpiSize { .. }
            | Error::TooManyPayloads { .. }
            | Error::TooManySubstructures { .. }
            | Error::AllocationLimit { .. }
            | Error::SkNotLast
            | Error::NestedSk
            | Error::NotProtected
            | Error::PadLength { .. } => Some(NotifyType::INVALID_SYNTAX),
        }
    }

    /// Whether the message was refused for what it would cost to parse
    /// rather than for its syntax: too many payloads or substructures, or
    /// more memory than its size allows (issue 11). Such messages are
    /// dropped and counted like any other that does not parse; this tells
    /// them apart for logs and counters.
    pub fn is_resource_limit(&self) -> bool {
        matches!(
            self,
            Error::TooManyPayloads { .. }
                | Error::TooManySubstructures { .. }
                | Error::AllocationLimit { .. }
        )
    }

    /// The notification payload to answer with, data included: the payload type
    /// octet for UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 §3.10.1).
    pub fn to_notify(&self) -> Option<Notify> {
        let ty = self.notify_type()?;
        let data = match self {
            Error::UnsupportedCriticalPayload(payload) => vec![payload.0],
            _ => Vec::new(),
        };
        Some(Notify::new(ty, data))
    }
}

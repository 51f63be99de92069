//! Why an ESP packet was not sent or not accepted.

use crate::crypto::CryptoError;

/// Why [`OutboundSa::encapsulate`](super::OutboundSa::encapsulate) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncapError {
    /// The buffer cannot hold header, inner packet, trailer and ICV.
    #[error("buffer of {available} bytes too small for an ESP packet of {needed}")]
    BufferTooSmall {
        /// Bytes the ESP packet needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The inner packet is empty or not IPv4/IPv6 (tunnel mode carries IP).
    #[error("inner packet is not IPv4 or IPv6")]
    NotIp,
    /// The sequence number would cycle: the SA must be replaced (RFC 4303 §3.3.3).
    #[error("sequence number space exhausted; rekey")]
    SequenceExhausted,
    /// The SA reached a hard lifetime limit.
    #[error("SA hard lifetime expired")]
    Expired,
    /// The AEAD refused the input.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Why [`InboundSa::decapsulate`](super::InboundSa::decapsulate) dropped a
/// packet. Each variant has a counter in
/// [`InboundCounters`](super::InboundCounters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecapError {
    /// Shorter than header, minimal trailer and ICV.
    #[error("ESP packet truncated ({len} bytes)")]
    Truncated {
        /// Length received.
        len: usize,
    },
    /// The SPI is not this SA's (the caller routed it wrongly).
    #[error("SPI {got:#010x} is not this SA's ({expected:#010x})")]
    WrongSpi {
        /// This SA's SPI.
        expected: u32,
        /// The packet's SPI.
        got: u32,
    },
    /// The sequence number was already received (RFC 4303 §3.4.3).
    #[error("replayed sequence number {seq}")]
    Replayed {
        /// The (inferred) 64-bit sequence number.
        seq: u64,
    },
    /// The sequence number is left of the anti-replay window (or zero).
    #[error("sequence number {seq} outside the replay window")]
    OutsideWindow {
        /// The (inferred) sequence number, or the low 32 bits if it could not be
        /// inferred.
        seq: u64,
    },
    /// The ICV did not verify (RFC 4303 §3.4.4).
    #[error("ICV verification failed")]
    AuthenticationFailed,
    /// The padding is longer than the payload or not 1, 2, 3, ... (RFC 4303 §2.4).
    #[error("malformed ESP padding")]
    BadPadding,
    /// Next header is neither IPv4 (4) nor IPv6 (41).
    #[error("next header {0} is not IPv4 or IPv6")]
    BadNextHeader(u8),
    /// A dummy packet (next header 59, RFC 4303 §2.6): authentic, to be dropped.
    #[error("dummy packet (next header 59)")]
    Dummy,
    /// The SA reached a hard lifetime limit.
    #[error("SA hard lifetime expired")]
    Expired,
}

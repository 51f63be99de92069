//! Payloads this code does not interpret (RFC 7296 §2.5): kept whole so that they
//! round-trip, and skipped by the state machine.

/// A payload of a type [`super::Payload::parse`] does not interpret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// The payload type.
    pub ty: super::PayloadType,
    /// The critical bit. Always false in parsed payloads (a critical unknown
    /// payload is refused); set it to build a test message a peer must refuse.
    pub critical: bool,
    /// The body after the generic header.
    pub body: Vec<u8>,
}

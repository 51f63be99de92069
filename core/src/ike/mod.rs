//! IKEv2 (RFC 7296): the message codec and what carries it.
//!
//! - [`endpoint`]: the IKE SAs of a host: state machines, driven sans-IO.
//! - [`keys`]: the key schedule (SKEYSEED, SK_*, KEYMAT, AUTH octets).
//! - [`message`]: the header, payloads and SK protection, as values to build and
//!   parse; the state machines build on these.
//! - [`udp_encap`]: telling IKE, ESP and NAT-keepalives apart on UDP port 4500
//!   (RFC 3948 §2).
//! - [`retransmit`]: request retransmission with backoff under a deadline.

pub mod endpoint;
pub mod keys;
pub mod message;
pub mod retransmit;
pub mod udp_encap;

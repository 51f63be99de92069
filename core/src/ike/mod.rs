//! IKEv2 (RFC 7296): the message codec and what carries it.
//!
//! - [`keys`]: the key schedule (SKEYSEED, SK_*, KEYMAT, AUTH octets).
//! - [`message`]: the header, payloads and SK protection, as values to build and
//!   parse; the state machines build on these.
//! - [`udp_encap`]: telling IKE, ESP and NAT-keepalives apart on UDP port 4500
//!   (RFC 3948 §2).

pub mod keys;
pub mod message;
pub mod udp_encap;

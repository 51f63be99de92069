//! IKEv2 (RFC 7296): the message codec and what carries it.
//!
//! - [`message`]: the header, payloads and SK protection, as values to build and
//!   parse; the state machines build on these.
//! - [`udp_encap`]: telling IKE, ESP and NAT-keepalives apart on UDP port 4500
//!   (RFC 3948 §2).

pub mod message;
pub mod udp_encap;

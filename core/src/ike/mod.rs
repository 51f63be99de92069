//! IKEv2 (RFC 7296): the message codec, the key schedule and the state machines.
//!
//! - [`endpoint`]: the IKE SAs of a host, driven sans-IO: the public API.
//! - `sa_init`, `auth`, `create_child_sa`, `informational`: the four exchanges
//!   (§1.2–§1.4), one file each; `sa` is one IKE SA (SPIs, keys, message IDs,
//!   window), `child_sa` one CHILD SA.
//! - `proposal`, [`ts`], [`cookie`], [`nat`]: transform selection (§2.7),
//!   traffic selector narrowing (§2.9), stateless cookies (§2.6), NAT detection (§2.23).
//! - [`keys`]: the key schedule (SKEYSEED, SK_*, KEYMAT, AUTH octets).
//! - [`message`]: the header, payloads and SK protection, as values to build and
//!   parse; the state machines build on these.
//! - [`udp_encap`]: telling IKE, ESP and NAT-keepalives apart on UDP port 4500
//!   (RFC 3948 §2).
//! - [`retransmit`]: request retransmission with backoff under a deadline.
//! - [`error`]: why a peer's request was refused, and the notify it gets.

mod auth;
mod child_sa;
mod config;
pub mod cookie;
mod create_child_sa;
mod dispatch;
pub mod endpoint;
pub mod error;
mod event;
mod failure;
mod index;
mod informational;
pub mod keys;
pub mod message;
pub mod nat;
mod proposal;
pub mod retransmit;
mod sa;
mod sa_init;
mod sk_cipher;
mod state;
mod stats;
mod timers;
pub mod ts;
pub mod udp_encap;

//! IKEv2 (RFC 7296): the message codec, the key schedule and the state machines.
//!
//! - [`endpoint`]: the public API. `Endpoint` routes each datagram by this
//!   host's IKE SPI (§2.6) to one IKE SA, and owns only what SAs share: the
//!   cookie secrets, the limits and their counts (`index`), the timer index and
//!   the RNG. Its types live in `config` (`Config`, `PeerAuth`), `event`
//!   (`Event`, `ChildSa`, `Transmit`), `failure` (`Failure` and why: `Refusal`,
//!   `AuthFailure`, `ProtocolError`) and `stats` (`Stats`, `DropReason`), all
//!   re-exported from `endpoint`.
//! - `sa`: one IKE SA, `IkeSa { core, state }`: what it keeps whatever its
//!   state (SPIs, keys, message IDs, window, CHILD SAs) and its deadline;
//!   `state`: the handshake states, one struct each, moved by value through
//!   each step (`Step`: the next state or the SA's end).
//! - `dispatch`: a message inside an IKE SA, by state, request or response and
//!   Message ID (§2.1–§2.3), and the window of queued exchanges.
//! - The exchanges, one file (or directory) each, named after them:
//!   `sa_init` (§1.2), `auth` (§1.2, §2.15: `initiator`, `responder`),
//!   `create_child_sa` (§1.3: `rekey_child`, `rekey_ike`), `informational`
//!   (§1.4); `timers`: retransmission, lifetimes and liveness (§2.4, §2.8).
//!   These are `impl Endpoint` blocks; nothing imports them, so the modules
//!   form no cycle.
//! - `child_sa`: one CHILD SA; `proposal`, [`ts`], [`cookie`], [`nat`]:
//!   transform selection (§2.7), traffic selector narrowing (§2.9), stateless
//!   cookies (§2.6), NAT detection (§2.23).
//! - [`keys`]: the key schedule (SKEYSEED, SK_*, KEYMAT, AUTH octets).
//! - [`message`]: the header, payloads and SK protection, as values to build and
//!   parse; the state machines build on these. `sk_cipher`: the SK payload's AEADs.
//! - [`udp_encap`]: telling IKE, ESP and NAT-keepalives apart on UDP port 4500
//!   (RFC 3948 §2).
//! - [`retransmit`]: request retransmission with backoff under a deadline.
//! - [`error`]: why a peer's request was refused, and the notify it gets.

mod addresses;
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
pub mod pool;
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

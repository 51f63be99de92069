//! Opportunistic encryption: the decision, per destination, between private
//! (IKE + ESP), clear and blocked — sans-IO, like the rest of the crate.
//!
//! Packets to destinations without a cached [`Outcome`] go to
//! [`Machine::on_packet`]. The machine consults the [`Policy`], holds the
//! packets ([`hold`]), and tells its driver what to start through
//! [`Machine::poll_action`]: a DNS lookup of the destination's IPSECKEY
//! ([`Action::LookupKey`]), then IKE with the key's host or gateway
//! ([`Action::StartIke`]). The driver feeds the results back and finally gets one
//! of [`Action::Private`] (send the held packets encrypted), [`Action::PassClear`]
//! (install the bypass, send them in clear) or [`Action::Drop`], each with the
//! [`Outcome`] to cache until its `expires_at`.
//!
//! How to drive it (quinn-proto's model; nothing here reads a clock):
//!
//! 1. A packet to an undecided destination: [`Machine::on_packet`].
//! 2. DNS answers: [`Machine::on_dns_result`]; IKE results (also SAs the peer
//!    started): [`Machine::on_ike_result`]; IKE requests from peers (the engine's
//!    `AuthorizePeer`): [`Machine::on_ike_request`].
//! 3. After every call, drain [`Machine::poll_action`].
//! 4. Arm one timer for [`Machine::poll_timeout`]; when it fires, call
//!    [`Machine::handle_timeout`].
//! 5. Give emptied [`Held`] values back with [`Machine::recycle`]; take spare
//!    packet buffers with [`Machine::spare_buffer`].
//!
//! ```
//! use std::time::Instant;
//! use oemesh_core::oe::{
//!     Action, Cidr, Config, DnsResult, Dnssec, Group, GroupOptions, Machine, NoRecord, Policy,
//! };
//!
//! let oe: Cidr = "10.77.0.0/16".parse()?;
//! let options = [(Group::PrivateOrClear, GroupOptions::REQUIRE_AUTHENTICATED)];
//! let policy = Policy::new([(Group::PrivateOrClear, oe)], options)?;
//! let mut m = Machine::new(Config::default(), policy);
//! let now = Instant::now(); // the agent's clock, not the crate's
//! let dst = "10.77.0.4".parse()?;
//!
//! m.on_packet(now, dst, b"first packet".to_vec());
//! let Some(Action::LookupKey { name, .. }) = m.poll_action() else { panic!() };
//! assert_eq!(name.to_string(), "4.0.77.10.in-addr.arpa.");
//!
//! // The negative TTL (5 min) caps the clear outcome (15 min by default).
//! let nx = DnsResult::NoRecords {
//!     kind: NoRecord::Nxdomain,
//!     negative_ttl: Some(300),
//!     dnssec: Dnssec::Insecure,
//! };
//! m.on_dns_result(now, &name, nx);
//! let Some(Action::PassClear { outcome, packets }) = m.poll_action() else { panic!() };
//! assert_eq!(packets.iter().next(), Some(&b"first packet"[..]));
//! assert_eq!(
//!     outcome.to_string(),
//!     "10.77.0.4: no IPSECKEY (NXDOMAIN) → clear for 5m; \
//!      anonymous IKE not allowed (require-authenticated)"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The agent does not drive the machine directly: [`node`] joins it with the
//! IKE engine ([`Node`]) and speaks to the agent in plain [`Command`]s.
//!
//! The modules, one concept each: [`cidr`] (prefixes), [`policy`] (groups and
//! the longest-prefix lookup), [`hold`] (held packets), `decision` (the
//! outbound state machine), `responder` (answering IKE peers), `keys` (which
//! IPSECKEY records to try), [`outcome`] (what was decided and why), [`node`]
//! (the machine and the IKE engine joined, sans-IO).

pub mod cidr;
pub mod hold;
pub mod node;
pub mod outcome;
pub mod policy;
pub mod unreachable;

mod action;
mod config;
mod decision;
mod keys;
mod limits;
mod responder;
mod vouch;

pub use action::{
    Action, AddressResult, DnsFailure, DnsResult, Dnssec, IkeResult, NotStarted, PacketFate,
    PeerAnswer, PeerKey,
};
pub use cidr::{Cidr, CidrError, ListError, parse_list};
pub use config::{Config, Counters};
pub use decision::{Machine, StaleSpiFate};
pub use hold::{Held, HoldDrops, HoldLimits, HoldStore};
pub use node::{Addresses, Command, Node, NodeConfig};
pub use outcome::{
    AttemptFailure, AttemptPeer, Auth, Cause, NoKey, NoRecord, Outcome, State, Unusable,
    UnusableWhy,
};
pub use policy::{
    Group, GroupOptions, Negotiation, Policy, PolicyError, PolicyMatch, UnknownGroup,
};
pub use unreachable::{Unreachable, UnreachableFate, UnreachableKind};
pub use vouch::VouchedFor;

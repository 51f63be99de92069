//! The test harness (feature `test-util`): IKE endpoints, or anything built
//! around one, passing datagrams to each other on a virtual clock, as quinn's
//! `tests/util.rs` `Pair` does. Tests, benches, fuzz targets and the test kit
//! drive two (or more) peers with it instead of each writing the loop again.
//!
//! - [`Peer`]: the sans-IO surface the harness drives (`handle`,
//!   `poll_transmit`, `poll_event`, `poll_timeout`, `handle_timeout`),
//!   implemented for [`Endpoint`](crate::ike::endpoint::Endpoint);
//! - [`Node`]: a peer with an address on the net and a way of acting on its
//!   events (answering `AuthorizePeer`, recording); [`Host`] makes one from a
//!   [`Peer`] and a closure;
//! - [`Net`]: the virtual clock and the wire between the nodes, with
//!   latency, seeded loss, duplication and reordering, and a [`Filter`] that
//!   drops, alters or inspects each datagram in flight. It routes each
//!   [`Transmit`](crate::ike::endpoint::Transmit) to the node whose address it
//!   names, steps one delivery or timer at a time, and advances the clock to
//!   the next timeout.
//!
//! The net does not own the nodes: every call that moves datagrams takes them
//! as `&mut [&mut dyn Node]`, in the same order each time (a node's index is
//! its place in that slice), so that a test keeps its nodes in its own fields.

mod net;
mod peer;

pub use net::{Filter, Net};
pub use peer::{Host, Node, Peer, answer_and_record, answer_authorize, demux};

//! The control socket behind `oemesh status`, `oemesh peers` and `oemesh check`:
//! newline-delimited JSON over a Unix stream socket ([`proto`]), a tokio server
//! that hands requests to the agent ([`server`]), the blocking client the CLI
//! uses ([`client`]) and its human output ([`display`]); the agent's
//! [`answers`] come from its control plane's state.

pub mod answers;
pub mod client;
pub mod display;
pub mod proto;
pub mod server;

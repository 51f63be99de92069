//! # oemesh-core
//!
//! Everything in oemesh that is protocol or policy, written **sans-IO**: this crate
//! never reads a clock, opens a socket or draws randomness of its own. Time,
//! random bytes and received datagrams come in as arguments; datagrams to send,
//! timers to arm and events for the caller go out as return values or through
//! `poll_*` methods. The agent (`oemesh-agent`) is the thin driver around it.
//!
//! Modules are named after the protocol they implement:
//!
//! - [`hostkey`]: the host's Ed25519 key in PKCS#8 PEM, the file format of
//!   `openssl genpkey` and strongSwan's `pki`.
//! - [`ipseckey`]: the IPSECKEY resource record (RFC 4025, RFC 9373) in wire and
//!   presentation form, and the reverse owner names keys are published at.
//! - [`crypto`]: the AEADs (two providers), PRF/prf+, X25519 and Ed25519 of the
//!   wire profile.
//! - [`ike`]: IKEv2 (RFC 7296): messages, the key schedule, UDP 4500 demultiplexing.
//! - [`esp`]: ESP SAs (RFC 4303): encapsulation, anti-replay, lifetimes.
//! - [`oe`]: the opportunistic-encryption decision machine: policy groups per
//!   prefix, held packets, DNS → IKE → private / clear / blocked outcomes;
//!   and the node (`oe::node`) that joins it to the IKE engine and tells the
//!   agent what to carry out.
//! - [`resolv`]: how DNS servers are written: `HOST[:PORT]` and resolv.conf's
//!   `nameserver` lines.
//! - [`wire`]: zero-copy views of IPv4, IPv6, TCP and UDP for the data path,
//!   and the one RFC 1071 checksum.
//! - [`trust`]: who vouches for what: the rule that binds a peer's IKE
//!   identity to the address its SA protects, for both roles.
//! - `test_util` (feature `test-util`): the harness that drives IKE
//!   endpoints against each other on a virtual clock, for tests and benches.
#![forbid(unsafe_code)]

pub mod anchors;
pub mod crypto;
pub mod esp;
pub mod hostkey;
pub mod ike;
pub mod ipseckey;
pub mod oe;
pub mod resolv;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod trust;
pub mod wire;

//! # oemesh-testkit
//!
//! What oemesh's integration tests and the testnet share: starting a real BIND 9
//! (unsigned, or signing its zones with DNSSEC, plus forgers and a validating
//! resolver: [`bind`]) and a real Knot DNS,
//! building network namespaces joined by veth pairs, running a real strongSwan
//! `charon` inside one, and child processes that are ended (by PID) when dropped.
//! The whole namespace testnet (dns, alice, bob, carol, dave on one switch) is
//! [`topology::Testnet`]. Everything created here is removed again on drop.

pub mod attacker;
pub mod bind;
pub mod capture;
pub mod counting;
pub mod flood;
pub mod ikeload;
pub mod iperf;
pub mod knot;
pub mod netns;
pub mod probe;
pub mod process;
pub mod strongswan;
pub mod topology;
pub mod wireguard;

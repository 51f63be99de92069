//! # dnskeys
//!
//! The DNS admin's tool of oemesh: host keys (Ed25519, PKCS#8 PEM), the
//! IPSECKEY records that publish them (RFC 4025, RFC 9373), RFC 2136 dynamic
//! updates signed with TSIG (RFC 8945) to publish, roll over and remove them,
//! and verification of what DNS serves.
//!
//! The binary is a thin shell around this library ([`cli::main`]); the agent
//! reuses [`keyfile::load`] to read its host key with the same checks and
//! messages.
//!
//! | module | concern |
//! |---|---|
//! | [`keyfile`] | key files on disk: load, permission check, write with mode 0600 |
//! | [`tsig`] | TSIG key files as `tsig-keygen` writes them |
//! | [`record`] | the IPSECKEY record of a key and an address, and its printed forms |
//! | [`subnet`] | `--subnet`: the wildcard record of a site behind a gateway, and what it may not say |
//! | [`transport`] | one DNS server, bounded waits, UDP/TCP |
//! | [`update`] | RFC 2136 UPDATE: plans, prerequisites, TSIG, the server's verdict |
//! | [`rollover`] | when step 1 of a key rollover ran, so that step 2 waits out the TTL |
//! | [`verify`] | fetching and checking the records, DNSSEC (AD bit) |
//! | [`dnssec`] | `verify --dnssec`: local validation from trust anchors, the RFC 4035 §4.3 state |
//! | [`cli`] | the command line, exit codes, man page |

pub mod cli;
pub mod dnssec;
pub mod keyfile;
pub mod record;
pub mod rollover;
pub mod subnet;
pub mod transport;
pub mod tsig;
pub mod update;
pub mod verify;

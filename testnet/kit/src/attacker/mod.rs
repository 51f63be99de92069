//! Hostile peers for tests: crafted datagrams that a real attacker could send.

pub mod bombs;

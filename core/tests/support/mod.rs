//! Pieces shared by core's network tests (not a test target of its own).

pub(crate) mod icmp;
pub(crate) mod udp_driver;

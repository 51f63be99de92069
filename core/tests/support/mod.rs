//! Shared harness of the IKE engine tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

pub mod datapath;
pub mod pair;

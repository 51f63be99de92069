//! Shared harness of the IKE engine tests.
#![allow(dead_code, unreachable_pub)]

pub mod datapath;
pub mod pair;

//! # oemesh-agent
//!
//! The per-host daemon that drives [`oemesh_core`]: TUN interception, DNS key
//! lookups, the IKE endpoint and the ESP data path. This crate is a placeholder
//! until the agent lands; see `docs/architecture.md` for what it will hold.

//! # oemesh-agent
//!
//! The per-host daemon around [`oemesh_core`]: a TUN device and policy routing
//! that bring outbound packets for the OE prefixes to the agent, UDP sockets for
//! IKE and ESP in UDP, IPSECKEY lookups, nftables enforcement, the control
//! socket behind `oemesh status|peers|check`, Prometheus metrics and systemd
//! integration. The protocol work (IKE, ESP, the decision machine) is core's;
//! [`driver`] is where the loops hand packets to it.
//!
//! Module map: [`config`] (the TOML file), [`cli`] (the command line),
//! [`control`] (socket protocol, server, client), [`net`] (TUN, routes, nftables,
//! UDP), [`dns`] (IPSECKEY lookups), [`metrics`], [`logging`], [`keyfile`],
//! [`run`] (setup and teardown of `oemesh run`), [`driver`] (the packet loops).

pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod driver;
pub mod keyfile;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod run;

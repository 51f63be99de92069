//! # oemesh-agent
//!
//! The per-host daemon around [`oemesh_core`]: a TUN device and policy routing
//! that bring outbound packets for the OE prefixes to the agent, UDP sockets for
//! IKE and ESP in UDP, IPSECKEY lookups, nftables enforcement, the control
//! socket behind `oemesh status|peers|check`, Prometheus metrics and systemd
//! integration. The protocol work (IKE, ESP, the decision machine) is core's;
//! [`driver`] and [`control_plane`] are where the agent hands packets to it.
//!
//! Module map: [`config`] (the TOML file), [`cli`] (the command line),
//! [`control`] (socket protocol, server, client), [`net`] (TUN, routes, nftables,
//! UDP), [`dns`] (IPSECKEY lookups), [`metrics`], [`logging`],
//! [`run`] (setup and teardown of `oemesh run`), [`down`] (`oemesh down`:
//! removing what a run leaves), [`driver`] (the packet loops),
//! [`datapath`] (SA table, ESP in place, GSO, cleartext around the TUN),
//! [`control_plane`] (the task owning core's IKE endpoint and decision
//! machine), [`outcomes`] (the outcome cache).

pub mod cli;
pub mod config;
pub mod control;
pub mod control_plane;
pub mod datapath;
pub mod dns;
pub mod down;
pub mod driver;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outcomes;
pub mod reload;
pub mod run;

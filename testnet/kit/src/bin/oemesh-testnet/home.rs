//! The demo's home LAN (issue 13): `erin` on 192.168.1.0/24 behind `router`,
//! which masquerades the LAN behind its address on the switch (192.0.2.1) with
//! nftables, as a home router does. erin runs the agent without a key, as any
//! laptop would: it initiates anonymously (AUTH NULL, RFC 7619), asks the
//! server for an address (CP, RFC 7296 §3.15) and puts its packets to that
//! server inside ESP-in-UDP (RFC 3948) from the address it was given.
//!
//! What the demo shows of it: on the switch, erin's flow is only IKE and ESP
//! between the router and the server; on the LAN leg, what leaves erin is
//! already IKE and ESP; and both ends' `oemesh peers` agree on the address the
//! server assigned.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use oemesh_testkit::process::wait_for;
use oemesh_testkit::topology::nat::NAT_TABLE;
use oemesh_testkit::topology::{
    HomeLan, HomeLanOptions, Host, Kept, KeptHost, KeptProcess, Testnet,
};

use crate::{nat, say};

/// The client on the home LAN.
pub(crate) const CLIENT: &str = "erin";
/// How long each end's agent may take to show the expected state.
const VIEW_WAIT: Duration = Duration::from_secs(5);

/// Builds the home LAN on `net`'s switch and starts erin's agent.
pub(crate) fn up(net: &Testnet) -> Result<HomeLan> {
    net.home_lan(&HomeLanOptions::new(&[CLIENT]))
}

/// What both ends' agents say of the client's SA with `server`: the client
/// sees the server private and authenticated, with the address it was given
/// (`assigned`); the server sees a private, anonymous peer coming from the
/// router (`endpoint`), known by that same address. Returns the problems.
pub(crate) fn agents_view(
    client: &Host,
    server: &Host,
    router: IpAddr,
    quiet: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |msg: String| {
        if !quiet {
            say!("  agent ✘ {msg}");
        }
        problems.push(msg);
    };
    let (c, s) = (client.name(), server.name());
    let seen = client.wait_peer(server.ip(), "private, authenticated", VIEW_WAIT, |p| {
        p.state == "private" && p.auth.as_deref() == Some("authenticated")
    });
    let given = match seen {
        Ok(p) => {
            if !quiet {
                say!(
                    "  agent on {c}: {s} is private, authenticated{}",
                    nat::describe(&p)
                );
            }
            let given = nat::assigned(&p);
            if given.is_none() {
                problem(format!(
                    "agent on {c} names no address {s} gave it (`assigned`)"
                ));
            }
            given
        }
        Err(_) => {
            let last = client.peer(server.ip()).ok().flatten();
            problem(format!(
                "agent on {c} says {s} is {}, expected private, authenticated",
                last.map(|p| format!("{} {:?}{}", p.state, p.auth, nat::describe(&p)))
                    .unwrap_or_else(|| "unknown".into())
            ));
            None
        }
    };
    let seen = wait_for("the client behind the router", VIEW_WAIT, || {
        server.peers().ok()?.into_iter().find(|p| {
            nat::is_behind(p, router)
                && p.state == "private"
                && p.auth.as_deref() == Some("anonymous")
        })
    });
    match seen {
        Ok(p) => {
            if !quiet {
                say!(
                    "  agent on {s}: {c} is {}, private, anonymous{}",
                    p.peer,
                    nat::describe(&p)
                );
            }
            if let Some(g) = given.filter(|g| *g != p.peer) {
                problem(format!("{c} was given {g}, but {s} knows it as {}", p.peer));
            }
        }
        Err(_) => {
            // What the server says of anything from the router instead.
            let near: Vec<String> = server
                .peers()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.peer == router || nat::endpoint(p).is_some_and(|e| e.ip() == router))
                .map(|p| format!("{} {} {:?}{}", p.peer, p.state, p.auth, nat::describe(&p)))
                .collect();
            problem(format!(
                "agent on {s}: no private, anonymous peer from {router} (has: {})",
                if near.is_empty() {
                    "nothing from it".to_owned()
                } else {
                    near.join("; ")
                }
            ));
        }
    }
    problems
}

/// Adds the home LAN to a kept testnet's record, so that `--shell erin`,
/// `--shell router` and `--down` reach it, saves the record, and leaves the
/// LAN running. On error nothing is recorded and the LAN goes with `home`.
pub(crate) fn keep(home: HomeLan, kept: &mut Kept) -> Result<()> {
    let mut k = kept.clone();
    k.namespaces.extend(home.namespaces());
    for c in home.clients() {
        if let Some(pid) = c.agent_pid() {
            let name = format!("oemesh on {}", c.name());
            k.processes.push(
                KeptProcess::of(&name, pid)
                    .with_context(|| format!("{name} (pid {pid}) is not running"))?,
            );
        }
    }
    for r in home.routers().iter().rev() {
        k.hosts.push(KeptHost {
            name: r.name().to_owned(),
            netns: r.netns().name().to_owned(),
            ip: r.wan_ip(),
            socket: None,
            role: format!(
                "home router, masquerades its LAN (nft list table inet {NAT_TABLE}; conntrack -L)"
            ),
        });
    }
    for c in home.clients() {
        k.hosts.push(KeptHost {
            name: c.name().to_owned(),
            netns: c.netns().name().to_owned(),
            ip: c.ip(),
            socket: c.runs_agent().then(|| c.socket_path()),
            role: "agent, no key (anonymous), on the home LAN".to_owned(),
        });
    }
    k.save()?;
    *kept = k;
    home.leak();
    Ok(())
}

//! `oemesh down`: remove everything `oemesh run` leaves on the host; and the
//! log lines of a start and a stop about that state.
//!
//! A stop of the agent (SIGTERM: a restart, an upgrade) keeps the rules and
//! the `unreachable` routes of `private` and `block` prefixes, so that those
//! fail closed until the agent is back ([`crate::run`]). `down` is the
//! removal: our rules, every route of our table, the TUN, the nftables table
//! and a stale control socket. It is idempotent, says what it removed, and
//! refuses while an agent listens on the control socket (that agent would
//! keep using what `down` removes).

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::net::nft;
use crate::net::routes::{self, Cleaned};

/// What [`down`] found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Rules (both families).
    pub rules: usize,
    /// Routes of our table (both families).
    pub routes: usize,
    /// The TUN device.
    pub link: bool,
    /// The nftables table `inet oemesh`.
    pub nft_table: bool,
    /// A control socket file nobody listened on.
    pub socket: bool,
}

impl Removed {
    /// One line for the operator: what was removed, or that nothing was left.
    pub fn describe(&self, cfg: &Config) -> String {
        let mut parts = Vec::new();
        if self.rules > 0 {
            parts.push(format!("{} rule(s)", self.rules));
        }
        if self.routes > 0 {
            parts.push(format!(
                "{} route(s) of table {}",
                self.routes, cfg.routing.table
            ));
        }
        if self.link {
            parts.push(format!("link {}", cfg.tun.name));
        }
        if self.nft_table {
            parts.push(format!("nftables table inet {}", nft::TABLE));
        }
        if self.socket {
            parts.push(format!(
                "stale control socket {}",
                cfg.control_socket.display()
            ));
        }
        if parts.is_empty() {
            format!(
                "nothing to remove: no rule, route of table {}, link {}, nftables table or \
                 control socket of oemesh was left",
                cfg.routing.table, cfg.tun.name
            )
        } else {
            format!("removed {}", parts.join(", "))
        }
    }
}

/// Removes what a run (stopped or crashed) left, per the configuration at
/// `config_path` (its routing table, rule priority, TUN name and control
/// socket). Fails if an agent answers on the control socket.
pub fn down(config_path: &Path) -> Result<(Config, Removed)> {
    let cfg = Config::load(config_path).with_context(|| {
        format!(
            "`oemesh down` takes the routing table, rule priority, TUN name and control \
             socket from {}; fix it or pass the configuration the agent ran with (--config)",
            config_path.display()
        )
    })?;
    let mut removed = Removed::default();
    if let Some(pid) = running_agent(&cfg.control_socket) {
        bail!(
            "an agent is running (pid {pid}) and listens on {}: stop it first \
             (`systemctl stop oemesh`, or SIGTERM), then run `oemesh down` again",
            cfg.control_socket.display()
        );
    }
    if cfg.control_socket.exists() {
        std::fs::remove_file(&cfg.control_socket).with_context(|| {
            format!(
                "removing the stale control socket {}",
                cfg.control_socket.display()
            )
        })?;
        removed.socket = true;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let cleaned = runtime.block_on(async {
        let handle = routes::connect().context("opening a netlink socket")?;
        routes::cleanup_stale(&handle, &cfg.routing, &cfg.tun.name)
            .await
            .context("removing rules, routes and the TUN")
    })?;
    removed.rules = cleaned.rules;
    removed.routes = cleaned.routes;
    removed.link = cleaned.link;

    removed.nft_table = nft_table_exists()?;
    if removed.nft_table {
        nft::remove_stale_table().context("removing the nftables table")?;
    }
    Ok((cfg, removed))
}

/// `Some(pid)` (as text, `?` when unknown) if something listens on the
/// control socket at `path`.
fn running_agent(path: &Path) -> Option<String> {
    // No file, or a file nobody listens on (a crashed run's): None.
    let stream = UnixStream::connect(path).ok()?;
    Some(
        rustix::net::sockopt::socket_peercred(&stream)
            .map(|c| c.pid.as_raw_nonzero().to_string())
            .unwrap_or_else(|_| "?".to_owned()),
    )
}

/// Whether the nftables table `inet oemesh` exists.
fn nft_table_exists() -> Result<bool> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", nft::TABLE])
        .output()
        .context("running `nft list table` (is nftables installed?)")?;
    Ok(out.status.success())
}

/// Logs, at start, what a previous run left (`left`: rules and routes, and
/// whether a TUN was deleted) and what was swept once the new state was in.
pub(crate) fn log_replaced(cfg: &Config, left: (usize, usize), link: bool, swept: &Cleaned) {
    let (rules, routes) = left;
    if rules + routes == 0 && !link {
        return;
    }
    let line = format!(
        "replaced state left by a previous run: found {rules} rule(s) and {routes} route(s) \
         in table {}{}; kept what this configuration also has, removed {} stale rule(s) and \
         {} stale route(s) after installing the new ones",
        cfg.routing.table,
        if link {
            format!(", and link {} (deleted)", cfg.tun.name)
        } else {
            String::new()
        },
        swept.rules,
        swept.routes,
    );
    // What a clean stop keeps is expected; more means a crash or a changed
    // configuration.
    if swept.is_empty() && !link {
        tracing::info!("{line}");
    } else {
        tracing::warn!("{line}");
    }
}

/// The end of a stop, once the control plane, the loops, the nftables table,
/// the TUN routes and the bypasses are gone: deletes a TUN still there and a
/// table still there, keeps the rules and the routes that fail closed, and
/// logs what stays and why.
pub(crate) async fn finish_stop(cfg: &Config) {
    let mut left = None;
    match routes::connect() {
        Ok(handle) => {
            match routes::remove_link(&handle, &cfg.tun.name).await {
                Ok(true) => tracing::warn!("stop: removed link {}", cfg.tun.name),
                Ok(false) => {}
                Err(e) => tracing::error!("stop: {e}"),
            }
            match routes::left_in_place(&handle, &cfg.routing).await {
                Ok(counts) => left = Some(counts),
                Err(e) => tracing::error!("stop: {e}"),
            }
        }
        Err(e) => tracing::error!("stop: netlink: {e}"),
    }
    if let Err(e) = nft::remove_stale_table() {
        tracing::error!("stop: {e}");
    }
    match left {
        Some((0, 0)) => tracing::info!("stopped; TUN and nftables table removed"),
        Some((rules, routes)) => tracing::info!(
            "stopped; TUN, TUN routes, bypasses and nftables table removed; kept {rules} \
             rule(s) and {routes} route(s) in table {} (`unreachable` for private and block \
             prefixes, `throw` for clear ones): private and block prefixes stay unreachable \
             until the agent is back or `oemesh down` runs",
            cfg.routing.table
        ),
        None => tracing::info!(
            "stopped; TUN and nftables table removed; the rules and `unreachable` routes of \
             private and block prefixes are kept until the agent is back or `oemesh down` runs"
        ),
    }
}

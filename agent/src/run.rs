//! `oemesh run`: set everything up, tell systemd, wait for SIGINT/SIGTERM (or a
//! failing loop), and take everything down again.
//!
//! Order of setup: stale state of a crashed run is removed (rules, routes in
//! our table, a leftover TUN, the nftables table); then the TUN, routes and
//! rules, the nftables table, the UDP sockets, the DNS resolver, the control
//! socket and the metrics listener; then the loops of [`crate::driver`] start
//! and systemd gets READY=1. Teardown runs in reverse, also after a failed
//! setup, and logs rather than stops at errors.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::config::{Config, Group};
use crate::control::proto::{CheckReply, PeerCounts, Reply, Request, StatusReply};
use crate::control::server::{ControlServer, Handler};
use crate::dns::KeyResolver;
use crate::driver::{self, KernelActions};
use crate::keyfile;
use crate::metrics::{self, Metrics};
use crate::net::nft::{self, EnforceConfig, Enforcer};
use crate::net::routes::{self, Routing};
use crate::net::tun::Tun;
use crate::net::udp::UdpEndpoint;

/// Runs the agent with the config at `config_path` until SIGINT or SIGTERM.
pub async fn run(config_path: &Path) -> Result<()> {
    let cfg = Config::load(config_path)?;
    let key = match &cfg.key {
        Some(path) => Some(keyfile::load(path)?),
        None => {
            tracing::warn!(
                "no `key` in {}: anonymous OE (AUTH NULL) only",
                config_path.display()
            );
            None
        }
    };
    let address = match cfg.address {
        Some(a) => a,
        None => routes::default_source_address(cfg.routing.fwmark).with_context(|| {
            format!(
                "{}: no `address`, and no default route to take this host's address from; set `address`",
                config_path.display()
            )
        })?,
    };
    tracing::info!(
        "oemesh {} starting: address {address}, {}",
        env!("CARGO_PKG_VERSION"),
        if key.is_some() {
            "host key loaded"
        } else {
            "anonymous only"
        }
    );
    // INTEGRATION(engine): hand `key` (the Ed25519 seed) to core's IKE endpoint.
    let _key = key;

    let mut agent = Agent::default();
    let result = async {
        agent.setup(&cfg, address).await?;
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("running: {address}, TUN {}", cfg.tun.name)),
        ]);
        tracing::info!("ready");
        agent.wait().await
    }
    .await;
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    agent.teardown(&cfg).await;
    result
}

fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// What `run` set up; every field is torn down if present.
#[derive(Default)]
struct Agent {
    tun: Option<Arc<Tun>>,
    kernel: Option<Arc<KernelActions>>,
    tasks: JoinSet<Result<()>>,
    control_path: Option<std::path::PathBuf>,
}

impl Agent {
    async fn setup(&mut self, cfg: &Config, address: IpAddr) -> Result<()> {
        let started = Instant::now();
        let handle = routes::connect().context("opening a netlink socket")?;

        let cleaned = routes::cleanup_stale(&handle, &cfg.routing, &cfg.tun.name).await?;
        if !cleaned.is_empty() {
            tracing::warn!(
                "removed state left by a previous run: {} rule(s), {} route(s) in table {}{}",
                cleaned.rules,
                cleaned.routes,
                cfg.routing.table,
                if cleaned.link {
                    format!(", link {}", cfg.tun.name)
                } else {
                    String::new()
                }
            );
        }
        nft::remove_stale_table().context("removing a stale nftables table")?;

        let tun = Arc::new(Tun::open(&cfg.tun)?);
        self.tun = Some(tun.clone());

        // TODO(integration): core's policy (branch `oe`) will take the entries.
        let entries = cfg.policy.entries();
        let routing =
            Routing::install(handle, &cfg.routing, tun.index(), entries, Some(address)).await?;
        let enforcer = match Enforcer::install(&EnforceConfig {
            tun: cfg.tun.name.clone(),
            ike_port: cfg.ike.port,
            natt_port: cfg.ike.natt_port,
        }) {
            Ok(e) => e,
            Err(e) => {
                routing.teardown().await;
                return Err(e).context("installing the nftables table `inet oemesh`");
            }
        };
        let kernel = Arc::new(KernelActions::new(routing, enforcer));
        self.kernel = Some(kernel.clone());
        tracing::info!(
            "routing: {} prefix(es) in table {}, rule `not fwmark {:#x} lookup {}` at priority {}",
            entries.len(),
            cfg.routing.table,
            cfg.routing.fwmark,
            cfg.routing.table,
            cfg.routing.rule_priority
        );

        let ike = Arc::new(
            UdpEndpoint::bind(cfg.ike.port, cfg.routing.fwmark)
                .with_context(|| format!("binding UDP port {} (ike.port)", cfg.ike.port))?,
        );
        let natt = Arc::new(
            UdpEndpoint::bind(cfg.ike.natt_port, cfg.routing.fwmark).with_context(|| {
                format!("binding UDP port {} (ike.natt_port)", cfg.ike.natt_port)
            })?,
        );

        let resolver = match KeyResolver::new(&cfg.dns.servers, cfg.dns.timeout, cfg.routing.fwmark)
        {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                // Not fatal: every decision then fails open/closed per policy.
                tracing::error!("DNS: {e}");
                None
            }
        };
        // INTEGRATION(decision): the decision machine calls `resolver.lookup(peer)`.
        let _resolver = resolver.clone();

        let metrics = Arc::new(Metrics::default());
        if let Some(listen) = cfg.metrics_listen {
            let listener = metrics::bind(listen)
                .await
                .with_context(|| format!("binding metrics.listen {listen}"))?;
            tracing::info!("metrics on http://{listen}/metrics");
            let m = metrics.clone();
            self.tasks.spawn(async move {
                metrics::serve(listener, m).await;
                Ok(())
            });
        }

        let server = ControlServer::bind(&cfg.control_socket, cfg.control_group.as_deref())
            .with_context(|| format!("control_socket {}", cfg.control_socket.display()))?;
        self.control_path = Some(cfg.control_socket.clone());
        let status = StatusInfo {
            started,
            address,
            authenticated: cfg.key.is_some(),
            tun: tun.name().to_owned(),
            tun_offload: tun.offload(),
            tun_queues: u32::try_from(tun.queues().len()).unwrap_or(u32::MAX),
            table: cfg.routing.table,
            fwmark: cfg.routing.fwmark,
            dns_servers: resolver
                .as_ref()
                .map(|r| r.servers().iter().map(SocketAddr::to_string).collect())
                .unwrap_or_default(),
            metrics: cfg.metrics_listen.map(|l| l.to_string()),
            policy: cfg.policy.clone(),
        };
        let handler: Arc<dyn Handler> = Arc::new(move |req| {
            let reply = status.answer(req);
            async move { reply }
        });
        self.tasks.spawn(async move {
            server.serve(handler, std::future::pending()).await;
            Ok(())
        });

        for q in 0..tun.queues().len() {
            let (reader, natt, m) = (tun.reader(q), natt.clone(), metrics.clone());
            self.tasks.spawn(async move {
                driver::tun_loop(reader, natt, m)
                    .await
                    .with_context(|| format!("reading TUN queue {q}"))
            });
        }
        for (endpoint, is_natt) in [(ike, false), (natt, true)] {
            let (writer, m) = (tun.writer(0), metrics.clone());
            let port = endpoint.port();
            self.tasks.spawn(async move {
                driver::udp_loop(endpoint, is_natt, writer, m)
                    .await
                    .with_context(|| format!("UDP port {port}"))
            });
        }
        // INTEGRATION(decision): the control-plane task (IKE endpoint, decision
        // machine, outcome cache) is spawned here with `kernel`, `_resolver`,
        // `metrics` and the UDP endpoints; `handler` then asks it for peers.
        let _ = kernel;
        Ok(())
    }

    /// Waits for SIGINT/SIGTERM, or for a task to fail.
    async fn wait(&mut self) -> Result<()> {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); Ok(()) }
            Some(done) = self.tasks.join_next() => match done {
                Ok(Ok(())) => bail!("a task ended unexpectedly"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e).context("a task panicked"),
            },
        }
    }

    async fn teardown(&mut self, cfg: &Config) {
        self.tasks.shutdown().await;
        if let Some(path) = self.control_path.take() {
            // The server removes it when dropped (by the shutdown above).
            let _ = std::fs::remove_file(path);
        }
        if let Some(kernel) = self.kernel.take() {
            match Arc::try_unwrap(kernel) {
                Ok(k) => k.teardown().await,
                Err(_) => tracing::error!("teardown: kernel state still in use"),
            }
        }
        if let Some(tun) = self.tun.take() {
            drop(tun); // closing the last queue deletes the (non-persistent) device
        }
        // Whatever is left (a TUN still referenced, a failed delete): sweep.
        match routes::connect() {
            Ok(handle) => match routes::cleanup_stale(&handle, &cfg.routing, &cfg.tun.name).await {
                Ok(c) if !c.is_empty() => tracing::warn!("teardown sweep removed {c:?}"),
                Ok(_) => {}
                Err(e) => tracing::error!("teardown sweep: {e}"),
            },
            Err(e) => tracing::error!("teardown sweep: netlink: {e}"),
        }
        if let Err(e) = nft::remove_stale_table() {
            tracing::error!("teardown sweep: {e}");
        }
        tracing::info!("stopped; routes, rules, nftables table and TUN removed");
    }
}

/// What `status` and `check` answer from before the decision machine exists.
// INTEGRATION(decision): peers, counts and per-address state come from the
// control-plane task; replace `answer` with a request over its channel.
struct StatusInfo {
    started: Instant,
    address: IpAddr,
    authenticated: bool,
    tun: String,
    tun_offload: bool,
    tun_queues: u32,
    table: u32,
    fwmark: u32,
    dns_servers: Vec<String>,
    metrics: Option<String>,
    policy: crate::config::Policy,
}

impl StatusInfo {
    fn answer(&self, req: Request) -> Reply {
        match req {
            Request::Status => Reply::Status(StatusReply {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: std::process::id(),
                uptime_s: self.started.elapsed().as_secs(),
                address: Some(self.address),
                authenticated: self.authenticated,
                // TODO(integration): the public key from core::hostkey.
                public_key: None,
                tun: self.tun.clone(),
                tun_offload: self.tun_offload,
                tun_queues: self.tun_queues,
                table: self.table,
                fwmark: self.fwmark,
                dns_servers: self.dns_servers.clone(),
                metrics: self.metrics.clone(),
                peers: PeerCounts::default(),
            }),
            Request::Peers => Reply::Peers { peers: Vec::new() },
            Request::Check { addr } => {
                let (group, prefix) = self.policy.lookup(addr);
                let action = match group {
                    Group::Clear => "sent in cleartext by the kernel (not routed to the agent)",
                    Group::ClearOrPrivate => {
                        "sent in cleartext; OE is answered if the peer starts it"
                    }
                    Group::PrivateOrClear => {
                        "held; IPSECKEY lookup, then IKE, or cleartext if that fails"
                    }
                    Group::Private => "held; IPSECKEY lookup, then IKE, or dropped if that fails",
                    Group::Block => "dropped",
                };
                Reply::Check(CheckReply {
                    addr,
                    group: group.to_string(),
                    prefix: prefix.map(|p| p.to_string()),
                    reverse_name: oemesh_core::ipseckey::reverse_name(addr).to_string(),
                    action: action.to_owned(),
                    peer: None,
                })
            }
        }
    }
}

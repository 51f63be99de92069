//! `oemesh run`: set everything up, tell systemd, wait for SIGINT/SIGTERM (or a
//! failing loop), and take everything down again.
//!
//! Order of setup: a TUN left by a previous run is deleted; then the TUN,
//! routes and rules, the nftables table (each installed over what a previous
//! run left, whose stale parts are removed only then: make before break, so
//! `private` never goes clear across a restart), the UDP sockets, the DNS
//! resolver, the control socket and the metrics listener; then the control
//! plane ([`crate::control_plane`]: core's IKE endpoint and decision machine)
//! and the loops of [`crate::driver`] start and systemd gets READY=1.
//!
//! Which stop is which:
//! - **A stop or restart** (SIGTERM or SIGINT: `systemctl stop|restart`, a
//!   package upgrade; also a failed setup or loop) sends IKE DELETEs, then
//!   removes the TUN, its routes, the clear peers' bypasses and the nftables
//!   table, and keeps the rules with the `unreachable` routes of `private`
//!   and `block` prefixes and the `throw` routes of `clear` ones: `private`
//!   and `block` stay unreachable until the agent is back, and
//!   `private-or-clear`/`clear-or-private` go clear (their fail-open
//!   behaviour). A crash (SIGKILL, the OOM killer) leaves at least that.
//! - **A removal** is `oemesh down` ([`crate::down`]), which removes
//!   everything; the unit calls it when it is disabled, the package when it
//!   is removed.
//!
//! Teardown runs in reverse, also after a failed setup, and logs rather than
//! stops at errors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use oemesh_core::hostkey::HostKey;
use oemesh_core::ike::endpoint::Endpoint;
use oemesh_core::oe::Machine;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

mod settings;

pub(crate) use settings::{announce_dnssec, identity_text, local_credential, policy_lines};
use settings::{ike_config, machine_config, os_seed};

use crate::config::{Addresses, Config};
use crate::control::proto::{Reply, Request};
use crate::control::server::{ControlServer, Handler};
use crate::control_plane::{ControlPlane, Inputs, Settings, StatusInfo};
use crate::datapath::DataPath;
use crate::datapath::clear::ClearSender;
use crate::datapath::ike_queue;
use crate::datapath::sa_table::SaTable;
use crate::dns::LoadedAnchor;
use crate::driver::{self, KernelActions};
use crate::metrics::{self, Metrics};
use crate::net::addresses::Follow;
use crate::net::nft::{EnforceConfig, Enforcer};
use crate::net::routes::{self, Routing};
use crate::net::tun::Tun;
use crate::net::udp::UdpEndpoint;
use crate::outcomes::OutcomeCache;
use crate::reload::{self, Loaded, ReloadRequest, Reloader};

/// Runs the agent with the config at `config_path` until SIGINT or SIGTERM.
pub async fn run(config_path: &Path) -> Result<()> {
    // Before anything is set up (and before the "starting" line): a SIGTERM
    // from then on (a `systemctl stop` right after a start) waits for the
    // setup and gets the teardown, instead of the default action killing the
    // process with its TUN and routes in place.
    let mut signals = Signals::install()?;
    let Loaded { cfg, key, anchors } = Loaded::load(config_path)?;
    if key.is_none() {
        tracing::warn!(
            "no `key` in {}: anonymous OE (AUTH NULL) only",
            config_path.display()
        );
    }
    let address = match cfg.address {
        Some(a) => a,
        // One per family: a family without a default route has none.
        None => Some(routes::default_source_addresses(cfg.routing.fwmark))
            .filter(|a| !a.is_empty())
            .with_context(|| {
                format!(
                    "{}: no `address`, and no default route to take this host's address from; set `address`",
                    config_path.display()
                )
            })?,
    };
    // Found from the default routes: the check validation made of `address`.
    if let Some((p, own)) = cfg.gateway.protects.iter().find_map(|p| {
        let own = address.iter().find(|a| p.contains(*a))?;
        Some((p, own))
    }) {
        bail!(
            "{}: gateway.protects {p} holds this host's own address {own} (from the default \
             route); a gateway is not behind itself: set `address` to its outer address",
            config_path.display()
        );
    }
    if let Some(g) = cfg.gateway.describe() {
        tracing::info!("gateway: {g}");
    }
    tracing::info!(
        "oemesh {} starting: address {address}, {}",
        env!("CARGO_PKG_VERSION"),
        if key.is_some() {
            "host key loaded"
        } else {
            "anonymous only"
        }
    );
    let mut agent = Agent::default();
    let result = async {
        agent
            .setup(config_path, &cfg, address, key, anchors)
            .await?;
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("running: {address}, TUN {}", cfg.tun.name)),
        ]);
        tracing::info!("ready");
        agent.wait(&mut signals).await
    }
    .await;
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    agent.teardown(&cfg).await;
    result
}

/// The signals the agent handles, installed at start (one that comes during
/// the setup is kept for [`Agent::wait`]).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }
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
    /// Tells the control plane to delete its IKE SAs before the tasks stop.
    control_shutdown: Option<oneshot::Sender<oneshot::Sender<()>>>,
    /// Asks the reloader to re-read the configuration (SIGHUP).
    reload: Option<mpsc::Sender<ReloadRequest>>,
}

impl Agent {
    async fn setup(
        &mut self,
        config_path: &Path,
        cfg: &Config,
        address: Addresses,
        key: Option<HostKey>,
        anchors: Vec<LoadedAnchor>,
    ) -> Result<()> {
        let started = Instant::now();
        let handle = routes::connect().context("opening a netlink socket")?;

        // Make before break: what a previous run left stays until this run's
        // state is in (module docs); only a leftover TUN goes first.
        let (left_rules, left_routes) = routes::left_in_place(&handle, &cfg.routing).await?;
        let left_link = routes::remove_link(&handle, &cfg.tun.name).await?;

        let tun = Arc::new(Tun::open(&cfg.tun)?);
        self.tun = Some(tun.clone());
        crate::net::forwarding::prepare(&handle, cfg, tun.index()).await;

        let entries = &cfg.routed_entries()[..];
        let routing = Routing::install(handle, &cfg.routing, tun.index(), entries, address).await?;
        let enforce = EnforceConfig {
            tun: cfg.tun.name.clone(),
            ike_port: cfg.ike.port,
            natt_port: cfg.ike.natt_port,
        };
        let enforcer = match Enforcer::install_gateway(&enforce, &cfg.gateway.protects) {
            Ok(e) => e,
            Err(e) => {
                routing.teardown().await;
                return Err(e).context("installing the nftables table `inet oemesh`");
            }
        };
        let swept = match routing.sweep_stale(tun.index(), entries).await {
            Ok(s) => s,
            Err(e) => return Err(e).context("removing stale routes and rules"),
        };
        crate::down::log_replaced(cfg, (left_rules, left_routes), left_link, &swept);
        let kernel = Arc::new(KernelActions::new(routing, enforcer));
        self.kernel = Some(kernel.clone());
        let reloader_kernel = kernel.clone();
        tracing::info!(
            "routing: {} prefix(es) in table {}, rule `not fwmark {:#x} lookup {}` at priority {}",
            entries.len(),
            cfg.routing.table,
            cfg.routing.fwmark,
            cfg.routing.table,
            cfg.routing.rule_priority
        );

        // Each port: one socket per UDP worker (SO_REUSEPORT); the first
        // also sends (IKE from the control plane, ESP from the TUN workers).
        let workers = cfg.ike.udp_workers;
        let bind = |port: u16, key: &str| -> Result<Vec<Arc<UdpEndpoint>>> {
            let group = UdpEndpoint::bind_group(port, cfg.routing.fwmark, workers)
                .with_context(|| format!("binding UDP port {port} ({key})"))?;
            Ok(group.into_iter().map(Arc::new).collect())
        };
        let ike_group = bind(cfg.ike.port, "ike.port")?;
        let natt_group = bind(cfg.ike.natt_port, "ike.natt_port")?;
        let (ike, natt) = (ike_group[0].clone(), natt_group[0].clone());

        let running_anchors = anchors.iter().map(|a| a.anchor.clone()).collect();
        // Not fatal without one: every decision then fails open/closed per policy.
        let resolver = reload::resolver(&cfg.dns, cfg.routing.fwmark, anchors);

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
            authenticated: key.is_some(),
            public_key: key
                .as_ref()
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k.public_key())),
            identity: identity_text(address, key.is_some()),
            tun: tun.name().to_owned(),
            tun_offload: tun.offload(),
            tun_queues: u32::try_from(tun.queues().len()).unwrap_or(u32::MAX),
            table: cfg.routing.table,
            fwmark: cfg.routing.fwmark,
            dns_servers: resolver
                .as_ref()
                .map(|r| r.servers().iter().map(SocketAddr::to_string).collect())
                .unwrap_or_default(),
            dnssec: resolver
                .as_ref()
                .map(|r| r.dnssec_summary())
                .unwrap_or_default(),
            metrics: cfg.metrics_listen.map(|l| l.to_string()),
            policy: policy_lines(cfg),
            gateway: cfg.gateway.protects.clone(),
            config: config_path.display().to_string(),
            reloads: 0,
            last_reload: None,
        };

        // The data path and the control plane's inputs.
        let (notice_tx, notices) = mpsc::unbounded_channel();
        let (undecided_tx, undecided) = mpsc::channel(UNDECIDED_QUEUE);
        let endpoint = Endpoint::new(ike_config(cfg, address, key.as_ref()), os_seed()?);
        let (ike_tx, ike_rx) =
            ike_queue::queues(IKE_QUEUE, endpoint.cookies(), cfg.ike.cookie_rate);
        let (request_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let (reconfig_tx, reconfig) = mpsc::channel(1);
        let (icmp_tx, icmp) = mpsc::channel(ICMP_QUEUE);
        let clear = match ClearSender::new(cfg.routing.fwmark) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(
                    "raw sockets for cleartext: {e}; clear outcomes cannot pass held packets"
                );
                None
            }
        };
        let dp = Arc::new(DataPath {
            sas: SaTable::new(notice_tx),
            outcomes: OutcomeCache::default(),
            clear,
            natt: natt.clone(),
            metrics: metrics.clone(),
            address: arc_swap::ArcSwap::from_pointee(address),
            undecided: undecided_tx,
            ike: ike_tx,
            icmp: icmp_tx,
            queue_drops: AtomicU64::new(0),
            parked: Default::default(),
            stale: Default::default(),
            moved: Default::default(),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        self.control_shutdown = Some(shutdown_tx);
        let machine = Machine::new(machine_config(cfg), cfg.policy.core().clone());
        // A host without IKE answers our IKE_SA_INIT with "port unreachable":
        // with the error queue, that ends the wait (core's oe::unreachable).
        // On every member: the kernel queues an error on the member the
        // quoted datagram hashes to, and that member's worker reads it.
        if let Err(e) = ike_group.iter().try_for_each(|s| s.enable_icmp_errors()) {
            tracing::warn!(
                "UDP {}: no ICMP errors (IP_RECVERR: {e}); hosts without IKE cost the whole wait",
                cfg.ike.port
            );
        }
        let (addresses, follow) = Follow {
            configured: cfg.address,
            fwmark: cfg.routing.fwmark,
            tun_index: tun.index(),
            table: cfg.routing.table,
            kernel: kernel.clone(),
        }
        .start(address)
        .context("subscribing to the host's address changes (netlink)")?;
        self.tasks.spawn(async move {
            follow.await;
            Ok(())
        });
        let follow = addresses.clone();
        let control = ControlPlane::new(
            Settings {
                address,
                ike_port: cfg.ike.port,
                natt_port: cfg.ike.natt_port,
                idle_timeout: cfg.ike.idle_timeout,
            },
            endpoint,
            machine,
            dp.clone(),
            kernel,
            resolver,
            ike.clone(),
            tun.writer(0),
            status,
            Inputs {
                undecided,
                ike: ike_rx,
                icmp,
                stale: dp.stale.inbox(),
                moved: dp.moved.inbox(),
                addresses,
                notices,
                requests,
                reconfig,
                shutdown: shutdown_rx,
            },
        );
        let (reload_tx, reload_rx) = mpsc::channel(RELOAD_QUEUE);
        self.reload = Some(reload_tx.clone());
        let reloader = Reloader {
            path: config_path.to_owned(),
            current: cfg.clone(),
            public_key: key.as_ref().map(HostKey::public_key),
            anchors: running_anchors,
            address: follow,
            tun_index: tun.index(),
            kernel: reloader_kernel,
            control: reconfig_tx,
        };
        self.tasks.spawn(async move {
            reloader.run(reload_rx).await;
            Ok(())
        });
        self.tasks.spawn(async move {
            control.run().await;
            Ok(())
        });

        let handler: Arc<dyn Handler> = Arc::new(move |req| {
            let (tx, reload) = (request_tx.clone(), reload_tx.clone());
            async move {
                if req == Request::Reload {
                    return reload_reply(&reload).await;
                }
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send((req, reply_tx)).await.is_err() {
                    return Reply::Error {
                        message: "the agent is shutting down".to_owned(),
                    };
                }
                reply_rx.await.unwrap_or_else(|_| Reply::Error {
                    message: "the agent dropped the request".to_owned(),
                })
            }
        });
        self.tasks.spawn(async move {
            server.serve(handler, std::future::pending()).await;
            Ok(())
        });

        for q in 0..tun.queues().len() {
            let (reader, dp) = (tun.reader(q), dp.clone());
            self.tasks.spawn(async move {
                driver::tun_loop(reader, dp)
                    .await
                    .with_context(|| format!("reading TUN queue {q}"))
            });
        }
        let sockets = ike_group.into_iter().map(|s| (s, false));
        let sockets = sockets.chain(natt_group.into_iter().map(|s| (s, true)));
        for (i, (endpoint, is_natt)) in sockets.enumerate() {
            let (writer, dp) = (tun.writer(i), dp.clone());
            let port = endpoint.port();
            self.tasks.spawn(async move {
                driver::udp_loop(endpoint, is_natt, writer, dp)
                    .await
                    .with_context(|| format!("UDP port {port}"))
            });
        }
        Ok(())
    }

    /// Waits for SIGINT/SIGTERM, or for a task to fail; SIGHUP reloads.
    async fn wait(&mut self, signals: &mut Signals) -> Result<()> {
        let Signals { term, int, hup } = signals;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()) }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()) }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // A full queue already has a reload coming, which reads the file then.
                    if let Some(reload) = &self.reload {
                        let _ = reload.try_send(None);
                    }
                }
                Some(done) = self.tasks.join_next() => return match done {
                    Ok(Ok(())) => bail!("a task ended unexpectedly"),
                    Ok(Err(e)) => Err(self.explain(e)),
                    Err(e) => Err(e).context("a task panicked"),
                },
            }
        }
    }

    /// A loop failed: if the TUN device is gone (someone ran `ip link del`),
    /// say so. The agent then exits (non-zero) after its teardown, rather
    /// than recreating the device behind the administrator's back: a service
    /// manager restarts it with a fresh TUN, routes and nftables table, as
    /// after any other failure (systemd: `Restart=on-failure`).
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(tun) = &self.tun else {
            return e;
        };
        let bad_fd = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                == Some(rustix::io::Errno::BADFD.raw_os_error())
        });
        let listed = Path::new("/sys/class/net").join(tun.name()).exists();
        if bad_fd || !listed {
            e.context(format!(
                "TUN device {} is gone (deleted under the agent?); exiting (private and \
                 block prefixes stay unreachable meanwhile), so that the service manager \
                 starts the agent again (systemd: Restart=on-failure)",
                tun.name()
            ))
        } else {
            e
        }
    }

    async fn teardown(&mut self, cfg: &Config) {
        if let Some(shutdown) = self.control_shutdown.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if shutdown.send(done_tx).is_ok() {
                // Bounded: a stuck socket must not keep the host's routes in place.
                let _ = tokio::time::timeout(Duration::from_secs(1), done_rx).await;
            }
        }
        self.tasks.shutdown().await;
        if let Some(path) = self.control_path.take() {
            // The server removes it when dropped (by the shutdown above).
            let _ = std::fs::remove_file(path);
        }
        // A stop, not a removal (module docs): the nftables table, the TUN
        // routes and the bypasses go; the rules and what fails closed stay.
        if let Some(kernel) = self.kernel.take() {
            match Arc::try_unwrap(kernel) {
                Ok(k) => k.teardown().await,
                Err(_) => tracing::error!("teardown: kernel state still in use"),
            }
        }
        if let Some(tun) = self.tun.take() {
            drop(tun); // closing the last queue deletes the (non-persistent) device
        }
        crate::down::finish_stop(cfg).await;
    }
}

/// Bound on packets waiting for the control plane (beyond: dropped, counted).
const UNDECIDED_QUEUE: usize = 4096;
/// Bound on IKE messages waiting for the control plane.
const IKE_QUEUE: usize = 1024;
/// ICMP errors waiting for the control plane at most (more are ignored and counted).
const ICMP_QUEUE: usize = 1024;
/// Bound on control requests waiting.
const REQUEST_QUEUE: usize = 64;
/// Reloads waiting (SIGHUP or `oemesh reload`); beyond, a SIGHUP is dropped
/// (one queued already reads the file as it is then) and a request refused.
const RELOAD_QUEUE: usize = 4;

/// Asks the reloader and waits for what it did.
async fn reload_reply(reload: &mpsc::Sender<ReloadRequest>) -> Reply {
    let (tx, rx) = oneshot::channel();
    if reload.try_send(Some(tx)).is_err() {
        return Reply::Error {
            message: "reloads are queued already; try again in a moment".to_owned(),
        };
    }
    match rx.await {
        Ok(Ok(report)) => Reply::Reloaded(report),
        Ok(Err(message)) => Reply::Error {
            message: format!("reload refused, the running configuration stays: {message}"),
        },
        Err(_) => Reply::Error {
            message: "the agent is shutting down".to_owned(),
        },
    }
}

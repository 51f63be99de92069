//! Tunnels side by side: oemesh, boringtun (userspace WireGuard) and strongSwan
//! (charon with kernel-libipsec) measured in one run over the same path, plus
//! the plain path as the ceiling. Run it through `testnet/bench` (root), which
//! installs the tools and builds the binaries; see `docs/benchmarks.md`.
//!
//! The path: alice (192.0.2.10) and bob (192.0.2.20) of the namespace testnet
//! (`oemesh_testkit::topology`), each on a veth into one bridge. Every tunnel
//! runs between these two namespaces in turn, one at a time:
//!
//! - `veth`: no tunnel, TCP straight to 192.0.2.20;
//! - `oemesh`: both agents running, OE to 192.0.2.20 (DNS + IKE on first packet);
//! - `boringtun`: `boringtun-cli` on both ends, tunnel addresses 10.77.0.1/2;
//! - `strongswan`: charon (kernel-libipsec) on both, host-to-host SA for
//!   192.0.2.10 <-> 192.0.2.20, alice with `start_action = trap`;
//! - `oemesh-nat`, `veth-nat`: from a laptop behind a masquerading router
//!   instead of alice (see `bench/nat.rs`);
//! - `oemesh-sites`, `oemesh-nested`, `veth-sites`: from a host on one site's
//!   LAN to one on the other's, through two gateways (see `bench/sites.rs`).
//!
//! Every figure is the median of `--runs` runs, with min and max.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_testkit::ikeload::{self, Load};
use oemesh_testkit::iperf;
use oemesh_testkit::probe::{self, Drops, UdpEcho};
use oemesh_testkit::process::{self, Child};
use oemesh_testkit::strongswan::{self, Charon, CharonConfig, Ed25519Key, StartAction};
use oemesh_testkit::topology::sites::Sites;
use oemesh_testkit::topology::{AgentConfig, Binaries, HomeLan, Host, Options, SUBNET_V4, Testnet};
use oemesh_testkit::wireguard::{Boringtun, End};
use serde_json::json;

#[path = "bench/nat.rs"]
mod nat;
#[path = "bench/sites.rs"]
mod sites;

const USAGE: &str = "usage: bench [--oemesh PATH] [--duration SECS] [--runs N] [--quick]
             [--only NAME[,NAME…]] [--rtt-count N] [--json FILE] [--profile DIR]
             [--no-tcp] [--anonymous-timeout DURATION]
  NAME: veth, oemesh, oemesh-chacha, oemesh-clear, oemesh-clear-icmp, oemesh-clear-silent,
        oemesh-passthrough, boringtun, boringtun-t1, strongswan-aes, strongswan-chacha,
        oemesh-nat, veth-nat (a laptop behind a masquerading router, to bob),
        oemesh-sites, oemesh-nested, veth-sites (LAN A to LAN B through two gateways),
        ike (IKE SAs/s on one responder agent), memory (agent bytes per clear outcome)
  --no-tcp: no iperf3 runs (RTT and cold probe only)
  --anonymous-timeout: alice's `[ike] anonymous_timeout` in the oemesh-clear-icmp,
        oemesh-clear-silent and oemesh-passthrough rows (default: the agent's own)";

/// The port of the UDP echo server (round trips) and the cold probe receiver.
const ECHO_PORT: u16 = 7007;
const COLD_PORT: u16 = 7008;
const BT_ALICE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const BT_BOB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

#[derive(Debug, Clone)]
struct Args {
    oemesh: Option<PathBuf>,
    duration: u32,
    runs: usize,
    only: Option<Vec<String>>,
    rtt_count: usize,
    json: Option<PathBuf>,
    profile: Option<PathBuf>,
    /// Skip the iperf3 runs.
    no_tcp: bool,
    /// alice's `[ike] anonymous_timeout` in the no-peer rows (`None`: the agent's default).
    anonymous_timeout: Option<String>,
    command: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        oemesh: None,
        duration: 5,
        runs: 3,
        only: None,
        rtt_count: 200,
        json: None,
        profile: None,
        no_tcp: false,
        anonymous_timeout: None,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--oemesh" => a.oemesh = Some(value()?.into()),
            "--duration" => a.duration = value()?.parse().context("--duration")?,
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--rtt-count" => a.rtt_count = value()?.parse().context("--rtt-count")?,
            "--json" => a.json = Some(value()?.into()),
            "--profile" => a.profile = Some(value()?.into()),
            "--only" => a.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--no-tcp" => a.no_tcp = true,
            "--anonymous-timeout" => a.anonymous_timeout = Some(value()?),
            "--quick" => {
                a.runs = 1;
                a.duration = 2;
                a.rtt_count = 50;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if a.runs == 0 || a.duration == 0 || a.rtt_count == 0 {
        bail!("--runs, --duration and --rtt-count must be positive");
    }
    Ok(a)
}

/// One tunnel configuration to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Veth,
    /// The agents' `ike.esp_aead`.
    Oemesh(&'static str),
    /// The agents with `dns.dnssec = "off"` (no anchors): the cold path
    /// without validation, beside `oemesh`'s with it (the testnet's zones are
    /// signed and the agents validate from their anchors).
    OemeshNoDnssec,
    /// alice's agent only: bob keeps his key in DNS but answers no IKE, so
    /// alice decides clear once and later flows take the bypass route.
    OemeshClear,
    /// alice's agent only; bob runs none and publishes no key (his IPSECKEY
    /// record is removed for the row and restored after it). Cold probe only.
    OemeshNoPeer(NoPeer),
    Boringtun(Option<u32>),
    Strongswan(&'static str),
    /// Like `Oemesh("aes-256-gcm")`, from the laptop behind the NAT router
    /// (`bench/nat.rs`) instead of alice.
    OemeshNat,
    /// Like `Veth`, from the laptop behind the NAT router.
    VethNat,
    /// a-plain → b-plain through the two gateways' agents (`bench/sites.rs`).
    OemeshSites,
    /// a-agent → b-agent, agents on both hosts and both gateways.
    OemeshNested,
    /// a-plain → b-plain, no agent anywhere.
    VethSites,
}

/// How bob, with no agent and no key in DNS, meets alice's IKE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoPeer {
    /// bob's kernel answers UDP 500 with ICMP port unreachable.
    Icmp,
    /// An nftables rule on bob drops UDP 500 and 4500 silently.
    Silent,
    /// Like `Silent`, with alice's `private-or-clear` negotiating in
    /// `passthrough` (packets leave in clear meanwhile) instead of `hold`.
    Passthrough,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    label: &'static str,
    aead: &'static str,
    kind: Kind,
}

const VARIANTS: [Variant; 17] = [
    Variant {
        name: "veth",
        label: "plain veth (no tunnel)",
        aead: "-",
        kind: Kind::Veth,
    },
    Variant {
        name: "oemesh",
        label: "oemesh",
        aead: "AES-256-GCM",
        kind: Kind::Oemesh("aes-256-gcm"),
    },
    Variant {
        name: "oemesh-nat",
        label: "oemesh, client behind a NAT",
        aead: "AES-256-GCM",
        kind: Kind::OemeshNat,
    },
    Variant {
        name: "veth-nat",
        label: "plain, client behind a NAT (no tunnel)",
        aead: "-",
        kind: Kind::VethNat,
    },
    // The control first: a tunnel row that stalls can leave the far host's
    // iperf3 server busy for the rows after it.
    Variant {
        name: "veth-sites",
        label: "plain, through two routers (no tunnel)",
        aead: "-",
        kind: Kind::VethSites,
    },
    Variant {
        name: "oemesh-sites",
        label: "oemesh, site to site (host → gw → gw → host)",
        aead: "AES-256-GCM",
        kind: Kind::OemeshSites,
    },
    Variant {
        name: "oemesh-nested",
        label: "oemesh, nested (host ESP in gateway ESP)",
        aead: "AES-256-GCM",
        kind: Kind::OemeshNested,
    },
    Variant {
        name: "oemesh-chacha",
        label: "oemesh",
        aead: "ChaCha20-Poly1305",
        kind: Kind::Oemesh("chacha20-poly1305"),
    },
    Variant {
        name: "oemesh-nodnssec",
        label: "oemesh, DNSSEC validation off",
        aead: "AES-256-GCM",
        kind: Kind::OemeshNoDnssec,
    },
    Variant {
        name: "oemesh-clear",
        label: "oemesh, clear peer (bypass route)",
        aead: "-",
        kind: Kind::OemeshClear,
    },
    Variant {
        name: "oemesh-clear-icmp",
        label: "oemesh, no key, IKE port unreachable (ICMP)",
        aead: "-",
        kind: Kind::OemeshNoPeer(NoPeer::Icmp),
    },
    Variant {
        name: "oemesh-clear-silent",
        label: "oemesh, no key, IKE dropped silently",
        aead: "-",
        kind: Kind::OemeshNoPeer(NoPeer::Silent),
    },
    Variant {
        name: "oemesh-passthrough",
        label: "oemesh, no key, IKE dropped silently, passthrough",
        aead: "-",
        kind: Kind::OemeshNoPeer(NoPeer::Passthrough),
    },
    Variant {
        name: "boringtun",
        label: "boringtun",
        aead: "ChaCha20-Poly1305",
        kind: Kind::Boringtun(None),
    },
    Variant {
        name: "boringtun-t1",
        label: "boringtun --threads 1",
        aead: "ChaCha20-Poly1305",
        kind: Kind::Boringtun(Some(1)),
    },
    Variant {
        name: "strongswan-aes",
        label: "strongSwan libipsec",
        aead: "AES-256-GCM",
        kind: Kind::Strongswan("aes256gcm16"),
    },
    Variant {
        name: "strongswan-chacha",
        label: "strongSwan libipsec",
        aead: "ChaCha20-Poly1305",
        kind: Kind::Strongswan("chacha20poly1305"),
    },
];

/// The metrics, in table order: (key, column title, unit, higher is better).
const METRICS: [(&str, &str, &str, bool); 14] = [
    ("tcp1_gbps", "TCP 1 stream", "Gbit/s", true),
    ("tcp4_gbps", "TCP 4 streams", "Gbit/s", true),
    ("cpu1_s_per_gb", "CPU 1 stream", "s/GB", false),
    ("cpu4_s_per_gb", "CPU 4 streams", "s/GB", false),
    ("icmp_rtt_us", "ICMP RTT", "µs", false),
    ("udp_rtt_us", "UDP RTT", "µs", false),
    ("cold0_ms", "cold: datagram 0 arrives", "ms", false),
    ("cold_ms", "cold: 1st arrival", "ms", false),
    ("cold_lost", "1st packets lost", "pkts", false),
    ("cold_first_seq", "1st delivered #", "seq", false),
    ("cold_reordered", "reordered", "pkts", false),
    ("retrans1", "TCP retransmits x1", "segs", false),
    ("udp_drops1", "UDP buffer drops x1", "pkts", false),
    ("link_drops1", "interface drops x1", "pkts", false),
];

static STOP: AtomicBool = AtomicBool::new(false);

fn check_interrupt() -> Result<()> {
    if STOP.load(Ordering::Relaxed) {
        bail!("interrupted: tearing down");
    }
    Ok(())
}

/// A running tunnel between alice (or the laptop behind the NAT) and bob.
enum Running<'n> {
    Veth,
    Oemesh {
        /// The initiating end: alice, or the laptop of the NAT rows.
        client: &'n Host,
        bob: &'n Host,
        /// bob runs no agent (`Kind::OemeshClear`, `Kind::OemeshNoPeer`).
        clear_peer: bool,
        /// What a `Kind::OemeshNoPeer` row changed (undone on drop).
        _no_peer: Option<NoPeerSetup<'n>>,
    },
    Boringtun {
        wg: Option<Box<Boringtun>>,
        threads: Option<u32>,
        dir: PathBuf,
    },
    Strongswan {
        alice: Box<Charon>,
        bob: Box<Charon>,
    },
    /// The sites rows' agents (gateways first), all restarted to make the
    /// path cold and all counted as the daemons; `encrypting`: those that must
    /// say the far host is private (gw-a, and a-agent in the nested row).
    Sites {
        agents: Vec<&'n Host>,
        encrypting: Vec<&'n Host>,
    },
}

struct Tunnel<'n> {
    running: Running<'n>,
    /// Where the traffic starts: alice, the laptop of the NAT rows, or a
    /// host on LAN A.
    client: &'n Host,
    /// Where it goes: bob, or a host on LAN B (iperf3 and echo servers).
    server: &'n Host,
    src: IpAddr,
    dst: IpAddr,
    net: &'n Testnet,
}

impl<'n> Tunnel<'n> {
    fn start(
        net: &'n Testnet,
        kind: Kind,
        keys: &(Ed25519Key, Ed25519Key),
        anonymous_timeout: Option<&str>,
        home: Option<&'n HomeLan>,
        two_sites: Option<&'n Sites>,
    ) -> Result<Tunnel<'n>> {
        let (alice, bob) = (net.alice(), net.bob());
        let in_sites = matches!(
            kind,
            Kind::OemeshSites | Kind::OemeshNested | Kind::VethSites
        );
        let (client, server) = match kind {
            Kind::OemeshNat | Kind::VethNat => (
                home.and_then(|h| h.client(nat::CLIENT))
                    .context("no home LAN client")?,
                bob,
            ),
            _ if in_sites => {
                let s = two_sites.context("the sites were not built")?;
                match kind {
                    Kind::OemeshNested => (s.a().agent(), s.b().agent()),
                    _ => (s.a().plain(), s.b().plain()),
                }
            }
            _ => (alice, bob),
        };
        let (mut src, mut dst) = (client.ip(), server.ip());
        let running = match kind {
            Kind::Veth | Kind::VethNat | Kind::VethSites => Running::Veth,
            Kind::OemeshSites | Kind::OemeshNested => {
                let s = two_sites.context("the sites were not built")?;
                let mut agents = vec![s.a().gateway(), s.b().gateway()];
                let mut encrypting = vec![s.a().gateway()];
                if kind == Kind::OemeshNested {
                    agents.extend([server, client]);
                    encrypting.push(client);
                }
                for h in &agents {
                    set_esp_aead(h, "aes-256-gcm")?;
                    set_dnssec(h, net, sites::VALIDATE_DNSSEC)?;
                    h.start_agent()
                        .with_context(|| format!("oemesh: starting {}'s agent", h.name()))?;
                }
                Running::Sites { agents, encrypting }
            }
            Kind::OemeshNat => {
                for h in [client, bob] {
                    set_esp_aead(h, "aes-256-gcm")?;
                    set_dnssec(h, net, true)?;
                }
                bob.start_agent().context("oemesh: starting bob's agent")?;
                client
                    .start_agent()
                    .context("oemesh: starting the NATed client's agent")?;
                Running::Oemesh {
                    client,
                    bob,
                    clear_peer: false,
                    _no_peer: None,
                }
            }
            Kind::Oemesh(_) | Kind::OemeshNoDnssec => {
                let aead = match kind {
                    Kind::Oemesh(aead) => aead,
                    _ => "aes-256-gcm",
                };
                let validate = kind != Kind::OemeshNoDnssec;
                for h in [alice, bob] {
                    set_esp_aead(h, aead)?;
                    set_dnssec(h, net, validate)?;
                }
                bob.start_agent().context("oemesh: starting bob's agent")?;
                alice
                    .start_agent()
                    .context("oemesh: starting alice's agent")?;
                Running::Oemesh {
                    client: alice,
                    bob,
                    clear_peer: false,
                    _no_peer: None,
                }
            }
            Kind::OemeshClear => {
                alice
                    .start_agent()
                    .context("oemesh: starting alice's agent")?;
                Running::Oemesh {
                    client: alice,
                    bob,
                    clear_peer: true,
                    _no_peer: None,
                }
            }
            Kind::OemeshNoPeer(how) => {
                let setup = NoPeerSetup::apply(net, how, anonymous_timeout)?;
                alice
                    .start_agent()
                    .context("oemesh: starting alice's agent")?;
                Running::Oemesh {
                    client: alice,
                    bob,
                    clear_peer: true,
                    _no_peer: Some(setup),
                }
            }
            Kind::Boringtun(threads) => {
                src = BT_ALICE.into();
                dst = BT_BOB.into();
                let dir = net.dir().to_owned();
                let wg = start_boringtun(net, threads, &dir)?;
                Running::Boringtun {
                    wg: Some(Box::new(wg)),
                    threads,
                    dir,
                }
            }
            Kind::Strongswan(aead) => {
                let config = |local: &Host, remote: &Host, key: &Ed25519Key, peer: &Ed25519Key| {
                    let mut c =
                        CharonConfig::new(&local.ip().to_string(), &remote.ip().to_string());
                    c.local_key = Some(key.clone());
                    c.remote_pubkey = Some(peer.public_pem.clone());
                    c.local_id = Some(local.ip().to_string());
                    c.remote_id = Some(remote.ip().to_string());
                    c.local_ts = vec![format!("{}/32", local.ip())];
                    c.remote_ts = vec![format!("{}/32", remote.ip())];
                    c.proposals = vec![format!("{aead}-prfsha256-x25519")];
                    c.esp_proposals = vec![format!("{aead}-x25519")];
                    c.log_levels = CharonConfig::levels(&[
                        ("default", 1),
                        ("ike", 1),
                        ("chd", 2),
                        ("knl", 2),
                        ("cfg", 1),
                    ]);
                    c
                };
                // Trap: charon installs the policy and the route into ipsec0,
                // so nothing leaves in the clear before the SA is up. (libipsec
                // raises no acquire from it: packets are dropped until an
                // explicit initiate; see `make_cold`.)
                let mut ca = config(alice, bob, &keys.0, &keys.1);
                ca.start_action = StartAction::Trap;
                let cb = config(bob, alice, &keys.1, &keys.0);
                let bob_c = Charon::start(bob.netns(), "bench-bob", cb)
                    .context("strongSwan: charon on bob")?;
                let alice_c = Charon::start(alice.netns(), "bench-alice", ca)
                    .context("strongSwan: charon on alice")?;
                alice_c
                    .initiate()
                    .context("strongSwan: swanctl --initiate")?;
                alice_c.wait_established(Duration::from_secs(10))?;
                Running::Strongswan {
                    alice: Box::new(alice_c),
                    bob: Box::new(bob_c),
                }
            }
        };
        Ok(Tunnel {
            running,
            client,
            server,
            src,
            dst,
            net,
        })
    }

    /// The daemons whose CPU time counts (both ends).
    fn pids(&self) -> Vec<u32> {
        match &self.running {
            Running::Veth => vec![],
            Running::Oemesh { client, bob, .. } => [client.agent_pid(), bob.agent_pid()]
                .into_iter()
                .flatten()
                .collect(),
            Running::Boringtun { wg, .. } => wg
                .as_ref()
                .map(|w| vec![w.pids().0, w.pids().1])
                .unwrap_or_default(),
            Running::Strongswan { alice, bob } => vec![alice.pid(), bob.pid()],
            Running::Sites { agents, .. } => agents.iter().filter_map(|h| h.agent_pid()).collect(),
        }
    }

    fn cpu(&self) -> Result<Duration> {
        self.pids().into_iter().map(probe::cpu_time).sum()
    }

    /// Forgets every tunnel state, so that the next packet starts from nothing.
    fn make_cold(&mut self) -> Result<()> {
        match &mut self.running {
            Running::Veth => {
                for h in [self.client, self.server] {
                    h.netns().ip(&["neigh", "flush", "all"])?;
                }
            }
            Running::Oemesh {
                client,
                bob,
                clear_peer,
                ..
            } => {
                if !*clear_peer {
                    bob.restart_agent()
                        .context("oemesh: restarting bob's agent")?;
                }
                client
                    .restart_agent()
                    .with_context(|| format!("oemesh: restarting {}'s agent", client.name()))?;
            }
            Running::Sites { agents, .. } => {
                for h in agents.iter() {
                    h.restart_agent()
                        .with_context(|| format!("oemesh: restarting {}'s agent", h.name()))?;
                }
            }
            Running::Boringtun { wg, threads, dir } => {
                drop(wg.take());
                *wg = Some(Box::new(start_boringtun(self.net, *threads, dir)?));
            }
            Running::Strongswan { alice, .. } => {
                alice
                    .terminate()
                    .context("strongSwan: swanctl --terminate")?;
                process::wait_until(
                    "strongSwan: no IKE SA left on alice",
                    Duration::from_secs(10),
                    || alice.list_sas().is_ok_and(|s| s.is_empty()),
                )?;
            }
        }
        Ok(())
    }

    /// Sends pings until one comes back (the tunnel is up).
    fn warm_up(&self) -> Result<()> {
        let ns = self.client.netns();
        process::wait_until(
            "the first ping through the tunnel",
            Duration::from_secs(15),
            || {
                ns.ping(self.src, self.dst, Duration::from_millis(500))
                    .is_ok()
            },
        )
        .with_context(|| {
            let extra = match &self.running {
                Running::Strongswan { alice, .. } => alice.context(),
                Running::Oemesh { client, .. } => client.log_tail(30),
                Running::Sites { agents, .. } => agents
                    .iter()
                    .map(|h| format!("--- {}:\n{}", h.name(), h.log_tail(15)))
                    .collect(),
                _ => String::new(),
            };
            format!(
                "no ICMP {} -> {} through the tunnel\n{extra}",
                self.src, self.dst
            )
        })
    }
}

/// The nftables table a `NoPeer::Silent`/`Passthrough` row adds in bob.
const DROP_TABLE: &str = "oemesh_bench_drop";

/// What a `Kind::OemeshNoPeer` row changes, undone on drop (also when the row
/// fails): bob's IPSECKEY records are removed from BIND, alice's config gets
/// the row's keys, and for the silent rows bob drops UDP 500/4500.
struct NoPeerSetup<'n> {
    net: &'n Testnet,
    /// bob's IPSECKEY records as dig printed them (`NAME TTL IN IPSECKEY RDATA`).
    records: Vec<String>,
    /// alice's config file before the row.
    alice_config: String,
    /// Whether bob's drop table was added.
    table: bool,
}

impl<'n> NoPeerSetup<'n> {
    fn apply(net: &'n Testnet, how: NoPeer, anonymous_timeout: Option<&str>) -> Result<Self> {
        let (alice, bob) = (net.alice(), net.bob());
        let bind = net.dns().bind();
        let owner = reverse_v4(bob.v4());
        let records: Vec<String> = bind
            .dig(&["+norecurse", &owner, "IPSECKEY"])?
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("IPSECKEY"))
            .map(str::to_owned)
            .collect();
        if records.is_empty() {
            bail!("no IPSECKEY record at {owner} to remove");
        }
        let path = alice.config_path();
        let alice_config = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut setup = NoPeerSetup {
            net,
            records,
            alice_config,
            table: false,
        };
        bind.nsupdate(&format!("update delete {owner} IPSECKEY"))
            .context("removing bob's IPSECKEY record")?;
        if !net.dns().ipseckeys(bob.ip())?.is_empty() {
            bail!("bob's IPSECKEY record is still served after nsupdate");
        }
        if how != NoPeer::Icmp {
            let rules = net.dir().join("bench-drop-ike.nft");
            std::fs::write(
                &rules,
                format!(
                    "table inet {DROP_TABLE} {{\n  chain input {{\n    type filter hook input priority -200; policy accept;\n    udp dport {{ 500, 4500 }} drop\n  }}\n}}\n"
                ),
            )?;
            let rules_s = rules.to_str().context("nft file path is not UTF-8")?;
            bob.netns()
                .exec(&["nft", "-f", rules_s], Duration::from_secs(10))
                .context("bob: nft -f (drop UDP 500/4500)")?;
            setup.table = true;
        }
        if how == NoPeer::Passthrough {
            set_config_key(
                alice,
                "policy.negotiation",
                "private-or-clear",
                "\"passthrough\"",
            )?;
        }
        if let Some(t) = anonymous_timeout {
            set_config_key(alice, "ike", "anonymous_timeout", &format!("\"{t}\""))?;
        }
        Ok(setup)
    }
}

impl Drop for NoPeerSetup<'_> {
    fn drop(&mut self) {
        let (alice, bob) = (self.net.alice(), self.net.bob());
        let _ = alice.stop_agent();
        if let Err(e) = std::fs::write(alice.config_path(), &self.alice_config) {
            eprintln!("bench: restoring alice's config: {e}");
        }
        if self.table
            && let Err(e) = bob.netns().exec(
                &["nft", "delete", "table", "inet", DROP_TABLE],
                Duration::from_secs(10),
            )
        {
            eprintln!("bench: removing bob's nftables table {DROP_TABLE}: {e:#}");
        }
        let script: Vec<String> = self
            .records
            .iter()
            .map(|r| format!("update add {r}"))
            .collect();
        if let Err(e) = self.net.dns().bind().nsupdate(&script.join("\n")) {
            eprintln!("bench: restoring bob's IPSECKEY record: {e:#}");
        } else if self
            .net
            .dns()
            .ipseckeys(bob.ip())
            .map_or(true, |r| r.is_empty())
        {
            eprintln!("bench: bob's IPSECKEY record is not served again after restoring it");
        }
    }
}

/// `d.c.b.a.in-addr.arpa.` of `a.b.c.d`.
fn reverse_v4(a: Ipv4Addr) -> String {
    let o = a.octets();
    format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
}

/// Sets `[ike] esp_aead` in the agent's config file (written by the testnet).
fn set_esp_aead(host: &Host, aead: &str) -> Result<()> {
    set_config_key(host, "ike", "esp_aead", &format!("\"{aead}\""))
}

/// `[dns] dnssec` and `trust_anchors`: validating from the testnet's
/// anchors, or off.
fn set_dnssec(host: &Host, net: &Testnet, validate: bool) -> Result<()> {
    let anchors = match (validate, net.anchor_file()) {
        (true, Some(a)) => format!("[{:?}]", a.display().to_string()),
        _ => "[]".to_owned(),
    };
    let mode = if validate { "\"validate\"" } else { "\"off\"" };
    set_config_key(host, "dns", "trust_anchors", &anchors)?;
    set_config_key(host, "dns", "dnssec", mode)
}

/// Sets `key = value` (TOML) in `[section]` of the agent's config file.
fn set_config_key(host: &Host, section: &str, key: &str, value: &str) -> Result<()> {
    let path = host.config_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::new();
    let mut done = false;
    let header = format!("[{section}]");
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.to_owned();
        } else if current == header && t.split('=').next().map(str::trim) == Some(key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if t == header {
            let _ = writeln!(out, "{key} = {value}");
            done = true;
        }
    }
    if !done {
        let _ = writeln!(out, "{header}\n{key} = {value}");
    }
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
}

/// Checks in the initiating end's log (alice's, or the NATed laptop's) that
/// the SA pair uses `aead` (the agents log the `control_plane` target at
/// debug: "ESP SA pair … (Aes256Gcm, ESN)").
fn check_oemesh_aead(client: &Host, aead: &str) -> Result<()> {
    let want = match aead {
        "chacha20-poly1305" => "ChaCha20Poly1305",
        _ => "Aes256Gcm",
    };
    let who = client.name();
    let log = client.log();
    let last = log
        .lines()
        .rfind(|l| l.contains("ESP SA pair"))
        .with_context(|| format!("oemesh: no \"ESP SA pair\" line in {who}'s log"))?;
    if !last.contains(want) {
        bail!("oemesh: asked for {aead}, but {who}'s SA is: {last}");
    }
    Ok(())
}

fn start_boringtun(net: &Testnet, threads: Option<u32>, dir: &Path) -> Result<Boringtun> {
    let a = End {
        ns: net.alice().netns(),
        outer: net.alice().ip(),
        inner: BT_ALICE,
    };
    let b = End {
        ns: net.bob().netns(),
        outer: net.bob().ip(),
        inner: BT_BOB,
    };
    Boringtun::start_pair(a, b, dir, threads).context("boringtun")
}

/// Samples per metric.
type Samples = BTreeMap<&'static str, Vec<f64>>;

fn measure(args: &Args, tunnel: &mut Tunnel<'_>, v: &Variant) -> Result<Samples> {
    let mut s = Samples::new();
    let alice = tunnel.client.netns();
    let bob = tunnel.server.netns();
    // The no-peer rows measure the cold path only: nothing to warm up, no tunnel.
    let cold_only = matches!(v.kind, Kind::OemeshNoPeer(_) | Kind::OemeshNoDnssec);
    if !cold_only {
        tunnel.warm_up()?;
    }
    if let Running::Oemesh { client, .. } = &tunnel.running
        && let Some(aead) = match v.kind {
            Kind::Oemesh(aead) => Some(aead),
            Kind::OemeshNat => Some("aes-256-gcm"),
            _ => None,
        }
    {
        check_oemesh_aead(client, aead)?;
    }
    if let Running::Sites { encrypting, .. } = &tunnel.running {
        // Without this a decision for clear (a bogus DNS answer, a failed
        // IKE) would measure plain forwarding under the tunnel's name.
        let far_gateway = IpAddr::V4(oemesh_testkit::topology::sites::SITE_B.wan_v4);
        for h in encrypting {
            sites::check_private(h, tunnel.dst, far_gateway)?;
            check_oemesh_aead(h, "aes-256-gcm")?;
        }
    }
    let tcp_runs = if cold_only || args.no_tcp {
        0
    } else {
        args.runs
    };
    let rtt_runs = if cold_only { 0 } else { args.runs };
    for run in 0..tcp_runs {
        for (streams, bw_key, cpu_key) in [
            (1, "tcp1_gbps", "cpu1_s_per_gb"),
            (4, "tcp4_gbps", "cpu4_s_per_gb"),
        ] {
            check_interrupt()?;
            let drops_before = [Drops::read(alice)?, Drops::read(bob)?];
            let before = tunnel.cpu()?;
            let r = iperf::run_client(alice, tunnel.dst, args.duration, streams)
                .with_context(|| format!("{}: iperf3 -P {streams}", v.name))?;
            let cpu = tunnel.cpu()?.saturating_sub(before);
            let drops = [
                Drops::read(alice)?.since(drops_before[0]),
                Drops::read(bob)?.since(drops_before[1]),
            ];
            let (udp_drops, link_drops) = (
                drops[0].udp_buffer + drops[1].udp_buffer,
                drops[0].link + drops[1].link,
            );
            let gbps = r.bits_per_second / 1e9;
            eprintln!(
                "  {} run {}: TCP x{streams} {gbps:.2} Gbit/s, {} retransmits, daemons {:.2} CPU-s, \
                 drops: {udp_drops} UDP buffer, {link_drops} interface",
                v.name,
                run + 1,
                r.retransmits,
                cpu.as_secs_f64()
            );
            if streams == 1 {
                s.entry("retrans1").or_default().push(r.retransmits as f64);
                s.entry("udp_drops1").or_default().push(udp_drops as f64);
                s.entry("link_drops1").or_default().push(link_drops as f64);
            }
            s.entry(bw_key).or_default().push(gbps);
            if !tunnel.pids().is_empty() && r.bytes > 0 {
                s.entry(cpu_key)
                    .or_default()
                    .push(cpu.as_secs_f64() / (r.bytes as f64 / 1e9));
            }
        }
    }
    let echo = UdpEcho::start(
        bob,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ECHO_PORT),
    )?;
    for _ in 0..rtt_runs {
        check_interrupt()?;
        let icmp = probe::icmp_rtts(
            alice,
            tunnel.src,
            tunnel.dst,
            args.rtt_count,
            Duration::from_secs(2),
        )
        .with_context(|| format!("{}: ICMP round trips", v.name))?;
        s.entry("icmp_rtt_us").or_default().push(median_us(&icmp));
        let udp = probe::udp_rtts(
            alice,
            tunnel.src,
            SocketAddr::new(tunnel.dst, echo.addr().port()),
            args.rtt_count,
            Duration::from_secs(2),
        )
        .with_context(|| format!("{}: UDP round trips", v.name))?;
        s.entry("udp_rtt_us").or_default().push(median_us(&udp));
    }
    drop(echo);
    for run in 0..args.runs {
        check_interrupt()?;
        tunnel.make_cold()?;
        check_interrupt()?;
        let initiate = || match &tunnel.running {
            Running::Strongswan { alice, .. } => alice.initiate(),
            _ => Ok(()),
        };
        let trigger: Option<&(dyn Fn() -> Result<()> + Sync)> = match tunnel.running {
            Running::Strongswan { .. } => Some(&initiate),
            _ => None,
        };
        let p = probe::cold_probe(
            alice,
            tunnel.src,
            bob,
            SocketAddr::new(tunnel.dst, COLD_PORT),
            Duration::from_millis(1),
            Duration::from_secs(15),
            20,
            trigger,
        )
        .with_context(|| format!("{}: cold first-packet probe", v.name))?;
        eprintln!(
            "  {} cold run {}: first arrival after {:.2} ms (datagram #{}), {} of {} lost, {} reordered",
            v.name,
            run + 1,
            p.first_arrival.as_secs_f64() * 1e3,
            p.first_seq,
            p.lost,
            p.sent,
            p.reordered
        );
        if std::env::var_os("OEMESH_BENCH_LOG").is_some()
            && let Running::Oemesh { client, bob, .. } = &tunnel.running
        {
            for h in [client, bob] {
                let who = h.name();
                let path = format!("/tmp/oemesh-bench-cold-{}-{}-{who}.log", v.name, run + 1);
                std::fs::write(&path, h.log()).with_context(|| format!("writing {path}"))?;
                eprintln!("  {who}'s log: {path}");
            }
        }
        if let Some(z) = p.zero_arrival {
            s.entry("cold0_ms").or_default().push(z.as_secs_f64() * 1e3);
        }
        s.entry("cold_ms")
            .or_default()
            .push(p.first_arrival.as_secs_f64() * 1e3);
        s.entry("cold_lost").or_default().push(p.lost as f64);
        s.entry("cold_first_seq")
            .or_default()
            .push(p.first_seq as f64);
        s.entry("cold_reordered")
            .or_default()
            .push(p.reordered as f64);
    }
    Ok(s)
}

fn median_us(d: &[Duration]) -> f64 {
    let v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    stat(&v).0
}

/// (median, min, max).
fn stat(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

/// While one more `iperf3 -P 1` runs through oemesh from `client` (alice, or
/// the NATed laptop), `perf record -g` on both agents; writes
/// `<row>-<host>.perf.data` files and `perf report` text into `dir`.
fn profile_oemesh(args: &Args, net: &Testnet, client: &Host, row: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let dst = net.bob().ip();
    let secs = args.duration.to_string();
    let mut perfs: Vec<(Child, PathBuf)> = Vec::new();
    for host in [client, net.bob()] {
        let pid = host.agent_pid().context("profile: agent not running")?;
        let data = dir.join(format!("{row}-{}.perf.data", host.name()));
        let mut cmd = std::process::Command::new("perf");
        cmd.args(["record", "-g", "-p", &pid.to_string(), "-o"])
            .arg(&data)
            .args(["--", "sleep", &secs]);
        let out = dir.join(format!("perf-record-{row}-{}.out", host.name()));
        perfs.push((
            Child::spawn(&format!("perf record {}", host.name()), cmd, &out)?,
            data,
        ));
    }
    iperf::run_client(client.netns(), dst, args.duration, 1).context("profile: iperf3")?;
    for (child, data) in &mut perfs {
        process::wait_until("perf record to finish", Duration::from_secs(30), || {
            !child.is_running()
        })?;
        let report = process::run(
            std::process::Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "--no-children",
                    "-g",
                    "none",
                    "--percent-limit",
                    "1",
                    "-i",
                ])
                .arg(&*data),
            Duration::from_secs(120),
        )
        .context("perf report")?;
        let txt = data.with_extension("txt");
        std::fs::write(&txt, &report.stdout)?;
        eprintln!("profile: {}", txt.display());
    }
    Ok(())
}

fn fmt_cell(v: Option<&Vec<f64>>, key: &str) -> String {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return "n/a".into();
    };
    let (m, lo, hi) = stat(v);
    let digits = match key {
        "tcp1_gbps" | "tcp4_gbps" | "cpu1_s_per_gb" | "cpu4_s_per_gb" => 2,
        "cold_ms" | "cold0_ms" => 1,
        _ => 0,
    };
    if v.len() == 1 {
        format!("{m:.digits$}")
    } else {
        format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
    }
}

fn ratio(results: &BTreeMap<&str, Samples>, a: &str, b: &str, key: &str) -> Option<f64> {
    let x = stat(results.get(a)?.get(key)?).0;
    let y = stat(results.get(b)?.get(key)?).0;
    (y != 0.0 && x.is_finite() && y.is_finite()).then(|| x / y)
}

fn report(
    args: &Args,
    results: &BTreeMap<&str, Samples>,
    failures: &[(String, String)],
) -> (String, serde_json::Value) {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nmedian (min–max) of {} run(s); iperf3 -t {}; RTT = median of {} round trips per run\n",
        args.runs, args.duration, args.rtt_count
    );
    let _ = write!(t, "| tunnel | AEAD |");
    for (_, title, unit, _) in METRICS {
        let _ = write!(t, " {title} ({unit}) |");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "|---|---|{}", "---:|".repeat(METRICS.len()));
    for v in VARIANTS {
        let Some(s) = results.get(v.name) else {
            continue;
        };
        let _ = write!(t, "| {} | {} |", v.label, v.aead);
        for (key, ..) in METRICS {
            let _ = write!(t, " {} |", fmt_cell(s.get(key), key));
        }
        let _ = writeln!(t);
    }
    let pairs: Vec<(String, &str, &str)> = [
        (
            "oemesh, DNSSEC validated / not validated",
            "oemesh",
            "oemesh-nodnssec",
        ),
        ("oemesh / boringtun", "oemesh", "boringtun"),
        ("oemesh / boringtun --threads 1", "oemesh", "boringtun-t1"),
        ("oemesh ChaCha / boringtun", "oemesh-chacha", "boringtun"),
        (
            "oemesh ChaCha / boringtun --threads 1",
            "oemesh-chacha",
            "boringtun-t1",
        ),
        (
            "oemesh / strongSwan (AES-256-GCM)",
            "oemesh",
            "strongswan-aes",
        ),
        (
            "oemesh ChaCha / strongSwan (ChaCha20-Poly1305)",
            "oemesh-chacha",
            "strongswan-chacha",
        ),
    ]
    .into_iter()
    .chain(nat::RATIOS)
    .chain(sites::RATIOS)
    .map(|(l, a, b)| (l.to_owned(), a, b))
    .chain(
        VARIANTS
            .iter()
            .filter(|v| !matches!(v.kind, Kind::Veth | Kind::VethNat | Kind::VethSites))
            .map(|v| (format!("{} {} / veth", v.label, v.aead), v.name, "veth")),
    )
    .collect();
    let ratio_keys = [
        "tcp1_gbps",
        "tcp4_gbps",
        "cpu1_s_per_gb",
        "cpu4_s_per_gb",
        "icmp_rtt_us",
        "udp_rtt_us",
        "cold0_ms",
        "cold_ms",
    ];
    let _ = writeln!(
        t,
        "\nRatios of medians (throughput: higher is better; CPU/GB, RTT, cold: lower is better)\n"
    );
    let _ = write!(t, "| ratio |");
    for key in ratio_keys {
        let title = METRICS.iter().find(|m| m.0 == key).map_or(key, |m| m.1);
        let _ = write!(t, " {title} |");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "|---|{}", "---:|".repeat(ratio_keys.len()));
    let mut json_ratios = serde_json::Map::new();
    for (label, a, b) in &pairs {
        if !results.contains_key(a) || !results.contains_key(b) {
            continue;
        }
        let _ = write!(t, "| {label} |");
        let mut row = serde_json::Map::new();
        for key in ratio_keys {
            match ratio(results, a, b, key) {
                Some(r) => {
                    let _ = write!(t, " {r:.2}× |");
                    row.insert(key.into(), json!(r));
                }
                None => {
                    let _ = write!(t, " n/a |");
                }
            }
        }
        let _ = writeln!(t);
        json_ratios.insert(label.clone(), row.into());
    }
    for (name, why) in failures {
        let _ = writeln!(t, "\nFAILED {name}: {why}");
    }
    let mut json_results = serde_json::Map::new();
    for v in VARIANTS {
        let Some(s) = results.get(v.name) else {
            continue;
        };
        let mut m = serde_json::Map::new();
        for (key, samples) in s {
            let (med, lo, hi) = stat(samples);
            m.insert(
                (*key).into(),
                json!({"median": med, "min": lo, "max": hi, "samples": samples}),
            );
        }
        json_results.insert(
            v.name.into(),
            json!({"label": v.label, "aead": v.aead, "metrics": m}),
        );
    }
    let j = json!({
        "command": args.command,
        "duration_s": args.duration,
        "runs": args.runs,
        "rtt_count": args.rtt_count,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "results": json_results,
        "ratios": json_ratios,
        "failures": failures.iter().map(|(n, w)| json!({"tunnel": n, "error": w})).collect::<Vec<_>>(),
    });
    (t, j)
}

/// The initiators' addresses (`ikeload`) and the clear destinations (`memory`):
/// off-link for bob (routed via alice), inside the reverse zone BIND serves, so
/// that the responder's lookup of an initiator's key is a fast NXDOMAIN.
const LOAD_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0);
const CLEAR_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0);

/// Control-plane figures: `ike` (handshakes completed by bob's agent against
/// the load generator in alice, its CPU and memory per SA pair) and `memory`
/// (bob's agent's memory per cached clear outcome).
fn control_plane(args: &Args, net: &Testnet, ike: bool, memory: bool) -> Result<Samples> {
    let (alice, bob) = (net.alice(), net.bob());
    let mut s = Samples::new();
    let mut cfg = AgentConfig::default();
    // The load generator's prefix answers OE with AUTH NULL accepted; the
    // clear destinations need a published key (so no AUTH NULL attempt: the
    // NXDOMAIN makes them clear at once).
    cfg.set_policy("clear-or-private", &[&format!("{LOAD_PREFIX}/48")]);
    cfg.set_policy(
        "private-or-clear",
        &[SUBNET_V4, &format!("{CLEAR_PREFIX}/64")],
    );
    cfg.set_policy("require-authenticated", &["private-or-clear"]);
    bob.set_agent_config(&cfg)?;
    // Lift the lookup bucket (50/s by default): it, not the CPU, would be the limit.
    set_config_key(bob, "dns", "lookups_per_second", "1000000")?;
    set_config_key(bob, "dns", "lookup_burst", "1000000")?;
    set_config_key(bob, "dns", "inbound_lookups_per_second", "1000000")?;
    set_config_key(bob, "dns", "inbound_lookup_burst", "1000000")?;
    // And the anonymous SA limit (8192 by default): past it every new SA
    // evicts the idlest, which the run would measure instead of handshakes.
    set_config_key(bob, "ike", "anonymous_limit", "1000000")?;
    for (p, len) in [(LOAD_PREFIX, 48), (CLEAR_PREFIX, 64)] {
        bob.netns().ip(&[
            "-6",
            "route",
            "replace",
            &format!("{p}/{len}"),
            "via",
            &alice.v6().to_string(),
        ])?;
    }
    ikeload::prepare_source(alice.netns(), LOAD_PREFIX)?;
    let restore = || -> Result<()> {
        let _ = bob.stop_agent();
        bob.set_agent_config(&AgentConfig::default())
    };
    let result = (|| -> Result<()> {
        // A busy agent may not answer at once (EAGAIN on its control socket).
        let status = |h: &Host| -> Result<serde_json::Value> {
            let mut last = None;
            process::wait_until("`oemesh status --json`", Duration::from_secs(30), || {
                last = h.oemesh_cli(&["status", "--json"]).ok();
                last.is_some()
            })?;
            Ok(serde_json::from_str(&last.unwrap_or_default())?)
        };
        if ike {
            let key_b64 = bob.public_key().context("bob has no key")?;
            let key: [u8; 32] =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key_b64)
                    .context("bob's public key")?
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("bob's public key is not 32 bytes"))?;
            let count = if args.runs == 1 && args.duration <= 2 {
                2_000
            } else {
                10_000
            };
            let mut first = 0u32;
            for run in 0..args.runs {
                check_interrupt()?;
                // A fresh agent per run: every run measures 0 -> `count` SA pairs.
                let _ = bob.stop_agent();
                bob.start_agent().context("ike: bob's agent")?;
                let pid = bob.agent_pid().context("ike: bob's agent pid")?;
                let (cpu0, rss0) = (probe::cpu_time(pid)?, ikeload::rss_bytes(pid)?);
                let sas0 = status(bob)?["sas"].as_u64().unwrap_or(0);
                let load = Load {
                    responder: IpAddr::V6(bob.v6()),
                    responder_key: key,
                    prefix: LOAD_PREFIX,
                    first,
                    count,
                    concurrency: 32,
                    timeout: Duration::from_secs(10),
                };
                first += u32::try_from(count).unwrap_or(0);
                let o = ikeload::run(alice.netns(), &load)?;
                let cpu = probe::cpu_time(pid)?.saturating_sub(cpu0).as_secs_f64();
                let rss1 = ikeload::rss_bytes(pid)?;
                let sas1 = status(bob)?["sas"].as_u64().unwrap_or(0);
                let rate = o.completed as f64 / o.elapsed.as_secs_f64();
                let per_cpu = o.completed as f64 / cpu.max(0.01);
                let new_sas = sas1.saturating_sub(sas0);
                let per_sa = rss1.saturating_sub(rss0) as f64 / (new_sas.max(1) as f64);
                eprintln!(
                    "  ike run {}: {} of {count} handshakes in {:.2} s = {rate:.0}/s; responder {cpu:.2} CPU-s \
                     = {per_cpu:.0} SAs per CPU-s; SA pairs {sas0} -> {sas1}, RSS {:.1} -> {:.1} MiB \
                     = {per_sa:.0} B per SA pair{}",
                    run + 1,
                    o.completed,
                    o.elapsed.as_secs_f64(),
                    rss0 as f64 / 1048576.0,
                    rss1 as f64 / 1048576.0,
                    if o.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; failures: {:?}", o.errors)
                    }
                );
                s.entry("ike_sas_per_s").or_default().push(rate);
                s.entry("ike_sas_per_cpu_s").or_default().push(per_cpu);
                s.entry("ike_failed").or_default().push(o.failed as f64);
                if new_sas > 0 {
                    s.entry("mem_per_sa_bytes").or_default().push(per_sa);
                }
            }
            let _ = bob.stop_agent();
        }
        if memory {
            bob.start_agent().context("memory: bob's agent")?;
            let pid = bob.agent_pid().context("memory: bob's agent pid")?;
            let total: u32 = if args.runs == 1 && args.duration <= 2 {
                10_000
            } else {
                100_000
            };
            let sock = bob
                .netns()
                .bind_udp(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0))?;
            let clear = |st: &serde_json::Value| st["peers"]["clear"].as_u64().unwrap_or(0);
            let st0 = status(bob)?;
            let (rss0, clear0) = (ikeload::rss_bytes(pid)?, clear(&st0));
            let started = Instant::now();
            // Below the TUN's txqueuelen (500): a larger burst overflows it.
            let chunk = 200u32;
            let mut sent = 0u32;
            while sent < total {
                check_interrupt()?;
                for i in sent..(sent + chunk).min(total) {
                    let dst = ikeload::address(CLEAR_PREFIX, i);
                    let _ = sock.send_to(b"x", SocketAddr::new(IpAddr::V6(dst), 9));
                }
                sent = (sent + chunk).min(total);
                process::wait_until(
                    "memory: the pending destinations decided",
                    Duration::from_secs(30),
                    || status(bob).is_ok_and(|st| st["peers"]["pending"].as_u64() == Some(0)),
                )?;
            }
            let st1 = status(bob)?;
            let (rss1, clear1) = (ikeload::rss_bytes(pid)?, clear(&st1));
            let n = clear1.saturating_sub(clear0);
            let per = rss1.saturating_sub(rss0) as f64 / (n.max(1) as f64);
            eprintln!(
                "  memory: {total} destinations in {:.1} s; clear outcomes {clear0} -> {clear1}; \
                 RSS {:.1} -> {:.1} MiB = {per:.0} B per clear outcome",
                started.elapsed().as_secs_f64(),
                rss0 as f64 / 1048576.0,
                rss1 as f64 / 1048576.0
            );
            s.entry("clear_outcomes").or_default().push(n as f64);
            if n > 0 {
                s.entry("mem_per_clear_bytes").or_default().push(per);
            }
        }
        Ok(())
    })();
    let _ = restore();
    result.map(|()| s)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = parse_args()?;
    // A flag, not a handler: the steps check it and return, so every daemon
    // is stopped by PID and every namespace removed on the way out.
    register_stop()?;
    process::require_root();
    process::require_programs(&["iperf3", "ip"]);
    let wanted = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    };
    let binaries = match &args.oemesh {
        Some(p) => Binaries::locate(p)?,
        None => Binaries::from_test_target_dir()?,
    };
    let mut opts = Options::new("bench", binaries);
    opts.start_agents = false;
    // Signed reverse zones, agents validating from their anchors (as the
    // demo runs); the `oemesh-nodnssec` row turns validation off.
    opts.dnssec = true;
    // control_plane (its commands module) at debug: one line per SA pair, with its AEAD.
    // OEMESH_BENCH_LOG adds directives (e.g. `oemesh_agent=debug` to time the
    // cold path from the agents' logs, which `OEMESH_BENCH_KEEP` keeps).
    opts.log_level = match std::env::var("OEMESH_BENCH_LOG") {
        Ok(extra) => format!("warn,oemesh_agent::control_plane=debug,{extra}"),
        Err(_) => "warn,oemesh_agent::control_plane=debug".into(),
    };
    let started = Instant::now();
    let net = Testnet::up(opts).context("building the namespace testnet")?;
    check_interrupt()?;
    let iperf_log = net.dir().join("iperf3-server.log");
    let mut server = iperf::Server::start(net.bob().netns(), net.bob().ip(), &iperf_log)
        .context("iperf3 server")?;
    let needs_charon = VARIANTS
        .iter()
        .any(|v| matches!(v.kind, Kind::Strongswan(_)) && wanted(v.name));
    let keys = if needs_charon {
        strongswan::require_charon();
        (
            Ed25519Key::generate(net.dir(), "ss-alice")?,
            Ed25519Key::generate(net.dir(), "ss-bob")?,
        )
    } else {
        let k = Ed25519Key {
            private_pem: PathBuf::new(),
            public_pem: PathBuf::new(),
            public_raw: [0; 32],
        };
        (k.clone(), k)
    };
    // Declared after `net`: dropped (agents stopped, namespaces removed) before it.
    let home = if nat::ROWS.iter().any(|r| wanted(r)) {
        Some(nat::home_lan(&net)?)
    } else {
        None
    };
    let two_sites = if sites::ROWS.iter().any(|r| wanted(r)) {
        Some(sites::two_sites(&net)?)
    } else {
        None
    };
    // iperf3 on the far hosts of the sites rows (stopped before the sites go).
    let mut site_servers = Vec::new();
    if let Some(s) = &two_sites {
        for h in [s.b().plain(), s.b().agent()] {
            let log = net.dir().join(format!("iperf3-server-{}.log", h.name()));
            site_servers.push(
                iperf::Server::start(h.netns(), h.ip(), &log)
                    .with_context(|| format!("iperf3 server on {}", h.name()))?,
            );
        }
    }
    let mut results: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut failures = Vec::new();
    for v in VARIANTS.iter().filter(|v| wanted(v.name)) {
        check_interrupt()?;
        eprintln!("== {} ({})", v.label, v.aead);
        let outcome = Tunnel::start(
            &net,
            v.kind,
            &keys,
            args.anonymous_timeout.as_deref(),
            home.as_ref(),
            two_sites.as_ref(),
        )
        .and_then(|mut tunnel| {
            let s = measure(&args, &mut tunnel, v);
            if s.is_ok()
                && matches!(v.kind, Kind::Oemesh("aes-256-gcm") | Kind::OemeshNat)
                && let Some(dir) = &args.profile
            {
                tunnel.warm_up()?;
                profile_oemesh(&args, &net, tunnel.client, v.name, dir)?;
            }
            if let Running::Oemesh { client, bob, .. } = &tunnel.running {
                let _ = client.stop_agent();
                let _ = bob.stop_agent();
            }
            if let Running::Sites { agents, .. } = &tunnel.running {
                for h in agents.iter().rev() {
                    let _ = h.stop_agent();
                }
            }
            s
        });
        check_interrupt()?;
        server.check_running()?;
        match outcome {
            Ok(s) => {
                results.insert(v.name, s);
            }
            Err(e) => {
                eprintln!("!! {} failed: {e:#}", v.name);
                failures.push((v.name.to_owned(), format!("{e:#}")));
            }
        }
    }
    let (ike, memory) = (
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == "ike")),
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == "memory")),
    );
    let mut control = None;
    if ike || memory {
        check_interrupt()?;
        eprintln!(
            "== control plane ({})",
            match (ike, memory) {
                (true, true) => "ike, memory",
                (true, false) => "ike",
                _ => "memory",
            }
        );
        match control_plane(&args, &net, ike, memory) {
            Ok(s) => control = Some(s),
            Err(e) => {
                eprintln!("!! control plane failed: {e:#}");
                failures.push(("control-plane".to_owned(), format!("{e:#}")));
            }
        }
    }
    let (mut table, mut j) = report(&args, &results, &failures);
    if let Some(c) = &control {
        let _ = writeln!(
            table,
            "\nControl plane (bob's agent; median (min–max) of {} run(s))\n",
            args.runs
        );
        let _ = writeln!(table, "| figure | value |\n|---|---:|");
        let mut m = serde_json::Map::new();
        for (key, title) in [
            (
                "ike_sas_per_s",
                "IKE SAs completed per second (32 initiators in flight)",
            ),
            ("ike_sas_per_cpu_s", "IKE SAs per responder CPU-second"),
            ("ike_failed", "handshakes failed"),
            ("mem_per_sa_bytes", "agent RSS per live SA pair (bytes)"),
            ("clear_outcomes", "clear outcomes cached"),
            (
                "mem_per_clear_bytes",
                "agent RSS per cached clear outcome (bytes)",
            ),
        ] {
            if let Some(v) = c.get(key) {
                let (med, lo, hi) = stat(v);
                let _ = writeln!(table, "| {title} | {med:.0} ({lo:.0}–{hi:.0}) |");
                m.insert(
                    key.into(),
                    json!({"median": med, "min": lo, "max": hi, "samples": v}),
                );
            }
        }
        j["control_plane"] = m.into();
    }
    println!("{table}");
    eprintln!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON: {}", path.display());
    }
    if !failures.is_empty() {
        bail!(
            "{} tunnel(s) failed: {}",
            failures.len(),
            failures
                .iter()
                .map(|f| f.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// SIGINT/SIGTERM set [`STOP`]; a second one ends the process at once.
fn register_stop() -> Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_default(sig, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    std::thread::Builder::new()
        .name("signal watch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("bench: signal received, stopping (again to abort at once)");
            STOP.store(true, Ordering::Relaxed);
        })
        .context("spawning the signal watcher")?;
    Ok(())
}

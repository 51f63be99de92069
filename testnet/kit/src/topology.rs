//! The oemesh testnet in network namespaces: one switch, a `dns` host running
//! BIND 9, and four end hosts.
//!
//! | host    | IPv4          | IPv6           | runs                                   |
//! |---------|---------------|----------------|----------------------------------------|
//! | `dns`   | 192.0.2.53    | 2001:db8::53   | BIND 9: `oe.test.`, `2.0.192.in-addr.arpa.`, `8.b.d.0.1.0.0.2.ip6.arpa.`, TSIG updates |
//! | `alice` | 192.0.2.10    | 2001:db8::10   | `oemesh run`, key published with `dnskeys publish` |
//! | `bob`   | 192.0.2.20    | 2001:db8::20   | `oemesh run`, key published            |
//! | `carol` | 192.0.2.30    | 2001:db8::30   | `oemesh run` without a key (anonymous OE) |
//! | `dave`  | 192.0.2.40    | 2001:db8::40   | nothing (the legacy host)              |
//!
//! The switch is a Linux bridge (`br0`) in a namespace of its own;
//! [`Testnet::capture`] runs tcpdump on it and so sees everything between the
//! hosts. Keys are made with the real `dnskeys keygen` and published with the
//! real `dnskeys publish --server 192.0.2.53:53 --tsig-key …`, run inside the
//! host's namespace as that host's admin would.
//!
//! ```no_run
//! use oemesh_testkit::topology::{Binaries, Options, Testnet};
//! let bins = Binaries::locate(std::path::Path::new("target/debug/oemesh")).unwrap();
//! let net = Testnet::up(Options::new("demo", bins)).unwrap();
//! let peers = net.alice().peers().unwrap();
//! println!("{peers:?}");
//! ```
//!
//! Binaries: the caller passes the paths of `oemesh` and `dnskeys`
//! ([`Binaries`]). A test of the agent crate has only
//! `env!("CARGO_BIN_EXE_oemesh")`; [`Binaries::locate`] finds `dnskeys` next to
//! it (or in `$OEMESH_DNSKEYS`), building it with `cargo build -p dnskeys` when
//! it is not there.
//!
//! Teardown (on drop): agents get SIGTERM (so they remove their routes), then
//! BIND and the namespaces go, then the temporary directory. With
//! [`Options::keep`] nothing is torn down and [`Testnet::describe`] is printed:
//! how to enter each host with `ip netns exec`. Kept namespaces carry the dead
//! creator's PID in their name, so the next test run's sweep
//! ([`crate::netns::cleanup_stale`]) removes them.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::Signal;

use crate::bind::Bind;
use crate::capture::Capture;
use crate::netns::{Netns, Switch};
use crate::process::{self, Child, require_programs, require_root, wait_for, wait_until};

/// The testnet's IPv4 segment (TEST-NET-1).
pub const SUBNET_V4: &str = "192.0.2.0/24";
/// The testnet's IPv6 segment (documentation prefix).
pub const SUBNET_V6: &str = "2001:db8::/64";
/// The forward zone BIND serves (`alice.oe.test.` …).
pub const FORWARD_ZONE: &str = "oe.test.";
/// The DNS server's address.
pub const DNS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// The DNS server's IPv6 address.
pub const DNS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
/// The switch interface every capture listens on (in the switch namespace).
pub const SWITCH_IFACE: &str = "br0";

/// How long an agent may take to answer `oemesh status` after starting.
const AGENT_READY: Duration = Duration::from_secs(20);
/// Bound on one `oemesh` CLI call or `dnskeys` run.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on `cargo build -p dnskeys`.
const BUILD_TIMEOUT: Duration = Duration::from_secs(540);

/// What each end host is and does.
#[derive(Clone, Copy, Debug)]
struct HostSpec {
    name: &'static str,
    last_octet: u8,
    agent: bool,
    key: bool,
}

const HOSTS: [HostSpec; 4] = [
    HostSpec {
        name: "alice",
        last_octet: 10,
        agent: true,
        key: true,
    },
    HostSpec {
        name: "bob",
        last_octet: 20,
        agent: true,
        key: true,
    },
    HostSpec {
        name: "carol",
        last_octet: 30,
        agent: true,
        key: false,
    },
    HostSpec {
        name: "dave",
        last_octet: 40,
        agent: false,
        key: false,
    },
];

/// The programs the testnet runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The agent (`oemesh`).
    pub oemesh: PathBuf,
    /// The DNS admin's tool (`dnskeys`).
    pub dnskeys: PathBuf,
}

impl Binaries {
    /// `oemesh` as given, and `dnskeys` from `$OEMESH_DNSKEYS`, else next to
    /// `oemesh` (same cargo profile directory), else built there with
    /// `cargo build -p dnskeys` (`$CARGO` or `cargo` on PATH, run in the
    /// workspace that contains `oemesh`'s target directory).
    pub fn locate(oemesh: &Path) -> Result<Binaries> {
        if !oemesh.is_file() {
            bail!("no oemesh binary at {}", oemesh.display());
        }
        let dnskeys = match std::env::var_os("OEMESH_DNSKEYS") {
            Some(p) => PathBuf::from(p),
            None => sibling_binary(profile_dir_of(oemesh)?, "dnskeys", "dnskeys")?,
        };
        if !dnskeys.is_file() {
            bail!("no dnskeys binary at {}", dnskeys.display());
        }
        Ok(Binaries {
            oemesh: oemesh.to_owned(),
            dnskeys,
        })
    }

    /// Both binaries from the cargo profile directory of the running test
    /// executable (`target/debug/deps/x-HASH` or `target/debug/examples/x` →
    /// `target/debug/`), each built
    /// with cargo when missing; `$OEMESH_DNSKEYS` and `$OEMESH_BIN` override.
    /// For tests outside the agent crate (which has no `CARGO_BIN_EXE_oemesh`).
    pub fn from_test_target_dir() -> Result<Binaries> {
        let exe = std::env::current_exe().context("current_exe")?;
        let deps = profile_dir_of(&exe)?;
        let profile_dir = if deps
            .file_name()
            .is_some_and(|n| n == "deps" || n == "examples")
        {
            profile_dir_of(deps)?
        } else {
            deps
        };
        let oemesh = match std::env::var_os("OEMESH_BIN") {
            Some(p) => PathBuf::from(p),
            None => sibling_binary(profile_dir, "oemesh-agent", "oemesh")?,
        };
        Binaries::locate(&oemesh)
    }
}

fn profile_dir_of(file: &Path) -> Result<&Path> {
    file.parent()
        .with_context(|| format!("{} has no parent directory", file.display()))
}

/// `bin` of workspace package `package` in cargo profile directory
/// `profile_dir` (`target/debug`), built with cargo if missing. Builds are
/// serialised per process.
fn sibling_binary(profile_dir: &Path, package: &str, bin: &str) -> Result<PathBuf> {
    static BUILD: Mutex<()> = Mutex::new(());
    let path = profile_dir.join(bin);
    if path.is_file() {
        return Ok(path);
    }
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if path.is_file() {
        return Ok(path);
    }
    let target_dir = profile_dir
        .parent()
        .with_context(|| format!("{} has no target directory", profile_dir.display()))?;
    let workspace = target_dir
        .parent()
        .with_context(|| format!("{} has no parent", target_dir.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => bail!("odd profile directory {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    process::run(
        Command::new(cargo)
            .current_dir(workspace)
            .args(["build", "-p", package, "--bin", bin, "--profile", profile])
            .arg("--target-dir")
            .arg(target_dir),
        BUILD_TIMEOUT,
    )
    .with_context(|| format!("building {bin} (set OEMESH_DNSKEYS / OEMESH_BIN to skip)"))?;
    if !path.is_file() {
        bail!("cargo built {package} but {} is missing", path.display());
    }
    Ok(path)
}

/// One agent's configuration (the parts tests vary); rendered to TOML per host.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `[dns] timeout`.
    pub dns_timeout: String,
    /// `[ike] timeout`.
    pub ike_timeout: String,
    /// `[ike] idle_timeout`; `None`: the agent's default.
    pub idle_timeout: Option<String>,
    /// `[outcome] clear_lifetime`; `None`: the agent's default.
    pub clear_lifetime: Option<String>,
    /// `[outcome] downgrade_guard`; `None`: the agent's default.
    pub downgrade_guard: Option<String>,
    /// `[policy]`: group name → prefixes, in this order.
    pub policy: Vec<(String, Vec<String>)>,
    /// Raw TOML appended at the end (must start with a `[section]` header).
    pub extra: String,
}

impl Default for AgentConfig {
    /// OE for the whole segment (`private-or-clear`), the resolver `clear`,
    /// a 1 s DNS and 3 s IKE timeout, the agent's default lifetimes.
    fn default() -> Self {
        AgentConfig {
            dns_timeout: "1s".into(),
            ike_timeout: "3s".into(),
            idle_timeout: None,
            clear_lifetime: None,
            downgrade_guard: None,
            policy: vec![
                ("private-or-clear".into(), vec![SUBNET_V4.into()]),
                ("clear".into(), vec![format!("{DNS_V4}/32")]),
            ],
            extra: String::new(),
        }
    }
}

impl AgentConfig {
    /// Sets the prefixes of `group` (replacing what it had).
    pub fn set_policy(&mut self, group: &str, prefixes: &[&str]) -> &mut Self {
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        match self.policy.iter_mut().find(|(g, _)| g == group) {
            Some((_, p)) => *p = prefixes,
            None => self.policy.push((group.to_owned(), prefixes)),
        }
        self
    }

    /// The `oemesh.toml` for a host.
    fn render(&self, address: Ipv4Addr, key: Option<&Path>, socket: &Path) -> String {
        let mut t = String::new();
        if let Some(key) = key {
            let _ = writeln!(t, "key = {:?}", key.display().to_string());
        }
        let _ = writeln!(t, "address = \"{address}\"");
        let _ = writeln!(t, "control_socket = {:?}", socket.display().to_string());
        let _ = writeln!(t, "\n[dns]\nservers = [\"{DNS_V4}:53\"]");
        let _ = writeln!(t, "timeout = \"{}\"", self.dns_timeout);
        let _ = writeln!(t, "\n[ike]\ntimeout = \"{}\"", self.ike_timeout);
        if let Some(i) = &self.idle_timeout {
            let _ = writeln!(t, "idle_timeout = \"{i}\"");
        }
        t.push_str("\n[outcome]\n");
        if let Some(l) = &self.clear_lifetime {
            let _ = writeln!(t, "clear_lifetime = \"{l}\"");
        }
        if let Some(g) = &self.downgrade_guard {
            let _ = writeln!(t, "downgrade_guard = \"{g}\"");
        }
        t.push_str("\n[policy]\n");
        for (group, prefixes) in &self.policy {
            let list: Vec<String> = prefixes.iter().map(|p| format!("\"{p}\"")).collect();
            let _ = writeln!(t, "{group} = [{}]", list.join(", "));
        }
        t.push_str("\n[metrics]\nlisten = \"127.0.0.1:9618\"\n");
        if !self.extra.is_empty() {
            t.push('\n');
            t.push_str(&self.extra);
            t.push('\n');
        }
        t
    }
}

/// How to build the testnet.
#[derive(Clone, Debug)]
pub struct Options {
    /// Prefix of the namespace labels (e.g. the test's name), so that parallel
    /// tests are told apart in `ip netns list`.
    pub label: String,
    /// The programs to run.
    pub binaries: Binaries,
    /// The configuration of every agent (per host: [`Host::set_agent_config`]).
    pub agent: AgentConfig,
    /// Start the agents on alice, bob and carol (default true).
    pub start_agents: bool,
    /// The agents' `--log-level` (default `debug`).
    pub log_level: String,
    /// Skip teardown on drop and print how to enter each host.
    pub keep: bool,
}

impl Options {
    /// Defaults: [`AgentConfig::default`], agents started, `debug` logs, torn down on drop.
    pub fn new(label: &str, binaries: Binaries) -> Options {
        Options {
            label: label.to_owned(),
            binaries,
            agent: AgentConfig::default(),
            start_agents: true,
            log_level: "debug".into(),
            keep: false,
        }
    }
}

/// One entry of `oemesh peers --json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    /// The peer's address.
    pub peer: IpAddr,
    /// `private`, `clear`, `pending` or `blocked`.
    pub state: String,
    /// `authenticated` or `anonymous` (private peers only).
    pub auth: Option<String>,
    /// Why it is in this state.
    pub reason: String,
    /// Seconds until the state expires.
    pub expires_in_s: Option<u64>,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// The whole JSON object (fields added later are here).
    pub raw: serde_json::Value,
}

impl Peer {
    fn from_json(v: &serde_json::Value) -> Result<Peer> {
        let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        Ok(Peer {
            peer: s("peer")
                .context("peer without `peer`")?
                .parse()
                .context("peer address")?,
            state: s("state").context("peer without `state`")?.to_owned(),
            auth: s("auth").map(str::to_owned),
            reason: s("reason").unwrap_or_default().to_owned(),
            expires_in_s: n("expires_in_s"),
            bytes_in: n("bytes_in").unwrap_or(0),
            bytes_out: n("bytes_out").unwrap_or(0),
            raw: v.clone(),
        })
    }
}

/// Parses the output of `oemesh peers --json` (a JSON array of peers).
pub fn parse_peers(json: &str) -> Result<Vec<Peer>> {
    let v: serde_json::Value = serde_json::from_str(json).context("peers --json output")?;
    v.as_array()
        .with_context(|| format!("peers --json is not an array: {json}"))?
        .iter()
        .map(Peer::from_json)
        .collect()
}

/// RX/TX packet counters of an interface (`ip -s link show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets received by the interface (for a TUN: written by the agent).
    pub rx_packets: u64,
    /// Packets sent through the interface (for a TUN: read by the agent).
    pub tx_packets: u64,
}

/// Parses `ip -s link show DEV` output.
pub fn parse_link_counters(text: &str) -> Result<LinkCounters> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let after = |header: &str| -> Result<u64> {
        let i = lines
            .iter()
            .position(|l| l.starts_with(header))
            .with_context(|| format!("no `{header}` line in:\n{text}"))?;
        lines
            .get(i + 1)
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no packet count after `{header}` in:\n{text}"))
    };
    Ok(LinkCounters {
        rx_packets: after("RX:")?,
        tx_packets: after("TX:")?,
    })
}

/// An end host: its namespace, addresses, key, and (maybe) its agent.
#[derive(Debug)]
pub struct Host {
    // Field order is drop order: the agent stops before its namespace goes.
    agent: Mutex<Option<Child>>,
    ns: Netns,
    name: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    iface: String,
    key: Option<PathBuf>,
    public_key: Option<String>,
    runs_agent: bool,
    dir: PathBuf,
    oemesh: PathBuf,
    log_level: String,
}

impl Host {
    /// `alice`, `bob`, …
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Its IPv4 address.
    pub fn v4(&self) -> Ipv4Addr {
        self.v4
    }

    /// Its IPv4 address as an [`IpAddr`].
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.v4)
    }

    /// Its IPv6 address.
    pub fn v6(&self) -> Ipv6Addr {
        self.v6
    }

    /// The interface plugged into the switch (`eth0`).
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Its private key file, when it has one (published in DNS).
    pub fn key_path(&self) -> Option<&Path> {
        self.key.as_deref()
    }

    /// Its public key (base64, as in the IPSECKEY record), when it has one.
    pub fn public_key(&self) -> Option<&str> {
        self.public_key.as_deref()
    }

    /// Whether the testnet gives this host an agent (dave has none).
    pub fn runs_agent(&self) -> bool {
        self.runs_agent
    }

    /// Its agent's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(format!("{}.toml", self.name))
    }

    /// Its agent's control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    /// Its agent's log (stdout+stderr of every start, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-agent.log", self.name))
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the agent's log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        process::tail_of_file(&self.log_path(), lines)
    }

    /// Runs `argv` in the host's namespace to completion within `timeout`.
    pub fn exec(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        self.ns.exec(argv, timeout)
    }

    /// Spawns `argv` in the host's namespace; output goes to `<dir>/<host>-<name>.log`.
    pub fn spawn(&self, name: &str, argv: &[&str]) -> Result<Child> {
        let label: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let out = self.dir.join(format!("{}-{label}.log", self.name));
        self.ns
            .spawn(&format!("{name} on {}", self.name), argv, &out)
    }

    /// Writes the agent's config file (applies at the next start).
    pub fn set_agent_config(&self, config: &AgentConfig) -> Result<()> {
        let text = config.render(self.v4, self.key.as_deref(), &self.socket_path());
        std::fs::write(self.config_path(), text)
            .with_context(|| format!("writing {}", self.config_path().display()))
    }

    fn agent(&self) -> MutexGuard<'_, Option<Child>> {
        self.agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The running agent's PID.
    pub fn agent_pid(&self) -> Option<u32> {
        let mut agent = self.agent();
        let child = agent.as_mut()?;
        child.is_running().then(|| child.pid())
    }

    /// Starts `oemesh run --config <config>` in the namespace and waits
    /// (bounded) until `oemesh status` answers. Fails if one is running.
    pub fn start_agent(&self) -> Result<()> {
        let mut slot = self.agent();
        if slot.as_mut().is_some_and(Child::is_running) {
            bail!("{}: the agent is already running", self.name);
        }
        let config = self.config_path();
        let argv = [
            self.oemesh.to_str().context("oemesh path is not UTF-8")?,
            "run",
            "--config",
            config.to_str().context("config path is not UTF-8")?,
            "--log-level",
            &self.log_level,
        ];
        let mut child =
            self.ns
                .spawn(&format!("oemesh on {}", self.name), &argv, &self.log_path())?;
        let ready = wait_until("`oemesh status` to answer", AGENT_READY, || {
            child.is_running() && self.oemesh_cli(&["status"]).is_ok()
        });
        if let Err(e) = child.check_running().and(ready) {
            let tail = child.output_tail(40);
            return Err(e.context(format!("{}: agent did not start; log:\n{tail}", self.name)));
        }
        *slot = Some(child);
        Ok(())
    }

    /// SIGTERM to the agent, SIGKILL after the grace period; its exit status.
    pub fn stop_agent(&self) -> Result<ExitStatus> {
        let mut child = self
            .agent()
            .take()
            .with_context(|| format!("{}: no agent to stop", self.name))?;
        child.stop()
    }

    /// SIGKILL to the agent (no cleanup by the agent); waits until it is gone.
    pub fn kill_agent(&self) -> Result<()> {
        let mut child = self
            .agent()
            .take()
            .with_context(|| format!("{}: no agent to kill", self.name))?;
        child.signal(Signal::KILL)?;
        wait_until("the killed agent to exit", Duration::from_secs(10), || {
            !child.is_running()
        })
    }

    /// Stops the agent (if running) and starts it again.
    pub fn restart_agent(&self) -> Result<()> {
        if self.agent_pid().is_some() {
            self.stop_agent()?;
        }
        self.start_agent()
    }

    /// Runs `oemesh <args> --socket <this host's socket>` (from the root
    /// namespace: the socket is a file). Returns stdout; fails on non-zero exit.
    pub fn oemesh_cli(&self, args: &[&str]) -> Result<String> {
        let sock = self.socket_path();
        let out = process::run(
            Command::new(&self.oemesh)
                .args(args)
                .arg("--socket")
                .arg(&sock),
            CLI_TIMEOUT,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `oemesh peers --json`, parsed.
    pub fn peers(&self) -> Result<Vec<Peer>> {
        parse_peers(&self.oemesh_cli(&["peers", "--json"])?)
    }

    /// This agent's entry for `addr`, if it has one.
    pub fn peer(&self, addr: IpAddr) -> Result<Option<Peer>> {
        Ok(self.peers()?.into_iter().find(|p| p.peer == addr))
    }

    /// Polls `peers` until the entry for `addr` satisfies `pred`; fails after
    /// `timeout` with the last entry and the log tail.
    pub fn wait_peer(
        &self,
        addr: IpAddr,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Peer) -> bool,
    ) -> Result<Peer> {
        let mut last = None;
        let found = wait_for(what, timeout, || {
            let p = self.peer(addr).ok().flatten();
            last = p.clone();
            p.filter(|p| pred(p))
        });
        found.map_err(|e| {
            anyhow!(
                "{e}: {} about {addr}: last entry {last:?}; log tail:\n{}",
                self.name,
                self.log_tail(30)
            )
        })
    }

    /// Counters of interface `dev` in this host (`ip -s link show dev`).
    pub fn link_counters(&self, dev: &str) -> Result<LinkCounters> {
        parse_link_counters(&self.ns.ip(&["-s", "link", "show", dev])?)
    }
}

/// The DNS host: its namespace and BIND.
#[derive(Debug)]
pub struct DnsHost {
    bind: Bind,
    ns: Netns,
}

impl DnsHost {
    /// The namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The BIND instance (dig, nsupdate, TSIG key file).
    pub fn bind(&self) -> &Bind {
        &self.bind
    }

    /// `192.0.2.53`.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(DNS_V4)
    }

    /// IPSECKEY records at `addr`'s reverse name, as dig shows their RDATA
    /// (`10 0 4 . KEY`), asked of BIND directly.
    pub fn ipseckeys(&self, addr: IpAddr) -> Result<Vec<String>> {
        let out = self
            .bind
            .dig(&["+norecurse", "-x", &addr.to_string(), "IPSECKEY"])?;
        Ok(out
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("IPSECKEY"))
            .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
            .collect())
    }
}

/// Everything that is torn down on drop, in field order.
#[derive(Debug)]
struct Parts {
    hosts: Vec<Host>,
    dns: DnsHost,
    switch: Switch,
    dir: tempfile::TempDir,
}

/// The running testnet. See the [module docs](self).
#[derive(Debug)]
pub struct Testnet {
    parts: Option<Parts>,
    keep: bool,
}

impl Testnet {
    /// Builds the namespaces and the switch, starts BIND, makes and publishes
    /// alice's and bob's keys, writes every agent's config and (unless told
    /// otherwise) starts the agents. Fails (never skips) when not root or a
    /// program is missing.
    pub fn up(opts: Options) -> Result<Testnet> {
        require_root();
        require_programs(&["ip", "nft", "dig", "nsupdate", "tcpdump"]);
        let dir = tempfile::Builder::new()
            .prefix("oemesh-testnet-")
            .tempdir()?;
        let label = |s: &str| format!("{}-{s}", opts.label);
        let switch = Switch::new(&label("sw"))?;

        let dns_ns = Netns::new(&label("dns"))?;
        switch.attach(&dns_ns, &format!("{DNS_V4}/24"))?;
        dns_ns.add_addr("eth0", &format!("{DNS_V6}/64"))?;
        let names: Vec<(String, IpAddr)> = HOSTS
            .iter()
            .flat_map(|h| {
                [
                    (h.name.to_owned(), IpAddr::V4(v4_of(h))),
                    (h.name.to_owned(), IpAddr::V6(v6_of(h))),
                ]
            })
            .collect();
        let names_ref: Vec<(&str, IpAddr)> = names.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let bind = Bind::start_in(&dns_ns, IpAddr::V4(DNS_V4), FORWARD_ZONE, &names_ref)?;
        let dns = DnsHost { bind, ns: dns_ns };

        let mut hosts = Vec::new();
        for spec in HOSTS {
            let ns = Netns::new(&label(spec.name))?;
            let iface = switch.attach(&ns, &format!("{}/24", v4_of(&spec)))?;
            ns.add_addr(&iface, &format!("{}/64", v6_of(&spec)))?;
            let mut host = Host {
                agent: Mutex::new(None),
                ns,
                name: spec.name.to_owned(),
                v4: v4_of(&spec),
                v6: v6_of(&spec),
                iface,
                key: None,
                public_key: None,
                runs_agent: spec.agent,
                dir: dir.path().to_owned(),
                oemesh: opts.binaries.oemesh.clone(),
                log_level: opts.log_level.clone(),
            };
            if spec.key {
                publish_key(&mut host, &opts.binaries.dnskeys, &dns)?;
            }
            if spec.agent {
                host.set_agent_config(&opts.agent)?;
            }
            hosts.push(host);
        }
        let net = Testnet {
            parts: Some(Parts {
                hosts,
                dns,
                switch,
                dir,
            }),
            keep: opts.keep,
        };
        if opts.start_agents {
            for host in net.hosts().iter().filter(|h| h.runs_agent) {
                host.start_agent()?;
            }
        }
        Ok(net)
    }

    fn parts(&self) -> &Parts {
        // Only `drop` takes the parts out.
        self.parts
            .as_ref()
            .expect("testnet parts present until drop")
    }

    /// Every end host: alice, bob, carol, dave.
    pub fn hosts(&self) -> &[Host] {
        &self.parts().hosts
    }

    /// The end host called `name` (`alice`, `bob`, `carol`, `dave`).
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts().iter().find(|h| h.name == name)
    }

    fn fixed(&self, name: &str) -> &Host {
        self.host(name)
            .expect("every testnet has alice, bob, carol and dave")
    }

    /// 192.0.2.10: agent, key published.
    pub fn alice(&self) -> &Host {
        self.fixed("alice")
    }

    /// 192.0.2.20: agent, key published.
    pub fn bob(&self) -> &Host {
        self.fixed("bob")
    }

    /// 192.0.2.30: agent without a key (anonymous).
    pub fn carol(&self) -> &Host {
        self.fixed("carol")
    }

    /// 192.0.2.40: no agent.
    pub fn dave(&self) -> &Host {
        self.fixed("dave")
    }

    /// The DNS server.
    pub fn dns(&self) -> &DnsHost {
        &self.parts().dns
    }

    /// The switch (its namespace holds `br0`).
    pub fn switch(&self) -> &Switch {
        &self.parts().switch
    }

    /// The testnet's directory (configs, keys, sockets, logs, captures).
    pub fn dir(&self) -> &Path {
        self.parts().dir.path()
    }

    /// Starts tcpdump on the switch (`br0`), writing `<dir>/<name>.pcap`: it
    /// sees every frame between the hosts.
    pub fn capture(&self, name: &str) -> Result<Capture> {
        let pcap = self.dir().join(format!("{name}.pcap"));
        Capture::start(self.switch().netns(), SWITCH_IFACE, "", &pcap)
    }

    /// How to reach each host by hand (`ip netns exec …`).
    pub fn describe(&self) -> String {
        describe(self.parts())
    }

    /// Stops the agents (SIGTERM), BIND and deletes the namespaces now,
    /// reporting the first error.
    pub fn down(mut self) -> Result<()> {
        self.keep = false;
        let mut first = Ok(());
        for h in self.hosts() {
            if h.agent_pid().is_some()
                && let Err(e) = h.stop_agent()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        drop(self);
        first
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        if self.keep {
            eprintln!("kept, not torn down:\n{}", describe(&parts));
            let Parts {
                hosts,
                dns,
                switch,
                dir,
            } = parts;
            let _ = dir.keep();
            // Leak everything: no SIGTERM, no namespace deletion.
            std::mem::forget((hosts, dns, switch));
        }
        // Otherwise `parts` drops here in field order: agents, BIND, switch, dir.
    }
}

fn describe(parts: &Parts) -> String {
    let mut s = String::new();
    let d = &parts.dns;
    let _ = writeln!(s, "oemesh testnet in {}", parts.dir.path().display());
    let _ = writeln!(
        s,
        "  dns    {DNS_V4:<12} ip netns exec {} bash    (BIND: {}, TSIG key: {})",
        d.ns.name(),
        d.bind.dir().display(),
        d.bind.tsig_key_file().display()
    );
    for h in &parts.hosts {
        let _ = writeln!(
            s,
            "  {:<6} {:<12} ip netns exec {} bash",
            h.name,
            h.v4.to_string(),
            h.ns.name()
        );
        if h.runs_agent {
            let _ = writeln!(
                s,
                "         {} peers --socket {}    (log: {})",
                h.oemesh.display(),
                h.socket_path().display(),
                h.log_path().display()
            );
        }
    }
    let _ = writeln!(
        s,
        "  switch ip netns exec {} tcpdump -ni {SWITCH_IFACE}",
        parts.switch.netns().name()
    );
    let _ = writeln!(
        s,
        "  remove with `ip netns del NAME` (the next testkit run also sweeps them)"
    );
    s
}

fn v4_of(h: &HostSpec) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, h.last_octet)
}

fn v6_of(h: &HostSpec) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(h.last_octet))
}

/// `dnskeys keygen` then `dnskeys publish` for the host's IPv4 address, run
/// inside the host's namespace against BIND with the TSIG key.
fn publish_key(host: &mut Host, dnskeys: &Path, dns: &DnsHost) -> Result<()> {
    let key = host.dir.join(format!("{}.key", host.name));
    let dnskeys_s = dnskeys.to_str().context("dnskeys path is not UTF-8")?;
    let key_s = key.to_str().context("key path is not UTF-8")?;
    let out = host
        .ns
        .exec(&[dnskeys_s, "keygen", "--out", key_s], CLI_TIMEOUT)
        .with_context(|| format!("{}: dnskeys keygen", host.name))?;
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let tsig = dns.bind.tsig_key_file();
    let tsig_s = tsig.to_str().context("TSIG path is not UTF-8")?;
    let server = dns.bind.server();
    let ip = host.v4.to_string();
    host.ns
        .exec(
            &[
                dnskeys_s,
                "publish",
                "--key",
                key_s,
                "--ip",
                &ip,
                "--server",
                &server,
                "--tsig-key",
                tsig_s,
            ],
            CLI_TIMEOUT,
        )
        .with_context(|| format!("{}: dnskeys publish", host.name))?;
    host.key = Some(key);
    host.public_key = Some(public);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_counters_parse() {
        let text = "5: oemesh0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1400 qdisc fq_codel state UNKNOWN mode DEFAULT group default qlen 500
    link/none
    RX:  bytes packets errors dropped  missed   mcast
           840      10      0       0       0       0
    TX:  bytes packets errors dropped carrier collsns
          1260      15      0       0       0       0
";
        assert_eq!(
            parse_link_counters(text).unwrap(),
            LinkCounters {
                rx_packets: 10,
                tx_packets: 15
            }
        );
    }

    #[test]
    fn peers_parse() {
        let json = r#"[{"peer":"192.0.2.20","state":"private","auth":"authenticated","dnssec":false,"reason":"IKE ok","expires_in_s":3500,"bytes_in":10,"bytes_out":20}]"#;
        let peers = parse_peers(json).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].state, "private");
        assert_eq!(peers[0].auth.as_deref(), Some("authenticated"));
        assert_eq!(peers[0].bytes_out, 20);
        assert!(parse_peers("{}").is_err());
    }

    #[test]
    fn config_renders() {
        let mut c = AgentConfig::default();
        c.set_policy("private", &["192.0.2.20/32"]);
        c.clear_lifetime = Some("2s".into());
        let t = c.render(
            Ipv4Addr::new(192, 0, 2, 10),
            Some(Path::new("/k")),
            Path::new("/s"),
        );
        assert!(t.contains("key = \"/k\""), "{t}");
        assert!(t.contains("private = [\"192.0.2.20/32\"]"), "{t}");
        assert!(t.contains("clear_lifetime = \"2s\""), "{t}");
        assert!(t.contains("servers = [\"192.0.2.53:53\"]"), "{t}");
    }
}

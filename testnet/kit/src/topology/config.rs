//! What the testnet runs and how: the binaries, each agent's config, the options.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use super::{BUILD_TIMEOUT, DNS_V4, SUBNET_V4};
use crate::process;

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
    /// `[dns] servers`; empty: the testnet's BIND (`192.0.2.53:53`). See
    /// [`AgentConfig::use_dns_servers`].
    pub dns_servers: Vec<String>,
    /// `[dns] dnssec` (`"validate"`, `"resolver"`, `"off"`); `None`: the agent's default.
    pub dnssec: Option<String>,
    /// `[dns] trust_anchors`: files of DNSKEY or DS records; empty: not written.
    pub trust_anchors: Vec<PathBuf>,
    /// `[ike] timeout`.
    pub ike_timeout: String,
    /// `[ike] idle_timeout`; `None`: the agent's default.
    pub idle_timeout: Option<String>,
    /// `[outcome] clear_lifetime`; `None`: the agent's default.
    pub clear_lifetime: Option<String>,
    /// `[outcome] downgrade_guard`; `None`: the agent's default.
    pub downgrade_guard: Option<String>,
    /// `[outcome] retry_lifetime`; `None`: the agent's default.
    pub retry_lifetime: Option<String>,
    /// `[outcome] refuse_downgrade`; `None`: the agent's default.
    pub refuse_downgrade: Option<bool>,
    /// `[ike] child_lifetime`, `ike_lifetime`, `rekey_margin`; `None`: the agent's defaults.
    pub child_lifetime: Option<String>,
    /// See `child_lifetime`.
    pub ike_lifetime: Option<String>,
    /// See `child_lifetime`.
    pub rekey_margin: Option<String>,
    /// `[ike] dpd_interval`; `None`: the agent's default.
    pub dpd_interval: Option<String>,
    /// `[ike] exchange_timeout`; `None`: the agent's default.
    pub exchange_timeout: Option<String>,
    /// `[ike] cookie_rate` (cookie replies per second per source); `None`: the agent's default.
    pub cookie_rate: Option<u32>,
    /// `[ike] udp_workers` (receive workers per UDP port); `None`: the agent's default.
    pub udp_workers: Option<u32>,
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
            dns_servers: Vec::new(),
            dnssec: None,
            trust_anchors: Vec::new(),
            ike_timeout: "3s".into(),
            idle_timeout: None,
            clear_lifetime: None,
            downgrade_guard: None,
            retry_lifetime: None,
            refuse_downgrade: None,
            child_lifetime: None,
            ike_lifetime: None,
            rekey_margin: None,
            dpd_interval: None,
            exchange_timeout: None,
            cookie_rate: None,
            udp_workers: None,
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

    /// Points the agent at `servers` (`[dns] servers`) and puts each one's
    /// address in the `clear` group, as the default config does for the
    /// testnet's BIND (a forger, a validating resolver).
    pub fn use_dns_servers(&mut self, servers: &[SocketAddr]) -> &mut Self {
        self.dns_servers = servers.iter().map(ToString::to_string).collect();
        let mut clear: Vec<String> = self
            .policy
            .iter()
            .find(|(g, _)| g == "clear")
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        for s in servers {
            let prefix = match s.ip() {
                IpAddr::V4(a) => format!("{a}/32"),
                IpAddr::V6(a) => format!("{a}/128"),
            };
            if !clear.contains(&prefix) {
                clear.push(prefix);
            }
        }
        let clear: Vec<&str> = clear.iter().map(String::as_str).collect();
        self.set_policy("clear", &clear);
        self
    }

    /// Validate DNSSEC in the agent (`[dns] dnssec = "validate"`) from the
    /// anchors in `anchor_file`.
    pub fn validate_dnssec(&mut self, anchor_file: &Path) -> &mut Self {
        self.dnssec = Some("validate".into());
        if !self.trust_anchors.iter().any(|a| a == anchor_file) {
            self.trust_anchors.push(anchor_file.to_owned());
        }
        self
    }

    /// The `oemesh.toml` for a host.
    pub(super) fn render(&self, address: Ipv4Addr, key: Option<&Path>, socket: &Path) -> String {
        let mut t = String::new();
        if let Some(key) = key {
            let _ = writeln!(t, "key = {:?}", key.display().to_string());
        }
        let _ = writeln!(t, "address = \"{address}\"");
        let _ = writeln!(t, "control_socket = {:?}", socket.display().to_string());
        let servers: Vec<String> = if self.dns_servers.is_empty() {
            vec![format!("\"{DNS_V4}:53\"")]
        } else {
            self.dns_servers.iter().map(|s| format!("{s:?}")).collect()
        };
        let _ = writeln!(t, "\n[dns]\nservers = [{}]", servers.join(", "));
        let _ = writeln!(t, "timeout = \"{}\"", self.dns_timeout);
        if let Some(d) = &self.dnssec {
            let _ = writeln!(t, "dnssec = {d:?}");
        }
        if !self.trust_anchors.is_empty() {
            let files: Vec<String> = self
                .trust_anchors
                .iter()
                .map(|f| format!("{:?}", f.display().to_string()))
                .collect();
            let _ = writeln!(t, "trust_anchors = [{}]", files.join(", "));
        }
        let _ = writeln!(t, "\n[ike]\ntimeout = \"{}\"", self.ike_timeout);
        if let Some(i) = &self.idle_timeout {
            let _ = writeln!(t, "idle_timeout = \"{i}\"");
        }
        for (key, value) in [
            ("child_lifetime", &self.child_lifetime),
            ("ike_lifetime", &self.ike_lifetime),
            ("rekey_margin", &self.rekey_margin),
            ("dpd_interval", &self.dpd_interval),
            ("exchange_timeout", &self.exchange_timeout),
        ] {
            if let Some(v) = value {
                let _ = writeln!(t, "{key} = \"{v}\"");
            }
        }
        for (key, value) in [
            ("cookie_rate", self.cookie_rate),
            ("udp_workers", self.udp_workers),
        ] {
            if let Some(v) = value {
                let _ = writeln!(t, "{key} = {v}");
            }
        }
        t.push_str("\n[outcome]\n");
        if let Some(l) = &self.clear_lifetime {
            let _ = writeln!(t, "clear_lifetime = \"{l}\"");
        }
        if let Some(g) = &self.downgrade_guard {
            let _ = writeln!(t, "downgrade_guard = \"{g}\"");
        }
        if let Some(r) = &self.retry_lifetime {
            let _ = writeln!(t, "retry_lifetime = \"{r}\"");
        }
        if let Some(r) = self.refuse_downgrade {
            let _ = writeln!(t, "refuse_downgrade = {r}");
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
    /// The configuration of every agent (per host: [`super::Host::set_agent_config`]).
    pub agent: AgentConfig,
    /// Start the agents on alice, bob and carol (default true).
    pub start_agents: bool,
    /// The agents' `--log-level` (default `debug`).
    pub log_level: String,
    /// Skip teardown on drop and print how to enter each host.
    pub keep: bool,
    /// BIND signs its zones (`dnssec-policy`) and every agent validates
    /// (`[dns] dnssec = "validate"`, `trust_anchors` = the testnet's anchor
    /// file, [`super::Testnet::anchor_file`]). Default false: unsigned zones.
    /// A config given later to [`super::Host::set_agent_config`] is written
    /// as it is: call [`AgentConfig::validate_dnssec`] on it with the anchor
    /// file to keep validating.
    pub dnssec: bool,
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
            dnssec: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!t.contains("cookie_rate"), "{t}");
        c.cookie_rate = Some(100);
        c.udp_workers = Some(2);
        let t = c.render(Ipv4Addr::new(192, 0, 2, 10), None, Path::new("/s"));
        let ike = &t[t.find("[ike]").unwrap()..t.find("[outcome]").unwrap()];
        assert!(ike.contains("cookie_rate = 100\n"), "{t}");
        assert!(ike.contains("udp_workers = 2\n"), "{t}");
        assert!(!t.contains("dnssec"), "{t}");
        assert!(!t.contains("trust_anchors"), "{t}");
    }

    #[test]
    fn dnssec_and_servers_render() {
        let mut c = AgentConfig::default();
        c.validate_dnssec(Path::new("/t/anchors.txt"))
            .use_dns_servers(&["192.0.2.55:53".parse().unwrap()]);
        let t = c.render(Ipv4Addr::new(192, 0, 2, 10), None, Path::new("/s"));
        let dns = &t[t.find("[dns]").unwrap()..t.find("[ike]").unwrap()];
        assert!(dns.contains("servers = [\"192.0.2.55:53\"]\n"), "{t}");
        assert!(dns.contains("dnssec = \"validate\"\n"), "{t}");
        assert!(
            dns.contains("trust_anchors = [\"/t/anchors.txt\"]\n"),
            "{t}"
        );
        assert!(
            t.contains("clear = [\"192.0.2.53/32\", \"192.0.2.55/32\"]"),
            "{t}"
        );
    }
}

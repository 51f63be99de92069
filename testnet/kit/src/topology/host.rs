//! An end host of the testnet: its namespace, addresses, key and agent, and
//! what its agent's control socket says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::Signal;

use super::{AGENT_READY, AgentConfig, CLI_TIMEOUT};
use crate::netns::Netns;
use crate::process::{self, Child, wait_for, wait_until};

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
    pub(super) agent: Mutex<Option<Child>>,
    pub(super) ns: Netns,
    pub(super) name: String,
    pub(super) v4: Ipv4Addr,
    pub(super) v6: Ipv6Addr,
    pub(super) iface: String,
    pub(super) key: Option<PathBuf>,
    pub(super) public_key: Option<String>,
    pub(super) runs_agent: bool,
    pub(super) dir: PathBuf,
    pub(super) oemesh: PathBuf,
    pub(super) log_level: String,
}

impl Host {
    /// How to reach it by hand, for a kept testnet's description: its shell,
    /// and with an agent its `peers` command and log; the name padded to
    /// `width`.
    pub(super) fn describe_into(&self, s: &mut String, width: usize) {
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "  {:<width$} {:<12} ip netns exec {} bash",
            self.name,
            self.v4.to_string(),
            self.ns.name()
        );
        if self.runs_agent {
            let _ = writeln!(
                s,
                "  {:width$} {} peers --socket {}    (log: {})",
                "",
                self.oemesh.display(),
                self.socket_path().display(),
                self.log_path().display()
            );
        }
    }

    /// `dnskeys keygen` in the host's namespace: its key file and public key
    /// (published later, or not).
    pub(super) fn keygen(&mut self, dnskeys: &Path) -> Result<()> {
        let key = self.dir.join(format!("{}.key", self.name));
        let out = self
            .ns
            .exec(
                &[
                    dnskeys.to_str().context("dnskeys path is not UTF-8")?,
                    "keygen",
                    "--out",
                    key.to_str().context("key path is not UTF-8")?,
                ],
                CLI_TIMEOUT,
            )
            .with_context(|| format!("{}: dnskeys keygen", self.name))?;
        self.public_key = Some(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        self.key = Some(key);
        Ok(())
    }

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
}

//! A kept testnet's record: what a `--keep` run left running, so that
//! `testnet/demo --down` (`oemesh-testnet down`) stops all of it by PID and
//! removes its namespaces and directories.
//!
//! Finding a kept testnet by its namespaces is not enough: `ip netns del`
//! removes a namespace's name but not the processes in it, and after that
//! nothing leads to them (`ip netns pids` needs the name). So a kept testnet
//! writes a record, `/run/oemesh-testnet/<dir name>.json` ([`KEPT_DIR`]; `/run`
//! is emptied at boot, as are the processes it lists), with:
//!
//! - every process it started (BIND's `named`, the agents) as PID, start time
//!   (clock ticks after boot, `/proc/PID/stat` field 22) and executable, so a
//!   PID the kernel has since given to another process is never signalled;
//! - its namespaces, its directory (configs, keys, sockets, logs, captures)
//!   and BIND's directory;
//! - per host: namespace, address, control socket, and a bash rc file that
//!   puts `oemesh` and `dnskeys` on PATH and sets `OEMESH_SOCKET`
//!   ([`Kept::shell_command`], behind `testnet/demo --shell HOST`).
//!
//! [`Kept::down`] stops the processes (SIGTERM, SIGKILL after a grace
//! period), deletes the namespaces still there (killing anything else left in
//! them), removes both directories (keeping `*.pcap` on request) and the record
//! (`down.rs`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

mod down;

pub use down::DownReport;

/// Where kept testnets' records live.
pub const KEPT_DIR: &str = "/run/oemesh-testnet";

/// One process a kept testnet started, identified beyond its PID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptProcess {
    /// What it is: `named`, `oemesh on alice`.
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Its start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    /// Its executable (`/proc/PID/exe`).
    pub exe: PathBuf,
}

impl KeptProcess {
    /// Reads process `pid`'s identity from `/proc`; `None` when it is gone.
    pub fn of(name: &str, pid: u32) -> Option<KeptProcess> {
        let (state, start_ticks) = stat(pid)?;
        if is_dead_state(state) {
            return None;
        }
        Some(KeptProcess {
            name: name.to_owned(),
            pid,
            start_ticks,
            exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok()?,
        })
    }

    /// Whether this very process still runs: the PID exists, started at the
    /// same tick, runs the same executable and is not a zombie. An executable
    /// replaced on disk since (a rebuild: `/proc/PID/exe` then ends in
    /// ` (deleted)`) is still the same.
    pub fn is_running(&self) -> bool {
        let Some((state, start)) = stat(self.pid) else {
            return false;
        };
        let same_exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).is_ok_and(|e| {
            let e = e.to_string_lossy();
            Path::new(e.strip_suffix(" (deleted)").unwrap_or(&e)) == self.exe
        });
        !is_dead_state(state) && start == self.start_ticks && same_exe
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "exe": self.exe,
        })
    }

    fn from_json(v: &Value) -> Result<KeptProcess> {
        Ok(KeptProcess {
            name: str_field(v, "name")?.to_owned(),
            pid: u32::try_from(u64_field(v, "pid")?).context("pid out of range")?,
            start_ticks: u64_field(v, "start_ticks")?,
            exe: PathBuf::from(str_field(v, "exe")?),
        })
    }
}

/// State (field 3) and start time (field 22) of `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Zombie or dead: exited, only waiting to be reaped.
fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// One host of a kept testnet, as `--shell` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptHost {
    /// `alice`, …, `dns`.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its IPv4 address.
    pub ip: IpAddr,
    /// Its agent's control socket, when it runs one.
    pub socket: Option<PathBuf>,
    /// What it runs, for the printout: `agent`, `no agent`, `BIND 9`.
    pub role: String,
}

impl KeptHost {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "netns": self.netns,
            "ip": self.ip.to_string(),
            "socket": self.socket,
            "role": self.role,
        })
    }

    fn from_json(v: &Value) -> Result<KeptHost> {
        Ok(KeptHost {
            name: str_field(v, "name")?.to_owned(),
            netns: str_field(v, "netns")?.to_owned(),
            ip: str_field(v, "ip")?.parse().context("host ip")?,
            socket: v.get("socket").and_then(Value::as_str).map(PathBuf::from),
            role: str_field(v, "role")?.to_owned(),
        })
    }
}

/// The record of a kept testnet: what `testnet/demo --keep` left running, so
/// that [`Kept::down`] (`testnet/demo --down`) can stop it by PID and remove its
/// namespaces and directories, also after `ip netns del` removed the names
/// that led to its processes. Saved as JSON in [`KEPT_DIR`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The record's file (not stored in it).
    pub file: PathBuf,
    /// The testnet's label (`demo`).
    pub label: String,
    /// When it was kept (Unix seconds).
    pub kept_at: u64,
    /// The testnet's directory (configs, keys, sockets, logs, captures).
    pub dir: PathBuf,
    /// BIND's directory (config, zones, TSIG key, journals, log).
    pub bind_dir: PathBuf,
    /// Where `oemesh` and `dnskeys` are (put on PATH by `--shell`).
    pub bin_dirs: Vec<PathBuf>,
    /// The switch's namespace (`br0`).
    pub switch_netns: String,
    /// Every namespace it made.
    pub namespaces: Vec<String>,
    /// Every process it left running.
    pub processes: Vec<KeptProcess>,
    /// The hosts (dns first).
    pub hosts: Vec<KeptHost>,
    /// The process that started them and stays to reap them when they end
    /// (`testnet/demo --keep`'s driver), if any: without one, processes
    /// orphaned to an init that does not reap stay zombies after `down`.
    pub keeper: Option<KeptProcess>,
}

impl Kept {
    /// The record file for a testnet whose directory is `dir`.
    pub fn file_for(dir: &Path) -> PathBuf {
        let base = dir
            .file_name()
            .map_or_else(|| "testnet".into(), |n| n.to_string_lossy().into_owned());
        Path::new(KEPT_DIR).join(format!("{base}.json"))
    }

    /// Writes the record to [`Kept::file`] and each host's shell rc file
    /// ([`Kept::rc_file`]).
    pub fn save(&self) -> Result<()> {
        let parent = self.file.parent().context("record file has no directory")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        for h in &self.hosts {
            std::fs::write(self.rc_file(&h.name), self.rc_text(h))
                .with_context(|| format!("writing {}", self.rc_file(&h.name).display()))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json())?;
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file)
            .with_context(|| format!("writing {}", self.file.display()))
    }

    /// Reads a record.
    pub fn load(file: &Path) -> Result<Kept> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a testnet record", file.display()))?;
        let list = |key: &str| -> Result<&Vec<Value>> {
            v.get(key)
                .and_then(Value::as_array)
                .with_context(|| format!("{}: no {key} list", file.display()))
        };
        Ok(Kept {
            file: file.to_owned(),
            label: str_field(&v, "label")?.to_owned(),
            kept_at: u64_field(&v, "kept_at")?,
            dir: PathBuf::from(str_field(&v, "dir")?),
            bind_dir: PathBuf::from(str_field(&v, "bind_dir")?),
            bin_dirs: list("bin_dirs")?
                .iter()
                .filter_map(|d| d.as_str().map(PathBuf::from))
                .collect(),
            switch_netns: str_field(&v, "switch_netns")?.to_owned(),
            namespaces: list("namespaces")?
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            processes: list("processes")?
                .iter()
                .map(KeptProcess::from_json)
                .collect::<Result<_>>()?,
            hosts: list("hosts")?
                .iter()
                .map(KeptHost::from_json)
                .collect::<Result<_>>()?,
            keeper: match v.get("keeper") {
                None | Some(Value::Null) => None,
                Some(k) => Some(KeptProcess::from_json(k)?),
            },
        })
    }

    /// Every record in [`KEPT_DIR`], oldest first. Unreadable ones are
    /// reported on stderr and skipped.
    pub fn list() -> Vec<Kept> {
        let Ok(entries) = std::fs::read_dir(KEPT_DIR) else {
            return Vec::new();
        };
        let mut all: Vec<Kept> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| match Kept::load(&p) {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("oemesh-testkit: skipping {}: {e:#}", p.display());
                    None
                }
            })
            .collect();
        all.sort_by_key(|k| k.kept_at);
        all
    }

    /// The namespaces that records in [`KEPT_DIR`] hold: a stale-namespace
    /// sweep leaves them to `--down`.
    pub fn recorded_namespaces() -> BTreeSet<String> {
        Kept::list()
            .into_iter()
            .flat_map(|k| k.namespaces)
            .collect()
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "kept_at": self.kept_at,
            "dir": self.dir,
            "bind_dir": self.bind_dir,
            "bin_dirs": self.bin_dirs,
            "switch_netns": self.switch_netns,
            "namespaces": self.namespaces,
            "processes": self.processes.iter().map(KeptProcess::to_json).collect::<Vec<_>>(),
            "hosts": self.hosts.iter().map(KeptHost::to_json).collect::<Vec<_>>(),
            "keeper": self.keeper.as_ref().map(KeptProcess::to_json),
        })
    }

    /// The host called `name` (`alice`, …, `dns`).
    pub fn host(&self, name: &str) -> Option<&KeptHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// `<dir>/<host>.bashrc`: the rc file of `--shell HOST`.
    pub fn rc_file(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.bashrc"))
    }

    fn rc_text(&self, h: &KeptHost) -> String {
        let mut rc = String::from(
            "# bash rc of a shell in a kept oemesh testnet host (testnet/demo --shell)\n\
             [ -f ~/.bashrc ] && . ~/.bashrc\n",
        );
        for d in self.bin_dirs.iter().rev() {
            let _ = writeln!(rc, "export PATH={}:\"$PATH\"", sh_quote(d));
        }
        if let Some(sock) = &h.socket {
            let _ = writeln!(rc, "export OEMESH_SOCKET={}", sh_quote(sock));
        }
        let _ = writeln!(rc, "PS1='[oemesh testnet: {} {}] \\w\\$ '", h.name, h.ip);
        let _ = writeln!(
            rc,
            "echo \"{} ({}, {}): oemesh and dnskeys are on PATH{}; exit to leave\"",
            h.name,
            h.ip,
            h.role,
            if h.socket.is_some() {
                ", try: oemesh peers"
            } else {
                ""
            }
        );
        rc
    }

    /// The command that opens a shell in `host`'s namespace with `oemesh` and
    /// `dnskeys` on PATH and `OEMESH_SOCKET` set: `ip netns exec NS env
    /// PATH=… OEMESH_SOCKET=… bash --rcfile <dir>/<host>.bashrc` (the
    /// environment for a shell that reads no rc file, the rc file for one
    /// whose `~/.bashrc` resets PATH, and for the prompt).
    pub fn shell_command(&self, host: &str) -> Result<Vec<String>> {
        let Some(h) = self.host(host) else {
            let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            bail!(
                "no host {host:?} in this testnet; it has {}",
                names.join(", ")
            );
        };
        let mut path: Vec<String> = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        path.push(std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()));
        let mut argv = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            h.netns.clone(),
            "env".into(),
            format!("PATH={}", path.join(":")),
        ];
        if let Some(sock) = &h.socket {
            argv.push(format!("OEMESH_SOCKET={}", sock.display()));
        }
        argv.extend([
            "bash".into(),
            "--rcfile".into(),
            self.rc_file(host).display().to_string(),
        ]);
        Ok(argv)
    }

    /// The captures (`*.pcap`) in the testnet's directory.
    pub fn captures(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            .collect();
        v.sort();
        v
    }

    /// What to tell a person about a kept testnet: how to enter each host,
    /// where the capture is and how to open it, and the one teardown.
    pub fn instructions(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Enter a host: a shell in its namespace with oemesh and dnskeys on PATH and \
             OEMESH_SOCKET set, so `oemesh peers` works there:"
        );
        for h in &self.hosts {
            let _ = writeln!(
                s,
                "  testnet/demo --shell {:<6} # {:<11} {}",
                h.name,
                h.ip.to_string(),
                h.role
            );
        }
        if let Some(h) = self.host("alice") {
            let _ = writeln!(
                s,
                "  (without the script: ip netns exec {} bash --rcfile {})",
                h.netns,
                self.rc_file("alice").display()
            );
        }
        let _ = writeln!(
            s,
            "Watch the wire: ip netns exec {} tcpdump -ni br0",
            self.switch_netns
        );
        for pcap in self.captures() {
            let _ = writeln!(
                s,
                "The run's capture: {p}  (tshark -r {p}, or open it in Wireshark)",
                p = pcap.display()
            );
        }
        let _ = writeln!(
            s,
            "Tear it all down: testnet/demo --down   (stops BIND and the agents by PID, deletes \
             the namespaces, {} and {};\n  --down --keep-capture keeps the capture)",
            self.dir.display(),
            self.bind_dir.display()
        );
        let _ = write!(
            s,
            "Do not use `ip netns del` for it: that leaves BIND and the agents running."
        );
        s
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `path` in single quotes for a shell.
fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("record field {key:?} missing or not text"))
}

fn u64_field(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("record field {key:?} missing or not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_identified_and_a_changed_start_time_is_not_it() {
        let me = KeptProcess::of("test", std::process::id()).expect("this process");
        assert!(me.is_running());
        let other = KeptProcess {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!other.is_running(), "a reused PID is another process");
        let back = KeptProcess::from_json(&me.to_json()).unwrap();
        assert_eq!(back, me);
    }

    #[test]
    fn record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kept {
            file: dir.path().join("rec.json"),
            label: "demo".into(),
            kept_at: 1_700_000_000,
            dir: dir.path().to_owned(),
            bind_dir: "/var/lib/bind/oemesh-bind-1-x".into(),
            bin_dirs: vec!["/repo/target/release".into()],
            switch_netns: "oet-1-0-demo-sw".into(),
            namespaces: vec!["oet-1-0-demo-sw".into(), "oet-1-2-demo-alice".into()],
            processes: vec![KeptProcess {
                name: "named".into(),
                pid: 42,
                start_ticks: 7,
                exe: "/usr/sbin/named".into(),
            }],
            hosts: vec![KeptHost {
                name: "alice".into(),
                netns: "oet-1-2-demo-alice".into(),
                ip: "192.0.2.10".parse().unwrap(),
                socket: Some(dir.path().join("alice.sock")),
                role: "agent".into(),
            }],
            keeper: None,
        };
        k.save().unwrap();
        assert_eq!(Kept::load(&k.file).unwrap(), k);
        let rc = std::fs::read_to_string(k.rc_file("alice")).unwrap();
        assert!(
            rc.contains("export PATH='/repo/target/release':\"$PATH\""),
            "{rc}"
        );
        assert!(rc.contains("export OEMESH_SOCKET='"), "{rc}");
        let cmd = k.shell_command("alice").unwrap().join(" ");
        assert!(
            cmd.starts_with("ip netns exec oet-1-2-demo-alice env PATH=/repo/target/release:"),
            "{cmd}"
        );
        assert!(k.shell_command("mallory").is_err());
        let text = k.instructions();
        assert!(text.contains("testnet/demo --down"), "{text}");
        assert!(!text.contains("ip netns del NAME"), "{text}");
    }
}

//! A further `named` beside a [`Bind`](super::Bind): a forger or a resolver,
//! started from a config the caller wrote, stopped (by PID) on drop.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{START_TIMEOUT, apparmor_hint, dig_at, instance_dir, spawn_named};

/// A running `named` other than the testkit's authoritative one (see
/// [`super::forge`], [`super::resolver`]). Killed by its PID on drop, its
/// directory removed.
pub struct Named {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    netns: Option<String>,
}

impl fmt::Debug for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Named")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Named {
    /// Makes an instance directory, lets `write` put `named.conf` (and what it
    /// names) there, starts `named` in `netns` and waits (bounded) until
    /// `ready` says yes.
    pub(super) fn launch(
        netns: Option<&str>,
        addr: SocketAddr,
        write: impl FnOnce(&Path) -> Result<()>,
        ready: impl Fn(&Named) -> bool,
    ) -> Result<Named> {
        let dir = instance_dir()?;
        write(dir.path())?;
        let child = spawn_named(netns, dir.path())?;
        let mut named = Named {
            child,
            dir,
            addr,
            netns: netns.map(str::to_owned),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = named.child.try_wait()? {
                bail!(
                    "named exited ({status}) before answering; its log:\n{}{}",
                    named.log(),
                    apparmor_hint(named.dir())
                );
            }
            if ready(&named) {
                return Ok(named);
            }
            if Instant::now() > deadline {
                bail!(
                    "named did not answer within {START_TIMEOUT:?}; its log:\n{}",
                    named.log()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// [`Named::addr`] as text (`192.0.2.54:53`), for a `servers` list.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// `named`'s process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its directory (config, zones, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `named` wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Starts `named` on `addr` (on this host's network, e.g. loopback with
    /// a free port), authoritative for each `(zone, file)`: zone files made
    /// by the caller, signed or not (`dnssec-signzone` output). Waits until
    /// it answers for the first zone.
    pub fn serve(addr: SocketAddr, zones: &[(&str, &Path)]) -> Result<Named> {
        let zones: Vec<(String, std::path::PathBuf)> = zones
            .iter()
            .map(|(z, f)| (z.trim_end_matches('.').to_owned(), f.to_path_buf()))
            .collect();
        let first = zones
            .first()
            .map(|(z, _)| format!("{z}."))
            .unwrap_or_default();
        let write = |dir: &Path| -> Result<()> {
            let mut conf = format!(
                "options {{\n{}{}    recursion no;\n    notify no;\n}};\ncontrols {{ }};\n",
                file_options(dir),
                listen_on(addr)
            );
            for (i, (zone, file)) in zones.iter().enumerate() {
                let copy = dir.join(format!("zone{i}.db"));
                std::fs::copy(file, &copy)
                    .with_context(|| format!("copying {}", file.display()))?;
                conf.push_str(&format!(
                    "zone \"{zone}\" {{\n    type primary;\n    file \"{}\";\n}};\n",
                    copy.display()
                ));
            }
            std::fs::write(dir.join("named.conf"), conf)?;
            Ok(())
        };
        let ready = |n: &Named| n.dig(&[&first, "SOA"]).is_ok_and(|o| o.contains("SOA"));
        Named::launch(None, addr, write, ready).context("starting named for the zone files")
    }

    /// `dig @ADDR -p PORT +noall +answer +time=2 +tries=1 ARGS...` where it runs.
    pub fn dig(&self, args: &[&str]) -> Result<String> {
        dig_at(self.netns.as_deref(), self.addr, args)
    }

    /// `delv` at this server from `anchors` (a `trust-anchors` block, e.g. the
    /// real server's [`Bind::delv_anchor_file`](super::Bind::delv_anchor_file)),
    /// `+root=zone`: see [`super::dnssec::delv_at`].
    pub fn delv(&self, anchors: &Path, zone: &str, args: &[&str]) -> Result<String> {
        super::dnssec::delv_at(self.netns.as_deref(), self.addr, anchors, zone, args)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        // This PID only; then reap it. The TempDir removes the directory.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `listen-on` / `listen-on-v6` lines for exactly `addr`.
pub(super) fn listen_on(addr: SocketAddr) -> String {
    let port = addr.port();
    let (v4, v6) = match addr.ip() {
        std::net::IpAddr::V4(a) => (a.to_string(), "none".to_owned()),
        std::net::IpAddr::V6(a) => ("none".to_owned(), a.to_string()),
    };
    format!("    listen-on port {port} {{ {v4}; }};\n    listen-on-v6 port {port} {{ {v6}; }};\n")
}

/// The `options` lines every instance has: its files in `dir`.
pub(super) fn file_options(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "    directory \"{d}\";\n    pid-file \"{d}/named.pid\";\n    \
         session-keyfile \"{d}/session.key\";\n    managed-keys-directory \"{d}\";\n"
    )
}

//! A userspace WireGuard tunnel (`boringtun-cli`) between two namespaces,
//! configured with `wg` from `wireguard-tools`: the anchor the benchmark
//! compares oemesh with (the kernel the tests run on has no WireGuard module).
//!
//! One `boringtun-cli --foreground` per namespace, each with its own interface
//! name: the UAPI socket (`/var/run/wireguard/<iface>.sock`) lives in the file
//! system, which namespaces share, so two daemons called `wg0` would collide.
//! Both daemons are stopped by PID on drop and their sockets removed.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use oemesh_testkit::netns::{Netns, veth};
//! use oemesh_testkit::wireguard::{Boringtun, End};
//! let (a, b) = (Netns::new("alice")?, Netns::new("bob")?);
//! veth(&a, "192.0.2.1/24", &b, "192.0.2.2/24")?;
//! let dir = tempfile::tempdir()?;
//! let alice = End { ns: &a, outer: "192.0.2.1".parse()?, inner: "10.77.0.1".parse()? };
//! let bob = End { ns: &b, outer: "192.0.2.2".parse()?, inner: "10.77.0.2".parse()? };
//! let wg = Boringtun::start_pair(alice, bob, dir.path(), None)?;
//! a.ping("10.77.0.1".parse()?, "10.77.0.2".parse()?, std::time::Duration::from_secs(5))?;
//! # drop(wg); Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::process::{self, Child, wait_until};

/// The UDP port both ends listen on.
pub const PORT: u16 = 51820;
/// The tunnel interface's MTU (wg-quick's default).
pub const MTU: u16 = 1420;
/// Where boringtun puts its UAPI sockets.
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// Bound on one `wg`/`ip` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on boringtun's start-up (UAPI socket answering).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The program, from `$BORINGTUN`, else `boringtun-cli` on `PATH`, else
/// `~/.cargo/bin/boringtun-cli` (where `cargo install` puts it).
pub fn boringtun_program() -> PathBuf {
    if let Some(p) = std::env::var_os("BORINGTUN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("boringtun-cli"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        Path::new(&home).join(".cargo/bin/boringtun-cli")
    })
}

/// One end of the tunnel: its namespace, the address the UDP packets use and
/// the address on the WireGuard interface (a /24 is put on the interface).
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    /// The namespace the daemon runs in.
    pub ns: &'a Netns,
    /// The address the peer reaches this end at (the endpoint).
    pub outer: IpAddr,
    /// The tunnel address.
    pub inner: Ipv4Addr,
}

/// One running boringtun daemon with its interface configured.
#[derive(Debug)]
struct Daemon {
    child: Child,
    iface: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.child.stop() {
            eprintln!("oemesh-testkit: stopping {}: {e:#}", self.child.name());
        }
        let sock = Path::new(UAPI_DIR).join(format!("{}.sock", self.iface));
        let _ = std::fs::remove_file(sock);
    }
}

/// Two boringtun daemons that know each other (one WireGuard peer each).
#[derive(Debug)]
pub struct Boringtun {
    a: Daemon,
    b: Daemon,
}

impl Boringtun {
    /// Generates keys with `wg genkey` into `dir`, starts one
    /// `boringtun-cli --foreground` per end (`threads`: its `--threads`, `None`
    /// its default), configures them with `wg set` and the interfaces with
    /// `ip`, and waits until both are up. No handshake is made: the first
    /// packet does that.
    pub fn start_pair(
        a: End<'_>,
        b: End<'_>,
        dir: &Path,
        threads: Option<u32>,
    ) -> Result<Boringtun> {
        process::require_programs(&["wg", "ip"]);
        let program = boringtun_program();
        if !program.is_file() {
            bail!(
                "boringtun-cli not found at {} (install it with `cargo install boringtun-cli --locked`, \
                 or set $BORINGTUN)",
                program.display()
            );
        }
        std::fs::create_dir_all(UAPI_DIR).with_context(|| format!("creating {UAPI_DIR}"))?;
        let keys = [keypair(dir, "a")?, keypair(dir, "b")?];
        // Short, unique per process: interface names have at most 15 bytes.
        let tag = std::process::id() % 100_000;
        let names = [format!("btw{tag}a"), format!("btw{tag}b")];
        let da = start_one(a, &names[0], &program, dir, threads)?;
        let db = start_one(b, &names[1], &program, dir, threads)?;
        configure(a, &names[0], &keys[0].0, &keys[1].1, b)?;
        configure(b, &names[1], &keys[1].0, &keys[0].1, a)?;
        Ok(Boringtun { a: da, b: db })
    }

    /// The daemons' PIDs (first end, second end).
    pub fn pids(&self) -> (u32, u32) {
        (self.a.child.pid(), self.b.child.pid())
    }

    /// The interface names (first end, second end).
    pub fn ifaces(&self) -> (&str, &str) {
        (&self.a.iface, &self.b.iface)
    }

    /// Fails with the daemon's output if either has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.a.child.check_running()?;
        self.b.child.check_running()
    }
}

/// `wg genkey` / `wg pubkey`: the private key file and the public key (base64).
fn keypair(dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    let private = process::run(Command::new("wg").arg("genkey"), CALL_TIMEOUT)
        .context("wg genkey")?
        .stdout;
    let path = dir.join(format!("wg-{name}.key"));
    std::fs::write(&path, &private).with_context(|| format!("writing {}", path.display()))?;
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawning wg pubkey")?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().context("wg pubkey stdin")?;
        stdin.write_all(&private).context("writing to wg pubkey")?;
    }
    let out = child.wait_with_output().context("wg pubkey")?;
    if !out.status.success() {
        bail!("wg pubkey failed with {}", out.status);
    }
    Ok((path, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

fn start_one(
    end: End<'_>,
    iface: &str,
    program: &Path,
    dir: &Path,
    threads: Option<u32>,
) -> Result<Daemon> {
    let sock = Path::new(UAPI_DIR).join(format!("{iface}.sock"));
    let _ = std::fs::remove_file(&sock);
    let mut cmd = end.ns.command(program);
    cmd.args([
        "--foreground",
        "--disable-drop-privileges",
        "--verbosity",
        "error",
    ]);
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd.arg(iface).env("WG_SUDO", "1");
    let out = dir.join(format!("{iface}.out"));
    let mut child = Child::spawn(&format!("boringtun {iface}"), cmd, &out)?;
    let up = wait_until(
        &format!("boringtun {iface}'s UAPI socket"),
        START_TIMEOUT,
        || std::os::unix::net::UnixStream::connect(&sock).is_ok() || !child.is_running(),
    );
    child.check_running()?;
    up.with_context(|| format!("boringtun {iface}: output:\n{}", child.output_tail(20)))?;
    Ok(Daemon {
        child,
        iface: iface.to_owned(),
    })
}

fn configure(end: End<'_>, iface: &str, key: &Path, peer_pub: &str, peer: End<'_>) -> Result<()> {
    let key = key.to_str().context("key path is not UTF-8")?;
    let endpoint = match peer.outer {
        IpAddr::V4(a) => format!("{a}:{PORT}"),
        IpAddr::V6(a) => format!("[{a}]:{PORT}"),
    };
    let allowed = format!("{}/32", peer.inner);
    let port = PORT.to_string();
    end.ns
        .exec(
            &[
                "wg",
                "set",
                iface,
                "listen-port",
                &port,
                "private-key",
                key,
                "peer",
                peer_pub,
                "endpoint",
                &endpoint,
                "allowed-ips",
                &allowed,
            ],
            CALL_TIMEOUT,
        )
        .with_context(|| format!("wg set {iface}"))?;
    end.ns.add_addr(iface, &format!("{}/24", end.inner))?;
    // What wg-quick sets: 1500 minus the worst-case (IPv6) WireGuard overhead.
    // boringtun leaves its TUN at 1500, whose packets would then fragment.
    end.ns
        .ip(&["link", "set", iface, "mtu", &MTU.to_string(), "up"])?;
    Ok(())
}

//! A real BIND 9 (`named -g`) on 127.0.0.1, authoritative for a forward zone
//! and a reverse zone per address family, updatable with a TSIG key that
//! `tsig-keygen` made.
//!
//! ```no_run
//! let bind = oemesh_testkit::bind::Bind::start().expect("BIND 9 starts");
//! let answer = bind.dig(&["10.2.0.192.in-addr.arpa.", "IPSECKEY"]).unwrap();
//! println!("{answer} from {}", bind.server());
//! ```
//!
//! Each instance has its own directory and its own free port, so tests can run
//! in parallel. On drop, `named` is killed by its PID and the directory is
//! removed.
//!
//! **Where the files live (AppArmor).** Debian's `bind9` package confines
//! `named` with the AppArmor profile `/etc/apparmor.d/usr.sbin.named`, which
//! lets it read `/etc/bind` and read and write only `/var/lib/bind` and
//! `/var/cache/bind` (plus a few fixed files); AppArmor is on by default in
//! Debian 12. So each instance's directory is
//! `/var/lib/bind/oemesh-bind-<creator pid>-XXXXXX` ([`BIND_STATE_DIR`]): its
//! config, keys, zones, journals and the `-g` log (named's inherited stderr is
//! checked against the profile too) are all inside what the profile grants.
//! Where `/var/lib/bind` does not exist or is not writable (BIND not from
//! Debian, or not root) the system temporary directory is used, and a `named`
//! that fails there under an enforcing profile is reported with what to do.
//! Directories left by a killed creator whose `named` no longer runs are
//! removed by the next instance started.
//!
//! [`Bind::start_in`] runs the same server inside a network namespace on port 53
//! at the namespace's own address, with a forward zone of the caller's choosing
//! (the testnet's `dns` host, see [`crate::topology`]).

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// The forward zone every instance serves.
pub const FORWARD_ZONE: &str = "example.test.";
/// The IPv4 reverse zone: 192.0.2.0/24 (TEST-NET-1, RFC 5737).
pub const REVERSE_V4_ZONE: &str = "2.0.192.in-addr.arpa.";
/// The IPv6 reverse zone: 2001:db8::/32 (documentation prefix, RFC 3849).
pub const REVERSE_V6_ZONE: &str = "8.b.d.0.1.0.0.2.ip6.arpa.";
/// The name of the TSIG key allowed to update the zones.
pub const TSIG_KEY_NAME: &str = "oemesh-update";
/// The name of a TSIG key the server knows but lets update nothing.
pub const READONLY_KEY_NAME: &str = "oemesh-readonly";

/// How long `named` may take to load its zones and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The directory under which instances keep their files: Debian's AppArmor
/// profile for `named` lets it write here (see the [module docs](self)).
pub const BIND_STATE_DIR: &str = "/var/lib/bind";
/// Prefix of each instance's directory (then the creator's PID and a dash).
pub const DIR_PREFIX: &str = "oemesh-bind-";

/// A running `named`. See the [module docs](self).
pub struct Bind {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// The namespace `named` runs in (by name), `None`: the caller's.
    netns: Option<String>,
    zones: Vec<String>,
}

impl fmt::Debug for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bind")
            .field("pid", &self.child.id())
            .field("server", &self.server())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Bind {
    /// Starts `named` and waits until it answers for its zones.
    ///
    /// Fails (never skips) when BIND is not installed, saying how to get it.
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        Self::launch(Layout {
            netns: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            forward_zone: FORWARD_ZONE.to_owned(),
            hosts: vec![("ns".to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST))],
        })
    }

    /// Starts `named` inside `ns`, listening on `addr` port 53 (an address the
    /// namespace already has), authoritative for `forward_zone` (e.g. `oe.test.`,
    /// with `ns` and an A/AAAA record per `hosts` entry) and the two reverse
    /// zones [`REVERSE_V4_ZONE`] and [`REVERSE_V6_ZONE`], updatable with the
    /// TSIG key [`TSIG_KEY_NAME`]. Waits until it answers.
    ///
    /// `named` is killed by PID on drop; it must not outlive `ns` (deleting the
    /// namespace kills it anyway).
    pub fn start_in(
        ns: &Netns,
        addr: IpAddr,
        forward_zone: &str,
        hosts: &[(&str, IpAddr)],
    ) -> Result<Self> {
        let mut records: Vec<(String, IpAddr)> = vec![("ns".to_owned(), addr)];
        records.extend(hosts.iter().map(|(n, a)| ((*n).to_owned(), *a)));
        let forward_zone = if forward_zone.ends_with('.') {
            forward_zone.to_owned()
        } else {
            format!("{forward_zone}.")
        };
        Self::launch(Layout {
            netns: Some(ns.name().to_owned()),
            addr: SocketAddr::new(addr, 53),
            forward_zone,
            hosts: records,
        })
    }

    fn launch(layout: Layout) -> Result<Self> {
        for tool in ["named", "tsig-keygen", "dig"] {
            if which(tool).is_none() {
                bail!(
                    "'{tool}' (BIND 9) is not installed; run scripts/test, which installs \
                     the Debian packages bind9 and bind9-dnsutils (or apt-get install them)"
                );
            }
        }
        let dir = instance_dir()?;
        let d = dir.path();

        for (name, file) in [
            (TSIG_KEY_NAME, "tsig.key"),
            (READONLY_KEY_NAME, "readonly.key"),
        ] {
            let keygen = Command::new(which("tsig-keygen").unwrap_or_default())
                .args(["-a", "hmac-sha256", name])
                .output()
                .context("running tsig-keygen")?;
            if !keygen.status.success() {
                bail!(
                    "tsig-keygen failed: {}",
                    String::from_utf8_lossy(&keygen.stderr)
                );
            }
            write_private(&d.join(file), &keygen.stdout)?;
        }

        let zones = vec![
            layout.forward_zone.clone(),
            REVERSE_V4_ZONE.to_owned(),
            REVERSE_V6_ZONE.to_owned(),
        ];
        for zone in &zones {
            fs::write(d.join(zone_file_name(zone)), zone_file(zone, &layout))?;
        }
        fs::write(d.join("named.conf"), named_conf(d, &layout, &zones))?;

        let log = fs::File::create(d.join("named.log"))?;
        let named = which("named").unwrap_or_default();
        let mut cmd = match &layout.netns {
            // `ip netns exec` execs named, so the PID is named's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(named);
                c
            }
            None => Command::new(named),
        };
        let child = cmd
            .arg("-g")
            .arg("-c")
            .arg(d.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting named")?;
        let mut bind = Self {
            child,
            dir,
            addr: layout.addr,
            netns: layout.netns,
            zones,
        };
        bind.wait_ready()?;
        Ok(bind)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "named exited ({status}) before answering; its log:\n{}{}",
                    self.log(),
                    apparmor_hint(self.dir.path())
                );
            }
            let all_loaded = self.zones.iter().all(|zone| {
                self.dig(&["+norecurse", zone, "SOA"])
                    .is_ok_and(|out| out.contains("SOA"))
            });
            if all_loaded {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "named did not answer within {START_TIMEOUT:?}; its log:\n{}{}",
                    self.log(),
                    apparmor_hint(self.dir.path())
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// The UDP/TCP port (on 127.0.0.1 for [`Bind::start`], 53 for [`Bind::start_in`]).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, or the namespace address and port 53.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// [`Bind::addr`] as text, for `--server`.
    pub fn server(&self) -> String {
        self.addr().to_string()
    }

    /// The zones served (forward, IPv4 reverse, IPv6 reverse), absolute names.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// `named`'s process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A command that runs `program` where `named` runs (inside its namespace, if any).
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    /// The `tsig-keygen` output (`key "oemesh-update" { algorithm hmac-sha256; secret "..."; };`).
    pub fn tsig_key_file(&self) -> PathBuf {
        self.dir.path().join("tsig.key")
    }

    /// A key file for [`READONLY_KEY_NAME`]: known to the server, allowed to update nothing.
    pub fn readonly_tsig_key_file(&self) -> PathBuf {
        self.dir.path().join("readonly.key")
    }

    /// The instance's directory (config, zones, journals, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `named` wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Runs `dig @ADDR -p PORT +noall +answer +time=2 +tries=1 ARGS...` (inside
    /// the server's namespace, if any) and returns its standard output; fails
    /// when dig does.
    pub fn dig(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command("dig")
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.port().to_string()])
            .args(["+noall", "+answer", "+time=2", "+tries=1"])
            .args(args)
            .output()
            .context("running dig")?;
        if !out.status.success() {
            bail!(
                "dig {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends `script` (nsupdate commands, without `server` and `send`) with
    /// `nsupdate -k` and the instance's TSIG key.
    pub fn nsupdate(&self, script: &str) -> Result<()> {
        use std::io::Write as _;
        let mut child = self
            .command("nsupdate")
            .arg("-k")
            .arg(self.tsig_key_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nsupdate")?;
        let input = format!(
            "server {} {}\n{script}\nsend\nquit\n",
            self.addr.ip(),
            self.port()
        );
        child
            .stdin
            .take()
            .context("nsupdate stdin")?
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nsupdate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        // Child::kill signals this PID only; then reap it. The TempDir field
        // removes the directory afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for one instance: under [`BIND_STATE_DIR`] when it can be
/// written, else in the system temporary directory. Sweeps stale ones first.
fn instance_dir() -> Result<tempfile::TempDir> {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let prefix = format!("{DIR_PREFIX}{}-", std::process::id());
    let parent = Path::new(BIND_STATE_DIR);
    if parent.is_dir() {
        SWEEP.call_once(|| sweep_stale(parent));
        match tempfile::Builder::new().prefix(&prefix).tempdir_in(parent) {
            Ok(dir) => return Ok(dir),
            // Not root (nor in group bind): the temporary directory it is.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating a directory in {BIND_STATE_DIR}"));
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir()
        .context("creating a temporary directory for named")
}

/// Removes `oemesh-bind-<pid>-*` directories in `parent` whose creator is gone
/// and whose `named` (by `named.pid`) no longer runs: left by a killed test.
/// A kept testnet's directory has a running `named`, so it stays.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(creator) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        let named_runs = fs::read_to_string(path.join("named.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(crate::process::pid_alive);
        if creator != std::process::id() && !crate::process::pid_alive(creator) && !named_runs {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// When `named` runs confined by an enforcing AppArmor profile and `dir` is not
/// where that profile lets it write, a paragraph saying so and what to do;
/// otherwise nothing.
fn apparmor_hint(dir: &Path) -> String {
    let allowed = ["/var/lib/bind/", "/var/cache/bind/"];
    if allowed.iter().any(|a| dir.starts_with(a)) {
        return String::new();
    }
    match apparmor_mode("named") {
        Some(mode) if mode == "enforce" => format!(
            "\nAppArmor confines named (profile `named`, enforce mode), and its files are in {}, \
             where the profile does not let it read or write. Run as root, so that they go \
             under {BIND_STATE_DIR}, or put the profile in complain mode for the test run: \
             `aa-complain /usr/sbin/named` (package apparmor-utils; `aa-enforce` undoes it).",
            dir.display()
        ),
        _ => String::new(),
    }
}

/// The mode (`enforce`, `complain`, …) of the loaded AppArmor profile `profile`,
/// from `/sys/kernel/security/apparmor/profiles`; `None` without AppArmor or
/// such a profile.
pub fn apparmor_mode(profile: &str) -> Option<String> {
    let list = fs::read_to_string("/sys/kernel/security/apparmor/profiles").ok()?;
    list.lines().find_map(|line| {
        let (name, mode) = line.rsplit_once(" (")?;
        (name == profile).then(|| mode.trim_end_matches(')').to_owned())
    })
}

/// Writes a secret file, created with mode 0600 as a careful admin would.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    Ok(())
}

/// Where and what one instance serves.
struct Layout {
    netns: Option<String>,
    addr: SocketAddr,
    forward_zone: String,
    /// Names in the forward zone and their addresses (`ns` first).
    hosts: Vec<(String, IpAddr)>,
}

/// `example.test.` → `example.test.zone`.
fn zone_file_name(zone: &str) -> String {
    format!("{}zone", zone)
}

fn zone_file(zone: &str, layout: &Layout) -> String {
    let fwd = &layout.forward_zone;
    let mut z = format!(
        "$TTL 300\n\
         @ IN SOA ns.{fwd} hostmaster.{fwd} 1 3600 600 86400 300\n\
         @ IN NS ns.{fwd}\n"
    );
    if zone == fwd {
        for (name, addr) in &layout.hosts {
            let rr = if addr.is_ipv4() { "A" } else { "AAAA" };
            z.push_str(&format!("{name} IN {rr} {addr}\n"));
        }
    }
    z
}

fn named_conf(dir: &Path, layout: &Layout, zones: &[String]) -> String {
    let d = dir.display();
    let port = layout.addr.port();
    let (v4, v6) = match layout.addr.ip() {
        IpAddr::V4(a) => (a.to_string(), "none".to_owned()),
        IpAddr::V6(a) => ("none".to_owned(), a.to_string()),
    };
    let mut conf = format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ {v4}; }};
    listen-on-v6 port {port} {{ {v6}; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    notify no;
}};
controls {{ }};
logging {{ category default {{ default_stderr; }}; category lame-servers {{ null; }}; }};
include "{d}/tsig.key";
include "{d}/readonly.key";
"#
    );
    for zone in zones {
        let apex = zone.trim_end_matches('.');
        let file = zone_file_name(zone);
        conf.push_str(&format!(
            "zone \"{apex}\" {{\n    type primary;\n    file \"{d}/{file}\";\n    \
             update-policy {{ grant {TSIG_KEY_NAME} zonesub ANY; }};\n}};\n"
        ));
    }
    conf
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// The full path of `tool` in PATH or the sbin directories (named lives in /usr/sbin).
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_updates() {
        let bind = Bind::start().expect("BIND 9 starts");
        let soa = bind.dig(&[REVERSE_V6_ZONE, "SOA"]).unwrap();
        assert!(soa.contains("SOA"), "{soa}");
        bind.nsupdate("update add 7.2.0.192.in-addr.arpa. 300 IN PTR h7.example.test.")
            .unwrap();
        let ptr = bind.dig(&["7.2.0.192.in-addr.arpa.", "PTR"]).unwrap();
        assert!(ptr.contains("h7.example.test."), "{ptr}");
        let dir = bind.dir().to_path_buf();
        if rustix::process::geteuid().is_root() {
            assert!(
                dir.starts_with(BIND_STATE_DIR),
                "as root, the files go where AppArmor lets named write: {}",
                dir.display()
            );
        }
        drop(bind);
        assert!(!dir.exists());
    }
}

//! A real Knot DNS (`knotd`) on 127.0.0.1, authoritative for the reverse zones
//! [`REVERSE_V4_ZONE`] and [`REVERSE_V6_ZONE`], updatable with a TSIG key
//! (hmac-sha256) through an ACL that allows updates of IPSECKEY records only:
//! the second server `dnskeys` is tested against, beside BIND 9
//! ([`crate::bind`]).
//!
//! ```no_run
//! let knot = oemesh_testkit::knot::Knot::start().expect("Knot DNS starts");
//! println!("{} with key {}", knot.server(), knot.tsig_key_file().display());
//! ```
//!
//! Each instance has its own temporary directory (config, zones, journal
//! database, control socket, log) and its own free port. On drop, `knotd` is
//! stopped by its PID and the directory removed. Debian's `knot` package ships
//! no AppArmor profile, so the directory may be anywhere.
//!
//! The TSIG key file is in the format `tsig-keygen` writes, which is what
//! `dnskeys --tsig-key` reads; `knot.conf` gets the same name and secret under
//! `key:`.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;

use crate::bind::{REVERSE_V4_ZONE, REVERSE_V6_ZONE, TSIG_KEY_NAME, free_port, which};
use crate::process::Child;

/// How long `knotd` may take to load its zones and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `knotd`. See the [module docs](self).
pub struct Knot {
    // Field order is drop order: knotd stops before its directory goes.
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl fmt::Debug for Knot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Knot")
            .field("pid", &self.child.pid())
            .field("server", &self.server())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Knot {
    /// Starts `knotd` on 127.0.0.1 and a free port and waits until it answers
    /// for both zones. Fails (never skips) when Knot is not installed, saying
    /// how to get it.
    pub fn start() -> Result<Self> {
        for tool in ["knotd", "dig"] {
            if which(tool).is_none() {
                bail!(
                    "'{tool}' is not installed; run scripts/test, which installs the Debian \
                     packages knot and bind9-dnsutils (or apt-get install them)"
                );
            }
        }
        let dir = tempfile::Builder::new().prefix("oemesh-knot-").tempdir()?;
        let d = dir.path();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));

        let mut secret = [0u8; 32];
        getrandom(&mut secret)?;
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        fs::write(
            d.join("tsig.key"),
            format!(
                "key \"{TSIG_KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"
            ),
        )?;
        for zone in [REVERSE_V4_ZONE, REVERSE_V6_ZONE] {
            fs::write(
                d.join(format!("{zone}zone")),
                "$TTL 300\n\
                 @ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n\
                 @ IN NS ns.example.test.\n",
            )?;
        }
        fs::write(d.join("knot.conf"), knot_conf(d, addr, &secret))?;

        let knotd = which("knotd").unwrap_or_default();
        let mut cmd = Command::new(knotd);
        cmd.arg("-c").arg(d.join("knot.conf"));
        let child = Child::spawn("knotd", cmd, &d.join("knotd.log"))?;
        let mut knot = Knot { child, dir, addr };
        knot.wait_ready()?;
        Ok(knot)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.child
                .check_running()
                .context("knotd exited before answering")?;
            let loaded = [REVERSE_V4_ZONE, REVERSE_V6_ZONE].iter().all(|zone| {
                self.dig(&["+norecurse", zone, "SOA"])
                    .is_ok_and(|out| out.contains("SOA"))
            });
            if loaded {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "knotd did not answer within {START_TIMEOUT:?}; its log:\n{}",
                    self.child.output_tail(40)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// [`Knot::addr`] as text, for `--server`.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// The TSIG key for [`TSIG_KEY_NAME`], in the format `tsig-keygen` writes.
    pub fn tsig_key_file(&self) -> PathBuf {
        self.dir.path().join("tsig.key")
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `knotd` logged so far.
    pub fn log(&self) -> String {
        self.child.output_tail(200)
    }

    /// Runs `dig @127.0.0.1 -p PORT +noall +answer +time=2 +tries=1 ARGS...`
    /// and returns its standard output; fails when dig does.
    pub fn dig(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(which("dig").unwrap_or_default())
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string()])
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
}

/// knot.conf: the key, an ACL allowing it to update IPSECKEY records only, the
/// two zones from `<dir>/<zone>zone`, everything else in `dir`.
fn knot_conf(dir: &Path, addr: SocketAddr, secret: &str) -> String {
    let d = dir.display();
    let mut conf = format!(
        r#"server:
    rundir: "{d}"
    listen: {ip}@{port}
log:
  - target: stderr
    any: info
database:
    storage: "{d}"
key:
  - id: {TSIG_KEY_NAME}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: oemesh-update
    key: {TSIG_KEY_NAME}
    action: update
    update-type: [IPSECKEY]
template:
  - id: default
    storage: "{d}"
    file: "%s.zone"
    acl: oemesh-update
zone:
"#,
        ip = addr.ip(),
        port = addr.port(),
    );
    for zone in [REVERSE_V4_ZONE, REVERSE_V6_ZONE] {
        conf.push_str(&format!("  - domain: {zone}\n"));
    }
    conf
}

/// Random bytes from the kernel.
fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read as _;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("reading /dev/urandom")
}

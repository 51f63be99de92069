//! A real strongSwan `charon` inside a network namespace, driven with `swanctl`.
//!
//! The kernel the tests run on may have no XFRM, so charon uses its userspace
//! ESP (`kernel-libipsec`, an `ipsec0` TUN). What that takes (see `docs/interop.md`):
//!
//! - a private `/run` per charon (a tmpfs mounted in a private mount namespace),
//!   so two daemons do not share the pid file; the vici socket lives in the
//!   fixture's own directory;
//! - `kernel-libipsec { allow_peer_ts = yes }`, and the fwmark pair
//!   `kernel-netlink { fwmark = !0x42 }` / `socket-default { fwmark = 0x42 }` so
//!   charon's own UDP packets bypass the routes it installs towards `ipsec0`;
//! - `encap = yes` (ESP in UDP 4500), `mode = tunnel`;
//! - no ESN: libipsec refuses extended sequence numbers.
//!
//! Split by what each part does: `config` writes charon's configuration
//! (`strongswan.conf`, `swanctl.conf`) and its keys; this module runs the
//! daemon and drives it with `swanctl`; `output` reads what charon says
//! (`swanctl --list-sas`, the secrets in its log).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use oemesh_testkit::netns::{Netns, veth};
//! use oemesh_testkit::strongswan::{Charon, CharonConfig, Ed25519Key};
//! let (a, b) = (Netns::new("alice")?, Netns::new("bob")?);
//! veth(&a, "192.0.2.1/24", &b, "192.0.2.2/24")?;
//! let keys = tempfile::tempdir()?;
//! let ka = Ed25519Key::generate(keys.path(), "alice")?;
//! let kb = Ed25519Key::generate(keys.path(), "bob")?;
//! let mut ca = CharonConfig::new("192.0.2.1", "192.0.2.2");
//! ca.local_key = Some(ka.clone());
//! ca.remote_pubkey = Some(kb.public_pem.clone());
//! ca.local_ts = vec!["192.0.2.1/32".into()];
//! ca.remote_ts = vec!["192.0.2.2/32".into()];
//! let alice = Charon::start(&a, "alice", ca)?;
//! alice.initiate()?;
//! let sa = alice.wait_established(std::time::Duration::from_secs(10))?;
//! assert_eq!(sa.children[0].state, "INSTALLED");
//! # Ok(()) }
//! ```

mod config;
mod output;

pub use config::{CharonConfig, Ed25519Key, StartAction, ipseckey_rdata, write_ed25519_public_pem};
pub use output::{ChildSa, IkeSa, log_secret, parse_list_sas};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::netns::Netns;
use crate::process::{self, Child};

/// Where Debian installs the daemon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// Where Debian installs charon's plugins.
pub const PLUGIN_DIR: &str = "/usr/lib/ipsec/plugins";

/// The plugins charon loads (`charon.load`): crypto for the oemesh wire profile,
/// raw public keys, userspace ESP, vici.
pub const CHARON_PLUGINS: &str = "random nonce kdf openssl aes sha1 sha2 hmac gcm chapoly \
     curve25519 pem pkcs1 pkcs8 pubkey x509 kernel-libipsec kernel-netlink socket-default vici";

/// Bound on one `swanctl` call (its own `--timeout` is shorter).
pub(crate) const SWANCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on charon's start-up (vici socket appearing).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails (never skips) unless this test can run charon: root, the binaries and the
/// plugins from `strongswan-charon`, `strongswan-swanctl`, `strongswan-pki`,
/// `libcharon-extra-plugins`, `libstrongswan-standard-plugins` (gcm) and
/// `libstrongswan-extra-plugins`.
pub fn require_charon() {
    process::require_root();
    process::require_programs(&[CHARON, "swanctl", "pki", "unshare", "ip"]);
    let missing: Vec<&str> = ["kernel-libipsec", "curve25519", "chapoly", "gcm", "vici"]
        .into_iter()
        .filter(|p| !Path::new(&format!("{PLUGIN_DIR}/libstrongswan-{p}.so")).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "strongSwan plugins {missing:?} missing: run `scripts/test` as root (it installs \
         libcharon-extra-plugins, libstrongswan-standard-plugins and \
         libstrongswan-extra-plugins)"
    );
}

/// The installed strongSwan version, from `swanctl --version`-independent
/// `charon --version`.
pub fn version() -> Result<String> {
    let out = process::run(Command::new(CHARON).arg("--version"), SWANCTL_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A charon daemon in a namespace, stopped by PID on drop. Its directory (configs,
/// keys, `charon.log`, `charon.out`) is removed then too — unless the test is
/// panicking, in which case it is kept and its path printed.
#[derive(Debug)]
pub struct Charon {
    // Field order matters: the daemon stops before its directory goes.
    child: Child,
    dir: Option<TempDir>,
    name: String,
    config: CharonConfig,
}

impl Charon {
    /// Writes the configs, starts charon in `ns` with a private `/run`, waits
    /// (bounded) for its vici socket and loads everything with
    /// `swanctl --load-all`. `name` appears in messages and the temp dir name.
    pub fn start(ns: &Netns, name: &str, config: CharonConfig) -> Result<Charon> {
        require_charon();
        let dir = tempfile::Builder::new()
            .prefix(&format!("oet-charon-{name}-"))
            .tempdir()?;
        let root = dir.path();
        let swanctl = root.join("swanctl");
        for sub in [
            "private", "pubkey", "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl",
            "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
        ] {
            std::fs::create_dir_all(swanctl.join(sub))?;
        }
        if let Some(key) = &config.local_key {
            std::fs::copy(&key.private_pem, swanctl.join("private/local.pem"))
                .with_context(|| format!("copying {}", key.private_pem.display()))?;
            std::fs::copy(&key.public_pem, swanctl.join("pubkey/local.pub"))
                .with_context(|| format!("copying {}", key.public_pem.display()))?;
        }
        if let Some(pubkey) = &config.remote_pubkey {
            std::fs::copy(pubkey, swanctl.join("pubkey/remote.pub"))
                .with_context(|| format!("copying {}", pubkey.display()))?;
        }
        std::fs::write(root.join("strongswan.conf"), config.strongswan_conf(root))?;
        std::fs::write(swanctl.join("swanctl.conf"), config.swanctl_conf())?;

        let mut cmd = ns.command("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            &format!("mount -t tmpfs tmpfs /run && exec {CHARON}"),
        ])
        .env("STRONGSWAN_CONF", root.join("strongswan.conf"));
        let child = Child::spawn(&format!("charon {name}"), cmd, &root.join("charon.out"))?;
        let mut charon = Charon {
            child,
            dir: Some(dir),
            name: name.to_owned(),
            config,
        };
        let vici = charon.dir().join("charon.vici");
        // The socket file appears at bind(2), before listen(2): wait until a
        // connection is accepted.
        let started = process::wait_until("charon's vici socket", START_TIMEOUT, || {
            std::os::unix::net::UnixStream::connect(&vici).is_ok() || !charon.child.is_running()
        });
        charon.child.check_running()?;
        started.with_context(|| charon.context())?;
        charon.load_all()?;
        Ok(charon)
    }

    /// The directory with `strongswan.conf`, `swanctl/`, `charon.log`, `charon.out`.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), TempDir::path)
    }

    /// The config this charon was started with.
    pub fn config(&self) -> &CharonConfig {
        &self.config
    }

    /// charon's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The `filelog` file.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("charon.log")
    }

    /// The whole `filelog` so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        process::wait_until(
            &format!("charon {} to log {needle:?}", self.name),
            timeout,
            || self.log().contains(needle),
        )
        .with_context(|| self.context())
    }

    /// Runs `swanctl <args> --uri <this charon's vici>` (bounded) and returns stdout.
    pub fn swanctl(&self, args: &[&str]) -> Result<String> {
        let uri = format!("unix://{}", self.dir().join("charon.vici").display());
        let out = process::run(
            Command::new("swanctl")
                .args(args)
                .args(["--uri", &uri])
                .env("STRONGSWAN_CONF", self.dir().join("strongswan.conf"))
                .env("SWANCTL_DIR", self.dir().join("swanctl")),
            SWANCTL_TIMEOUT,
        )
        .with_context(|| self.context())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `swanctl --load-all` (credentials and connections; again after changing
    /// files under [`Charon::dir`]).
    pub fn load_all(&self) -> Result<()> {
        self.swanctl(&["--load-all"]).map(drop)
    }

    /// `swanctl --initiate --child <conn>`: IKE_SA_INIT + IKE_AUTH with the
    /// CHILD_SA; returns when it is up or fails (bounded by 10 s).
    pub fn initiate(&self) -> Result<()> {
        self.swanctl(&[
            "--initiate",
            "--child",
            &self.config.conn,
            "--timeout",
            "10",
        ])
        .map(drop)
    }

    /// `swanctl --terminate --ike <conn>`: deletes the IKE SA (INFORMATIONAL with
    /// a Delete payload) and its CHILD_SAs.
    pub fn terminate(&self) -> Result<()> {
        self.swanctl(&["--terminate", "--ike", &self.config.conn, "--timeout", "10"])
            .map(drop)
    }

    /// `swanctl --rekey --ike <conn>`: CREATE_CHILD_SA rekeying the IKE SA.
    pub fn rekey_ike(&self) -> Result<()> {
        self.swanctl(&["--rekey", "--ike", &self.config.conn])
            .map(drop)
    }

    /// `swanctl --rekey --child <conn>`: CREATE_CHILD_SA rekeying the CHILD_SA.
    pub fn rekey_child(&self) -> Result<()> {
        self.swanctl(&["--rekey", "--child", &self.config.conn])
            .map(drop)
    }

    /// `swanctl --list-sas --raw`, parsed.
    pub fn list_sas(&self) -> Result<Vec<IkeSa>> {
        parse_list_sas(&self.swanctl(&["--list-sas", "--raw"])?)
    }

    /// Waits (bounded) for an ESTABLISHED IKE SA of this connection with an
    /// INSTALLED CHILD_SA, and returns it.
    pub fn wait_established(&self, timeout: Duration) -> Result<IkeSa> {
        let conn = self.config.conn.clone();
        process::wait_for(
            &format!(
                "charon {}: IKE SA {conn} ESTABLISHED with a CHILD_SA",
                self.name
            ),
            timeout,
            || {
                self.list_sas().ok()?.into_iter().find(|sa| {
                    sa.name == conn
                        && sa.state == "ESTABLISHED"
                        && sa.children.iter().any(|c| c.state == "INSTALLED")
                })
            },
        )
        .with_context(|| self.context())
    }

    /// Stops charon now (SIGTERM, then SIGKILL); it sends its Deletes first.
    pub fn stop(&mut self) -> Result<()> {
        self.child.stop().map(drop)
    }

    /// The tail of charon's output and log, for error messages.
    pub fn context(&self) -> String {
        format!(
            "charon {} ({}): stdout/stderr:\n{}\nlog tail:\n{}",
            self.name,
            self.dir().display(),
            self.child.output_tail(10),
            process::tail_of_file(&self.log_path(), 30)
        )
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        if let Err(e) = self.child.stop() {
            eprintln!("oemesh-testkit: stopping charon {}: {e:#}", self.name);
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "oemesh-testkit: charon {} files kept for inspection in {}",
                self.name,
                dir.keep().display()
            );
        }
    }
}

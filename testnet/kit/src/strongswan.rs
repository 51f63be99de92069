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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
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
const SWANCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on charon's start-up (vici socket appearing).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4); the 32-byte
/// key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

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

/// An Ed25519 key pair in the files `pki` writes: PKCS#8 PEM private key and
/// SubjectPublicKeyInfo PEM public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519Key {
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8), as `pki --gen --type ed25519` writes.
    pub private_pem: PathBuf,
    /// `-----BEGIN PUBLIC KEY-----` (SPKI).
    pub public_pem: PathBuf,
    /// The raw 32-byte public key (RFC 8032), as an IPSECKEY record carries it.
    pub public_raw: [u8; 32],
}

impl Ed25519Key {
    /// Generates `<dir>/<name>.pem` and `<dir>/<name>.pub` with `pki`.
    pub fn generate(dir: &Path, name: &str) -> Result<Ed25519Key> {
        let private_pem = dir.join(format!("{name}.pem"));
        let public_pem = dir.join(format!("{name}.pub"));
        let key = process::run(
            Command::new("pki").args(["--gen", "--type", "ed25519", "--outform", "pem"]),
            SWANCTL_TIMEOUT,
        )?
        .stdout;
        std::fs::write(&private_pem, &key)?;
        let pem_path = private_pem.to_str().context("key path is not UTF-8")?;
        let public = process::run(
            Command::new("pki").args(["--pub", "--in", pem_path, "--outform", "pem"]),
            SWANCTL_TIMEOUT,
        )?
        .stdout;
        std::fs::write(&public_pem, &public)?;
        let der = process::run(
            Command::new("pki").args(["--pub", "--in", pem_path, "--outform", "der"]),
            SWANCTL_TIMEOUT,
        )?
        .stdout;
        let public_raw = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| anyhow!("pki wrote an unexpected Ed25519 SPKI: {der:02x?}"))?;
        Ok(Ed25519Key {
            private_pem,
            public_pem,
            public_raw,
        })
    }
}

/// Writes a raw Ed25519 public key as an SPKI PEM file charon accepts in
/// `pubkeys` (for a peer whose key was made elsewhere, e.g. by oemesh).
pub fn write_ed25519_public_pem(raw: &[u8; 32], path: &Path) -> Result<()> {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(raw);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

/// When charon acts on a loaded CHILD_SA config (`start_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAction {
    /// Wait for `swanctl --initiate` or for the peer (the default).
    None,
    /// Initiate as soon as the config is loaded.
    Start,
    /// Install a trap policy; traffic to `remote_ts` triggers the negotiation.
    Trap,
}

impl StartAction {
    fn as_str(self) -> &'static str {
        match self {
            StartAction::None => "none",
            StartAction::Start => "start",
            StartAction::Trap => "trap",
        }
    }
}

/// Everything the generated `strongswan.conf` and `swanctl.conf` say. One IKE
/// connection with one CHILD_SA config, both named [`CharonConfig::conn`].
#[derive(Debug, Clone)]
pub struct CharonConfig {
    /// Connection and child name (`oe`).
    pub conn: String,
    /// `local_addrs` (an address, or `%any`).
    pub local_addrs: String,
    /// `remote_addrs` (an address, or `%any` for a responder-only config).
    pub remote_addrs: String,
    /// Our key: `auth = pubkey` with it, or `auth = null` when `None`.
    pub local_key: Option<Ed25519Key>,
    /// The peer's SPKI PEM public key: `auth = pubkey`, or `auth = null` when `None`.
    pub remote_pubkey: Option<PathBuf>,
    /// Our IKE identity (`local.id`); `None` lets charon use the address (or
    /// ID_NULL with AUTH NULL).
    pub local_id: Option<String>,
    /// The peer's identity (`remote.id`); `None` is `%any`.
    pub remote_id: Option<String>,
    /// IKE proposals (`proposals`).
    pub proposals: Vec<String>,
    /// ESP proposals (`esp_proposals`). libipsec cannot do ESN: do not add `esn`.
    pub esp_proposals: Vec<String>,
    /// `local_ts`.
    pub local_ts: Vec<String>,
    /// `remote_ts`.
    pub remote_ts: Vec<String>,
    /// `start_action`.
    pub start_action: StartAction,
    /// `encap` (force UDP encapsulation; the oemesh wire profile needs it).
    pub encap: bool,
    /// `mobike` (off by default: not part of the oemesh wire profile).
    pub mobike: bool,
    /// IKE SA `rekey_time`; `None` keeps strongSwan's default (4 h).
    pub ike_rekey_time: Option<Duration>,
    /// IKE SA `over_time`.
    pub ike_over_time: Option<Duration>,
    /// CHILD_SA `rekey_time`; `None` keeps strongSwan's default (1 h).
    pub child_rekey_time: Option<Duration>,
    /// CHILD_SA `life_time`.
    pub child_life_time: Option<Duration>,
    /// `rand_time` for both IKE and CHILD SAs (set to zero for exact rekey times).
    pub rand_time: Option<Duration>,
    /// `dpd_delay`; `None` disables liveness checks.
    pub dpd_delay: Option<Duration>,
    /// `charon.retransmit_timeout` (seconds; strongSwan's default is 4.0).
    pub retransmit_timeout: f32,
    /// `charon.retransmit_tries` (strongSwan's default is 5).
    pub retransmit_tries: u32,
    /// `filelog` levels by subsystem (`default`, `ike`, `chd`, `enc`, `net`, …;
    /// -1 silent … 4 private: keys and secrets).
    pub log_levels: Vec<(String, i8)>,
}

impl CharonConfig {
    /// A config for `local_addrs` ↔ `remote_addrs` with the oemesh wire profile
    /// (AES-256-GCM and ChaCha20-Poly1305, PRF-HMAC-SHA2-256, Curve25519, tunnel
    /// mode, UDP encapsulation), no keys, no traffic selectors, fast retransmits
    /// and [`CharonConfig::LOG_NORMAL`] logging.
    pub fn new(local_addrs: &str, remote_addrs: &str) -> CharonConfig {
        CharonConfig {
            conn: "oe".into(),
            local_addrs: local_addrs.into(),
            remote_addrs: remote_addrs.into(),
            local_key: None,
            remote_pubkey: None,
            local_id: None,
            remote_id: None,
            proposals: vec![
                "aes256gcm16-prfsha256-x25519".into(),
                "chacha20poly1305-prfsha256-x25519".into(),
            ],
            esp_proposals: vec![
                "aes256gcm16-x25519".into(),
                "chacha20poly1305-x25519".into(),
            ],
            local_ts: vec!["dynamic".into()],
            remote_ts: vec!["dynamic".into()],
            start_action: StartAction::None,
            encap: true,
            mobike: false,
            ike_rekey_time: None,
            ike_over_time: None,
            child_rekey_time: None,
            child_life_time: None,
            rand_time: None,
            dpd_delay: None,
            retransmit_timeout: 1.0,
            retransmit_tries: 3,
            log_levels: Self::levels(Self::LOG_NORMAL),
        }
    }

    /// Everyday logging: exchanges and decisions, no packet dumps.
    pub const LOG_NORMAL: &'static [(&'static str, i8)] = &[
        ("default", 1),
        ("ike", 2),
        ("chd", 2),
        ("cfg", 2),
        ("net", 1),
        ("enc", 1),
    ];

    /// Level 4 ("private") for `ike`/`chd`/`enc`: nonces, the DH secret,
    /// SKEYSEED, SK_* and KEYMAT, every message in hex. Ephemeral test keys only.
    pub const LOG_KEYS: &'static [(&'static str, i8)] = &[
        ("default", 1),
        ("ike", 4),
        ("chd", 4),
        ("enc", 4),
        ("cfg", 2),
    ];

    /// `LOG_*` presets as owned pairs for [`CharonConfig::log_levels`].
    pub fn levels(preset: &[(&str, i8)]) -> Vec<(String, i8)> {
        preset.iter().map(|(s, l)| ((*s).to_owned(), *l)).collect()
    }

    /// The `strongswan.conf` for a charon whose files live in `dir`.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let mut levels = String::new();
        for (subsystem, level) in &self.log_levels {
            let _ = writeln!(levels, "      {subsystem} = {level}");
        }
        format!(
            "# Generated by oemesh-testkit (strongswan.rs); see docs/interop.md.
charon {{
  load = {CHARON_PLUGINS}
  install_routes = yes
  retransmit_timeout = {rt}
  retransmit_tries = {tries}
  filelog {{
    main {{
      path = {d}/charon.log
      time_format = %H:%M:%S
      ike_name = yes
      append = no
      flush_line = yes
{levels}    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{d}/charon.vici
    }}
    kernel-libipsec {{
      allow_peer_ts = yes
    }}
    kernel-netlink {{
      fwmark = !0x42
    }}
    socket-default {{
      fwmark = 0x42
    }}
  }}
}}
swanctl {{
  load = pem pkcs1 pkcs8 x509 pubkey openssl curve25519
}}
",
            rt = self.retransmit_timeout,
            tries = self.retransmit_tries,
        )
    }

    /// The `swanctl.conf` (keys are expected as `private/local.pem`,
    /// `pubkey/local.pub` and `pubkey/remote.pub` next to it).
    pub fn swanctl_conf(&self) -> String {
        let secs = |d: Duration| format!("{}s", d.as_secs());
        let mut ike_opts = String::new();
        let mut child_opts = String::new();
        if let Some(t) = self.ike_rekey_time {
            let _ = writeln!(ike_opts, "    rekey_time = {}", secs(t));
        }
        if let Some(t) = self.ike_over_time {
            let _ = writeln!(ike_opts, "    over_time = {}", secs(t));
        }
        if let Some(t) = self.rand_time {
            let _ = writeln!(ike_opts, "    rand_time = {}", secs(t));
            let _ = writeln!(child_opts, "        rand_time = {}", secs(t));
        }
        if let Some(t) = self.dpd_delay {
            let _ = writeln!(ike_opts, "    dpd_delay = {}", secs(t));
        }
        if let Some(t) = self.child_rekey_time {
            let _ = writeln!(child_opts, "        rekey_time = {}", secs(t));
        }
        if let Some(t) = self.child_life_time {
            let _ = writeln!(child_opts, "        life_time = {}", secs(t));
        }
        let local = match (&self.local_key, &self.local_id) {
            (Some(_), id) => format!(
                "      auth = pubkey\n      pubkeys = local.pub\n{}",
                id.as_ref()
                    .map(|i| format!("      id = {i}\n"))
                    .unwrap_or_default()
            ),
            (None, id) => format!(
                "      auth = null\n{}",
                id.as_ref()
                    .map(|i| format!("      id = {i}\n"))
                    .unwrap_or_default()
            ),
        };
        let remote_id = self.remote_id.as_deref().unwrap_or("%any");
        let remote = match &self.remote_pubkey {
            Some(_) => {
                format!("      auth = pubkey\n      pubkeys = remote.pub\n      id = {remote_id}\n")
            }
            None => format!("      auth = null\n      id = {remote_id}\n"),
        };
        let secrets = if self.local_key.is_some() {
            "secrets {\n  private-local {\n    file = local.pem\n  }\n}\n"
        } else {
            ""
        };
        let yn = |b: bool| if b { "yes" } else { "no" };
        format!(
            "# Generated by oemesh-testkit (strongswan.rs); see docs/interop.md.
connections {{
  {conn} {{
    version = 2
    local_addrs = {la}
    remote_addrs = {ra}
    proposals = {props}
    encap = {encap}
    mobike = {mobike}
{ike_opts}    local {{
{local}    }}
    remote {{
{remote}    }}
    children {{
      {conn} {{
        mode = tunnel
        local_ts = {lts}
        remote_ts = {rts}
        esp_proposals = {esp}
        start_action = {start}
{child_opts}      }}
    }}
  }}
}}
{secrets}",
            conn = self.conn,
            la = self.local_addrs,
            ra = self.remote_addrs,
            props = self.proposals.join(", "),
            encap = yn(self.encap),
            mobike = yn(self.mobike),
            lts = self.local_ts.join(", "),
            rts = self.remote_ts.join(", "),
            esp = self.esp_proposals.join(", "),
            start = self.start_action.as_str(),
        )
    }
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

/// Reads a secret that charon logs at level 4 from a `filelog` text: the first
/// `<label> => N bytes @ 0x…` line (e.g. `SKEYSEED`, `Sk_ei secret`,
/// `shared Diffie Hellman secret`, `encryption initiator key`) and the hex-dump
/// lines after it. With [`CharonConfig::LOG_KEYS`] an interop test can compare
/// the keys it derived with charon's.
pub fn log_secret(log: &str, label: &str) -> Option<Vec<u8>> {
    let mut lines = log.lines();
    let len = lines.by_ref().find_map(|line| {
        let rest = line.split_once(&format!(" {label} => "))?.1;
        rest.split_once(" bytes")?.0.parse::<usize>().ok()
    })?;
    let mut bytes = Vec::with_capacity(len);
    for line in lines {
        if bytes.len() >= len {
            break;
        }
        // `…> <offset>: XX XX …  ascii`
        let (_, dump) = line.split_once(": ")?;
        let hex = dump.split("  ").next()?;
        for byte in hex.split_whitespace() {
            bytes.push(u8::from_str_radix(byte, 16).ok()?);
        }
    }
    (bytes.len() == len).then_some(bytes)
}

/// One IKE SA from `swanctl --list-sas --raw`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkeSa {
    /// The connection name.
    pub name: String,
    /// `state` (`CONNECTING`, `ESTABLISHED`, `REKEYING`, `DELETING`, …).
    pub state: String,
    /// Whether this side initiated (`initiator=yes`).
    pub initiator: bool,
    /// `initiator-spi` (hex).
    pub initiator_spi: String,
    /// `responder-spi` (hex).
    pub responder_spi: String,
    /// `encr-alg`, e.g. `AES_GCM_16`, `CHACHA20_POLY1305`.
    pub encr_alg: String,
    /// `dh-group`, e.g. `CURVE_25519`.
    pub dh_group: String,
    /// The CHILD_SAs.
    pub children: Vec<ChildSa>,
    /// Every scalar field as printed (`local-host`, `remote-id`, `prf-alg`, …).
    pub fields: BTreeMap<String, String>,
}

/// One CHILD_SA from `swanctl --list-sas --raw`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSa {
    /// The child config name.
    pub name: String,
    /// `state` (`INSTALLED`, `REKEYED`, `DELETED`, …).
    pub state: String,
    /// `mode` (`TUNNEL`).
    pub mode: String,
    /// `encap=yes`: ESP in UDP.
    pub encap: bool,
    /// `spi-in` (hex).
    pub spi_in: String,
    /// `spi-out` (hex).
    pub spi_out: String,
    /// `encr-alg`.
    pub encr_alg: String,
    /// `esn=1` present: extended sequence numbers in use.
    pub esn: bool,
    /// `local-ts`.
    pub local_ts: Vec<String>,
    /// `remote-ts`.
    pub remote_ts: Vec<String>,
    /// Every scalar field as printed (`packets-in`, `bytes-out`, `reqid`, …).
    pub fields: BTreeMap<String, String>,
}

impl ChildSa {
    /// A numeric field such as `packets-in` (0 when absent).
    pub fn counter(&self, key: &str) -> u64 {
        self.fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A value in swanctl's raw (vici) text output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Node)>),
}

/// Parses `swanctl --list-sas --raw`: one `list-sa event {…}` line per IKE SA.
pub fn parse_list_sas(text: &str) -> Result<Vec<IkeSa>> {
    let mut sas = Vec::new();
    for line in text.lines() {
        let Some(body) = line.trim().strip_prefix("list-sa event") else {
            continue;
        };
        let mut chars = body.trim_start().chars().peekable();
        if chars.next() != Some('{') {
            bail!("unexpected list-sa line: {line}");
        }
        for (name, node) in parse_section(&mut chars)? {
            if let Node::Section(items) = node {
                sas.push(ike_sa(name, items));
            }
        }
    }
    Ok(sas)
}

fn ike_sa(name: String, items: Vec<(String, Node)>) -> IkeSa {
    let mut sa = IkeSa {
        name,
        ..IkeSa::default()
    };
    for (key, node) in items {
        match node {
            Node::Value(v) => {
                sa.fields.insert(key, v);
            }
            Node::Section(children) if key == "child-sas" => {
                for (_, child) in children {
                    if let Node::Section(c) = child {
                        sa.children.push(child_sa(c));
                    }
                }
            }
            Node::Section(_) | Node::List(_) => {}
        }
    }
    let get = |k: &str| sa.fields.get(k).cloned().unwrap_or_default();
    sa.state = get("state");
    sa.initiator = get("initiator") == "yes";
    sa.initiator_spi = get("initiator-spi");
    sa.responder_spi = get("responder-spi");
    sa.encr_alg = get("encr-alg");
    sa.dh_group = get("dh-group");
    sa
}

fn child_sa(items: Vec<(String, Node)>) -> ChildSa {
    let mut c = ChildSa::default();
    for (key, node) in items {
        match node {
            Node::Value(v) => {
                c.fields.insert(key, v);
            }
            Node::List(l) if key == "local-ts" => c.local_ts = l,
            Node::List(l) if key == "remote-ts" => c.remote_ts = l,
            Node::List(_) | Node::Section(_) => {}
        }
    }
    let get = |k: &str| c.fields.get(k).cloned().unwrap_or_default();
    c.name = get("name");
    c.state = get("state");
    c.mode = get("mode");
    c.encap = get("encap") == "yes";
    c.spi_in = get("spi-in");
    c.spi_out = get("spi-out");
    c.encr_alg = get("encr-alg");
    c.esn = get("esn") == "1";
    c
}

/// Parses section items up to and including the closing `}`.
fn parse_section(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Vec<(String, Node)>> {
    let mut items = Vec::new();
    loop {
        skip_ws(chars);
        match chars.peek() {
            None => bail!("unterminated section"),
            Some('}') => {
                chars.next();
                return Ok(items);
            }
            Some(_) => {}
        }
        let key = take_while(chars, |c| !c.is_whitespace() && !"={}[]".contains(c));
        skip_ws(chars);
        match chars.next() {
            Some('{') => items.push((key, Node::Section(parse_section(chars)?))),
            Some('=') => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    let list = take_while(chars, |c| c != ']');
                    chars.next();
                    let values = list.split_whitespace().map(str::to_owned).collect();
                    items.push((key, Node::List(values)));
                } else {
                    let v = take_while(chars, |c| !c.is_whitespace() && c != '}');
                    items.push((key, Node::Value(v)));
                }
            }
            other => bail!("unexpected {other:?} after key {key:?}"),
        }
    }
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

fn take_while(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    keep: impl Fn(char) -> bool,
) -> String {
    let mut s = String::new();
    while let Some(&c) = chars.peek() {
        if !keep(c) {
            break;
        }
        s.push(c);
        chars.next();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of strongSwan 5.9.8 (initiator side).
    const LIST_SAS: &str = "list-sa event {oe {uniqueid=1 version=2 state=ESTABLISHED local-host=192.0.2.1 local-port=4500 local-id=a@oemesh.test remote-host=192.0.2.2 remote-port=4500 remote-id=b@oemesh.test initiator=yes initiator-spi=430acc4309c4c06e responder-spi=1337161ae66a30e8 nat-remote=yes nat-any=yes encr-alg=AES_GCM_16 encr-keysize=256 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=0 rekey-time=13415 child-sas {oe-1 {name=oe uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=5c667c68 spi-out=f47e9c25 encr-alg=AES_GCM_16 encr-keysize=256 bytes-in=0 packets-in=0 bytes-out=0 packets-out=3 rekey-time=3286 life-time=3960 install-time=0 local-ts=[10.1.0.1/32] remote-ts=[10.2.0.1/32]}}}}\nlist-sas reply {}\n";

    #[test]
    fn parses_list_sas() {
        let sas = parse_list_sas(LIST_SAS).expect("parses");
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(sa.name, "oe");
        assert_eq!(sa.state, "ESTABLISHED");
        assert!(sa.initiator);
        assert_eq!(sa.initiator_spi, "430acc4309c4c06e");
        assert_eq!(sa.encr_alg, "AES_GCM_16");
        assert_eq!(sa.dh_group, "CURVE_25519");
        assert_eq!(sa.fields["remote-id"], "b@oemesh.test");
        let c = &sa.children[0];
        assert_eq!((c.name.as_str(), c.state.as_str()), ("oe", "INSTALLED"));
        assert!(c.encap && !c.esn);
        assert_eq!(c.spi_out, "f47e9c25");
        assert_eq!(c.counter("packets-out"), 3);
        assert_eq!(c.local_ts, ["10.1.0.1/32"]);
        assert_eq!(c.remote_ts, ["10.2.0.1/32"]);
    }

    #[test]
    fn reads_secrets_from_the_log() {
        let log = "20:39:55 15[IKE] <oe|1> SKEYSEED => 32 bytes @ 0x7f391c022140
20:39:55 15[IKE] <oe|1>    0: E9 18 06 52 FD BA 3A F8 34 F6 E4 EA B1 DA 13 E9  ...R..:.4.......
20:39:55 15[IKE] <oe|1>   16: F3 17 7E 21 D5 32 72 47 9C CA 62 73 C1 04 F7 DB  ..~!.2rG..bs....
20:39:55 15[IKE] <oe|1> Sk_ei secret => 36 bytes @ 0x7f391c0220b0
20:39:55 15[IKE] <oe|1>    0: C3 3C 7A A3 70 C5 8D 55 84 EA 8A E8 EF C0 92 B2  .<z.p..U........
20:39:55 15[IKE] <oe|1>   16: 48 E9 CA CD 4B DB F4 CF 20 7F 12 81 93 AF B8 CC  H...K... .......
20:39:55 15[IKE] <oe|1>   32: 1D 3D C1 FD                                      .=..
";
        let seed = log_secret(log, "SKEYSEED").expect("found");
        assert_eq!(seed.len(), 32);
        assert_eq!((seed[0], seed[31]), (0xe9, 0xdb));
        let ei = log_secret(log, "Sk_ei secret").expect("found");
        assert_eq!(ei.len(), 36);
        assert_eq!(&ei[32..], &[0x1d, 0x3d, 0xc1, 0xfd]);
        assert_eq!(log_secret(log, "Sk_er secret"), None);
    }

    #[test]
    fn empty_list() {
        assert!(
            parse_list_sas("list-sas reply {}\n")
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn spki_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pub");
        write_ed25519_public_pem(&[7; 32], &path).expect("writes");
        let pem = std::fs::read_to_string(&path).expect("reads");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
    }
}

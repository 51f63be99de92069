//! charon's configuration as files: `strongswan.conf` (plugins, logging,
//! userspace ESP), `swanctl.conf` (the connection, its proposals and
//! selectors) and the Ed25519 keys `pki` writes.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;

use super::{CHARON_PLUGINS, SWANCTL_TIMEOUT};
use crate::process;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4); the 32-byte
/// key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

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

/// The IPSECKEY RDATA (presentation form, `10 0 4 . BASE64`, RFC 4025 with
/// the Ed25519 algorithm number oemesh publishes) for `key`, to publish a
/// charon's key at its reverse name so that an oemesh agent finds it.
pub fn ipseckey_rdata(key: &Ed25519Key) -> String {
    format!(
        "10 0 4 . {}",
        base64::engine::general_purpose::STANDARD.encode(key.public_raw)
    )
}

/// `addr/32` or `addr/128`.
fn host_prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
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
    /// `vips`: virtual IPs to request in a configuration payload (RFC 7296
    /// §3.15), e.g. `0.0.0.0` for any IPv4 address: a road warrior. Empty:
    /// none requested.
    pub vips: Vec<String>,
    /// Address pools to answer configuration requests from, as
    /// (name, `addrs`) pairs, e.g. `("nat", "10.99.0.0/24")`: each becomes
    /// a section of swanctl.conf's `pools` and the connection's `pools`
    /// lists them all. Empty: no pools.
    pub pools: Vec<(String, String)>,
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
    /// `charon.install_routes` (default true). With kernel-libipsec a CHILD
    /// SA whose local selector holds no address of charon's gets no source
    /// route and fails even with this false (docs/interop.md, "Gateways").
    pub install_routes: bool,
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
            vips: Vec::new(),
            pools: Vec::new(),
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
            install_routes: true,
        }
    }

    /// A road warrior (RFC 7296 §2.19): requests any IPv4 address
    /// (`vips = 0.0.0.0`) from `server` and authenticates the server by its
    /// Ed25519 public key (`server_pub`, an SPKI PEM) under ID_IPV4_ADDR;
    /// tunnel mode, ESP in UDP, the assigned address as TSi and `server/32`
    /// as TSr. What a stock strongSwan client behind a NAT sends to an oemesh
    /// responder.
    ///
    /// Set [`CharonConfig::local_key`] and [`CharonConfig::local_id`]: the
    /// installed strongSwan (5.9.8) refuses `auth = null` in swanctl.conf, so
    /// it cannot be an anonymous (RFC 7619) initiator.
    pub fn road_warrior(local_addrs: &str, server: IpAddr, server_pub: PathBuf) -> CharonConfig {
        let mut c = CharonConfig::new(local_addrs, &server.to_string());
        c.vips = vec!["0.0.0.0".into()];
        c.remote_pubkey = Some(server_pub);
        c.remote_id = Some(server.to_string());
        c.remote_ts = vec![host_prefix(server)];
        c
    }

    /// A responder at `local` that authenticates with `key` (ID_IPV4_ADDR
    /// `local`, as an oemesh initiator expects of a published key), takes
    /// initiators from anywhere and answers their configuration requests
    /// from pool `nat` (`pool`, e.g. `10.99.0.0/24`); TSr `local/32`, TSi the
    /// address it assigned.
    ///
    /// Set [`CharonConfig::remote_pubkey`] and [`CharonConfig::remote_id`]
    /// to the initiator's: the installed strongSwan (5.9.8) refuses
    /// `auth = null`, so it cannot take anonymous initiators.
    pub fn pool_responder(local: IpAddr, key: Ed25519Key, pool: &str) -> CharonConfig {
        let mut c = CharonConfig::new(&local.to_string(), "%any");
        c.local_key = Some(key);
        c.local_id = Some(local.to_string());
        c.pools = vec![("nat".into(), pool.into())];
        c.local_ts = vec![host_prefix(local)];
        c
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
  install_routes = {install_routes}
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
            install_routes = if self.install_routes { "yes" } else { "no" },
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
        if !self.vips.is_empty() {
            let _ = writeln!(ike_opts, "    vips = {}", self.vips.join(", "));
        }
        let mut pools = String::new();
        if !self.pools.is_empty() {
            let names: Vec<&str> = self.pools.iter().map(|(n, _)| n.as_str()).collect();
            let _ = writeln!(ike_opts, "    pools = {}", names.join(", "));
            pools.push_str("pools {\n");
            for (name, addrs) in &self.pools {
                let _ = writeln!(pools, "  {name} {{\n    addrs = {addrs}\n  }}");
            }
            pools.push_str("}\n");
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
{pools}{secrets}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_and_pools_render() {
        let mut c = CharonConfig::new("%any", "%any");
        assert!(!c.swanctl_conf().contains("vips"));
        assert!(!c.swanctl_conf().contains("pools"));
        c.vips = vec!["0.0.0.0".into()];
        c.pools = vec![("nat".into(), "10.99.0.0/24".into())];
        let conf = c.swanctl_conf();
        assert!(conf.contains("    vips = 0.0.0.0\n"), "{conf}");
        assert!(conf.contains("    pools = nat\n"), "{conf}");
        assert!(
            conf.contains("pools {\n  nat {\n    addrs = 10.99.0.0/24\n  }\n}\n"),
            "{conf}"
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

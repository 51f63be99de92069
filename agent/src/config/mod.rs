//! The agent's configuration: `oemesh.toml`, parsed with unknown keys rejected,
//! then validated into [`Config`] with every problem reported as
//! `key: what is wrong: what to do`.
//!
//! Every default lives in [`defaults`]; `docs/oemesh.example.toml` documents each
//! key and a test parses it.

mod address;
mod gateway;
mod policy;
mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use gateway::{GatewayConfig, policy_conflicts};
pub use oemesh_core::oe::{Addresses, Cidr, Group};
pub use policy::{Policy, routed_to_tun};
use raw::RawConfig;
use validate::validate;

/// Every default value, in one place.
pub mod defaults {
    use std::time::Duration;

    /// `control_socket`.
    pub const CONTROL_SOCKET: &str = "/run/oemesh/oemesh.sock";
    /// `dns.lookups_per_second`: new IPSECKEY lookups per second, sustained
    /// (every new peer, initiator or responder side, costs one).
    pub const LOOKUPS_PER_SECOND: u32 = 50;
    /// `dns.lookup_burst`: new IPSECKEY lookups in a burst.
    pub const LOOKUP_BURST: u32 = 100;
    /// `dns.inbound_lookups_per_second`: lookups per second for peers that
    /// start IKE with this host (a budget apart from this host's own flows).
    pub const INBOUND_LOOKUPS_PER_SECOND: u32 = 50;
    /// `dns.inbound_lookup_burst`.
    pub const INBOUND_LOOKUP_BURST: u32 = 100;
    /// `ike.half_open_per_source`: half-open IKE SAs from one address (IPv6: /64).
    pub const HALF_OPEN_PER_SOURCE: usize = 32;
    /// `ike.cookie_rate`: cookie replies per second to one source address
    /// (IPv6: /64), after a burst of as many (reflection bound).
    pub const COOKIE_RATE: u32 = 1000;
    /// `ike.udp_workers` by default at most (one per CPU, up to this): each
    /// worker's socket may hold 8 MiB of buffers, charged to the unit's
    /// `MemoryMax` (docs/operations.md).
    pub const MAX_UDP_WORKERS: usize = 4;
    /// `ike.anonymous_limit`: anonymous (AUTH NULL) IKE SAs at most.
    pub const ANONYMOUS_LIMIT: usize = 8192;
    /// `ike.anonymous_per_source`: anonymous IKE SAs from one address (IPv6: /64).
    pub const ANONYMOUS_PER_SOURCE: usize = 64;
    /// `dns.timeout`: how long one IPSECKEY lookup may take.
    pub const DNS_TIMEOUT: Duration = Duration::from_secs(1);
    /// `ike.timeout`: how long IKE_SA_INIT + IKE_AUTH may take before going clear.
    pub const IKE_TIMEOUT: Duration = Duration::from_secs(2);
    /// `ike.anonymous_timeout`: how long a destination without a key may take
    /// to answer IKE_SA_INIT (most hosts run no OE and never will).
    pub const ANONYMOUS_TIMEOUT: Duration = Duration::from_millis(250);
    /// `ike.icmp_grace`: how long an attempt with a keyed peer still waits
    /// after an ICMP error for its IKE_SA_INIT (errors can be forged).
    pub const ICMP_GRACE: Duration = Duration::from_millis(200);
    /// `ike.port` (RFC 7296 §2).
    pub const IKE_PORT: u16 = 500;
    /// `ike.natt_port` (RFC 3948): ESP in UDP and IKE behind the non-ESP marker.
    pub const NATT_PORT: u16 = 4500;
    /// `ike.ike_lifetime`: IKE SA lifetime (rekeyed before, while in use).
    pub const IKE_LIFETIME: Duration = Duration::from_secs(4 * 3600);
    /// `ike.child_lifetime`: CHILD SA (ESP) lifetime.
    pub const CHILD_LIFETIME: Duration = Duration::from_secs(3600);
    /// `ike.rekey_margin`: rekey this long before a lifetime ends.
    pub const REKEY_MARGIN: Duration = Duration::from_secs(5 * 60);
    /// `ike.idle_timeout`: an SA pair that carried nothing this long is deleted.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// `ike.dpd_interval`: a liveness check after this long without hearing from a peer.
    pub const DPD_INTERVAL: Duration = Duration::from_secs(30);
    /// `ike.nat_keepalive`: below the 30 s that many NATs keep a UDP mapping.
    pub const NAT_KEEPALIVE: Duration = Duration::from_secs(20);
    /// `ike.exchange_timeout`: an exchange unanswered this long means the peer is gone.
    pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
    /// `ike.esp_aead`: the ESP AEAD offered first (`testnet/bench`: ~5 GB/s
    /// per core for AES-256-GCM with AES-NI against ~2 for ChaCha20-Poly1305).
    pub const ESP_AEAD: super::EspAead = super::EspAead::Aes256Gcm;
    /// `hold.packets`: packets held per pending destination.
    pub const HOLD_PACKETS: usize = 64;
    /// `hold.bytes`: bytes held per pending destination.
    pub const HOLD_BYTES: usize = 256 * 1024;
    /// `hold.total_bytes`: bytes held over all pending destinations.
    pub const HOLD_TOTAL_BYTES: usize = 16 * 1024 * 1024;
    /// `outcome.clear_lifetime`: how long a clear outcome is remembered
    /// (Libreswan's shunt lifetime).
    pub const CLEAR_LIFETIME: Duration = Duration::from_secs(15 * 60);
    /// `outcome.downgrade_guard`: a peer that was private is not let go clear
    /// silently for this long while its key is still published.
    pub const DOWNGRADE_GUARD: Duration = Duration::from_secs(3600);
    /// `outcome.retry_lifetime`: how long an outcome decided by a transient
    /// failure (DNS down, `private` failing closed) lasts before a retry.
    pub const RETRY_LIFETIME: Duration = Duration::from_secs(30);
    /// `nat.pool`: shared address space (RFC 6598) and a unique local /112
    /// (RFC 4193, the global ID 00:6f65:00 - "oe").
    pub const NAT_POOL: [&str; 2] = ["100.64.0.0/16", "fd00:6f65::/112"];
    /// `nat.max_addresses`: as many as anonymous IKE SAs (`ike.anonymous_limit`).
    pub const NAT_MAX_ADDRESSES: usize = 8192;
    /// `tun.name`.
    pub const TUN_NAME: &str = "oemesh0";
    /// `tun.mtu`: 1500 minus the worst-case ESP-in-UDP-over-IPv6 overhead
    /// (40 IPv6 + 8 UDP + 8 ESP + 8 IV + 2..17 trailer + 16 ICV), rounded down.
    pub const TUN_MTU: u16 = 1400;
    /// `routing.table` and `routing.fwmark`: 0x6f65 ("oe").
    pub const TABLE: u32 = 0x6f65;
    /// `routing.fwmark`.
    pub const FWMARK: u32 = 0x6f65;
    /// `routing.rule_priority`: our `not fwmark` rule; the optional main-table
    /// rule takes the one before it. Before `main` (32766).
    pub const RULE_PRIORITY: u32 = 28517;
    /// Where `oemesh metrics` would listen when `metrics.listen = "default"`.
    pub const METRICS_LISTEN: &str = "127.0.0.1:9618";
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The host key (Ed25519, PKCS#8 PEM); `None`: anonymous (AUTH NULL) only.
    pub key: Option<PathBuf>,
    /// This host's identity, at most one address per family; `None`: the
    /// preferred source address of each family's default route.
    pub address: Option<Addresses>,
    /// The control socket's path.
    pub control_socket: PathBuf,
    /// The group (name or number) that may use the control socket.
    pub control_group: Option<String>,
    /// `[dns]`.
    pub dns: DnsConfig,
    /// `[ike]`.
    pub ike: IkeConfig,
    /// `[hold]`.
    pub hold: HoldConfig,
    /// `[outcome]`.
    pub outcome: OutcomeConfig,
    /// `[policy]`.
    pub policy: Policy,
    /// `[metrics] listen`; `None`: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// `[tun]`.
    pub tun: TunConfig,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// `[nat]`.
    pub nat: NatConfig,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
}

/// `[nat]`: client address translation (RFC 7296 §3.15,
/// `docs/architecture.md` "Behind a NAT").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// `nat.pool`: the addresses this host gives initiators behind a NAT, at
    /// most one prefix per family, routed into the TUN; empty: none given
    /// (such initiators get no SA).
    pub pool: Vec<oemesh_core::oe::Cidr>,
    /// `nat.max_addresses`: at most this many given out at once.
    pub max_addresses: usize,
    /// `nat.request_address`: behind a NAT, ask the responder for an address.
    pub request_address: bool,
    /// `nat.anonymous`: behind a NAT, authenticate with AUTH NULL even with a
    /// key (an address identity cannot bind there).
    pub anonymous: bool,
}

/// `[dns]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Servers to ask; empty: those in /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Bound on one lookup.
    pub timeout: Duration,
    /// New lookups per second, sustained (a token bucket).
    pub lookups_per_second: u32,
    /// New lookups in a burst.
    pub lookup_burst: u32,
    /// New lookups per second for peers that start IKE with this host.
    pub inbound_lookups_per_second: u32,
    /// Their burst.
    pub inbound_lookup_burst: u32,
    /// `dns.dnssec`: who validates DNSSEC.
    pub dnssec: DnssecMode,
    /// `dns.trust_anchors`: files of DNSKEY or DS records added to the root KSKs.
    pub trust_anchors: Vec<PathBuf>,
}

/// `dns.dnssec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DnssecMode {
    /// The agent validates the chain from its trust anchors (the default).
    #[default]
    Validate,
    /// The resolver's AD bit is trusted.
    Resolver,
    /// No DNSSEC: every key is unvalidated.
    Off,
}

impl DnssecMode {
    /// The name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            DnssecMode::Validate => "validate",
            DnssecMode::Resolver => "resolver",
            DnssecMode::Off => "off",
        }
    }
}

/// `[ike]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeConfig {
    /// Bound on IKE_SA_INIT + IKE_AUTH.
    pub timeout: Duration,
    /// Bound on the wait for a keyless destination's first IKE answer.
    pub anonymous_timeout: Duration,
    /// The wait left to a keyed peer's attempt after an ICMP error.
    pub icmp_grace: Duration,
    /// UDP port for IKE (500).
    pub port: u16,
    /// UDP port for NAT traversal and ESP in UDP (4500).
    pub natt_port: u16,
    /// IKE SA lifetime.
    pub ike_lifetime: Duration,
    /// CHILD SA lifetime.
    pub child_lifetime: Duration,
    /// Rekey this long before a lifetime ends.
    pub rekey_margin: Duration,
    /// SAs idle this long are deleted.
    pub idle_timeout: Duration,
    /// Liveness check after this long without hearing from the peer (dead
    /// peer detection, RFC 7296 §2.4).
    pub dpd_interval: Duration,
    /// An exchange unanswered this long: the peer is taken for dead.
    pub exchange_timeout: Duration,
    /// Behind a NAT, a NAT-keepalive after this long without sending to a
    /// peer (RFC 3948 §2.3).
    pub nat_keepalive: Duration,
    /// The ESP AEAD this host offers first (the other is offered second).
    pub esp_aead: EspAead,
    /// Half-open IKE SAs from one source at most.
    pub half_open_per_source: usize,
    /// Anonymous IKE SAs at most (the idlest is evicted for a new one).
    pub anonymous_limit: usize,
    /// Cookie replies per second to one source (IPv6: /64).
    pub cookie_rate: u32,
    /// Receive workers (sockets with `SO_REUSEPORT`) per UDP port.
    pub udp_workers: usize,
    /// Anonymous IKE SAs from one source at most.
    pub anonymous_per_source: usize,
}

/// `ike.esp_aead`: which AEAD the agent prefers for ESP. Both stay offered
/// and accepted (an OE peer may support only one); as initiator this one is
/// proposed first, and a responder takes the initiator's first choice it
/// supports (RFC 7296 §2.7), so the initiator's preference decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EspAead {
    /// `"aes-256-gcm"`: AES-GCM with a 16-byte ICV (RFC 4106); fastest with AES-NI.
    Aes256Gcm,
    /// `"chacha20-poly1305"` (RFC 7634); faster on CPUs without AES instructions.
    ChaCha20Poly1305,
}

impl EspAead {
    /// The names `ike.esp_aead` accepts.
    pub const NAMES: [&str; 2] = ["aes-256-gcm", "chacha20-poly1305"];

    /// Parses a config name.
    pub fn from_name(name: &str) -> Option<EspAead> {
        match name {
            "aes-256-gcm" => Some(EspAead::Aes256Gcm),
            "chacha20-poly1305" => Some(EspAead::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            EspAead::Aes256Gcm => "aes-256-gcm",
            EspAead::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// The IKE engine's ESP proposal order: this one first, the other second.
    pub fn proposal_order(self) -> Vec<oemesh_core::crypto::AeadAlg> {
        use oemesh_core::crypto::AeadAlg::{Aes256Gcm, ChaCha20Poly1305};
        match self {
            EspAead::Aes256Gcm => vec![Aes256Gcm, ChaCha20Poly1305],
            EspAead::ChaCha20Poly1305 => vec![ChaCha20Poly1305, Aes256Gcm],
        }
    }
}

/// `[hold]`: the bounded queue of first packets while a decision is pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldConfig {
    /// Packets per destination.
    pub packets: usize,
    /// Bytes per destination.
    pub bytes: usize,
    /// Bytes over all destinations.
    pub total_bytes: usize,
}

/// `[outcome]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeConfig {
    /// How long a clear outcome is remembered.
    pub clear_lifetime: Duration,
    /// How long a formerly private peer is kept from going clear silently.
    pub downgrade_guard: Duration,
    /// How long an outcome decided by a transient failure lasts.
    pub retry_lifetime: Duration,
    /// A downgrade blocks for `retry_lifetime` instead of going clear.
    pub refuse_downgrade: bool,
}

/// `[tun]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u16,
    /// Ask for IFF_VNET_HDR and TSO/USO (falls back when refused).
    pub offload: bool,
    /// Ask for IFF_MULTI_QUEUE (falls back when refused).
    pub multi_queue: bool,
}

/// `[routing]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Our routing table's number.
    pub table: u32,
    /// The mark the agent's own sockets carry (SO_MARK).
    pub fwmark: u32,
    /// Priority of the `not fwmark` rule (the main-table rule uses one less).
    pub rule_priority: u32,
    /// Also add `lookup main suppress_prefixlength 0` before our rule.
    pub suppress_main: bool,
}

/// One problem with one key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct KeyError {
    /// The key, dotted (`policy.private[2]`).
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Why a config file could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// the file
        path: PathBuf,
        /// why
        error: std::io::Error,
    },
    /// Not TOML, a value of the wrong type, or an unknown key.
    #[error("{path}: {message}")]
    Syntax {
        /// the file
        path: PathBuf,
        /// the TOML parser's message (it quotes the line)
        message: String,
    },
    /// Parsed, but values are invalid; all problems are listed.
    #[error("{path}: {}", Invalid(.errors))]
    Invalid {
        /// the file
        path: PathBuf,
        /// one per key
        errors: Vec<KeyError>,
    },
}

struct Invalid<'a>(&'a [KeyError]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} invalid values:", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ParseError::Syntax(message) => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            ParseError::Invalid(errors) => ConfigError::Invalid {
                path: path.to_owned(),
                errors,
            },
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ParseError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ParseError::Syntax(e.to_string().trim().to_owned()))?;
        validate(raw).map_err(ParseError::Invalid)
    }
}

impl Config {
    /// The prefixes routed into the TUN and how each fails: the policy's,
    /// then each `nat.pool` prefix as `private` (only an SA carries packets
    /// to a given address, and they never leave in clear), then each
    /// `gateway.protects` prefix as `clear` (a `throw`: traffic to the LAN
    /// behind a gateway takes the main table), unless the policy names that
    /// prefix itself (validation allows only `clear` or `clear-or-private`).
    pub fn routed_entries(&self) -> Vec<(Cidr, Group)> {
        let mut entries = self.policy.entries().to_vec();
        let added = (self.nat.pool.iter().map(|p| (*p, Group::Private)))
            .chain(self.gateway.protects.iter().map(|p| (*p, Group::Clear)));
        for (p, group) in added {
            if !entries.iter().any(|(c, _)| *c == p) {
                entries.push((p, group));
            }
        }
        entries
    }
}

impl Default for Config {
    /// The configuration of an empty file: every value from [`defaults`].
    fn default() -> Config {
        Config {
            key: None,
            address: None,
            control_socket: defaults::CONTROL_SOCKET.into(),
            control_group: None,
            dns: DnsConfig {
                servers: Vec::new(),
                timeout: defaults::DNS_TIMEOUT,
                lookups_per_second: defaults::LOOKUPS_PER_SECOND,
                lookup_burst: defaults::LOOKUP_BURST,
                inbound_lookups_per_second: defaults::INBOUND_LOOKUPS_PER_SECOND,
                inbound_lookup_burst: defaults::INBOUND_LOOKUP_BURST,
                dnssec: DnssecMode::Validate,
                trust_anchors: Vec::new(),
            },
            ike: IkeConfig {
                timeout: defaults::IKE_TIMEOUT,
                anonymous_timeout: defaults::ANONYMOUS_TIMEOUT,
                icmp_grace: defaults::ICMP_GRACE,
                port: defaults::IKE_PORT,
                natt_port: defaults::NATT_PORT,
                ike_lifetime: defaults::IKE_LIFETIME,
                child_lifetime: defaults::CHILD_LIFETIME,
                rekey_margin: defaults::REKEY_MARGIN,
                idle_timeout: defaults::IDLE_TIMEOUT,
                dpd_interval: defaults::DPD_INTERVAL,
                nat_keepalive: defaults::NAT_KEEPALIVE,
                exchange_timeout: defaults::EXCHANGE_TIMEOUT,
                esp_aead: defaults::ESP_AEAD,
                half_open_per_source: defaults::HALF_OPEN_PER_SOURCE,
                anonymous_limit: defaults::ANONYMOUS_LIMIT,
                cookie_rate: defaults::COOKIE_RATE,
                udp_workers: default_udp_workers(),
                anonymous_per_source: defaults::ANONYMOUS_PER_SOURCE,
            },
            hold: HoldConfig {
                packets: defaults::HOLD_PACKETS,
                bytes: defaults::HOLD_BYTES,
                total_bytes: defaults::HOLD_TOTAL_BYTES,
            },
            outcome: OutcomeConfig {
                clear_lifetime: defaults::CLEAR_LIFETIME,
                downgrade_guard: defaults::DOWNGRADE_GUARD,
                retry_lifetime: defaults::RETRY_LIFETIME,
                refuse_downgrade: false,
            },
            policy: Policy::default(),
            metrics_listen: None,
            tun: TunConfig {
                name: defaults::TUN_NAME.into(),
                mtu: defaults::TUN_MTU,
                offload: true,
                multi_queue: true,
            },
            routing: RoutingConfig {
                table: defaults::TABLE,
                fwmark: defaults::FWMARK,
                rule_priority: defaults::RULE_PRIORITY,
                suppress_main: false,
            },
            nat: NatConfig {
                pool: defaults::NAT_POOL
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect(),
                max_addresses: defaults::NAT_MAX_ADDRESSES,
                request_address: true,
                anonymous: true,
            },
            gateway: GatewayConfig::default(),
        }
    }
}

/// Why config text was refused (without a file name; see [`ConfigError`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// TOML syntax, a wrong type or an unknown key.
    #[error("{0}")]
    Syntax(String),
    /// Values that are out of range or malformed.
    #[error("{}", Invalid(.0))]
    Invalid(Vec<KeyError>),
}

#[cfg(test)]
mod tests;

/// `ike.udp_workers` by default: one per CPU this process may run on, at
/// most [`defaults::MAX_UDP_WORKERS`].
pub fn default_udp_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(defaults::MAX_UDP_WORKERS)
}

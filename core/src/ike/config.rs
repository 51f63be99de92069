//! How an [`super::endpoint::Endpoint`] is set up: this host's credential and
//! identity, the algorithms it offers, its limits and lifetimes ([`Config`]),
//! and how the caller says to authenticate a peer ([`PeerAuth`]).

use std::time::Duration;

use crate::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use crate::crypto::{AeadAlg, Provider};
use crate::esp::{LifetimeLimits, Limits};
use crate::ike::child_sa::percent;
use crate::ike::message::{AddrSelector, Identity};
use crate::ike::pool::PoolPrefix;
use crate::ike::retransmit::RetransmitConfig;
use crate::ike::ts::TsPolicy;

/// How this host proves who it is.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per endpoint, never moved on a hot path"
)]
#[non_exhaustive]
pub enum LocalAuth {
    /// RFC 7427 digital signature with Ed25519 (RFC 8420), ID = `Config::local_id`.
    Ed25519(Ed25519SigningKey),
    /// AUTH NULL with ID_NULL (RFC 7619): anonymous.
    Null,
}

/// The most keys tried for one peer's AUTH (its usable IPSECKEYs, §2.15): a
/// rollover publishes two, and a bound keeps a peer with many records from
/// costing many signature checks per IKE_AUTH.
pub const MAX_PEER_KEYS: usize = 8;

/// The most TSi selectors an `AuthorizePeer` event carries (and the caller
/// may look up for vouching): a gateway proposes its host and a few subnets.
pub const MAX_VOUCHED: usize = 4;

/// How to authenticate the peer, as the caller decided (from DNS and policy).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAuth {
    /// The peer must sign with one of these Ed25519 keys (its IPSECKEYs, in the
    /// order to try them; only the first [`MAX_PEER_KEYS`] are tried), so that
    /// a peer that rolled over to its new key while its old one is still
    /// published authenticates with either.
    Ed25519(Vec<Ed25519PublicKey>),
    /// The peer may authenticate with AUTH NULL (anonymous). A signature that
    /// comes without a key to check it against is refused.
    Null,
}

/// A subnet (or host) that DNS vouches a peer may send from (issue 14): the
/// IPSECKEY at its reverse name (for a subnet, its wildcard) names the peer's
/// address as gateway, with these keys. The responder widens the peer's
/// traffic selector by it only when the peer signed with one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vouched {
    /// The addresses vouched for.
    pub selector: AddrSelector,
    /// The keys of the records that vouch.
    pub keys: Vec<Ed25519PublicKey>,
}

impl PeerAuth {
    /// The peer must sign with `key`, its one published key.
    pub fn ed25519(key: Ed25519PublicKey) -> Self {
        PeerAuth::Ed25519(vec![key])
    }
}

/// When an initiator asks for an address (see `Config::request_address`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestAddress {
    /// Never: TSi is this host's address.
    Never,
    /// When IKE_SA_INIT showed this host is behind a NAT.
    #[default]
    BehindNat,
    /// Always, like a VPN client (strongSwan's `vips = 0.0.0.0`): a responder
    /// of ours refuses it from a host that is not behind a NAT.
    Always,
}

/// Endpoint configuration.
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// This host's credential.
    pub local_auth: LocalAuth,
    /// This host's IKE identity (IDi/IDr): its address or FQDN; `Identity::Null` with `LocalAuth::Null`.
    pub local_id: Identity,
    /// IKE SA encryption, most preferred first (PRF is HMAC-SHA2-256, DH group 31).
    pub ike_algs: Vec<AeadAlg>,
    /// CHILD SA (ESP) encryption, most preferred first.
    pub esp_algs: Vec<AeadAlg>,
    /// Which AEAD implementation seals SK payloads.
    pub provider: Provider,
    /// UDP port for IKE_SA_INIT (500) and for everything after it (4500).
    pub ike_port: u16,
    /// See `ike_port`.
    pub natt_port: u16,
    /// Send NAT_DETECTION hashes that cannot match, so that the peer always
    /// encapsulates ESP in UDP (strongSwan's `encap = yes`); default true.
    pub force_udp_encap: bool,
    /// Request retransmission schedule.
    pub retransmit: RetransmitConfig,
    /// Half-open IKE SAs above which IKE_SA_INIT requests must carry a COOKIE (§2.6).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs at most; further requests are dropped and counted.
    pub half_open_limit: usize,
    /// Half-open IKE SAs at most from one source (an IPv4 address, an IPv6
    /// /64), so that one source cannot fill `half_open_limit`; default 32.
    pub half_open_per_source: usize,
    /// Established anonymous (AUTH NULL) IKE SAs this host answered, at most;
    /// a new one beyond evicts the idlest (default 8192).
    pub anonymous_limit: usize,
    /// The same, from one source (an IPv4 address, an IPv6 /64); a new one
    /// beyond evicts that source's idlest (default 64: hosts behind one NAT).
    pub anonymous_per_source: usize,
    /// How long a responder keeps a half-open IKE SA (and one awaiting `authorize`).
    pub half_open_timeout: Duration,
    /// Rekey the IKE SA after this long (hard limit: 1.1x).
    pub ike_lifetime: Duration,
    /// CHILD SA lifetimes; the soft limit triggers a rekey by whoever hits it.
    pub child_lifetime: LifetimeLimits,
    /// Send an empty INFORMATIONAL (liveness check) after this long without
    /// hearing from the peer; `None` disables.
    pub dpd_interval: Option<Duration>,
    /// Behind a NAT (§2.23), send a NAT-keepalive (RFC 3948 §2.3) after this
    /// long without sending the peer anything, so that the NAT keeps its
    /// mapping; default 20 s; `None` (or zero) disables.
    pub nat_keepalive: Option<Duration>,
    /// How long an exchange after IKE_AUTH may take before the peer is taken
    /// for dead and the IKE SA deleted (§2.4); default 30 s.
    pub exchange_timeout: Duration,
    /// Send a KE payload (PFS, §1.3.1) when rekeying a CHILD SA; default true,
    /// since a peer whose ESP proposals name a DH group (strongSwan with
    /// `esp_proposals = aes256gcm16-x25519`) refuses a rekey without one.
    /// Rekeys with and without KE are accepted either way.
    pub pfs: bool,
    /// How the responder narrows traffic selectors (§2.9); default host to host.
    pub responder_ts: TsPolicy,
    /// Send N(INITIAL_CONTACT) in IKE_AUTH (§2.4): this host has no other IKE
    /// SA with the peer, which may forget the ones it still has (default true;
    /// a responder honours it only from a peer that signed).
    pub initial_contact: bool,
    /// With an address identity (`local_id` an ID_IPV4_ADDR or ID_IPV6_ADDR),
    /// send the address the IKE SA is on instead, as peers bind the ID to the
    /// address IKE comes from ([`crate::trust`]): a dual-stack host answering
    /// on its other family speaks as that address (default true; false sends
    /// `local_id` as it is, even with AUTH NULL, which only a test of a lying
    /// peer wants).
    pub id_is_sa_address: bool,
    /// When to ask the responder for an address in IKE_AUTH (CP(CFG_REQUEST),
    /// §3.15.1) and translate this host's packets to it for that peer
    /// (default: behind a NAT, §2.23, so that several hosts behind one NAT
    /// address can each have an SA with one responder).
    pub request_address: RequestAddress,
    /// Behind a NAT, with an address identity: authenticate with AUTH NULL
    /// (ID_NULL) instead, since the address is not the one the responder
    /// sees and cannot bind ([`crate::trust`]); default true. False signs
    /// under the address anyway, for a responder configured with this host's
    /// key and address (a strongSwan road-warrior gateway, which has no AUTH NULL).
    pub anonymous_behind_nat: bool,
    /// The addresses this host, as responder, gives initiators behind a NAT
    /// that ask for one, at most one prefix per family; empty refuses every
    /// such request with INTERNAL_ADDRESS_FAILURE (default none here; the
    /// agent's `[nat] pool`).
    pub address_pool: Vec<PoolPrefix>,
    /// At most this many pool addresses out at once (default 8192, the
    /// `anonymous_limit`).
    pub address_pool_limit: usize,
    /// Gateway mode (issue 14): the subnets behind this host that it answers
    /// and encrypts for (`[gateway] protects`). As responder, TSr is narrowed
    /// to this host's address and these; as initiator, the node proposes them
    /// in TSi beside this host's address. Empty (the default): a host.
    pub protects: Vec<AddrSelector>,
}

impl Config {
    /// Defaults for the given credential and identity: both AEADs (AES-256-GCM
    /// first), ports 500/4500, forced UDP encapsulation, cookies above 64 half-open
    /// SAs, a limit of 4096 (32 per source), 8192 anonymous SAs (64 per source),
    /// 5 s half-open timeout, IKE SAs rekeyed every 4 h, NAT-keepalives every 20 s,
    /// CHILD SAs every hour or 2^30 bytes (soft 90 %).
    pub fn new(local_auth: LocalAuth, local_id: Identity) -> Self {
        let hour = Duration::from_secs(3600);
        let bytes = 1u64 << 30;
        Self {
            local_auth,
            local_id,
            ike_algs: vec![AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305],
            esp_algs: vec![AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305],
            provider: Provider::default(),
            ike_port: 500,
            natt_port: 4500,
            force_udp_encap: true,
            retransmit: RetransmitConfig::default(),
            cookie_threshold: 64,
            half_open_limit: 4096,
            half_open_per_source: 32,
            anonymous_limit: 8192,
            anonymous_per_source: 64,
            half_open_timeout: Duration::from_secs(5),
            ike_lifetime: 4 * hour,
            child_lifetime: LifetimeLimits {
                soft: Limits {
                    bytes: Some(bytes / 10 * 9),
                    packets: None,
                    time: Some(percent(hour, 90)),
                },
                hard: Limits {
                    bytes: Some(bytes),
                    packets: None,
                    time: Some(hour),
                },
            },
            dpd_interval: Some(Duration::from_secs(30)),
            nat_keepalive: Some(Duration::from_secs(20)),
            exchange_timeout: Duration::from_secs(30),
            pfs: true,
            responder_ts: TsPolicy::Hosts,
            initial_contact: true,
            id_is_sa_address: true,
            request_address: RequestAddress::BehindNat,
            anonymous_behind_nat: true,
            address_pool: Vec::new(),
            address_pool_limit: 8192,
            protects: Vec::new(),
        }
    }
}

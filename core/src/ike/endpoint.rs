//! The IKEv2 endpoint (RFC 7296): every IKE SA of this host, driven sans-IO.
//!
//! API CONTRACT (stub): the signatures below are what the agent and the interop
//! test build against. The engine work fills in the bodies and may add items;
//! it must not rename or remove these.
//!
//! How to drive it (quinn-proto's model):
//!
//! 1. Feed every received IKE message with [`Endpoint::handle`] (after
//!    [`super::udp_encap::classify`] took the non-ESP marker off on port 4500);
//!    ESP packets never come here.
//! 2. After any call, drain [`Endpoint::poll_transmit`] (send each datagram as
//!    is: the non-ESP marker is already in front where the port needs it) and
//!    [`Endpoint::poll_event`].
//! 3. Arm one timer for [`Endpoint::poll_timeout`]; when it fires call
//!    [`Endpoint::handle_timeout`].
//! 4. Start exchanges with [`Endpoint::connect`], [`Endpoint::rekey_child`],
//!    [`Endpoint::rekey_ike`], [`Endpoint::delete_child`], [`Endpoint::close`];
//!    answer [`Event::AuthorizePeer`] with [`Endpoint::authorize`].
//!
//! Inside, every IKE SA is an `IkeSa` (module `sa`) whose handshake state is an
//! enum of per-state structs (`sa_init`, `auth`); established SAs run
//! CREATE_CHILD_SA (`create_child_sa`) and INFORMATIONAL (`informational`)
//! exchanges with a window of one (RFC 7296 §2.3). Datagrams are routed by
//! this host's IKE SPI (§2.6); a rekeyed IKE SA keeps its [`SaHandle`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use crate::crypto::x25519::X25519Secret;
use crate::crypto::{AeadAlg, KeyAndSalt, Provider};
use crate::esp::{LifetimeLimits, Limits};
use crate::ike::child_sa::percent;
use crate::ike::cookie::CookieJar;
use crate::ike::message::{
    AddrSelector, Delete, ExchangeType, HeaderPacket, Identity, MAJOR_VERSION, Payload,
};
use crate::ike::retransmit::{Retransmit, RetransmitConfig};
use crate::ike::sa::{IkeSa, Queued, Request, State};
use crate::ike::sa_init::{InitSent, NONCE_LEN};
use crate::ike::timers::sa_timeout;
use crate::ike::ts::TsPolicy;
use crate::ipseckey::DomainName;
use crate::trust::IdentityRefused;

pub use crate::ike::failure::{AuthFailure, Exchange, Failure, ProtocolError, Refusal};
pub use crate::ike::stats::{DropReason, Stats};

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

impl PeerAuth {
    /// The peer must sign with `key`, its one published key.
    pub fn ed25519(key: Ed25519PublicKey) -> Self {
        PeerAuth::Ed25519(vec![key])
    }
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
}

impl Config {
    /// Defaults for the given credential and identity: both AEADs (AES-256-GCM
    /// first), ports 500/4500, forced UDP encapsulation, cookies above 64 half-open
    /// SAs, a limit of 4096 (32 per source), 8192 anonymous SAs (64 per source),
    /// 5 s half-open timeout, IKE SAs rekeyed every 4 h,
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
            exchange_timeout: Duration::from_secs(30),
            pfs: true,
            responder_ts: TsPolicy::Hosts,
            initial_contact: true,
            id_is_sa_address: true,
        }
    }
}

/// Names one IKE SA (a peer association) for its whole life, across IKE SA rekeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaHandle(pub u64);

/// The traffic selectors the initiator proposes (RFC 7296 §2.9), from its own view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficSelectors {
    /// TSi: this host's side.
    pub local: Vec<AddrSelector>,
    /// TSr: the peer's side.
    pub remote: Vec<AddrSelector>,
}

/// The two SPIs of a CHILD SA pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChildSpis {
    /// The SPI this host chose; the peer's ESP packets carry it.
    pub inbound: u32,
    /// The SPI the peer chose; this host's ESP packets carry it.
    pub outbound: u32,
}

/// Everything the data path needs to install one CHILD SA pair (RFC 7296 §2.17).
#[derive(Debug)]
#[non_exhaustive]
pub struct ChildSa {
    /// The SPIs.
    pub spis: ChildSpis,
    /// The negotiated AEAD.
    pub alg: AeadAlg,
    /// Whether 64-bit extended sequence numbers were negotiated.
    pub esn: bool,
    /// Key and salt for packets from the peer.
    pub inbound_key: KeyAndSalt,
    /// Key and salt for packets to the peer.
    pub outbound_key: KeyAndSalt,
    /// The narrowed selectors for this host's side.
    pub local_ts: Vec<AddrSelector>,
    /// The narrowed selectors for the peer's side.
    pub remote_ts: Vec<AddrSelector>,
    /// This host's UDP 4500 address for ESP.
    pub local: SocketAddr,
    /// The peer's UDP 4500 address for ESP.
    pub remote: SocketAddr,
    /// Lifetimes to apply to both ESP SAs.
    pub lifetime: LifetimeLimits,
}

/// How the peer authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAuthenticated {
    /// With a signature that verified against the key the caller gave.
    Ed25519,
    /// AUTH NULL: anonymous.
    Null,
}

/// Something the caller must know or act on.
#[derive(Debug)]
pub enum Event {
    /// This host, as responder, accepted a peer's IKE_SA_INIT and answered it
    /// (after any cookie round trip, so `remote` is not spoofed): its IKE_AUTH
    /// is due one round trip later. A hint, e.g. to start looking up the key
    /// that IKE_AUTH will need; nothing has to be done about it.
    IkeSaInitAccepted {
        /// The (half-open) IKE SA.
        sa: SaHandle,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// The peer's IKE_AUTH arrived with this identity; answer with
    /// [`Endpoint::authorize`] (within `half_open_timeout`). Raised for the
    /// responder always, and for the initiator when `connect` had no `PeerAuth`.
    /// `remote` is the address the peer's IKE_SA_INIT came from: every later
    /// message must come from it (only the port may change, behind a NAT), so
    /// it is the address the SA protects, and the one to bind `id` to
    /// ([`crate::trust::bind`]).
    AuthorizePeer {
        /// The IKE SA.
        sa: SaHandle,
        /// The peer's address.
        remote: SocketAddr,
        /// The peer's IDi/IDr.
        id: Identity,
        /// Whether the peer used AUTH NULL.
        null_auth: bool,
    },
    /// Initiator: the responder signed with the key given to `connect`, under
    /// an FQDN identity. Answer with [`Endpoint::confirm_identity`] once the
    /// name's A/AAAA records are known to include `remote` (the trust rule,
    /// [`crate::trust`]), before the attempt's deadline; nothing is installed
    /// until then.
    ConfirmIdentity {
        /// The IKE SA.
        sa: SaHandle,
        /// The responder's address.
        remote: SocketAddr,
        /// The name it claimed.
        name: DomainName,
    },
    /// The IKE SA is up (IKE_AUTH completed).
    IkeSaEstablished {
        /// The IKE SA.
        sa: SaHandle,
        /// The peer's address.
        remote: SocketAddr,
        /// The peer's identity.
        peer_id: Identity,
        /// How the peer authenticated.
        auth: PeerAuthenticated,
        /// Whether this host initiated it.
        initiator: bool,
    },
    /// A CHILD SA pair is ready to install.
    ChildSaEstablished {
        /// The IKE SA it belongs to.
        sa: SaHandle,
        /// What to install.
        child: ChildSa,
    },
    /// A CHILD SA was rekeyed: install `new`; keep `old` for inbound packets
    /// until [`Event::ChildSaDeleted`] for it, so no packet in flight is lost.
    ChildSaRekeyed {
        /// The IKE SA.
        sa: SaHandle,
        /// The SPIs being replaced.
        old: ChildSpis,
        /// The new pair.
        new: ChildSa,
    },
    /// A CHILD SA pair is gone: remove it.
    ChildSaDeleted {
        /// The IKE SA.
        sa: SaHandle,
        /// Its SPIs.
        spis: ChildSpis,
    },
    /// The IKE SA was rekeyed (its handle stays the same).
    IkeSaRekeyed {
        /// The IKE SA.
        sa: SaHandle,
    },
    /// The IKE SA and all its CHILD SAs are gone (ChildSaDeleted events precede this).
    IkeSaDeleted {
        /// The IKE SA.
        sa: SaHandle,
        /// Why.
        reason: Failure,
    },
    /// An exchange this host started did not complete; for `connect` this ends the SA.
    Failed {
        /// The IKE SA.
        sa: SaHandle,
        /// The peer's address.
        remote: SocketAddr,
        /// Why, for a person to read.
        reason: Failure,
    },
}

/// One datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Send from this address (the endpoint's `ike_port` or `natt_port`).
    pub local: SocketAddr,
    /// Send to this address.
    pub remote: SocketAddr,
    /// The UDP payload, with the non-ESP marker in front when the port is not `ike_port`.
    pub payload: Vec<u8>,
}

/// What the endpoint has for the caller.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

/// The source an address counts against in per-source limits: an IPv4
/// address itself, an IPv6 address's /64 (one host or LAN can have all of it).
pub(crate) fn source_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// What becomes of an IKE SA after a step.
#[derive(Debug)]
pub(crate) enum Fate {
    Keep,
    /// Forget it; with a reason, the caller is told it is gone (if it was up).
    Remove(Option<Failure>),
}

/// All IKE SAs of this host.
#[derive(Debug)]
pub struct Endpoint {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha20Rng,
    /// Boxed: an `IkeSa` is several hundred bytes, and a map of them inline
    /// would keep that much again in empty slots.
    pub(crate) sas: HashMap<u64, Box<IkeSa>>,
    /// This host's IKE SPI → SA.
    pub(crate) by_spi: HashMap<u64, u64>,
    /// Responder: (initiator's address, SPIi) → half-open SA, for retransmitted IKE_SA_INIT.
    pub(crate) init_index: HashMap<(SocketAddr, u64), u64>,
    /// Handle → the SA that currently carries it.
    pub(crate) handles: HashMap<SaHandle, u64>,
    /// Inbound ESP SPIs in use (they must be unique on this host).
    pub(crate) child_spis: HashSet<u32>,
    pub(crate) cookies: CookieJar,
    pub(crate) out: Output,
    /// Every SA in `sas` with something to do, by when: `(IkeSa::timer_at, id)`,
    /// kept in step by [`Self::put`] and [`Self::discard`], so that the next
    /// deadline is the first entry instead of a scan of every SA.
    pub(crate) timers: BTreeSet<(Instant, u64)>,
    /// Responder SAs in `sas` not yet authenticated (`IkeSa::counted_half_open`).
    half_open: usize,
    /// The same per source ([`source_of`]); sources with none are not kept.
    half_open_by_source: HashMap<IpAddr, usize>,
    /// Announced SAs of peers that signed, by (address, identity): what an
    /// INITIAL_CONTACT from that identity at that address replaces (§2.4).
    by_peer: HashMap<(IpAddr, Identity), Vec<u64>>,
    /// Established anonymous responder SAs by `(last_active, id)`: the idlest first.
    anonymous: BTreeSet<(Instant, u64)>,
    /// The same per source, unordered (at most `anonymous_per_source` each: a
    /// scan finds the idlest; a set per source would cost more memory than
    /// the SAs it indexes when most sources have one).
    anonymous_by_source: HashMap<IpAddr, Vec<(Instant, u64)>>,
    next_id: u64,
    next_handle: u64,
}

impl Endpoint {
    /// An endpoint with no SAs. `rng_seed` seeds the CSPRNG that draws SPIs,
    /// nonces, DH secrets and cookie secrets (the caller takes it from the OS).
    pub fn new(config: Config, rng_seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(rng_seed);
        let cookies = CookieJar::new(&mut rng);
        Self {
            config,
            rng,
            sas: HashMap::new(),
            by_spi: HashMap::new(),
            init_index: HashMap::new(),
            handles: HashMap::new(),
            child_spis: HashSet::new(),
            cookies,
            out: Output::default(),
            timers: BTreeSet::new(),
            half_open: 0,
            half_open_by_source: HashMap::new(),
            by_peer: HashMap::new(),
            anonymous: BTreeSet::new(),
            anonymous_by_source: HashMap::new(),
            next_id: 1,
            next_handle: 1,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts an IKE SA with a first CHILD SA toward `remote`, from `local`.
    /// `peer` is how to authenticate the responder; `None` means the caller does
    /// not know yet and will answer [`Event::AuthorizePeer`]. The whole
    /// IKE_SA_INIT + IKE_AUTH must finish by `deadline`, or [`Event::Failed`].
    pub fn connect(
        &mut self,
        now: Instant,
        local: IpAddr,
        remote: IpAddr,
        peer: Option<PeerAuth>,
        ts: TrafficSelectors,
        deadline: Instant,
    ) -> SaHandle {
        let handle = self.new_handle();
        let spi_i = self.new_ike_spi();
        let port = self.config.ike_port;
        let mut sa = self.new_sa(
            now,
            handle,
            true,
            spi_i,
            0,
            SocketAddr::new(local, port),
            SocketAddr::new(remote, port),
        );
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut ni);
        let mut init = InitSent {
            dh: X25519Secret::from_random(secret),
            group: crate::ike::proposal::GROUP,
            ni,
            cookie: None,
            request: Vec::new(),
            peer,
            ts,
            deadline,
            retries: 0,
        };
        self.send_init(now, &mut sa, &mut init);
        sa.state = State::InitSent(Box::new(init));
        self.insert_sa(sa);
        handle
    }

    /// Answers [`Event::AuthorizePeer`]: `Some` says how to check the peer's AUTH,
    /// `None` refuses it (AUTHENTICATION_FAILED to a responder's peer).
    pub fn authorize(&mut self, now: Instant, sa: SaHandle, peer: Option<PeerAuth>) {
        let Some(mut ike) = self.take(sa) else { return };
        let state = std::mem::replace(&mut ike.state, State::Established);
        let fate = match state {
            State::InitiatorAuthorize(held) => {
                let held = *held;
                let result = match peer {
                    Some(peer) => {
                        self.finish_initiator(now, &mut ike, held.sent, held.response, peer)
                    }
                    None => {
                        self.release_child_spi(held.sent.child_spi);
                        Err(Failure::NotAuthorized)
                    }
                };
                match result {
                    Ok(()) => Fate::Keep,
                    Err(reason) => self.fail(&ike, reason),
                }
            }
            State::ResponderAuthorize(held) => {
                if self.finish_responder(now, &mut ike, *held, peer) {
                    Fate::Keep
                } else {
                    Fate::Remove(None)
                }
            }
            other => {
                ike.state = other;
                Fate::Keep
            }
        };
        self.settle(ike, fate);
    }

    /// Answers [`Event::ConfirmIdentity`]: `Ok` when the responder's FQDN
    /// resolves to its address (the SA is then established and its CHILD SA
    /// installed), `Err` with why not (the SA is deleted and the attempt fails
    /// with [`Failure::IdentityRefused`]).
    pub fn confirm_identity(
        &mut self,
        now: Instant,
        sa: SaHandle,
        result: Result<(), IdentityRefused>,
    ) {
        let Some(mut ike) = self.take(sa) else { return };
        let state = std::mem::replace(&mut ike.state, State::Established);
        let fate = match state {
            State::InitiatorConfirm(held) => match self.confirmed(now, &mut ike, *held, result) {
                Ok(()) => Fate::Keep,
                Err(reason) => self.fail(&ike, reason),
            },
            other => {
                ike.state = other;
                Fate::Keep
            }
        };
        self.settle(ike, fate);
    }

    /// Tells the endpoint that the CHILD SAs of `sa` carried traffic lately
    /// (call it for SAs whose ESP counters moved, e.g. from an idle scan). The
    /// idlest anonymous SAs are the first evicted when their limits are reached.
    pub fn note_activity(&mut self, now: Instant, sa: SaHandle) {
        if let Some(mut ike) = self.take(sa) {
            ike.last_active = now;
            self.put(ike);
        }
    }

    /// Feeds one received IKE message (the UDP payload without the non-ESP marker)
    /// that arrived at `local` from `remote`. Malformed input is dropped and counted.
    ///
    /// A message of an existing IKE SA must come from the IP address of its
    /// IKE_SA_INIT (design.md, "An SA's address is fixed at IKE_SA_INIT"); its
    /// port may change only with the move to the NAT-T port after IKE_SA_INIT,
    /// or when the peer is behind a NAT (§2.23). Anything else is dropped and
    /// counted in [`Stats::wrong_address`], before any decryption.
    pub fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, message: &[u8]) {
        let Ok(packet) = HeaderPacket::new_checked(message) else {
            self.out.stats.count_drop(DropReason::MalformedHeader);
            return;
        };
        if packet.major_version() != MAJOR_VERSION {
            self.out.stats.count_drop(DropReason::MajorVersion);
            return;
        }
        let flags = packet.flags();
        let exchange = packet.exchange_type();
        if exchange == ExchangeType::IKE_SA_INIT && !flags.response() && packet.spi_r() == 0 {
            if flags.initiator() {
                self.on_init_request(now, local, remote, message, packet.spi_i());
            } else {
                self.out
                    .stats
                    .count_drop(DropReason::InitRequestNotInitiator);
            }
            return;
        }
        // §2.6: route by this host's SPI; the I flag says which one that is.
        let our_spi = if flags.initiator() {
            packet.spi_r()
        } else {
            packet.spi_i()
        };
        let Some(&id) = self.by_spi.get(&our_spi) else {
            self.out.stats.count_drop(DropReason::UnknownSpi);
            return;
        };
        let Some(mut sa) = self.sas.remove(&id) else {
            self.out.stats.count_drop(DropReason::StaleSpi);
            return;
        };
        let spis_match =
            sa.spi_i == packet.spi_i() && (sa.spi_r == 0 || sa.spi_r == packet.spi_r());
        if flags.initiator() == sa.initiator || !spis_match {
            self.out.stats.count_drop(DropReason::SpiMismatch);
            self.put(sa);
            return;
        }
        if !self.admits_source(&sa, local, remote) {
            self.out.stats.count_drop(DropReason::WrongAddress);
            self.out.stats.wrong_address += 1;
            self.put(sa);
            return;
        }
        let fate = self.on_message(
            now,
            &mut sa,
            local,
            remote,
            message,
            flags.response(),
            exchange,
        );
        self.settle(sa, fate);
    }

    /// Call when the clock reaches [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(sa) = self.sas.get_mut(&id) {
                sa.timer_at = None;
            }
            due.push(id);
        }
        for id in due {
            let Some(mut sa) = self.sas.remove(&id) else {
                continue;
            };
            let fate = self.on_sa_timeout(now, &mut sa);
            self.settle(sa, fate);
        }
    }

    /// The next instant at which [`Self::handle_timeout`] has work; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Rekeys the CHILD SA whose inbound SPI is `inbound_spi` (CREATE_CHILD_SA, §1.3.3).
    pub fn rekey_child(&mut self, now: Instant, sa: SaHandle, inbound_spi: u32) {
        self.enqueue(now, sa, Queued::RekeyChild(inbound_spi));
    }

    /// Rekeys the IKE SA (CREATE_CHILD_SA, §1.3.2).
    pub fn rekey_ike(&mut self, now: Instant, sa: SaHandle) {
        self.enqueue(now, sa, Queued::RekeyIke);
    }

    /// Deletes one CHILD SA pair (INFORMATIONAL with D, §1.4.1).
    pub fn delete_child(&mut self, now: Instant, sa: SaHandle, inbound_spi: u32) {
        self.enqueue(now, sa, Queued::DeleteChild(inbound_spi));
    }

    /// Deletes the IKE SA and its CHILD SAs. An SA still in its handshake is
    /// dropped without a word to the peer.
    pub fn close(&mut self, now: Instant, sa: SaHandle) {
        let Some(ike) = self.take(sa) else { return };
        if matches!(ike.state, State::Established) {
            self.put(ike);
            self.enqueue(now, sa, Queued::DeleteIke);
        } else {
            self.settle(ike, Fate::Remove(Some(Failure::Closed)));
        }
    }

    /// Sends a liveness check (an empty INFORMATIONAL request, §1.4) now.
    pub fn check_liveness(&mut self, now: Instant, sa: SaHandle) {
        self.enqueue(now, sa, Queued::Liveness);
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            ike_sas: self.sas.len(),
            half_open: self.half_open,
            ..self.out.stats.clone()
        }
    }

    /// The CHILD SAs (by SPIs) that the IKE SA `sa` currently carries.
    pub fn child_sas(&self, sa: SaHandle) -> Vec<ChildSpis> {
        self.handles
            .get(&sa)
            .and_then(|id| self.sas.get(id))
            .map(|ike| {
                ike.children
                    .iter()
                    .filter(|c| c.announced)
                    .map(|c| c.spis)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the IKE SA `sa` is established.
    pub fn is_established(&self, sa: SaHandle) -> bool {
        self.handles
            .get(&sa)
            .and_then(|id| self.sas.get(id))
            .is_some_and(|ike| matches!(ike.state, State::Established))
    }

    // ---- helpers shared by the exchange modules ----

    /// Whether a message of `sa` may come from `remote` (see [`Self::handle`]).
    fn admits_source(&self, sa: &IkeSa, local: SocketAddr, remote: SocketAddr) -> bool {
        if remote.ip().to_canonical() != sa.remote.ip().to_canonical() {
            return false;
        }
        if remote.port() == sa.remote.port() {
            return true;
        }
        // §2.23: the initiator's first message after IKE_SA_INIT moves to the
        // NAT-T port; behind a NAT its source port is then any port.
        let floating = matches!(sa.state, State::HalfOpen(_))
            && local.port() == self.config.natt_port
            && sa.local.port() != self.config.natt_port;
        floating || sa.peer_behind_nat
    }

    fn enqueue(&mut self, now: Instant, sa: SaHandle, op: Queued) {
        let Some(mut ike) = self.take(sa) else { return };
        if matches!(ike.state, State::Established) && !ike.queue.contains(&op) {
            ike.queue.push_back(op);
            self.start_next(now, &mut ike);
        }
        self.settle(ike, Fate::Keep);
    }

    fn take(&mut self, sa: SaHandle) -> Option<Box<IkeSa>> {
        let id = *self.handles.get(&sa)?;
        self.sas.remove(&id)
    }

    /// Starts queued exchanges while the window is free (§2.3).
    pub(crate) fn start_next(&mut self, now: Instant, sa: &mut IkeSa) {
        while sa.outstanding.is_none() && matches!(sa.state, State::Established) {
            let Some(op) = sa.queue.pop_front() else {
                return;
            };
            match op {
                Queued::Liveness => {
                    let timer = self.request_timer(now, None);
                    let t =
                        sa.send_request(ExchangeType::INFORMATIONAL, &[], Request::Liveness, timer);
                    self.out.transmits.push_back(t);
                }
                Queued::DeleteIke => {
                    let timer = self.request_timer(now, None);
                    let t = sa.send_request(
                        ExchangeType::INFORMATIONAL,
                        &[Payload::Delete(Delete::ike())],
                        Request::DeleteIke,
                        timer,
                    );
                    self.out.transmits.push_back(t);
                }
                Queued::DeleteChild(spi) => self.start_delete_child(now, sa, spi),
                Queued::RekeyChild(spi) => self.start_rekey_child(now, sa, spi),
                Queued::RekeyIke => self.start_rekey_ike(now, sa),
            }
        }
    }

    /// The retransmission timer of a new request; `deadline` for the
    /// handshake, `exchange_timeout` from now for later exchanges.
    pub(crate) fn request_timer(&self, now: Instant, deadline: Option<Instant>) -> Retransmit {
        match deadline {
            Some(d) => Retransmit::new(self.config.retransmit, now, d),
            None => {
                let config = RetransmitConfig {
                    max_resends: u32::MAX,
                    ..self.config.retransmit
                };
                Retransmit::new(config, now, now + self.config.exchange_timeout)
            }
        }
    }

    pub(crate) fn new_handle(&mut self) -> SaHandle {
        let h = SaHandle(self.next_handle);
        self.next_handle += 1;
        h
    }

    /// A fresh non-zero IKE SPI not in use here (§2.6).
    pub(crate) fn new_ike_spi(&mut self) -> u64 {
        loop {
            let spi = self.rng.next_u64();
            if spi != 0 && !self.by_spi.contains_key(&spi) {
                return spi;
            }
        }
    }

    /// A fresh inbound ESP SPI (≥ 256, RFC 4303 §2.1), reserved until released.
    pub(crate) fn new_child_spi(&mut self) -> u32 {
        loop {
            let spi = self.rng.next_u32();
            if spi >= 256 && self.child_spis.insert(spi) {
                return spi;
            }
        }
    }

    pub(crate) fn release_child_spi(&mut self, spi: u32) {
        self.child_spis.remove(&spi);
    }

    /// A new IKE SA record (not yet inserted).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_sa(
        &mut self,
        now: Instant,
        handle: SaHandle,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSa {
        let id = self.next_id;
        self.next_id += 1;
        IkeSa {
            id,
            handle,
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            ike_port: self.config.ike_port,
            state: State::Established,
            crypto: None,
            next_msg_id: 0,
            peer_msg_id: 0,
            outstanding: None,
            queue: VecDeque::new(),
            last_response: None,
            children: Vec::new(),
            peer_id: None,
            last_heard: now,
            rekey_at: None,
            hard_expiry: None,
            announced: false,
            peer_ike_rekey: None,
            timer_at: None,
            counted_half_open: false,
            init_remote: remote,
            peer_auth: None,
            peer_behind_nat: false,
            last_active: now,
            indexed_peer: false,
            indexed_anonymous: None,
        }
    }

    /// Registers an SA under its SPI and, if none does yet, as its handle's carrier.
    pub(crate) fn insert_sa(&mut self, sa: IkeSa) {
        self.by_spi.insert(sa.local_spi(), sa.id);
        self.handles.entry(sa.handle).or_insert(sa.id);
        self.put(Box::new(sa));
    }

    /// Responder SAs not yet authenticated.
    pub(crate) fn half_open(&self) -> usize {
        self.half_open
    }

    /// Puts an SA (back) into `sas`, with its entry in `timers` and its share
    /// of `half_open` brought up to date: every change to an SA happens while
    /// it is out of `sas`, so this is the one place where its deadline can
    /// have moved (O(log n), instead of a scan of all SAs per poll).
    pub(crate) fn put(&mut self, mut sa: Box<IkeSa>) {
        let next = sa_timeout(&self.config, &sa);
        if sa.timer_at != next {
            if let Some(old) = sa.timer_at {
                self.timers.remove(&(old, sa.id));
            }
            if let Some(at) = next {
                self.timers.insert((at, sa.id));
            }
            sa.timer_at = next;
        }
        self.account(&mut sa, true);
        self.sas.insert(sa.id, sa);
    }

    /// Brings the counts and indexes that include `sa` up to date with it
    /// (`present`) or takes it out of all of them (`!present`, when it goes).
    fn account(&mut self, sa: &mut IkeSa, present: bool) {
        let source = source_of(sa.init_remote.ip());
        let half_open = present && sa.state.is_half_open_responder();
        if half_open != sa.counted_half_open {
            let n = self.half_open_by_source.entry(source).or_insert(0);
            if half_open {
                self.half_open += 1;
                *n += 1;
            } else {
                self.half_open -= 1;
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.half_open_by_source.remove(&source);
                }
            }
            sa.counted_half_open = half_open;
        }
        let authenticated = present && sa.announced && sa.state.is_authenticated();
        let by_peer = authenticated && sa.peer_auth == Some(PeerAuthenticated::Ed25519);
        if by_peer != sa.indexed_peer
            && let Some(id) = sa.peer_id.clone()
        {
            let key = (sa.remote.ip().to_canonical(), id);
            if by_peer {
                self.by_peer.entry(key).or_default().push(sa.id);
            } else if let Some(ids) = self.by_peer.get_mut(&key) {
                ids.retain(|&i| i != sa.id);
                if ids.is_empty() {
                    self.by_peer.remove(&key);
                }
            }
            sa.indexed_peer = by_peer;
        }
        let anonymous = authenticated && sa.peer_auth == Some(PeerAuthenticated::Null);
        let want = anonymous.then_some(sa.last_active);
        if want != sa.indexed_anonymous {
            if let Some(at) = sa.indexed_anonymous {
                self.anonymous.remove(&(at, sa.id));
                if let Some(list) = self.anonymous_by_source.get_mut(&source) {
                    list.retain(|&(_, id)| id != sa.id);
                    if list.is_empty() {
                        self.anonymous_by_source.remove(&source);
                    }
                }
            }
            if let Some(at) = want {
                self.anonymous.insert((at, sa.id));
                // Most sources have one: room for one, not the four a first push makes.
                self.anonymous_by_source
                    .entry(source)
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push((at, sa.id));
            }
            sa.indexed_anonymous = want;
        }
    }

    /// Half-open SAs from `remote`'s source ([`source_of`]).
    pub(crate) fn half_open_from(&self, remote: IpAddr) -> usize {
        self.half_open_by_source
            .get(&source_of(remote))
            .copied()
            .unwrap_or(0)
    }

    /// Makes room for one more anonymous SA from `remote`: evicts that source's
    /// idlest while it has `anonymous_per_source`, then the idlest of all while
    /// there are `anonymous_limit` (design.md: anonymous peers get no more than
    /// their share of any limit). Each evicted peer is told (a Delete).
    pub(crate) fn make_room_for_anonymous(&mut self, remote: IpAddr) {
        let source = source_of(remote);
        loop {
            let per_source = self.anonymous_by_source.get(&source);
            let victim = if per_source.is_some_and(|s| s.len() >= self.config.anonymous_per_source)
            {
                per_source.and_then(|s| s.iter().min()).map(|&(_, id)| id)
            } else if self.anonymous.len() >= self.config.anonymous_limit {
                self.anonymous.first().map(|&(_, id)| id)
            } else {
                return;
            };
            let Some(mut sa) = victim.and_then(|id| self.sas.remove(&id)) else {
                return;
            };
            self.out.stats.anonymous_evicted += 1;
            if matches!(sa.state, State::Established) {
                self.send_delete_ike_once(&mut sa);
            }
            self.discard(sa, Some(Failure::Evicted));
        }
    }

    /// Sets when this host rekeys the IKE SA (lifetime minus up to 10 % jitter)
    /// and when it dies without a rekey (1.1 × lifetime).
    pub(crate) fn schedule_ike_rekey(&mut self, now: Instant, sa: &mut IkeSa) {
        let life = self.config.ike_lifetime;
        if life.is_zero() {
            return;
        }
        let jitter = life.mul_f64(f64::from(self.rng.next_u32() % 1000) / 10_000.0);
        sa.rekey_at = now.checked_add(life - jitter);
        sa.hard_expiry = now.checked_add(life + life / 10);
    }

    /// Reports a failed `connect` (or other exchange of ours that ends the SA).
    pub(crate) fn fail(&mut self, sa: &IkeSa, reason: Failure) -> Fate {
        self.out.events.push_back(Event::Failed {
            sa: sa.handle,
            remote: sa.remote,
            reason,
        });
        Fate::Remove(None)
    }

    /// Puts an SA back, or forgets it.
    pub(crate) fn settle(&mut self, sa: Box<IkeSa>, fate: Fate) {
        match fate {
            Fate::Keep => self.put(sa),
            Fate::Remove(reason) => self.discard(sa, reason),
        }
    }

    /// Forgets an SA (already out of `sas`) and tells the caller if it was up.
    pub(crate) fn discard(&mut self, sa: Box<IkeSa>, reason: Option<Failure>) {
        if let Some(at) = sa.timer_at {
            self.timers.remove(&(at, sa.id));
        }
        let mut sa = sa;
        self.account(&mut sa, false);
        if self.by_spi.get(&sa.local_spi()) == Some(&sa.id) {
            self.by_spi.remove(&sa.local_spi());
        }
        if self.handles.get(&sa.handle) == Some(&sa.id) {
            self.handles.remove(&sa.handle);
        }
        if !sa.initiator {
            let key = (sa.init_remote, sa.spi_i);
            if self.init_index.get(&key) == Some(&sa.id) {
                self.init_index.remove(&key);
            }
        }
        match &sa.state {
            State::AuthSent(a) => self.child_spis.remove(&a.child_spi),
            State::InitiatorAuthorize(a) => self.child_spis.remove(&a.sent.child_spi),
            State::InitiatorConfirm(c) => self.child_spis.remove(&c.sent.child_spi),
            _ => false,
        };
        for child in &sa.children {
            self.child_spis.remove(&child.spis.inbound);
            if let Some(p) = &child.peer_rekey {
                self.child_spis.remove(&p.new.spis.inbound);
            }
            if reason.is_some() && sa.announced && child.announced {
                self.out.events.push_back(Event::ChildSaDeleted {
                    sa: sa.handle,
                    spis: child.spis,
                });
            }
        }
        if let (Some(reason), true) = (reason, sa.announced) {
            self.out.events.push_back(Event::IkeSaDeleted {
                sa: sa.handle,
                reason,
            });
        }
    }

    /// Removes a CHILD SA and tells the data path if it knew it.
    pub(crate) fn remove_child(&mut self, sa: &mut IkeSa, inbound: u32) {
        if let Some(i) = sa.child_by_inbound(inbound) {
            let child = sa.children.remove(i);
            // After a rekey the list is back to one or two: give the room back.
            sa.children.shrink_to_fit();
            self.child_spis.remove(&child.spis.inbound);
            if child.announced {
                self.out.events.push_back(Event::ChildSaDeleted {
                    sa: sa.handle,
                    spis: child.spis,
                });
            }
        }
    }

    /// INITIAL_CONTACT (§2.4) from a peer that signed as `id` at `addr`: it
    /// has no other SAs with us any more; forget those of the same identity at
    /// the same address (reason `Replaced`), found in the `by_peer` index, not
    /// by a scan. Call it only for an authenticated peer: an anonymous one
    /// replaces nothing.
    pub(crate) fn replace_peer(&mut self, addr: IpAddr, id: &Identity, except: u64) {
        let key = (addr.to_canonical(), id.clone());
        let stale: Vec<u64> = self
            .by_peer
            .get(&key)
            .map(|ids| ids.iter().copied().filter(|&sid| sid != except).collect())
            .unwrap_or_default();
        for sid in stale {
            if let Some(sa) = self.sas.remove(&sid) {
                self.discard(sa, Some(Failure::Replaced));
            }
        }
    }

    /// Tells the peer the IKE SA is gone, once, without waiting for an answer.
    pub(crate) fn send_delete_ike_once(&mut self, sa: &mut IkeSa) {
        let msg_id = sa.next_msg_id;
        sa.next_msg_id = sa.next_msg_id.wrapping_add(1);
        let header = sa.header(ExchangeType::INFORMATIONAL, false, msg_id);
        let datagram = sa.emit_sealed(&header, &[Payload::Delete(Delete::ike())]);
        let t = sa.transmit(datagram);
        self.out.transmits.push_back(t);
    }
}

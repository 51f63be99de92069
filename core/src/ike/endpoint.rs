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
#![allow(clippy::todo, unused_variables, dead_code)]

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use crate::crypto::{AeadAlg, KeyAndSalt, Provider};
use crate::esp::LifetimeLimits;
use crate::ike::message::{AddrSelector, Identity};
use crate::ike::retransmit::RetransmitConfig;

/// How this host proves who it is.
#[derive(Debug)]
#[non_exhaustive]
pub enum LocalAuth {
    /// RFC 7427 digital signature with Ed25519 (RFC 8420), ID = `Config::local_id`.
    Ed25519(Ed25519SigningKey),
    /// AUTH NULL with ID_NULL (RFC 7619): anonymous.
    Null,
}

/// How to authenticate the peer, as the caller decided (from DNS and policy).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAuth {
    /// The peer must sign with this Ed25519 key (its IPSECKEY).
    Ed25519(Ed25519PublicKey),
    /// The peer may authenticate with AUTH NULL (anonymous). A signature that
    /// comes without a key to check it against is refused.
    Null,
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
    /// How long a responder keeps a half-open IKE SA (and one awaiting `authorize`).
    pub half_open_timeout: Duration,
    /// Rekey the IKE SA after this long (hard limit: 1.1x).
    pub ike_lifetime: Duration,
    /// CHILD SA lifetimes; the soft limit triggers a rekey by whoever hits it.
    pub child_lifetime: LifetimeLimits,
    /// Send an empty INFORMATIONAL (liveness check) after this long without
    /// hearing from the peer; `None` disables.
    pub dpd_interval: Option<Duration>,
}

impl Config {
    /// Defaults for the given credential and identity: both AEADs (AES-256-GCM
    /// first), ports 500/4500, forced UDP encapsulation, cookies above 64 half-open
    /// SAs, a limit of 4096, 5 s half-open timeout, IKE SAs rekeyed every 4 h,
    /// CHILD SAs every hour or 2^30 bytes (soft 90 %).
    pub fn new(local_auth: LocalAuth, local_id: Identity) -> Self {
        todo!()
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
#[non_exhaustive]
pub enum Event {
    /// The peer's IKE_AUTH arrived with this identity; answer with
    /// [`Endpoint::authorize`] (within `half_open_timeout`). Raised for the
    /// responder always, and for the initiator when `connect` had no `PeerAuth`.
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

/// Why an IKE SA or exchange ended. `Display` is a sentence for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No response before the deadline.
    Timeout {
        /// Which exchange was outstanding.
        exchange: &'static str,
        /// Requests sent.
        sends: u32,
    },
    /// The peer answered with an error notify (NO_PROPOSAL_CHOSEN, AUTHENTICATION_FAILED, …).
    PeerRefused(String),
    /// The peer's AUTH did not verify against the key given.
    AuthenticationFailed(String),
    /// The caller refused the peer in `authorize`.
    NotAuthorized,
    /// No proposal in common.
    NoProposalChosen,
    /// The peer broke the protocol.
    Protocol(String),
    /// The peer deleted the SA.
    DeletedByPeer,
    /// This host closed it.
    Closed,
    /// The peer started over (INITIAL_CONTACT from the same identity).
    Replaced,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
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

/// Counters for `oemesh status` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// IKE SAs in any state.
    pub ike_sas: usize,
    /// Responder IKE SAs not yet authenticated.
    pub half_open: usize,
    /// COOKIE notifies sent (§2.6).
    pub cookies_sent: u64,
    /// IKE SAs established.
    pub established: u64,
    /// Messages dropped: unparsable, unknown SPI, bad ICV, half-open limit, etc.
    pub dropped: u64,
    /// Of those, ICV or AUTH failures.
    pub auth_failures: u64,
}

/// All IKE SAs of this host.
#[derive(Debug)]
pub struct Endpoint {
    _private: (),
}

impl Endpoint {
    /// An endpoint with no SAs. `rng_seed` seeds the CSPRNG that draws SPIs,
    /// nonces, DH secrets and cookie secrets (the caller takes it from the OS).
    pub fn new(config: Config, rng_seed: [u8; 32]) -> Self {
        todo!()
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
        todo!()
    }

    /// Answers [`Event::AuthorizePeer`]: `Some` says how to check the peer's AUTH,
    /// `None` refuses it (AUTHENTICATION_FAILED to a responder's peer).
    pub fn authorize(&mut self, now: Instant, sa: SaHandle, peer: Option<PeerAuth>) {
        todo!()
    }

    /// Feeds one received IKE message (the UDP payload without the non-ESP marker)
    /// that arrived at `local` from `remote`. Malformed input is dropped and counted.
    pub fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, message: &[u8]) {
        todo!()
    }

    /// Call when the clock reaches [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        todo!()
    }

    /// The next instant at which [`Self::handle_timeout`] has work; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Rekeys the CHILD SA whose inbound SPI is `inbound_spi` (CREATE_CHILD_SA, §1.3.3).
    pub fn rekey_child(&mut self, now: Instant, sa: SaHandle, inbound_spi: u32) {
        todo!()
    }

    /// Rekeys the IKE SA (CREATE_CHILD_SA, §1.3.2).
    pub fn rekey_ike(&mut self, now: Instant, sa: SaHandle) {
        todo!()
    }

    /// Deletes one CHILD SA pair (INFORMATIONAL with D, §1.4.1).
    pub fn delete_child(&mut self, now: Instant, sa: SaHandle, inbound_spi: u32) {
        todo!()
    }

    /// Deletes the IKE SA and its CHILD SAs.
    pub fn close(&mut self, now: Instant, sa: SaHandle) {
        todo!()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        todo!()
    }
}

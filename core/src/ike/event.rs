//! What an [`super::endpoint::Endpoint`] hands its caller: [`Event`]s to act
//! on, with the CHILD SAs to install ([`ChildSa`]), and datagrams to send
//! ([`Transmit`]).

use std::net::{IpAddr, SocketAddr};

use crate::crypto::{AeadAlg, KeyAndSalt};
use crate::esp::LifetimeLimits;
use crate::ike::failure::Failure;
use crate::ike::message::{AddrSelector, Identity};
use crate::ipseckey::DomainName;

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
    /// Behind a NAT: the address the peer gave this host (CP, §3.15.1), which
    /// `local_ts` names; the data path writes it in place of this host's own
    /// address (`local`'s) in packets to the peer, and back in packets from it.
    pub local_vip: Option<IpAddr>,
    /// The peer is behind a NAT (§2.23): its port may change, and
    /// authenticated ESP from a new port is reported ([`crate::ike::endpoint::Endpoint::esp_moved`]).
    pub peer_behind_nat: bool,
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
    /// The peer, behind a NAT, now sends from `remote` (a new port, §2.23),
    /// as an authenticated IKE message or ESP packet showed: its CHILD SAs
    /// send there from now on.
    PeerMoved {
        /// The IKE SA.
        sa: SaHandle,
        /// Where the peer is now.
        remote: SocketAddr,
    },
    /// An initiator behind a NAT asked for an address (CP, RFC 7296 §3.15):
    /// the one it got from the pool, which its CHILD SA's remote selector
    /// names, or why it got none (its CHILD SA is then refused).
    AddressRequest {
        /// The IKE SA.
        sa: SaHandle,
        /// Where the initiator is (its NAT's address and port).
        remote: SocketAddr,
        /// The address given, or why not.
        result: Result<IpAddr, crate::ike::error::AddressRefusal>,
    },
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
    /// Initiator: the responder answered IKE_SA_INIT with a usable response
    /// (it speaks IKE); IKE_AUTH is on its way. A hint, e.g. to stop waiting
    /// only briefly for a peer that might run no IKE at all.
    IkeSaInitAnswered {
        /// The IKE SA.
        sa: SaHandle,
        /// The responder's address.
        remote: SocketAddr,
    },
    /// The peer's IKE_AUTH arrived with this identity; answer with
    /// [`Endpoint::authorize`](crate::ike::endpoint::Endpoint::authorize) (within `half_open_timeout`). Raised for the
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
        /// The peer's proposed TSi (the first few): what it wants to send
        /// from. Beyond its own address, a gateway's subnets, which the caller
        /// may vouch for ([`Endpoint::vouch`](crate::ike::endpoint::Endpoint::vouch)).
        ts_i: Vec<crate::ike::message::AddrSelector>,
    },
    /// Initiator: the responder signed with the key given to `connect`, under
    /// an FQDN identity. Answer with [`Endpoint::confirm_identity`](crate::ike::endpoint::Endpoint::confirm_identity) once the
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
    /// Initiator: the responder signed with the key given to `connect` (and
    /// its identity is bound), and answered TSr selectors beyond the
    /// destination (`connect`'s first remote selector): a gateway's site.
    /// Say which of them DNS vouches for with
    /// [`Endpoint::vouch_responder_ts`](crate::ike::endpoint::Endpoint::vouch_responder_ts)
    /// before the attempt's deadline; the CHILD SA keeps only the
    /// destination and those.
    VouchResponderTs {
        /// The IKE SA.
        sa: SaHandle,
        /// The responder's address.
        remote: SocketAddr,
        /// Its answered selectors beyond the destination (the first few).
        ts_r: Vec<crate::ike::message::AddrSelector>,
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
    /// A CHILD SA the peer asked for (IKE_AUTH or a CHILD SA rekey) was
    /// refused with an error notify (TS_UNACCEPTABLE, NO_PROPOSAL_CHOSEN, …);
    /// the IKE SA stays.
    ChildSaRefused {
        /// The IKE SA.
        sa: SaHandle,
        /// The peer.
        remote: SocketAddr,
        /// Why, with the selectors it proposed, for the log.
        reason: String,
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

//! CHILD SAs (RFC 7296 §1.3, §2.17): what the IKE SA remembers of each ESP SA
//! pair it negotiated, and how the pair handed to the data path is keyed.
//!
//! The keys are derived once, handed over in the event and not kept here:
//! `KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)`, the first half for the
//! direction from the exchange's initiator (§2.17). The exchange's initiator
//! is not necessarily the IKE SA's original initiator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::crypto::x25519::SharedSecret;
use crate::esp::LifetimeLimits;
use crate::ike::event::{ChildSa, ChildSpis};
use crate::ike::keys::{ChildSaKeys, Side, SkD};
use crate::ike::message::AddrSelector;
use crate::ike::proposal::EspChoice;

/// Where a CHILD SA is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildStatus {
    /// In use.
    Live,
    /// This host's rekey of it is outstanding.
    Rekeying,
    /// A rekey replaced it; the rekey's initiator deletes it (§2.8).
    Rekeyed,
    /// This host's delete of it is outstanding.
    Deleting,
    /// Created by the losing side of a rekey collision (§2.8.1); its creator
    /// deletes it, the data path never saw it.
    Redundant,
}

/// A rekey of this CHILD SA by the peer that crossed ours (§2.8.1): the new
/// SA it made and its nonces, kept until our own rekey's response decides
/// which of the two new SAs survives.
#[derive(Debug)]
pub(crate) struct PeerRekey {
    /// The peer's request nonce and our response nonce.
    pub(crate) nonces: (Vec<u8>, Vec<u8>),
    /// The SA the peer's exchange created, not yet announced.
    pub(crate) new: ChildSa,
}

/// One CHILD SA pair as the IKE SA tracks it.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) spis: ChildSpis,
    pub(crate) local_ts: Vec<AddrSelector>,
    pub(crate) remote_ts: Vec<AddrSelector>,
    pub(crate) status: ChildStatus,
    /// Whether the data path was told about it (then its removal is an event).
    pub(crate) announced: bool,
    /// When this host rekeys it (soft time limit, with jitter).
    pub(crate) rekey_at: Option<Instant>,
    /// When it is deleted (hard time limit).
    pub(crate) expire_at: Option<Instant>,
    /// Boxed: a `ChildSa` is large and this is rare (a rekey collision).
    pub(crate) peer_rekey: Option<Box<PeerRekey>>,
}

impl Child {
    /// Tracks a CHILD SA installed at `now`; `jitter` (0..1000) spreads rekeys
    /// so that both ends rarely start at the same moment.
    pub(crate) fn new(sa: &ChildSa, now: Instant, jitter: u32, announced: bool) -> Self {
        let soft = sa
            .lifetime
            .soft
            .time
            .map(|t| t.saturating_sub(t.mul_f64(f64::from(jitter % 1000) / 20_000.0)));
        Self {
            spis: sa.spis,
            local_ts: sa.local_ts.clone(),
            remote_ts: sa.remote_ts.clone(),
            status: ChildStatus::Live,
            announced,
            rekey_at: soft.and_then(|d| now.checked_add(d)),
            expire_at: sa.lifetime.hard.time.and_then(|d| now.checked_add(d)),
            peer_rekey: None,
        }
    }

    /// The next instant this child has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let rekey = self.rekey_at.filter(|_| self.status == ChildStatus::Live);
        [rekey, self.expire_at].into_iter().flatten().min()
    }
}

/// What a new CHILD SA is made of, besides its keys.
#[derive(Debug)]
pub(crate) struct ChildParams<'a> {
    pub(crate) spis: ChildSpis,
    pub(crate) choice: EspChoice,
    pub(crate) local_ts: Vec<AddrSelector>,
    pub(crate) remote_ts: Vec<AddrSelector>,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) natt_port: u16,
    pub(crate) lifetime: LifetimeLimits,
    pub(crate) sk_d: &'a SkD,
    /// See [`ChildSa::local_vip`].
    pub(crate) local_vip: Option<std::net::IpAddr>,
    /// See [`ChildSa::peer_behind_nat`].
    pub(crate) peer_behind_nat: bool,
}

/// Keys a CHILD SA pair (§2.17). `side` is this host's role in the exchange
/// that created it; `ni`/`nr` that exchange's nonces.
pub(crate) fn keyed(
    p: ChildParams<'_>,
    side: Side,
    g_ir: Option<&SharedSecret>,
    ni: &[u8],
    nr: &[u8],
) -> ChildSa {
    let keys = ChildSaKeys::derive(p.sk_d, g_ir, ni, nr);
    let (outbound, inbound) = keys.split(side);
    ChildSa {
        spis: p.spis,
        alg: p.choice.alg,
        esn: p.choice.esn,
        inbound_key: inbound.clone(),
        outbound_key: outbound.clone(),
        local_ts: p.local_ts,
        remote_ts: p.remote_ts,
        local: SocketAddr::new(p.local.ip(), p.natt_port),
        remote: if p.remote.port() == p.natt_port || p.local.port() == p.natt_port {
            p.remote
        } else {
            SocketAddr::new(p.remote.ip(), p.natt_port)
        },
        lifetime: p.lifetime,
        local_vip: p.local_vip,
        peer_behind_nat: p.peer_behind_nat,
    }
}

/// A duration as a fraction, for lifetimes given in percent.
pub(crate) fn percent(d: Duration, pct: u32) -> Duration {
    d * pct / 100
}

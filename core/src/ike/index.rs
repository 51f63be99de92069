//! The counts and indexes an endpoint keeps over its IKE SAs, for its
//! limits (half-open SAs in total and per source, §2.6; anonymous SAs in
//! total and per source) and for INITIAL_CONTACT (§2.4: the SAs of a peer
//! that signed, by address and identity, which one from that peer replaces;
//! and the SAs with anyone at an address, without which this host's
//! IKE_AUTH response carries one). Each SA records which of them include
//! it, so that [`SaIndex::account`] is O(log n) per change.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use crate::ike::event::PeerAuthenticated;
use crate::ike::message::Identity;
use crate::ike::sa::SaCore;
use crate::ike::state::State;

/// The source an address counts against in per-source limits: an IPv4
/// address itself, an IPv6 address's /64 (one host or LAN can have all of it).
pub(crate) fn source_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// The counts and indexes over an endpoint's SAs (keyed by `IkeSa::id`).
#[derive(Debug, Default)]
pub(crate) struct SaIndex {
    /// Responder SAs in `sas` not yet authenticated (`IkeSa::counted_half_open`).
    half_open: usize,
    /// The same per source ([`source_of`]); sources with none are not kept.
    half_open_by_source: HashMap<IpAddr, usize>,
    /// Announced SAs of peers that signed, by (address, identity): what an
    /// INITIAL_CONTACT from that identity at that address replaces (§2.4).
    by_peer: HashMap<(IpAddr, Identity), Vec<u64>>,
    /// SAs with anyone at an address ([`SaIndex::others_at`]): authenticated
    /// ones (announced, any identity, signed or anonymous) and the handshakes
    /// this host started; addresses with none are not kept.
    by_addr: HashMap<IpAddr, u32>,
    /// Established anonymous responder SAs by `(last_active, id)`: the idlest first.
    anonymous: BTreeSet<(Instant, u64)>,
    /// The same per source, unordered (at most `anonymous_per_source` each: a
    /// scan finds the idlest; a set per source would cost more memory than
    /// the SAs it indexes when most sources have one).
    anonymous_by_source: HashMap<IpAddr, Vec<(Instant, u64)>>,
}

impl SaIndex {
    /// Responder SAs not yet authenticated.
    pub(crate) fn half_open(&self) -> usize {
        self.half_open
    }

    /// Brings the counts and indexes that include `sa` up to date with it
    /// and its `state`, or takes it out of all of them (no state: it goes).
    pub(crate) fn account(&mut self, sa: &mut SaCore, state: Option<&State>) {
        let source = source_of(sa.init_remote.ip());
        let half_open = state.is_some_and(State::is_half_open_responder);
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
        let authenticated = sa.announced && state.is_some_and(State::is_authenticated);
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
        let with_addr = state.is_some_and(|s| {
            if s.is_authenticated() {
                sa.announced
            } else {
                sa.initiator
            }
        });
        if with_addr != sa.indexed_addr {
            let addr = sa.remote.ip().to_canonical();
            if with_addr {
                *self.by_addr.entry(addr).or_insert(0) += 1;
            } else if let Some(n) = self.by_addr.get_mut(&addr) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.by_addr.remove(&addr);
                }
            }
            sa.indexed_addr = with_addr;
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

    /// The anonymous SA to evict before one more from `remote` fits: that
    /// source's idlest while it has `per_source`, then the idlest of all while
    /// there are `limit`; `None` when there is room.
    pub(crate) fn anonymous_victim(
        &self,
        remote: IpAddr,
        per_source: usize,
        limit: usize,
    ) -> Option<u64> {
        let mine = self.anonymous_by_source.get(&source_of(remote));
        if mine.is_some_and(|s| s.len() >= per_source) {
            mine.and_then(|s| s.iter().min()).map(|&(_, id)| id)
        } else if self.anonymous.len() >= limit {
            self.anonymous.first().map(|&(_, id)| id)
        } else {
            None
        }
    }

    /// The announced SAs of the peer that signed as `id` at `addr`, but `except`.
    pub(crate) fn peers(&self, addr: IpAddr, id: &Identity, except: u64) -> Vec<u64> {
        let key = (addr.to_canonical(), id.clone());
        self.by_peer
            .get(&key)
            .map(|ids| ids.iter().copied().filter(|&sid| sid != except).collect())
            .unwrap_or_default()
    }

    /// Whether any SA is with someone at `addr`: authenticated (any identity,
    /// signed or anonymous) or a handshake this host started.
    pub(crate) fn any_at(&self, addr: IpAddr) -> bool {
        self.by_addr.contains_key(&addr.to_canonical())
    }

    /// Whether any SA but `sa` is with someone at `addr` (see [`Self::any_at`]).
    pub(crate) fn others_at(&self, addr: IpAddr, sa: &SaCore) -> bool {
        let n = self.by_addr.get(&addr.to_canonical()).copied().unwrap_or(0);
        n > u32::from(sa.indexed_addr)
    }
}

//! The outcome cache: what core's decision machine decided per destination,
//! until the outcome's `expires_at` (moka with a per-entry [`Expiry`]). The
//! TUN workers read it for the clear fast path (a packet that slipped past the
//! bypass route is re-sent in clear, a blocked destination's packets dropped)
//! without asking the control plane; `oemesh peers|check|status` read it too.
//! Private outcomes never expire by time: they leave with their last SA.
//!
//! An expired entry is invisible at once (moka checks on read); the kernel side
//! of it (the bypass route) is undone by the control plane's own timer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use oemesh_core::oe::{Outcome, State};

/// Destinations remembered at most; beyond that the least used go (their
/// bypass routes are still removed at expiry by the control plane). New
/// outcomes come at most at the DNS lookup rate (`dns.lookups_per_second`,
/// 50/s by default), so this is reached only with long negative TTLs; at
/// ~1 KB per clear outcome it bounds the cache near 130 MB.
const CAPACITY: u64 = 131_072;

struct UntilExpiresAt;

impl UntilExpiresAt {
    fn left(outcome: &Outcome, at: Instant) -> Option<Duration> {
        outcome.expires_at.map(|e| e.saturating_duration_since(at))
    }
}

impl Expiry<IpAddr, Arc<Outcome>> for UntilExpiresAt {
    fn expire_after_create(
        &self,
        _key: &IpAddr,
        value: &Arc<Outcome>,
        created_at: Instant,
    ) -> Option<Duration> {
        Self::left(value, created_at)
    }

    fn expire_after_update(
        &self,
        _key: &IpAddr,
        value: &Arc<Outcome>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Self::left(value, updated_at)
    }
}

/// The cache. Cheap to share (`Arc` inside moka).
#[derive(Clone)]
pub struct OutcomeCache {
    cache: Cache<IpAddr, Arc<Outcome>>,
}

impl std::fmt::Debug for OutcomeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl Default for OutcomeCache {
    fn default() -> Self {
        OutcomeCache {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(UntilExpiresAt)
                .build(),
        }
    }
}

impl OutcomeCache {
    /// The live outcome for `dst`.
    pub fn get(&self, dst: IpAddr) -> Option<Arc<Outcome>> {
        self.cache.get(&dst)
    }

    /// The live state for `dst` (the TUN workers' question).
    pub fn state(&self, dst: IpAddr) -> Option<State> {
        self.get(dst).map(|o| o.state)
    }

    /// Remembers `outcome` for its destination until it expires.
    pub fn insert(&self, outcome: Outcome) {
        self.cache.insert(outcome.dst, Arc::new(outcome));
    }

    /// Forgets `dst` (its SA is gone: the next packet decides again).
    pub fn remove(&self, dst: IpAddr) {
        self.cache.invalidate(&dst);
    }

    /// Every live outcome.
    pub fn all(&self) -> Vec<Arc<Outcome>> {
        self.cache.iter().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oemesh_core::oe::{Action, Config, Group, Machine, Policy};

    #[test]
    fn clear_outcomes_expire_private_do_not() {
        let policy = Policy::new([(Group::Clear, "192.0.2.0/24".parse().unwrap())], []).unwrap();
        let config = Config {
            clear_lifetime: Duration::from_millis(50),
            ..Config::default()
        };
        let mut m = Machine::new(config, policy);
        let dst: IpAddr = "192.0.2.7".parse().unwrap();
        m.on_packet(Instant::now(), dst, vec![0x45]);
        let Some(Action::PassClear { outcome, .. }) = m.poll_action() else {
            panic!("policy clear decides at once")
        };
        let cache = OutcomeCache::default();
        cache.insert(outcome);
        assert_eq!(cache.state(dst), Some(State::Clear));
        assert_eq!(cache.all().len(), 1);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.state(dst), None, "expired entries are invisible");
    }
}

//! The sharded copy-on-write map under the SA table ([`super::sa_table`]):
//! [`SHARDS`] `arc-swap` snapshots of a `HashMap`, a key's shard picked by a
//! multiplicative hash. Readers load one snapshot; the (single) writer copies
//! one shard per change.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Shards per table: a power of two. With 1,024, an install into a table of
/// 10,000 SAs copies about 10 entries (with 64 it copied ~160, and bumping
/// and later dropping each entry's `Arc` cost ~6 % of the responder's CPU
/// at 2,500 new SAs per second). Empty shards share one empty map.
pub const SHARDS: usize = 1024;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// Which shard a key lives in: the top bits of a multiplicative hash
/// (SPIs are random already; addresses of one prefix differ in their low bits).
pub(super) trait ShardKey {
    fn shard(&self) -> usize;
}

fn fold(x: u64) -> usize {
    // Fibonacci hashing: the top SHARD_BITS bits of x * 2^64/phi.
    usize::try_from(x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)).unwrap_or(0)
}

impl ShardKey for u32 {
    fn shard(&self) -> usize {
        fold(u64::from(*self))
    }
}

impl ShardKey for IpAddr {
    fn shard(&self) -> usize {
        match self {
            IpAddr::V4(a) => fold(u64::from(a.to_bits())),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                #[allow(clippy::cast_possible_truncation, reason = "folding 128 bits to 64")]
                fold((b as u64) ^ ((b >> 64) as u64))
            }
        }
    }
}

/// A copy-on-write map split into [`SHARDS`] snapshots.
#[derive(Debug)]
pub(super) struct Shards<K, V> {
    pub(super) shards: Box<[ArcSwap<HashMap<K, V>>]>,
}

impl<K: Eq + Hash + Clone + ShardKey, V: Clone> Shards<K, V> {
    pub(super) fn new() -> Self {
        Self {
            shards: {
                let empty = Arc::new(HashMap::new());
                (0..SHARDS)
                    .map(|_| ArcSwap::new(Arc::clone(&empty)))
                    .collect()
            },
        }
    }

    fn shard(&self, key: &K) -> &ArcSwap<HashMap<K, V>> {
        // `shard()` is below SHARDS by construction.
        &self.shards[key.shard() % SHARDS]
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.shard(key).load().get(key).cloned()
    }

    pub(super) fn contains(&self, key: &K) -> bool {
        self.shard(key).load().contains_key(key)
    }

    /// Inserts, returning the value `key` had (callers hold the writer lock).
    pub(super) fn insert(&self, key: K, value: V) -> Option<V> {
        let shard = self.shard(&key);
        let mut map = HashMap::clone(&shard.load());
        let old = map.insert(key, value);
        shard.store(Arc::new(map));
        old
    }

    pub(super) fn remove(&self, key: &K) -> Option<V> {
        let shard = self.shard(key);
        if !shard.load().contains_key(key) {
            return None;
        }
        let mut map = HashMap::clone(&shard.load());
        let removed = map.remove(key);
        shard.store(Arc::new(map));
        removed
    }

    pub(super) fn values(&self) -> Vec<V> {
        let mut all = Vec::new();
        for shard in &*self.shards {
            all.extend(shard.load().values().cloned());
        }
        all
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.load().len()).sum()
    }
}

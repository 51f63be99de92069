//! Reports from the UDP workers to the control plane, at most one per key
//! per second of the clock: a small table of recent keys shared without a
//! lock (a collision only lets one more report through) in front of a
//! bounded queue, whose overflow is dropped and counted. `datapath::stale`
//! (sources of ESP with unknown SPIs) and `datapath::moved` (NAT rebindings)
//! are the two kinds.
//!
//! The queue is made with the data path; the control plane takes its end
//! once, at start ([`Reports::inbox`]).

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use tokio::sync::mpsc;

/// Recent keys kept (a power of two).
const SLOTS: usize = 256;

/// What [`Reports::report`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// Queued for the control plane.
    Queued,
    /// The key was reported this second already.
    Recent,
    /// The queue was full: dropped and counted.
    QueueFull,
}

/// See the module docs.
#[derive(Debug)]
pub struct Reports<T> {
    tx: mpsc::Sender<T>,
    pub(super) epoch: Instant,
    /// Keyed per process, so that keys cannot be picked to collide.
    hasher: RandomState,
    /// Per slot: the key's tag (high 32 bits) and the second it was last
    /// reported in (low 32 bits).
    recent: [AtomicU64; SLOTS],
    /// Reports dropped because the queue was full.
    queue_full: AtomicU64,
    /// The control plane's end, until it takes it.
    inbox: Mutex<Option<mpsc::Receiver<T>>>,
}

impl<T> Reports<T> {
    /// A queue of `capacity` reports; its control-plane end waits in it.
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        let reports = Self::new(tx);
        *reports.inbox.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        reports
    }

    pub(super) fn new(tx: mpsc::Sender<T>) -> Self {
        Self {
            tx,
            epoch: Instant::now(),
            hasher: RandomState::new(),
            recent: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            queue_full: AtomicU64::new(0),
            inbox: Mutex::new(None),
        }
    }

    /// The control plane's end of the queue; there is one, taken once.
    pub fn inbox(&self) -> mpsc::Receiver<T> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox
            .take()
            .expect("a report inbox is taken once, at start")
    }

    /// Queues `item` unless `key` was reported this second.
    pub fn report(&self, now: Instant, key: impl Hash, item: T) -> Reported {
        let hash = self.hasher.hash_one(key);
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let mark = (hash & !0xffff_ffff) | (second & 0xffff_ffff);
        let slot = &self.recent[(hash as usize) % SLOTS];
        if slot.swap(mark, Relaxed) == mark {
            return Reported::Recent;
        }
        match self.tx.try_send(item) {
            Ok(()) => Reported::Queued,
            Err(_) => {
                self.queue_full.fetch_add(1, Relaxed);
                Reported::QueueFull
            }
        }
    }

    /// Reports dropped so far because the queue was full.
    pub fn queue_full(&self) -> u64 {
        self.queue_full.load(Relaxed)
    }
}

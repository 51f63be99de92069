//! Held packets: the first packets to a destination whose outcome is not yet
//! decided wait here instead of being dropped (Libreswan's `%hold` drops them).
//!
//! Bounded per destination (packets and bytes) and in total (packets and bytes).
//! When a destination's queue is full its **oldest** packet goes; when the total
//! is full the oldest packet of the destination holding the most bytes goes (the
//! flow that floods pays, not its neighbours). Every drop is counted.
//!
//! Cost: a held packet is the caller's own `Vec<u8>`, moved in and moved out
//! again — no copy and no allocation per packet. Each destination has one
//! `VecDeque` of buffers; emptied deques handed back with [`HoldStore::recycle`]
//! are reused for the next destination, so in steady state nothing is allocated.
//! Buffers of dropped packets are kept (bounded) for the caller to reuse through
//! [`HoldStore::spare_buffer`]. Enforcing the total limit scans the destinations
//! once per dropped packet (O(pending)), which only happens under overload.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// How much may be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    /// Packets per destination (default 64).
    pub packets_per_dst: usize,
    /// Bytes per destination (default 256 KiB).
    pub bytes_per_dst: usize,
    /// Packets over all destinations (default 16384).
    pub total_packets: usize,
    /// Bytes over all destinations (default 16 MiB).
    pub total_bytes: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            packets_per_dst: 64,
            bytes_per_dst: 256 * 1024,
            total_packets: 16 * 1024,
            total_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The packets held for one destination, oldest first. Handed to the caller when
/// the outcome is known; give the emptied value back with [`HoldStore::recycle`].
#[derive(Debug, Default)]
pub struct Held {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Held {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Total bytes of the packets.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The packets, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.packets.iter().map(Vec::as_slice)
    }

    /// Takes the packets out, oldest first, leaving this value empty (and its
    /// storage ready for [`HoldStore::recycle`]).
    pub fn drain(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.bytes = 0;
        self.packets.drain(..)
    }

    fn pop_oldest(&mut self) -> Option<Vec<u8>> {
        let p = self.packets.pop_front()?;
        self.bytes -= p.len();
        Some(p)
    }
}

/// Counts of packets the hold store dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldDrops {
    /// Oldest packet dropped because its destination's queue was full.
    pub dst_full: u64,
    /// Oldest packet of the biggest queue dropped because the total was full.
    pub total_full: u64,
    /// Packet larger than a whole destination's byte limit: dropped on arrival.
    pub too_big: u64,
}

/// Dropped-packet buffers kept for reuse at most.
const SPARE_BUFFERS: usize = 32;
/// Buffers with more capacity than this are not kept (freed instead).
const SPARE_MAX_CAPACITY: usize = 64 * 1024;
/// Empty queues kept for reuse at most.
const SPARE_QUEUES: usize = 64;

/// All held packets, per destination, with the limits enforced.
#[derive(Debug, Default)]
pub struct HoldStore {
    limits: HoldLimits,
    queues: HashMap<IpAddr, Held>,
    total_packets: usize,
    total_bytes: usize,
    spare_queues: Vec<VecDeque<Vec<u8>>>,
    spare_buffers: Vec<Vec<u8>>,
    drops: HoldDrops,
}

impl HoldStore {
    /// An empty store with these limits.
    pub fn new(limits: HoldLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Holds `packet` for `dst` behind the ones already held. Returns how many
    /// packets were dropped to make room (this one included, if it alone is
    /// over a destination's byte limit).
    pub fn push(&mut self, dst: IpAddr, packet: Vec<u8>) -> usize {
        let size = packet.len();
        if !self.admits(size) {
            self.drops.too_big += 1;
            self.keep_spare(packet);
            return 1;
        }
        let mut dropped = 0;
        let spare = &mut self.spare_queues;
        let queue = self.queues.entry(dst).or_insert_with(|| Held {
            packets: spare.pop().unwrap_or_default(),
            bytes: 0,
        });
        let mut freed = Vec::new();
        while queue.len() >= self.limits.packets_per_dst
            || queue.bytes + size > self.limits.bytes_per_dst
        {
            let Some(old) = queue.pop_oldest() else { break };
            self.total_packets -= 1;
            self.total_bytes -= old.len();
            self.drops.dst_full += 1;
            dropped += 1;
            freed.push(old);
        }
        queue.bytes += size;
        queue.packets.push_back(packet);
        self.total_packets += 1;
        self.total_bytes += size;
        for old in freed {
            self.keep_spare(old);
        }
        while self.total_packets > self.limits.total_packets
            || self.total_bytes > self.limits.total_bytes
        {
            if !self.drop_from_biggest() {
                break;
            }
            dropped += 1;
        }
        dropped
    }

    /// Drops the oldest packet of the destination holding the most bytes.
    fn drop_from_biggest(&mut self) -> bool {
        let Some(queue) = self.queues.values_mut().max_by_key(|q| q.bytes) else {
            return false;
        };
        let Some(old) = queue.pop_oldest() else {
            return false;
        };
        self.total_packets -= 1;
        self.total_bytes -= old.len();
        self.drops.total_full += 1;
        self.keep_spare(old);
        true
    }

    fn keep_spare(&mut self, mut buf: Vec<u8>) {
        if self.spare_buffers.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_MAX_CAPACITY {
            buf.clear();
            self.spare_buffers.push(buf);
        }
    }

    /// Whether a packet of `len` bytes can be held at all (not over a whole
    /// destination's or the total limit).
    pub fn admits(&self, len: usize) -> bool {
        len <= self.limits.bytes_per_dst
            && len <= self.limits.total_bytes
            && self.limits.packets_per_dst > 0
            && self.limits.total_packets > 0
    }

    /// A [`Held`] of one packet that was never held (decided on arrival), built
    /// from recycled storage.
    pub(crate) fn single(&mut self, packet: Vec<u8>) -> Held {
        let mut packets = self.spare_queues.pop().unwrap_or_default();
        let bytes = packet.len();
        packets.push_back(packet);
        Held { packets, bytes }
    }

    /// Takes a buffer the caller no longer needs (a dropped packet) for reuse.
    pub(crate) fn give_buffer(&mut self, buf: Vec<u8>) {
        self.keep_spare(buf);
    }

    /// Removes and returns everything held for `dst`, oldest first.
    pub fn take(&mut self, dst: IpAddr) -> Held {
        let held = self.queues.remove(&dst).unwrap_or_default();
        self.total_packets -= held.len();
        self.total_bytes -= held.bytes;
        held
    }

    /// Drops everything held for `dst` (buffers kept for reuse); returns how many.
    pub fn discard(&mut self, dst: IpAddr) -> usize {
        let mut held = self.take(dst);
        let n = held.len();
        let bufs: Vec<Vec<u8>> = held.drain().collect();
        for buf in bufs {
            self.keep_spare(buf);
        }
        self.recycle(held);
        n
    }

    /// Gives back an emptied [`Held`] so its storage serves the next destination.
    /// Packets still inside are dropped.
    pub fn recycle(&mut self, mut held: Held) {
        held.packets.clear();
        if self.spare_queues.len() < SPARE_QUEUES {
            self.spare_queues.push(held.packets);
        }
    }

    /// An empty buffer from a dropped packet, for the caller to read the next
    /// packet into.
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.spare_buffers.pop()
    }

    /// Packets held for `dst`.
    pub fn packets(&self, dst: IpAddr) -> usize {
        self.queues.get(&dst).map_or(0, Held::len)
    }

    /// Bytes held for `dst`.
    pub fn bytes(&self, dst: IpAddr) -> usize {
        self.queues.get(&dst).map_or(0, Held::bytes)
    }

    /// Packets held in total.
    pub fn total_packets(&self) -> usize {
        self.total_packets
    }

    /// Bytes held in total.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// The limits.
    pub fn limits(&self) -> HoldLimits {
        self.limits
    }

    /// Drops so far, by reason.
    pub fn drops(&self) -> HoldDrops {
        self.drops
    }
}

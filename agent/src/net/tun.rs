//! The TUN device (`oemesh0`) through tun-rs: offload (IFF_VNET_HDR with
//! TSO/USO) and multi-queue where the kernel allows, falling back with a logged
//! reason, and a batch API with reused buffers:
//!
//! - [`TunReader::read_batch`] reads one (possibly GSO super-) packet from the
//!   kernel and splits it into MTU-sized packets, each in its own buffer with
//!   [`HEADROOM`] bytes before and [`TAILROOM`] after, so that ESP can encrypt in
//!   place (SPI, sequence number and IV in front; padding, trailer and ICV behind).
//! - [`TunWriter`] collects copies of the decrypted packets and
//!   [`TunWriter::flush`] writes them; with offload, TCP segments are coalesced
//!   into super-packets as they are pushed ([`crate::datapath::gro`]) and UDP by
//!   tun-rs at the flush (GRO).
//!
//! Nothing is allocated per packet once the buffers have grown to a batch.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use crate::config::TunConfig;
use crate::datapath::gro::Coalescer;

/// Bytes kept free before each packet read from the TUN (ESP header + IV, with
/// room to spare for the outer UDP/IP headers when building them in place).
pub const HEADROOM: usize = 64;
/// Bytes kept free after each packet (ESP padding, trailer, ICV).
pub const TAILROOM: usize = 64;
/// Slots free for one more read to be tried without waiting: a super-packet
/// splits into at most 65535 / MTU (< 48 at MTU 1400) packets, and tun-rs wants
/// more slots than that.
const MIN_FREE_SLOTS: usize = 64;
/// The most queues opened with multi-queue.
const MAX_QUEUES: usize = 4;

/// Why the TUN could not be opened at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot create TUN device {name}: {error} (needs CAP_NET_ADMIN and /dev/net/tun)")]
pub struct TunError {
    name: String,
    error: io::Error,
}

/// The open TUN device: one [`AsyncDevice`] per queue.
pub struct Tun {
    name: String,
    index: u32,
    mtu: u16,
    offload: bool,
    queues: Vec<Arc<AsyncDevice>>,
}

impl Tun {
    /// Creates the device `cfg.name` with `cfg.mtu`, up, without addresses (the
    /// routes point at it by index). Offload and multi-queue are asked for as
    /// configured and dropped, with a warning naming the reason, if refused.
    pub fn open(cfg: &TunConfig) -> Result<Tun, TunError> {
        let mut attempts = vec![(cfg.offload, cfg.multi_queue)];
        if cfg.multi_queue {
            attempts.push((cfg.offload, false));
        }
        if cfg.offload {
            attempts.push((false, false));
        }
        let mut last_err = None;
        for (offload, multi_queue) in attempts {
            match build(cfg, offload, multi_queue) {
                Ok(dev) => {
                    let dev = Arc::new(dev);
                    let index = dev.if_index().map_err(|error| TunError {
                        name: cfg.name.clone(),
                        error,
                    })?;
                    let mut queues = vec![dev.clone()];
                    if multi_queue {
                        let want = std::thread::available_parallelism()
                            .map_or(1, |n| n.get())
                            .min(MAX_QUEUES);
                        while queues.len() < want {
                            match dev.try_clone() {
                                Ok(q) => queues.push(Arc::new(q)),
                                Err(e) => {
                                    tracing::warn!(
                                        "{}: opening TUN queue {}: {e}; using {}",
                                        cfg.name,
                                        queues.len(),
                                        queues.len()
                                    );
                                    break;
                                }
                            }
                        }
                    }
                    let offload = offload && (dev.tcp_gso() || dev.udp_gso());
                    tracing::info!(
                        "{}: TUN up, index {index}, mtu {}, offload {}, {} queue(s)",
                        cfg.name,
                        cfg.mtu,
                        if offload { "on" } else { "off" },
                        queues.len()
                    );
                    return Ok(Tun {
                        name: cfg.name.clone(),
                        index,
                        mtu: cfg.mtu,
                        offload,
                        queues,
                    });
                }
                Err(e) => {
                    let what = match (offload, multi_queue) {
                        (true, true) => "with offload and multi-queue",
                        (true, false) => "with offload",
                        (false, true) => "with multi-queue",
                        (false, false) => "plain",
                    };
                    tracing::warn!(
                        "{}: creating the TUN {what} failed: {e}; falling back",
                        cfg.name
                    );
                    last_err = Some(e);
                }
            }
        }
        Err(TunError {
            name: cfg.name.clone(),
            error: last_err.unwrap_or_else(|| io::Error::other("no attempt made")),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index (what the routes point at).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether offload (IFF_VNET_HDR) is on.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The queues; each can be read and written by its own task.
    pub fn queues(&self) -> &[Arc<AsyncDevice>] {
        &self.queues
    }

    /// A batch reader on queue `queue` (0-based; panics if out of range is
    /// avoided by wrapping around).
    pub fn reader(&self, queue: usize) -> TunReader {
        TunReader::new(self.queue(queue), self.offload, self.mtu)
    }

    /// A batch writer on queue `queue`.
    pub fn writer(&self, queue: usize) -> TunWriter {
        TunWriter::new(self.queue(queue), self.offload)
    }

    fn queue(&self, i: usize) -> Arc<AsyncDevice> {
        self.queues[i % self.queues.len()].clone()
    }
}

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("mtu", &self.mtu)
            .field("offload", &self.offload)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl fmt::Debug for TunReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunReader")
            .field("slots", &self.bufs.len())
            .field("count", &self.count)
            .finish()
    }
}

impl fmt::Debug for TunWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunWriter")
            .field("count", &self.count)
            .finish()
    }
}

fn build(cfg: &TunConfig, offload: bool, multi_queue: bool) -> io::Result<AsyncDevice> {
    DeviceBuilder::new()
        .name(cfg.name.clone())
        .mtu(cfg.mtu)
        .offload(offload)
        .multi_queue(multi_queue)
        .enable(true)
        .build_async()
}

/// Reads batches of packets from one queue into reused buffers.
pub struct TunReader {
    dev: Arc<AsyncDevice>,
    /// The raw read: virtio header plus a super-packet of up to 64 KiB.
    original: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
}

impl TunReader {
    fn new(dev: Arc<AsyncDevice>, offload: bool, mtu: u16) -> TunReader {
        let slots = if offload { 2 * IDEAL_BATCH_SIZE } else { 1 };
        let slot_len = HEADROOM + usize::from(mtu).max(1500) + TAILROOM;
        TunReader {
            dev,
            original: if offload {
                vec![0; VIRTIO_NET_HDR_LEN + 65535]
            } else {
                Vec::new()
            },
            bufs: vec![vec![0; slot_len]; slots],
            sizes: vec![0; slots],
            count: 0,
        }
    }

    /// Waits for the next read, then takes what else is already queued without
    /// waiting (while slots for a whole super-packet remain), and returns how
    /// many packets that yielded (a GSO super-packet yields several; without
    /// offload, one read of one packet).
    ///
    /// The draining is for the ACK path: pure ACKs come one per read, and
    /// taking the queued ones together lets their ESP leave in one GSO send
    /// and the loop wake once for them.
    pub async fn read_batch(&mut self) -> io::Result<usize> {
        self.count = 0;
        let mut n = self
            .dev
            .recv_multiple(
                &mut self.original,
                &mut self.bufs,
                &mut self.sizes,
                HEADROOM,
            )
            .await?;
        while self.bufs.len() - n >= MIN_FREE_SLOTS {
            match self.dev.try_recv_multiple(
                &mut self.original,
                &mut self.bufs[n..],
                &mut self.sizes[n..],
                HEADROOM,
            ) {
                Ok(k) => n += k,
                // WouldBlock: nothing queued. Another error: the next
                // `read_batch` meets it again; these packets go first.
                Err(_) => break,
            }
        }
        self.count = n;
        Ok(n)
    }

    /// Packets in the current batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the current batch is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Packet `i` of the current batch.
    pub fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i][HEADROOM..HEADROOM + self.sizes[i]]
    }

    /// Packet `i`'s whole buffer and where the packet lies in it, for in-place
    /// encryption into the head- and tailroom.
    pub fn slot_mut(&mut self, i: usize) -> (&mut [u8], Range<usize>) {
        let range = HEADROOM..HEADROOM + self.sizes[i];
        (&mut self.bufs[i], range)
    }

    /// The packets of the current batch.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).map(|i| self.packet(i))
    }
}

/// Collects packets for one queue and writes them as a batch.
pub struct TunWriter {
    dev: Arc<AsyncDevice>,
    /// TCP segments, coalesced into super-packets (with offload).
    tcp: Option<Coalescer>,
    /// Everything else, for tun-rs's `send_multiple` (UDP GRO with offload).
    gro: GROTable,
    bufs: Vec<Vec<u8>>,
    /// Capacity of each buffer in `bufs` ([`GRO_BUF`] or [`PLAIN_BUF`]).
    buf_capacity: usize,
    count: usize,
}

/// Capacity of a writer's buffer with offload. tun-rs's GRO (here for what
/// the [`Coalescer`] does not take, e.g. UDP) coalesces a flow's packets into
/// the buffer of its first one and does not grow a buffer past its capacity
/// (the packet is then written on its own): with room for one packet, nothing
/// was coalesced and every decrypted segment cost its own `write(2)` into the
/// TUN. With room for a whole 64 KiB super-packet one `write` carries up to
/// ~46 segments at MTU 1400. Only the pages a super-packet touches become
/// resident.
const GRO_BUF: usize = 2 * VIRTIO_NET_HDR_LEN + 65535;
/// Capacity of a writer's buffer without offload (one packet each).
const PLAIN_BUF: usize = VIRTIO_NET_HDR_LEN + 2048;

impl TunWriter {
    fn new(dev: Arc<AsyncDevice>, offload: bool) -> TunWriter {
        TunWriter {
            dev,
            tcp: offload.then(Coalescer::default),
            gro: GROTable::default(),
            bufs: Vec::new(),
            buf_capacity: if offload { GRO_BUF } else { PLAIN_BUF },
            count: 0,
        }
    }

    /// Appends a copy of `packet`: a TCP segment joins its flow's
    /// super-packet ([`Coalescer`]) with offload; anything else waits in its
    /// own buffer.
    pub fn push(&mut self, packet: &[u8]) {
        if packet.is_empty() || self.tcp.as_mut().is_some_and(|c| c.push(packet)) {
            return;
        }
        if self.count == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(self.buf_capacity));
        }
        let buf = &mut self.bufs[self.count];
        buf.clear();
        buf.resize(VIRTIO_NET_HDR_LEN, 0);
        buf.extend_from_slice(packet);
        self.count += 1;
    }

    /// Whether nothing waits for [`TunWriter::flush`].
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.tcp.as_ref().is_none_or(Coalescer::is_empty)
    }

    /// Writes every collected packet and empties the batch: the TCP
    /// super-packets one `write` each, then the rest through tun-rs (which
    /// coalesces UDP with offload). A failed write does not stop the others;
    /// the last error is returned.
    pub async fn flush(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        if let Some(tcp) = self.tcp.as_mut() {
            for buf in tcp.finish() {
                if let Err(e) = self.dev.send(buf).await {
                    result = Err(e);
                }
            }
        }
        if self.count > 0 {
            let n = std::mem::take(&mut self.count);
            self.dev
                .send_multiple(&mut self.gro, &mut self.bufs[..n], VIRTIO_NET_HDR_LEN)
                .await?;
        }
        result
    }
}

//! Batches ESP-in-UDP datagrams for one UDP GSO send (`UDP_SEGMENT`): runs of
//! packets to one peer whose sizes are equal (the last may be shorter) leave in
//! one `sendmsg`, as the TUN's offload hands TCP segments of one size.

use std::net::{IpAddr, SocketAddr};

use crate::metrics::{Metrics, PacketOutcome};
use crate::net::udp::UdpEndpoint;

/// The most bytes one GSO send carries (the UDP length field's limit, with room).
const MAX_GSO_BYTES: usize = 65_000;

/// A batch being built; reused, never shrunk.
#[derive(Debug)]
pub struct GsoBatch {
    buf: Vec<u8>,
    to: Option<SocketAddr>,
    from: Option<IpAddr>,
    segment: usize,
    count: usize,
    inner_bytes: usize,
    closed: bool,
    max_segments: usize,
}

impl GsoBatch {
    /// A batch of at most `max_segments` datagrams per send.
    pub fn new(max_segments: usize) -> GsoBatch {
        GsoBatch {
            buf: Vec::with_capacity(MAX_GSO_BYTES),
            to: None,
            from: None,
            segment: 0,
            count: 0,
            inner_bytes: 0,
            closed: false,
            max_segments: max_segments.max(1),
        }
    }

    /// Whether `data` can join the batch without a flush first.
    pub fn fits(&self, to: SocketAddr, from: Option<IpAddr>, len: usize) -> bool {
        self.count == 0
            || (self.to == Some(to)
                && self.from == from
                && !self.closed
                && len <= self.segment
                && self.count < self.max_segments
                && self.buf.len() + len <= MAX_GSO_BYTES)
    }

    /// Adds one datagram (call [`Self::fits`] and flush first if it does not).
    /// `inner` is the size of the packet before ESP, for metrics.
    pub fn push(&mut self, to: SocketAddr, from: Option<IpAddr>, data: &[u8], inner: usize) {
        if self.count == 0 {
            self.to = Some(to);
            self.from = from;
            self.segment = data.len();
            self.closed = false;
            self.buf.clear();
        } else if data.len() < self.segment {
            self.closed = true; // a shorter segment ends the run
        }
        self.buf.extend_from_slice(data);
        self.count += 1;
        self.inner_bytes += inner;
    }

    /// Sends what is batched, if anything. Send errors (no route, buffer full)
    /// count the packets as dropped; they never stop the data path.
    pub async fn flush(&mut self, socket: &UdpEndpoint, metrics: &Metrics) {
        let Some(to) = self.to.take() else { return };
        let count = std::mem::take(&mut self.count);
        let inner = std::mem::take(&mut self.inner_bytes);
        if count == 0 {
            return;
        }
        let segment = (count > 1).then_some(self.segment);
        match socket.send(to, self.from, &self.buf, segment).await {
            Ok(()) => metrics.packets(PacketOutcome::Encrypted, count as u64, inner),
            Err(e) => {
                tracing::debug!("ESP to {to}: {e}");
                metrics.packets(PacketOutcome::Dropped, count as u64, inner);
            }
        }
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_equal_segments() {
        let a: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:4500".parse().unwrap();
        let mut g = GsoBatch::new(3);
        assert!(g.fits(a, None, 100));
        g.push(a, None, &[0; 100], 60);
        assert!(g.fits(a, None, 100));
        assert!(!g.fits(b, None, 100));
        assert!(!g.fits(a, None, 101));
        g.push(a, None, &[0; 80], 40);
        assert!(!g.fits(a, None, 80), "a shorter segment ends the run");
        let mut g = GsoBatch::new(2);
        g.push(a, None, &[0; 10], 1);
        g.push(a, None, &[0; 10], 1);
        assert!(!g.fits(a, None, 10), "segment limit");
    }
}

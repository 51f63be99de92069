//! Peers behind a NAT that came back from a new port (NAT rebinding, RFC 7296
//! §2.23, RFC 3948 §2.2), reported by the UDP workers to the control plane,
//! which checks the move with core and then points the IKE SA's halves at the
//! new address (`SaTable::move_peer`) and counts it
//! (`Metrics::nat_moved`, `oemesh_nat_moves_total`).
//!
//! A worker reports only after an ESP packet from the new address opened
//! (ICV, replay window and traffic selectors passed), only for SAs that float
//! (`Install::floats`), and only for a new port on the same IP
//! (`sa_table::Inbound::moved`). [`MovedReports`] passes at most one report
//! per IKE SA per second of the clock (a small table of recent SAs, shared
//! without a lock; a collision only lets one more report through) over a
//! bounded queue; when it is full the report is dropped and counted
//! ([`MovedReports::queue_full`]). The rate limit and the queue are `datapath::reports`'.
//!
//! The queue is made with the data path (`MovedReports::default`); the
//! control plane takes its end once, at start ([`MovedReports::inbox`]).

use std::net::SocketAddr;
use std::time::Instant;

use oemesh_core::ike::endpoint::SaHandle;
use tokio::sync::mpsc;

pub use super::reports::Reported;

/// Reports queued for the control plane at most.
const QUEUE: usize = 64;

/// A peer seen at a new UDP address under an SA that floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The IKE SA.
    pub sa: SaHandle,
    /// Where the authentic packet came from.
    pub from: SocketAddr,
}

/// See the module docs: one report per IKE SA per second.
#[derive(Debug)]
pub struct MovedReports(super::reports::Reports<Moved>);

impl Default for MovedReports {
    /// The workers' end of a new queue; the control plane's end waits in it.
    fn default() -> Self {
        Self(super::reports::Reports::with_capacity(QUEUE))
    }
}

impl MovedReports {
    /// The control plane's end of the queue; there is one, taken once.
    pub fn inbox(&self) -> mpsc::Receiver<Moved> {
        self.0.inbox()
    }

    /// An authentic packet of `moved.sa` came from a new port: report it,
    /// unless that IKE SA was reported this second.
    pub fn report(&self, now: Instant, moved: Moved) -> Reported {
        self.0.report(now, moved.sa, moved)
    }

    /// Reports dropped so far because the queue was full.
    pub fn queue_full(&self) -> u64 {
        self.0.queue_full()
    }
}

/// The control plane's side: `first`, then the reports queued now (a bounded
/// batch), each handed to `node`, which moves the IKE SA and its CHILD SAs
/// (a [`oemesh_core::oe::Command::MovePeer`] follows) when the peer is behind
/// a NAT and only the port changed.
pub fn pass(first: Moved, node: &mut oemesh_core::oe::Node, rx: &mut mpsc::Receiver<Moved>) {
    let mut next = Some(first);
    for _ in 0..BATCH {
        let Some(m) = next.take().or_else(|| rx.try_recv().ok()) else {
            return;
        };
        if !node.handle_esp_moved(m.sa, m.from) {
            tracing::debug!(
                "IKE SA {}: ESP from {} not taken as a move (not behind a NAT, or gone)",
                m.sa.0,
                m.from
            );
        }
    }
}

/// Reports handled in one go, so that a flood of them cannot starve the
/// control plane's other inputs.
const BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn moved(sa: u64, port: u16) -> Moved {
        Moved {
            sa: SaHandle(sa),
            from: SocketAddr::from(([192, 0, 2, 7], port)),
        }
    }

    #[test]
    fn one_report_per_sa_per_second_and_a_full_queue_drops() {
        let (tx, mut rx) = mpsc::channel(2);
        let r = MovedReports(super::super::reports::Reports::new(tx));
        let t = r.0.epoch;
        assert_eq!(r.report(t, moved(1, 4500)), Reported::Queued);
        // Another port of the same SA within the second: not again.
        assert_eq!(r.report(t, moved(1, 4501)), Reported::Recent);
        assert_eq!(
            r.report(t + Duration::from_millis(900), moved(1, 4502)),
            Reported::Recent
        );
        assert_eq!(r.report(t, moved(2, 4500)), Reported::Queued);
        // The queue (2) is full now.
        assert_eq!(
            r.report(t + Duration::from_secs(1), moved(1, 4503)),
            Reported::QueueFull
        );
        assert_eq!(r.queue_full(), 1);
        assert_eq!(rx.try_recv().unwrap(), moved(1, 4500));
        assert_eq!(rx.try_recv().unwrap(), moved(2, 4500));
        assert_eq!(
            r.report(t + Duration::from_secs(2), moved(1, 4504)),
            Reported::Queued
        );
        assert_eq!(rx.try_recv().unwrap(), moved(1, 4504));
    }

    #[test]
    fn the_control_planes_end_is_taken_once() {
        let r = MovedReports::default();
        let mut rx = r.inbox();
        assert_eq!(r.report(Instant::now(), moved(3, 1)), Reported::Queued);
        assert_eq!(rx.try_recv().unwrap(), moved(3, 1));
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.inbox()));
        assert!(again.is_err());
    }
}

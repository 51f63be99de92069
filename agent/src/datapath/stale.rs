//! ESP whose SPI names no SA, reported by source from the UDP workers to the
//! control plane, which passes it to core's `Node::handle_stale_spi`: after
//! this host restarts, its peers still send under the SAs from before, and
//! the node may start OE toward them (`docs/ike.md`, "After a restart").
//!
//! [`StaleReports`] (the workers' side) reports a source at most once per
//! second of the clock (a small table of recent sources, shared without a
//! lock; a collision only lets one more report through), over a bounded
//! queue: when it is full the report is dropped and counted
//! (`oemesh_stale_spi_total{fate="queue_full"}`). That only spares the
//! control plane a report per packet of a peer's flow; the bounds that
//! matter against spoofed sources are core's (per source, a rate of their
//! own, the policy group). [`StaleInbox`] (the control plane's side) skips
//! sources the data path has an SA or an outcome for, and counts every
//! report by what it did.
//!
//! The queue is made with the data path (`StaleReports::default`), and the
//! control plane takes its end once, at start ([`StaleReports::inbox`]). The
//! control plane's half lives here, not in `control_plane`, and the queue is
//! not made in `run`: both have line budgets (`scripts/structure`).

use std::net::IpAddr;
use std::time::Instant;

use oemesh_core::oe::{Node, StaleSpiFate};
use tokio::sync::mpsc;

use super::DataPath;
pub use super::reports::Reported;

/// Reports queued for the control plane at most.
const QUEUE: usize = 256;

/// Reports handled per round of the control plane at most.
const BATCH: usize = 64;

/// See the module docs: one report per source per second.
#[derive(Debug)]
pub struct StaleReports(super::reports::Reports<IpAddr>);

impl Default for StaleReports {
    /// The workers' end of a new queue; the control plane's end waits in it.
    fn default() -> Self {
        Self(super::reports::Reports::with_capacity(QUEUE))
    }
}

impl StaleReports {
    /// The control plane's end of the queue; there is one, taken once.
    pub fn inbox(&self) -> StaleInbox {
        StaleInbox { rx: self.0.inbox() }
    }

    /// ESP from `from` named no SA: report it, unless it was this second.
    pub fn report(&self, now: Instant, from: IpAddr) -> Reported {
        let from = from.to_canonical();
        self.0.report(now, from, from)
    }
}

/// The control plane's end: see the module docs.
#[derive(Debug)]
pub struct StaleInbox {
    rx: mpsc::Receiver<IpAddr>,
}

impl StaleInbox {
    /// The next report (`None` once every worker is gone).
    pub async fn recv(&mut self) -> Option<IpAddr> {
        self.rx.recv().await
    }

    /// `first`, then the reports queued now (a bounded batch): those without
    /// an SA or a cached outcome in `dp` (as for a packet from the TUN) go to
    /// `node`; each is counted by what it did.
    pub fn pass(&mut self, first: IpAddr, node: &mut Node, dp: &DataPath) {
        let now = Instant::now();
        let mut next = Some(first);
        for _ in 0..BATCH {
            let Some(src) = next.take().or_else(|| self.rx.try_recv().ok()) else {
                return;
            };
            let fate = if dp.sas.outbound(src).is_some() || dp.outcomes.get(src).is_some() {
                StaleSpiFate::Known
            } else {
                node.handle_stale_spi(now, src)
            };
            if fate != StaleSpiFate::Started {
                tracing::debug!("{src}: ESP with an unknown SPI: {fate:?}");
            }
            dp.metrics.stale_spi(fate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_report_per_source_per_second_and_a_full_queue_drops() {
        let (tx, mut rx) = mpsc::channel(2);
        let r = StaleReports(super::super::reports::Reports::new(tx));
        let t = r.0.epoch;
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert_eq!(r.report(t, a), Reported::Queued);
        assert_eq!(r.report(t, a), Reported::Recent);
        assert_eq!(
            r.report(t + Duration::from_millis(900), a),
            Reported::Recent
        );
        assert_eq!(r.report(t, b), Reported::Queued);
        // The queue (2) is full now.
        assert_eq!(r.report(t + Duration::from_secs(1), a), Reported::QueueFull);
        assert_eq!(rx.try_recv().unwrap(), a);
        assert_eq!(
            rx.try_recv().unwrap(),
            "192.0.2.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(r.report(t + Duration::from_secs(2), a), Reported::Queued);
    }

    #[test]
    fn the_control_planes_end_is_taken_once() {
        let r = StaleReports::default();
        let mut inbox = r.inbox();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(r.report(Instant::now(), a), Reported::Queued);
        assert_eq!(inbox.rx.try_recv().unwrap(), a);
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.inbox()));
        assert!(again.is_err());
    }
}

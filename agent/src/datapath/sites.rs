//! Outbound halves that carry a whole site (issue 14): a CHILD SA whose
//! remote traffic selector holds subnets beyond the one destination it was
//! installed for (a gateway's site, vouched for by DNS when this host was the
//! responder) carries packets to any address inside them, not only to its
//! destination. Without this, the far site's replies to a host behind this
//! gateway would start an IKE SA of their own per address (and a stock
//! strongSwan gateway, which cannot narrow to one host it does not own with
//! kernel-libipsec, refuses those).
//!
//! Read on a miss of the exact-destination table only (the first packet to
//! an address, and every packet to an address served this way): one
//! `arc-swap` load and a scan of a short list. Written by the control plane
//! with the table's writer lock held.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use oemesh_core::ike::message::{AddrRange, AddrSelector};

use super::ip::selector_admits;
use super::sa_table::Outbound;

/// The site routes: each remote selector wider than one address, with the
/// outbound half that carries it.
#[derive(Debug, Default)]
pub struct Sites {
    routes: ArcSwap<Vec<(AddrSelector, Arc<Outbound>)>>,
}

impl Sites {
    /// The half that carries packets to `dst`, if a site route covers it
    /// (the narrowest, on overlap; the routes are whole-protocol selectors,
    /// so the address decides).
    pub fn find(&self, dst: IpAddr) -> Option<Arc<Outbound>> {
        let routes = self.routes.load();
        routes
            .iter()
            .filter(|(sel, _)| selector_admits(sel, dst.to_canonical(), 0, None))
            .min_by_key(|(sel, _)| width(sel))
            .map(|(_, out)| out.clone())
    }

    /// `out` is now the half for its destination: its wide selectors
    /// (`remote_ts` beyond that one address, whole-protocol ones only)
    /// become routes, replacing those of the half it replaces.
    pub fn publish(&self, out: &Arc<Outbound>, remote_ts: &[AddrSelector]) {
        let mut routes: Vec<_> = self
            .routes
            .load()
            .iter()
            .filter(|(_, o)| o.dst != out.dst)
            .cloned()
            .collect();
        for sel in remote_ts {
            let whole = sel.ip_protocol == 0 && (sel.start_port, sel.end_port) == (0, u16::MAX);
            if whole && sel.single_address().is_none() {
                routes.push((sel.clone(), out.clone()));
            }
        }
        self.routes.store(Arc::new(routes));
    }

    /// `out` is gone: so are its routes.
    pub fn remove(&self, out: &Arc<Outbound>) {
        let routes = self.routes.load();
        if routes.iter().any(|(_, o)| Arc::ptr_eq(o, out)) {
            let kept = routes
                .iter()
                .filter(|(_, o)| !Arc::ptr_eq(o, out))
                .cloned()
                .collect();
            self.routes.store(Arc::new(kept));
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.routes.load().is_empty()
    }
}

/// How many addresses a selector spans, for "narrowest first".
fn width(sel: &AddrSelector) -> u128 {
    match sel.addrs {
        AddrRange::V4(lo, hi) => u128::from(u32::from(hi).saturating_sub(u32::from(lo))),
        AddrRange::V6(lo, hi) => u128::from(hi).saturating_sub(u128::from(lo)),
    }
}

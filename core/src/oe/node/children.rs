//! The node's record of the ESP SA pairs its driver installed: which
//! destination each protects, which outbound half serves each destination,
//! and whether any SA still serves a peer. It mirrors the agent's SA table
//! command for command, so the node decides without asking the data path.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ike::message::{AddrRange, AddrSelector};

/// An outbound half: the pair it belongs to and where it sends.
#[derive(Clone, Copy, Debug)]
struct Outbound {
    inbound_spi: u32,
    remote: IpAddr,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Children {
    /// Inbound SPI → the destination of its pair.
    inbound: HashMap<u32, IpAddr>,
    /// Inbound halves per destination.
    per_dst: HashMap<IpAddr, usize>,
    /// The outbound half that serves each destination.
    published: HashMap<IpAddr, Outbound>,
    /// First outbound halves, held back until the held packets are out.
    unpublished: HashMap<IpAddr, Outbound>,
}

impl Children {
    /// A pair for `dst` is installed (`InstallChild`).
    pub(super) fn install(&mut self, dst: IpAddr, inbound_spi: u32, remote: IpAddr, publish: bool) {
        // SPIs are the engine's and unique; should one come back, the half it
        // replaces no longer serves its peer.
        if let Some(old) = self.inbound.insert(inbound_spi, dst) {
            self.less(old);
        }
        *self.per_dst.entry(dst).or_default() += 1;
        let out = Outbound {
            inbound_spi,
            remote,
        };
        if publish {
            self.published.insert(dst, out);
        } else {
            self.unpublished.insert(dst, out);
        }
    }

    /// Makes `dst`'s unpublished outbound half the one that serves it;
    /// whether there was one (`PublishOutbound`).
    pub(super) fn publish(&mut self, dst: IpAddr) -> bool {
        match self.unpublished.remove(&dst) {
            Some(out) => {
                self.published.insert(dst, out);
                true
            }
            None => false,
        }
    }

    /// Removes the pair with `inbound_spi` (`RemoveChild`): the inbound half,
    /// an unpublished outbound one, and the published one if it is the
    /// pair's. Returns the peer of whatever was removed.
    pub(super) fn remove(&mut self, inbound_spi: u32) -> Option<IpAddr> {
        self.unpublished.retain(|_, o| o.inbound_spi != inbound_spi);
        let inbound = self.inbound.remove(&inbound_spi);
        if let Some(peer) = inbound {
            self.less(peer);
        }
        let dst = match inbound {
            Some(peer) => Some(peer).filter(|dst| {
                self.published
                    .get(dst)
                    .is_some_and(|o| o.inbound_spi == inbound_spi)
            }),
            None => self
                .published
                .iter()
                .find(|(_, o)| o.inbound_spi == inbound_spi)
                .map(|(dst, _)| *dst),
        };
        let outbound = dst.filter(|dst| self.published.remove(dst).is_some());
        inbound.or(outbound)
    }

    /// The destination of the pair with `inbound_spi`.
    pub(super) fn dst_of(&self, inbound_spi: u32) -> Option<IpAddr> {
        self.inbound.get(&inbound_spi).copied()
    }

    /// Where the outbound half serving `dst` sends.
    pub(super) fn remote_of(&self, dst: IpAddr) -> Option<IpAddr> {
        self.published.get(&dst).map(|o| o.remote)
    }

    /// Whether any SA still serves `peer`: a published outbound half to it or
    /// an inbound half from it.
    pub(super) fn serves(&self, peer: IpAddr) -> bool {
        self.published.contains_key(&peer) || self.per_dst.contains_key(&peer)
    }

    fn less(&mut self, peer: IpAddr) {
        if let Some(n) = self.per_dst.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_dst.remove(&peer);
            }
        }
    }
}

/// The single address a list of selectors names, if it names exactly one host.
pub(super) fn single_host(selectors: &[AddrSelector]) -> Option<IpAddr> {
    match selectors {
        [one] => match one.addrs {
            AddrRange::V4(lo, hi) if lo == hi => Some(IpAddr::V4(lo)),
            AddrRange::V6(lo, hi) if lo == hi => Some(IpAddr::V6(lo)),
            _ => None,
        },
        _ => None,
    }
}

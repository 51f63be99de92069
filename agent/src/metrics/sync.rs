//! Taking core's counts into the metrics after each control-plane round.

use std::sync::atomic::Ordering::Relaxed;

use oemesh_core::oe::{self, Dnssec, Node};

use super::{Metrics, TrustEvent};

/// What [`Metrics::sync`] last took from the node, to add only what is new.
#[derive(Debug, Default)]
pub struct NodeTotals {
    counters: oe::Counters,
    ike_auth_failures: u64,
    cookies_sent: u64,
}

impl Metrics {
    /// Takes the node's counts (core keeps them) after a control-plane round.
    pub fn sync(&self, node: &Node, last: &mut NodeTotals) {
        let c = node.machine().counters();
        let held = |c: &oe::Counters| c.hold_dst_full + c.hold_total_full + c.hold_too_big;
        let delta = held(&c).saturating_sub(held(&last.counters));
        if delta > 0 {
            self.hold_drops_add(delta);
        }
        last.counters = c;
        let stats = node.endpoint().stats();
        // The UDP workers count theirs as they send them.
        let engine = stats.cookies_sent;
        self.ike_cookies_sent
            .inc_by(engine.saturating_sub(last.cookies_sent));
        last.cookies_sent = engine;
        self.set_ike_drops(&stats.drops);
        use TrustEvent as T;
        self.set_trust(T::WrongAddress, stats.wrong_address);
        self.set_trust(T::HalfOpenSourceFull, stats.half_open_source_full);
        self.set_trust(
            T::IdentityRefused,
            stats.identity_refused + c.identity_refused,
        );
        self.set_trust(T::InitialContactIgnored, stats.initial_contact_ignored);
        self.set_trust(T::AnonymousEvicted, stats.anonymous_evicted);
        self.set_trust(T::AnonymousLookupFailed, c.anonymous_lookup_failed);
        self.set_trust(T::Downgrade, c.downgrades);
        self.set_trust(T::TsRefused, stats.ts_refused);
        self.set_trust(T::NotVouched, c.not_vouched);
        for state in Dnssec::ALL {
            let n = c.dnssec[state as usize];
            self.dnssec[state as usize].inner().store(n, Relaxed);
        }
        self.nat_addresses[0]
            .inner()
            .store(stats.addresses_assigned, Relaxed);
        for (i, n) in stats.addresses_refused.iter().enumerate() {
            if let Some(c) = self.nat_addresses.get(i + 1) {
                c.inner().store(*n, Relaxed);
            }
        }
        let auth = stats.auth_failures;
        if auth > last.ike_auth_failures {
            self.ike_auth_failures_add(auth - last.ike_auth_failures);
            last.ike_auth_failures = auth;
        }
    }
}

//! Changing the routed policy of a running agent (`oemesh reload`): only the
//! prefixes whose group changed are touched, so traffic to every other prefix
//! never sees its route go.
//!
//! Per prefix, our table holds a route at metric 0 (into the TUN, or a
//! `throw` for `clear`) and, for `private` and `block`, an `unreachable` one
//! at [`FAIL_CLOSED_METRIC`]. A change is made before break
//! ([`Routing::install_prefix`](super::routes::Routing)): a fail-closed route
//! is added first, the new metric-0 route replaces the old one in one netlink
//! request (`NLM_F_REPLACE`), and only then are the routes of prefixes that
//! went away, and fail-closed routes no longer wanted, deleted.

use std::collections::HashMap;

use std::net::IpAddr;

use netlink_packet_route::route::{RouteAttribute, RouteMessage};

use super::routes::{FAIL_CLOSED_METRIC, RouteError, Routing, delete_routes_unless, route_key};
use crate::config::{Cidr, Group};

/// What [`Routing::apply_policy`] changed, for the reload report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PolicyRouteChanges {
    /// Prefixes that got routes.
    pub added: usize,
    /// Prefixes whose routes changed (another group).
    pub changed: usize,
    /// Prefixes whose routes went.
    pub removed: usize,
    /// Peers whose bypass route a new host prefix replaced (no longer theirs
    /// to remove).
    pub replaced_bypasses: Vec<IpAddr>,
}

impl Routing {
    /// Moves our table from `old` to `new`: prefixes that appear, disappear or
    /// change group get their routes changed, and nothing else is touched.
    /// Bypass routes (`throw peer/32`) are left to their outcomes.
    pub async fn apply_policy(
        &mut self,
        tun_index: u32,
        old: &[(Cidr, Group)],
        new: &[(Cidr, Group)],
        source: crate::config::Addresses,
    ) -> Result<PolicyRouteChanges, RouteError> {
        let before: HashMap<Cidr, Group> = old.iter().copied().collect();
        let after: HashMap<Cidr, Group> = new.iter().copied().collect();
        let mut changes = PolicyRouteChanges::default();
        // Routes to delete once the new ones are in: (prefix, fail-closed
        // route only).
        let mut stale: HashMap<Cidr, bool> = HashMap::new();
        for &(prefix, group) in new {
            let was = before.get(&prefix).copied();
            if was == Some(group) {
                continue;
            }
            self.install_prefix(tun_index, prefix, group, source)
                .await?;
            // A host prefix replaced a bypass route of the same destination:
            // removing that bypass later must not take the new route with it.
            if prefix.prefix_len() == Cidr::host(prefix.addr()).prefix_len()
                && self.bypasses.remove(&prefix.addr())
            {
                changes.replaced_bypasses.push(prefix.addr());
            }
            if was.is_some_and(Group::fails_closed) && !group.fails_closed() {
                stale.insert(prefix, true);
            }
            match was {
                Some(_) => changes.changed += 1,
                None => changes.added += 1,
            }
        }
        for &(prefix, _) in old {
            if !after.contains_key(&prefix) {
                stale.insert(prefix, false);
                changes.removed += 1;
            }
        }
        if !stale.is_empty() {
            // One listing of the table for every delete (a scan per prefix
            // made removing 1,000 prefixes take seconds).
            delete_routes_unless(&self.handle, self.cfg.table, |r| {
                let Some((prefix, ..)) = route_key(r) else {
                    return true;
                };
                match stale.get(&prefix) {
                    Some(&fail_closed_only) => fail_closed_only && !is_fail_closed(r),
                    None => true,
                }
            })
            .await?;
        }
        self.entries = new.to_vec();
        Ok(changes)
    }
}

/// Whether `route` is a fail-closed (`unreachable`, [`FAIL_CLOSED_METRIC`]) one.
fn is_fail_closed(route: &RouteMessage) -> bool {
    route
        .attributes
        .iter()
        .any(|a| matches!(a, RouteAttribute::Priority(p) if *p == FAIL_CLOSED_METRIC))
}

//! Changing the routed policy of a running agent (`oemesh reload`): only the
//! prefixes whose group changed are touched, so traffic to every other prefix
//! never sees its route go.
//!
//! Per prefix, our table holds a route at metric 0 (into the TUN, or a
//! `throw` for `clear`) and, for `private` and `block`, an `unreachable` one
//! at [`FAIL_CLOSED_METRIC`]. A change is
//! made before-break: the new metric-0 route replaces the old one in one
//! netlink request (`NLM_F_REPLACE`), a fail-closed route is added before one
//! is removed, and a prefix that went away loses its fail-closed route last.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::routes::{
    ENOENT, ESRCH, FAIL_CLOSED_METRIC, RouteError, Routing, errno, fail_closed_route, route_table,
};
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
        source: Option<IpAddr>,
    ) -> Result<PolicyRouteChanges, RouteError> {
        let table = self.cfg.table;
        let before: HashMap<Cidr, Group> = old.iter().copied().collect();
        let after: HashMap<Cidr, Group> = new.iter().copied().collect();
        let mut changes = PolicyRouteChanges::default();
        // What is to be deleted existed before this call: one listing of the
        // table serves every delete (a scan per prefix made removing 1,000
        // prefixes take seconds).
        let listing = if new.iter().any(|(p, g)| {
            before
                .get(p)
                .is_some_and(|was| was.fails_closed() && !g.fails_closed())
        }) || old.iter().any(|(p, _)| !after.contains_key(p))
        {
            self.list_table().await?
        } else {
            Vec::new()
        };
        for &(prefix, group) in new {
            let was = before.get(&prefix).copied();
            if was == Some(group) {
                continue;
            }
            // Fail closed first, so that no moment has the prefix open.
            if group.fails_closed() {
                self.add_route(
                    fail_closed_route(prefix, table),
                    &format!("unreachable {prefix} ({group}) in table {table}"),
                )
                .await?;
            }
            let (route, what) = self.prefix_route(tun_index, prefix, group, source)?;
            self.replace_route(route, &format!("{what} in table {table}"))
                .await?;
            // A host prefix replaced a bypass route of the same destination:
            // removing that bypass later must not take the new route with it.
            if prefix.prefix_len() == Cidr::host(prefix.addr()).prefix_len() {
                self.bypasses.remove(&prefix.addr());
            }
            if was.is_some_and(Group::fails_closed) && !group.fails_closed() {
                self.delete_routes(&listing, prefix, Metric::FailClosed)
                    .await?;
            }
            match was {
                Some(_) => changes.changed += 1,
                None => changes.added += 1,
            }
        }
        for &(prefix, _) in old {
            if after.contains_key(&prefix) {
                continue;
            }
            self.delete_routes(&listing, prefix, Metric::Main).await?;
            self.delete_routes(&listing, prefix, Metric::FailClosed)
                .await?;
            changes.removed += 1;
        }
        Ok(changes)
    }

    /// Adds `route`, replacing the one with the same destination and metric.
    async fn replace_route(&self, route: RouteMessage, what: &str) -> Result<(), RouteError> {
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| RouteError::new(format!("replacing route {what}"), e))
    }

    /// Every route of our table, both families.
    async fn list_table(&self) -> Result<Vec<RouteMessage>, RouteError> {
        let table = self.cfg.table;
        let mut all = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new()
                .table_id(table)
                .build(),
            RouteMessageBuilder::<Ipv6Addr>::new()
                .table_id(table)
                .build(),
        ] {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(|e| RouteError::new(format!("listing routes of table {table}"), e))?;
            all.extend(routes.into_iter().filter(|r| route_table(r) == table));
        }
        Ok(all)
    }

    /// Deletes the routes in `listing` for exactly `prefix` at `metric`, as
    /// the kernel listed them (so each delete names its route exactly).
    async fn delete_routes(
        &self,
        listing: &[RouteMessage],
        prefix: Cidr,
        metric: Metric,
    ) -> Result<(), RouteError> {
        let table = self.cfg.table;
        for route in listing
            .iter()
            .filter(|r| is_prefix(r, prefix) && metric.matches(r))
        {
            match self.handle.route().del(route.clone()).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(ENOENT | ESRCH)) => {}
                Err(e) => {
                    return Err(RouteError::new(
                        format!("deleting a route for {prefix} in table {table}"),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Which of a prefix's routes.
#[derive(Clone, Copy, Debug)]
enum Metric {
    /// The one at metric 0 (TUN or throw).
    Main,
    /// The `unreachable` one behind it.
    FailClosed,
}

impl Metric {
    fn matches(self, route: &RouteMessage) -> bool {
        let priority = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        });
        let fail_closed = priority == Some(FAIL_CLOSED_METRIC);
        match self {
            Metric::Main => !fail_closed,
            Metric::FailClosed => fail_closed,
        }
    }
}

/// Whether `route` is for exactly `prefix`.
fn is_prefix(route: &RouteMessage, prefix: Cidr) -> bool {
    if route.header.destination_prefix_length != prefix.prefix_len() {
        return false;
    }
    route.attributes.iter().any(|a| match a {
        RouteAttribute::Destination(d) => {
            let addr: Option<IpAddr> = match d {
                netlink_packet_route::route::RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
                netlink_packet_route::route::RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
                _ => None,
            };
            addr == Some(prefix.addr())
        }
        _ => false,
    })
}

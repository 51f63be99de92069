//! State a previous run left, and what the start and `oemesh down` do with
//! it: counting it, sweeping what the new policy does not have (after the new
//! state is in: make before break), or removing all of it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::rule::{RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::{ENOENT, ESRCH, RouteError, errno, link_index, route_table};
use crate::config::{Cidr, RoutingConfig};

/// What [`cleanup_stale`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Rules removed.
    pub rules: usize,
    /// Routes removed from our table.
    pub routes: usize,
    /// Whether a leftover TUN was removed.
    pub link: bool,
}

impl Cleaned {
    /// Whether anything was left behind.
    pub fn is_empty(&self) -> bool {
        *self == Cleaned::default()
    }
}

/// Removes everything a run leaves: our rules, every route in our table, and
/// the interface `tun_name` (`oemesh down`). Safe to call when nothing is there.
pub async fn cleanup_stale(
    handle: &Handle,
    cfg: &RoutingConfig,
    tun_name: &str,
) -> Result<Cleaned, RouteError> {
    Ok(Cleaned {
        rules: delete_rules(handle, cfg).await?,
        routes: flush_table(handle, cfg.table).await?,
        link: remove_link(handle, tun_name).await?,
    })
}

/// Deletes the interface `tun_name` if it exists (a TUN left by a previous
/// run); returns whether it did. Its routes go with it; the `unreachable`
/// routes, which name no device, stay.
pub async fn remove_link(handle: &Handle, tun_name: &str) -> Result<bool, RouteError> {
    let Some(index) = link_index(handle, tun_name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(-19) => Ok(false), // ENODEV: gone meanwhile
        Err(e) => Err(RouteError::new(
            format!("deleting leftover link {tun_name}"),
            e,
        )),
    }
}

/// Whether a rule is one of ours: our priority and our table, or the
/// priority before it with `suppress_prefixlength` on main.
pub(super) fn is_our_rule(rule: &RuleMessage, cfg: &RoutingConfig) -> bool {
    let mut priority = None;
    let mut table = u32::from(rule.header.table);
    let mut suppress = false;
    for attr in &rule.attributes {
        match attr {
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::SuppressPrefixLen(n) => suppress = *n != NO_SUPPRESS,
            _ => {}
        }
    }
    match priority {
        Some(p) if p == cfg.rule_priority => table == cfg.table,
        Some(p) if p + 1 == cfg.rule_priority => {
            suppress && table == u32::from(RouteHeader::RT_TABLE_MAIN)
        }
        _ => false,
    }
}

/// Our rules (see `is_our_rule`), both families.
async fn our_rules(handle: &Handle, cfg: &RoutingConfig) -> Result<Vec<RuleMessage>, RouteError> {
    let mut ours = Vec::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        let rules: Vec<RuleMessage> = handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(|e| RouteError::new("listing rules", e))?;
        ours.extend(rules.into_iter().filter(|r| is_our_rule(r, cfg)));
    }
    Ok(ours)
}

/// Deletes our rules that `keep` rejects; returns how many.
async fn delete_rules_unless(
    handle: &Handle,
    cfg: &RoutingConfig,
    mut keep: impl FnMut(&RuleMessage) -> bool,
) -> Result<usize, RouteError> {
    let mut removed = 0;
    for rule in our_rules(handle, cfg).await? {
        if keep(&rule) {
            continue;
        }
        match handle.rule().del(rule).execute().await {
            Ok(()) => removed += 1,
            Err(e) if matches!(errno(&e), Some(ENOENT)) => {}
            Err(e) => return Err(RouteError::new("deleting rule", e)),
        }
    }
    Ok(removed)
}

/// Deletes all our rules.
pub(super) async fn delete_rules(
    handle: &Handle,
    cfg: &RoutingConfig,
) -> Result<usize, RouteError> {
    delete_rules_unless(handle, cfg, |_| false).await
}

/// `suppress_prefixlength` as the kernel reports a rule without one (-1).
const NO_SUPPRESS: u32 = u32::MAX;

/// What makes one of our rules the rule it is: priority, table, fwmark,
/// inversion, `suppress_prefixlength`.
pub(super) type RuleSignature = (Option<u32>, u32, Option<u32>, bool, bool);

pub(super) fn rule_signature(rule: &RuleMessage) -> RuleSignature {
    let mut sig = (None, u32::from(rule.header.table), None, false, false);
    for attr in &rule.attributes {
        match attr {
            RuleAttribute::Priority(p) => sig.0 = Some(*p),
            RuleAttribute::Table(t) => sig.1 = *t,
            RuleAttribute::FwMark(m) => sig.2 = Some(*m),
            RuleAttribute::SuppressPrefixLen(n) => sig.4 = *n != NO_SUPPRESS,
            _ => {}
        }
    }
    sig.3 = rule.header.flags.contains(RuleFlags::Invert);
    sig
}

/// The rules `cfg` asks for, per family.
pub(super) fn wanted_rules(cfg: &RoutingConfig) -> Vec<RuleSignature> {
    let mut wanted = vec![(
        Some(cfg.rule_priority),
        cfg.table,
        Some(cfg.fwmark),
        true,
        false,
    )];
    if cfg.suppress_main {
        wanted.push((
            Some(cfg.rule_priority - 1),
            u32::from(RouteHeader::RT_TABLE_MAIN),
            None,
            false,
            true,
        ));
    }
    wanted
}

/// Counts our rules (both families) without changing anything.
pub(super) async fn count_rules(handle: &Handle, cfg: &RoutingConfig) -> Result<usize, RouteError> {
    Ok(our_rules(handle, cfg).await?.len())
}

/// Deletes our rules that `cfg` does not ask for (another fwmark, a
/// `suppress_prefixlength` rule no longer wanted) and duplicates, keeping
/// one of each wanted rule per family: the second half of make-before-break.
pub(super) async fn sweep_rules(handle: &Handle, cfg: &RoutingConfig) -> Result<usize, RouteError> {
    let wanted = wanted_rules(cfg);
    let mut seen = HashSet::new();
    delete_rules_unless(handle, cfg, |rule| {
        let sig = rule_signature(rule);
        let keep = wanted.contains(&sig) && seen.insert((u8::from(rule.header.family), sig));
        if !keep {
            tracing::debug!("deleting stale rule {sig:?} (wanted: {wanted:?})");
        }
        keep
    })
    .await
}

/// What makes a route in our table the route it is, for make-before-break:
/// destination, kind (`RouteType` as its number), and for a route via a
/// device, the device.
pub(in crate::net) type RouteKey = (Cidr, u8, Option<u32>);

pub(in crate::net) fn route_key(route: &RouteMessage) -> Option<RouteKey> {
    let mut dst = None;
    let mut oif = None;
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = Some(IpAddr::V6(*a)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let dst = dst.or(match route.header.address_family {
        AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    })?;
    let prefix = Cidr::new(dst, route.header.destination_prefix_length).ok()?;
    let kind = route.header.kind;
    // Reject routes (throw, unreachable) hang off `lo` in IPv6: the device
    // only tells TUN routes apart.
    let oif = oif.filter(|_| kind == RouteType::Unicast);
    Some((prefix, u8::from(kind), oif))
}

/// Every route of our table, both families.
pub(super) async fn list_table(
    handle: &Handle,
    table: u32,
) -> Result<Vec<RouteMessage>, RouteError> {
    let mut all = Vec::new();
    let queries = [
        RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .build(),
        RouteMessageBuilder::<Ipv6Addr>::new()
            .table_id(table)
            .build(),
    ];
    for query in queries {
        let routes: Vec<RouteMessage> = handle
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

/// Deletes the routes of our table that `keep` rejects; returns how many.
pub(in crate::net) async fn delete_routes_unless(
    handle: &Handle,
    table: u32,
    keep: impl Fn(&RouteMessage) -> bool,
) -> Result<usize, RouteError> {
    let mut removed = 0;
    for route in list_table(handle, table).await? {
        if keep(&route) {
            continue;
        }
        match handle.route().del(route).execute().await {
            Ok(()) => removed += 1,
            Err(e) if matches!(errno(&e), Some(ENOENT | ESRCH)) => {}
            Err(e) => {
                return Err(RouteError::new(
                    format!("deleting a route in table {table}"),
                    e,
                ));
            }
        }
    }
    Ok(removed)
}

pub(super) async fn flush_table(handle: &Handle, table: u32) -> Result<usize, RouteError> {
    delete_routes_unless(handle, table, |_| false).await
}
/// How many of our rules and routes of our table there are: after a stop,
/// what keeps `private` and `block` closed; at start, what a previous run left.
pub async fn left_in_place(
    handle: &Handle,
    cfg: &RoutingConfig,
) -> Result<(usize, usize), RouteError> {
    Ok((
        count_rules(handle, cfg).await?,
        list_table(handle, cfg.table).await?.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, table: u32, suppress: Option<u32>) -> RuleMessage {
        let mut r = RuleMessage::default();
        r.attributes.push(RuleAttribute::Priority(priority));
        r.attributes.push(RuleAttribute::Table(table));
        if let Some(n) = suppress {
            r.attributes.push(RuleAttribute::SuppressPrefixLen(n));
        }
        r
    }

    /// The kernel reports `suppress_prefixlength -1` (none) on every rule: a
    /// rule of someone else's at our priority - 1 looking up main is not
    /// ours, and must survive a start's sweep and `oemesh down`.
    #[test]
    fn a_main_rule_without_suppress_at_our_priority_is_not_ours() {
        let cfg = RoutingConfig {
            table: 28517,
            fwmark: 0x6f65,
            rule_priority: 100,
            suppress_main: true,
        };
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        assert!(is_our_rule(&rule(99, main, Some(0)), &cfg));
        assert!(!is_our_rule(&rule(99, main, Some(NO_SUPPRESS)), &cfg));
        assert!(!is_our_rule(&rule(99, main, None), &cfg));
        assert!(is_our_rule(&rule(100, 28517, Some(NO_SUPPRESS)), &cfg));
        assert!(!is_our_rule(&rule(100, 254, Some(NO_SUPPRESS)), &cfg));
    }
}

//! Policy routing over netlink, the wg-quick pattern:
//!
//! - our table (`routing.table`) routes the OE prefixes (`private`,
//!   `private-or-clear`, `block`) into the TUN and `throw`s the `clear` ones
//!   inside them back to the next rule;
//! - a rule `not fwmark <mark> lookup <table>` before `main`: the agent's own
//!   sockets carry the mark (SO_MARK) and take the main table, so IKE, ESP and
//!   DNS never loop into the TUN;
//! - optionally `lookup main suppress_prefixlength 0` just before it;
//! - per clear peer, a `throw D/32` (or /128) route in our table: its later
//!   packets take the main table at zero cost until the outcome expires.
//!
//! A stop ([`Routing::teardown`]) removes only the TUN routes and the
//! bypasses: the rules, the `unreachable` routes of `private` and `block`
//! prefixes and the `throw` routes of `clear` prefixes stay, so that while the
//! agent is away (a restart, an upgrade) the table means what it meant while
//! it ran, minus the TUN: `private` and `block` fail closed. The next start
//! installs its routes and rules over that state and only then removes what
//! the new policy does not have ([`Routing::sweep_stale`]): make before break.
//! [`cleanup_stale`] removes everything (rules with our priorities pointing
//! at our table, every route in our table, a leftover TUN) for `oemesh down`;
//! it is idempotent.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::config::{Addresses, Cidr, Group, RoutingConfig, routed_to_tun};

mod leftover;

pub use leftover::{Cleaned, cleanup_stale, left_in_place, remove_link};
use leftover::{RouteKey, sweep_rules};
pub(super) use leftover::{delete_routes_unless, route_key};

/// EEXIST, ENOENT, ESRCH as netlink reports them (negated errno).
const EEXIST: i32 = -17;
pub(super) const ENOENT: i32 = -2;
pub(super) const ESRCH: i32 = -3;

/// A netlink request that failed, with what it was for.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {what}: {}", errno_text(.error))]
pub struct RouteError {
    what: String,
    error: rtnetlink::Error,
}

impl RouteError {
    pub(super) fn new(what: impl Into<String>, error: rtnetlink::Error) -> Self {
        RouteError {
            what: what.into(),
            error,
        }
    }
}

/// `Invalid argument (os error 22)` rather than rtnetlink's wordier form.
fn errno_text(e: &rtnetlink::Error) -> String {
    match errno(e) {
        Some(code) => std::io::Error::from_raw_os_error(-code).to_string(),
        None => e.to_string(),
    }
}

pub(super) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get()),
        _ => None,
    }
}

/// Opens a netlink route socket; its connection runs as a tokio task.
pub fn connect() -> std::io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

pub(super) fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// The installed routing state; [`Routing::teardown`] is the stop (it keeps
/// what fails closed), [`cleanup_stale`] the removal.
#[derive(Debug)]
pub struct Routing {
    pub(super) handle: Handle,
    pub(super) cfg: RoutingConfig,
    pub(super) bypasses: HashSet<IpAddr>,
    /// The prefixes routed now (`install`, then each `apply_policy`), for
    /// putting their routes in again with new source addresses.
    pub(super) entries: Vec<(Cidr, Group)>,
}

impl Routing {
    /// Installs the routes for `policy` (via the TUN with index `tun_index`,
    /// preferred source the address of `source` of each prefix's family) and
    /// the rules. On error, what was installed
    /// is removed again.
    pub async fn install(
        handle: Handle,
        cfg: &RoutingConfig,
        tun_index: u32,
        policy: &[(Cidr, Group)],
        source: Addresses,
    ) -> Result<Routing, RouteError> {
        let routing = Routing {
            handle,
            cfg: cfg.clone(),
            bypasses: HashSet::new(),
            entries: policy.to_vec(),
        };
        match routing.install_inner(tun_index, policy, source).await {
            Ok(()) => Ok(routing),
            Err(e) => {
                routing.teardown().await;
                Err(e)
            }
        }
    }

    async fn install_inner(
        &self,
        tun_index: u32,
        policy: &[(Cidr, Group)],
        source: Addresses,
    ) -> Result<(), RouteError> {
        for &(prefix, group) in policy {
            self.install_prefix(tun_index, prefix, group, source)
                .await?;
        }
        for v6 in [false, true] {
            if self.cfg.suppress_main {
                let req = self
                    .handle
                    .rule()
                    .add()
                    .priority(self.cfg.rule_priority - 1)
                    .table_id(u32::from(RouteHeader::RT_TABLE_MAIN))
                    .action(RuleAction::ToTable);
                let mut req = if v6 {
                    req.v6().replace().message_mut().clone()
                } else {
                    req.v4().replace().message_mut().clone()
                };
                req.attributes.push(RuleAttribute::SuppressPrefixLen(0));
                self.add_rule(req, "`lookup main suppress_prefixlength 0`")
                    .await?;
            }
            let req = self
                .handle
                .rule()
                .add()
                .priority(self.cfg.rule_priority)
                .fw_mark(self.cfg.fwmark)
                .table_id(self.cfg.table)
                .action(RuleAction::ToTable);
            let mut req = if v6 {
                req.v6().message_mut().clone()
            } else {
                req.v4().message_mut().clone()
            };
            req.header.flags |= RuleFlags::Invert;
            let what = format!(
                "`not fwmark {:#x} lookup {}`",
                self.cfg.fwmark, self.cfg.table
            );
            self.add_rule(req, &what).await?;
        }
        Ok(())
    }

    /// The route that carries `prefix` of `group` in our table: into the TUN
    /// (with `source` as preferred source address of its family), or a
    /// `throw` for `clear`; with a description for errors.
    fn prefix_route(
        &self,
        tun_index: u32,
        prefix: Cidr,
        group: Group,
        source: Addresses,
    ) -> Result<(RouteMessage, String), RouteError> {
        let route = if routed_to_tun(group) {
            let mut b = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(prefix.addr(), prefix.prefix_len())
                .map_err(|e| {
                    RouteError::new(
                        format!("route {prefix}: {e}"),
                        rtnetlink::Error::RequestFailed,
                    )
                })?
                .output_interface(tun_index)
                .table_id(self.cfg.table)
                .protocol(RouteProtocol::Static)
                .scope(RouteScope::Link);
            if let Some(src) = source.for_family(prefix.addr()) {
                b = b.pref_source(src).map_err(|e| {
                    RouteError::new(
                        format!("route {prefix} src {src}: {e}"),
                        rtnetlink::Error::RequestFailed,
                    )
                })?;
            }
            b.build()
        } else {
            throw_route(prefix, self.cfg.table)
        };
        let what = match source.for_family(prefix.addr()) {
            Some(src) if routed_to_tun(group) => {
                format!(
                    "{prefix} ({group}) via the TUN, src {src} (is `address` assigned to an interface?)"
                )
            }
            _ => format!("{prefix} ({group})"),
        };
        Ok((route, what))
    }

    /// Adds `rule` unless an identical one is there (a previous run's, kept
    /// by its stop): the kernel has no replace for rules, and deleting first
    /// would leave a moment without it.
    async fn add_rule(&self, rule: RuleMessage, what: &str) -> Result<(), RouteError> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = rule;
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(RouteError::new(format!("adding rule {what}"), e)),
        }
    }

    /// Installs the routes of `prefix` in `group`: for `private` and `block`
    /// first the `unreachable` one at [`FAIL_CLOSED_METRIC`], then the one at
    /// metric 0 (into the TUN, or a `throw`), replacing one a previous run or
    /// configuration left for the same prefix and metric in one request, so
    /// that the prefix never has a moment without a route.
    ///
    /// The fail-closed route outlives the TUN: while the agent is stopped (a
    /// restart, an upgrade: `teardown` keeps it) or dead (SIGKILL, a crash),
    /// the TUN route is gone and this one keeps `private` and `block` traffic
    /// from leaving in clear until the agent is back or `oemesh down` runs.
    pub(super) async fn install_prefix(
        &self,
        tun_index: u32,
        prefix: Cidr,
        group: Group,
        source: Addresses,
    ) -> Result<(), RouteError> {
        let table = self.cfg.table;
        if group.fails_closed() {
            self.add_route(
                fail_closed_route(prefix, table),
                &format!(
                    "unreachable {prefix} ({group}, metric {FAIL_CLOSED_METRIC}) in table {table}"
                ),
            )
            .await?;
        }
        let (route, what) = self.prefix_route(tun_index, prefix, group, source)?;
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| RouteError::new(format!("adding route {what} in table {table}"), e))
    }

    async fn add_route(&self, route: RouteMessage, what: &str) -> Result<(), RouteError> {
        match self.handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(RouteError::new(format!("adding route {what}"), e)),
        }
    }

    /// Sends later packets to `peer` along the main table (a clear outcome):
    /// `throw peer/32` in our table. Idempotent.
    pub async fn add_bypass(&mut self, peer: IpAddr) -> Result<(), RouteError> {
        let prefix = Cidr::host(peer);
        self.add_route(
            throw_route(prefix, self.cfg.table),
            &format!("throw {prefix}"),
        )
        .await?;
        self.bypasses.insert(peer);
        Ok(())
    }

    /// Removes the bypass of `peer` (its clear outcome expired), so that its
    /// next packet reaches the agent again. Idempotent.
    pub async fn remove_bypass(&mut self, peer: IpAddr) -> Result<(), RouteError> {
        if !self.bypasses.remove(&peer) {
            return Ok(());
        }
        let route = throw_route(Cidr::host(peer), self.cfg.table);
        match self.handle.route().del(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(ENOENT | ESRCH)) => Ok(()),
            Err(e) => Err(RouteError::new(format!("deleting throw {peer}"), e)),
        }
    }

    /// Peers with a bypass route.
    pub fn bypasses(&self) -> impl Iterator<Item = &IpAddr> {
        self.bypasses.iter()
    }

    /// Removes, after the agent installed its own state over what a previous
    /// run left, whatever of that the policy no longer has: routes in our
    /// table other than `policy`'s (via the TUN `tun_index`) and the current
    /// bypasses, our rules other than the ones `cfg` asks for, duplicates.
    /// Returns what it removed (`link` stays false).
    pub async fn sweep_stale(
        &self,
        tun_index: u32,
        policy: &[(Cidr, Group)],
    ) -> Result<Cleaned, RouteError> {
        let mut wanted: HashSet<RouteKey> = HashSet::new();
        for &(prefix, group) in policy {
            if routed_to_tun(group) {
                wanted.insert((prefix, u8::from(RouteType::Unicast), Some(tun_index)));
            } else {
                wanted.insert((prefix, u8::from(RouteType::Throw), None));
            }
            if group.fails_closed() {
                wanted.insert((prefix, u8::from(RouteType::Unreachable), None));
            }
        }
        for &peer in &self.bypasses {
            wanted.insert((Cidr::host(peer), u8::from(RouteType::Throw), None));
        }
        let routes = delete_routes_unless(&self.handle, self.cfg.table, |r| {
            route_key(r).is_some_and(|k| wanted.contains(&k))
        })
        .await?;
        let rules = sweep_rules(&self.handle, &self.cfg).await?;
        Ok(Cleaned {
            rules,
            routes,
            link: false,
        })
    }

    /// A stop (SIGTERM, SIGINT, a failed setup): removes the routes into the
    /// TUN and the bypasses, and keeps the rules, the `unreachable` routes of
    /// `private` and `block` prefixes and the `throw` routes of `clear`
    /// prefixes, so that those prefixes fail closed until the agent is back or
    /// `oemesh down` runs; `private-or-clear` destinations meanwhile take the
    /// main table. Logs (does not return) failures: a stop goes as far as it
    /// can ([`left_in_place`] says what stayed).
    pub async fn teardown(self) {
        let bypasses: HashSet<Cidr> = self.bypasses.iter().map(|&p| Cidr::host(p)).collect();
        let removed = delete_routes_unless(&self.handle, self.cfg.table, |r| {
            !(r.header.kind == RouteType::Unicast
                || (r.header.kind == RouteType::Throw
                    && route_key(r).is_some_and(|(prefix, _, _)| bypasses.contains(&prefix))))
        })
        .await;
        if let Err(e) = removed {
            tracing::error!("stop: {e}");
        }
    }
}

/// Metric of the fail-closed routes: behind the TUN route (metric 0) for the
/// same prefix, so they only apply when the TUN is gone.
pub const FAIL_CLOSED_METRIC: u32 = 4242;

/// `unreachable PREFIX metric FAIL_CLOSED_METRIC table T`.
fn fail_closed_route(prefix: Cidr, table: u32) -> RouteMessage {
    let mut m = throw_route(prefix, table);
    m.header.kind = RouteType::Unreachable;
    m.attributes
        .push(RouteAttribute::Priority(FAIL_CLOSED_METRIC));
    m
}

fn throw_route(prefix: Cidr, table: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = if prefix.addr().is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = prefix.prefix_len();
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Throw;
    if table > 255 {
        m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        m.attributes.push(RouteAttribute::Table(table));
    } else {
        m.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    }
    m.attributes
        .push(RouteAttribute::Destination(prefix.addr().into()));
    m
}

/// The interface index of `name`, if it exists.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, RouteError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(l) => Ok(l.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(-19) => Ok(None),
        Err(e) => Err(RouteError::new(format!("looking up link {name}"), e)),
    }
}

/// This host's addresses as the default routes would pick them, one per
/// family: the local address of a UDP socket of that family connected
/// (nothing is sent) to a global address. A family without a default route
/// has none. Call before our routes exist, or with the socket marked.
pub fn default_source_addresses(fwmark: u32) -> Addresses {
    use socket2::{Domain, Socket, Type};
    let probes: [std::net::SocketAddr; 2] = [
        (Ipv4Addr::new(198, 18, 0, 1), 9).into(),
        (Ipv6Addr::new(0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888), 9).into(),
    ];
    let mut found = Addresses::default();
    for probe in probes {
        let source = || {
            let sock = Socket::new(Domain::for_address(probe), Type::DGRAM, None).ok()?;
            let _ = sock.set_mark(fwmark);
            sock.connect(&probe.into()).ok()?;
            let ip = sock.local_addr().ok()?.as_socket()?.ip();
            (!ip.is_unspecified()).then_some(ip)
        };
        if let Some(ip) = source() {
            found.set(ip);
        }
    }
    found
}

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
//! Everything is removed by [`Routing::teardown`]; [`cleanup_stale`] removes
//! what a crashed run left (rules with our priorities pointing at our table,
//! every route in our table, a leftover TUN), and is idempotent.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::config::{Cidr, Group, RoutingConfig, routed_to_tun};

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

/// Removes what a previous run may have left: our rules, every route in our
/// table, and the interface `tun_name`. Safe to call when nothing is there.
pub async fn cleanup_stale(
    handle: &Handle,
    cfg: &RoutingConfig,
    tun_name: &str,
) -> Result<Cleaned, RouteError> {
    let mut cleaned = Cleaned {
        rules: delete_rules(handle, cfg).await?,
        routes: flush_table(handle, cfg.table).await?,
        link: false,
    };
    let mut links = handle
        .link()
        .get()
        .match_name(tun_name.to_owned())
        .execute();
    match links.try_next().await {
        Ok(Some(link)) => {
            match handle.link().del(link.header.index).execute().await {
                Ok(()) => cleaned.link = true,
                Err(e) if errno(&e) == Some(-19) => {} // ENODEV: gone meanwhile
                Err(e) => {
                    return Err(RouteError::new(
                        format!("deleting leftover link {tun_name}"),
                        e,
                    ));
                }
            }
        }
        Ok(None) => {}
        Err(e) if errno(&e) == Some(-19) => {}
        Err(e) => return Err(RouteError::new(format!("looking up link {tun_name}"), e)),
    }
    Ok(cleaned)
}

/// Whether a rule is one of ours: our priority and our table, or the
/// priority before it with `suppress_prefixlength` on main.
fn is_our_rule(rule: &RuleMessage, cfg: &RoutingConfig) -> bool {
    let mut priority = None;
    let mut table = u32::from(rule.header.table);
    let mut suppress = false;
    for attr in &rule.attributes {
        match attr {
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::SuppressPrefixLen(_) => suppress = true,
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

async fn delete_rules(handle: &Handle, cfg: &RoutingConfig) -> Result<usize, RouteError> {
    let mut removed = 0;
    for version in [IpVersion::V4, IpVersion::V6] {
        let rules: Vec<RuleMessage> = handle
            .rule()
            .get(version.clone())
            .execute()
            .try_collect()
            .await
            .map_err(|e| RouteError::new("listing rules", e))?;
        for rule in rules.into_iter().filter(|r| is_our_rule(r, cfg)) {
            match handle.rule().del(rule).execute().await {
                Ok(()) => removed += 1,
                Err(e) if matches!(errno(&e), Some(ENOENT)) => {}
                Err(e) => return Err(RouteError::new("deleting rule", e)),
            }
        }
    }
    Ok(removed)
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

async fn flush_table(handle: &Handle, table: u32) -> Result<usize, RouteError> {
    let mut removed = 0;
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
        for route in routes.into_iter().filter(|r| route_table(r) == table) {
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
    }
    Ok(removed)
}

/// The installed routing state; call [`Routing::teardown`] to remove it.
#[derive(Debug)]
pub struct Routing {
    pub(super) handle: Handle,
    pub(super) cfg: RoutingConfig,
    pub(super) bypasses: HashSet<IpAddr>,
}

impl Routing {
    /// Installs the routes for `policy` (via the TUN with index `tun_index`,
    /// preferred source `source`) and the rules. On error, what was installed
    /// is removed again.
    pub async fn install(
        handle: Handle,
        cfg: &RoutingConfig,
        tun_index: u32,
        policy: &[(Cidr, Group)],
        source: Option<IpAddr>,
    ) -> Result<Routing, RouteError> {
        let routing = Routing {
            handle,
            cfg: cfg.clone(),
            bypasses: HashSet::new(),
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
        source: Option<IpAddr>,
    ) -> Result<(), RouteError> {
        for &(prefix, group) in policy {
            let (route, what) = self.prefix_route(tun_index, prefix, group, source)?;
            self.add_route(route, &format!("{what} in table {}", self.cfg.table))
                .await?;
            if group.fails_closed() {
                // Outlives the TUN: if the agent dies without its teardown
                // (SIGKILL, a crash), the TUN route goes with the device and
                // this one keeps `private` and `block` traffic from leaving in
                // clear until the next start flushes the table.
                self.add_route(
                    fail_closed_route(prefix, self.cfg.table),
                    &format!(
                        "unreachable {prefix} ({group}, metric {FAIL_CLOSED_METRIC}) in table {}",
                        self.cfg.table
                    ),
                )
                .await?;
            }
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
    pub(super) fn prefix_route(
        &self,
        tun_index: u32,
        prefix: Cidr,
        group: Group,
        source: Option<IpAddr>,
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
            if let Some(src) = source.filter(|s| s.is_ipv4() == prefix.addr().is_ipv4()) {
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
        let what = match source {
            Some(src) if routed_to_tun(group) && src.is_ipv4() == prefix.addr().is_ipv4() => {
                format!(
                    "{prefix} ({group}) via the TUN, src {src} (is `address` assigned to an interface?)"
                )
            }
            _ => format!("{prefix} ({group})"),
        };
        Ok((route, what))
    }

    /// Adds `rule`, replacing an identical one.
    async fn add_rule(&self, rule: RuleMessage, what: &str) -> Result<(), RouteError> {
        let mut req = self.handle.rule().add().replace();
        *req.message_mut() = rule;
        req.execute()
            .await
            .map_err(|e| RouteError::new(format!("adding rule {what}"), e))
    }

    pub(super) async fn add_route(
        &self,
        route: RouteMessage,
        what: &str,
    ) -> Result<(), RouteError> {
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

    /// Removes our rules and every route in our table, logging (not
    /// returning) failures: teardown must go as far as it can.
    pub async fn teardown(self) {
        if let Err(e) = delete_rules(&self.handle, &self.cfg).await {
            tracing::error!("teardown: {e}");
        }
        if let Err(e) = flush_table(&self.handle, self.cfg.table).await {
            tracing::error!("teardown: {e}");
        }
    }
}

/// Metric of the fail-closed routes: behind the TUN route (metric 0) for the
/// same prefix, so they only apply when the TUN is gone.
pub const FAIL_CLOSED_METRIC: u32 = 4242;

/// `unreachable PREFIX metric FAIL_CLOSED_METRIC table T`.
pub(super) fn fail_closed_route(prefix: Cidr, table: u32) -> RouteMessage {
    let mut m = throw_route(prefix, table);
    m.header.kind = RouteType::Unreachable;
    m.attributes
        .push(RouteAttribute::Priority(FAIL_CLOSED_METRIC));
    m
}

pub(super) fn throw_route(prefix: Cidr, table: u32) -> RouteMessage {
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

/// This host's address as the default route would pick it: the local address of
/// a UDP socket connected (nothing is sent) to a global address, IPv4 first.
/// Call before our routes exist, or with the socket marked.
pub fn default_source_address(fwmark: u32) -> Option<IpAddr> {
    use socket2::{Domain, Socket, Type};
    let probes: [std::net::SocketAddr; 2] = [
        (Ipv4Addr::new(198, 18, 0, 1), 9).into(),
        (Ipv6Addr::new(0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888), 9).into(),
    ];
    probes.iter().find_map(|probe| {
        let sock = Socket::new(Domain::for_address(*probe), Type::DGRAM, None).ok()?;
        let _ = sock.set_mark(fwmark);
        sock.connect(&(*probe).into()).ok()?;
        sock.local_addr().ok()?.as_socket().map(|a| a.ip())
    })
}

//! This host's addresses as they change (issue 13, part 7): a DHCP renewal, a
//! move to another network, an address added or removed by hand. The agent
//! follows them without a restart.
//!
//! [`Follow::start`] subscribes to the kernel's address and route events
//! (rtnetlink groups `RTMGRP_IPV{4,6}_IFADDR` and `RTMGRP_IPV{4,6}_ROUTE`).
//! The events say only that something changed: after each burst (they come
//! in bursts, an address and its routes together) it works the addresses out
//! again, the way the agent did at start, and compares:
//!
//! - Without `address` in the configuration, each family's default route
//!   gives one ([`super::routes::default_source_addresses`]): a new one
//!   replaces the old, and a family whose default route goes has none.
//! - With `address`, those addresses are kept as they are; one that is no
//!   longer assigned to the host is logged once, at warn, and its family
//!   pauses until it is back (logged at info).
//!
//! On a change, the routes of the policy's prefixes are put in again with the
//! new preferred source (the kernel deletes an IPv4 route whose preferred
//! source address goes), and only then do the new addresses reach the
//! control plane ([`apply`]): core's `Node::handle_addresses` (SAs on a gone
//! address are deleted, new ones start from the new address, outcomes that
//! wanted an address are forgotten), the data path's addresses, and what
//! `oemesh status` shows.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{AsyncSocket, SocketAddr};
use oemesh_core::oe::{Addresses, Node};
use rtnetlink::constants::{
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE,
};
use tokio::sync::watch;

use super::routes::{RouteError, Routing};
use crate::control::answers::StatusInfo;
use crate::datapath::DataPath;
use crate::driver::KernelActions;

/// How long a burst of events may last before the addresses are worked out.
const SETTLE: Duration = Duration::from_millis(200);

/// Worked out again this often even without events (a missed event, a
/// socket buffer that overflowed).
const RECHECK: Duration = Duration::from_secs(30);

/// What the watcher needs to follow the addresses. See the module docs.
#[derive(Debug)]
pub struct Follow {
    /// `address` from the configuration, if set.
    pub configured: Option<Addresses>,
    /// The agent's firewall mark (its probes bypass its own table).
    pub fwmark: u32,
    /// The TUN's index, for its routes.
    pub tun_index: u32,
    /// The agent's routing table: its own route changes (bypasses) are
    /// not the host's.
    pub table: u32,
    /// Where the routes go.
    pub kernel: Arc<KernelActions>,
}

impl Follow {
    /// Follows from `current` (the addresses the agent started with): the
    /// control plane reads the receiver, and the future (to run with the
    /// agent's other tasks, so that a stop ends it and lets go of the
    /// kernel state for the teardown) never returns.
    pub fn start(
        self,
        current: Addresses,
    ) -> std::io::Result<(
        watch::Receiver<Addresses>,
        impl std::future::Future<Output = ()> + Send + 'static,
    )> {
        let (mut conn, _handle, mut events) = rtnetlink::new_connection()?;
        let groups =
            RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
        conn.socket_mut()
            .socket_mut()
            .bind(&SocketAddr::new(0, groups))?;
        tokio::spawn(conn);
        let (tx, rx) = watch::channel(current);
        let follow = async move {
            let mut gone = Addresses::default();
            let mut current = current;
            // Routes whose new source the kernel refused are tried again.
            let mut routes_behind = false;
            loop {
                // An event, or the periodic check; then the rest of the burst.
                match tokio::time::timeout(RECHECK, events.next()).await {
                    Ok(None) => {
                        tracing::warn!("netlink events ended: addresses no longer followed");
                        return std::future::pending().await;
                    }
                    Ok(Some((m, _))) if self.ours(&m) => continue,
                    _ => {}
                }
                let until = tokio::time::Instant::now() + SETTLE;
                while let Ok(Some(_)) = tokio::time::timeout_at(until, events.next()).await {}
                let now = self.addresses(&mut gone);
                if now == current && !routes_behind {
                    continue;
                }
                tracing::debug!("addresses {current} → {now}: routes, then the control plane");
                routes_behind = match self.kernel.set_source(self.tun_index, now).await {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::error!("routes with the new source addresses {now}: {e}");
                        true
                    }
                };
                if now == current {
                    continue;
                }
                current = now;
                // The control plane is gone only when the agent stops.
                let _ = tx.send(now);
            }
        };
        Ok((rx, follow))
    }

    /// A change of a route in the agent's own table.
    fn ours(&self, m: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
        match &m.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r),
            ) => super::routes::route_table(r) == self.table,
            _ => false,
        }
    }

    /// The addresses to use now; `gone` holds the configured ones already
    /// reported gone (each is logged once, and once when it returns).
    fn addresses(&self, gone: &mut Addresses) -> Addresses {
        let Some(configured) = self.configured else {
            return super::routes::default_source_addresses(self.fwmark);
        };
        let mut now = Addresses::default();
        for a in configured.iter() {
            let was_gone = gone.contains(a);
            if assigned(a) {
                now.set(a);
                if was_gone {
                    tracing::info!(
                        "configured address {a} is back: OE for {} resumes",
                        family(a)
                    );
                    unset(gone, a);
                }
            } else if !was_gone {
                tracing::warn!(
                    "configured address {a} is gone: OE for {} pauses until it returns",
                    family(a)
                );
                gone.set(a);
            }
        }
        now
    }
}

/// Whether `a` is assigned to this host (and usable: an IPv6 address still
/// in duplicate address detection is not): a UDP socket can bind to it.
fn assigned(a: IpAddr) -> bool {
    std::net::UdpSocket::bind((a, 0)).is_ok()
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn unset(addresses: &mut Addresses, a: IpAddr) {
    match a {
        IpAddr::V4(_) => addresses.v4 = None,
        IpAddr::V6(_) => addresses.v6 = None,
    }
}

impl Routing {
    /// Puts the routes of every prefix routed now in again with `source` as
    /// their preferred source addresses (replacing, so no prefix is ever
    /// without its route; one whose source went was dropped by the kernel,
    /// and comes back).
    pub async fn set_source(&self, tun_index: u32, source: Addresses) -> Result<(), RouteError> {
        for &(prefix, group) in &self.entries {
            self.install_prefix(tun_index, prefix, group, source)
                .await?;
        }
        Ok(())
    }
}

/// The control plane's side: this host's addresses are now `addresses`.
/// Core first (its commands follow in the control plane's round), then the
/// data path's addresses and what status shows.
pub fn apply(
    addresses: Addresses,
    node: &mut Node,
    current: &mut Addresses,
    dp: &DataPath,
    status: &mut StatusInfo,
) {
    if addresses == *current {
        return;
    }
    let (closed, forgotten) = node.handle_addresses(Instant::now(), addresses);
    // The node's own line said what changed; this is the sum of it.
    if closed + forgotten > 0 {
        tracing::debug!(
            "addresses changed: {closed} IKE SA(s) on a gone address deleted, \
             {forgotten} outcome(s) that wanted an address forgotten"
        );
    }
    *current = addresses;
    dp.address.store(Arc::new(addresses));
    status.identity = crate::run::identity_text(addresses, status.authenticated);
}

//! A reloaded configuration applied by the control-plane task (the reloader
//! reads and checks it, and changes the routes): the node's policy and
//! credential, the cached outcomes that the new policy decides differently,
//! the resolver, and what `oemesh status` shows.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use oemesh_core::ike::endpoint::LocalAuth;
use oemesh_core::ike::message::Identity;
use oemesh_core::oe::{self, State};
use tokio::sync::oneshot;

use oemesh_core::oe::Node;

use crate::control_plane::StatusInfo;
use crate::datapath::DataPath;
use crate::dns::KeyResolver;
use crate::driver::{KernelActions, Lookups};

/// The parts of a reloaded configuration the control plane applies.
#[derive(Debug, Default)]
pub struct Reconfig {
    /// The new policy, when it changed.
    pub policy: Option<oe::Policy>,
    /// The policy as `oemesh status` lists it, when it changed.
    pub policy_lines: Option<Vec<String>>,
    /// The new credential and identity, when the host key changed; with
    /// whether it is a key and its public key (base64) for status.
    pub local: Option<NewLocal>,
    /// The new resolver (or none), when `[dns]` changed.
    pub resolver: Option<Option<Arc<KeyResolver>>>,
}

/// A new host credential.
#[derive(Debug)]
pub struct NewLocal {
    /// How IKE_AUTH signs from now on.
    pub auth: LocalAuth,
    /// The IKE identity.
    pub id: Identity,
    /// The public key (base64), `None` for AUTH NULL.
    pub public_key: Option<String>,
    /// The identity as status shows it.
    pub identity: String,
}

/// What applying a [`Reconfig`] did.
#[derive(Debug, Default)]
pub struct Reconfigured {
    /// Destinations whose SAs were closed, with why.
    pub closed: Vec<(IpAddr, &'static str)>,
    /// Cached clear or blocked outcomes dropped (decided again).
    pub forgotten: u64,
}

/// A [`Reconfig`] with the way back.
pub type ReconfigRequest = (Reconfig, oneshot::Sender<Reconfigured>);

/// What the control plane owns that a reload changes.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The OE node.
    pub node: &'a mut Node,
    /// The data path (outcome cache).
    pub dp: &'a DataPath,
    /// Bypass routes.
    pub kernel: &'a KernelActions,
    /// DNS lookups (the resolver).
    pub lookups: &'a mut Lookups,
    /// What `oemesh status` shows.
    pub status: &'a mut StatusInfo,
}

impl Parts<'_> {
    /// Applies `r`; the node's commands (DELETEs, removed SAs) follow in
    /// the control plane's next `drive`.
    pub async fn apply(self, r: Reconfig) -> Reconfigured {
        let Parts {
            node,
            dp,
            kernel,
            lookups,
            status,
        } = self;
        let now = Instant::now();
        let policy_changed = r.policy.is_some();
        let local = r.local.map(|l| {
            status.authenticated = l.public_key.is_some();
            status.public_key = l.public_key;
            status.identity = l.identity;
            (l.auth, l.id)
        });
        status.reloads += 1;
        status.last_reload = Some(now);
        let mut done = Reconfigured::default();
        if policy_changed || local.is_some() {
            done.closed = node.reconfigure(now, r.policy, local);
        }
        for (dst, why) in &done.closed {
            tracing::info!("{dst}: reload: closing its SAs ({why})");
        }
        if policy_changed {
            done.forgotten = forget_outcomes(node, dp, kernel).await;
        }
        if let Some(lines) = r.policy_lines {
            status.policy = lines;
        }
        if let Some(resolver) = r.resolver {
            status.dns_servers = resolver
                .as_ref()
                .map(|r| r.servers().iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            status.dnssec = resolver
                .as_ref()
                .map(|r| r.dnssec_summary())
                .unwrap_or_default();
            lookups.set_resolver(resolver);
        }
        done
    }
}

/// Drops the cached clear and blocked outcomes whose policy group the new
/// policy changed (and their bypass routes), so that their next packet is
/// decided under it: a prefix moved from `clear` to `private` must not keep
/// sending in clear until the outcome expires.
async fn forget_outcomes(node: &Node, dp: &DataPath, kernel: &KernelActions) -> u64 {
    let mut forgotten = 0;
    for o in dp.outcomes.all() {
        if o.state == State::Private {
            continue; // its SA decides (closed above when no longer allowed)
        }
        if node.machine().check(o.dst).group == o.policy.group {
            continue;
        }
        dp.outcomes.remove(o.dst);
        kernel.unbypass(o.dst).await;
        forgotten += 1;
    }
    forgotten
}

//! A reloaded configuration applied by the control-plane task (the reloader
//! reads and checks it, and changes the routes): the node's policy and
//! credential, the cached outcomes that the new policy decides differently,
//! the resolver, and what `oemesh status` shows.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use oemesh_core::ike::endpoint::LocalAuth;
use oemesh_core::ike::message::Identity;
use oemesh_core::oe;
use tokio::sync::oneshot;

use oemesh_core::oe::Node;

use crate::control_plane::StatusInfo;
use crate::dns::KeyResolver;
use crate::driver::Lookups;

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
    /// DNS lookups (the resolver).
    pub lookups: &'a mut Lookups,
    /// What `oemesh status` shows.
    pub status: &'a mut StatusInfo,
}

impl Parts<'_> {
    /// Applies `r`; the node's commands (DELETEs, removed SAs, forgotten
    /// outcomes) follow in the control plane's `drive`.
    pub fn apply(self, r: Reconfig) -> Reconfigured {
        let Parts {
            node,
            lookups,
            status,
        } = self;
        let now = Instant::now();
        let local = r.local.map(|l| {
            status.authenticated = l.public_key.is_some();
            status.public_key = l.public_key;
            status.identity = l.identity;
            (l.auth, l.id)
        });
        status.reloads += 1;
        status.last_reload = Some(now);
        let mut done = Reconfigured::default();
        if r.policy.is_some() || local.is_some() {
            let (closed, forgotten) = node.reconfigure(now, r.policy, local);
            done.closed = closed;
            done.forgotten = forgotten as u64;
        }
        for (dst, why) in &done.closed {
            tracing::info!("{dst}: reload: closing its SAs ({why})");
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

//! `oemesh reload`, SIGHUP and `systemctl reload`: the configuration file and
//! the host key are read again, checked whole, and the difference is applied
//! without a restart.
//!
//! | what changed | applied how |
//! |---|---|
//! | `[policy]` prefixes | routes of the changed prefixes only ([`Routing::apply_policy`](crate::net::routes::Routing)); the node's policy; SAs the new group does not allow are closed (DELETE), cached clear/blocked outcomes of changed groups are decided again |
//! | `[policy]` group options | the node's policy; SAs that no longer qualify are closed |
//! | `key` (the path or the file's content) | every IKE_AUTH from now on signs with the new key; SAs already up live on until they are rekeyed or closed |
//! | `[dns]` servers, timeout, `dnssec`, `trust_anchors` | a new resolver for new lookups |
//! | anything else (`address`, `[ike]`, `[hold]`, `[outcome]`, `[tun]`, `[routing]`, `[nat]`, `[gateway]`, the control socket, metrics, DNS rate limits) | reported as needing a restart; the running value stays |
//!
//! An invalid file, key or anchor refuses the reload whole, with the error
//! `check-config` gives, and the running configuration stays. So does a
//! netlink failure while changing routes (the routes changed so far are put
//! back).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use oemesh_core::anchors::TrustAnchor;
use oemesh_core::hostkey::HostKey;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, DnsConfig};
use crate::control::proto::ReloadReport;
mod apply;

pub use apply::{NewLocal, Parts, Reconfig, ReconfigRequest, Reconfigured};

use crate::dns::{KeyResolver, LoadedAnchor};
use crate::driver::KernelActions;

/// A configuration with what it names, read and checked.
pub struct Loaded {
    /// The file.
    pub cfg: Config,
    /// The host key `key` names, if any.
    pub key: Option<HostKey>,
    /// The trust anchors `dns.trust_anchors` names.
    pub anchors: Vec<LoadedAnchor>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("cfg", &self.cfg)
            .field("key", &self.key.as_ref().map(|_| "(host key)"))
            .field("anchors", &self.anchors.len())
            .finish()
    }
}

impl Loaded {
    /// Reads `path`, the key file and the trust anchors; the error names the
    /// file (and record) at fault, as `check-config` does.
    pub fn load(path: &Path) -> Result<Loaded> {
        let mut cfg = Config::load(path)?;
        // A family the kernel has turned off cannot route a pool into the
        // TUN (the default has one prefix of each): serve the other one.
        if !crate::net::ipv6_enabled() && cfg.nat.pool.iter().any(|p| !p.addr().is_ipv4()) {
            tracing::info!("IPv6 is off on this host: nat.pool serves IPv4 only");
            cfg.nat.pool.retain(|p| p.addr().is_ipv4());
        }
        // A pool over this host's own network would route it into the TUN.
        for (p, subnet) in
            crate::net::pool_overlaps(&cfg.nat.pool, &crate::net::interface_subnets())
        {
            tracing::warn!(
                "nat.pool {p} overlaps this host's network {subnet}: not serving it (set nat.pool to a range no network here uses)"
            );
            cfg.nat.pool.retain(|q| *q != p);
        }
        let key = match &cfg.key {
            Some(key_path) => {
                let loaded = dnskeys::keyfile::load(key_path)
                    .with_context(|| format!("{}: key", path.display()))?;
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                Some(loaded.key)
            }
            None => None,
        };
        let anchors = crate::dns::load_anchors(&cfg.dns.trust_anchors)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: dns.trust_anchors", path.display()))?;
        Ok(Loaded { cfg, key, anchors })
    }
}

/// The resolver for `dns` (none when it cannot be made: every decision then
/// fails open or closed as its policy says, and the error is logged).
pub fn resolver(
    dns: &DnsConfig,
    fwmark: u32,
    anchors: Vec<LoadedAnchor>,
) -> Option<Arc<KeyResolver>> {
    match KeyResolver::with_dnssec(&dns.servers, dns.timeout, fwmark, dns.dnssec, anchors) {
        Ok(r) => {
            crate::run::announce_dnssec(&r);
            let r = Arc::new(r);
            let primed = r.clone();
            tokio::spawn(async move { primed.prime().await });
            Some(r)
        }
        Err(e) => {
            tracing::error!("DNS: {e}");
            None
        }
    }
}

/// A reload asked for, with the way back (`None`: SIGHUP, nobody waits).
pub type ReloadRequest = Option<oneshot::Sender<Result<ReloadReport, String>>>;

/// The task that owns the running configuration and applies new ones.
#[derive(Debug)]
pub struct Reloader {
    /// The file the agent was started with.
    pub path: PathBuf,
    /// What runs now.
    pub current: Config,
    /// The running host key's public key.
    pub public_key: Option<[u8; 32]>,
    /// The running trust anchors.
    pub anchors: Vec<TrustAnchor>,
    /// This host's addresses, one per family (identity, preferred source of
    /// the routes), as they change (`crate::net::addresses`).
    pub address: tokio::sync::watch::Receiver<crate::config::Addresses>,
    /// The TUN's interface index.
    pub tun_index: u32,
    /// Routes.
    pub kernel: Arc<KernelActions>,
    /// The control plane.
    pub control: mpsc::Sender<ReconfigRequest>,
}

impl Reloader {
    /// Serves reloads until the agent stops.
    pub async fn run(mut self, mut requests: mpsc::Receiver<ReloadRequest>) {
        while let Some(reply) = requests.recv().await {
            let result = self.reload().await;
            match &result {
                Ok(r) if r.changed() || !r.restart_needed.is_empty() => {
                    tracing::info!("reload of {}: {}", r.config, summary(r));
                    if !r.restart_needed.is_empty() {
                        tracing::warn!(
                            "reload: changed, but applied only at the next start: {}",
                            r.restart_needed.join(", ")
                        );
                    }
                }
                Ok(r) => tracing::info!("reload of {}: nothing changed", r.config),
                Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
    }

    async fn reload(&mut self) -> Result<ReloadReport, String> {
        let loaded = Loaded::load(&self.path).map_err(|e| format!("{e:#}"))?;
        let mut new = loaded.cfg;
        let cur = &self.current;
        let address = *self.address.borrow();
        let mut report = ReloadReport {
            config: self.path.display().to_string(),
            restart_needed: restart_needed(cur, &new),
            ..ReloadReport::default()
        };
        // The IKE engine's pool is fixed at start, and its routes with it;
        // so are the subnets a gateway protects (the engine's and the node's
        // `protects`, the `throw` routes).
        new.nat = cur.nat.clone();
        new.gateway = cur.gateway.clone();
        // The new policy was checked against the file's `[gateway]`; it runs
        // beside the running one.
        let conflicts = crate::config::policy_conflicts(&new, &new.gateway);
        if !conflicts.is_empty() {
            let list: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
            return Err(format!(
                "{}: {} (gateway.protects changes only at the next start)",
                self.path.display(),
                list.join("; ")
            ));
        }

        let old_entries = cur.routed_entries();
        let new_entries = new.routed_entries();
        report.policy = policy_diff(&old_entries, &new_entries);
        report.options = options_diff(cur, &new);
        let policy_changed = new.policy != cur.policy;

        let public_key = loaded.key.as_ref().map(HostKey::public_key);
        let key_changed = public_key != self.public_key;
        let new_anchors: Vec<TrustAnchor> =
            loaded.anchors.iter().map(|a| a.anchor.clone()).collect();
        let dns_changed = new.dns.servers != cur.dns.servers
            || new.dns.timeout != cur.dns.timeout
            || new.dns.dnssec != cur.dns.dnssec
            || new_anchors != self.anchors;

        // Routes first: a prefix that now fails closed is unreachable before
        // the node decides with the new policy.
        if old_entries != new_entries
            && let Err(e) = self
                .kernel
                .apply_policy(self.tun_index, &old_entries, &new_entries, address)
                .await
        {
            // Put back what was changed, so that routes and node agree.
            if let Err(back) = self
                .kernel
                .apply_policy(self.tun_index, &new_entries, &old_entries, address)
                .await
            {
                tracing::error!("reload: putting the old routes back: {back}");
            }
            return Err(format!("changing routes: {e}"));
        }

        let mut reconfig = Reconfig::default();
        if policy_changed {
            reconfig.policy = Some(new.policy.core().clone());
            reconfig.policy_lines = Some(crate::run::policy_lines(&new));
        }
        if key_changed {
            let (auth, id) = crate::run::local_credential(address, loaded.key.as_ref());
            let b64 = public_key.map(|k| base64::engine::general_purpose::STANDARD.encode(k));
            report.key = Some(match &b64 {
                Some(k) => format!("new host key {k}: new IKE SAs authenticate with it"),
                None => "host key removed: anonymous OE (AUTH NULL) from now on".to_owned(),
            });
            reconfig.local = Some(NewLocal {
                auth,
                id,
                identity: crate::run::identity_text(address, loaded.key.is_some()),
                public_key: b64,
            });
        }
        if dns_changed {
            let r = resolver(&new.dns, cur.routing.fwmark, loaded.anchors);
            report.dns = Some(match &r {
                Some(r) => format!(
                    "servers {}; DNSSEC: {}",
                    r.servers()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    r.dnssec_summary()
                ),
                None => "no resolver could be made (see the log): lookups fail".to_owned(),
            });
            reconfig.resolver = Some(r);
        }

        let (tx, rx) = oneshot::channel();
        if self.control.send((reconfig, tx)).await.is_err() {
            return Err("the agent is shutting down".to_owned());
        }
        let done = rx
            .await
            .map_err(|_| "the control plane dropped the reload".to_owned())?;
        report.closed = done
            .closed
            .iter()
            .map(|(dst, why)| format!("{dst}: {why}"))
            .collect();
        report.forgotten = done.forgotten;

        // What runs now: the applied parts of the new file, the rest as before.
        let mut applied = self.current.clone();
        applied.policy = new.policy;
        applied.key = new.key;
        applied.dns.servers = new.dns.servers;
        applied.dns.timeout = new.dns.timeout;
        applied.dns.dnssec = new.dns.dnssec;
        applied.dns.trust_anchors = new.dns.trust_anchors;
        self.current = applied;
        self.public_key = public_key;
        self.anchors = new_anchors;
        Ok(report)
    }
}

/// `+ 10.1.0.0/16 private`, `- 192.0.2.0/24 clear`, `~ P private-or-clear -> private`.
fn policy_diff(
    old: &[(crate::config::Cidr, crate::config::Group)],
    new: &[(crate::config::Cidr, crate::config::Group)],
) -> Vec<String> {
    let mut lines = Vec::new();
    for &(prefix, group) in new {
        match old.iter().find(|(p, _)| *p == prefix) {
            None => lines.push(format!("+ {prefix} {group}")),
            Some(&(_, was)) if was != group => lines.push(format!("~ {prefix} {was} -> {group}")),
            Some(_) => {}
        }
    }
    for &(prefix, group) in old {
        if !new.iter().any(|(p, _)| *p == prefix) {
            lines.push(format!("- {prefix} {group}"));
        }
    }
    lines
}

/// Group options that changed: `require-authenticated: private-or-clear -> (none)`.
fn options_diff(cur: &Config, new: &Config) -> Vec<String> {
    fn list(groups: impl Iterator<Item = impl std::fmt::Display>) -> String {
        let v: Vec<String> = groups.map(|g| g.to_string()).collect();
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    }
    let mut lines = Vec::new();
    let pairs = [
        (
            "require-authenticated",
            list(cur.policy.require_authenticated()),
            list(new.policy.require_authenticated()),
        ),
        (
            "require-dnssec",
            list(cur.policy.require_dnssec()),
            list(new.policy.require_dnssec()),
        ),
        (
            "negotiation",
            list(cur.policy.negotiation().map(|(g, n)| format!("{g}={n}"))),
            list(new.policy.negotiation().map(|(g, n)| format!("{g}={n}"))),
        ),
    ];
    for (name, was, now) in pairs {
        if was != now {
            lines.push(format!("{name}: {was} -> {now}"));
        }
    }
    lines
}

/// The settings that changed in the file but are applied only at a start.
fn restart_needed(cur: &Config, new: &Config) -> Vec<String> {
    let dns_limits = |d: &DnsConfig| {
        (
            d.lookups_per_second,
            d.lookup_burst,
            d.inbound_lookups_per_second,
            d.inbound_lookup_burst,
        )
    };
    [
        ("address", cur.address != new.address),
        ("control_socket", cur.control_socket != new.control_socket),
        ("control_group", cur.control_group != new.control_group),
        (
            "[dns] lookup limits",
            dns_limits(&cur.dns) != dns_limits(&new.dns),
        ),
        ("[ike]", cur.ike != new.ike),
        ("[hold]", cur.hold != new.hold),
        ("[outcome]", cur.outcome != new.outcome),
        ("[metrics]", cur.metrics_listen != new.metrics_listen),
        ("[tun]", cur.tun != new.tun),
        ("[routing]", cur.routing != new.routing),
        ("[nat]", cur.nat != new.nat),
        ("[gateway]", cur.gateway != new.gateway),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name.to_owned())
    .collect()
}

/// One line for the log: `policy +1 -0 ~1, new host key, 2 SA(s) closed`.
pub fn summary(r: &ReloadReport) -> String {
    let mut parts = Vec::new();
    if !r.policy.is_empty() {
        parts.push(format!("policy: {}", r.policy.join("; ")));
    }
    if !r.options.is_empty() {
        parts.push(r.options.join("; "));
    }
    if let Some(k) = &r.key {
        parts.push(k.clone());
    }
    if let Some(d) = &r.dns {
        parts.push(format!("DNS: {d}"));
    }
    if !r.closed.is_empty() {
        parts.push(format!("closed: {}", r.closed.join("; ")));
    }
    if r.forgotten > 0 {
        parts.push(format!("{} cached outcome(s) decided again", r.forgotten));
    }
    if parts.is_empty() {
        "nothing applied".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gateway_protects_change_only_at_a_start() {
        let cur = Config::parse("[gateway]\nprotects = [\"10.1.0.0/24\"]\n").unwrap();
        let new = Config::parse("[gateway]\nprotects = [\"10.2.0.0/24\"]\n").unwrap();
        assert_eq!(restart_needed(&cur, &new), ["[gateway]"]);
        assert!(restart_needed(&cur, &cur).is_empty());
        // A new policy valid with the file's protects but not with the running
        // ones is what `reload` refuses (it keeps the running protects).
        let mut new = Config::parse(
            "[policy]\nprivate = [\"10.1.0.0/25\"]\n[gateway]\nprotects = [\"10.2.0.0/24\"]\n",
        )
        .unwrap();
        new.gateway = cur.gateway.clone();
        let conflicts = crate::config::policy_conflicts(&new, &new.gateway);
        assert_eq!(conflicts.len(), 1);
        assert!(
            conflicts[0]
                .message
                .contains("inside gateway.protects 10.1.0.0/24")
        );
    }
}

//! Answers to the control socket: `status`, `peers` and `check`, from a
//! [`View`] of the control plane: the outcome cache, the SA table and core's
//! OE node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use oemesh_core::oe::{Auth, Node, Outcome, State};
use tokio::sync::oneshot;

use crate::config::DnssecMode;
use crate::control::proto::{
    CheckReply, PeerAuth, PeerCounts, PeerInfo, PeerState, Reply, Request, StatusReply,
};
use crate::datapath::DataPath;
use crate::dns::{KeyLookup, KeyResolver};
use crate::metrics::PacketOutcome;

/// What `status` reports that does not change while the agent runs.
#[derive(Debug, Clone)]
pub struct StatusInfo {
    /// When the agent started.
    pub started: Instant,
    /// Whether a host key is loaded.
    pub authenticated: bool,
    /// The host's public key, base64.
    pub public_key: Option<String>,
    /// The IKE identity as text.
    pub identity: String,
    /// TUN name.
    pub tun: String,
    /// TUN offload.
    pub tun_offload: bool,
    /// TUN queues.
    pub tun_queues: u32,
    /// Routing table.
    pub table: u32,
    /// Socket mark.
    pub fwmark: u32,
    /// DNS servers.
    pub dns_servers: Vec<String>,
    /// Who validates DNSSEC, and from which anchors.
    pub dnssec: String,
    /// Metrics endpoint.
    pub metrics: Option<String>,
    /// The policy, one line per prefix.
    pub policy: Vec<String>,
    /// `gateway.protects`: the subnets behind this host (empty: a host).
    pub gateway: Vec<oemesh_core::oe::Cidr>,
    /// The configuration file.
    pub config: String,
    /// Reloads applied.
    pub reloads: u64,
    /// When the last one was.
    pub last_reload: Option<Instant>,
}

fn state_of(s: State) -> PeerState {
    match s {
        State::Private => PeerState::Private,
        State::Clear => PeerState::Clear,
        State::Blocked => PeerState::Blocked,
    }
}

fn auth_of(a: Auth) -> Option<PeerAuth> {
    match a {
        Auth::Authenticated => Some(PeerAuth::Authenticated),
        Auth::Anonymous => Some(PeerAuth::Anonymous),
        Auth::None => None,
    }
}

/// `2 IPSECKEY record(s) (DNSSEC-validated: secure)`, `no IPSECKEY (NXDOMAIN)`, ...
fn describe_lookup(k: &KeyLookup) -> String {
    match k {
        KeyLookup::Found { dnssec, .. } if dnssec.is_secure() => {
            format!("{} (DNSSEC-validated: secure)", k.reason())
        }
        KeyLookup::Found { dnssec, .. } => {
            format!("{} (not DNSSEC-validated: {dnssec})", k.reason())
        }
        KeyLookup::NxDomain { dnssec, .. } | KeyLookup::NoData { dnssec, .. } => {
            format!("{} (DNSSEC: {dnssec})", k.reason())
        }
        other => other.reason(),
    }
}

/// Where the DNSSEC verdict on `name` came from: the mode, and in validate
/// mode the trust anchor the chain starts at.
fn dnssec_chain(r: &KeyResolver, name: &str) -> String {
    match r.dnssec_mode() {
        DnssecMode::Off => "not checked (dns.dnssec = \"off\")".to_owned(),
        DnssecMode::Resolver => {
            let servers: Vec<String> = r.servers().iter().map(ToString::to_string).collect();
            format!("the AD bit of the resolver ({})", servers.join(", "))
        }
        DnssecMode::Validate => match r.anchor_for(name) {
            Some(a) => format!(
                "validated by the agent from the trust anchor for {} (key tag {}, {})",
                a.anchor.zone,
                a.anchor.key_tag(),
                a.origin
            ),
            None => "validated by the agent from the root KSKs (built in)".to_owned(),
        },
    }
}

/// What the answers read, borrowed from the control plane for one request.
#[derive(Debug)]
pub struct View<'a> {
    /// What does not change.
    pub status: &'a StatusInfo,
    /// This host's addresses, one per family.
    pub address: oemesh_core::oe::Addresses,
    /// The OE node (pending destinations, IKE and decision counters).
    pub node: &'a Node,
    /// The data path (outcomes, SAs, metrics).
    pub dp: &'a DataPath,
    /// Bytes (in, out) of SAs already removed, per destination.
    pub traffic: &'a HashMap<IpAddr, (u64, u64)>,
    /// For `check`'s live lookup.
    pub resolver: Option<Arc<KeyResolver>>,
}

impl View<'_> {
    /// Answers `req` on `reply` (`check` from a task: it waits for DNS).
    pub fn answer(&self, req: Request, reply: oneshot::Sender<Reply>) {
        match req {
            Request::Status => {
                let _ = reply.send(Reply::Status(self.status_reply()));
            }
            Request::Peers => {
                let _ = reply.send(Reply::Peers {
                    peers: self.peers(),
                });
            }
            Request::Check { addr } => self.check(addr, reply),
            // The agent's request handler sends reloads to the reloader task.
            Request::Reload => {
                let _ = reply.send(Reply::Error {
                    message: "reload is not served here".to_owned(),
                });
            }
        }
    }

    fn status_reply(&self) -> StatusReply {
        let s = &self.status;
        let mut counts = PeerCounts::default();
        for o in self.dp.outcomes.all() {
            match o.state {
                State::Private => counts.private += 1,
                State::Clear => counts.clear += 1,
                State::Blocked => counts.blocked += 1,
            }
        }
        counts.pending = self.node.pending().len() as u64;
        let stats = self.node.endpoint().stats();
        let counters = self.node.machine().counters();
        StatusReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_s: s.started.elapsed().as_secs(),
            address: self.address.first(),
            addresses: self.address.iter().collect(),
            authenticated: s.authenticated,
            public_key: s.public_key.clone(),
            tun: s.tun.clone(),
            tun_offload: s.tun_offload,
            tun_queues: s.tun_queues,
            table: s.table,
            fwmark: s.fwmark,
            dns_servers: s.dns_servers.clone(),
            dnssec: s.dnssec.clone(),
            metrics: s.metrics.clone(),
            peers: counts,
            identity: s.identity.clone(),
            policy: s.policy.clone(),
            gateway: s.gateway.iter().map(ToString::to_string).collect(),
            config: s.config.clone(),
            reloads: s.reloads,
            reloaded_s_ago: s.last_reload.map(|t| t.elapsed().as_secs()),
            sas: self.dp.sas.len().0 as u64,
            ike_sas: stats.ike_sas as u64,
            half_open: stats.half_open as u64,
            cookies_sent: self.dp.metrics.ike_cookies_sent(),
            cookies_limited: self.dp.metrics.cookie_replies_limited(),
            ike_dropped: stats.dropped + self.dp.metrics.ike_queue_drops(),
            held_packets: self.node.machine().hold().total_packets() as u64,
            lookups_rate_limited: counters.lookup_rate_limited,
            pending_full: counters.pending_full,
            drops: self.dp.metrics.packets_total(PacketOutcome::Dropped),
        }
    }

    /// Bytes (in, out) per destination: removed SAs plus installed ones.
    fn bytes(&self) -> HashMap<IpAddr, (u64, u64)> {
        let mut bytes = self.traffic.clone();
        for i in self.dp.sas.inbound_all() {
            bytes.entry(i.peer).or_default().0 += i.counters().1;
        }
        for o in self.dp.sas.outbound_all() {
            bytes.entry(o.dst).or_default().1 += o.counters().1;
        }
        bytes
    }

    fn peer_info(&self, o: &Outcome, bytes: &HashMap<IpAddr, (u64, u64)>) -> PeerInfo {
        let now = Instant::now();
        let (bytes_in, bytes_out) = bytes.get(&o.dst).copied().unwrap_or_default();
        let out = self.dp.sas.outbound(o.dst);
        let given = out.as_ref().and_then(|o| o.translate).map(|t| t.assigned);
        let (assigned, assigned_to_us) = if self.node.endpoint().is_pool_address(o.dst) {
            (Some(o.dst), false)
        } else {
            (given, given.is_some())
        };
        PeerInfo {
            peer: o.dst,
            state: state_of(o.state),
            auth: auth_of(o.auth),
            dnssec: o.dnssec,
            dnssec_state: o.dnssec_state.map(|d| d.name().to_owned()),
            reason: o.reason.clone(),
            expires_in_s: o
                .expires_at
                .map(|e| e.saturating_duration_since(now).as_secs()),
            bytes_in,
            bytes_out,
            group: Some(o.policy.group.to_string()),
            endpoint: out.as_ref().map(|o| o.remote()),
            assigned,
            assigned_to_us,
        }
    }

    fn pending_info(&self, dst: IpAddr, since: Instant) -> PeerInfo {
        PeerInfo {
            peer: dst,
            state: PeerState::Pending,
            auth: None,
            dnssec: false,
            dnssec_state: None,
            reason: format!(
                "deciding for {} ms; {} packet(s) held",
                since.elapsed().as_millis(),
                self.node.machine().hold().packets(dst)
            ),
            expires_in_s: None,
            bytes_in: 0,
            bytes_out: 0,
            group: Some(self.node.machine().check(dst).group.to_string()),
            endpoint: None,
            assigned: None,
            assigned_to_us: false,
        }
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let bytes = self.bytes();
        let mut peers: Vec<PeerInfo> = self
            .dp
            .outcomes
            .all()
            .iter()
            .map(|o| self.peer_info(o, &bytes))
            .collect();
        for (&dst, &since) in self.node.pending() {
            if !peers.iter().any(|p| p.peer == dst) {
                peers.push(self.pending_info(dst, since));
            }
        }
        peers.sort_by_key(|p| p.peer);
        peers
    }

    /// `check ADDR`: the policy match now; the IPSECKEY lookup live (in a
    /// task, so the control plane does not wait for DNS).
    fn check(&self, addr: IpAddr, reply: oneshot::Sender<Reply>) {
        let m = self.node.machine().check(addr);
        let outcome = self.dp.outcomes.get(addr);
        let since = self.node.pending().get(&addr).copied();
        let current = match (&outcome, since) {
            (Some(o), _) => Some(self.peer_info(o, &self.bytes())),
            (None, Some(since)) => Some(self.pending_info(addr, since)),
            (None, None) => None,
        };
        let pending = outcome.is_none() && since.is_some();
        let mut action = m.treatment(outcome.map(|o| o.state), pending);
        if let Some(p) = self.status.gateway.iter().find(|p| p.contains(addr)) {
            action = format!(
                "behind this gateway (gateway.protects {p}): routed to the LAN, never through \
                 the agent"
            );
        }
        let base = CheckReply {
            addr,
            group: m.group.to_string(),
            prefix: m.prefix.map(|p| p.to_string()),
            reverse_name: oemesh_core::ipseckey::reverse_name(addr).to_string(),
            action,
            peer: current,
            ipseckey: None,
            dnssec: None,
            dnssec_chain: None,
        };
        let resolver = self.resolver.clone();
        tokio::spawn(async move {
            let (ipseckey, dnssec, chain) = match resolver {
                Some(r) => {
                    let lookup = r.lookup(addr).await;
                    let chain = dnssec_chain(&r, &base.reverse_name);
                    let state = lookup.dnssec().name().to_owned();
                    (describe_lookup(&lookup), Some(state), Some(chain))
                }
                None => ("no DNS resolver configured".to_owned(), None, None),
            };
            let _ = reply.send(Reply::Check(CheckReply {
                ipseckey: Some(ipseckey),
                dnssec,
                dnssec_chain: chain,
                ..base
            }));
        });
    }
}

//! An IKEv2 load generator for the control-plane benchmark: many initiators,
//! each from its own IPv6 address, completing IKE_SA_INIT + IKE_AUTH (with the
//! first CHILD SA) against one responder, as an opportunistic peer without a
//! key would (AUTH NULL, ID_NULL; the responder signs with its Ed25519 key).
//!
//! The initiators are core's sans-IO [`Endpoint`]s, one per handshake, each on
//! a UDP socket bound to a fresh address of `prefix`, one /64 each (the
//! responder's per-source limits count IPv6 /64s, and each initiator stands
//! for another host; the namespace needs a `local` route for the /48 and
//! `net.ipv6.ip_nonlocal_bind = 1`, see [`prepare_source`]). `concurrency` threads run handshakes back to back.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_core::crypto::ed25519::Ed25519PublicKey;
use oemesh_core::ike::endpoint::{Config, Endpoint, Event, LocalAuth, PeerAuth, TrafficSelectors};
use oemesh_core::ike::message::{AddrSelector, Identity};
use oemesh_core::test_util::Peer;

use crate::netns::Netns;

/// What to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The responder's address (IKE on 500, then 4500).
    pub responder: IpAddr,
    /// The responder's Ed25519 public key (32 bytes), checked in IKE_AUTH.
    pub responder_key: [u8; 32],
    /// A /48: initiator `first + i` is `::1` of the /64 with that number ([`source_address`]).
    pub prefix: Ipv6Addr,
    /// Offset of the first address (so that several runs use fresh ones).
    pub first: u32,
    /// Handshakes to run.
    pub count: usize,
    /// Handshakes in flight at once (threads).
    pub concurrency: usize,
    /// Bound on one handshake.
    pub timeout: Duration,
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Handshakes that ended with the CHILD SA established.
    pub completed: usize,
    /// Handshakes that failed or timed out.
    pub failed: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The first few failure reasons.
    pub errors: Vec<String>,
}

/// Makes `prefix`/48 usable as source addresses in `ns`: a `local` route (the
/// whole prefix is this host's) and non-local binds.
pub fn prepare_source(ns: &Netns, prefix: Ipv6Addr) -> Result<()> {
    let net = format!("{prefix}/48");
    ns.ip(&["-6", "route", "replace", "local", &net, "dev", "lo"])?;
    ns.exec(
        &["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"],
        Duration::from_secs(5),
    )?;
    Ok(())
}

/// The address of initiator `i`.
pub fn address(prefix: Ipv6Addr, i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix) + 1 + u128::from(i))
}

/// The address of initiator `i` of the /48 `prefix`: `::1` in the /64 number
/// `i` (so at most 65,536 initiators).
pub fn source_address(prefix: Ipv6Addr, i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix) + 1 + (u128::from(i & 0xffff) << 64))
}

/// Runs `load.count` handshakes from `ns`, `load.concurrency` at a time.
pub fn run(ns: &Netns, load: &Load) -> Result<Outcome> {
    let key = Ed25519PublicKey::from_slice(&load.responder_key)
        .map_err(|e| anyhow::anyhow!("responder key: {e}"))?;
    let next = Arc::new(AtomicUsize::new(0));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..load.concurrency.max(1) {
        let (next, outcome, load, key) = (next.clone(), outcome.clone(), load.clone(), key);
        workers.push(ns.spawn_thread(move || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= load.count {
                    return;
                }
                let index = load
                    .first
                    .wrapping_add(u32::try_from(i).unwrap_or(u32::MAX));
                let result = handshake(&load, index, &key);
                let mut o = outcome
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    Ok(()) => o.completed += 1,
                    Err(e) => {
                        o.failed += 1;
                        if o.errors.len() < 5 {
                            o.errors.push(format!("{e:#}"));
                        }
                    }
                }
            }
        })?);
    }
    for w in workers {
        match w.join() {
            Ok(r) => r?,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    let mut o = outcome
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    o.elapsed = started.elapsed();
    Ok(o)
}

/// One initiator: a fresh address, socket and endpoint, IKE_SA_INIT +
/// IKE_AUTH until the CHILD SA is established.
fn handshake(load: &Load, index: u32, key: &Ed25519PublicKey) -> Result<()> {
    let local = IpAddr::V6(source_address(load.prefix, index));
    let sock = UdpSocket::bind(SocketAddr::new(local, 0))
        .with_context(|| format!("binding {local} (prepare_source first)"))?;
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&index.to_le_bytes());
    seed[4..12].copy_from_slice(
        &(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()) as u64)
            .to_le_bytes(),
    );
    let config = Config::new(LocalAuth::Null, Identity::Null);
    let mut ep = Endpoint::new(config, seed);
    let now = Instant::now();
    let deadline = now + load.timeout;
    let ts = TrafficSelectors {
        local: vec![AddrSelector::host(local)],
        remote: vec![AddrSelector::host(load.responder)],
    };
    ep.connect(
        now,
        local,
        load.responder,
        Some(PeerAuth::ed25519(*key)),
        ts,
        deadline,
    );
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(t) = ep.poll_transmit() {
            sock.send_to(&t.payload, t.remote)
                .with_context(|| format!("{local}: sending to {}", t.remote))?;
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::ChildSaEstablished { .. } => return Ok(()),
                Event::AuthorizePeer { sa, .. } => {
                    ep.authorize(Instant::now(), sa, Some(PeerAuth::ed25519(*key)));
                }
                Event::Failed { reason, .. } | Event::IkeSaDeleted { reason, .. } => {
                    bail!("{local}: IKE failed: {reason}")
                }
                _ => {}
            }
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("{local}: no CHILD SA within {:?}", load.timeout);
        }
        let wake = ep.poll_timeout().unwrap_or(deadline).min(deadline);
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                // The socket's port is ephemeral: the responder's tells IKE
                // on 500 from NAT-T on 4500.
                let port = if from.port() == 500 { 500 } else { 4500 };
                let local = SocketAddr::new(local, port);
                Peer::handle(&mut ep, Instant::now(), local, from, &buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                ep.handle_timeout(Instant::now());
            }
            Err(e) => bail!("{local}: receiving: {e}"),
        }
    }
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

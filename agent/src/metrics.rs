//! Prometheus metrics: counters the agent increments (atomics, no locks on the
//! packet path) and the text exposition format served over HTTP on
//! `metrics.listen` (`GET /metrics`).
//!
//! Built on `prometheus-client`: each metric is declared once, in
//! [`Metrics::default`], where it is registered with its name and help. The
//! labelled counters the data path bumps are created there too and kept as
//! handles in arrays indexed by enum, so counting a packet is one atomic add
//! with no lock or hash lookup. The exposition is the Prometheus text format
//! 0.0.4 (<https://prometheus.io/docs/instrumenting/exposition_formats/>).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use oemesh_core::ike::endpoint::DropReason;
use oemesh_core::oe::{Dnssec, StaleSpiFate, UnreachableFate};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What happened to a packet, for `oemesh_packets_total{outcome=...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketOutcome {
    /// Sent ESP-encrypted.
    Encrypted,
    /// Received ESP, decrypted and written to the TUN.
    Decrypted,
    /// Sent or passed in cleartext (clear outcome, flushed clear).
    Clear,
    /// Held while a decision was pending.
    Held,
    /// Dropped (block, fail closed, hold overflow, invalid).
    Dropped,
}

impl PacketOutcome {
    const ALL: [PacketOutcome; 5] = [
        PacketOutcome::Encrypted,
        PacketOutcome::Decrypted,
        PacketOutcome::Clear,
        PacketOutcome::Held,
        PacketOutcome::Dropped,
    ];

    fn label(self) -> &'static str {
        match self {
            PacketOutcome::Encrypted => "encrypted",
            PacketOutcome::Decrypted => "decrypted",
            PacketOutcome::Clear => "clear",
            PacketOutcome::Held => "held",
            PacketOutcome::Dropped => "dropped",
        }
    }
}

/// Upper bounds (seconds) of the handshake latency histogram's buckets.
const HANDSHAKE_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0];

/// Everything the agent counts. Share it as `Arc<Metrics>`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    /// Every metric below, registered once, in exposition order.
    registry: Registry,
    packets: [Counter; PacketOutcome::ALL.len()],
    bytes: [Counter; PacketOutcome::ALL.len()],
    /// Decisions by reason; decisions are rare, so the family's lookup is fine.
    decisions: Family<DecisionLabel, Counter>,
    handshakes: Histogram,
    hold_drops: Counter,
    replay_failures: Counter,
    esp_auth_failures: Counter,
    esp_unknown_spi: Counter,
    esp_ts_mismatch: Counter,
    nat_moves: Counter,
    ike_auth_failures: Counter,
    ike_queue_drops: Counter,
    ike_cookies_sent: Counter,
    cookie_replies_limited: Counter,
    cookie_unanswerable: Counter,
    /// IKE messages core dropped, by reason (core counts them), in the
    /// order of [`DropReason::ALL`].
    ike_drops: [Counter; DropReason::ALL.len()],
    trust: [Counter; TrustEvent::ALL.len()],
    /// ICMP errors for IKE_SA_INIT, by what they did.
    icmp_errors: [Counter; UnreachableFate::ALL.len()],
    /// IPSECKEY answers by DNSSEC state.
    dnssec: [Counter; Dnssec::ALL.len()],
    /// Reports of ESP with unknown SPIs, by what they did.
    stale_spi: [Counter; StaleSpiFate::ALL.len()],
    /// Address requests of initiators behind a NAT (CP), by result: given,
    /// or why not (core counts them).
    nat_addresses: [Counter; NAT_ADDRESS_RESULTS.len()],
    /// Path MTU events (`metrics::pmtu`).
    pmtu: [Counter; PmtuEvent::ALL.len()],
}

/// The `result` labels of `oemesh_nat_address_requests_total`: `assigned`,
/// then core's refusals in the order of `AddressRefusal::ALL`.
const NAT_ADDRESS_RESULTS: [&str; 5] = {
    let r = oemesh_core::ike::error::AddressRefusal::ALL;
    ["assigned", r[0], r[1], r[2], r[3]]
};

/// `N` counters told apart by one label with fixed values, created once and
/// exposed in the order given (a `Family` would need a lookup per increment
/// and expose its members in hash order).
#[derive(Debug)]
struct Labelled<const N: usize> {
    key: &'static str,
    members: [(&'static str, Counter); N],
}

impl<const N: usize> Labelled<N> {
    /// Registers `name{key=value}` for each of `values`; returns the counters.
    fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        key: &'static str,
        values: [&'static str; N],
    ) -> [Counter; N] {
        let members = values.map(|v| (v, Counter::default()));
        let counters = members.each_ref().map(|(_, c)| c.clone());
        registry.register(name, help, Labelled { key, members });
        counters
    }
}

impl<const N: usize> EncodeMetric for Labelled<N> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (value, counter) in &self.members {
            let labels = [(self.key, *value)];
            counter.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    reason: String,
}

/// What the trust rules refused or flagged (`oemesh_trust_events_total{event}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustEvent {
    /// IKE messages from another address than their SA's IKE_SA_INIT (dropped).
    WrongAddress,
    /// IKE_SA_INIT over a source's share of half-open SAs (dropped).
    HalfOpenSourceFull,
    /// Peers whose identity is not their address (refused).
    IdentityRefused,
    /// INITIAL_CONTACT from anonymous peers (ignored).
    InitialContactIgnored,
    /// Anonymous SAs evicted to make room.
    AnonymousEvicted,
    /// Anonymous peers accepted although the lookup of their key failed.
    AnonymousLookupFailed,
    /// Downgrades detected (a peer private lately gone clear or anonymous).
    Downgrade,
    /// CHILD SAs refused with TS_UNACCEPTABLE: selectors outside this host
    /// and `[gateway] protects`, or outside what DNS vouches for the peer.
    TsRefused,
    /// Selectors a peer proposed that can never be vouched for (a subnet
    /// containing the peer itself).
    NotVouched,
}

impl TrustEvent {
    /// Every event, in label order.
    pub const ALL: [TrustEvent; 9] = [
        TrustEvent::WrongAddress,
        TrustEvent::HalfOpenSourceFull,
        TrustEvent::IdentityRefused,
        TrustEvent::InitialContactIgnored,
        TrustEvent::AnonymousEvicted,
        TrustEvent::AnonymousLookupFailed,
        TrustEvent::Downgrade,
        TrustEvent::TsRefused,
        TrustEvent::NotVouched,
    ];

    fn label(self) -> &'static str {
        match self {
            TrustEvent::WrongAddress => "wrong_address",
            TrustEvent::HalfOpenSourceFull => "half_open_source_full",
            TrustEvent::IdentityRefused => "identity_refused",
            TrustEvent::InitialContactIgnored => "initial_contact_ignored",
            TrustEvent::AnonymousEvicted => "anonymous_evicted",
            TrustEvent::AnonymousLookupFailed => "anonymous_lookup_failed",
            TrustEvent::Downgrade => "downgrade",
            TrustEvent::TsRefused => "ts_refused",
            TrustEvent::NotVouched => "not_vouched",
        }
    }
}

impl Default for Metrics {
    /// Registers every metric (names without the `_total` the encoder adds to
    /// counters) and creates the labelled counters the hot paths use.
    fn default() -> Self {
        let mut registry = Registry::default();
        let outcomes = PacketOutcome::ALL.map(PacketOutcome::label);
        let packets = Labelled::register(
            &mut registry,
            "oemesh_packets",
            "Packets by what the agent did with them",
            "outcome",
            outcomes,
        );
        let bytes = Labelled::register(
            &mut registry,
            "oemesh_bytes",
            "Bytes by what the agent did with them",
            "outcome",
            outcomes,
        );
        let trust = Labelled::register(
            &mut registry,
            "oemesh_trust_events",
            "What the trust rules refused, dropped or flagged (SECURITY.md)",
            "event",
            TrustEvent::ALL.map(TrustEvent::label),
        );
        let icmp_errors = Labelled::register(
            &mut registry,
            "oemesh_icmp_errors",
            "ICMP errors for this host's IKE datagrams, by what they did (ended an attempt \
             with a keyless destination, shortened a keyed one's wait, or matched nothing)",
            "fate",
            UnreachableFate::ALL.map(UnreachableFate::label),
        );
        let dnssec = Labelled::register(
            &mut registry,
            "oemesh_dnssec_answers",
            "IPSECKEY answers by DNSSEC state (secure, insecure, bogus: never used as a key, \
             indeterminate: no chain of trust, unvalidated: dns.dnssec off or no AD)",
            "state",
            Dnssec::ALL.map(Dnssec::name),
        );
        let decisions = Family::default();
        registry.register(
            "oemesh_decisions",
            "Per-destination decisions by reason",
            decisions.clone(),
        );
        let handshakes = Histogram::new(HANDSHAKE_BUCKETS);
        registry.register(
            "oemesh_handshake_seconds",
            "IKE handshake latency (IKE_SA_INIT to IKE_AUTH)",
            handshakes.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let hold_drops = counter(
            "oemesh_hold_drops",
            "Held packets dropped because the hold queue was full",
        );
        let replay_failures = counter(
            "oemesh_esp_replay_failures",
            "ESP packets refused by the anti-replay window",
        );
        let esp_auth_failures = counter(
            "oemesh_esp_auth_failures",
            "ESP packets whose ICV did not verify",
        );
        let esp_unknown_spi = counter(
            "oemesh_esp_unknown_spi",
            "ESP packets whose SPI names no installed SA",
        );
        let esp_ts_mismatch = counter(
            "oemesh_esp_ts_mismatch",
            "Decrypted ESP packets outside their SA's traffic selectors",
        );
        let nat_moves = counter(
            "oemesh_nat_moves",
            "Peers behind a NAT whose SAs moved to a new port (RFC 7296 §2.23)",
        );
        let ike_auth_failures = counter(
            "oemesh_ike_auth_failures",
            "IKE_AUTH exchanges that did not verify",
        );
        let ike_queue_drops = counter(
            "oemesh_ike_queue_drops",
            "IKE messages dropped because the control plane's queue was full",
        );
        let ike_cookies_sent = counter(
            "oemesh_ike_cookies_sent",
            "IKE_SA_INIT requests answered with a COOKIE (too many half-open SAs)",
        );
        let cookie_replies_limited = counter(
            "oemesh_ike_cookie_replies_limited",
            "IKE_SA_INIT requests left without a COOKIE reply: their source's reply rate was used up",
        );
        let cookie_unanswerable = counter(
            "oemesh_ike_cookie_unanswerable",
            "IKE_SA_INIT requests dropped while cookies were required: no nonce, or shorter than the reply",
        );
        let ike_drops = Labelled::register(
            &mut registry,
            "oemesh_ike_drops",
            "IKE messages dropped by the IKE endpoint, by reason",
            "reason",
            DropReason::ALL.map(DropReason::label),
        );
        let stale_spi = Labelled::register(
            &mut registry,
            "oemesh_stale_spi",
            "Sources of ESP with an unknown SPI reported to the control plane (at most one a \
             second each), by what they did: started OE toward the source (SAs lost in a \
             restart), or why not",
            "fate",
            StaleSpiFate::ALL.map(StaleSpiFate::label),
        );
        let nat_addresses = Labelled::register(
            &mut registry,
            "oemesh_nat_address_requests",
            "Address requests (CP, RFC 7296 §3.15) of initiators behind a NAT: given from \
             nat.pool, or refused and why",
            "result",
            NAT_ADDRESS_RESULTS,
        );
        let pmtu = Labelled::register(
            &mut registry,
            "oemesh_pmtu_events",
            "Path MTU through ESP: routers' \"too big\" for our ESP (lowered, clamped to the \
             minimum, not lower, not ours) and packets from the TUN too big for their peer's path \
             (answered, answer failed, sent anyway)",
            "event",
            PmtuEvent::ALL.map(PmtuEvent::label),
        );
        Metrics {
            registry,
            packets,
            bytes,
            decisions,
            handshakes,
            hold_drops,
            replay_failures,
            esp_auth_failures,
            esp_unknown_spi,
            esp_ts_mismatch,
            nat_moves,
            ike_auth_failures,
            ike_queue_drops,
            ike_cookies_sent,
            cookie_replies_limited,
            cookie_unanswerable,
            ike_drops,
            trust,
            icmp_errors,
            dnssec,
            stale_spi,
            nat_addresses,
            pmtu,
        }
    }
}

impl Metrics {
    /// Sets the count of `event` so far (core counts them).
    pub fn set_trust(&self, event: TrustEvent, n: u64) {
        self.trust[event as usize].inner().store(n, Relaxed);
    }

    /// Counts one ICMP error for an IKE datagram.
    pub fn icmp_error(&self, fate: UnreachableFate) {
        self.icmp_errors[fate as usize].inc();
    }

    /// Counts one report of ESP with an unknown SPI.
    pub fn stale_spi(&self, fate: StaleSpiFate) {
        self.stale_spi[fate as usize].inc();
    }

    /// Counts one packet of `len` bytes with `outcome`.
    pub fn packet(&self, outcome: PacketOutcome, len: usize) {
        self.packets(outcome, 1, len);
    }

    /// Counts `count` packets totalling `bytes` (one call per batch).
    pub fn packets(&self, outcome: PacketOutcome, count: u64, bytes: usize) {
        let i = outcome as usize;
        self.packets[i].inc_by(count);
        self.bytes[i].inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Counts a decision; `reason` is a short stable label (`no_ipseckey`,
    /// `ike_established`, `ike_timeout`, …).
    pub fn decision(&self, reason: &str) {
        self.decisions
            .get_or_create(&DecisionLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records how long an IKE handshake (IKE_SA_INIT to IKE_AUTH done) took.
    pub fn handshake(&self, took: Duration) {
        self.handshakes.observe(took.as_secs_f64());
    }

    /// A held packet dropped because the hold queue was full.
    pub fn hold_drop(&self) {
        self.hold_drops.inc();
    }

    /// An ESP packet refused by the anti-replay window.
    pub fn replay_failure(&self) {
        self.replay_failures.inc();
    }

    /// An ESP packet whose ICV did not verify.
    pub fn esp_auth_failure(&self) {
        self.esp_auth_failures.inc();
    }

    /// `n` more held packets dropped (the decision machine's hold limits).
    pub fn hold_drops_add(&self, n: u64) {
        self.hold_drops.inc_by(n);
    }

    /// An ESP packet whose SPI names no installed SA.
    pub fn esp_unknown_spi(&self) {
        self.esp_unknown_spi.inc();
    }

    /// A decrypted ESP packet whose inner addresses are outside its SA's
    /// traffic selectors.
    pub fn esp_ts_mismatch(&self) {
        self.esp_ts_mismatch.inc();
    }

    /// The SAs of a peer behind a NAT moved to its new port.
    pub fn nat_moved(&self) {
        self.nat_moves.inc();
    }

    /// An IKE_AUTH that did not verify.
    pub fn ike_auth_failure(&self) {
        self.ike_auth_failures.inc();
    }

    /// `n` more IKE messages that failed their ICV or AUTH.
    pub fn ike_auth_failures_add(&self, n: u64) {
        self.ike_auth_failures.inc_by(n);
    }

    /// An IKE message dropped because the control plane's queue was full.
    pub fn ike_queue_drop(&self) {
        self.ike_queue_drops.inc();
    }

    /// IKE messages dropped so far because the control plane's queue was full.
    pub fn ike_queue_drops(&self) -> u64 {
        self.ike_queue_drops.get()
    }

    /// `n` COOKIE replies a UDP worker sent (the engine's are taken by [`Self::sync`]).
    pub fn ike_cookies_sent_add(&self, n: u64) {
        self.ike_cookies_sent.inc_by(n);
    }

    /// COOKIE notifies sent so far, by the UDP workers and the engine.
    pub fn ike_cookies_sent(&self) -> u64 {
        self.ike_cookies_sent.get()
    }

    /// `n` cookie replies not sent: their source's rate was used up.
    pub fn cookie_replies_limited_add(&self, n: u64) {
        self.cookie_replies_limited.inc_by(n);
    }

    /// Cookie replies not sent so far because of the per-source rate.
    pub fn cookie_replies_limited(&self) -> u64 {
        self.cookie_replies_limited.get()
    }

    /// An IKE_SA_INIT request that may get no cookie reply (dropped).
    pub fn cookie_unanswerable(&self) {
        self.cookie_unanswerable.inc();
    }

    /// Sets the IKE messages dropped so far, per reason, as
    /// `oemesh_ike_drops_total{reason}`: `counts` is the IKE endpoint's
    /// `Stats::drops`, in the order of [`DropReason::ALL`] (one store each,
    /// no lookup: the control plane copies them after every round).
    pub fn set_ike_drops(&self, counts: &[u64; DropReason::ALL.len()]) {
        for (counter, &n) in self.ike_drops.iter().zip(counts) {
            counter.inner().store(n, Relaxed);
        }
    }

    /// Packets counted with `outcome` so far.
    pub fn packets_total(&self, outcome: PacketOutcome) -> u64 {
        self.packets[outcome as usize].get()
    }

    /// The text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped. Requests are
/// read with a bound on size and time; anything else gets 404.
pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = stream.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let response = response_for(&buf[..len], &metrics);
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn response_for(request: &[u8], metrics: &Metrics) -> String {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, ctype, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            ("200 OK", prometheus_text::CONTENT_TYPE, metrics.render())
        }
        _ => ("404 Not Found", "text/plain", "GET /metrics\n".to_owned()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Binds the metrics listener (so that a port in use fails at start, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

mod pmtu;
mod sync;
#[cfg(test)]
mod tests;

pub use pmtu::PmtuEvent;
pub use sync::NodeTotals;

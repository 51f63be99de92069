//! Prometheus metrics: counters the agent increments (atomics, no locks on the
//! packet path) and the text exposition format served over HTTP on
//! `metrics.listen` (`GET /metrics`).
//!
//! Written by hand rather than with a client library: a few counters and one
//! histogram, in a format that is a page of text
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
#[derive(Debug, Default)]
pub struct Metrics {
    packets: [AtomicU64; 5],
    bytes: [AtomicU64; 5],
    /// Decisions by reason; decisions are rare, so a small locked list is fine.
    decisions: Mutex<Vec<(String, u64)>>,
    handshake_buckets: [AtomicU64; HANDSHAKE_BUCKETS.len()],
    handshake_count: AtomicU64,
    handshake_sum_us: AtomicU64,
    hold_drops: AtomicU64,
    replay_failures: AtomicU64,
    esp_auth_failures: AtomicU64,
    esp_unknown_spi: AtomicU64,
    esp_ts_mismatch: AtomicU64,
    ike_auth_failures: AtomicU64,
    ike_queue_drops: AtomicU64,
    ike_cookies_sent: AtomicU64,
    trust: [AtomicU64; TrustEvent::ALL.len()],
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
}

impl TrustEvent {
    /// Every event, in label order.
    pub const ALL: [TrustEvent; 7] = [
        TrustEvent::WrongAddress,
        TrustEvent::HalfOpenSourceFull,
        TrustEvent::IdentityRefused,
        TrustEvent::InitialContactIgnored,
        TrustEvent::AnonymousEvicted,
        TrustEvent::AnonymousLookupFailed,
        TrustEvent::Downgrade,
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
        }
    }
}

impl Metrics {
    /// Sets the count of `event` so far (core counts them).
    pub fn set_trust(&self, event: TrustEvent, n: u64) {
        self.trust[event as usize].store(n, Relaxed);
    }

    /// Counts one packet of `len` bytes with `outcome`.
    pub fn packet(&self, outcome: PacketOutcome, len: usize) {
        self.packets(outcome, 1, len);
    }

    /// Counts `count` packets totalling `bytes` (one call per batch).
    pub fn packets(&self, outcome: PacketOutcome, count: u64, bytes: usize) {
        let i = outcome as usize;
        self.packets[i].fetch_add(count, Relaxed);
        self.bytes[i].fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts a decision; `reason` is a short stable label (`no_ipseckey`,
    /// `ike_established`, `ike_timeout`, …).
    pub fn decision(&self, reason: &str) {
        let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        match d.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => d.push((reason.to_owned(), 1)),
        }
    }

    /// Records how long an IKE handshake (IKE_SA_INIT to IKE_AUTH done) took.
    pub fn handshake(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in HANDSHAKE_BUCKETS.iter().zip(&self.handshake_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.handshake_count.fetch_add(1, Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.handshake_sum_us.fetch_add(us, Relaxed);
    }

    /// A held packet dropped because the hold queue was full.
    pub fn hold_drop(&self) {
        self.hold_drops.fetch_add(1, Relaxed);
    }

    /// An ESP packet refused by the anti-replay window.
    pub fn replay_failure(&self) {
        self.replay_failures.fetch_add(1, Relaxed);
    }

    /// An ESP packet whose ICV did not verify.
    pub fn esp_auth_failure(&self) {
        self.esp_auth_failures.fetch_add(1, Relaxed);
    }

    /// `n` more held packets dropped (the decision machine's hold limits).
    pub fn hold_drops_add(&self, n: u64) {
        self.hold_drops.fetch_add(n, Relaxed);
    }

    /// An ESP packet whose SPI names no installed SA.
    pub fn esp_unknown_spi(&self) {
        self.esp_unknown_spi.fetch_add(1, Relaxed);
    }

    /// A decrypted ESP packet whose inner addresses are outside its SA's
    /// traffic selectors.
    pub fn esp_ts_mismatch(&self) {
        self.esp_ts_mismatch.fetch_add(1, Relaxed);
    }

    /// An IKE_AUTH that did not verify.
    pub fn ike_auth_failure(&self) {
        self.ike_auth_failures.fetch_add(1, Relaxed);
    }

    /// `n` more IKE messages that failed their ICV or AUTH.
    pub fn ike_auth_failures_add(&self, n: u64) {
        self.ike_auth_failures.fetch_add(n, Relaxed);
    }

    /// An IKE message dropped because the control plane's queue was full.
    pub fn ike_queue_drop(&self) {
        self.ike_queue_drops.fetch_add(1, Relaxed);
    }

    /// IKE messages dropped so far because the control plane's queue was full.
    pub fn ike_queue_drops(&self) -> u64 {
        self.ike_queue_drops.load(Relaxed)
    }

    /// Sets the COOKIE notifies sent so far (the IKE endpoint counts them).
    pub fn set_ike_cookies_sent(&self, n: u64) {
        self.ike_cookies_sent.store(n, Relaxed);
    }

    /// Packets counted with `outcome` so far.
    pub fn packets_total(&self, outcome: PacketOutcome) -> u64 {
        self.packets[outcome as usize].load(Relaxed)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(
            "oemesh_packets_total",
            "Packets by what the agent did with them.",
        );
        for o in PacketOutcome::ALL {
            let v = self.packets[o as usize].load(Relaxed);
            let _ = writeln!(out, "oemesh_packets_total{{outcome=\"{}\"}} {v}", o.label());
        }
        let _ = writeln!(
            out,
            "# HELP oemesh_bytes_total Bytes by what the agent did with them.\n# TYPE oemesh_bytes_total counter"
        );
        for o in PacketOutcome::ALL {
            let v = self.bytes[o as usize].load(Relaxed);
            let _ = writeln!(out, "oemesh_bytes_total{{outcome=\"{}\"}} {v}", o.label());
        }
        let _ = writeln!(
            out,
            "# HELP oemesh_trust_events_total What the trust rules refused, dropped or flagged (SECURITY.md).\n# TYPE oemesh_trust_events_total counter"
        );
        for e in TrustEvent::ALL {
            let v = self.trust[e as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "oemesh_trust_events_total{{event=\"{}\"}} {v}",
                e.label()
            );
        }
        let _ = writeln!(
            out,
            "# HELP oemesh_decisions_total Per-destination decisions by reason.\n# TYPE oemesh_decisions_total counter"
        );
        {
            let d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            for (reason, n) in d.iter() {
                let _ = writeln!(
                    out,
                    "oemesh_decisions_total{{reason=\"{}\"}} {n}",
                    escape(reason)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP oemesh_handshake_seconds IKE handshake latency (IKE_SA_INIT to IKE_AUTH).\n# TYPE oemesh_handshake_seconds histogram"
        );
        for (bound, bucket) in HANDSHAKE_BUCKETS.iter().zip(&self.handshake_buckets) {
            let _ = writeln!(
                out,
                "oemesh_handshake_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.handshake_count.load(Relaxed);
        #[allow(clippy::cast_precision_loss)] // exposition only
        let sum = self.handshake_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "oemesh_handshake_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "oemesh_handshake_seconds_sum {sum}");
        let _ = writeln!(out, "oemesh_handshake_seconds_count {count}");
        for (name, help, v) in [
            (
                "oemesh_hold_drops_total",
                "Held packets dropped because the hold queue was full.",
                &self.hold_drops,
            ),
            (
                "oemesh_esp_replay_failures_total",
                "ESP packets refused by the anti-replay window.",
                &self.replay_failures,
            ),
            (
                "oemesh_esp_auth_failures_total",
                "ESP packets whose ICV did not verify.",
                &self.esp_auth_failures,
            ),
            (
                "oemesh_esp_unknown_spi_total",
                "ESP packets whose SPI names no installed SA.",
                &self.esp_unknown_spi,
            ),
            (
                "oemesh_esp_ts_mismatch_total",
                "Decrypted ESP packets outside their SA's traffic selectors.",
                &self.esp_ts_mismatch,
            ),
            (
                "oemesh_ike_auth_failures_total",
                "IKE_AUTH exchanges that did not verify.",
                &self.ike_auth_failures,
            ),
            (
                "oemesh_ike_queue_drops_total",
                "IKE messages dropped because the control plane's queue was full.",
                &self.ike_queue_drops,
            ),
            (
                "oemesh_ike_cookies_sent_total",
                "IKE_SA_INIT requests answered with a COOKIE (too many half-open SAs).",
                &self.ike_cookies_sent,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
            ("200 OK", "text/plain; version=0.0.4", metrics.render())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exposition_format() {
        let m = Metrics::default();
        m.packet(PacketOutcome::Encrypted, 100);
        m.packets(PacketOutcome::Encrypted, 2, 300);
        m.decision("no_ipseckey");
        m.decision("no_ipseckey");
        m.decision("ike_established");
        m.handshake(Duration::from_millis(30));
        m.handshake(Duration::from_secs(3));
        m.hold_drop();
        let text = m.render();
        for line in [
            "oemesh_packets_total{outcome=\"encrypted\"} 3",
            "oemesh_bytes_total{outcome=\"encrypted\"} 400",
            "oemesh_packets_total{outcome=\"dropped\"} 0",
            "oemesh_decisions_total{reason=\"no_ipseckey\"} 2",
            "oemesh_decisions_total{reason=\"ike_established\"} 1",
            "oemesh_handshake_seconds_bucket{le=\"0.025\"} 0",
            "oemesh_handshake_seconds_bucket{le=\"0.05\"} 1",
            "oemesh_handshake_seconds_bucket{le=\"5\"} 2",
            "oemesh_handshake_seconds_bucket{le=\"+Inf\"} 2",
            "oemesh_handshake_seconds_sum 3.03",
            "oemesh_handshake_seconds_count 2",
            "oemesh_hold_drops_total 1",
            "# TYPE oemesh_handshake_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn http_routes() {
        let m = Metrics::default();
        let r = response_for(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("oemesh_packets_total"));
        let r = response_for(b"GET / HTTP/1.1\r\n\r\n", &m);
        assert!(r.starts_with("HTTP/1.1 404"));
    }
}

//! The exposition compared with the hand-written one it replaced, and the
//! HTTP routes.

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

/// The exposition as the hand-written encoder produced it before
/// prometheus-client, plus `oemesh_ike_drops_total` and
/// `oemesh_stale_spi_total`, `oemesh_pmtu_events_total` (new): same names,
/// labels, HELP and TYPE lines, values and order.
#[test]
fn exposition_unchanged() {
    let m = Metrics::default();
    m.packets(PacketOutcome::Encrypted, 3, 400);
    m.packet(PacketOutcome::Dropped, 60);
    m.set_trust(TrustEvent::Downgrade, 4);
    m.decision("no_ipseckey");
    m.handshake(Duration::from_millis(30));
    m.hold_drops_add(2);
    m.replay_failure();
    m.esp_auth_failure();
    m.esp_unknown_spi();
    m.esp_ts_mismatch();
    m.nat_moved();
    m.nat_moved();
    m.ike_auth_failures_add(6);
    m.ike_queue_drop();
    m.ike_cookies_sent_add(7);
    m.cookie_replies_limited_add(4);
    m.cookie_unanswerable();
    m.stale_spi(StaleSpiFate::RateLimited);
    m.pmtu(PmtuEvent::Lowered);
    let mut drops = [0; DropReason::ALL.len()];
    drops[DropReason::UnknownSpi as usize] = 3;
    m.set_ike_drops(&drops);
    drops[DropReason::UnknownSpi as usize] = 5;
    m.set_ike_drops(&drops);
    let before = r#"# HELP oemesh_packets_total Packets by what the agent did with them.
# TYPE oemesh_packets_total counter
oemesh_packets_total{outcome="encrypted"} 3
oemesh_packets_total{outcome="decrypted"} 0
oemesh_packets_total{outcome="clear"} 0
oemesh_packets_total{outcome="held"} 0
oemesh_packets_total{outcome="dropped"} 1
# HELP oemesh_bytes_total Bytes by what the agent did with them.
# TYPE oemesh_bytes_total counter
oemesh_bytes_total{outcome="encrypted"} 400
oemesh_bytes_total{outcome="decrypted"} 0
oemesh_bytes_total{outcome="clear"} 0
oemesh_bytes_total{outcome="held"} 0
oemesh_bytes_total{outcome="dropped"} 60
# HELP oemesh_trust_events_total What the trust rules refused, dropped or flagged (SECURITY.md).
# TYPE oemesh_trust_events_total counter
oemesh_trust_events_total{event="wrong_address"} 0
oemesh_trust_events_total{event="half_open_source_full"} 0
oemesh_trust_events_total{event="identity_refused"} 0
oemesh_trust_events_total{event="initial_contact_ignored"} 0
oemesh_trust_events_total{event="anonymous_evicted"} 0
oemesh_trust_events_total{event="anonymous_lookup_failed"} 0
oemesh_trust_events_total{event="downgrade"} 4
oemesh_trust_events_total{event="ts_refused"} 0
oemesh_trust_events_total{event="not_vouched"} 0
# HELP oemesh_icmp_errors_total ICMP errors for this host's IKE datagrams, by what they did (ended an attempt with a keyless destination, shortened a keyed one's wait, or matched nothing).
# TYPE oemesh_icmp_errors_total counter
oemesh_icmp_errors_total{fate="ended"} 0
oemesh_icmp_errors_total{fate="shortened"} 0
oemesh_icmp_errors_total{fate="ignored"} 0
# HELP oemesh_dnssec_answers_total IPSECKEY answers by DNSSEC state (secure, insecure, bogus: never used as a key, indeterminate: no chain of trust, unvalidated: dns.dnssec off or no AD).
# TYPE oemesh_dnssec_answers_total counter
oemesh_dnssec_answers_total{state="secure"} 0
oemesh_dnssec_answers_total{state="insecure"} 0
oemesh_dnssec_answers_total{state="bogus"} 0
oemesh_dnssec_answers_total{state="indeterminate"} 0
oemesh_dnssec_answers_total{state="unvalidated"} 0
# HELP oemesh_decisions_total Per-destination decisions by reason.
# TYPE oemesh_decisions_total counter
oemesh_decisions_total{reason="no_ipseckey"} 1
# HELP oemesh_handshake_seconds IKE handshake latency (IKE_SA_INIT to IKE_AUTH).
# TYPE oemesh_handshake_seconds histogram
oemesh_handshake_seconds_bucket{le="0.005"} 0
oemesh_handshake_seconds_bucket{le="0.01"} 0
oemesh_handshake_seconds_bucket{le="0.025"} 0
oemesh_handshake_seconds_bucket{le="0.05"} 1
oemesh_handshake_seconds_bucket{le="0.1"} 1
oemesh_handshake_seconds_bucket{le="0.25"} 1
oemesh_handshake_seconds_bucket{le="0.5"} 1
oemesh_handshake_seconds_bucket{le="1"} 1
oemesh_handshake_seconds_bucket{le="2"} 1
oemesh_handshake_seconds_bucket{le="5"} 1
oemesh_handshake_seconds_bucket{le="+Inf"} 1
oemesh_handshake_seconds_sum 0.03
oemesh_handshake_seconds_count 1
# HELP oemesh_hold_drops_total Held packets dropped because the hold queue was full.
# TYPE oemesh_hold_drops_total counter
oemesh_hold_drops_total 2
# HELP oemesh_esp_replay_failures_total ESP packets refused by the anti-replay window.
# TYPE oemesh_esp_replay_failures_total counter
oemesh_esp_replay_failures_total 1
# HELP oemesh_esp_auth_failures_total ESP packets whose ICV did not verify.
# TYPE oemesh_esp_auth_failures_total counter
oemesh_esp_auth_failures_total 1
# HELP oemesh_esp_unknown_spi_total ESP packets whose SPI names no installed SA.
# TYPE oemesh_esp_unknown_spi_total counter
oemesh_esp_unknown_spi_total 1
# HELP oemesh_esp_ts_mismatch_total Decrypted ESP packets outside their SA's traffic selectors.
# TYPE oemesh_esp_ts_mismatch_total counter
oemesh_esp_ts_mismatch_total 1
# HELP oemesh_nat_moves_total Peers behind a NAT whose SAs moved to a new port (RFC 7296 §2.23).
# TYPE oemesh_nat_moves_total counter
oemesh_nat_moves_total 2
# HELP oemesh_ike_auth_failures_total IKE_AUTH exchanges that did not verify.
# TYPE oemesh_ike_auth_failures_total counter
oemesh_ike_auth_failures_total 6
# HELP oemesh_ike_queue_drops_total IKE messages dropped because the control plane's queue was full.
# TYPE oemesh_ike_queue_drops_total counter
oemesh_ike_queue_drops_total 1
# HELP oemesh_ike_cookies_sent_total IKE_SA_INIT requests answered with a COOKIE (too many half-open SAs).
# TYPE oemesh_ike_cookies_sent_total counter
oemesh_ike_cookies_sent_total 7
# HELP oemesh_ike_cookie_replies_limited_total IKE_SA_INIT requests left without a COOKIE reply: their source's reply rate was used up.
# TYPE oemesh_ike_cookie_replies_limited_total counter
oemesh_ike_cookie_replies_limited_total 4
# HELP oemesh_ike_cookie_unanswerable_total IKE_SA_INIT requests dropped while cookies were required: no nonce, or shorter than the reply.
# TYPE oemesh_ike_cookie_unanswerable_total counter
oemesh_ike_cookie_unanswerable_total 1
"#;
    // Every reason, in core's order, whether it happened or not.
    let mut added = "# HELP oemesh_ike_drops_total IKE messages dropped by the IKE endpoint, \
                     by reason.\n# TYPE oemesh_ike_drops_total counter\n"
        .to_owned();
    for r in DropReason::ALL {
        let n = if r == DropReason::UnknownSpi { 5 } else { 0 };
        added += &format!("oemesh_ike_drops_total{{reason=\"{}\"}} {n}\n", r.label());
    }
    assert!(added.contains("oemesh_ike_drops_total{reason=\"unknown_spi\"} 5\n"));
    // Then every fate of a stale-SPI report (issue 18), in core's order.
    added += "# HELP oemesh_stale_spi_total Sources of ESP with an unknown SPI reported to the \
              control plane (at most one a second each), by what they did: started OE toward \
              the source (SAs lost in a restart), or why not.\n\
              # TYPE oemesh_stale_spi_total counter\n";
    for f in StaleSpiFate::ALL {
        let n = u64::from(f == StaleSpiFate::RateLimited);
        added += &format!("oemesh_stale_spi_total{{fate=\"{}\"}} {n}\n", f.label());
    }
    // Then the address requests of initiators behind a NAT (issue 13).
    added += "# HELP oemesh_nat_address_requests_total Address requests (CP, RFC 7296 §3.15) of \
              initiators behind a NAT: given from nat.pool, or refused and why.\n\
              # TYPE oemesh_nat_address_requests_total counter\n";
    for r in [
        "assigned",
        "not_behind_nat",
        "malformed",
        "other_family",
        "pool",
    ] {
        added += &format!("oemesh_nat_address_requests_total{{result=\"{r}\"}} 0\n");
    }
    // Then path MTU events (issue 14).
    added += "# HELP oemesh_pmtu_events_total Path MTU through ESP: routers' \"too big\" for our \
              ESP (lowered, clamped to the minimum, not lower, not ours) and packets from the TUN \
              too big for their peer's path (answered, answer failed, sent anyway).\n\
              # TYPE oemesh_pmtu_events_total counter\n";
    for e in PmtuEvent::ALL {
        let n = u64::from(e == PmtuEvent::Lowered);
        added += &format!("oemesh_pmtu_events_total{{event=\"{}\"}} {n}\n", e.label());
    }
    assert_eq!(m.render(), format!("{before}{added}"));
    assert_eq!(m.ike_queue_drops(), 1);
    assert_eq!(m.packets_total(PacketOutcome::Dropped), 1);
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

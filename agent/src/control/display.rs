//! Human output of `oemesh status|peers|check`: aligned columns like `wg show`.
//! Scripts use `--json` instead; this text may change.

use std::fmt::Write;

use super::proto::{CheckReply, PeerAuth, PeerInfo, PeerState, StatusReply};

/// `oemesh status`.
pub fn status(s: &StatusReply) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "oemesh {}, pid {}, up {}",
        s.version,
        s.pid,
        duration(s.uptime_s)
    );
    // An older agent sends only `address`.
    let addr = match (&s.addresses[..], s.address) {
        ([], None) => "-".to_owned(),
        ([], Some(a)) => a.to_string(),
        (all, _) => all
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    let identity = match (&s.public_key, s.authenticated) {
        (Some(k), true) => format!("authenticated, key {k}"),
        _ => "anonymous only, no key".to_owned(),
    };
    let policy = if s.policy.is_empty() {
        "everything clear (no prefixes)".to_owned()
    } else {
        s.policy.join(", ")
    };
    let gateway = (!s.gateway.is_empty()).then(|| format!("protects {}", s.gateway.join(", ")));
    let mut rows = vec![
        ("address", format!("{addr} ({identity})")),
        ("policy", policy),
        ("config", config_row(s)),
        (
            "tun",
            format!(
                "{} ({}, {} queue{})",
                s.tun,
                if s.tun_offload {
                    "offload"
                } else {
                    "no offload"
                },
                s.tun_queues,
                if s.tun_queues == 1 { "" } else { "s" }
            ),
        ),
        (
            "routing",
            format!("table {}, fwmark {:#x}", s.table, s.fwmark),
        ),
        (
            "dns",
            if s.dns_servers.is_empty() {
                "-".to_owned()
            } else {
                s.dns_servers.join(", ")
            },
        ),
        (
            "dnssec",
            if s.dnssec.is_empty() {
                "-".to_owned()
            } else {
                s.dnssec.clone()
            },
        ),
        (
            "metrics",
            s.metrics.clone().unwrap_or_else(|| "off".to_owned()),
        ),
        (
            "peers",
            format!(
                "{} private, {} clear, {} pending, {} blocked",
                s.peers.private, s.peers.clear, s.peers.pending, s.peers.blocked
            ),
        ),
        (
            "sas",
            format!(
                "{} ESP pair(s), {} IKE SA(s), {} half-open",
                s.sas, s.ike_sas, s.half_open
            ),
        ),
        ("drops", s.drops.to_string()),
    ];
    // Only for a gateway, after the policy.
    if let Some(g) = gateway {
        rows.insert(2, ("gateway", g));
    }
    // Only when IKE_SA_INIT requests were answered with cookies: a flood, or
    // a busy responder (docs/floods.md).
    let cookies = (s.cookies_sent > 0 || s.cookies_limited > 0).then(|| {
        let limited = s.cookies_limited;
        (
            "cookies",
            format!(
                "{} sent, {limited} not sent (over ike.cookie_rate for their source)",
                s.cookies_sent
            ),
        )
    });
    for (k, v) in rows.into_iter().chain(cookies) {
        let _ = writeln!(out, "  {:<9}{v}", format!("{k}:"));
    }
    out
}

/// The DNSSEC column: `yes` for a key from a secure answer; otherwise the
/// answer's state (`insecure`, `bogus`, `indeterminate`, `unvalidated`), or
/// `no` when DNS was not asked.
fn dnssec_column(p: &PeerInfo) -> String {
    match (&p.dnssec_state, p.dnssec) {
        (_, true) => "yes".to_owned(),
        (Some(s), false) if s == "secure" => "no".to_owned(),
        (Some(s), false) => s.clone(),
        (None, false) => "no".to_owned(),
    }
}

/// The reason, and behind a NAT where the peer is and which address the SA
/// uses: `(NAT: via 198.51.100.1:4501, given 100.64.0.1)`.
fn reason_column(p: &PeerInfo) -> String {
    match (p.assigned, p.endpoint) {
        (Some(a), Some(_)) if p.assigned_to_us => {
            format!(
                "{} (this host is behind a NAT; the peer gave it {a})",
                p.reason
            )
        }
        (Some(a), Some(e)) => format!("{} (NAT: via {e}, given {a})", p.reason),
        _ => p.reason.clone(),
    }
}

/// `oemesh peers`: one aligned row per peer, sorted by address.
pub fn peers(peers: &[PeerInfo]) -> String {
    if peers.is_empty() {
        return "no peers\n".to_owned();
    }
    let mut sorted: Vec<&PeerInfo> = peers.iter().collect();
    sorted.sort_by_key(|p| p.peer);
    let header = [
        "PEER", "STATE", "AUTH", "DNSSEC", "EXPIRES", "IN", "OUT", "REASON",
    ]
    .map(str::to_owned);
    let mut rows = vec![header];
    for p in sorted {
        rows.push([
            p.peer.to_string(),
            state(p.state).to_owned(),
            auth(p.auth).to_owned(),
            dnssec_column(p),
            p.expires_in_s.map_or_else(|| "-".to_owned(), duration),
            bytes(p.bytes_in),
            bytes(p.bytes_out),
            reason_column(p),
        ]);
    }
    table(&rows)
}

/// `oemesh check ADDR`.
pub fn check(c: &CheckReply) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", c.addr);
    let by = c.prefix.as_deref().map_or_else(
        || "no prefix matches: clear".to_owned(),
        |p| format!("via {p}"),
    );
    let _ = writeln!(out, "  policy:  {} ({by})", c.group);
    let _ = writeln!(out, "  key at:  {} IPSECKEY", c.reverse_name);
    if let Some(k) = &c.ipseckey {
        let _ = writeln!(out, "  lookup:  {k}");
    }
    if let Some(d) = &c.dnssec {
        let chain = c.dnssec_chain.as_deref().unwrap_or("-");
        let _ = writeln!(out, "  dnssec:  {d} ({chain})");
    }
    match &c.peer {
        Some(p) => {
            let expires = p
                .expires_in_s
                .map_or_else(String::new, |s| format!(", expires in {}", duration(s)));
            let _ = writeln!(
                out,
                "  state:   {} ({}, {}{expires})",
                state(p.state),
                p.reason,
                auth(p.auth)
            );
        }
        None => {
            let _ = writeln!(out, "  state:   none yet");
        }
    }
    let _ = writeln!(out, "  next:    {}", c.action);
    out
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn state(s: PeerState) -> &'static str {
    match s {
        PeerState::Private => "private",
        PeerState::Clear => "clear",
        PeerState::Pending => "pending",
        PeerState::Blocked => "blocked",
    }
}

fn auth(a: Option<PeerAuth>) -> &'static str {
    match a {
        Some(PeerAuth::Authenticated) => "authenticated",
        Some(PeerAuth::Anonymous) => "anonymous",
        None => "-",
    }
}

/// `3h12m`, `14m5s`, `42s`: the two largest units.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) if m == 0 => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// `512 B`, `1.2 KiB`, `3.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // display only
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `oemesh reload`: what changed, one item per line.
///
/// ```text
/// reloaded /etc/oemesh/oemesh.toml
///   policy:   + 10.1.0.0/16 private
///             ~ 192.0.2.0/24 private-or-clear -> private
///   closed:   198.51.100.7: now in `clear`
///   restart needed for: [ike]
/// ```
pub fn reloaded(r: &super::proto::ReloadReport) -> String {
    let mut out = format!(
        "reloaded {}{}\n",
        r.config,
        if r.changed() { "" } else { ": nothing changed" }
    );
    let mut section = |name: &str, lines: &[String]| {
        for (i, line) in lines.iter().enumerate() {
            let label = if i == 0 {
                format!("{name}:")
            } else {
                String::new()
            };
            out.push_str(&format!("  {label:<10}{line}\n"));
        }
    };
    section("policy", &r.policy);
    section("options", &r.options);
    section("key", r.key.as_slice());
    section("dns", r.dns.as_slice());
    section("closed", &r.closed);
    if r.forgotten > 0 {
        section(
            "outcomes",
            &[format!(
                "{} cached clear/blocked outcome(s) decided again at their next packet",
                r.forgotten
            )],
        );
    }
    if !r.restart_needed.is_empty() {
        out.push_str(&format!(
            "  changed in the file, applied at the next start only: {}\n",
            r.restart_needed.join(", ")
        ));
    }
    out
}

/// `/etc/oemesh/oemesh.toml (reloaded 2 times, last 5m ago)`.
fn config_row(s: &StatusReply) -> String {
    let file = if s.config.is_empty() { "-" } else { &s.config };
    match (s.reloads, s.reloaded_s_ago) {
        (0, _) | (_, None) => file.to_owned(),
        (n, Some(ago)) => format!(
            "{file} (reloaded {n} time{}, last {} ago)",
            if n == 1 { "" } else { "s" },
            duration(ago)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(845), "14m5s");
        assert_eq!(duration(3600 * 3 + 720), "3h12m");
        assert_eq!(duration(86400 * 2 + 3600), "2d1h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn cookies_show_only_when_some_were_sent() {
        let quiet = status(&StatusReply::default());
        assert!(!quiet.contains("cookies:"), "{quiet}");
        let flood = status(&StatusReply {
            cookies_sent: 120_000,
            cookies_limited: 7,
            ..StatusReply::default()
        });
        assert!(
            flood.contains("  cookies: 120000 sent, 7 not sent (over ike.cookie_rate"),
            "{flood}"
        );
    }

    #[test]
    fn gateway_shows_only_for_a_gateway() {
        let host = status(&StatusReply::default());
        assert!(!host.contains("gateway:"), "{host}");
        let gw = status(&StatusReply {
            gateway: vec!["10.1.0.0/24".into(), "2001:db8:1::/64".into()],
            ..StatusReply::default()
        });
        let lines: Vec<&str> = gw.lines().collect();
        assert_eq!(
            lines[3], "  gateway: protects 10.1.0.0/24, 2001:db8:1::/64",
            "after address and policy: {gw}"
        );
        // JSON: the list, and no key at all for a host.
        let json = serde_json::to_value(StatusReply::default()).unwrap_or_default();
        assert!(json.get("gateway").is_none(), "{json}");
    }

    #[test]
    fn peers_are_aligned() {
        let p = |ip: &str, st, reason: &str| PeerInfo {
            peer: ip.parse().unwrap(),
            state: st,
            auth: (st == PeerState::Private).then_some(PeerAuth::Authenticated),
            dnssec: st == PeerState::Private,
            dnssec_state: None,
            reason: reason.into(),
            expires_in_s: Some(900),
            bytes_in: 2048,
            bytes_out: 10,
            group: None,
            endpoint: None,
            assigned: None,
            assigned_to_us: false,
        };
        let out = peers(&[
            p("192.0.2.200", PeerState::Clear, "no IPSECKEY (NXDOMAIN)"),
            p("192.0.2.20", PeerState::Private, "IKE established"),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("PEER         STATE    AUTH"), "{out}");
        assert!(
            lines[1].starts_with("192.0.2.20   private  authenticated  yes"),
            "{out}"
        );
        assert!(lines[2].ends_with("no IPSECKEY (NXDOMAIN)"), "{out}");
        let col = lines[0].find("REASON").unwrap();
        assert_eq!(lines[1].find("IKE established"), Some(col));
        assert_eq!(peers(&[]), "no peers\n");
    }
}

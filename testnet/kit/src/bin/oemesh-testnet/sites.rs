//! The demo's two sites (issue 14): gw-a and gw-b on the switch, each running
//! the agent with `[gateway] protects` = its LAN, a plain host and an agent
//! host behind each ([`oemesh_testkit::topology::sites`]), the wildcards
//! published with `dnskeys publish --subnet`.
//!
//! ```text
//! switch ── gw-a 192.0.2.31 ── LAN A 10.1.0.0/24: a-plain .10 (no agent), a-agent .11 (agent, key)
//!        ── gw-b 192.0.2.32 ── LAN B 10.2.0.0/24: b-plain .10 (no agent), b-agent .11 (agent, key)
//! ```
//!
//! Three flows, each with a sniffer on the WAN (the switch) and on each LAN
//! it crosses, started for that flow alone:
//!
//! - a-plain → b-plain: site to site. WAN: ESP between the gateways only;
//!   each LAN: the hosts' packets in the clear, as they sent them.
//! - a-agent → b-agent: nested. WAN: ESP between the gateways only; each LAN:
//!   the hosts' own ESP, nothing in the clear.
//! - alice → b-plain: a lone host with an agent to a host behind a gateway.
//!   WAN: ESP between alice and gw-b only; LAN B: clear.
//!
//! On the WAN, besides: no packet with a LAN address outside the gateways'
//! ESP but DNS (the LAN hosts' agents ask the testnet's server in the clear),
//! and no flow's marker anywhere.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use oemesh_testkit::capture::{Capture, Captured, Packet};
use oemesh_testkit::topology::sites::{SITES, Sites, SitesOptions};
use oemesh_testkit::topology::{AgentConfig, DNS_V4, Host, Kept, KeptHost, KeptProcess, Testnet};

use crate::demo::{dropped_note, exchange, flow};
use crate::report::Row;
use crate::traffic::EchoServers;
use crate::wire::{Evidence, Flow, Verdict};
use crate::{interrupted, say};

/// The TCP transfer of each sites flow: small, several full-sized segments.
const TCP_BYTES: usize = 64 << 10;
/// How long an agent may take to show the expected state.
const VIEW_WAIT: Duration = Duration::from_secs(5);

/// Builds the two sites on `net`'s switch and starts their agents (gateways
/// first), and gives alice's agent the sites' LANs in `private-or-clear`
/// (restarting it). Drop the result before `net`.
pub(crate) fn up(net: &Testnet) -> Result<Sites> {
    let sites = net.two_sites(&SitesOptions::default())?;
    let mut base = AgentConfig::default();
    if let Some(anchors) = net.anchor_file() {
        base.validate_dnssec(&anchors);
    }
    let alice = net.alice();
    alice.set_agent_config(&sites.wan_config(&base))?;
    alice
        .restart_agent()
        .context("restarting alice's agent with the sites' LANs")?;
    Ok(sites)
}

/// A segment with a sniffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Wan,
    LanA,
    LanB,
}

impl Segment {
    fn name(self) -> &'static str {
        match self {
            Segment::Wan => "WAN",
            Segment::LanA => "LAN A",
            Segment::LanB => "LAN B",
        }
    }

    fn capture(self, net: &Testnet, sites: &Sites, tag: &str) -> Result<Capture> {
        let name = format!(
            "demo-{tag}-{}",
            self.name().to_lowercase().replace(' ', "-")
        );
        match self {
            Segment::Wan => net.capture(&name),
            Segment::LanA => sites.a().capture_lan(net.dir(), &name),
            Segment::LanB => sites.b().capture_lan(net.dir(), &name),
        }
    }
}

/// What one segment should show of a flow: the packets between `seen.from_ip`
/// and `seen.to_ip`, ESP only (`seen.private`) or clear with the marker.
struct Check {
    segment: Segment,
    seen: Flow,
    expected: String,
}

/// One sites flow: the traffic, the checks per segment, the agent that must
/// see the far end private and authenticated.
struct Scenario<'a> {
    flow: Flow,
    from: &'a Host,
    why: &'static str,
    checks: Vec<Check>,
    viewer: Option<(&'a Host, &'a Host)>,
}

/// `flow` with other ends (what a segment shows of it), the same marker.
fn as_seen(f: &Flow, a: &Host, b: &Host, private: bool) -> Flow {
    Flow {
        from: a.name().to_owned(),
        to: b.name().to_owned(),
        from_ip: a.ip(),
        to_ip: b.ip(),
        private,
        ..f.clone()
    }
}

fn esp_between(segment: Segment, f: &Flow, a: &Host, b: &Host, what: &str) -> Check {
    Check {
        segment,
        seen: as_seen(f, a, b, true),
        expected: format!("{what} ESP {} ↔ {} only", a.name(), b.name()),
    }
}

fn clear_between(segment: Segment, f: &Flow, a: &Host, b: &Host) -> Check {
    Check {
        segment,
        seen: as_seen(f, a, b, false),
        expected: "clear, as the plain host sent it".to_owned(),
    }
}

fn scenarios<'a>(net: &'a Testnet, sites: &'a Sites) -> Vec<Scenario<'a>> {
    let (a, b) = (sites.a(), sites.b());
    let (gw_a, gw_b) = (a.gateway(), b.gateway());
    let s2s = flow(a.plain(), b.plain(), true, "authenticated");
    let nested = flow(a.agent(), b.agent(), true, "authenticated");
    let lone = flow(net.alice(), b.plain(), true, "authenticated");
    vec![
        Scenario {
            checks: vec![
                esp_between(Segment::Wan, &s2s, gw_a, gw_b, "gateway"),
                clear_between(Segment::LanA, &s2s, a.plain(), b.plain()),
                clear_between(Segment::LanB, &s2s, a.plain(), b.plain()),
            ],
            from: a.plain(),
            why: "no agent on either host: gw-a and gw-b carry it between the sites",
            viewer: None,
            flow: s2s,
        },
        Scenario {
            checks: vec![
                esp_between(Segment::Wan, &nested, gw_a, gw_b, "gateway"),
                esp_between(Segment::LanA, &nested, a.agent(), b.agent(), "host"),
                esp_between(Segment::LanB, &nested, a.agent(), b.agent(), "host"),
            ],
            from: a.agent(),
            why: "both hosts publish keys: their ESP, inside the gateways' ESP",
            viewer: Some((a.agent(), b.agent())),
            flow: nested,
        },
        Scenario {
            checks: vec![
                esp_between(Segment::Wan, &lone, net.alice(), gw_b, "gateway"),
                clear_between(Segment::LanB, &lone, net.alice(), b.plain()),
            ],
            from: net.alice(),
            why: "b-plain has no agent: alice finds gw-b through LAN B's wildcard",
            viewer: Some((net.alice(), b.plain())),
            flow: lone,
        },
    ]
}

/// Whether a packet has a site LAN address at either end.
fn lan_addressed(p: &Packet) -> bool {
    SITES.iter().any(|s| s.contains(p.src) || s.contains(p.dst))
}

/// DNS with the testnet's server (clear by policy, also from the LANs).
fn is_dns(p: &Packet) -> bool {
    p.involves(IpAddr::V4(DNS_V4)) && p.ports.is_some_and(|(s, d)| s == 53 || d == 53)
}

/// What the sites flows produced.
pub(crate) struct Outcome {
    /// Their rows of the summary table, one per flow and segment.
    pub(crate) rows: Vec<Row>,
    /// The problems met: (flow label, problem).
    pub(crate) problems: Vec<(String, String)>,
    /// The worst row's verdict.
    pub(crate) verdict: Verdict,
}

/// The packets on the WAN that show a LAN address outside the gateways' ESP
/// (DNS with the testnet's server aside).
fn wan_leaks(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| lan_addressed(p) && !is_dns(p))
        .count()
}

/// Drives the three sites flows.
pub(crate) fn drive(net: &Testnet, sites: &Sites, quiet: bool) -> Result<Outcome> {
    let (bp, ba) = (sites.b().plain(), sites.b().agent());
    let _servers = [
        bp.netns().run(move || EchoServers::start(bp.ip()))??,
        ba.netns().run(move || EchoServers::start(ba.ip()))??,
    ];
    if !quiet {
        say!(
            "\nTwo sites: gw-a 192.0.2.31 ([gateway] protects 10.1.0.0/24) and gw-b 192.0.2.32 \
             (10.2.0.0/24),"
        );
        say!(
            "  each LAN with a plain host (.10) and one with an agent and a key (.11); wildcards \
             published with `dnskeys publish --subnet`"
        );
        say!("  sniffers per flow: tcpdump on the switch (WAN) and on each LAN's bridge");
    }
    let (mut rows, mut problems, mut run) = (Vec::new(), Vec::new(), Verdict::Pass);
    for (i, sc) in scenarios(net, sites).iter().enumerate() {
        let tag = format!("site{}", i + 1);
        let mut caps = Vec::new();
        for c in &sc.checks {
            caps.push((c.segment, c.segment.capture(net, sites, &tag)?));
        }
        if !quiet {
            say!("\n{}  ({})", sc.flow.label(), sc.why);
        }
        let mut flow_problems = exchange(sc.from, &sc.flow, TCP_BYTES, quiet);
        if interrupted() {
            anyhow::bail!("interrupted");
        }
        if let Some((viewer, peer)) = sc.viewer {
            flow_problems.extend(agent_view(viewer, peer, quiet));
        }
        let mut captured: Vec<(Segment, Captured)> = Vec::new();
        for (seg, cap) in caps {
            captured.push((seg, cap.stop_counted()?));
        }
        let mut first = true;
        for c in &sc.checks {
            let Some((_, got)) = captured.iter().find(|(s, _)| *s == c.segment) else {
                continue;
            };
            let evidence = Evidence::of(&c.seen, &got.packets);
            let mut seen = evidence.summary();
            let mut ok = evidence.as_expected(&c.seen);
            if c.segment == Segment::Wan {
                let leaks = wan_leaks(&got.packets);
                if leaks > 0 {
                    ok = false;
                    seen.push_str(&format!("; {leaks} pkts with a LAN address outside ESP"));
                }
            }
            // The traffic and agent problems count on the flow's first row.
            if first {
                ok &= flow_problems.is_empty();
                first = false;
            }
            let verdict = Verdict::of(ok, got.stats.complete());
            run = run.max(verdict);
            if !quiet {
                say!(
                    "  on {:<5} ({} packets{}): {} ↔ {}: {seen}",
                    c.segment.name(),
                    got.packets.len(),
                    dropped_note(got.stats.dropped()),
                    c.seen.from,
                    c.seen.to
                );
            }
            if !got.stats.complete() {
                problems.push((
                    sc.flow.label(),
                    format!(
                        "INCOMPLETE: tcpdump on {} dropped {} packets",
                        c.segment.name(),
                        got.stats.dropped()
                    ),
                ));
            }
            rows.push(Row {
                flow: format!("{}, {}", sc.flow.label(), c.segment.name()),
                expected: c.expected.clone(),
                seen,
                verdict,
            });
        }
        problems.extend(flow_problems.into_iter().map(|p| (sc.flow.label(), p)));
    }
    if !quiet {
        for h in [sites.a().gateway(), sites.a().agent()] {
            say!("\n$ oemesh peers        # on {}", h.name());
            match h.oemesh_cli(&["peers"]) {
                Ok(table) => print!("{table}"),
                Err(e) => say!("  (oemesh peers failed: {e:#})"),
            }
        }
    }
    Ok(Outcome {
        rows,
        problems,
        verdict: run,
    })
}

/// Whether `viewer`'s agent says `peer` is private and authenticated.
fn agent_view(viewer: &Host, peer: &Host, quiet: bool) -> Vec<String> {
    let (v, p) = (viewer.name(), peer.name());
    let got = viewer.wait_peer(peer.ip(), "private, authenticated", VIEW_WAIT, |x| {
        x.state == "private" && x.auth.as_deref() == Some("authenticated")
    });
    match got {
        Ok(_) => {
            if !quiet {
                say!("  agent on {v}: {p} is private, authenticated");
            }
            Vec::new()
        }
        Err(_) => {
            let last = viewer.peer(peer.ip()).ok().flatten();
            let msg = format!(
                "agent on {v} says {p} is {}, expected private, authenticated",
                last.map(|x| format!("{} {:?}", x.state, x.auth))
                    .unwrap_or_else(|| "unknown".into())
            );
            if !quiet {
                say!("  agent ✘ {msg}");
            }
            vec![msg]
        }
    }
}

/// Adds the sites to a kept testnet's record (so that `--shell gw-a` …
/// `--shell b-agent` and `--down` reach them), saves it, and leaves them
/// running. On error nothing is recorded and the sites go with `sites`.
pub(crate) fn keep(sites: Sites, kept: &mut Kept) -> Result<()> {
    let mut k = kept.clone();
    k.namespaces.extend(sites.namespaces());
    for site in sites.sites() {
        let hosts = std::iter::once(site.gateway()).chain(site.hosts());
        for h in hosts {
            if let Some(pid) = h.agent_pid() {
                let name = format!("oemesh on {}", h.name());
                k.processes.push(
                    KeptProcess::of(&name, pid)
                        .with_context(|| format!("{name} (pid {pid}) is not running"))?,
                );
            }
            let role = if h.name() == site.spec().gateway {
                format!("gateway, [gateway] protects {}", site.spec().lan_prefix())
            } else if h.runs_agent() {
                format!("agent, own key, behind {}", site.spec().gateway)
            } else {
                format!("no agent, behind {}", site.spec().gateway)
            };
            k.hosts.push(KeptHost {
                name: h.name().to_owned(),
                netns: h.netns().name().to_owned(),
                ip: h.ip(),
                socket: h.runs_agent().then(|| h.socket_path()),
                role,
            });
        }
    }
    k.save()?;
    *kept = k;
    sites.leak();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(src: &str, dst: &str, protocol: u8, ports: Option<(u16, u16)>) -> Packet {
        Packet {
            time: Duration::ZERO,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol,
            ports,
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_lan_address_on_the_wan_is_a_leak_but_dns() {
        let packets = [
            // The gateways' ESP: no LAN address outside.
            pkt("192.0.2.31", "192.0.2.32", 17, Some((4500, 4500))),
            // An agent host's DNS query, in the clear by policy.
            pkt("10.1.0.11", "192.0.2.53", 17, Some((40000, 53))),
            pkt("192.0.2.53", "10.1.0.11", 17, Some((53, 40000))),
        ];
        assert_eq!(wan_leaks(&packets), 0);
        let leaks = [
            // A plain host's ping routed in the clear.
            pkt("10.1.0.10", "10.2.0.10", 1, None),
            // Not DNS: another port on the DNS server.
            pkt("10.2.0.10", "192.0.2.53", 6, Some((40000, 80))),
            // alice to b-plain in the clear.
            pkt("192.0.2.10", "10.2.0.10", 6, Some((40000, 7002))),
        ];
        assert_eq!(wan_leaks(&leaks), 3);
    }
}

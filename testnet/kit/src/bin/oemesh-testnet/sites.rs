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
use oemesh_testkit::topology::sites::{
    AGENT_HOST, PLAIN_HOST, SITES, SiteSpec, Sites, SitesOptions,
};
use oemesh_testkit::topology::{AgentConfig, DNS_V4, Host, Kept, KeptHost, KeptProcess, Testnet};

use crate::demo::{dropped_note, exchange};
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
pub(crate) enum Segment {
    Wan,
    LanA,
    LanB,
}

impl Segment {
    /// `WAN`, `LAN A`, `LAN B`.
    pub(crate) fn name(self) -> &'static str {
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

/// One end of a sites flow: a host's name and address. The sites' hosts are
/// the same in the namespace demo and in the compose twin (the addresses are
/// [`SITES`]' constants), so the flows and checks are made from these alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct End {
    /// `a-plain`, `gw-b`, `alice`.
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
}

impl End {
    pub(crate) fn new(name: impl Into<String>, ip: IpAddr) -> End {
        End {
            name: name.into(),
            ip,
        }
    }

    fn gateway(spec: &SiteSpec) -> End {
        End::new(spec.gateway, IpAddr::V4(spec.wan_v4))
    }

    fn plain(spec: &SiteSpec) -> End {
        End::new(spec.plain_name(), IpAddr::V4(spec.lan_host_v4(PLAIN_HOST)))
    }

    fn agent(spec: &SiteSpec) -> End {
        End::new(spec.agent_name(), IpAddr::V4(spec.lan_host_v4(AGENT_HOST)))
    }
}

/// What one segment should show of a flow: the packets between `seen.from_ip`
/// and `seen.to_ip`, ESP only (`seen.private`) or clear with the marker.
pub(crate) struct Check {
    pub(crate) segment: Segment,
    pub(crate) seen: Flow,
    pub(crate) expected: String,
}

/// One sites flow: the traffic, the checks per segment, and whether the
/// agent at its source must see its destination private and authenticated.
pub(crate) struct Scenario {
    pub(crate) flow: Flow,
    pub(crate) why: &'static str,
    pub(crate) checks: Vec<Check>,
    /// The source's agent must say the destination is private, authenticated.
    pub(crate) viewed: bool,
}

fn flow_between(from: &End, to: &End) -> Flow {
    Flow::between(
        (&from.name, from.ip),
        (&to.name, to.ip),
        true,
        "authenticated",
    )
}

/// `flow` with other ends (what a segment shows of it), the same marker.
fn as_seen(f: &Flow, a: &End, b: &End, private: bool) -> Flow {
    Flow {
        from: a.name.clone(),
        to: b.name.clone(),
        from_ip: a.ip,
        to_ip: b.ip,
        private,
        ..f.clone()
    }
}

fn esp_between(segment: Segment, f: &Flow, a: &End, b: &End, what: &str) -> Check {
    Check {
        segment,
        seen: as_seen(f, a, b, true),
        expected: format!("{what} ESP {} ↔ {} only", a.name, b.name),
    }
}

fn clear_between(segment: Segment, f: &Flow, a: &End, b: &End) -> Check {
    Check {
        segment,
        seen: as_seen(f, a, b, false),
        expected: "clear, as the plain host sent it".to_owned(),
    }
}

/// The three sites flows and what each segment must show of them; `lone` is
/// the host on the WAN with an agent (alice) that reaches b-plain.
pub(crate) fn scenarios(lone: &End) -> Vec<Scenario> {
    let [a, b] = &SITES;
    let (gw_a, gw_b) = (End::gateway(a), End::gateway(b));
    let (a_plain, b_plain) = (End::plain(a), End::plain(b));
    let (a_agent, b_agent) = (End::agent(a), End::agent(b));
    let s2s = flow_between(&a_plain, &b_plain);
    let nested = flow_between(&a_agent, &b_agent);
    let alone = flow_between(lone, &b_plain);
    vec![
        Scenario {
            checks: vec![
                esp_between(Segment::Wan, &s2s, &gw_a, &gw_b, "gateway"),
                clear_between(Segment::LanA, &s2s, &a_plain, &b_plain),
                clear_between(Segment::LanB, &s2s, &a_plain, &b_plain),
            ],
            why: "no agent on either host: gw-a and gw-b carry it between the sites",
            viewed: false,
            flow: s2s,
        },
        Scenario {
            checks: vec![
                esp_between(Segment::Wan, &nested, &gw_a, &gw_b, "gateway"),
                esp_between(Segment::LanA, &nested, &a_agent, &b_agent, "host"),
                esp_between(Segment::LanB, &nested, &a_agent, &b_agent, "host"),
            ],
            why: "both hosts publish keys: their ESP, inside the gateways' ESP",
            viewed: true,
            flow: nested,
        },
        Scenario {
            checks: vec![
                esp_between(Segment::Wan, &alone, lone, &gw_b, "gateway"),
                clear_between(Segment::LanB, &alone, lone, &b_plain),
            ],
            why: "b-plain has no agent: alice finds gw-b through LAN B's wildcard",
            viewed: true,
            flow: alone,
        },
    ]
}

/// The summary row of `check` (a check of flow `label`) on the packets its
/// segment's sniffer caught: the flow as expected there and, on the WAN, no
/// LAN address outside ESP. `complete`: the sniffer lost nothing;
/// `flow_ok`: the flow's traffic and agents were fine (count it on one row
/// per flow only).
pub(crate) fn judge(
    label: &str,
    check: &Check,
    packets: &[Packet],
    complete: bool,
    flow_ok: bool,
) -> Row {
    let evidence = Evidence::of(&check.seen, packets);
    let mut seen = evidence.summary();
    let mut ok = evidence.as_expected(&check.seen) && flow_ok;
    if check.segment == Segment::Wan {
        let leaks = wan_leaks(packets);
        if leaks > 0 {
            ok = false;
            seen.push_str(&format!("; {leaks} pkts with a LAN address outside ESP"));
        }
    }
    Row {
        flow: format!("{label}, {}", check.segment.name()),
        expected: check.expected.clone(),
        seen,
        verdict: Verdict::of(ok, complete),
    }
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
    let alice = net.alice();
    let host = |name: &str| {
        sites
            .host(name)
            .or_else(|| net.host(name))
            .with_context(|| format!("no host {name} in the testnet or its sites"))
    };
    for (i, sc) in scenarios(&End::new(alice.name(), alice.ip()))
        .iter()
        .enumerate()
    {
        let tag = format!("site{}", i + 1);
        let mut caps = Vec::new();
        for c in &sc.checks {
            caps.push((c.segment, c.segment.capture(net, sites, &tag)?));
        }
        if !quiet {
            say!("\n{}  ({})", sc.flow.label(), sc.why);
        }
        let from = host(&sc.flow.from)?;
        let mut flow_problems = exchange(from, &sc.flow, TCP_BYTES, quiet);
        if interrupted() {
            anyhow::bail!("interrupted");
        }
        if sc.viewed {
            flow_problems.extend(agent_view(from, host(&sc.flow.to)?, quiet));
        }
        let mut captured: Vec<(Segment, Captured)> = Vec::new();
        for (seg, cap) in caps {
            captured.push((seg, cap.stop_counted()?));
        }
        for (n, c) in sc.checks.iter().enumerate() {
            let Some((_, got)) = captured.iter().find(|(s, _)| *s == c.segment) else {
                continue;
            };
            // The traffic and agent problems count on the flow's first row.
            let flow_ok = n > 0 || flow_problems.is_empty();
            let row = judge(
                &sc.flow.label(),
                c,
                &got.packets,
                got.stats.complete(),
                flow_ok,
            );
            run = run.max(row.verdict);
            if !quiet {
                say!(
                    "  on {:<5} ({} packets{}): {} ↔ {}: {}",
                    c.segment.name(),
                    got.packets.len(),
                    dropped_note(got.stats.dropped()),
                    c.seen.from,
                    c.seen.to,
                    row.seen
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
            rows.push(row);
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
        crate::wire::tests::pkt(src, dst, protocol, ports, &[])
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

    #[test]
    fn the_flows_are_the_sites_constants() {
        let alice = End::new("alice", "192.0.2.10".parse().unwrap());
        let plan = scenarios(&alice);
        let ends: Vec<(String, String)> = plan
            .iter()
            .map(|s| (s.flow.from_ip.to_string(), s.flow.to_ip.to_string()))
            .collect();
        let want = [
            ("10.1.0.10", "10.2.0.10"),
            ("10.1.0.11", "10.2.0.11"),
            ("192.0.2.10", "10.2.0.10"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(ends, want);
        assert_eq!(plan[0].flow.marker, "OEMESH-DEMO-MARKER[a-plain->b-plain]");
        // The site-to-site flow: gateway ESP on the WAN, clear on both LANs.
        let wan = &plan[0].checks[0];
        assert_eq!(wan.segment, Segment::Wan);
        assert_eq!(
            (wan.seen.from.as_str(), wan.seen.to.as_str()),
            ("gw-a", "gw-b")
        );
        assert!(wan.seen.private);
        assert!(plan[0].checks[1..].iter().all(|c| !c.seen.private));
        // alice's flow crosses LAN B only.
        let segments: Vec<Segment> = plan[2].checks.iter().map(|c| c.segment).collect();
        assert_eq!(segments, [Segment::Wan, Segment::LanB]);
    }

    #[test]
    fn a_wan_row_fails_on_a_leak_even_with_only_esp_between_the_gateways() {
        let alice = End::new("alice", "192.0.2.10".parse().unwrap());
        let plan = scenarios(&alice);
        let (label, wan) = (plan[0].flow.label(), &plan[0].checks[0]);
        let esp = |s, d| Packet {
            payload: vec![0, 0, 1, 2, 0, 0, 0, 1, 9],
            ..pkt(s, d, 17, Some((4500, 4500)))
        };
        let clean = [
            esp("192.0.2.31", "192.0.2.32"),
            esp("192.0.2.32", "192.0.2.31"),
        ];
        assert_eq!(
            judge(&label, wan, &clean, true, true).verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&label, wan, &clean, false, true).verdict,
            Verdict::Incomplete
        );
        assert_eq!(
            judge(&label, wan, &clean, true, false).verdict,
            Verdict::Fail
        );
        let mut leaky = clean.to_vec();
        leaky.push(pkt("10.1.0.10", "10.2.0.10", 1, None));
        let row = judge(&label, wan, &leaky, true, true);
        assert_eq!(row.verdict, Verdict::Fail);
        assert!(
            row.seen.ends_with("1 pkts with a LAN address outside ESP"),
            "{}",
            row.seen
        );
        assert_eq!(row.flow, "a-plain → b-plain, WAN");
    }
}

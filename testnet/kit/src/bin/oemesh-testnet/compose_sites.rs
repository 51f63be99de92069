//! The compose twin's two sites (issue 14): the namespace demo's layout,
//! records, flows and checks ([`crate::sites`], every address from
//! [`SITES`]), in containers.
//!
//! ```text
//! oemesh ── gw-a 192.0.2.31 ── lan-a 10.1.0.0/24: a-plain .10 (no agent), a-agent .11 (agent, key)
//!        ── gw-b 192.0.2.32 ── lan-b 10.2.0.0/24: b-plain .10 (no agent), b-agent .11 (agent, key)
//! ```
//!
//! - `container gateway a|b`: a site's gateway. Routes the other sites' LANs
//!   via their gateways, publishes what the demo's gateways publish (its own
//!   record, the record naming it at its agent host's address, the LAN's
//!   wildcard with `dnskeys publish --subnet`) and runs the agent with
//!   `[gateway] protects` = its LAN (`testnet/docker/agent/gw-a.toml`).
//!   Forwarding and `rp_filter` come from the container's `sysctls`.
//! - `sites-flows`: the three flows, one per line, for compose-check to send.
//! - `check-sites WAN LAN-A LAN-B`: the demo's verdict rows on the captures
//!   of the compose bridges.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use oemesh_testkit::topology::sites::{AGENT_HOST, GATEWAY_PRECEDENCE, SITES, SiteSpec};

use crate::container::{
    Owner, keygen, publish, read_capture, run, sniffed_iface, start_agent, wait_for_signal,
};
use crate::report::{Row, print_table};
use crate::say;
use crate::sites::{End, Segment, judge, scenarios};
use crate::wire::Verdict;

/// alice's address in `compose.yaml`: the lone host of the third flow.
const ALICE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// The site called `name` (`a`, `b`).
fn site(name: &str) -> Result<&'static SiteSpec> {
    SITES.iter().find(|s| s.name == name).with_context(|| {
        let names: Vec<&str> = SITES.iter().map(|s| s.name).collect();
        format!("no site {name:?}; the sites are {names:?}")
    })
}

/// `ip route replace PREFIX via GW` for each of `sites`.
fn route_via_gateways<'a>(who: &str, sites: impl Iterator<Item = &'a SiteSpec>) -> Result<()> {
    for s in sites {
        let (lan, via) = (s.lan_prefix(), s.wan_v4.to_string());
        run(Command::new("ip").args(["route", "replace", &lan, "via", &via]))
            .with_context(|| format!("{who}: route {lan} via {via}"))?;
        say!("{who}: {lan} via {via} ({})", s.gateway);
    }
    Ok(())
}

/// Routes every site's LAN via its gateway's WAN address, as the demo does
/// on its WAN hosts and `dns` (the container needs NET_ADMIN).
pub(crate) fn route_to_sites(who: &str) -> Result<()> {
    route_via_gateways(who, SITES.iter())
}

/// `container gateway SITE`: see the [module docs](self). Runs until SIGTERM.
pub(crate) fn gateway(name: &str) -> Result<()> {
    let spec = site(name)?;
    let gw = spec.gateway;
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    if forwarding.trim() != "1" {
        bail!("{gw}: net.ipv4.ip_forward is off (compose.yaml sets it in `sysctls`)");
    }
    route_via_gateways(gw, SITES.iter().filter(|o| *o != spec))?;
    keygen()?;
    let wan = spec.wan_v4.to_string();
    let agent_host = IpAddr::V4(spec.lan_host_v4(AGENT_HOST));
    // As the demo's gateways: its own record, the one naming it at the agent
    // host's name (which the wildcard does not cover, RFC 4592), the
    // wildcard last.
    publish(
        Owner::Ip(IpAddr::V4(spec.wan_v4)),
        GATEWAY_PRECEDENCE,
        "none",
    )?;
    publish(Owner::Ip(agent_host), GATEWAY_PRECEDENCE, &wan)?;
    publish(Owner::Subnet(spec.lan_prefix()), GATEWAY_PRECEDENCE, &wan)?;
    say!(
        "{gw}: published its key at {wan}, {agent_host} and {} (gateway {wan})",
        spec.wildcard()
    );
    let _agent = start_agent(gw)?;
    say!("{gw}: ready; [gateway] protects {}", spec.lan_prefix());
    wait_for_signal();
    // Dropping the agent's Child sends it SIGTERM.
    Ok(())
}

/// `sites-flows`: one line per flow, tab-separated:
/// `FROM FROM-IP TO TO-IP MARKER VIEWED WHY`, VIEWED `yes` when FROM's agent
/// must see TO private and authenticated. The container of FROM is
/// `oemesh-FROM`.
pub(crate) fn print_flows() {
    let alice = End::new("alice", IpAddr::V4(ALICE));
    for sc in scenarios(&alice) {
        let f = &sc.flow;
        say!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            f.from,
            f.from_ip,
            f.to,
            f.to_ip,
            f.marker,
            if sc.viewed { "yes" } else { "no" },
            sc.why
        );
    }
}

/// `check-sites WAN LAN-A LAN-B`: the captures of the compose bridge and of
/// each site's LAN bridge (tcpdump's log beside each, `PCAP.log`, when there),
/// judged as the demo judges its per-flow captures: one row per flow and
/// segment. The captures span all the flows, so a flow's checks see the
/// others' packets too; they tell flows apart by marker and ends.
pub(crate) fn check_sites(wan: &Path, lan_a: &Path, lan_b: &Path) -> Result<Verdict> {
    let mut captures = Vec::new();
    let mut sniffed = Vec::new();
    for (segment, pcap) in [
        (Segment::Wan, wan),
        (Segment::LanA, lan_a),
        (Segment::LanB, lan_b),
    ] {
        let mut log = pcap.as_os_str().to_owned();
        log.push(".log");
        let log = Path::new(&log);
        let log = log.exists().then_some(log);
        let (packets, stats) = read_capture(pcap, log)?;
        let iface = log
            .and_then(sniffed_iface)
            .unwrap_or_else(|| pcap.display().to_string());
        sniffed.push(format!(
            "{} on {iface}: {} packets{}",
            segment.name(),
            packets.len(),
            crate::demo::dropped_note(stats.map_or(0, |s| s.dropped()))
        ));
        captures.push((segment, packets, stats.is_none_or(|s| s.complete())));
    }
    let alice = End::new("alice", IpAddr::V4(ALICE));
    let mut rows: Vec<Row> = Vec::new();
    for sc in scenarios(&alice) {
        for c in &sc.checks {
            let Some((_, packets, complete)) = captures.iter().find(|(s, ..)| *s == c.segment)
            else {
                continue;
            };
            rows.push(judge(&sc.flow.label(), c, packets, *complete, true));
        }
    }
    say!("On the sites' segments ({}):", sniffed.join(", "));
    print_table(&rows);
    for (segment, _, complete) in &captures {
        if !complete {
            say!(
                "  INCOMPLETE: tcpdump on {} dropped packets; a marker could have crossed in one of them",
                segment.name()
            );
        }
    }
    Ok(rows
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Fail))
}

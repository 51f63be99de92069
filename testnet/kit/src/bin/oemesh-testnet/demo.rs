//! The namespace demo: the testnet up with a home LAN behind a NAT
//! ([`crate::home`]) and two sites behind gateways ([`crate::sites`]), visible
//! traffic on four flows and three through the sites, what the agents say,
//! what the sniffers saw (the switch; the home router's LAN leg; each site's
//! LAN), and a verdict per flow and segment.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_testkit::bind::REVERSE_V4_ZONE;
use oemesh_testkit::bind::dnssec::reverse_name;
use oemesh_testkit::topology::sites::Sites;
use oemesh_testkit::topology::{Binaries, HomeLan, Host, Options, Testnet};

use crate::home::{self, CLIENT};
use crate::report::{Row, print_table};
use crate::traffic::{self, EchoServers};
use crate::wire::{Evidence, Flow, Verdict};
use crate::{interrupted, say, sites};

/// Bound on one flow's first packet (DNS + IKE + the agents' margins).
const DECISION: Duration = Duration::from_secs(15);
/// Size of the TCP transfer of each flow.
const TCP_BYTES: usize = 1 << 20;

/// `demo` options.
#[derive(Debug, Default)]
pub(crate) struct DemoArgs {
    /// Leave the testnet running at the end.
    pub(crate) keep: bool,
    /// Only the summary table (and failures).
    pub(crate) quiet: bool,
}

/// What one flow produced.
#[derive(Debug)]
struct Outcome {
    flow: Flow,
    /// Traffic or agent-view failures, in order.
    problems: Vec<String>,
    evidence: Evidence,
}

/// Runs the demo; its verdict (the worst flow's).
pub(crate) fn run(args: &DemoArgs) -> Result<Verdict> {
    let started = Instant::now();
    let quiet = args.quiet;
    let bins = Binaries::from_test_target_dir()?;
    let mut opts = Options::new("demo", bins);
    opts.keep = args.keep;
    // Signed reverse zones; the agents validate from their anchors (issue 12).
    opts.dnssec = true;
    if !quiet {
        say!(
            "oemesh testnet: one switch, BIND 9 on dns, agents on alice, bob and carol, none on dave,"
        );
        say!("  a home LAN: {CLIENT} (agent, no key) behind a masquerading router,");
        say!(
            "  and two sites: gateways gw-a, gw-b, each with a plain host and an agent host \
             behind it"
        );
    }
    let net = Testnet::up(opts).context("bringing the testnet up")?;
    let home = match home::up(&net) {
        Ok(home) => home,
        Err(e) => {
            // Not kept: a kept testnet without its home LAN is not the demo.
            net.down()?;
            return Err(e.context("bringing the home LAN up"));
        }
    };
    let sites = match sites::up(&net) {
        Ok(sites) => sites,
        Err(e) => {
            drop(home);
            net.down()?;
            return Err(e.context("bringing the two sites up"));
        }
    };
    if !quiet {
        say!(
            "  up in {:.1} s: dns 192.0.2.53, alice .10 and bob .20 (keys made with `dnskeys keygen`,",
            started.elapsed().as_secs_f64()
        );
        say!(
            "  published with `dnskeys publish` + TSIG), carol .30 (agent, no key), dave .40 (no agent)"
        );
        say!(
            "  router {} on the switch, nftables masquerading its LAN behind it; {CLIENT} {} on \
             that LAN",
            home.public_ip(),
            home.client(CLIENT)
                .map(|c| c.ip().to_string())
                .unwrap_or_default()
        );
        if let Some(anchors) = net.anchor_file() {
            say_dnssec(&net, &anchors);
        }
    }
    let verdict = match drive(&net, &home, &sites, quiet) {
        Ok(v) => v,
        Err(e) => {
            say!("demo failed: {e:#}");
            Verdict::Fail
        }
    };
    if verdict != Verdict::Pass && !interrupted() {
        save_logs(&net);
    }
    if interrupted() {
        say!("interrupted: tearing the testnet down");
        drop(sites);
        drop(home);
        net.down()?;
        bail!("interrupted");
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = match verdict {
        Verdict::Pass => "all checks passed".to_owned(),
        Verdict::Fail => "SOME CHECKS FAILED".to_owned(),
        Verdict::Incomplete => "INCOMPLETE: the sniffer lost packets, so what the wire did not \
                                show is not proven; run it again"
            .to_owned(),
    };
    if args.keep {
        let mut kept = net.leave_running()?;
        if let Err(e) = home::keep(home, &mut kept) {
            say!("the home LAN is NOT left running: no record of it ({e:#})");
        }
        if let Err(e) = sites::keep(sites, &mut kept) {
            say!("the two sites are NOT left running: no record of them ({e:#})");
        }
        say!("\n{summary}; left running ({secs:.1} s so far).");
        say!("{}", kept.instructions());
        crate::kept::keep_alive(kept, verdict)?;
    } else {
        drop(sites);
        drop(home);
        net.down()?;
        if quiet {
            say!("{summary} in {secs:.1} s");
        } else {
            say!("\ntorn down; {summary} in {secs:.1} s");
        }
    }
    Ok(verdict)
}

/// Where the anchors are, and `delv` proving alice's key from them alone.
fn say_dnssec(net: &Testnet, anchors: &Path) {
    say!(
        "  zones signed by BIND (dnssec-policy, one ECDSAP256SHA256 CSK each); the agents \
         validate from {}",
        anchors.display()
    );
    // The name, not `-x`: delv warns of an extra query type with `-x`.
    let alice = reverse_name(net.alice().ip());
    let bind = net.dns().bind();
    match bind.delv(REVERSE_V4_ZONE, &[&alice, "IPSECKEY"]) {
        Ok(out) => {
            say!(
                "  $ delv @{} -a {} +root={REVERSE_V4_ZONE} {alice} IPSECKEY",
                bind.addr().ip(),
                bind.delv_anchor_file().unwrap_or_default().display()
            );
            for line in out
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.contains("RRSIG"))
            {
                say!("    {line}");
            }
        }
        Err(e) => say!("  (delv failed: {e:#})"),
    }
}

fn drive(net: &Testnet, home: &HomeLan, sites: &Sites, quiet: bool) -> Result<Verdict> {
    let client = home.client(CLIENT).context("the home LAN's client")?;
    let router = home.public_ip();
    let mut behind_nat = flow(client, net.bob(), true, "anonymous");
    behind_nat.via = Some(router);
    let flows = [
        flow(net.alice(), net.bob(), true, "authenticated"),
        flow(net.alice(), net.dave(), false, "clear"),
        flow(net.carol(), net.bob(), true, "anonymous"),
        behind_nat.clone(),
    ];
    let capture = net.capture("demo")?;
    let lan_capture = home.outer().capture_lan(net.dir(), "demo-lan")?;
    let bob = net.bob();
    let dave = net.dave();
    let _servers = [
        bob.netns().run(move || EchoServers::start(bob.ip()))??,
        dave.netns().run(move || EchoServers::start(dave.ip()))??,
    ];
    if !quiet {
        say!(
            "  sniffers: tcpdump on the switch and on the router's LAN leg; echo servers on bob \
             and dave (UDP 7001, TCP 7002)"
        );
    }
    let mut outcomes = Vec::new();
    for f in &flows {
        let from = host(net, home, &f.from);
        let mut problems = traffic_of(from, f, quiet);
        if interrupted() {
            bail!("interrupted");
        }
        problems.extend(match f.via {
            Some(router) => home::agents_view(from, host(net, home, &f.to), router, quiet),
            None => agents_view(net, f, quiet),
        });
        outcomes.push(Outcome {
            flow: f.clone(),
            problems,
            evidence: Evidence::default(),
        });
    }
    if !quiet {
        for h in [net.alice(), net.bob(), client] {
            say!("\n$ oemesh peers        # on {}", h.name());
            match h.oemesh_cli(&["peers"]) {
                Ok(table) => print!("{table}"),
                Err(e) => say!("  (oemesh peers failed: {e:#})"),
            }
        }
    }
    let captured = capture.stop_counted()?;
    let (packets, stats) = (&captured.packets, captured.stats);
    let lan = lan_capture.stop_counted()?;
    if !quiet {
        say!(
            "\nOn the wire (tcpdump on the switch, {} packets{}):",
            packets.len(),
            dropped_note(stats.dropped())
        );
    }
    let mut rows = Vec::new();
    let mut run = Verdict::Pass;
    for o in &mut outcomes {
        o.evidence = Evidence::of(&o.flow, packets);
        let passed = o.evidence.as_expected(&o.flow) && o.problems.is_empty();
        let verdict = Verdict::of(passed, stats.complete());
        run = run.max(verdict);
        if !quiet {
            say!(
                "  {:<13} {}",
                o.flow.label().replace('→', "↔"),
                o.evidence.summary()
            );
        }
        rows.push(Row {
            flow: o.flow.label(),
            expected: o.flow.expected(),
            seen: o.evidence.summary(),
            verdict,
        });
    }
    // The LAN leg: what leaves erin, before the router translates it.
    let on_lan = Flow {
        via: None,
        ..behind_nat
    };
    let evidence = Evidence::of(&on_lan, &lan.packets);
    let verdict = Verdict::of(evidence.as_expected(&on_lan), lan.stats.complete());
    run = run.max(verdict);
    if !quiet {
        say!(
            "On the home LAN (tcpdump on the router's LAN leg, {} packets{}):",
            lan.packets.len(),
            dropped_note(lan.stats.dropped())
        );
        say!(
            "  {:<13} {}",
            on_lan.label().replace('→', "↔"),
            evidence.summary()
        );
    }
    rows.push(Row {
        flow: format!("{}, LAN side", on_lan.label()),
        expected: on_lan.expected(),
        seen: evidence.summary(),
        verdict,
    });
    let on_sites = sites::drive(net, sites, quiet)?;
    rows.extend(on_sites.rows);
    run = run.max(on_sites.verdict);
    say!("");
    print_table(&rows);
    for (where_, s) in [("switch", stats), ("LAN leg", lan.stats)] {
        if !s.complete() {
            say!(
                "  INCOMPLETE: tcpdump on the {where_} reported {} packets dropped by the kernel; \
                 a marker could have crossed in one of them",
                s.dropped()
            );
        }
    }
    for o in outcomes.iter().filter(|o| !o.problems.is_empty()) {
        for p in &o.problems {
            say!("  ✘ {}: {p}", o.flow.label());
        }
    }
    for (flow, p) in &on_sites.problems {
        say!("  ✘ {flow}: {p}");
    }
    Ok(run)
}

/// `, 29 DROPPED by the kernel` when the capture lost packets.
pub(crate) fn dropped_note(dropped: u64) -> String {
    match dropped {
        0 => String::new(),
        n => format!(", {n} DROPPED by the kernel"),
    }
}

fn host<'a>(net: &'a Testnet, home: &'a HomeLan, name: &str) -> &'a Host {
    net.host(name)
        .or_else(|| home.client(name))
        .unwrap_or_else(|| net.alice())
}

pub(crate) fn flow(from: &Host, to: &Host, private: bool, expect: &'static str) -> Flow {
    Flow::between(
        (from.name(), from.ip()),
        (to.name(), to.ip()),
        private,
        expect,
    )
}

/// Ping, UDP and a 1 MiB TCP transfer from `from` along `f`; the problems met.
fn traffic_of(from: &Host, f: &Flow, quiet: bool) -> Vec<String> {
    if !quiet {
        let why = match (f.private, f.expect, f.via) {
            (true, _, Some(_)) => {
                "behind the router's NAT, no key: expect private, anonymous, from an address \
                 the server assigns"
            }
            (false, _, _) => "no agent, no key: expect clear after a bounded wait",
            (true, "anonymous", _) => "carol publishes no key: expect private, anonymous",
            (true, _, _) => "both publish keys: expect private, authenticated",
        };
        say!("\n{}  ({why})", f.label());
    }
    exchange(from, f, TCP_BYTES, quiet)
}

/// Ping (4 echoes), UDP (5 datagrams of 200 bytes) and a TCP transfer of
/// `tcp_bytes` echoed back, from `from` along `f`, each carrying its marker;
/// the problems met.
pub(crate) fn exchange(from: &Host, f: &Flow, tcp_bytes: usize, quiet: bool) -> Vec<String> {
    let (src, dst) = (f.from_ip, f.to_ip);
    let mut problems = Vec::new();
    let marker = f.marker.clone();
    let ping = from
        .netns()
        .run(move || traffic::ping(src, dst, &marker, 3, DECISION))
        .and_then(|r| r);
    report(
        &mut problems,
        quiet,
        "ping",
        ping.map(|first| {
            let after = if first < std::time::Duration::from_secs(1) {
                format!("{:.1} ms", first.as_secs_f64() * 1e3)
            } else {
                format!("{:.2} s", first.as_secs_f64())
            };
            format!("4 echo replies; the first after {after} (held while DNS + IKE ran)")
        }),
    );
    if interrupted() {
        return problems;
    }
    let datagram = traffic::marked(&f.marker, 200);
    let udp = from
        .netns()
        .run(|| traffic::udp_exchange(src, dst, &datagram, 5, DECISION))
        .and_then(|r| r);
    report(
        &mut problems,
        quiet,
        "udp",
        udp.map(|()| "5 datagrams of 200 bytes echoed".to_owned()),
    );
    if interrupted() {
        return problems;
    }
    let big = traffic::marked(&f.marker, tcp_bytes);
    let tcp = from
        .netns()
        .run(|| traffic::tcp_exchange(src, dst, &big, DECISION))
        .and_then(|r| r);
    report(
        &mut problems,
        quiet,
        "tcp",
        tcp.map(|t| {
            format!(
                "{} sent and echoed back in {:.2} s",
                size(tcp_bytes),
                t.as_secs_f64()
            )
        }),
    );
    problems
}

/// `1 MiB`, `64 KiB`, `900 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn report(problems: &mut Vec<String>, quiet: bool, what: &str, r: Result<String>) {
    match r {
        Ok(line) if !quiet => say!("  {what:<5} ✔ {line}"),
        Ok(_) => {}
        Err(e) => {
            if !quiet {
                say!("  {what:<5} ✘ {e:#}");
            }
            problems.push(format!("{what}: {e:#}"));
        }
    }
}

/// Whether both agents (those that run one) see the flow as expected.
fn agents_view(net: &Testnet, f: &Flow, quiet: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let pairs = [(&f.from, f.to_ip, &f.to), (&f.to, f.from_ip, &f.from)];
    for (viewer, peer, peer_name) in pairs {
        let Some(h) = net.host(viewer) else {
            continue;
        };
        if !h.runs_agent() {
            continue;
        }
        // What this end should say: the far end's authentication, seen from here.
        let want_auth = match (f.private, f.expect, viewer == &f.from) {
            (false, _, _) => None,
            // The initiator authenticated the responder either way: bob has a key.
            (true, "anonymous", true) => Some("authenticated"),
            (true, auth, _) => Some(auth),
        };
        let want_state = if f.private { "private" } else { "clear" };
        let got = h.wait_peer(peer, "the expected state", Duration::from_secs(5), |p| {
            p.state == want_state && want_auth.is_none_or(|a| p.auth.as_deref() == Some(a))
        });
        match got {
            Ok(p) if !quiet => say!(
                "  agent on {viewer}: {peer_name} is {}{}",
                p.state,
                match (&p.auth, p.state.as_str()) {
                    (Some(a), _) => format!(", {a}"),
                    (None, "clear") => format!(" ({})", p.reason),
                    (None, _) => String::new(),
                }
            ),
            Ok(_) => {}
            Err(_) => {
                let last = h.peer(peer).ok().flatten();
                let msg = format!(
                    "agent on {viewer} says {peer_name} is {}, expected {want_state}{}",
                    last.map(|p| format!("{} {:?}", p.state, p.auth))
                        .unwrap_or_else(|| "unknown".into()),
                    want_auth.map(|a| format!(", {a}")).unwrap_or_default()
                );
                if !quiet {
                    say!("  agent ✘ {msg}");
                }
                problems.push(msg);
            }
        }
    }
    problems
}

/// Copies the testnet's logs, configs and capture out of its temporary
/// directory (which goes with the testnet) and prints where they are.
fn save_logs(net: &Testnet) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dest = PathBuf::from(format!("/tmp/oemesh-demo-failed-{stamp}"));
    match copy_artifacts(net.dir(), &dest) {
        Ok(files) => {
            say!("logs kept in {}:", dest.display());
            for f in files {
                say!("  {}", f.display());
            }
        }
        Err(e) => say!("could not keep the logs: {e:#}"),
    }
}

fn copy_artifacts(from: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(to)?;
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let keep = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "log" | "toml" | "pcap"));
        if keep && path.is_file() {
            let target = to.join(path.file_name().context("file name")?);
            std::fs::copy(&path, &target)?;
            copied.push(target);
        }
    }
    copied.sort();
    Ok(copied)
}

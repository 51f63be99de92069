//! `oemesh-testnet`: the driver behind `testnet/demo` and `testnet/compose-check`.
//!
//! ```text
//! oemesh-testnet demo [--keep] [--quiet]   # the namespace testnet demo (root)
//! oemesh-testnet down [--keep-capture] [RECORD…]  # tear down kept testnets
//! oemesh-testnet shell HOST [RECORD]       # a shell in a kept host, oemesh on PATH
//! oemesh-testnet container dns|host|router|gateway …  # entry point of the compose containers
//! oemesh-testnet send|expect-peer …        # run inside a container by compose-check
//! oemesh-testnet check-pcap FILE [--tcpdump-log LOG] FLOW…  # the verdict on the compose bridge's capture
//! oemesh-testnet sites-flows               # the sites' flows, for compose-check to send
//! oemesh-testnet check-sites WAN LAN-A LAN-B  # the sites' verdict on the compose captures
//! ```
//!
//! `demo` brings up the namespace testnet ([`oemesh_testkit::topology`]) and
//! its home LAN (erin behind a masquerading router) with the `oemesh` and
//! `dnskeys` binaries next to this one in the target directory (or
//! `$OEMESH_BIN`, `$OEMESH_DNSKEYS`), sends ICMP, UDP and TCP with a marker
//! inside along alice → bob, alice → dave, carol → bob and erin → bob, and
//! checks on the switch's capture that private flows crossed as ESP only (erin's
//! as the router's), the clear one in the clear, and on the router's LAN leg
//! that erin's left erin as ESP; then the two sites of issue 14
//! ([`sites`]): a-plain → b-plain, a-agent → b-agent and alice → b-plain, each
//! with a sniffer on the WAN and on the LANs it crosses. Exit status 0: every check passed; 1: some
//! failed; 3: incomplete (the sniffer dropped packets, so an absence on the
//! wire is not proven); 130: interrupted (SIGINT/SIGTERM; everything is torn
//! down first).

mod compose_sites;
mod container;
mod demo;
mod home;
mod kept;
mod nat;
mod report;
mod sites;
mod traffic;
mod wire;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use wire::Verdict;

/// Prints a line to stdout (flushing, so output interleaves sanely with tools).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}
pub(crate) use say;

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Whether SIGINT, SIGTERM or SIGHUP arrived.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

fn catch_signals() -> anyhow::Result<()> {
    let flag = INTERRUPTED.get_or_init(Arc::default);
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}

const USAGE: &str = "usage: oemesh-testnet demo [--keep] [--quiet]
       oemesh-testnet down [--keep-capture] [RECORD...]
       oemesh-testnet shell HOST [RECORD]
       oemesh-testnet container dns [--site-routes]
       oemesh-testnet container host IP [--publish] [--agent] [--gateway GW] [--site-routes]
       oemesh-testnet container router LAN-PREFIX
       oemesh-testnet container gateway SITE
       oemesh-testnet send FROM TO MARKER
       oemesh-testnet expect-peer PEER|@ROUTER STATE [AUTH]
       oemesh-testnet check-pcap FILE [--tcpdump-log LOG] FLOW...
                 (FLOW: a=IP[@ROUTER],b=IP,private|clear,AUTH|clear,MARKER)
       oemesh-testnet sites-flows
       oemesh-testnet check-sites WAN.pcap LAN-A.pcap LAN-B.pcap";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = catch_signals() {
        eprintln!("oemesh-testnet: installing signal handlers: {e:#}");
        return ExitCode::from(2);
    }
    let result = match args.first().map(String::as_str) {
        Some("demo") => {
            let mut d = demo::DemoArgs::default();
            for a in &args[1..] {
                match a.as_str() {
                    "--keep" => d.keep = true,
                    "--quiet" | "-q" => d.quiet = true,
                    _ => return usage(),
                }
            }
            demo::run(&d)
        }
        Some("down") => kept::down(&args[1..]),
        Some("shell") => match args.get(1) {
            Some(host) => kept::shell(host, args.get(2).map(String::as_str)),
            None => return usage(),
        },
        Some("container") => match args.get(1).map(String::as_str) {
            Some("dns") => match &args[2..] {
                [] => container::dns(false),
                [flag] if flag == "--site-routes" => container::dns(true),
                _ => return usage(),
            }
            .map(|()| Verdict::Pass),
            Some("host") => {
                let Some(Ok(ip)) = args.get(2).map(|a| a.parse()) else {
                    return usage();
                };
                let mut host = container::HostArgs::default();
                let mut rest = args[3..].iter();
                while let Some(a) = rest.next() {
                    match a.as_str() {
                        "--publish" => host.publish = true,
                        "--agent" => host.agent = true,
                        "--site-routes" => host.site_routes = true,
                        "--gateway" => match rest.next().map(|g| g.parse()) {
                            Some(Ok(gw)) => host.gateway = Some(gw),
                            _ => return usage(),
                        },
                        _ => return usage(),
                    }
                }
                container::host(ip, host).map(|()| Verdict::Pass)
            }
            Some("gateway") => match args.get(2) {
                Some(site) => compose_sites::gateway(site).map(|()| Verdict::Pass),
                None => return usage(),
            },
            Some("router") => match args.get(2) {
                Some(lan) => container::router(lan).map(|()| Verdict::Pass),
                None => return usage(),
            },
            _ => return usage(),
        },
        Some("send") => match (args.get(1), args.get(2), args.get(3)) {
            (Some(from), Some(to), Some(marker)) => match (from.parse(), to.parse()) {
                (Ok(from), Ok(to)) => container::send(from, to, marker).map(|()| Verdict::Pass),
                _ => return usage(),
            },
            _ => return usage(),
        },
        Some("expect-peer") => match (args.get(1).map(|a| a.parse()), args.get(2)) {
            (Some(Ok(peer)), Some(state)) => {
                container::expect_peer(peer, state, args.get(3).map(String::as_str))
                    .map(|()| Verdict::Pass)
            }
            _ => return usage(),
        },
        Some("sites-flows") => {
            compose_sites::print_flows();
            Ok(Verdict::Pass)
        }
        Some("check-sites") => match &args[1..] {
            [wan, lan_a, lan_b] => compose_sites::check_sites(
                std::path::Path::new(wan),
                std::path::Path::new(lan_a),
                std::path::Path::new(lan_b),
            ),
            _ => return usage(),
        },
        Some("check-pcap") if args.len() > 2 => {
            let pcap = std::path::Path::new(&args[1]);
            match args[2..] {
                [ref flag, ref log, ref flows @ ..]
                    if flag == "--tcpdump-log" && !flows.is_empty() =>
                {
                    container::check_pcap(pcap, Some(std::path::Path::new(log)), flows)
                }
                ref flows => container::check_pcap(pcap, None, flows),
            }
        }
        _ => return usage(),
    };
    match result {
        Ok(verdict) => ExitCode::from(verdict.exit_code()),
        Err(_) if interrupted() => ExitCode::from(130),
        Err(e) => {
            eprintln!("oemesh-testnet: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

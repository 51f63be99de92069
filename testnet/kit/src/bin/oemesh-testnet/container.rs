//! The compose testnet's side of the driver: what runs inside each container
//! (`container dns`, `container host`), the traffic sent from inside one
//! (`send`), and the verdict on a capture taken on the compose bridge
//! (`check-pcap`). The containers have no shell scripts to speak of: this is
//! their entry point.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_testkit::bind::dnssec::anchor_from_key_file;
use oemesh_testkit::capture::{CaptureStats, Packet, read_pcap};
use oemesh_testkit::process::{Child, wait_for, wait_until};
use oemesh_testkit::topology::nat::NAT_TABLE;
use oemesh_testkit::topology::sites::{OWN_PRECEDENCE, SITES};
use oemesh_testkit::topology::{NatRouter, parse_peers};

use crate::compose_sites;
use crate::report::{Row, print_table};
use crate::traffic::{self, EchoServers};
use crate::wire::{Evidence, Flow, Verdict};
use crate::{interrupted, say};

/// Where the `dns` container writes the TSIG key the hosts publish with.
const TSIG_KEY: &str = "/shared/tsig.key";
/// Where the `dns` container writes the reverse zone's trust anchor (the
/// agents' `[dns] trust_anchors`).
const ANCHORS: &str = "/shared/anchors.txt";
/// BIND's key directory in the `dns` container (as in `named.conf`).
const KEY_DIR: &str = "/var/lib/oemesh-dns/keys";
/// The signed zone whose key is the anchor.
const SIGNED_ZONE: &str = "2.0.192.in-addr.arpa.";
/// The TSIG key's name (as in `named.conf`).
const TSIG_NAME: &str = "oemesh-update";
/// The DNS server every host publishes to.
const DNS_SERVER: &str = "192.0.2.53:53";
/// A host's private key, made at container start.
const HOST_KEY: &str = "/var/lib/oemesh/host.key";
/// The agent's config (mounted from `testnet/docker/agent/<host>.toml`).
const AGENT_CONFIG: &str = "/etc/oemesh/oemesh.toml";
/// The agent's control socket (as in the configs).
pub(crate) const AGENT_SOCKET: &str = "/run/oemesh.sock";

/// `container dns`: a fresh TSIG key in `/shared`, then `named -g` (its
/// config and zones are in `/etc/oemesh-dns`, copied to a writable directory
/// for the update journals and keys); once BIND has made the reverse zone's
/// key, its DNSKEY (flags 257) goes to `/shared/anchors.txt`. With
/// `site_routes`, each site's LAN is routed via its gateway first (the LAN
/// hosts ask this server). Runs until SIGTERM, then stops named.
pub(crate) fn dns(site_routes: bool) -> Result<()> {
    if site_routes {
        compose_sites::route_to_sites("dns")?;
    }
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let key =
        format!("key \"{TSIG_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{b64}\";\n}};\n");
    std::fs::create_dir_all("/shared")?;
    let tmp = format!("{TSIG_KEY}.tmp");
    std::fs::write(&tmp, key)?;
    std::fs::rename(&tmp, TSIG_KEY)?;
    let work = Path::new("/var/lib/oemesh-dns");
    std::fs::create_dir_all(work)?;
    for entry in std::fs::read_dir("/etc/oemesh-dns")? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, work.join(name))?;
        }
    }
    std::fs::create_dir_all(KEY_DIR)?;
    let _ = std::fs::remove_file(ANCHORS);
    say!("dns: TSIG key in {TSIG_KEY}; starting named");
    let mut named = Command::new("named")
        .args(["-g", "-c", "/var/lib/oemesh-dns/named.conf"])
        .spawn()
        .context("starting named")?;
    let anchor = wait_for(
        "BIND's key for the reverse zone",
        Duration::from_secs(30),
        zone_anchor,
    );
    let result = anchor.and_then(|line| {
        let tmp = format!("{ANCHORS}.tmp");
        std::fs::write(&tmp, format!("{line}\n"))?;
        std::fs::rename(&tmp, ANCHORS)?;
        say!("dns: {SIGNED_ZONE} signed; its anchor is in {ANCHORS}");
        while !interrupted() {
            if let Some(status) = named.try_wait()? {
                bail!("named exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    });
    // Our own child, by its PID.
    let _ = named.kill();
    let _ = named.wait();
    result
}

/// The DNSKEY (flags 257) of [`SIGNED_ZONE`] from the key file BIND wrote, as
/// dig prints it.
fn zone_anchor() -> Option<String> {
    let prefix = format!("K{SIGNED_ZONE}+");
    std::fs::read_dir(KEY_DIR).ok()?.flatten().find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        if !name.starts_with(&prefix) || !name.ends_with(".key") {
            return None;
        }
        anchor_from_key_file(&std::fs::read_to_string(e.path()).ok()?)
    })
}

/// What `container host` does besides serving echo.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostArgs {
    /// Make a key and publish it at the host's reverse name.
    pub(crate) publish: bool,
    /// Run the agent.
    pub(crate) agent: bool,
    /// The default route's next hop (a router or a site's gateway) instead
    /// of Docker's bridge.
    pub(crate) gateway: Option<IpAddr>,
    /// Route each site's LAN via its gateway ([`compose_sites::route_to_sites`]).
    pub(crate) site_routes: bool,
}

/// `container host IP [--publish] [--agent] [--gateway GW] [--site-routes]`:
/// with a gateway (a host on the home LAN or on a site's LAN), the default
/// route goes through it instead of Docker's bridge; with `--site-routes`,
/// each site's LAN goes via its gateway. Then make and publish a key (a host
/// on a site's LAN at [`OWN_PRECEDENCE`], tried before its gateway's record
/// for it), start the agent, serve UDP/TCP echo until SIGTERM.
pub(crate) fn host(ip: IpAddr, args: HostArgs) -> Result<()> {
    if let Some(gw) = args.gateway {
        run(Command::new("ip").args(["route", "replace", "default", "via", &gw.to_string()]))?;
        say!("{ip}: default route via {gw}");
    }
    if args.site_routes {
        compose_sites::route_to_sites(&ip.to_string())?;
    }
    if args.publish {
        keygen()?;
        let behind_a_gateway = SITES.iter().any(|s| s.contains(ip));
        let precedence = if behind_a_gateway {
            OWN_PRECEDENCE
        } else {
            DEFAULT_PRECEDENCE
        };
        publish(Owner::Ip(ip), precedence, "none")?;
        say!("{ip}: key published in DNS");
    }
    let _agent = if args.agent {
        Some(start_agent(&ip.to_string())?)
    } else {
        None
    };
    let _servers = EchoServers::start(ip)?;
    say!(
        "{ip}: ready; echo on UDP {} and TCP {}",
        traffic::UDP_PORT,
        traffic::TCP_PORT
    );
    wait_for_signal();
    // Dropping the agent's Child sends it SIGTERM: it removes its routes.
    Ok(())
}

/// The precedence of a host's own record on the WAN (`dnskeys publish`'s default).
const DEFAULT_PRECEDENCE: u8 = 10;

/// Sleeps until SIGTERM (or SIGINT, SIGHUP).
pub(crate) fn wait_for_signal() {
    while !interrupted() {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Once the `dns` container has written the TSIG key: a fresh key in
/// [`HOST_KEY`].
pub(crate) fn keygen() -> Result<()> {
    wait_until("the TSIG key from dns", Duration::from_secs(60), || {
        Path::new(TSIG_KEY).exists()
    })?;
    std::fs::create_dir_all("/var/lib/oemesh")?;
    run(Command::new("dnskeys").args(["keygen", "--out", HOST_KEY])).map(drop)
}

/// Where a record goes.
#[derive(Clone, Debug)]
pub(crate) enum Owner {
    /// `--ip`: the address's reverse name.
    Ip(IpAddr),
    /// `--subnet`: the subnet's wildcard.
    Subnet(String),
}

/// `dnskeys publish` of [`HOST_KEY`] at `owner` with `precedence` and
/// `gateway` (`none`, an address), against the `dns` container with its TSIG
/// key; retried for a while, as named may still be loading its zones.
pub(crate) fn publish(owner: Owner, precedence: u8, gateway: &str) -> Result<()> {
    let (flag, at) = match owner {
        Owner::Ip(ip) => ("--ip", ip.to_string()),
        Owner::Subnet(prefix) => ("--subnet", prefix),
    };
    let precedence = precedence.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(Command::new("dnskeys").args([
            "publish",
            "--key",
            HOST_KEY,
            flag,
            &at,
            "--precedence",
            &precedence,
            "--gateway",
            gateway,
            "--server",
            DNS_SERVER,
            "--tsig-key",
            TSIG_KEY,
        ]));
        match r {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("dnskeys publish {flag} {at}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Starts the agent with [`AGENT_CONFIG`] (once the trust anchor is there,
/// if the config names it) and waits until it answers on its socket.
pub(crate) fn start_agent(who: &str) -> Result<Child> {
    let config = std::fs::read_to_string(AGENT_CONFIG).unwrap_or_default();
    if config.contains(ANCHORS) {
        wait_until("the trust anchor from dns", Duration::from_secs(60), || {
            Path::new(ANCHORS).exists()
        })?;
    }
    let mut cmd = Command::new("oemesh");
    cmd.args(["run", "--config", AGENT_CONFIG, "--log-level", "info"]);
    let child = Child::spawn("oemesh", cmd, Path::new("/var/log/oemesh.log"))?;
    wait_until("the agent to answer", Duration::from_secs(20), || {
        run(Command::new("oemesh").args(["status", "--socket", AGENT_SOCKET])).is_ok()
    })?;
    say!("{who}: agent running (log /var/log/oemesh.log)");
    Ok(child)
}

/// `container router LAN`: the home router. Its leg with an address in `lan`
/// is the LAN; the other one is the WAN (on the testnet's switch). It loads
/// the namespace router's nftables rules ([`NatRouter::ruleset`]: masquerade
/// out of the WAN, no new connections in from it, as a home router does);
/// forwarding itself is on through the container's sysctls. Runs until
/// SIGTERM.
pub(crate) fn router(lan: &str) -> Result<()> {
    let (net, len) = lan
        .split_once('/')
        .and_then(|(a, l)| Some((a.parse::<Ipv4Addr>().ok()?, l.parse::<u32>().ok()?)))
        .filter(|&(_, l)| l <= 32)
        .with_context(|| format!("{lan:?}: want an IPv4 prefix such as 192.168.1.0/24"))?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let in_lan = |a: Ipv4Addr| u32::from(a) & mask == u32::from(net) & mask;
    let all = legs(&run(Command::new("ip").args(["-o", "-4", "addr", "show"]))?);
    let lan_leg = all.iter().find(|(_, a)| in_lan(*a));
    let wan_leg = all.iter().find(|(_, a)| !in_lan(*a));
    let (Some((lan_if, lan_ip)), Some((wan_if, wan_ip))) = (lan_leg, wan_leg) else {
        bail!("router: want one leg in {lan} and one outside it; have {all:?}");
    };
    let file = "/run/oemesh-home-nat.nft";
    std::fs::write(file, NatRouter::ruleset(wan_if, None))
        .with_context(|| format!("writing {file}"))?;
    run(Command::new("nft").args(["-f", file]))?;
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    if forwarding.trim() != "1" {
        bail!("router: net.ipv4.ip_forward is off (compose.yaml sets it in `sysctls`)");
    }
    say!(
        "router: ready; LAN {lan} on {lan_if} ({lan_ip}) masqueraded to {wan_ip} on {wan_if} \
         (nft list table inet {NAT_TABLE})"
    );
    wait_for_signal();
    Ok(())
}

/// The interfaces and IPv4 addresses in `ip -o -4 addr show` output
/// (`2: eth0@if7    inet 192.0.2.1/24 brd …`), loopback left out.
fn legs(ip_o_addr: &str) -> Vec<(String, Ipv4Addr)> {
    ip_o_addr
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let iface = w.next()?.trim_end_matches(':').split('@').next()?;
            let addr = w.nth(1)?.split('/').next()?.parse().ok()?;
            (iface != "lo").then(|| (iface.to_owned(), addr))
        })
        .collect()
}

pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `send --from A --to B --marker M`: ping, UDP and 1 MiB of TCP, as in the demo.
pub(crate) fn send(from: IpAddr, to: IpAddr, marker: &str) -> Result<()> {
    let first = traffic::ping(from, to, marker, 3, Duration::from_secs(15))?;
    say!(
        "  ping ✔ 4 replies, the first after {:.2} s",
        first.as_secs_f64()
    );
    traffic::udp_exchange(
        from,
        to,
        &traffic::marked(marker, 200),
        5,
        Duration::from_secs(15),
    )?;
    say!("  udp  ✔ 5 datagrams echoed");
    let t = traffic::tcp_exchange(
        from,
        to,
        &traffic::marked(marker, 1 << 20),
        Duration::from_secs(15),
    )?;
    say!("  tcp  ✔ 1 MiB echoed in {:.2} s", t.as_secs_f64());
    Ok(())
}

/// Which peer `expect-peer` asks about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PeerSel {
    /// The peer with this address.
    Addr(IpAddr),
    /// The peer that comes from behind the router at this address (its
    /// `endpoint`), known by the address this agent assigned it.
    Behind(IpAddr),
}

impl std::str::FromStr for PeerSel {
    type Err = std::net::AddrParseError;

    /// `192.0.2.20`, or `@192.0.2.1` for the client behind that router.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix('@') {
            Some(router) => router.parse().map(PeerSel::Behind),
            None => s.parse().map(PeerSel::Addr),
        }
    }
}

/// `expect-peer PEER STATE [AUTH]`: this container's agent says so (waits up
/// to 5 s). PEER `@ROUTER` is the client behind that router, seen from the
/// responder ([`PeerSel::Behind`]). The line printed names the peer's
/// endpoint and assigned address when the agent reports them
/// (`… is private, authenticated, endpoint 192.0.2.20:4500, assigned 100.64.0.1`).
pub(crate) fn expect_peer(sel: PeerSel, state: &str, auth: Option<&str>) -> Result<()> {
    let mut last = None;
    let ok = wait_until("the peer state", Duration::from_secs(5), || {
        let p = run(Command::new("oemesh").args(["peers", "--json", "--socket", AGENT_SOCKET]))
            .ok()
            .and_then(|j| parse_peers(&j).ok())
            .and_then(|ps| {
                ps.into_iter().find(|p| match sel {
                    PeerSel::Addr(a) => p.peer == a,
                    PeerSel::Behind(router) => crate::nat::is_behind(p, router),
                })
            });
        let good = p
            .as_ref()
            .is_some_and(|p| p.state == state && auth.is_none_or(|a| p.auth.as_deref() == Some(a)));
        last = p;
        good
    });
    let who = match sel {
        PeerSel::Addr(a) => a.to_string(),
        PeerSel::Behind(router) => format!("the client behind {router}"),
    };
    match (ok, last) {
        (Ok(()), Some(p)) => {
            say!(
                "  agent: {} is {state}{}{}",
                p.peer,
                auth.map(|a| format!(", {a}")).unwrap_or_default(),
                crate::nat::describe(&p)
            );
            Ok(())
        }
        (_, p) => bail!(
            "agent: {who} is {}, expected {state} {auth:?}",
            p.map(|p| format!("{} {:?}{}", p.state, p.auth, crate::nat::describe(&p)))
                .unwrap_or_else(|| "unknown".into())
        ),
    }
}

/// `check-pcap FILE [--tcpdump-log LOG] FLOW...`: the demo's verdict per flow
/// on a capture of the compose bridge. With `--tcpdump-log`, the counts tcpdump
/// printed when it stopped are read from LOG, and packets it dropped make the
/// verdict INCOMPLETE (exit 3) rather than a pass.
pub(crate) fn check_pcap(
    pcap: &Path,
    tcpdump_log: Option<&Path>,
    specs: &[String],
) -> Result<Verdict> {
    let (packets, stats) = read_capture(pcap, tcpdump_log)?;
    let complete = stats.is_none_or(|s| s.complete());
    let bridge = tcpdump_log
        .and_then(sniffed_iface)
        .unwrap_or_else(|| "the compose bridge".to_owned());
    say!(
        "On the wire ({} packets captured on {bridge}{}):",
        packets.len(),
        crate::demo::dropped_note(stats.map_or(0, |s| s.dropped()))
    );
    let mut rows = Vec::new();
    let mut run = Verdict::Pass;
    for spec in specs {
        let flow = parse_flow(spec)?;
        let e = Evidence::of(&flow, &packets);
        let verdict = Verdict::of(e.as_expected(&flow), complete);
        run = run.max(verdict);
        rows.push(Row {
            flow: flow.label(),
            expected: flow.expected(),
            seen: e.summary(),
            verdict,
        });
    }
    print_table(&rows);
    if !complete {
        say!(
            "  INCOMPLETE: tcpdump reported {} packets dropped by the kernel; a marker could \
             have crossed in one of them",
            stats.map_or(0, |s| s.dropped())
        );
    }
    Ok(run)
}

/// The interface tcpdump's log names: `listening on oemesh-br0, link-type …`.
pub(crate) fn sniffed_iface(tcpdump_log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(tcpdump_log).ok()?;
    let after = text.split("listening on ").nth(1)?;
    Some(after.split([',', ' ']).next()?.to_owned())
}

/// The packets of `pcap` and, with `tcpdump_log`, the counts tcpdump printed
/// there when it stopped.
pub(crate) fn read_capture(
    pcap: &Path,
    tcpdump_log: Option<&Path>,
) -> Result<(Vec<Packet>, Option<CaptureStats>)> {
    let packets = read_pcap(pcap)?;
    let stats = match tcpdump_log {
        None => None,
        Some(log) => {
            let text = std::fs::read_to_string(log)
                .with_context(|| format!("reading {}", log.display()))?;
            Some(CaptureStats::parse(&text).with_context(|| {
                format!(
                    "{}: no packet counts from tcpdump in it:\n{text}",
                    log.display()
                )
            })?)
        }
    };
    Ok((packets, stats))
}

/// `from=IP[@ROUTER],to=IP,private|clear,AUTH|clear,MARKER`; `@ROUTER`: `from`
/// sits behind a masquerading router whose outer address on this capture is
/// ROUTER ([`Flow::via`]).
fn parse_flow(spec: &str) -> Result<Flow> {
    let parts: Vec<&str> = spec.splitn(5, ',').collect();
    let [from, to, kind, expect, marker] = parts[..] else {
        bail!("flow spec {spec:?}: want from=IP[@ROUTER],to=IP,private|clear,AUTH|clear,MARKER");
    };
    let end = |s: &str| -> Result<(String, IpAddr)> {
        let (name, ip) = s
            .split_once('=')
            .with_context(|| format!("{s:?}: want name=IP"))?;
        Ok((
            name.to_owned(),
            ip.parse().with_context(|| format!("{ip:?}"))?,
        ))
    };
    let (from, via) = match from.split_once('@') {
        Some((from, router)) => (
            from,
            Some(
                router
                    .parse()
                    .with_context(|| format!("{router:?}: want the router's address"))?,
            ),
        ),
        None => (from, None),
    };
    let ((from, from_ip), (to, to_ip)) = (end(from)?, end(to)?);
    let expect: &'static str = match expect {
        "authenticated" => "authenticated",
        "anonymous" => "anonymous",
        _ => "clear",
    };
    Ok(Flow {
        from,
        to,
        from_ip,
        to_ip,
        marker: marker.to_owned(),
        private: kind == "private",
        expect,
        via,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_router_legs() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   24: eth0@if25    inet 192.0.2.1/24 brd 192.0.2.255 scope global eth0\n\
                   26: eth1@if27    inet 192.168.1.1/24 brd 192.168.1.255 scope global eth1\n";
        assert_eq!(
            legs(out),
            [
                ("eth0".to_owned(), Ipv4Addr::new(192, 0, 2, 1)),
                ("eth1".to_owned(), Ipv4Addr::new(192, 168, 1, 1)),
            ]
        );
    }

    #[test]
    fn flows_behind_a_router() {
        let f =
            parse_flow("erin=192.168.1.10@192.0.2.1,bob=192.0.2.20,private,anonymous,M,x").unwrap();
        assert_eq!(f.from_ip, "192.168.1.10".parse::<IpAddr>().unwrap());
        assert_eq!(f.via, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(f.marker, "M,x");
        let f = parse_flow("alice=192.0.2.10,dave=192.0.2.40,clear,clear,M").unwrap();
        assert_eq!((f.via, f.private), (None, false));
        assert!(parse_flow("erin=192.168.1.10@router,bob=192.0.2.20,private,anonymous,M").is_err());
    }
}

//! The compose testnet's side of the driver: what runs inside each container
//! (`container dns`, `container host`), the traffic sent from inside one
//! (`send`), and the verdict on a capture taken on the compose bridge
//! (`check-pcap`). The containers have no shell scripts to speak of: this is
//! their entry point.

use std::io::Read as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_testkit::bind::dnssec::anchor_from_key_file;
use oemesh_testkit::capture::{CaptureStats, read_pcap};
use oemesh_testkit::process::{Child, wait_for, wait_until};
use oemesh_testkit::topology::parse_peers;

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
/// key, its DNSKEY (flags 257) goes to `/shared/anchors.txt`. Runs until
/// SIGTERM, then stops named.
pub(crate) fn dns() -> Result<()> {
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

/// `container host --ip A [--publish] [--agent]`: make and publish a key,
/// start the agent, serve UDP/TCP echo until SIGTERM.
pub(crate) fn host(ip: IpAddr, publish: bool, agent: bool) -> Result<()> {
    if publish {
        wait_until("the TSIG key from dns", Duration::from_secs(60), || {
            Path::new(TSIG_KEY).exists()
        })?;
        std::fs::create_dir_all("/var/lib/oemesh")?;
        run(Command::new("dnskeys").args(["keygen", "--out", HOST_KEY]))?;
        // named may still be loading its zones: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = run(Command::new("dnskeys").args([
                "publish",
                "--key",
                HOST_KEY,
                "--ip",
                &ip.to_string(),
                "--server",
                DNS_SERVER,
                "--tsig-key",
                TSIG_KEY,
            ]));
            match r {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        say!("{ip}: key published in DNS");
    }
    let _agent = if agent {
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
        say!("{ip}: agent running (log /var/log/oemesh.log)");
        Some(child)
    } else {
        None
    };
    let _servers = EchoServers::start(ip)?;
    say!(
        "{ip}: ready; echo on UDP {} and TCP {}",
        traffic::UDP_PORT,
        traffic::TCP_PORT
    );
    while !interrupted() {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Dropping the agent's Child sends it SIGTERM: it removes its routes.
    Ok(())
}

fn run(cmd: &mut Command) -> Result<String> {
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

/// `expect-peer PEER STATE [AUTH]`: this container's agent says so (waits up to 5 s).
pub(crate) fn expect_peer(peer: IpAddr, state: &str, auth: Option<&str>) -> Result<()> {
    let mut last = None;
    let ok = wait_until("the peer state", Duration::from_secs(5), || {
        let p = run(Command::new("oemesh").args(["peers", "--json", "--socket", AGENT_SOCKET]))
            .ok()
            .and_then(|j| parse_peers(&j).ok())
            .and_then(|ps| ps.into_iter().find(|p| p.peer == peer));
        let good = p
            .as_ref()
            .is_some_and(|p| p.state == state && auth.is_none_or(|a| p.auth.as_deref() == Some(a)));
        last = p;
        good
    });
    match (ok, last) {
        (Ok(()), _) => {
            say!(
                "  agent: {peer} is {state}{}",
                auth.map(|a| format!(", {a}")).unwrap_or_default()
            );
            Ok(())
        }
        (Err(_), p) => bail!(
            "agent: {peer} is {}, expected {state} {auth:?}",
            p.map(|p| format!("{} {:?}", p.state, p.auth))
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
    let complete = stats.is_none_or(|s| s.complete());
    say!(
        "On the wire ({} packets captured on the compose bridge{}):",
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
            expected: if flow.private {
                format!("private, {}", flow.expect)
            } else {
                "clear".into()
            },
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

fn parse_flow(spec: &str) -> Result<Flow> {
    let parts: Vec<&str> = spec.splitn(5, ',').collect();
    let [from, to, kind, expect, marker] = parts[..] else {
        bail!("flow spec {spec:?}: want from=IP,to=IP,private|clear,AUTH|clear,MARKER");
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
    })
}

//! Helpers of the end-to-end tests: the testnet with this crate's `oemesh`,
//! UDP and TCP echo servers inside namespaces, clients that run inside a
//! namespace, and analysis of what the switch captured.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_testkit::capture::{IKE_PORT, NAT_T_PORT, Packet};
use oemesh_testkit::topology::{AgentConfig, Binaries, Host, Options, Testnet};

/// The agent binary cargo built for these tests.
pub(crate) const OEMESH: &str = env!("CARGO_BIN_EXE_oemesh");

/// Bound on one decision (DNS + IKE + margin) in these tests.
pub(crate) const DECISION: Duration = Duration::from_secs(20);

/// A testnet whose agents all run `config`. `dnskeys` is found next to
/// `oemesh` (or built there): see `Binaries::locate`.
pub(crate) fn testnet(label: &str, config: AgentConfig) -> Testnet {
    testnet_with(label, config, false)
}

/// [`testnet`] with the reverse zones signed by BIND and every agent
/// validating from their anchor (`Options::dnssec`).
pub(crate) fn signed_testnet(label: &str, config: AgentConfig) -> Testnet {
    testnet_with(label, config, true)
}

fn testnet_with(label: &str, config: AgentConfig, dnssec: bool) -> Testnet {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(std::path::Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let mut opts = Options::new(label, bins);
    opts.agent = config;
    opts.dnssec = dnssec;
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    Testnet::up(opts).expect("testnet comes up")
}

/// What a [`UdpEcho`] or [`TcpEcho`] got.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// A UDP server in a host's namespace that records each datagram and echoes it.
#[derive(Debug)]
pub(crate) struct UdpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Received,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    /// Binds `host:port` and serves until dropped.
    pub(crate) fn start(host: &Host, port: u16) -> UdpEcho {
        let addr = SocketAddr::new(host.ip(), port);
        let socket = host.netns().bind_udp(addr).expect("bind UDP echo");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Received::default();
        let (s, r) = (stop.clone(), received.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    r.lock().expect("lock").push(buf[..n].to_vec());
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        UdpEcho {
            addr,
            stop,
            received,
            thread: Some(thread),
        }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every datagram received so far.
    pub(crate) fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP client socket bound to `host`'s address inside its namespace.
pub(crate) fn udp_client(host: &Host) -> UdpSocket {
    host.netns()
        .bind_udp(SocketAddr::new(host.ip(), 0))
        .expect("bind UDP client")
}

/// Sends `payload` from `socket` to `to` once and waits (up to `timeout`) for
/// the echo. No retry: a first datagram lost on the way fails this.
pub(crate) fn udp_once(
    socket: &UdpSocket,
    to: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<()> {
    socket.send_to(payload, to)?;
    recv_echo(socket, payload, Instant::now() + timeout)
}

/// Sends `payload` every 500 ms until its echo comes back (up to `timeout`).
pub(crate) fn udp_until_echo(
    socket: &UdpSocket,
    to: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        socket.send_to(payload, to)?;
        let slot = (Instant::now() + Duration::from_millis(500)).min(deadline);
        match recv_echo(socket, payload, slot) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("no echo from {to} within {timeout:?}")));
            }
            Err(_) => {}
        }
    }
}

fn recv_echo(socket: &UdpSocket, payload: &[u8], deadline: Instant) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no echo of a {}-byte datagram", payload.len());
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == payload => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("recv"),
        }
    }
}

/// A TCP server in a host's namespace: per connection, reads to EOF, records
/// the bytes and sends them back.
#[derive(Debug)]
pub(crate) struct TcpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Received,
    thread: Option<JoinHandle<()>>,
}

impl TcpEcho {
    /// Listens on `host:port` until dropped.
    pub(crate) fn start(host: &Host, port: u16) -> TcpEcho {
        let addr = SocketAddr::new(host.ip(), port);
        let listener = host.netns().bind_tcp(addr).expect("bind TCP echo");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Received::default();
        let (s, r) = (stop.clone(), received.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
                        let mut data = Vec::new();
                        if conn.read_to_end(&mut data).is_ok() {
                            let _ = conn.write_all(&data);
                            r.lock().expect("lock").push(data);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TcpEcho {
            addr,
            stop,
            received,
            thread: Some(thread),
        }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What each connection sent so far.
    pub(crate) fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from `host` to `to`, sends `payload`, half-closes, and checks the
/// echo; all within `timeout` (TCP's own retransmissions recover losses).
pub(crate) fn tcp_exchange(
    host: &Host,
    to: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<()> {
    let mut stream = host
        .netns()
        .run(|| TcpStream::connect_timeout(&to, timeout))?
        .with_context(|| format!("{}: connecting to {to}", host.name()))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(payload)?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back).context("reading the echo")?;
    if back != payload {
        bail!(
            "echo differs: {} bytes back, {} sent",
            back.len(),
            payload.len()
        );
    }
    Ok(())
}

/// A payload of `len` bytes that contains `marker` several times.
pub(crate) fn marked_payload(marker: &[u8], len: usize) -> Vec<u8> {
    marker
        .iter()
        .copied()
        .cycle()
        .take(len.max(marker.len()))
        .collect()
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether a packet is IKE or ESP-in-UDP: UDP with 500 or 4500 at both ends.
pub(crate) fn is_ipsec(p: &Packet) -> bool {
    let ok = |port: u16| port == IKE_PORT || port == NAT_T_PORT;
    p.ports.is_some_and(|(s, d)| ok(s) && ok(d))
}

/// Packets between `a` and `b` (either direction).
pub(crate) fn between(packets: &[Packet], a: IpAddr, b: IpAddr) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| (p.src == a && p.dst == b) || (p.src == b && p.dst == a))
        .collect()
}

/// Short description of a packet for failure messages.
pub(crate) fn show(p: &Packet) -> String {
    format!(
        "{} -> {} proto {} ports {:?} {} bytes",
        p.src,
        p.dst,
        p.protocol,
        p.ports,
        p.payload.len()
    )
}

/// Asserts that everything between `a` and `b` on the wire is IKE or
/// ESP-in-UDP, that some of it is ESP, and that `marker` is nowhere.
pub(crate) fn assert_only_ipsec(packets: &[Packet], a: IpAddr, b: IpAddr, marker: &[u8]) {
    let pair = between(packets, a, b);
    let other: Vec<String> = pair
        .iter()
        .filter(|p| !is_ipsec(p))
        .map(|p| show(p))
        .collect();
    assert!(
        other.is_empty(),
        "non-IPsec packets between {a} and {b}:\n{}",
        other.join("\n")
    );
    assert!(
        pair.iter().any(|p| p.is_esp_in_udp()),
        "no ESP-in-UDP between {a} and {b} ({} packets)",
        pair.len()
    );
    assert_marker_absent(packets, marker);
}

/// Asserts that `marker` appears in no captured packet.
pub(crate) fn assert_marker_absent(packets: &[Packet], marker: &[u8]) {
    let leaks: Vec<String> = packets
        .iter()
        .filter(|p| contains(&p.payload, marker))
        .map(show)
        .collect();
    assert!(
        leaks.is_empty(),
        "the marker crossed the wire in the clear:\n{}",
        leaks.join("\n")
    );
}

/// The agent's Prometheus text exposition, read in its namespace.
pub(crate) fn scrape_metrics(host: &Host) -> String {
    host.netns()
        .run(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect("127.0.0.1:9618")?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .unwrap_or_else(|e| panic!("{}: entering the namespace: {e}", host.name()))
        .unwrap_or_else(|e| panic!("{}: metrics: {e}", host.name()))
}

/// One counter from the agent's metrics: `name` with its labels, as printed.
pub(crate) fn metric(host: &Host, name: &str) -> u64 {
    let text = scrape_metrics(host);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
}

/// A testnet whose agents log at `info`, for floods: at `debug` a flood would
/// be a flood of log lines, and measure the log file instead of the agent.
pub(crate) fn quiet_testnet(label: &str, config: AgentConfig) -> Testnet {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(std::path::Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let mut opts = Options::new(label, bins);
    opts.agent = config;
    opts.log_level = "info".into();
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    Testnet::up(opts).expect("testnet comes up")
}

/// An attacker's namespace `name` on the switch at `addr` (a /24 of the
/// segment); `victim` routes `spoofed` (a CIDR) to it, so that its answers to
/// spoofed sources go back to the attacker's MAC and die there, as they would
/// on the Internet.
pub(crate) fn attacker_ns(
    net: &Testnet,
    victim: &Host,
    name: &str,
    addr: &str,
    spoofed: &str,
) -> oemesh_testkit::netns::Netns {
    let ns = oemesh_testkit::netns::Netns::new(name).expect("attacker namespace");
    net.switch()
        .attach(&ns, &format!("{addr}/24"))
        .expect("attacker on the switch");
    // With its device named: without one, the kernel resolves the gateway
    // through the agent's policy routing, to its TUN, and every answer to a
    // spoofed source (a cookie) loops into the victim's own agent instead of
    // going on the wire.
    let dev = interface_with(victim.netns(), victim.v4());
    victim
        .netns()
        .ip(&["route", "add", spoofed, "via", addr, "dev", &dev])
        .expect("route to the spoofed prefix");
    ns
}

/// The interface of `ns` that has IPv4 address `addr`.
pub(crate) fn interface_with(
    ns: &oemesh_testkit::netns::Netns,
    addr: std::net::Ipv4Addr,
) -> String {
    let out = ns.ip(&["-o", "-4", "addr", "show"]).unwrap();
    out.lines()
        .find(|l| l.contains(&format!("inet {addr}/")))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no interface with {addr}:\n{out}"))
        .to_owned()
}

/// `oemesh status --json`.
pub(crate) fn status(host: &Host) -> serde_json::Value {
    let out = host
        .oemesh_cli(&["status", "--json"])
        .unwrap_or_else(|e| panic!("{}: status: {e:#}\n{}", host.name(), host.log_tail(30)));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

/// A number of `oemesh status --json`.
pub(crate) fn field(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status without `{k}`: {v}"))
}

/// (VmRSS, VmHWM) of a process, in KiB.
pub(crate) fn rss_kib(pid: u64) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Publishes `host`'s key (made by the testnet) at the reverse name of `ip`
/// too, as its admin would: `dnskeys publish --ip <ip>`.
pub(crate) fn publish_at(net: &Testnet, dnskeys: &std::path::Path, host: &Host, ip: IpAddr) {
    let key = host.key_path().expect("a host with a key");
    let tsig = net.dns().bind().tsig_key_file();
    let ip_s = ip.to_string();
    let server = net.dns().bind().server();
    let argv = [
        dnskeys.to_str().unwrap(),
        "publish",
        "--key",
        key.to_str().unwrap(),
        "--ip",
        &ip_s,
        "--server",
        &server,
        "--tsig-key",
        tsig.to_str().unwrap(),
    ];
    host.exec(&argv, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{}: dnskeys publish --ip {ip}: {e:#}", host.name()));
    let records = net.dns().ipseckeys(ip).unwrap();
    assert_eq!(records.len(), 1, "{}: {records:?}", host.name());
}

/// [`publish_at`] `host`'s IPv6 address.
pub(crate) fn publish_v6(net: &Testnet, dnskeys: &std::path::Path, host: &Host) {
    publish_at(net, dnskeys, host, IpAddr::V6(host.v6()));
}

/// Pings `dst` from `src` on `host` until a reply comes (the first ones
/// wait for the decision), bounded by [`DECISION`].
pub(crate) fn ping_until_reply(host: &Host, src: IpAddr, dst: IpAddr) {
    let deadline = Instant::now() + DECISION;
    loop {
        match host.netns().ping(src, dst, Duration::from_secs(2)) {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("{e:#}\n{}:\n{}", host.name(), host.log_tail(40))
            }
            Err(_) => {}
        }
    }
}

/// Removes the `address` line the testnet wrote into `host`'s config, so
/// that the agent finds its addresses itself.
pub(crate) fn drop_configured_address(host: &Host) {
    let path = host.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("address ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, without, "the testnet wrote an `address`");
    std::fs::write(&path, without).unwrap();
}

/// Writes `host`'s config with `address = [v4, v6]` instead of the
/// testnet's single IPv4 `address`.
pub(crate) fn configure_dual(host: &Host, config: &AgentConfig) {
    host.set_agent_config(config).unwrap();
    let path = host.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let single = format!("address = \"{}\"\n", host.v4());
    assert!(text.contains(&single), "{text}");
    let dual = format!("address = [\"{}\", \"{}\"]\n", host.v4(), host.v6());
    std::fs::write(&path, text.replace(&single, &dual)).unwrap();
}

/// A deterministic, incompressible-looking payload of `len` bytes.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

//! Path MTU through ESP (issue 14 part 7): no silent black hole.
//!
//! A laptop with an agent behind a router (`oemesh_testkit::topology::nat`)
//! talks to bob's agent on the testnet's switch, over IPv4 and (another test)
//! over IPv6. The router's route towards the switch gets MTU 1300 (1400 for
//! IPv6), less than the laptop's ESP-in-UDP datagrams of up to ~1465 bytes
//! (~1485 over IPv6; TUN MTU 1400), which leave with DF: the router drops them
//! and answers ICMP "fragmentation needed" / ICMPv6 "packet too big".
//!
//! - With that ICMP filtered on the router (what an agent that does not read
//!   it amounts to), a 1 MiB TCP transfer from the laptop stalls: the black
//!   hole (a bounded wait).
//! - With it let through, the laptop's agent takes the path MTU from its
//!   UDP 4500 socket's error queue, answers the laptop's own too-big TCP
//!   segments with "too big" (MTU 1235, or 1315 over IPv6), the kernel lowers its
//!   path MTU and the transfer (echoed back by bob) completes byte for byte.
//!
//! Needs root, BIND 9 and nft (like `nat.rs`). Every wait is bounded; nothing
//! asserts timings.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e_support::*;
use oemesh_testkit::topology::nat::ROUTER_WAN_V4;
use oemesh_testkit::topology::{
    AgentConfig, Binaries, HomeLanOptions, Host, NatRouter, Options, SUBNET_V4, SUBNET_V6, Testnet,
};

/// The MTU of the router's route towards bob over IPv4.
const PATH_MTU: u16 = 1300;
/// Over IPv6: the least that leaves an inner IPv6 packet its 1280 bytes
/// (RFC 8200 §5) is 1280 + 85 (outer IPv6, UDP, ESP with the most padding
/// and the ICV); a gateway's TUN of 1400 is what nesting gives.
const PATH_MTU_V6: u16 = 1400;
/// What a stalled transfer is given before it counts as stalled.
const STALL_WAIT: Duration = Duration::from_secs(15);
/// The transfer.
const LEN: usize = 1 << 20;

/// A testnet with bob's agent only (alice's and carol's not started).
fn server_net(label: &str) -> Testnet {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(std::path::Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let mut opts = Options::new(label, bins);
    opts.start_agents = false;
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    let net = Testnet::up(opts).expect("testnet comes up");
    net.bob().start_agent().unwrap();
    net
}

/// The router forwards at most `mtu` bytes towards the switch (a locked
/// route MTU, which forwarding honours), and answers bigger DF packets (every
/// IPv6 packet) with "fragmentation needed" / "packet too big".
fn narrow(router: &NatRouter, mtu: u16, v6: bool) {
    let ns = router.netns();
    let wan = router.wan_iface();
    let mtu = mtu.to_string();
    if v6 {
        let route = [
            "-6", "route", "replace", SUBNET_V6, "dev", wan, "metric", "256",
        ];
        ns.ip(&[&route[..], &["mtu", "lock", &mtu]].concat())
            .unwrap();
    } else {
        let src = ROUTER_WAN_V4.to_string();
        let route = ["route", "replace", SUBNET_V4, "dev", wan, "src", &src];
        ns.ip(&[&route[..], &["mtu", "lock", &mtu]].concat())
            .unwrap();
    }
}

/// Drops (`true`) or lets through the router's own ICMP errors.
fn filter_icmp(router: &NatRouter, on: bool) {
    let rules = if on {
        "table inet pmtu_black_hole {\n  chain output {\n    type filter hook output priority filter; policy accept;\n    icmp type destination-unreachable drop\n    icmpv6 type packet-too-big drop\n  }\n}\n"
    } else {
        "table inet pmtu_black_hole\ndelete table inet pmtu_black_hole\n"
    };
    let file = std::env::temp_dir().join(format!("{}.nft", router.netns().name()));
    std::fs::write(&file, rules).unwrap();
    router
        .netns()
        .exec(
            &["nft", "-f", file.to_str().unwrap()],
            Duration::from_secs(10),
        )
        .unwrap();
    let _ = std::fs::remove_file(file);
}

/// Sends `data` from `host` to the echo at `to` and reads it back, each
/// read or write waiting at most `wait`.
fn round_trip(
    host: &Host,
    to: SocketAddr,
    data: &[u8],
    wait: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut stream = host
        .netns()
        .run(|| TcpStream::connect_timeout(&to, DECISION))
        .unwrap()?;
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    // A stalled connection ends with a reset, not retransmitting on.
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    stream.write_all(data)?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::with_capacity(data.len());
    stream.read_to_end(&mut back)?;
    Ok(back)
}

/// A TCP echo in `host`'s namespace at `addr` (either family): per
/// connection, reads to EOF and sends it all back, until dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(host: &Host, addr: SocketAddr) -> Echo {
        let listener = host.netns().bind_tcp(addr).expect("bind TCP echo");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(STALL_WAIT));
                let mut data = Vec::new();
                if conn.read_to_end(&mut data).is_ok() {
                    let _ = conn.write_all(&data);
                }
            }
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The laptop (behind the router) and bob, private over IPv4 or IPv6
/// (`v6`, both agents with both addresses and bob's key published at both
/// reverse names), then the black hole and its cure (see the module docs).
fn through_a_narrow_path(label: &str, v6: bool) {
    let net = server_net(label);
    let bob = net.bob();
    let mut opts = HomeLanOptions::new(&["laptop"]);
    if v6 {
        let bins = Binaries::locate(std::path::Path::new(OEMESH)).unwrap();
        let mut config = AgentConfig::default();
        config.set_policy("private-or-clear", &[SUBNET_V4, SUBNET_V6]);
        bob.stop_agent().unwrap();
        publish_v6(&net, &bins.dnskeys, bob);
        configure_dual(bob, &config);
        bob.start_agent().unwrap();
        opts.agent = config;
        opts.start_agents = false;
    }
    let home = net
        .home_lan(&opts)
        .unwrap_or_else(|e| panic!("home LAN: {e:#}"));
    let laptop = &home.clients()[0];
    if v6 {
        configure_dual(laptop, &opts.agent);
        laptop.start_agent().unwrap();
    }
    let router = home.outer();
    let to: IpAddr = if v6 { bob.v6().into() } else { bob.ip() };
    let (stalled_at, at) = (SocketAddr::new(to, 7240), SocketAddr::new(to, 7241));
    let _stalled_echo = Echo::start(bob, stalled_at);
    let _echo = Echo::start(bob, at);
    tcp_exchange(laptop, at, b"warm up", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nlaptop:\n{}", laptop.log_tail(30)));
    laptop
        .wait_peer(to, "bob private", DECISION, |p| p.state == "private")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let path_mtu = if v6 { PATH_MTU_V6 } else { PATH_MTU };
    narrow(router, path_mtu, v6);
    let data = noise(LEN, 0x706d_7475);

    // The black hole: the router's "too big" never arrives.
    filter_icmp(router, true);
    let stalled = round_trip(laptop, stalled_at, &data, STALL_WAIT);
    eprintln!(
        "with the ICMP filtered: {:?}",
        stalled.as_ref().map(Vec::len)
    );
    assert!(
        !matches!(&stalled, Ok(back) if *back == data),
        "the transfer completed without the router's ICMP: the path is not narrower than ESP"
    );
    assert!(
        !laptop.log().contains(&format!("path MTU {path_mtu}")),
        "a path MTU learned with the ICMP filtered"
    );

    // The router's ICMP reaches the laptop's agent: the transfer completes.
    filter_icmp(router, false);
    let back = round_trip(laptop, at, &data, DECISION).unwrap_or_else(|e| {
        panic!(
            "the transfer through a {path_mtu}-byte path failed: {e}\nlaptop:\n{}",
            laptop.log_tail(40)
        )
    });
    assert!(
        back == data,
        "echo differs: {} bytes back of {LEN}",
        back.len()
    );
    let log = laptop.log();
    for line in log
        .lines()
        .filter(|l| l.contains("path MTU") || l.contains("told the host"))
    {
        eprintln!("laptop: {line}");
    }
    assert!(
        log.contains(&format!("path MTU {path_mtu} (reported by")),
        "the laptop's agent did not take the router's ICMP:\n{}",
        laptop.log_tail(40)
    );
    if !v6 {
        answers_are_rate_limited(laptop, to);
    }
}

/// A sender that ignores its own path MTU (`IP_PMTUDISC_PROBE`: DF set, no
/// EMSGSIZE) floods too-big datagrams at `to`: the agent answers at most
/// `TOO_BIG_PER_SECOND` of them a second and drops the rest unanswered,
/// counted `rate_limited` (what the kernel's `icmp_msgs_per_sec` is for its
/// own errors). Bounded: a few rounds of 20,000 datagrams.
fn answers_are_rate_limited(laptop: &Host, to: IpAddr) {
    const LIMITED: &str = "oemesh_pmtu_events_total{event=\"rate_limited\"}";
    const SENT: &str = "oemesh_pmtu_events_total{event=\"too_big_sent\"}";
    let flood = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE\n\
         s.connect(('{to}', 7299))\n\
         for _ in range(20000):\n    \
             try: s.send(b'x' * 1300)\n    \
             except OSError: pass\n"
    );
    let (sent_before, limited_before) = (metric(laptop, SENT), metric(laptop, LIMITED));
    for _ in 0..5 {
        laptop
            .exec(&["python3", "-c", &flood], Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the flood: {e:#}"));
        if metric(laptop, LIMITED) > limited_before {
            break;
        }
    }
    let (sent, limited) = (metric(laptop, SENT), metric(laptop, LIMITED));
    eprintln!(
        "too big answered {}, dropped {}",
        sent - sent_before,
        limited - limited_before
    );
    assert!(
        limited > limited_before,
        "no answer was rate limited ({} answered):\n{}",
        sent - sent_before,
        laptop.log_tail(20)
    );
}

#[test]
fn too_big_for_the_path_comes_back_as_frag_needed_and_tcp_completes() {
    through_a_narrow_path("pmtu", false);
}

#[test]
fn too_big_for_an_ipv6_path_comes_back_as_packet_too_big_and_tcp_completes() {
    through_a_narrow_path("pmtu6", true);
}

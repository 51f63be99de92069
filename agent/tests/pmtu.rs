//! Path MTU through ESP (issue 14 part 7): no silent black hole.
//!
//! A laptop with an agent behind a router (`oemesh_testkit::topology::nat`)
//! talks to bob's agent on the testnet's switch. The router's route towards
//! the switch gets MTU 1300, less than the laptop's ESP-in-UDP datagrams of
//! up to ~1465 bytes (TUN MTU 1400), which leave with DF: the router drops
//! them and answers ICMP "fragmentation needed" with MTU 1300.
//!
//! - With that ICMP filtered on the router (what an agent that does not read
//!   it amounts to), a 1 MiB TCP transfer from the laptop stalls: the black
//!   hole (a bounded wait).
//! - With it let through, the laptop's agent takes the path MTU from its
//!   UDP 4500 socket's error queue, answers the laptop's own too-big TCP
//!   segments with "fragmentation needed" (MTU 1235), the kernel lowers its
//!   path MTU and the transfer (echoed back by bob) completes byte for byte.
//!
//! Needs root, BIND 9 and nft (like `nat.rs`). Every wait is bounded; nothing
//! asserts timings.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use e2e_support::*;
use oemesh_testkit::topology::nat::ROUTER_WAN_V4;
use oemesh_testkit::topology::{Binaries, HomeLanOptions, Host, NatRouter, Options, Testnet};

/// The MTU of the router's route towards bob.
const PATH_MTU: u16 = 1300;
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

/// The router forwards at most `mtu` bytes towards the switch (a route MTU,
/// which forwarding always honours), and answers bigger DF packets with
/// "fragmentation needed".
fn narrow(router: &NatRouter, mtu: u16) {
    let ns = router.netns();
    let wan = router.wan_iface();
    let (src, mtu) = (ROUTER_WAN_V4.to_string(), mtu.to_string());
    ns.ip(&[
        "route",
        "replace",
        "192.0.2.0/24",
        "dev",
        wan,
        "src",
        &src,
        "mtu",
        &mtu,
    ])
    .unwrap();
}

/// Drops (`true`) or lets through the router's own ICMP errors.
fn filter_icmp(router: &NatRouter, on: bool) {
    let rules = if on {
        "table inet pmtu_black_hole {\n  chain output {\n    type filter hook output priority filter; policy accept;\n    icmp type destination-unreachable drop\n  }\n}\n"
    } else {
        "table inet pmtu_black_hole\ndelete table inet pmtu_black_hole\n"
    };
    let file = std::env::temp_dir().join(format!("pmtu-{}.nft", std::process::id()));
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

/// A deterministic, incompressible-looking payload of `len` bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
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

#[test]
fn too_big_for_the_path_comes_back_as_frag_needed_and_tcp_completes() {
    let net = server_net("pmtu");
    let home = net
        .home_lan(&HomeLanOptions::new(&["laptop"]))
        .unwrap_or_else(|e| panic!("home LAN: {e:#}"));
    let (bob, laptop) = (net.bob(), &home.clients()[0]);
    let router = home.outer();
    let stalled_echo = TcpEcho::start(bob, 7240);
    let echo = TcpEcho::start(bob, 7241);
    tcp_exchange(laptop, echo.addr(), b"warm up", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nlaptop:\n{}", laptop.log_tail(30)));
    laptop
        .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
        .unwrap_or_else(|e| panic!("{e:#}"));
    narrow(router, PATH_MTU);
    let data = noise(LEN, 0x706d_7475);

    // The black hole: the router's "fragmentation needed" never arrives.
    filter_icmp(router, true);
    let stalled = round_trip(laptop, stalled_echo.addr(), &data, STALL_WAIT);
    eprintln!(
        "with the ICMP filtered: {:?}",
        stalled.as_ref().map(Vec::len)
    );
    assert!(
        !matches!(&stalled, Ok(back) if *back == data),
        "the transfer completed without the router's ICMP: the path is not narrower than ESP"
    );
    assert!(
        !laptop.log().contains(&format!("path MTU {PATH_MTU}")),
        "a path MTU learned with the ICMP filtered"
    );

    // The router's ICMP reaches the laptop's agent: the transfer completes.
    filter_icmp(router, false);
    let back = round_trip(laptop, echo.addr(), &data, DECISION).unwrap_or_else(|e| {
        panic!(
            "the transfer through a {PATH_MTU}-byte path failed: {e}\nlaptop:\n{}",
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
        log.contains(&format!("path MTU {PATH_MTU} (reported by")),
        "the laptop's agent did not take the router's ICMP:\n{}",
        laptop.log_tail(40)
    );
}

//! Allocation bombs against a real agent (issue 11, item 4, "bounded parsing
//! before the cookie"): an attacker namespace on the switch sends bob the
//! crafted datagrams of `oemesh_testkit::attacker::bombs` for a few seconds,
//!
//! - as IKE_SA_INIT requests from spoofed sources, to UDP 500 and, behind the
//!   non-ESP marker, to 4500: what anyone can make a responder parse before
//!   any cookie check;
//! - sealed inside the SK payload of IKE_AUTH requests, from the attacker's
//!   own address, after a real IKE_SA_INIT: what a peer can make a responder
//!   decrypt and parse while its SA is half-open;
//!
//! and checks that bob's peak RSS (VmHWM, reset before the flood) stays
//! within 16 MiB of his idle RSS, that the bombs are dropped and counted,
//! and that bob still answers and still completes a fresh handshake with
//! alice.
//!
//! On the code before the fix, one Delete bomb of 1,396 bytes made the parser
//! allocate 269 MB, and this test fails on its first assertion. Needs root,
//! BIND 9 and nft, like `floods.rs`:
//!
//! ```text
//! sudo -E cargo test -p oemesh-agent --test ike_bombs -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use e2e_support::*;
use oemesh_testkit::attacker::bombs::{self, Bomb, SkBomber};
use oemesh_testkit::flood::{self, Datagram, IKE_PORT, Kind, Limits, NAT_T_PORT, Report};
use oemesh_testkit::topology::{AgentConfig, Host};

/// The attacker's address on the switch.
const ATTACKER: &str = "192.0.2.66";
/// Spoofed sources, routed to the attacker on bob (his answers die there).
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
/// How far bob's peak RSS may rise above his idle RSS under the bombs.
const RSS_MARGIN_KIB: u64 = 16 * 1024;
/// How long each flood lasts.
const FLOOD: Duration = Duration::from_secs(3);
/// IKE_SA_INIT bombs per second: a few MB/s, which the kernel delivers
/// whole, so that the outcome is the parser's, not the socket's.
const INIT_RATE: u64 = 2000;
/// Distinct initiator SPIs (and spoofed sources) per bomb and port.
const VARIANTS: u8 = 16;

/// Resets a process's VmHWM to its current RSS (`clear_refs`, value 5,
/// Linux 4.0 and later), so that the next reading is the peak since now.
fn reset_peak(pid: u64) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting VmHWM (needs root)");
}

/// The IKE_SA_INIT bombs, every kind to 500 and to 4500, from spoofed
/// sources with distinct SPIs.
fn init_bombs(bob: &Host) -> Vec<Datagram> {
    let mut out = Vec::new();
    for v in 0..VARIANTS {
        let from = Ipv4Addr::new(198, 51, 100, 10 + v);
        for (i, bomb) in Bomb::ALL.into_iter().enumerate() {
            let spi = u64::from(v) << 32 | (i as u64) << 8;
            for port in [IKE_PORT, NAT_T_PORT] {
                let payload = if port == IKE_PORT {
                    bombs::ike_sa_init(spi, bomb)
                } else {
                    bombs::ike_sa_init_4500(spi | 1, bomb)
                };
                out.push(Datagram {
                    from: SocketAddr::new(from.into(), port),
                    to: SocketAddr::new(bob.ip(), port),
                    payload,
                });
            }
        }
    }
    out
}

/// What the SK bomber did.
#[derive(Debug, Default)]
struct SkReport {
    /// IKE SAs it got half-open at bob.
    sas: u32,
    /// IKE_SA_INIT exchanges bob did not answer within a second.
    unanswered: u32,
    /// IKE_AUTH bombs it sent.
    sent: u64,
}

/// The bombs the SK bomber seals: those the parser refuses. (The seventh,
/// one proposal of 170 transforms, is a legal message; bob takes it as a
/// broken IKE_AUTH and ends the SA, after which nothing more is parsed.)
const SK_BOMBS: [Bomb; 6] = [
    Bomb::Delete,
    Bomb::EmptyPayloads,
    Bomb::Notifies,
    Bomb::Proposals,
    Bomb::Attributes,
    Bomb::Selectors,
];

/// Sends `payload` (an IKE message) to `to`, behind the non-ESP marker when
/// the port is 4500, and returns the IKE message of the answer.
fn exchange(socket: &UdpSocket, to: SocketAddr, ike: &[u8]) -> anyhow::Result<Vec<u8>> {
    let marker = to.port() == NAT_T_PORT;
    let datagram = if marker {
        bombs::with_non_esp_marker(ike)
    } else {
        ike.to_vec()
    };
    socket.send_to(&datagram, to)?;
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf)?;
    let answer = if marker { &buf[4.min(n)..n] } else { &buf[..n] };
    Ok(answer.to_vec())
}

/// From the attacker's own address: a real IKE_SA_INIT to bob, then IKE_AUTH
/// requests whose SK payload holds a bomb, 500 a second for half a second,
/// then the same again with a new SA, alternating ports 500 and 4500, until
/// `duration` is over. Runs in the calling thread's namespace.
fn sk_bombs(bob: SocketAddr, duration: Duration) -> anyhow::Result<SkReport> {
    let mut report = SkReport::default();
    let until = Instant::now() + duration;
    let mut seed = 1u64;
    while Instant::now() < until {
        seed += 1;
        let port = if seed.is_multiple_of(2) {
            IKE_PORT
        } else {
            NAT_T_PORT
        };
        let to = SocketAddr::new(bob.ip(), port);
        let socket = UdpSocket::bind((ATTACKER, port))?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut b = SkBomber::new(seed);
        let keyed = (|| -> anyhow::Result<bool> {
            let answer = exchange(&socket, to, &b.init_request(None))?;
            let Some(cookie) = b.on_init_response(&answer)? else {
                return Ok(true);
            };
            let answer = exchange(&socket, to, &b.init_request(Some(&cookie)))?;
            Ok(b.on_init_response(&answer)?.is_none())
        })();
        match keyed {
            Ok(true) => report.sas += 1,
            // A busy (or broken) bob: counted, and the flood goes on.
            Ok(false) | Err(_) => {
                report.unanswered += 1;
                continue;
            }
        }
        let marker = port == NAT_T_PORT;
        let stop = (Instant::now() + Duration::from_millis(500)).min(until);
        let mut i = 0usize;
        while Instant::now() < stop {
            let ike = b.auth_bomb(SK_BOMBS[i % SK_BOMBS.len()])?;
            let datagram = if marker {
                bombs::with_non_esp_marker(&ike)
            } else {
                ike
            };
            socket.send_to(&datagram, to)?;
            report.sent += 1;
            i += 1;
            thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(report)
}

#[test]
fn ike_bombs_leave_the_agent_s_memory_flat() {
    let net = quiet_testnet("bombs", AgentConfig::default());
    let (alice, bob) = (net.alice(), net.bob());
    let atk = attacker_ns(&net, bob, "bomber", ATTACKER, &format!("{SPOOFED}/24"));
    let bob_pid = field(&status(bob), "pid");
    let before = status(bob);

    // Idle: the peak over a quiet second, after a reset.
    thread::sleep(Duration::from_secs(1));
    reset_peak(bob_pid);
    thread::sleep(Duration::from_secs(1));
    let (idle_rss, idle_hwm) = rss_kib(bob_pid);
    let idle = idle_rss.max(idle_hwm);

    let datagrams = init_bombs(bob);
    let kinds = datagrams.len();
    let limits = Limits {
        duration: FLOOD,
        rate: Some(INIT_RATE),
        ..Limits::default()
    };
    let init_flood = atk
        .spawn_thread(move || flood::run(Kind::Replay(datagrams), limits, 7))
        .expect("flood thread");
    let bob_addr = SocketAddr::new(bob.ip(), IKE_PORT);
    let sk_flood = atk
        .spawn_thread(move || sk_bombs(bob_addr, FLOOD))
        .expect("SK bomber thread");
    let init: Report = init_flood
        .join()
        .expect("flood thread panicked")
        .expect("entering the attacker namespace")
        .expect("flood");
    let sk = sk_flood
        .join()
        .expect("SK bomber panicked")
        .expect("entering the attacker namespace")
        .unwrap_or_else(|e| panic!("SK bombs: {e:#}\nbob:\n{}", bob.log_tail(30)));
    // Let bob's control plane work through what is queued.
    thread::sleep(Duration::from_secs(1));
    let (rss, peak) = rss_kib(bob_pid);
    eprintln!(
        "IKE_SA_INIT bombs ({kinds} datagrams round-robin, 500 and 4500): {init}\n\
         SK bombs: {} IKE_AUTH requests over {} half-open SAs ({} IKE_SA_INIT unanswered)\n\
         bob: RSS idle {idle} KiB, peak {peak} KiB (+{} KiB), now {rss} KiB",
        sk.sent,
        sk.sas,
        sk.unanswered,
        peak.saturating_sub(idle),
    );
    assert!(
        peak <= idle + RSS_MARGIN_KIB,
        "bob's peak RSS went from {idle} KiB idle to {peak} KiB under the bombs (margin {RSS_MARGIN_KIB} KiB)"
    );
    let after = status(bob);
    let dropped = field(&after, "ike_dropped") - field(&before, "ike_dropped");
    eprintln!("bob: {dropped} IKE messages dropped");
    assert_eq!(
        bob.agent_pid().map(u64::from),
        Some(bob_pid),
        "bob's agent died"
    );
    assert!(init.sent > 1000, "the flood hardly ran: {init}");
    assert!(
        sk.sas > 0 && sk.sent > 100,
        "the SK bombs hardly ran: {sk:?}"
    );
    assert_eq!(sk.unanswered, 0, "bob left IKE_SA_INIT unanswered");
    // Six bombs in seven are refused by the parser (the seventh, one
    // proposal of 170 transforms, is legal and answered NO_PROPOSAL_CHOSEN).
    assert!(
        dropped >= (init.sent + sk.sent) / 2,
        "{dropped} IKE messages dropped of {} bombs sent",
        init.sent + sk.sent
    );
    // No bomb left state behind: at most the SK bomber's half-open SAs.
    assert!(
        field(&after, "half_open") <= u64::from(sk.sas),
        "{} half-open SAs, the SK bomber made {}",
        field(&after, "half_open"),
        sk.sas
    );

    // bob still answers, and a fresh handshake with alice completes.
    let echo = UdpEcho::start(bob, 7301);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"after the bombs", DECISION).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nalice:\n{}\nbob:\n{}",
            alice.log_tail(30),
            bob.log_tail(30)
        )
    });
    let p = alice
        .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
        .unwrap();
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
}

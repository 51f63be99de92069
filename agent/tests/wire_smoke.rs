//! The agent wired end to end in network namespaces on one switch:
//!
//! - `a` and `b` run `oemesh run` without host keys (anonymous OE), `c` runs
//!   nothing (the legacy host), `dns` answers NXDOMAIN to everything (a tiny
//!   responder in this file: no key is published anywhere).
//! - (a) A UDP datagram from `a` to `b` is held by a's agent, IKE with AUTH NULL
//!   runs, and the datagram arrives at `b` through ESP in UDP; `peers --json`
//!   on both sides says `private` / `anonymous`.
//! - (b) A datagram from `a` to `c` arrives in cleartext once IKE to `c` times
//!   out; a's `peers` says `clear` with the reason.
//!
//! Needs root, `ip` and `nft`.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use oemesh_testkit::netns::{Netns, Switch};
use oemesh_testkit::process::{self, Child, require_programs, require_root, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_oemesh");
const READY: Duration = Duration::from_secs(20);

/// Answers every DNS query with NXDOMAIN (RFC 1035 §4.1.1, RCODE 3) until dropped.
struct NxResponder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NxResponder {
    fn start(ns: &Netns, addr: SocketAddr) -> NxResponder {
        let socket = ns.bind_udp(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = nxdomain(&buf[..n]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        NxResponder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NxResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The NXDOMAIN reply to `query`: its ID, QR and RA set, RD kept, its question
/// copied, no records.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: a name (labels up to the root) then type and class.
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..i + 4)?;
    let mut reply = Vec::with_capacity(12 + question.len());
    reply.extend_from_slice(&query[..2]);
    reply.push(0x80 | (query[2] & 0x79)); // QR, opcode, RD
    reply.push(0x80 | 3); // RA, NXDOMAIN
    reply.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    Some(reply)
}

struct Host {
    ns: Netns,
    dir: PathBuf,
}

impl Host {
    fn socket(&self) -> PathBuf {
        self.dir.join("oemesh.sock")
    }

    fn start_agent(&self, address: &str) -> Child {
        let config = format!(
            r#"address = "{address}"
control_socket = "{sock}"
[dns]
servers = ["10.77.0.53"]
timeout = "1s"
[ike]
timeout = "2s"
[policy]
private-or-clear = ["10.77.0.0/24"]
clear = ["10.77.0.53/32"]
"#,
            sock = self.socket().display()
        );
        let path = self.dir.join("oemesh.toml");
        std::fs::write(&path, config).unwrap();
        let log = self.dir.join("agent.log");
        let mut child = self
            .ns
            .spawn(
                "oemesh run",
                &[
                    BIN,
                    "run",
                    "--config",
                    path.to_str().unwrap(),
                    "--log-level",
                    "debug",
                ],
                &log,
            )
            .unwrap();
        let sock = self.socket();
        let ready = wait_until("`oemesh status` to answer", READY, || {
            child.is_running() && oemesh(&["status", "--socket", sock.to_str().unwrap()]).0
        });
        if let Err(e) = ready {
            panic!("{e}; agent output:\n{}", child.output_tail(40));
        }
        child
    }

    fn peers(&self) -> serde_json::Value {
        let (ok, out, err) = oemesh(&[
            "peers",
            "--json",
            "--socket",
            self.socket().to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    fn log(&self) -> String {
        process::tail_of_file(&self.dir.join("agent.log"), 60)
    }
}

fn oemesh(args: &[&str]) -> (bool, String, String) {
    let out =
        process::run_unchecked(Command::new(BIN).args(args), Duration::from_secs(10)).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn peer<'a>(peers: &'a serde_json::Value, addr: &str) -> Option<&'a serde_json::Value> {
    peers.as_array()?.iter().find(|p| p["peer"] == addr)
}

/// Sends `payload` from `from` (inside `ns`) to `to` and waits for it on `rx`.
fn deliver(ns: &Netns, from: &str, to: SocketAddr, rx: &UdpSocket, payload: &[u8]) -> Duration {
    let tx = ns.bind_udp(format!("{from}:0").parse().unwrap()).unwrap();
    let started = std::time::Instant::now();
    tx.send_to(payload, to).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 2048];
    let (n, src) = rx
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("datagram to {to} did not arrive: {e}"));
    assert_eq!(&buf[..n], payload);
    assert_eq!(src.ip().to_string(), from);
    started.elapsed()
}

fn stop(child: &mut Child, log: &Path) {
    let status = child.stop().unwrap();
    assert!(
        status.success(),
        "agent exited with {status}:\n{}",
        process::tail_of_file(log, 40)
    );
}

#[test]
fn anonymous_oe_between_agents_and_clear_to_a_legacy_host() {
    require_root();
    require_programs(&["ip", "nft"]);
    let switch = Switch::new("wsw").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let host = |label: &str, cidr: &str| {
        let ns = Netns::new(label).unwrap();
        switch.attach(&ns, cidr).unwrap();
        let dir = tmp.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        Host { ns, dir }
    };
    let a = host("wa", "10.77.0.1/24");
    let b = host("wb", "10.77.0.2/24");
    let c = host("wc", "10.77.0.3/24");
    let dns = host("wdns", "10.77.0.53/24");
    let _responder = NxResponder::start(&dns.ns, "10.77.0.53:53".parse().unwrap());

    let mut agent_a = a.start_agent("10.77.0.1");
    let mut agent_b = b.start_agent("10.77.0.2");

    // (a) a → b: held, anonymous IKE, then encrypted.
    let to_b: SocketAddr = "10.77.0.2:9999".parse().unwrap();
    let rx_b = b.ns.bind_udp(to_b).unwrap();
    let took = deliver(&a.ns, "10.77.0.1", to_b, &rx_b, b"first packet, held");
    eprintln!("a -> b: first datagram arrived after {took:?}");
    let took = deliver(&a.ns, "10.77.0.1", to_b, &rx_b, b"second packet, private");
    assert!(took < Duration::from_secs(1), "{took:?}");

    let peers_a = a.peers();
    let pa = peer(&peers_a, "10.77.0.2").unwrap_or_else(|| panic!("{peers_a}\n{}", a.log()));
    assert_eq!(pa["state"], "private", "{peers_a}");
    assert_eq!(pa["auth"], "anonymous", "{peers_a}");
    assert!(pa["bytes_out"].as_u64().unwrap() > 0, "{peers_a}");
    let peers_b = b.peers();
    let pb = peer(&peers_b, "10.77.0.1").unwrap_or_else(|| panic!("{peers_b}\n{}", b.log()));
    assert_eq!(pb["state"], "private", "{peers_b}");
    assert_eq!(pb["auth"], "anonymous", "{peers_b}");
    assert!(pb["bytes_in"].as_u64().unwrap() > 0, "{peers_b}");

    // (b) a → c (no agent): IKE times out, the held datagram goes in clear.
    let to_c: SocketAddr = "10.77.0.3:9999".parse().unwrap();
    let rx_c = c.ns.bind_udp(to_c).unwrap();
    let took = deliver(&a.ns, "10.77.0.1", to_c, &rx_c, b"to the legacy host");
    eprintln!("a -> c: first datagram arrived after {took:?}");
    let took = deliver(&a.ns, "10.77.0.1", to_c, &rx_c, b"again, bypassed");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let peers_a = a.peers();
    let pc = peer(&peers_a, "10.77.0.3").unwrap_or_else(|| panic!("{peers_a}"));
    assert_eq!(pc["state"], "clear", "{peers_a}");
    assert_eq!(pc["auth"], serde_json::Value::Null, "{peers_a}");
    let reason = pc["reason"].as_str().unwrap();
    assert!(
        reason.contains("IKE") && reason.contains("clear"),
        "{reason}"
    );
    assert!(pc["expires_in_s"].as_u64().unwrap() > 0, "{peers_a}");

    let (ok, status, _) = oemesh(&["status", "--socket", a.socket().to_str().unwrap()]);
    assert!(ok);
    assert!(
        status.contains("1 private, 1 clear"),
        "{status}\n{}",
        a.peers()
    );

    stop(&mut agent_a, &a.dir.join("agent.log"));
    stop(&mut agent_b, &b.dir.join("agent.log"));
}

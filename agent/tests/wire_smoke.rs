//! The agent wired end to end in network namespaces on one switch:
//!
//! - `a` and `b` run `oemesh run`, `c` runs nothing (the legacy host), `dns`
//!   runs a tiny responder (in this file) that serves the IPSECKEY records it
//!   is given and NXDOMAIN for everything else.
//! - (a) Without host keys: a UDP datagram from `a` to `b` is held by a's
//!   agent, IKE with AUTH NULL runs, and the datagram arrives at `b` through
//!   ESP in UDP; `peers --json` on both sides says `private` / `anonymous`; `b`
//!   answers through its SA at once.
//! - (b) A datagram from `a` to `c` arrives in cleartext once IKE to `c` times
//!   out; a's `peers` says `clear` with the reason.
//! - With host keys published: `a` and `b` authenticate each other with
//!   Ed25519 (RFC 8420) and `peers` says `authenticated`; `check` shows the
//!   live lookup.
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

/// Answers DNS queries until dropped: IPSECKEY records for the names it holds,
/// NXDOMAIN (RFC 1035 §4.1.1, RCODE 3) for everything else.
struct NxResponder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NxResponder {
    fn start(ns: &Netns, addr: SocketAddr) -> NxResponder {
        NxResponder::serving(ns, addr, Vec::new())
    }

    /// `records`: (owner name, IPSECKEY RDATA).
    fn serving(ns: &Netns, addr: SocketAddr, records: Vec<(String, Vec<u8>)>) -> NxResponder {
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
                if let Some(reply) = answer(&buf[..n], &records) {
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

/// The reply to `query`: its ID, QR and RA set, RD kept, its question copied;
/// the IPSECKEY records held for its name, or NXDOMAIN.
fn answer(query: &[u8], records: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: a name (labels up to the root) then type and class.
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*query.get(i)?);
        let label = query.get(i + 1..i + 1 + len)?;
        name.push_str(&String::from_utf8_lossy(label).to_lowercase());
        name.push('.');
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    let name = name.trim_end_matches('.').to_owned() + ".";
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let found: Vec<&Vec<u8>> = records
        .iter()
        .filter(|(owner, _)| *owner == name)
        .map(|(_, rdata)| rdata)
        .collect();
    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[..2]);
    reply.push(0x80 | (query[2] & 0x79)); // QR, opcode, RD
    let ancount = if found.is_empty() {
        reply.push(0x80 | 3); // RA, NXDOMAIN
        0
    } else {
        reply.push(0x80); // RA, NOERROR (NODATA for other types)
        if qtype == 45 { found.len() } else { 0 }
    };
    reply.extend_from_slice(&[0, 1, 0, u8::try_from(ancount).ok()?, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if ancount > 0 {
        for rdata in found {
            // Name pointer to the question, IPSECKEY, IN, TTL 300.
            reply.extend_from_slice(&[0xc0, 12, 0, 45, 0, 1, 0, 0, 1, 0x2c]);
            reply.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
            reply.extend_from_slice(rdata);
        }
    }
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
        self.start_agent_with(address, "")
    }

    /// `first_lines` go at the top of the config (e.g. `key = "..."`).
    fn start_agent_with(&self, address: &str, first_lines: &str) -> Child {
        let config = format!(
            r#"{first_lines}
address = "{address}"
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
    // b answers through the SA it holds as responder: no decision, no delay.
    let to_a: SocketAddr = "10.77.0.1:9999".parse().unwrap();
    let rx_a = a.ns.bind_udp(to_a).unwrap();
    let took = deliver(&b.ns, "10.77.0.2", to_a, &rx_a, b"the answer");
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

/// The IPSECKEY RDATA `10 0 4 . <key>` (RFC 4025, RFC 9373).
fn ipseckey_rdata(public_key: [u8; 32]) -> Vec<u8> {
    use oemesh_core::ipseckey::{Gateway, Ipseckey};
    let mut rdata = Vec::new();
    Ipseckey::ed25519(10, Gateway::None, public_key).emit_wire(&mut rdata);
    rdata
}

#[test]
fn authenticated_oe_with_keys_from_dns() {
    use std::os::unix::fs::PermissionsExt;
    require_root();
    require_programs(&["ip", "nft"]);
    let switch = Switch::new("ksw").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let host = |label: &str, cidr: &str| {
        let ns = Netns::new(label).unwrap();
        switch.attach(&ns, cidr).unwrap();
        let dir = tmp.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        Host { ns, dir }
    };
    let a = host("ka", "10.77.0.1/24");
    let b = host("kb", "10.77.0.2/24");
    let dns = host("kdns", "10.77.0.53/24");
    let mut records = Vec::new();
    let mut key_line = |h: &Host, seed: u8, addr: &str| {
        let key = oemesh_core::hostkey::HostKey::from_seed(&[seed; 32]);
        let path = h.dir.join("host.key");
        std::fs::write(&path, key.to_pkcs8_pem().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let owner = oemesh_core::ipseckey::reverse_name(addr.parse().unwrap()).to_string();
        records.push((owner, ipseckey_rdata(key.public_key())));
        format!("key = \"{}\"", path.display())
    };
    let key_a = key_line(&a, 1, "10.77.0.1");
    let key_b = key_line(&b, 2, "10.77.0.2");
    let _responder = NxResponder::serving(&dns.ns, "10.77.0.53:53".parse().unwrap(), records);

    let mut agent_a = a.start_agent_with("10.77.0.1", &key_a);
    let mut agent_b = b.start_agent_with("10.77.0.2", &key_b);

    let to_b: SocketAddr = "10.77.0.2:9999".parse().unwrap();
    let rx_b = b.ns.bind_udp(to_b).unwrap();
    deliver(&a.ns, "10.77.0.1", to_b, &rx_b, b"signed and sealed");
    let to_a: SocketAddr = "10.77.0.1:9999".parse().unwrap();
    let rx_a = a.ns.bind_udp(to_a).unwrap();
    let took = deliver(&b.ns, "10.77.0.2", to_a, &rx_a, b"answer");
    assert!(took < Duration::from_secs(1), "{took:?}");

    for (h, other) in [(&a, "10.77.0.2"), (&b, "10.77.0.1")] {
        let peers = h.peers();
        let p = peer(&peers, other).unwrap_or_else(|| panic!("{peers}\n{}", h.log()));
        assert_eq!(p["state"], "private", "{peers}");
        assert_eq!(p["auth"], "authenticated", "{peers}\n{}", h.log());
    }
    let (ok, check, err) = oemesh(&[
        "check",
        "10.77.0.2",
        "--json",
        "--socket",
        a.socket().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(check["group"], "private-or-clear");
    assert_eq!(check["peer"]["state"], "private");
    assert!(
        check["ipseckey"]
            .as_str()
            .unwrap()
            .contains("1 IPSECKEY record"),
        "{check}"
    );
    let (ok, status, _) = oemesh(&["status", "--socket", a.socket().to_str().unwrap()]);
    assert!(ok && status.contains("authenticated, key "), "{status}");

    stop(&mut agent_a, &a.dir.join("agent.log"));
    stop(&mut agent_b, &b.dir.join("agent.log"));
}

//! What reloads, restarts and crashes cost a running flow, measured (issue
//! 18). Opt-in: it asserts nothing about time, it prints it.
//!
//! ```sh
//! sudo cargo test --release -p oemesh-agent --test operations_measure -- --ignored --nocapture
//! ```
//!
//! - `oemesh reload` of a policy that adds, then removes, 1,000 prefixes,
//!   while a flow runs (its SA must stay);
//! - a clean restart of bob's agent (SIGTERM, start) under a flow alice →
//!   bob every 10 ms, both `private` for each other: datagrams lost and the
//!   gap between the last echo before and the first after;
//! - a crash (SIGKILL, start): the same, recovered through the stale ESP
//!   (DPD at 300 s, so nothing else can explain it).
//!
//! Needs root, BIND 9 and nft (like `e2e.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use e2e_support::*;
use oemesh_testkit::topology::{AgentConfig, Host};

/// Sends a numbered datagram every 10 ms and records when each echo came.
struct Flow {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Instant>>>,
    echoed: Arc<Mutex<Vec<(u64, Instant)>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Flow {
    fn start(client: UdpSocket, to: SocketAddr) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let echoed = Arc::new(Mutex::new(Vec::new()));
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rx = client.try_clone().unwrap();
        let (s, t) = (stop.clone(), sent.clone());
        let sender = thread::spawn(move || {
            let mut n: u64 = 0;
            while !s.load(Ordering::Relaxed) {
                let _ = client.send_to(&n.to_be_bytes(), to);
                t.lock().unwrap().push(Instant::now());
                n += 1;
                thread::sleep(Duration::from_millis(10));
            }
        });
        let (s, e) = (stop.clone(), echoed.clone());
        let receiver = thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s.load(Ordering::Relaxed) {
                if let Ok((8, _)) = rx.recv_from(&mut buf) {
                    let n = u64::from_be_bytes(buf[..8].try_into().unwrap());
                    e.lock().unwrap().push((n, Instant::now()));
                }
            }
        });
        Flow {
            stop,
            sent,
            echoed,
            threads: vec![sender, receiver],
        }
    }

    fn echoes(&self) -> usize {
        self.echoed.lock().unwrap().len()
    }

    /// Waits until `more` further echoes came (bounded).
    fn wait_echoes(&self, more: usize) {
        let want = self.echoes() + more;
        let deadline = Instant::now() + DECISION;
        while self.echoes() < want {
            assert!(Instant::now() < deadline, "the flow did not come back");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// (sent, echoed, longest gap between consecutive echoes).
    fn finish(mut self) -> (usize, usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let sent = self.sent.lock().unwrap().len();
        let echoed = self.echoed.lock().unwrap();
        let gap = echoed
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default();
        (sent, echoed.len(), gap)
    }
}

fn config() -> AgentConfig {
    let mut c = AgentConfig {
        dpd_interval: Some("300s".into()),
        ..AgentConfig::default()
    };
    c.set_policy("private", &["192.0.2.10/32", "192.0.2.20/32"]);
    c
}

fn report(what: &str, (sent, echoed, gap): (usize, usize, Duration)) {
    println!(
        "{what}: {sent} sent, {echoed} echoed, {} lost, longest gap between echoes {:.0} ms",
        sent - echoed,
        gap.as_secs_f64() * 1e3
    );
}

fn reload_ms(host: &Host) -> f64 {
    let t = Instant::now();
    host.oemesh_cli(&["reload"]).unwrap();
    t.elapsed().as_secs_f64() * 1e3
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn what_reloads_restarts_and_crashes_cost_a_flow() {
    let cfg = config();
    let net = testnet("opsmeasure", cfg.clone());
    let (alice, bob) = (net.alice(), net.bob());
    let echo = UdpEcho::start(bob, 7501);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"warm", DECISION).unwrap();

    // Reload: 1,000 new prefixes, then gone again, under a flow.
    let flow = Flow::start(client.try_clone().unwrap(), echo.addr());
    flow.wait_echoes(50);
    let prefixes: Vec<String> = (0..1000)
        .map(|i| format!("198.18.{}.{}/32", i / 250, i % 250 + 1))
        .collect();
    let mut big = cfg.clone();
    let mut private: Vec<&str> = vec!["192.0.2.10/32", "192.0.2.20/32"];
    private.extend(prefixes.iter().map(String::as_str));
    big.set_policy("private", &private);
    alice.set_agent_config(&big).unwrap();
    let add = reload_ms(alice);
    alice.set_agent_config(&cfg).unwrap();
    let remove = reload_ms(alice);
    let unchanged = reload_ms(alice);
    flow.wait_echoes(50);
    println!(
        "reload: +1,000 prefixes {add:.0} ms, -1,000 prefixes {remove:.0} ms, nothing changed {unchanged:.0} ms (`oemesh reload` round trip)"
    );
    report("flow across the reloads", flow.finish());

    // A clean restart of bob's agent.
    let flow = Flow::start(client.try_clone().unwrap(), echo.addr());
    flow.wait_echoes(50);
    let t = Instant::now();
    bob.restart_agent().unwrap();
    let restart = t.elapsed();
    flow.wait_echoes(50);
    println!(
        "restart: stop + start of bob's agent took {:.0} ms",
        restart.as_secs_f64() * 1e3
    );
    report("flow across a clean restart", flow.finish());

    // A crash of bob's agent.
    let flow = Flow::start(client.try_clone().unwrap(), echo.addr());
    flow.wait_echoes(50);
    bob.kill_agent().unwrap();
    let t = Instant::now();
    bob.start_agent().unwrap();
    let start = t.elapsed();
    flow.wait_echoes(50);
    println!(
        "crash: SIGKILL, then a start of {:.0} ms",
        start.as_secs_f64() * 1e3
    );
    report(
        "flow across a crash (recovered by the stale ESP)",
        flow.finish(),
    );
}

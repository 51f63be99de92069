//! Latency and cost probes between namespaces, for the benchmark: ICMP and UDP
//! round trips, the cold first-packet probe, and a process's CPU time.
//!
//! Sockets are made inside the namespace ([`Netns::run`]) and used from the
//! calling thread; every wait has a deadline.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::netns::{IcmpEcho, Netns};

/// CPU time (user + system) process `pid` has used so far, all threads, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: count from its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/pid/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: field {}", i + 3))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// Where packets were dropped inside one namespace, as counters so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// `/proc/net/snmp` `Udp: RcvbufErrors` + `SndbufErrors`: UDP socket
    /// buffers full.
    pub udp_buffer: u64,
    /// The `dropped` counters (RX + TX) of every interface (`ip -s -j link`):
    /// e.g. a TUN whose reader did not keep up.
    pub link: u64,
}

impl Drops {
    /// The counters of namespace `ns` now.
    pub fn read(ns: &Netns) -> Result<Drops> {
        let snmp = ns.exec(&["cat", "/proc/net/snmp"], Duration::from_secs(5))?;
        let udp_buffer = parse_snmp_udp_buffer(&String::from_utf8_lossy(&snmp.stdout))?;
        let links = ns.ip(&["-s", "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&links).context("ip -s -j link JSON")?;
        let link = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        let d = |dir: &str| l["stats64"][dir]["dropped"].as_u64().unwrap_or(0);
                        d("rx") + d("tx")
                    })
                    .sum()
            })
            .unwrap_or(0);
        Ok(Drops { udp_buffer, link })
    }

    /// `self - earlier`, counter by counter (saturating).
    pub fn since(self, earlier: Drops) -> Drops {
        Drops {
            udp_buffer: self.udp_buffer.saturating_sub(earlier.udp_buffer),
            link: self.link.saturating_sub(earlier.link),
        }
    }
}

/// `RcvbufErrors + SndbufErrors` from the `Udp:` lines of `/proc/net/snmp`.
fn parse_snmp_udp_buffer(text: &str) -> Result<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = lines
        .next()
        .zip(lines.next())
        .context("no Udp: lines in /proc/net/snmp")?;
    let sum = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| matches!(*n, "RcvbufErrors" | "SndbufErrors"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    Ok(sum)
}

/// `getconf CLK_TCK`, 100 if that fails.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `n` ICMP echo round trips from `src` to `dst` inside `ns`, one after the
/// other; each must be answered within `timeout`.
pub fn icmp_rtts(
    ns: &Netns,
    src: IpAddr,
    dst: IpAddr,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Duration>> {
    ns.run(move || -> Result<Vec<Duration>> {
        let ident = u16::try_from(std::process::id() & 0xffff).unwrap_or(0) ^ 0x5a5a;
        let mut echo = IcmpEcho::new(src, dst, ident)?;
        (0..n)
            .map(|seq| {
                let seq = u16::try_from(seq & 0xffff).unwrap_or(0);
                echo.round_trip(seq, &[0x42; 56], timeout)
                    .with_context(|| format!("{src} -> {dst}"))
            })
            .collect()
    })?
}

/// A UDP echo server on a thread inside a namespace; stops (and is joined)
/// on drop.
#[derive(Debug)]
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
    addr: SocketAddr,
}

impl UdpEcho {
    /// Binds `addr` in `ns` and echoes every datagram back to its sender.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<UdpEcho> {
        let socket = ns.bind_udp(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("udp echo".into())
            .spawn(move || -> Result<()> {
                let mut buf = [0u8; 2048];
                while !flag.load(Ordering::Relaxed) {
                    match socket.recv_from(&mut buf) {
                        Ok((len, from)) => {
                            socket.send_to(&buf[..len], from)?;
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            })
            .context("spawning the UDP echo thread")?;
        Ok(UdpEcho {
            stop,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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

/// `n` UDP round trips (64-byte datagrams) from a socket bound to `src` in
/// `ns` to an echo server at `dst`; each must come back within `timeout`.
pub fn udp_rtts(
    ns: &Netns,
    src: IpAddr,
    dst: SocketAddr,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Duration>> {
    let socket = ns.bind_udp(SocketAddr::new(src, 0))?;
    socket.connect(dst)?;
    let mut rtts = Vec::with_capacity(n);
    let mut buf = [0u8; 2048];
    for seq in 0..n as u64 {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&seq.to_be_bytes());
        let start = Instant::now();
        socket.send(&msg)?;
        let deadline = start + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("UDP echo {seq} to {dst}: no reply within {timeout:?}");
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                Ok(len) if len >= 8 && buf[..8] == seq.to_be_bytes() => {
                    rtts.push(start.elapsed());
                    break;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // An ICMP error (e.g. port unreachable) surfaces as ECONNREFUSED.
                Err(e) => return Err(anyhow!(e).context(format!("UDP echo to {dst}"))),
            }
        }
    }
    Ok(rtts)
}

/// What the cold first-packet probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdProbe {
    /// From sending datagram 0 to the arrival of the first datagram that
    /// arrived at all (datagram 0 itself when nothing was dropped).
    pub first_arrival: Duration,
    /// The sequence number of that first arrival.
    pub first_seq: u64,
    /// From sending datagram 0 to its own arrival; `None` when it was lost.
    pub zero_arrival: Option<Duration>,
    /// Datagrams sent in the probe.
    pub sent: u64,
    /// Datagrams sent that never arrived.
    pub lost: u64,
    /// Datagrams that arrived out of order (a later one before an earlier one).
    pub reordered: u64,
}

/// The cold first-packet probe: a receiver on `dst` in `rx_ns`, a sender bound
/// to `src` in `tx_ns` that sends a numbered datagram every `interval` until
/// the first one arrives (at most for `timeout`), then `tail` more, and waits
/// 500 ms for stragglers. Times are taken with one monotonic clock in this
/// process, so "arrival" is when the receiving socket's thread read it.
///
/// `trigger`, if given, runs on its own thread right after datagram 0 is sent
/// (e.g. `swanctl --initiate` standing in for an acquire the data plane
/// cannot raise); its error fails the probe.
#[allow(clippy::too_many_arguments)]
pub fn cold_probe(
    tx_ns: &Netns,
    src: IpAddr,
    rx_ns: &Netns,
    dst: SocketAddr,
    interval: Duration,
    timeout: Duration,
    tail: u64,
    trigger: Option<&(dyn Fn() -> Result<()> + Sync)>,
) -> Result<ColdProbe> {
    let rx = rx_ns.bind_udp(dst)?;
    rx.set_read_timeout(Some(Duration::from_millis(20)))?;
    let tx = tx_ns.bind_udp(SocketAddr::new(src, 0))?;
    let arrived = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (arrived_w, done_r) = (arrived.clone(), done.clone());
    let receiver = std::thread::Builder::new()
        .name("cold probe rx".into())
        .spawn(move || -> Result<Vec<(u64, Instant)>> {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !done_r.load(Ordering::Relaxed) {
                match rx.recv(&mut buf) {
                    Ok(len) if len >= 8 => {
                        let now = Instant::now();
                        let mut seq = [0u8; 8];
                        seq.copy_from_slice(&buf[..8]);
                        got.push((u64::from_be_bytes(seq), now));
                        arrived_w.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(got)
        })
        .context("spawning the probe receiver")?;
    let first_sent = AtomicBool::new(false);
    let (result, triggered) = std::thread::scope(|scope| {
        let triggered = trigger.map(|f| {
            let first_sent = &first_sent;
            scope.spawn(move || {
                while !first_sent.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                f()
            })
        });
        let result = send_probe(&tx, dst, interval, timeout, tail, &arrived, &first_sent);
        first_sent.store(true, Ordering::Release);
        let triggered = triggered.map(|t| t.join().map_err(|_| anyhow!("probe trigger panicked")));
        (result, triggered)
    });
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let got = receiver
        .join()
        .map_err(|_| anyhow!("probe receiver panicked"))??;
    let sends = result?;
    if let Some(t) = triggered {
        t?.context("cold probe trigger")?;
    }
    summarise(&sends, &got).with_context(|| {
        format!(
            "cold probe {src} -> {dst}: nothing arrived within {timeout:?} ({} datagrams sent)",
            sends.len()
        )
    })
}

/// Sends datagrams 0, 1, … until `arrived` (or `timeout`), then `tail` more.
fn send_probe(
    tx: &UdpSocket,
    dst: SocketAddr,
    interval: Duration,
    timeout: Duration,
    tail: u64,
    arrived: &AtomicBool,
    first_sent: &AtomicBool,
) -> Result<Vec<Instant>> {
    let start = Instant::now();
    let mut sends = Vec::new();
    let mut extra = None;
    loop {
        let seq = sends.len() as u64;
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&seq.to_be_bytes());
        sends.push(Instant::now());
        // Errors (e.g. EPERM while a route is being replaced) count as loss.
        let _ = tx.send_to(&msg, dst);
        first_sent.store(true, Ordering::Release);
        if extra.is_none() && arrived.load(Ordering::Relaxed) {
            extra = Some(seq + tail);
        }
        if extra.is_some_and(|last| seq >= last) || start.elapsed() > timeout {
            return Ok(sends);
        }
        let next = start + interval * u32::try_from(sends.len()).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn summarise(sends: &[Instant], got: &[(u64, Instant)]) -> Result<ColdProbe> {
    let &(first_seq, first_at) = got.first().ok_or_else(|| anyhow!("no arrival"))?;
    let t0 = *sends.first().ok_or_else(|| anyhow!("nothing sent"))?;
    let mut seen = BTreeMap::new();
    let mut reordered = 0;
    let mut highest = None;
    for &(seq, _) in got {
        if highest.is_some_and(|h| seq < h) {
            reordered += 1;
        }
        highest = highest.max(Some(seq));
        seen.insert(seq, ());
    }
    let sent = sends.len() as u64;
    let lost = (0..sent).filter(|s| !seen.contains_key(s)).count() as u64;
    let zero_arrival = got
        .iter()
        .find(|(seq, _)| *seq == 0)
        .map(|(_, at)| at.saturating_duration_since(t0));
    Ok(ColdProbe {
        zero_arrival,
        first_arrival: first_at.saturating_duration_since(t0),
        first_seq,
        sent,
        lost,
        reordered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_reads() {
        let t = cpu_time(std::process::id()).unwrap();
        assert!(t < Duration::from_secs(3600));
    }

    #[test]
    fn summary_counts_loss_and_order() {
        let t0 = Instant::now();
        let sends: Vec<Instant> = (0..5).map(|i| t0 + Duration::from_millis(i * 10)).collect();
        let got = vec![
            (2, t0 + Duration::from_millis(35)),
            (4, t0 + Duration::from_millis(45)),
            (3, t0 + Duration::from_millis(46)),
        ];
        let p = summarise(&sends, &got).unwrap();
        assert_eq!(p.first_seq, 2);
        assert_eq!(p.first_arrival, Duration::from_millis(35));
        assert_eq!(p.lost, 2);
        assert_eq!(p.reordered, 1);
        assert_eq!(p.sent, 5);
        assert_eq!(p.zero_arrival, None);
    }

    #[test]
    fn snmp_udp_buffer_errors_parse() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            Udp: 10 0 7 12 5 2 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            UdpLite: 0 0 0 0 9 9 0\n";
        assert_eq!(parse_snmp_udp_buffer(text).unwrap(), 7);
    }
}

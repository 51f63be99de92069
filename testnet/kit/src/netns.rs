//! Network namespaces for tests: created per test, joined by veth pairs or a
//! bridge "switch", deleted on drop (also when the test panics).
//!
//! Names are `oet-<pid>-<n>-<label>`, so [`cleanup_stale`] can remove what a
//! crashed run left behind (the PID in the name is dead). Commands run inside
//! with `ip netns exec`; Rust code runs inside on a thread that has called
//! setns(2) ([`Netns::run`], [`Netns::spawn_thread`]), and sockets made there stay
//! in the namespace after the thread ends ([`Netns::bind_udp`]).
//!
//! Addresses: use 192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32 or 10.0.0.0/8 —
//! they exist only inside the namespaces a test creates.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use oemesh_core::wire::Ipv4Packet;
use rustix::process::Signal;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::process::{self, Child};

/// Prefix of every namespace this crate creates.
pub const PREFIX: &str = "oet-";

/// Bound on every `ip` invocation.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

static COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_SWEEP: Once = Once::new();

/// A network namespace owned by the test; deleted (and any process left in it
/// killed) on drop. A process spawned with `ip netns exec` that has not entered
/// the namespace yet at that moment is not found: stop children explicitly
/// ([`Child`] does so on drop) rather than relying on this sweep.
#[derive(Debug)]
pub struct Netns {
    name: String,
    next_if: AtomicU32,
}

impl Netns {
    /// Creates `oet-<pid>-<n>-<label>` with loopback up.
    ///
    /// The first call in a process also removes stale `oet-*` namespaces of
    /// dead processes ([`cleanup_stale`]).
    pub fn new(label: &str) -> Result<Netns> {
        STALE_SWEEP.call_once(|| {
            if let Err(e) = cleanup_stale() {
                eprintln!("oemesh-testkit: cleaning stale namespaces: {e:#}");
            }
        });
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(24)
            .collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{label}", std::process::id());
        ip(&["netns", "add", &name]).with_context(|| format!("creating namespace {name}"))?;
        let ns = Netns {
            name,
            next_if: AtomicU32::new(0),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the file setns(2) opens.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>` (bounded), returning stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A [`Command`] that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `argv` inside the namespace to completion within `timeout`; fails on
    /// a non-zero exit with the output in the message.
    pub fn exec(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        let (program, args) = argv.split_first().context("empty argv")?;
        process::run(self.command(program).args(args), timeout)
    }

    /// Spawns `argv` inside the namespace as a [`Child`] (stopped by PID on drop),
    /// with its output going to `output`.
    pub fn spawn(&self, name: &str, argv: &[&str], output: &Path) -> Result<Child> {
        let (program, args) = argv.split_first().context("empty argv")?;
        let mut cmd = self.command(program);
        cmd.args(args);
        Child::spawn(name, cmd, output)
    }

    /// Adds `cidr` (e.g. `192.0.2.1/24`, `2001:db8::1/64`) to `dev`. IPv6
    /// addresses skip duplicate address detection so they are usable at once.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args)
            .with_context(|| format!("{}: adding {cidr} to {dev}", self.name))?;
        Ok(())
    }

    /// Runs `f` on a thread that has entered this namespace and returns its
    /// result. A panic in `f` is resumed in the caller.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = self.open()?;
        thread::scope(|s| {
            let handle = thread::Builder::new()
                .name(format!("in {}", self.name))
                .spawn_scoped(s, move || -> Result<T> {
                    enter(&file)?;
                    Ok(f())
                })
                .context("spawning namespace thread")?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Spawns a long-lived thread inside this namespace (e.g. a UDP echo server).
    /// The caller joins it; bound its work with socket timeouts.
    pub fn spawn_thread<F, T>(&self, f: F) -> Result<JoinHandle<Result<T>>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.open()?;
        thread::Builder::new()
            .name(format!("in {}", self.name))
            .spawn(move || -> Result<T> {
                enter(&file)?;
                Ok(f())
            })
            .context("spawning namespace thread")
    }

    /// A UDP socket bound to `addr` inside this namespace. It can be used from
    /// any thread (or handed to tokio): a socket stays in the namespace it was
    /// created in.
    pub fn bind_udp(&self, addr: SocketAddr) -> Result<UdpSocket> {
        self.run(|| UdpSocket::bind(addr))?
            .with_context(|| format!("{}: binding UDP {addr}", self.name))
    }

    /// A TCP listener bound to `addr` inside this namespace.
    pub fn bind_tcp(&self, addr: SocketAddr) -> Result<TcpListener> {
        self.run(|| TcpListener::bind(addr))?
            .with_context(|| format!("{}: binding TCP {addr}", self.name))
    }

    /// Sends one ICMP/ICMPv6 echo request from `src` to `dst` and waits up to
    /// `timeout` for the reply (a raw socket, so no `ping` binary is needed).
    pub fn ping(&self, src: IpAddr, dst: IpAddr, timeout: Duration) -> Result<()> {
        self.run(|| ping(src, dst, timeout))?
            .with_context(|| format!("{}: ping {src} -> {dst}", self.name))
    }

    /// The next free interface name in this namespace (`eth0`, `eth1`, …).
    fn next_ifname(&self) -> String {
        format!("eth{}", self.next_if.fetch_add(1, Ordering::Relaxed))
    }

    fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("opening {}", self.path().display()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = delete(&self.name) {
            eprintln!("oemesh-testkit: deleting namespace {}: {e:#}", self.name);
        }
    }
}

fn enter(file: &File) -> Result<()> {
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .context("setns(CLONE_NEWNET)")
}

/// Joins `a` and `b` with a veth pair, puts `a_cidr`/`b_cidr` on the two ends and
/// brings them up. Returns the interface names (in `a`, in `b`).
pub fn veth(a: &Netns, a_cidr: &str, b: &Netns, b_cidr: &str) -> Result<(String, String)> {
    let (a_if, b_if) = (a.next_ifname(), b.next_ifname());
    a.ip(&[
        "link", "add", &a_if, "type", "veth", "peer", "name", &b_if, "netns", &b.name,
    ])
    .with_context(|| format!("veth {}:{a_if} <-> {}:{b_if}", a.name, b.name))?;
    a.add_addr(&a_if, a_cidr)?;
    b.add_addr(&b_if, b_cidr)?;
    a.ip(&["link", "set", &a_if, "up"])?;
    b.ip(&["link", "set", &b_if, "up"])?;
    Ok((a_if, b_if))
}

/// A namespace holding a Linux bridge: an Ethernet switch for N hosts.
#[derive(Debug)]
pub struct Switch {
    ns: Netns,
    ports: AtomicU32,
}

impl Switch {
    /// Creates the switch namespace with bridge `br0`.
    pub fn new(label: &str) -> Result<Switch> {
        let ns = Netns::new(label)?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Switch {
            ns,
            ports: AtomicU32::new(0),
        })
    }

    /// The switch's namespace (e.g. to run a capture on `br0`).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `host` into the switch with address `cidr`; returns the interface
    /// name inside `host`.
    pub fn attach(&self, host: &Netns, cidr: &str) -> Result<String> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        let host_if = host.next_ifname();
        self.ns
            .ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", &host_if, "netns", &host.name,
            ])
            .with_context(|| format!("switch port {port} -> {}:{host_if}", host.name))?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
        self.ns.ip(&["link", "set", &port, "up"])?;
        host.add_addr(&host_if, cidr)?;
        host.ip(&["link", "set", &host_if, "up"])?;
        Ok(host_if)
    }
}

/// Deletes `oet-<pid>-…` namespaces whose PID is no longer running (left by a
/// crashed or killed test run), killing any process still inside them.
/// Namespaces of a kept testnet ([`crate::topology::Kept`]) are left to
/// `testnet/demo --down`. Returns the names removed.
pub fn cleanup_stale() -> Result<Vec<String>> {
    cleanup_stale_where(|_| true)
}

/// [`cleanup_stale`] for the stale namespaces whose name passes `select`.
pub fn cleanup_stale_where(select: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let list = ip(&["netns", "list"])?;
    let kept = crate::topology::Kept::recorded_namespaces();
    let mut removed = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id()
            || process::pid_alive(pid)
            || kept.contains(name)
            || !select(name)
        {
            continue;
        }
        // Another test process may be sweeping the same names right now.
        match delete(name) {
            Ok(()) => removed.push(name.to_owned()),
            Err(e) if !Path::new("/run/netns").join(name).exists() => drop(e),
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Kills what still runs in namespace `name`, then deletes it.
pub(crate) fn delete(name: &str) -> Result<()> {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        let me = std::process::id();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            if pid != me {
                process::kill_pid(pid, Signal::KILL)?;
            }
        }
    }
    ip(&["netns", "del", name])?;
    Ok(())
}

/// Runs `ip <args>` (bounded), returning stdout.
fn ip(args: &[&str]) -> Result<String> {
    let out = process::run(Command::new("ip").args(args), IP_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One ICMP echo over a raw socket, in the calling thread's namespace.
fn ping(src: IpAddr, dst: IpAddr, timeout: Duration) -> Result<()> {
    let mut echo = IcmpEcho::new(
        src,
        dst,
        u16::try_from(std::process::id() & 0xffff).unwrap_or(0),
    )?;
    let seq = u16::try_from(COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff).unwrap_or(0);
    echo.round_trip(seq, b"oemesh-testkit ping", timeout)
        .map(|_| ())
        .map_err(|e| anyhow!("{e:#}: no echo reply within {timeout:?}"))
}

/// ICMP/ICMPv6 echo requests from `src` to `dst` on a raw socket bound in the
/// calling thread's namespace (no `ping` binary needed); shared by
/// [`Netns::ping`] and the benchmark's round-trip probe.
pub(crate) struct IcmpEcho {
    socket: Socket,
    to: SockAddr,
    v6: bool,
    ident: u16,
    buf: Box<[u8; 2048]>,
}

impl IcmpEcho {
    /// A raw socket bound to `src`; replies are matched on `ident` and sequence.
    pub(crate) fn new(src: IpAddr, dst: IpAddr, ident: u16) -> Result<IcmpEcho> {
        let v6 = dst.is_ipv6();
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let socket = Socket::new(domain, Type::RAW, Some(proto)).context("raw ICMP socket")?;
        socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        Ok(IcmpEcho {
            socket,
            to: SockAddr::from(SocketAddr::new(dst, 0)),
            v6,
            ident,
            buf: Box::new([0; 2048]),
        })
    }

    /// Sends echo request `seq` carrying `payload` and waits up to `timeout`
    /// for its reply; returns the round-trip time.
    pub(crate) fn round_trip(
        &mut self,
        seq: u16,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Duration> {
        let (request_type, reply_type) = if self.v6 { (128u8, 129u8) } else { (8u8, 0u8) };
        let mut msg = vec![request_type, 0, 0, 0];
        msg.extend_from_slice(&self.ident.to_be_bytes());
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend_from_slice(payload);
        if !self.v6 {
            // ICMPv6 checksums are filled in by the kernel on raw sockets.
            let sum = oemesh_core::wire::checksum(&msg);
            msg[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let start = Instant::now();
        self.socket.send_to(&msg, &self.to)?;
        let deadline = start + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("ICMP echo {seq}: no reply within {timeout:?}");
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = match self.socket.read(&mut self.buf[..]) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => return Err(anyhow!(e).context("reading ICMP")),
            };
            // IPv4 raw sockets deliver the IP header; IPv6 ones do not.
            let icmp = if self.v6 {
                &self.buf[..n]
            } else {
                Ipv4Packet::new_checked(&self.buf[..n]).map_or(&[][..], Ipv4Packet::into_payload)
            };
            if icmp.len() >= 8
                && icmp[0] == reply_type
                && icmp[4..6] == self.ident.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                return Ok(start.elapsed());
            }
        }
    }
}

//! The demo's traffic, in whatever network namespace the calling thread is in:
//! ICMP echo over a raw socket, a UDP exchange and a TCP transfer, each carrying
//! a marker string so the sniffer can tell whether the payload crossed the wire
//! in the clear. Servers echo what they get. Every wait is bounded and gives up
//! early when [`crate::interrupted`] says so.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use oemesh_core::wire::{Ipv4Packet, checksum};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::interrupted;

/// The UDP echo port on every server host.
pub(crate) const UDP_PORT: u16 = 7001;
/// The TCP echo port on every server host.
pub(crate) const TCP_PORT: u16 = 7002;
/// How often blocking calls wake up to look at the interrupt flag.
const TICK: Duration = Duration::from_millis(200);

/// `len` bytes made of `marker` repeated.
pub(crate) fn marked(marker: &str, len: usize) -> Vec<u8> {
    marker.bytes().cycle().take(len.max(marker.len())).collect()
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// UDP and TCP echo servers on one address; stopped when dropped.
#[derive(Debug)]
pub(crate) struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    /// Binds UDP [`UDP_PORT`] and TCP [`TCP_PORT`] on `ip` (in the calling
    /// thread's namespace) and serves them on background threads.
    pub(crate) fn start(ip: IpAddr) -> Result<EchoServers> {
        let udp = UdpSocket::bind(SocketAddr::new(ip, UDP_PORT))
            .with_context(|| format!("binding UDP {ip}:{UDP_PORT}"))?;
        let tcp = TcpListener::bind(SocketAddr::new(ip, TCP_PORT))
            .with_context(|| format!("binding TCP {ip}:{TCP_PORT}"))?;
        Self::serve(udp, tcp)
    }

    /// Serves already bound sockets.
    pub(crate) fn serve(udp: UdpSocket, tcp: TcpListener) -> Result<EchoServers> {
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(TICK))?;
        tcp.set_nonblocking(true)?;
        let s = stop.clone();
        let udp_thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
            }
        });
        let s = stop.clone();
        let tcp_thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        thread::spawn(move || {
                            let _ = echo_connection(conn, &s);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(EchoServers {
            stop,
            threads: vec![udp_thread, tcp_thread],
        })
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Reads a connection to EOF, then sends it all back.
fn echo_connection(mut conn: TcpStream, stop: &AtomicBool) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(TICK))?;
    let mut data = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            bail!("stopped");
        }
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.write_all(&data)?;
    Ok(())
}

/// Sends ICMP echo requests carrying `marker` from `src` to `dst`, one per
/// second, until one is answered or `timeout` passes; then `extra` more (each
/// must be answered within a second). Returns the time to the first reply.
pub(crate) fn ping(
    src: IpAddr,
    dst: IpAddr,
    marker: &str,
    extra: u16,
    timeout: Duration,
) -> Result<Duration> {
    static SEQ: AtomicU16 = AtomicU16::new(1);
    let pinger = Pinger::new(src, dst, marker)?;
    let start = Instant::now();
    let first = loop {
        check_interrupt()?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let slot = Duration::from_secs(1).min(timeout.saturating_sub(start.elapsed()));
        if pinger.echo(seq, slot)? {
            break start.elapsed();
        }
        if start.elapsed() >= timeout {
            bail!("no ICMP echo reply from {dst} within {timeout:?}");
        }
    };
    for _ in 0..extra {
        check_interrupt()?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        if !pinger.echo(seq, Duration::from_secs(1))? {
            bail!("ICMP echo {seq} to {dst} went unanswered");
        }
    }
    Ok(first)
}

/// A raw ICMPv4 socket (no `ping` binary needed).
struct Pinger {
    socket: Socket,
    dst: IpAddr,
    ident: u16,
    payload: Vec<u8>,
}

impl Pinger {
    fn new(src: IpAddr, dst: IpAddr, marker: &str) -> Result<Pinger> {
        let (IpAddr::V4(_), IpAddr::V4(_)) = (src, dst) else {
            bail!("ping: IPv4 only");
        };
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            .context("raw ICMP socket (needs root or CAP_NET_RAW)")?;
        socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        Ok(Pinger {
            socket,
            dst,
            ident: u16::try_from(std::process::id() & 0xffff).unwrap_or(0),
            payload: marked(marker, 56),
        })
    }

    /// One echo request; whether its reply came within `wait`.
    fn echo(&self, seq: u16, wait: Duration) -> Result<bool> {
        let mut msg = vec![8u8, 0, 0, 0];
        msg.extend_from_slice(&self.ident.to_be_bytes());
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend_from_slice(&self.payload);
        let sum = checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        self.socket
            .send_to(&msg, &SockAddr::from(SocketAddr::new(self.dst, 0)))?;
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1600];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.socket.set_read_timeout(Some(left.min(TICK)))?;
            let n = match (&self.socket).read(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    check_interrupt()?;
                    continue;
                }
                Err(e) => return Err(anyhow!(e).context("reading ICMP")),
            };
            // Raw IPv4 sockets deliver the IP header too.
            let icmp = Ipv4Packet::new_checked(&buf[..n]).map_or(&[][..], Ipv4Packet::into_payload);
            if icmp.len() >= 8
                && icmp[0] == 0
                && icmp[4..6] == self.ident.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                return Ok(true);
            }
        }
    }
}

/// Sends `count` datagrams of `payload` from `src` to `dst`'s UDP echo server,
/// each resent every 500 ms until echoed, all within `timeout`.
pub(crate) fn udp_exchange(
    src: IpAddr,
    dst: IpAddr,
    payload: &[u8],
    count: usize,
    timeout: Duration,
) -> Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(src, 0)).context("binding the UDP client")?;
    let to = SocketAddr::new(dst, UDP_PORT);
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    for i in 0..count {
        'resend: loop {
            check_interrupt()?;
            if Instant::now() >= deadline {
                bail!("UDP datagram {i} to {to}: no echo within {timeout:?}");
            }
            socket.send_to(payload, to)?;
            let slot = Instant::now() + Duration::from_millis(500);
            while Instant::now() < slot.min(deadline) {
                socket.set_read_timeout(Some(TICK))?;
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) if buf[..n] == *payload => break 'resend,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        check_interrupt()?;
                    }
                    Err(e) => return Err(e).context("UDP recv"),
                }
            }
        }
    }
    Ok(())
}

/// Connects from `src` to `dst`'s TCP echo server, sends `payload`,
/// half-closes and checks the echo, within `timeout`. Returns the time taken.
pub(crate) fn tcp_exchange(
    src: IpAddr,
    dst: IpAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let to = SocketAddr::new(dst, TCP_PORT);
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    socket
        .connect_timeout(&SockAddr::from(to), timeout)
        .with_context(|| format!("TCP connect to {to}"))?;
    let mut stream: TcpStream = socket.into();
    stream.set_write_timeout(Some(TICK))?;
    stream.set_read_timeout(Some(TICK))?;
    let deadline = start + timeout;
    let mut sent = 0;
    while sent < payload.len() {
        check_interrupt()?;
        if Instant::now() >= deadline {
            bail!(
                "TCP to {to}: sent {sent} of {} bytes in {timeout:?}",
                payload.len()
            );
        }
        match stream.write(&payload[sent..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("TCP write"),
        }
    }
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::with_capacity(payload.len());
    let mut buf = vec![0u8; 65536];
    loop {
        check_interrupt()?;
        if Instant::now() >= deadline {
            bail!(
                "TCP from {to}: {} of {} bytes echoed in {timeout:?}",
                back.len(),
                payload.len()
            );
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("TCP read"),
        }
    }
    if back != payload {
        bail!(
            "TCP echo from {to} differs: {} bytes back, {} sent",
            back.len(),
            payload.len()
        );
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_repeat() {
        let p = marked("ab", 5);
        assert_eq!(p, b"ababa");
        assert!(contains(&p, b"bab"));
        assert!(!contains(&p, b""));
    }
}

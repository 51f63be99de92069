//! UDP sockets for IKE (500) and ESP in UDP / NAT-T (4500), marked with
//! SO_MARK so their packets bypass our routing table, with batched I/O through
//! quinn-udp: recvmmsg and GRO in, sendmmsg and GSO out, IP_PKTINFO so replies
//! leave from the address the request came to. Buffers are reused; nothing is
//! allocated per datagram.
//!
//! Sockets are dual-stack (`[::]:port`) where IPv6 exists, IPv4-only otherwise;
//! addresses are handed out in canonical form (IPv4 as IPv4, not v4-mapped).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Largest buffer for one GRO-coalesced receive.
const MAX_GRO_BUF: usize = 64 * 1024;

/// A marked, batched UDP socket.
#[derive(Debug)]
pub struct UdpEndpoint {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    dual_stack: bool,
    port: u16,
}

impl UdpEndpoint {
    /// Binds `port` on all addresses (dual-stack if possible) with `fwmark`.
    /// Must be called inside a tokio runtime.
    pub fn bind(port: u16, fwmark: u32) -> io::Result<UdpEndpoint> {
        let (sock, dual_stack) = match make_socket(Domain::IPV6, port, fwmark) {
            Ok(s) => (s, true),
            Err(e) => {
                tracing::debug!("UDP {port}: no IPv6 socket ({e}); IPv4 only");
                (make_socket(Domain::IPV4, port, fwmark)?, false)
            }
        };
        let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
        let socket = tokio::net::UdpSocket::from_std(sock.into())?;
        Ok(UdpEndpoint {
            socket,
            state,
            dual_stack,
            port,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many datagrams one send may carry with GSO (1 without).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// A receive batch sized for this socket's GRO.
    pub fn recv_batch(&self) -> RecvBatch {
        RecvBatch::new(self.state.gro_segments())
    }

    /// Waits for datagrams and fills `batch`; returns how many buffers were
    /// filled (each may hold several datagrams; iterate with [`RecvBatch::datagrams`]).
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            self.socket.readable().await?;
            let n = batch.bufs.len().min(BATCH_SIZE);
            let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(&mut []));
            for (slice, buf) in slices.iter_mut().zip(batch.bufs.iter_mut()) {
                *slice = IoSliceMut::new(buf);
            }
            let result = self.socket.try_io(Interest::READABLE, || {
                self.state.recv(
                    UdpSockRef::from(&self.socket),
                    &mut slices[..n],
                    &mut batch.meta[..n],
                )
            });
            match result {
                Ok(count) => {
                    batch.count = count;
                    return Ok(count);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `contents` to `to` from `from` (when given; the address a peer
    /// talked to). With `segment_size`, `contents` is several datagrams of that
    /// size (GSO), at most [`UdpEndpoint::max_gso_segments`].
    pub async fn send(
        &self,
        to: SocketAddr,
        from: Option<IpAddr>,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: self.outgoing(to),
            ecn: None,
            contents,
            segment_size,
            src_ip: from.map(|ip| self.outgoing(SocketAddr::new(ip, 0)).ip()),
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state
                    .try_send(UdpSockRef::from(&self.socket), &transmit)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn outgoing(&self, addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }
}

fn make_socket(domain: Domain, port: u16, fwmark: u32) -> io::Result<Socket> {
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_mark(fwmark)?;
    let addr: SocketAddr = if domain == Domain::IPV6 {
        sock.set_only_v6(false)?;
        (Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, port).into()
    };
    sock.set_nonblocking(true)?;
    size_buffers(&sock);
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Socket buffers for bursts: one GRO/GSO batch of ESP is dozens of datagrams,
/// and the kernel default (`net.core.rmem_default`, 208 KiB here) dropped
/// thousands per second under one TCP stream (`testnet/bench`). The FORCE
/// options pass `rmem_max` with CAP_NET_ADMIN, which the agent has; without it
/// the plain options get what the sysctl allows.
const SOCKET_BUFFER: usize = 4 << 20;

fn size_buffers(sock: &Socket) {
    use rustix::net::sockopt;
    if sockopt::set_socket_recv_buffer_size_force(sock, SOCKET_BUFFER).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(sock, SOCKET_BUFFER);
    }
    if sockopt::set_socket_send_buffer_size_force(sock, SOCKET_BUFFER).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(sock, SOCKET_BUFFER);
    }
}

/// Reused receive buffers and their metadata.
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    count: usize,
}

/// One received datagram, writable (ESP decrypts in place).
#[derive(Debug)]
pub struct DatagramMut<'a> {
    /// Who sent it.
    pub from: SocketAddr,
    /// The local address it was sent to (IP_PKTINFO).
    pub to: Option<IpAddr>,
    /// Its payload.
    pub data: &'a mut [u8],
}

/// One received datagram.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// Who sent it.
    pub from: SocketAddr,
    /// The local address it was sent to (IP_PKTINFO).
    pub to: Option<IpAddr>,
    /// Its payload.
    pub data: &'a [u8],
}

impl RecvBatch {
    fn new(gro_segments: usize) -> RecvBatch {
        let buf_len = (gro_segments.max(1) * 2048).clamp(2048, MAX_GRO_BUF);
        RecvBatch {
            bufs: vec![vec![0; buf_len]; BATCH_SIZE],
            meta: vec![RecvMeta::default(); BATCH_SIZE],
            count: 0,
        }
    }

    /// Every datagram of the last receive, GRO batches split at their stride.
    pub fn datagrams(&self) -> impl Iterator<Item = Datagram<'_>> {
        self.meta[..self.count]
            .iter()
            .zip(&self.bufs)
            .flat_map(|(meta, buf)| {
                let stride = meta.stride.max(1);
                let from = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
                let to = meta.dst_ip.map(|ip| ip.to_canonical());
                buf[..meta.len]
                    .chunks(stride)
                    .map(move |data| Datagram { from, to, data })
            })
    }

    /// Like [`RecvBatch::datagrams`], with each payload writable.
    pub fn datagrams_mut(&mut self) -> impl Iterator<Item = DatagramMut<'_>> {
        self.meta[..self.count]
            .iter()
            .zip(self.bufs.iter_mut())
            .flat_map(|(meta, buf)| {
                let stride = meta.stride.max(1);
                let from = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
                let to = meta.dst_ip.map(|ip| ip.to_canonical());
                buf[..meta.len]
                    .chunks_mut(stride)
                    .map(move |data| DatagramMut { from, to, data })
            })
    }
}

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
#[cfg(test)]
use std::time::Duration;

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
        Self::bind_with(port, fwmark, false)
    }

    /// `workers` sockets bound to `port` together (`SO_REUSEPORT`: the
    /// kernel spreads datagrams over them by their addresses and ports, so
    /// that each worker drains its own receive buffer). Fails if anything
    /// holds the port already: a socket without `SO_REUSEPORT` is bound and
    /// closed first, as a member of another group would join it silently.
    pub fn bind_group(port: u16, fwmark: u32, workers: usize) -> io::Result<Vec<UdpEndpoint>> {
        drop(Self::bind_with(port, fwmark, false)?);
        (0..workers.max(1))
            .map(|_| Self::bind_with(port, fwmark, true))
            .collect()
    }

    fn bind_with(port: u16, fwmark: u32, reuse_port: bool) -> io::Result<UdpEndpoint> {
        let make = |domain| make_socket(domain, port, fwmark, reuse_port);
        let (sock, dual_stack) = match make(Domain::IPV6) {
            Ok(s) => (s, true),
            Err(e) => {
                tracing::debug!("UDP {port}: no IPv6 socket ({e}); IPv4 only");
                (make(Domain::IPV4)?, false)
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
        let mut retried = false;
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state
                    .try_send(UdpSockRef::from(&self.socket), &transmit)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // With IP_RECVERR, the kernel fails the next send once with an
                // ICMP error queued for an earlier datagram, perhaps to
                // another peer; that call consumed it, so this datagram goes now.
                Err(e) if !retried && icmp_reported(&e) => retried = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `datagrams` (each `prefix` then its bytes), all from `from` (an
    /// address in canonical form, IPv4 as IPv4) when given, in as few `sendmmsg` calls as it takes, without waiting: what a
    /// full send buffer refuses is not sent. Returns how many were sent (see
    /// the note on partial batches below).
    pub fn try_send_many(
        &self,
        from: Option<IpAddr>,
        prefix: &[u8],
        datagrams: &[(SocketAddr, &[u8])],
    ) -> io::Result<usize> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

        use nix::libc;

        // The source address: IP_PKTINFO for IPv4, also on a dual-stack
        // socket (the kernel takes the IPv4 path for a v4-mapped destination).
        let v4_info;
        let v6_info;
        let cmsg: Vec<ControlMessage<'_>> = match from {
            Some(IpAddr::V4(a)) => {
                v4_info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                vec![ControlMessage::Ipv4PacketInfo(&v4_info)]
            }
            Some(IpAddr::V6(a)) => {
                v6_info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                vec![ControlMessage::Ipv6PacketInfo(&v6_info)]
            }
            None => Vec::new(),
        };
        let cmsg_space = nix::cmsg_space!(libc::in6_pktinfo);
        let mut sent = 0;
        let mut retried = false;
        while sent < datagrams.len() {
            let chunk = &datagrams[sent..datagrams.len().min(sent + BATCH_SIZE)];
            let slices: Vec<[IoSlice<'_>; 2]> = chunk
                .iter()
                .map(|(_, bytes)| [IoSlice::new(prefix), IoSlice::new(bytes)])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> = chunk
                .iter()
                .map(|(to, _)| Some(SockaddrStorage::from(self.outgoing(*to))))
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                chunk.len(),
                (!cmsg.is_empty()).then(|| Vec::with_capacity(cmsg_space.capacity())),
            );
            let result = sendmmsg(
                self.socket.as_raw_fd(),
                &mut headers,
                &slices,
                &addrs,
                &cmsg[..],
                MsgFlags::MSG_DONTWAIT,
            )
            // nix does not say how many of a batch went (only iterating the
            // results would, and for a send that reads addresses it never
            // wrote): a batch cut short by a full buffer is counted whole.
            .map(|_| chunk.len())
            .map_err(io::Error::from);
            match result {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A queued ICMP error fails one call (see `send`).
                Err(e) if !retried && icmp_reported(&e) => retried = true,
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Asks the kernel to queue ICMP and ICMPv6 errors for the datagrams
    /// this socket sends (`IP_RECVERR`/`IPV6_RECVERR`), to be read with
    /// [`UdpEndpoint::icmp_error`]: on the IKE sockets for unreachable peers,
    /// on the ESP one (4500) for routers' "too big" (`datapath::pmtu`). A
    /// queued error is also returned once by the next send or receive:
    /// [`UdpEndpoint::send`] and [`UdpEndpoint::try_send_many`] retry once,
    /// and a receive loop takes it as transient ([`icmp_reported`]).
    pub fn enable_icmp_errors(&self) -> io::Result<()> {
        self.state
            .enable_transport_errors(UdpSockRef::from(&self.socket))
    }

    /// Waits for the next ICMP error queued for a datagram this socket sent.
    /// Cancel-safe.
    pub async fn icmp_error(&self) -> io::Result<IcmpError> {
        loop {
            self.socket.ready(Interest::ERROR).await?;
            match self
                .socket
                .try_io(Interest::ERROR, || read_error_queue(&self.socket))
            {
                Ok(Some(e)) => return Ok(e),
                // A local error (not from ICMP): nothing to match.
                Ok(None) => continue,
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

/// The errors a queued ICMP error surfaces as on a send or receive.
pub fn icmp_reported(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    // "Fragmentation needed" / "packet too big" for a datagram sent with DF
    // (every one: quinn-udp's IP_PMTUDISC_PROBE), which std gives no kind.
    e.raw_os_error() == Some(nix::libc::EMSGSIZE)
        || matches!(
            e.kind(),
            ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            // ICMPv6 "administratively prohibited" (EACCES).
            | PermissionDenied
        )
}

/// How much of our datagram an ICMP error may quote that is kept: the IKE
/// header's SPIs and more than enough to tell IKE from ESP.
const QUOTE_KEPT: usize = 64;

/// One entry of the socket's error queue that came from an ICMP or ICMPv6
/// message: what the kernel says, unchecked (core's `oe::Unreachable` reads it).
#[derive(Debug, Clone)]
pub struct IcmpError {
    /// Where our datagram went (the error's quoted destination).
    pub to: SocketAddr,
    /// Who sent the ICMP error, if the kernel said.
    pub from: Option<IpAddr>,
    /// ICMPv6 rather than ICMP.
    pub v6: bool,
    /// The ICMP type.
    pub icmp_type: u8,
    /// The ICMP code.
    pub code: u8,
    /// Our datagram's UDP payload, as far as the error quoted it (at most 64 bytes kept).
    pub quoted: Vec<u8>,
    /// The error's `ee_info`: for "fragmentation needed" (ICMP type 3 code 4)
    /// and ICMPv6 "packet too big" the MTU the router reported, else 0.
    pub info: u32,
}

impl IcmpError {
    /// The MTU a router reported, if this is ICMP "fragmentation needed"
    /// (RFC 1191 §4) or ICMPv6 "packet too big" (RFC 4443 §3.2); unchecked
    /// (core's `wire::icmp::accepted_path_mtu` checks it).
    pub fn too_big(&self) -> Option<u32> {
        use oemesh_core::wire::icmp::*;
        let frag_needed = (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED);
        let too_big = match (self.v6, self.icmp_type, self.code) {
            (false, t, c) => (t, c) == frag_needed,
            (true, t, _) => t == ICMPV6_PACKET_TOO_BIG,
        };
        too_big.then_some(self.info)
    }

    /// What it says about an IKE datagram (`natt`: sent on the NAT-T port),
    /// if it is a destination-unreachable error for one.
    pub fn unreachable(&self, natt: bool) -> Option<oemesh_core::oe::Unreachable> {
        let (to, from, v6) = (self.to, self.from, self.v6);
        oemesh_core::oe::Unreachable::parse(
            to,
            from,
            v6,
            self.icmp_type,
            self.code,
            &self.quoted,
            natt,
        )
    }
}

/// Reads one error queue entry (`MSG_ERRQUEUE`); `Ok(None)` for one that did
/// not come from ICMP.
fn read_error_queue(socket: &tokio::net::UdpSocket) -> io::Result<Option<IcmpError>> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};

    const ORIGIN_ICMP: u8 = 2; // SO_EE_ORIGIN_ICMP
    const ORIGIN_ICMP6: u8 = 3; // SO_EE_ORIGIN_ICMP6
    let mut buf = [0u8; QUOTE_KEPT];
    let mut iov = [IoSliceMut::new(&mut buf)];
    // The error, and whatever else the socket asks for (quinn-udp's packet
    // info, ECN, GRO) that the kernel adds to error queue entries too:
    // too small a buffer fails the read with ENOBUFS (MSG_CTRUNC).
    let mut cmsg = vec![0u8; 512];
    let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)
        .map_err(io::Error::from)?;
    let to = msg.address.as_ref().and_then(|a| {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    });
    let mut found = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        let (ee, from) = match c {
            ControlMessageOwned::Ipv4RecvErr(ee, from) => {
                let from =
                    from.map(|s| IpAddr::V4(Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr))));
                (ee, from)
            }
            ControlMessageOwned::Ipv6RecvErr(ee, from) => {
                let from = from.map(|s| IpAddr::V6(Ipv6Addr::from(s.sin6_addr.s6_addr)));
                (ee, from)
            }
            _ => continue,
        };
        if ee.ee_origin == ORIGIN_ICMP || ee.ee_origin == ORIGIN_ICMP6 {
            found = Some((
                ee.ee_origin == ORIGIN_ICMP6,
                ee.ee_type,
                ee.ee_code,
                ee.ee_info,
                from,
            ));
        }
    }
    let len = msg.bytes.min(QUOTE_KEPT);
    let (Some(to), Some((v6, icmp_type, code, info, from))) = (to, found) else {
        return Ok(None);
    };
    Ok(Some(IcmpError {
        to: SocketAddr::new(to.ip().to_canonical(), to.port()),
        from: from
            .map(|a| a.to_canonical())
            .filter(|a| !a.is_unspecified()),
        v6,
        icmp_type,
        code,
        quoted: buf[..len].to_vec(),
        info,
    }))
}

fn make_socket(domain: Domain, port: u16, fwmark: u32, reuse_port: bool) -> io::Result<Socket> {
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_mark(fwmark)?;
    sock.set_reuse_port(reuse_port)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram to a closed port on loopback comes back as "port
    /// unreachable" in the error queue, naming where it went and quoting it.
    #[tokio::test]
    async fn a_closed_port_comes_back_as_an_icmp_error() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = closed.local_addr().unwrap();
        drop(closed);
        let Ok(sock) = UdpEndpoint::bind(0, 0) else {
            eprintln!("skipped: no UDP socket (not root?)");
            return;
        };
        sock.enable_icmp_errors().unwrap();
        let payload = [0x11u8; 40];
        sock.send(to, None, &payload, None).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), sock.icmp_error())
            .await
            .expect("an ICMP error within 5 s")
            .unwrap();
        assert_eq!(e.to, to);
        assert_eq!((e.v6, e.icmp_type, e.code), (false, 3, 3), "{e:?}");
        assert_eq!(e.quoted, payload);
        // The next send is not lost to the error the kernel held for it.
        sock.send(to, None, &payload, None).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.icmp_error()).await;

        // ICMPv6 on the same dual-stack socket, where there is IPv6.
        let Ok(closed) = std::net::UdpSocket::bind("[::1]:0") else {
            return;
        };
        let to6 = closed.local_addr().unwrap();
        drop(closed);
        sock.send(to6, None, &payload, None).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), sock.icmp_error())
            .await
            .expect("an ICMPv6 error within 5 s")
            .unwrap();
        assert_eq!(e.to, to6);
        assert_eq!((e.v6, e.icmp_type, e.code), (true, 1, 4), "{e:?}");
        assert_eq!(e.quoted, payload);
    }
}

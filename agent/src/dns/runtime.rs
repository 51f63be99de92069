//! The sockets hickory uses for lookups: made here, with SO_MARK set, so DNS
//! queries never enter the agent's routing table.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{RuntimeProvider, TokioHandle, TokioTime};
use socket2::{Domain, Protocol, Socket, Type};

/// A hickory runtime whose sockets carry SO_MARK.
#[derive(Clone)]
pub struct MarkedRuntime {
    handle: TokioHandle,
    mark: u32,
}

impl MarkedRuntime {
    /// Sockets made by this runtime get `mark`.
    pub fn new(mark: u32) -> Self {
        MarkedRuntime {
            handle: TokioHandle::default(),
            mark,
        }
    }
}

impl std::fmt::Debug for MarkedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkedRuntime")
            .field("mark", &self.mark)
            .finish()
    }
}

pub(super) fn marked_socket(
    addr: &SocketAddr,
    ty: Type,
    proto: Protocol,
    mark: u32,
) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(*addr), ty, Some(proto))?;
    s.set_mark(mark)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl RuntimeProvider for MarkedRuntime {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = tokio::net::UdpSocket;
    type Tcp = AsyncIoTokioAsStd<tokio::net::TcpStream>;

    fn create_handle(&self) -> Self::Handle {
        self.handle.clone()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Self::Tcp>>>> {
        let mark = self.mark;
        Box::pin(async move {
            let s = marked_socket(&server_addr, Type::STREAM, Protocol::TCP, mark)?;
            if let Some(b) = bind_addr {
                s.bind(&b.into())?;
            }
            s.set_tcp_nodelay(true)?;
            let socket = tokio::net::TcpSocket::from_std_stream(s.into());
            let wait = timeout.unwrap_or(Duration::from_secs(5));
            match tokio::time::timeout(wait, socket.connect(server_addr)).await {
                Ok(Ok(stream)) => Ok(AsyncIoTokioAsStd(stream)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TCP connect timed out",
                )),
            }
        })
    }

    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        _server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Self::Udp>>>> {
        let mark = self.mark;
        Box::pin(async move {
            let s = marked_socket(&local_addr, Type::DGRAM, Protocol::UDP, mark)?;
            s.bind(&local_addr.into())?;
            tokio::net::UdpSocket::from_std(s.into())
        })
    }
}

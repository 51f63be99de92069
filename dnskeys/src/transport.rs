//! Talking to one DNS server with hickory's client: the server address, the
//! bounded wait, and errors that say what to do when no answer comes.
//!
//! Queries go over UDP and are retried over TCP when the answer is truncated.
//! UPDATEs go over TCP (like `nsupdate -v`): one connection, one message, no
//! retransmissions that a server could apply twice.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::FirstAnswer as _;
use hickory_net::{DnsHandle as _, NetError};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message};
use oemesh_core::resolv::{self, ServerSpec};

/// How long to wait for a server when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One DNS server and how long we wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// Address and port.
    pub addr: SocketAddr,
    /// The bound on each exchange, connection set-up included.
    pub timeout: Duration,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

/// Which transport an exchange uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP, falling back to TCP for truncated answers.
    Udp,
    /// TCP only.
    Tcp,
}

/// Why `--server` (or resolv.conf) does not give an address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The text is not `HOST`, `HOST:PORT`, `IP`, `IP:PORT` or `[IPv6]:PORT`.
    #[error("--server {0:?} is not HOST, HOST:PORT, IPV4:PORT or [IPV6]:PORT")]
    Syntax(String),
    /// A host name that does not resolve.
    #[error("--server {host:?} does not resolve to an address: {source}")]
    Resolve {
        /// the host name
        host: String,
        /// the resolver's error
        source: io::Error,
    },
    /// No `nameserver` line in resolv.conf.
    #[error("{0} names no nameserver; pass --server HOST[:PORT]")]
    NoResolver(String),
}

/// Why an exchange with the server produced no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Nothing came back in time.
    #[error(
        "no answer from {server} within {secs:.1}s; check that the DNS server runs and is \
         reachable on that address and port (wait longer with --timeout SECONDS)",
        secs = timeout.as_secs_f32()
    )]
    Timeout {
        /// the server
        server: SocketAddr,
        /// how long we waited
        timeout: Duration,
    },
    /// The TCP connection was refused: nothing listens there.
    #[error("{server} refused the connection: no DNS server listens there; check --server")]
    Refused {
        /// the server
        server: SocketAddr,
    },
    /// Another network or protocol failure.
    #[error("exchange with {server} failed: {detail}")]
    Failed {
        /// the server
        server: SocketAddr,
        /// what hickory reported
        detail: String,
    },
}

/// Parses `HOST[:PORT]` ([`oemesh_core::resolv::parse_server`]): an IPv4 or
/// IPv6 address (`[v6]:port` with a port), or a host name resolved by the
/// system. The default port is 53.
pub fn parse_server(text: &str, timeout: Duration) -> Result<Server, ServerError> {
    let server = |addr| Server { addr, timeout };
    let (host, port) = match resolv::parse_server(text) {
        Some(ServerSpec::Addr(addr)) => return Ok(server(addr)),
        Some(ServerSpec::Host { name, port }) => (name, port),
        None => return Err(ServerError::Syntax(text.into())),
    };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|source| ServerError::Resolve {
            host: host.into(),
            source,
        })?;
    addrs
        .next()
        .map(server)
        .ok_or_else(|| ServerError::Resolve {
            host: host.into(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        })
}

/// The first `nameserver` of a resolv.conf file (normally `/etc/resolv.conf`).
pub fn system_resolver(resolv_conf: &Path, timeout: Duration) -> Result<Server, ServerError> {
    let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
    resolv::nameservers(&text)
        .next()
        .map(|ip| Server {
            addr: SocketAddr::new(ip, resolv::DNS_PORT),
            timeout,
        })
        .ok_or_else(|| ServerError::NoResolver(resolv_conf.display().to_string()))
}

impl Server {
    /// Sends `message` as is (already signed, if it is to be) and returns the
    /// first answer. The whole exchange is bounded by [`Server::timeout`].
    pub async fn exchange(
        &self,
        message: Message,
        transport: Transport,
    ) -> Result<DnsResponse, TransportError> {
        let bounded = async {
            match transport {
                Transport::Tcp => self.exchange_tcp(message).await,
                Transport::Udp => {
                    let response = self.exchange_udp(message.clone()).await?;
                    if response.truncation {
                        self.exchange_tcp(message).await
                    } else {
                        Ok(response)
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, bounded).await {
            Ok(result) => result.map_err(|e| self.map_error(e)),
            Err(_) => Err(TransportError::Timeout {
                server: self.addr,
                timeout: self.timeout,
            }),
        }
    }

    fn request(message: Message) -> DnsRequest {
        let mut options = DnsRequestOptions::default();
        // The message is complete (EDNS, flags, TSIG); the stack must not add to it.
        options.use_edns = message.edns.is_some();
        options.recursion_desired = message.recursion_desired;
        DnsRequest::new(message, options)
    }

    async fn exchange_udp(&self, message: Message) -> Result<DnsResponse, NetError> {
        let exchange = UdpClientStream::builder(self.addr, TokioRuntimeProvider::new())
            .with_timeout(Some(self.timeout))
            .exchange();
        exchange.send(Self::request(message)).first_answer().await
    }

    async fn exchange_tcp(&self, message: Message) -> Result<DnsResponse, NetError> {
        // The provider owns the task set the connection's background task runs
        // in; dropping the last handle to it cancels the task. Keep one alive
        // until the answer is in.
        let provider = TokioRuntimeProvider::new();
        let exchange =
            TcpClientStream::exchange(self.addr, None, self.timeout, None, provider.clone())
                .await?;
        let answer = exchange.send(Self::request(message)).first_answer().await;
        drop(provider);
        answer
    }

    fn map_error(&self, e: NetError) -> TransportError {
        match e {
            NetError::Timeout => TransportError::Timeout {
                server: self.addr,
                timeout: self.timeout,
            },
            NetError::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                TransportError::Refused { server: self.addr }
            }
            other => TransportError::Failed {
                server: self.addr,
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_syntax() {
        let t = DEFAULT_TIMEOUT;
        assert_eq!(
            parse_server("127.0.0.1", t).unwrap().addr,
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(parse_server("127.0.0.1:5353", t).unwrap().addr.port(), 5353);
        assert_eq!(
            parse_server("::1", t).unwrap().addr,
            "[::1]:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:54", t).unwrap().addr,
            "[::1]:54".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]", t).unwrap().addr,
            "[::1]:53".parse().unwrap()
        );
        assert_eq!(parse_server("localhost:99", t).unwrap().addr.port(), 99);
        assert!(matches!(
            parse_server("host:notaport", t),
            Err(ServerError::Syntax(_))
        ));
        assert!(matches!(parse_server("", t), Err(ServerError::Syntax(_))));
    }

    #[test]
    fn resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(
            &p,
            "# c\nsearch x\nnameserver fe80::1%eth0\nnameserver 192.0.2.53 # c\n",
        )
        .unwrap();
        let s = system_resolver(&p, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(s.addr, "192.0.2.53:53".parse().unwrap());
        std::fs::write(&p, "search x\n").unwrap();
        assert!(system_resolver(&p, DEFAULT_TIMEOUT).is_err());
    }
}

//! IPSECKEY lookups (RFC 4025) at a peer's reverse name, on sockets that carry
//! the agent's fwmark: with a single server, first one UDP query, sent inline by
//! the caller ([`KeyResolver::send_query`]: on the cold path, hickory's pool
//! cost ~0.15 ms a lookup in task hops before its query left); on truncation,
//! silence or error, through hickory-resolver's name-server pool (server
//! selection, UDP with TCP fallback on truncation).
//!
//! **SO_MARK.** hickory lets a [`RuntimeProvider`] create every socket it uses;
//! [`MarkedRuntime`] makes them with socket2, sets SO_MARK, then hands them to
//! tokio. So DNS queries never enter our routing table, even for a resolver
//! inside an OE prefix.
//!
//! **DNSSEC.** Queries set RD, AD and EDNS DO (RFC 6840 §5.7); the result records
//! the AD bit of the answer. That is trust in the configured resolver's
//! validation, as with any stub: the resolver must validate and the path to it
//! must be trusted (localhost, or the testnet's own). Local validation with
//! hickory's `dnssec-ring` feature and a trust anchor is not wired in; negative
//! answers are reported without AD (hickory's pool turns them into errors and
//! drops the header).
//!
//! **Outcomes.** A key set, NXDOMAIN, NODATA and failure are told apart; the
//! negative TTL comes from the SOA minimum (RFC 2308 §5) when the answer has one.
//! [`KeyLookup::into_dns_result`] hands it to core's decision machine.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverOpts};
use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{RuntimeProvider, TokioHandle, TokioTime};
use hickory_resolver::net::{DnsError, DnsHandle, NetError, NoRecords};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Message, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use oemesh_core::ipseckey::{Ipseckey, reverse_name};
use oemesh_core::oe;
use oemesh_core::resolv;
use socket2::{Domain, Protocol, Socket, Type};

mod inline;

pub use inline::SentQuery;

/// RR type 45 (RFC 4025 §2.1).
pub const IPSECKEY: u16 = 45;

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

fn marked_socket(addr: &SocketAddr, ty: Type, proto: Protocol, mark: u32) -> io::Result<Socket> {
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

/// What DNS said about a peer's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLookup {
    /// IPSECKEY records, lowest precedence first (RFC 4025 §2.2).
    Found {
        /// The records that parsed.
        keys: Vec<Ipseckey>,
        /// Records that did not parse (logged, skipped).
        malformed: usize,
        /// The smallest TTL of the answer.
        ttl: u32,
        /// Whether the answer carried AD.
        dnssec: bool,
    },
    /// The name does not exist.
    NxDomain {
        /// From the SOA minimum, when the answer had one.
        negative_ttl: Option<u32>,
    },
    /// The name exists but has no IPSECKEY.
    NoData {
        /// From the SOA minimum, when the answer had one.
        negative_ttl: Option<u32>,
    },
    /// No usable answer.
    Failed(LookupFailure),
}

impl KeyLookup {
    /// A short reason for logs and `oemesh peers`: `no IPSECKEY (NXDOMAIN)`.
    pub fn reason(&self) -> String {
        match self {
            KeyLookup::Found { keys, .. } => format!("{} IPSECKEY record(s)", keys.len()),
            KeyLookup::NxDomain { .. } => "no IPSECKEY (NXDOMAIN)".to_owned(),
            KeyLookup::NoData { .. } => "no IPSECKEY (NODATA)".to_owned(),
            KeyLookup::Failed(f) => format!("DNS failure ({f})"),
        }
    }
}

impl KeyLookup {
    /// The result as the decision machine takes it ([`oe::DnsResult`]).
    pub fn into_dns_result(self) -> oe::DnsResult {
        match self {
            KeyLookup::Found {
                keys, ttl, dnssec, ..
            } => oe::DnsResult::Records {
                records: keys,
                dnssec_validated: dnssec,
                ttl,
            },
            KeyLookup::NxDomain { negative_ttl } => oe::DnsResult::NoRecords {
                kind: oe::NoRecord::Nxdomain,
                negative_ttl,
            },
            KeyLookup::NoData { negative_ttl } => oe::DnsResult::NoRecords {
                kind: oe::NoRecord::Nodata,
                negative_ttl,
            },
            KeyLookup::Failed(reason) => oe::DnsResult::Failed { reason },
        }
    }
}

/// Why a lookup gave no usable answer: core's [`oe::DnsFailure`], which the
/// decision machine and the outcome's reason carry as it is.
pub use oemesh_core::oe::DnsFailure as LookupFailure;

/// How much longer than `dns.timeout` the resolver itself waits (see `KeyResolver::new`).
const RESOLVER_GRACE: Duration = Duration::from_millis(500);

/// Looks up IPSECKEY records through the configured (or /etc/resolv.conf) servers.
pub struct KeyResolver {
    pool: NameServerPool<MarkedRuntime>,
    timeout: Duration,
    servers: Vec<SocketAddr>,
    mark: u32,
}

impl std::fmt::Debug for KeyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyResolver")
            .field("servers", &self.servers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Where the servers come from when `dns.servers` names none.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// /etc/resolv.conf could not be read or named no servers.
    #[error("no DNS servers configured and /etc/resolv.conf gives none: {0} (set dns.servers)")]
    NoServers(String),
}

impl KeyResolver {
    /// A resolver asking `servers` (empty: those of /etc/resolv.conf) with
    /// sockets marked `fwmark`, each lookup bounded by `timeout`.
    pub fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        fwmark: u32,
    ) -> Result<KeyResolver, ResolverError> {
        let servers: Vec<SocketAddr> = if servers.is_empty() {
            let text = std::fs::read_to_string(RESOLV_CONF)
                .map_err(|e| ResolverError::NoServers(format!("{RESOLV_CONF}: {e}")))?;
            resolv::nameservers(&text)
                .map(|ip| SocketAddr::new(ip, resolv::DNS_PORT))
                .collect()
        } else {
            servers.to_vec()
        };
        if servers.is_empty() {
            return Err(ResolverError::NoServers(format!(
                "{RESOLV_CONF} lists no nameserver"
            )));
        }
        let configs = servers.iter().map(|s| {
            let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
            udp.port = s.port();
            let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
            tcp.port = s.port();
            NameServerConfig::new(s.ip(), true, vec![udp, tcp])
        });
        let mut opts = ResolverOpts::default();
        // The decision machine's own DNS timer (the same `timeout`) decides
        // first and reports "DNS timed out after …"; this bound only reclaims
        // the query a little later.
        let timeout = timeout + RESOLVER_GRACE;
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.edns0 = true;
        opts.cache_size = 0;
        let cx = Arc::new(PoolContext::new(
            opts,
            TlsConfig::new().map_err(|e| ResolverError::NoServers(e.to_string()))?,
        ));
        let pool = NameServerPool::from_config(configs, cx, MarkedRuntime::new(fwmark));
        Ok(KeyResolver {
            pool,
            timeout,
            servers,
            mark: fwmark,
        })
    }

    /// The servers asked.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Looks up the IPSECKEY records published for `peer` (RFC 4025 §1.2).
    pub async fn lookup(&self, peer: IpAddr) -> KeyLookup {
        self.lookup_name(&reverse_name(peer).to_string()).await
    }

    /// Looks up the IPSECKEY records at `owner` (a reverse name, or an IKE
    /// initiator's FQDN identity).
    pub async fn lookup_name(&self, owner: &str) -> KeyLookup {
        let owner = owner.to_owned();
        let name = match Name::from_ascii(&owner) {
            Ok(n) => n,
            Err(e) => {
                return KeyLookup::Failed(LookupFailure::BadName {
                    name: owner,
                    why: e.to_string(),
                });
            }
        };
        let message = query_message(name);
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_set_dnssec_ok = true;
        options.recursion_desired = true;
        let request = DnsRequest::new(message, options);
        let sent = async {
            use futures_util::StreamExt;
            let mut responses = self.pool.send(request);
            responses.next().await
        };
        match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => KeyLookup::Failed(LookupFailure::Timeout(self.timeout)),
            Ok(None) => KeyLookup::Failed(LookupFailure::NoResponse),
            Ok(Some(Ok(response))) => classify_answer(&response, &owner),
            Ok(Some(Err(e))) => classify_error(e),
        }
    }
}

impl KeyResolver {
    /// Looks up the A (`v4`) or AAAA records of `owner`, an FQDN identity that
    /// must resolve to its peer's address (core's `trust` rule), through the
    /// pool. CNAMEs are followed by the server; every address of the type in
    /// the answer counts.
    pub async fn lookup_addresses(&self, owner: &str, v4: bool) -> oe::AddressResult {
        let name = match Name::from_ascii(owner) {
            Ok(n) => n,
            Err(e) => {
                return oe::AddressResult::Failed {
                    reason: LookupFailure::BadName {
                        name: owner.to_owned(),
                        why: e.to_string(),
                    },
                };
            }
        };
        let rtype = if v4 { RecordType::A } else { RecordType::AAAA };
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_set_dnssec_ok = true;
        options.recursion_desired = true;
        let request = DnsRequest::new(query_of(name, rtype), options);
        let sent = async {
            use futures_util::StreamExt;
            let mut responses = self.pool.send(request);
            responses.next().await
        };
        let failed = |reason| oe::AddressResult::Failed { reason };
        match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => failed(LookupFailure::Timeout(self.timeout)),
            Ok(None) => failed(LookupFailure::NoResponse),
            Ok(Some(Ok(response))) => classify_addresses(&response),
            Ok(Some(Err(e))) => match classify_error(e) {
                KeyLookup::NxDomain { .. } => oe::AddressResult::NoRecords {
                    kind: oe::NoRecord::Nxdomain,
                },
                KeyLookup::NoData { .. } => oe::AddressResult::NoRecords {
                    kind: oe::NoRecord::Nodata,
                },
                KeyLookup::Failed(reason) => failed(reason),
                // classify_error gives no records
                found @ KeyLookup::Found { .. } => failed(LookupFailure::Transport(found.reason())),
            },
        }
    }
}

/// The addresses in an A/AAAA answer, with its AD bit.
fn classify_addresses(response: &Message) -> oe::AddressResult {
    match response.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return oe::AddressResult::NoRecords {
                kind: oe::NoRecord::Nxdomain,
            };
        }
        other => {
            return oe::AddressResult::Failed {
                reason: LookupFailure::Rcode(u16::from(other)),
            };
        }
    }
    let addrs: Vec<IpAddr> = response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    if addrs.is_empty() {
        return oe::AddressResult::NoRecords {
            kind: oe::NoRecord::Nodata,
        };
    }
    oe::AddressResult::Addresses {
        addrs,
        dnssec_validated: response.metadata.authentic_data,
    }
}

/// An IPSECKEY query for `name` with RD, AD and EDNS DO (see the module docs).
fn query_message(name: Name) -> Message {
    query_of(name, RecordType::from(IPSECKEY))
}

/// A query of `rtype` at `name` with RD, AD and EDNS DO.
fn query_of(name: Name, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    message.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true)
        .set_max_payload(MAX_UDP_ANSWER as u16);
    message.set_edns(edns);
    message
}

/// The EDNS payload size offered (DNS flag day 2020).
const MAX_UDP_ANSWER: usize = 1232;

fn classify_answer(response: &Message, owner: &str) -> KeyLookup {
    if response.metadata.response_code != ResponseCode::NoError {
        return KeyLookup::Failed(LookupFailure::Rcode(u16::from(
            response.metadata.response_code,
        )));
    }
    let mut keys = Vec::new();
    let mut malformed = 0;
    let mut ttl = u32::MAX;
    for record in &response.answers {
        let RData::Unknown { code, rdata } = &record.data else {
            continue;
        };
        if u16::from(*code) != IPSECKEY {
            continue;
        }
        ttl = ttl.min(record.ttl);
        match Ipseckey::parse_wire(&rdata.anything) {
            Ok(k) => keys.push(k),
            Err(e) => {
                malformed += 1;
                tracing::warn!("{owner}: skipping malformed IPSECKEY: {e}");
            }
        }
    }
    if keys.is_empty() && malformed == 0 {
        return KeyLookup::NoData { negative_ttl: None };
    }
    keys.sort_by_key(|k| k.precedence);
    KeyLookup::Found {
        keys,
        malformed,
        ttl,
        dnssec: response.metadata.authentic_data,
    }
}

fn classify_error(e: NetError) -> KeyLookup {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code,
            negative_ttl,
            ..
        })) => match response_code {
            ResponseCode::NXDomain => KeyLookup::NxDomain { negative_ttl },
            ResponseCode::NoError => KeyLookup::NoData { negative_ttl },
            other => KeyLookup::Failed(LookupFailure::Rcode(u16::from(other))),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => {
            KeyLookup::Failed(LookupFailure::Rcode(u16::from(code)))
        }
        NetError::Timeout => KeyLookup::Failed(LookupFailure::ResolverTimeout),
        other => KeyLookup::Failed(LookupFailure::Transport(other.to_string())),
    }
}

#[cfg(test)]
mod tests;

//! IPSECKEY lookups (RFC 4025) at a peer's reverse name, on sockets that carry
//! the agent's fwmark: with a single server, first one UDP query, sent inline by
//! the caller ([`KeyResolver::send_query`]: on the cold path, hickory's pool
//! cost ~0.15 ms a lookup in task hops before its query left); on truncation,
//! silence or error, through hickory-resolver's name-server pool (server
//! selection, UDP with TCP fallback on truncation).
//!
//! **SO_MARK.** hickory lets a `RuntimeProvider` create every socket it uses;
//! [`MarkedRuntime`] makes them with socket2, sets SO_MARK, then hands them to
//! tokio. So DNS queries never enter our routing table, even for a resolver
//! inside an OE prefix.
//!
//! **DNSSEC** (`dns.dnssec`). `"validate"` (the default): the agent checks
//! the chain of trust itself, from the root KSKs and `dns.trust_anchors`
//! (`validate.rs`), through any server that hands out DNSKEY, DS and RRSIG, an
//! authoritative-only one included; each answer is secure, insecure,
//! indeterminate or bogus (RFC 4035 §4.3), denials included (a forged
//! NXDOMAIN in a signed zone is bogus, not "no key"). `"resolver"`: the AD bit
//! of the configured resolver is trusted (secure, else unvalidated), which is
//! only as good as the path to it. `"off"`: unvalidated.
//!
//! **Outcomes.** A key set, NXDOMAIN, NODATA and failure are told apart; the
//! negative TTL comes from the SOA minimum (RFC 2308 §5) when the answer has one.
//! [`KeyLookup::into_dns_result`] hands it to core's decision machine.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverOpts};
use hickory_resolver::net::{DnsError, DnsHandle, NetError, NoRecords};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Message, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use oemesh_core::ipseckey::{Ipseckey, reverse_name};
use oemesh_core::oe;
use oemesh_core::resolv;

mod bogus;
mod chain;
mod inline;
mod runtime;
mod validate;

pub use chain::CHAIN_CACHE;
pub use inline::SentQuery;
pub use runtime::MarkedRuntime;
use runtime::marked_socket;
pub use validate::{LoadedAnchor, PROOF_CACHE, load_anchors};

use crate::config::DnssecMode;
use oemesh_core::oe::Dnssec;
use validate::{Validated, Validator};

/// RR type 45 (RFC 4025 §2.1).
pub const IPSECKEY: u16 = 45;

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
        /// The answer's DNSSEC state.
        dnssec: Dnssec,
    },
    /// The name does not exist.
    NxDomain {
        /// From the SOA minimum, when the answer had one.
        negative_ttl: Option<u32>,
        /// The denial's DNSSEC state.
        dnssec: Dnssec,
    },
    /// The name exists but has no IPSECKEY.
    NoData {
        /// From the SOA minimum, when the answer had one.
        negative_ttl: Option<u32>,
        /// The denial's DNSSEC state.
        dnssec: Dnssec,
    },
    /// No usable answer.
    Failed(LookupFailure),
}

impl KeyLookup {
    /// The answer's DNSSEC state (bogus for a failed validation, unvalidated
    /// for other failures).
    pub fn dnssec(&self) -> Dnssec {
        match self {
            KeyLookup::Found { dnssec, .. }
            | KeyLookup::NxDomain { dnssec, .. }
            | KeyLookup::NoData { dnssec, .. } => *dnssec,
            KeyLookup::Failed(LookupFailure::Bogus(_)) => Dnssec::Bogus,
            KeyLookup::Failed(_) => Dnssec::Unvalidated,
        }
    }

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
                dnssec,
                ttl,
            },
            KeyLookup::NxDomain {
                negative_ttl,
                dnssec,
            } => oe::DnsResult::NoRecords {
                kind: oe::NoRecord::Nxdomain,
                negative_ttl,
                dnssec,
            },
            KeyLookup::NoData {
                negative_ttl,
                dnssec,
            } => oe::DnsResult::NoRecords {
                kind: oe::NoRecord::Nodata,
                negative_ttl,
                dnssec,
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
    mode: DnssecMode,
    validator: Option<Validator>,
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
    /// sockets marked `fwmark`, each lookup bounded by `timeout`, without
    /// DNSSEC validation of its own (`dns.dnssec = "resolver"`).
    pub fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        fwmark: u32,
    ) -> Result<KeyResolver, ResolverError> {
        Self::with_dnssec(servers, timeout, fwmark, DnssecMode::Resolver, Vec::new())
    }

    /// [`KeyResolver::new`] with a DNSSEC mode; `anchors` (from
    /// [`load_anchors`]) are used with [`DnssecMode::Validate`].
    pub fn with_dnssec(
        servers: &[SocketAddr],
        timeout: Duration,
        fwmark: u32,
        mode: DnssecMode,
        anchors: Vec<LoadedAnchor>,
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
        let validator =
            (mode == DnssecMode::Validate).then(|| Validator::new(pool.clone(), anchors));
        Ok(KeyResolver {
            pool,
            timeout,
            servers,
            mark: fwmark,
            mode,
            validator,
        })
    }

    /// In validate mode, fetches what the first lookup would otherwise
    /// wait for: the anchored zones' DNSKEY sets, and whether the servers
    /// give the root's. Call once at start, in a task.
    pub async fn prime(&self) {
        if let Some(v) = &self.validator {
            v.prime().await;
        }
    }

    /// Who validates DNSSEC, for `oemesh status`: `validate (root KSKs +
    /// anchors for 2.0.192.in-addr.arpa.)`, `resolver (AD bit)`, `off`.
    pub fn dnssec_summary(&self) -> String {
        match self.mode {
            DnssecMode::Validate => {
                let mut zones: Vec<&str> = self
                    .anchors()
                    .iter()
                    .map(|a| a.anchor.zone.as_str())
                    .collect();
                zones.sort_unstable();
                zones.dedup();
                if zones.is_empty() {
                    "validate (root KSKs)".to_owned()
                } else {
                    format!("validate (root KSKs + anchors for {})", zones.join(", "))
                }
            }
            DnssecMode::Resolver => "resolver (its AD bit is trusted)".to_owned(),
            DnssecMode::Off => "off".to_owned(),
        }
    }

    /// Who validates DNSSEC.
    pub fn dnssec_mode(&self) -> DnssecMode {
        self.mode
    }

    /// The trust anchors added to the root KSKs (validate mode).
    pub fn anchors(&self) -> &[LoadedAnchor] {
        self.validator.as_ref().map_or(&[], |v| v.anchors())
    }

    /// The configured anchor the chain of trust for `name` starts at (the
    /// closest enclosing zone with one); `None`: the root KSKs, or a name
    /// that does not parse.
    pub fn anchor_for(&self, name: &str) -> Option<&LoadedAnchor> {
        let name = Name::from_ascii(name).ok()?;
        validate::covering_anchor(self.anchors(), &name)
    }

    /// The state an unvalidated answer gets in this mode, from its AD bit.
    fn ad_state(&self, ad: bool) -> Dnssec {
        match self.mode {
            DnssecMode::Resolver if ad => Dnssec::Secure,
            _ => Dnssec::Unvalidated,
        }
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
        match self.ask(name, RecordType::from(IPSECKEY)).await {
            Asked::Answer(message, state) => classify_validated(&message, &owner, state),
            Asked::Error(e, state) => classify_error(e, state),
            Asked::Failed(reason) => KeyLookup::Failed(reason),
        }
    }

    /// One query for `rtype` at `name`: validated in validate mode, else (or
    /// for a name known to have no chain of trust) plainly through the pool,
    /// with the state its AD bit gives (or indeterminate).
    async fn ask(&self, name: Name, rtype: RecordType) -> Asked {
        let mut chainless = None;
        if let Some(v) = &self.validator {
            let query = Query::query(name.clone(), rtype);
            match tokio::time::timeout(self.timeout, v.lookup(query)).await {
                Err(_) => return Asked::Failed(LookupFailure::Timeout(self.timeout)),
                Ok(Validated::Bogus(why)) => return Asked::Failed(LookupFailure::Bogus(why)),
                Ok(Validated::Failed(e)) => return Asked::Error(e, Dnssec::Unvalidated),
                Ok(Validated::Answer(message, state)) => return Asked::Answer(message, state),
                Ok(Validated::NoChain) => chainless = Some(Dnssec::Indeterminate),
            }
        }
        let sent = async {
            use futures_util::StreamExt;
            self.pool.send(request(name, rtype)).next().await
        };
        match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => Asked::Failed(LookupFailure::Timeout(self.timeout)),
            Ok(None) => Asked::Failed(LookupFailure::NoResponse),
            Ok(Some(Ok(response))) => {
                let state = chainless.unwrap_or(self.ad_state(response.metadata.authentic_data));
                Asked::Answer(response.into_message(), state)
            }
            Ok(Some(Err(e))) => Asked::Error(e, chainless.unwrap_or(Dnssec::Unvalidated)),
        }
    }
}

/// What [`KeyResolver::ask`] got.
enum Asked {
    /// An answer (records or a denial) and its DNSSEC state.
    Answer(Message, Dnssec),
    /// An error from hickory (denials from the pool come this way), and the
    /// state of the answer behind it.
    Error(NetError, Dnssec),
    /// No usable answer (timeout, bogus).
    Failed(LookupFailure),
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
        match self.ask(name, rtype).await {
            Asked::Answer(message, state) => classify_addresses(&message, state),
            Asked::Error(e, _) => addresses_error(e),
            Asked::Failed(reason) => oe::AddressResult::Failed { reason },
        }
    }
}

/// An A/AAAA lookup that ended in an error: a denial, or a failure.
fn addresses_error(e: NetError) -> oe::AddressResult {
    match classify_error(e, Dnssec::Unvalidated) {
        KeyLookup::NxDomain { .. } => oe::AddressResult::NoRecords {
            kind: oe::NoRecord::Nxdomain,
        },
        KeyLookup::NoData { .. } => oe::AddressResult::NoRecords {
            kind: oe::NoRecord::Nodata,
        },
        KeyLookup::Failed(reason) => oe::AddressResult::Failed { reason },
        // classify_error gives no records
        found @ KeyLookup::Found { .. } => oe::AddressResult::Failed {
            reason: LookupFailure::Transport(found.reason()),
        },
    }
}

/// The addresses in an A/AAAA answer, with its DNSSEC state.
fn classify_addresses(response: &Message, state: Dnssec) -> oe::AddressResult {
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
        dnssec_validated: state.is_secure(),
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

/// A query of `rtype` at `name` (RD, AD, EDNS DO) as hickory sends it.
fn request(name: Name, rtype: RecordType) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = true;
    DnsRequest::new(query_of(name, rtype), options)
}

/// The EDNS payload size offered (DNS flag day 2020).
const MAX_UDP_ANSWER: usize = 1232;

fn classify_answer(response: &Message, owner: &str, dnssec: Dnssec) -> KeyLookup {
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
        return KeyLookup::NoData {
            negative_ttl: None,
            dnssec,
        };
    }
    keys.sort_by_key(|k| k.precedence);
    KeyLookup::Found {
        keys,
        malformed,
        ttl,
        dnssec,
    }
}

/// A validated answer: records, or a denial with the negative TTL of its
/// SOA (RFC 2308 §5).
fn classify_validated(response: &Message, owner: &str, dnssec: Dnssec) -> KeyLookup {
    match response.metadata.response_code {
        ResponseCode::NXDomain => KeyLookup::NxDomain {
            negative_ttl: negative_ttl(response),
            dnssec,
        },
        ResponseCode::NoError => match classify_answer(response, owner, dnssec) {
            KeyLookup::NoData { .. } => KeyLookup::NoData {
                negative_ttl: negative_ttl(response),
                dnssec,
            },
            other => other,
        },
        _ => classify_answer(response, owner, dnssec),
    }
}

/// The negative TTL of a denial: the smaller of its SOA's TTL and MINIMUM.
fn negative_ttl(response: &Message) -> Option<u32> {
    response.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
        _ => None,
    })
}

fn classify_error(e: NetError, dnssec: Dnssec) -> KeyLookup {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code,
            negative_ttl,
            ..
        })) => match response_code {
            ResponseCode::NXDomain => KeyLookup::NxDomain {
                negative_ttl,
                dnssec,
            },
            ResponseCode::NoError => KeyLookup::NoData {
                negative_ttl,
                dnssec,
            },
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

//! What goes in and out of the decision machine: DNS and IKE results from the
//! agent, [`Action`]s back to it.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::crypto::CryptoError;
use crate::ike::endpoint::Failure;
use crate::ipseckey::{DomainName, Ipseckey};

use super::hold::Held;
use super::outcome::{NoRecord, Outcome};
use crate::trust::IdentityRefused;

/// The answer to an [`Action::LookupAddress`], as the agent's resolver gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressResult {
    /// A or AAAA records.
    Addresses {
        /// The addresses; order does not matter.
        addrs: Vec<IpAddr>,
        /// Whether the answer was DNSSEC-validated.
        dnssec_validated: bool,
    },
    /// NXDOMAIN or NODATA.
    NoRecords {
        /// Which.
        kind: NoRecord,
    },
    /// The lookup failed.
    Failed {
        /// Why.
        reason: DnsFailure,
    },
}

/// Why a DNS lookup gave no usable answer, as the agent's resolver saw it.
/// `Display` is the short text logs and `oemesh peers` show (`SERVFAIL`,
/// `timeout after 2s`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsFailure {
    /// No answer within the configured timeout.
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    /// The resolver library's own timer ran out first.
    #[error("timeout")]
    ResolverTimeout,
    /// The server answered with an error RCODE (RFC 1035 §4.1.1, RFC 6895).
    #[error("{}", rcode_name(*.0))]
    Rcode(u16),
    /// The query went out and nothing came back (the stream ended).
    #[error("no response")]
    NoResponse,
    /// The name to look up is not a valid DNS name.
    #[error("name {name}: {why}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// No DNS server is configured.
    #[error("no DNS resolver configured")]
    NoResolver,
    /// Transport or protocol trouble, in the resolver's words.
    #[error("{0}")]
    Transport(String),
    /// The answer failed DNSSEC validation (RFC 4035 §4.3 "bogus"): a
    /// signature that does not verify or has expired, a DNSKEY or an NSEC
    /// proof missing where the chain of trust says the zone is signed. Never
    /// used as a key; a DNS failure under the group's rules, and closed under
    /// `require-dnssec`.
    #[error("DNSSEC bogus: {0}")]
    Bogus(String),
    /// `require-dnssec`: the answer could not be proven either way (RFC 4035
    /// §4.3 "indeterminate"), which an attacker can cause by dropping the
    /// DNSKEY and DS queries.
    #[error("DNSSEC indeterminate ({0}), and the group requires DNSSEC")]
    Indeterminate(String),
}

impl DnsFailure {
    /// Whether DNSSEC decided it (bogus, or indeterminate under
    /// `require-dnssec`) rather than the network: `require-dnssec` groups
    /// fail closed on these.
    pub fn is_dnssec(&self) -> bool {
        matches!(self, DnsFailure::Bogus(_) | DnsFailure::Indeterminate(_))
    }
}

/// The DNSSEC status of one answer (RFC 4035 §4.3), as the agent's resolver
/// established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Dnssec {
    /// Validated from a trust anchor: the only state in which a key counts as
    /// DNSSEC-validated.
    Secure,
    /// Provably unsigned (a chain of trust ends in a signed denial of a DS).
    Insecure,
    /// Failed validation. The agent turns a bogus answer into
    /// [`DnsFailure::Bogus`]; this value only labels outcomes.
    Bogus,
    /// No chain of trust could be built either way (the server gave no
    /// DNSKEY or DS for the zones above the name).
    Indeterminate,
    /// Not validated: `dns.dnssec = "off"`, or `"resolver"` without the AD bit.
    #[default]
    Unvalidated,
}

impl Dnssec {
    /// Every state, in the order metrics expose them.
    pub const ALL: [Dnssec; 5] = [
        Dnssec::Secure,
        Dnssec::Insecure,
        Dnssec::Bogus,
        Dnssec::Indeterminate,
        Dnssec::Unvalidated,
    ];

    /// Whether the answer was validated from a trust anchor.
    pub fn is_secure(self) -> bool {
        self == Dnssec::Secure
    }

    /// The name `oemesh peers` and the JSON show.
    pub fn name(self) -> &'static str {
        match self {
            Dnssec::Secure => "secure",
            Dnssec::Insecure => "insecure",
            Dnssec::Bogus => "bogus",
            Dnssec::Indeterminate => "indeterminate",
            Dnssec::Unvalidated => "unvalidated",
        }
    }
}

impl fmt::Display for Dnssec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An RCODE as operators write it: `SERVFAIL`, not "Server Failure".
fn rcode_name(code: u16) -> String {
    let name = match code {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        _ => return format!("RCODE {code}"),
    };
    name.to_owned()
}

/// The answer to an [`Action::LookupKey`], as the agent's resolver gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsResult {
    /// IPSECKEY records (parsed from `RData::Unknown` type 45).
    Records {
        /// The records; order does not matter.
        records: Vec<Ipseckey>,
        /// The answer's DNSSEC status (never [`Dnssec::Bogus`]: that is a
        /// [`DnsResult::Failed`]).
        dnssec: Dnssec,
        /// The answer's TTL in seconds.
        ttl: u32,
    },
    /// A negative answer.
    NoRecords {
        /// NXDOMAIN or NODATA.
        kind: NoRecord,
        /// The negative-caching TTL (RFC 2308: the SOA minimum), if known.
        negative_ttl: Option<u32>,
        /// The denial's DNSSEC status (a bogus denial is a [`DnsResult::Failed`]).
        dnssec: Dnssec,
    },
    /// The lookup failed (SERVFAIL, refused, network) or the agent's resolver gave up.
    Failed {
        /// Why.
        reason: DnsFailure,
    },
}

impl DnsResult {
    /// The answer's DNSSEC state; `None` for a failure DNSSEC did not decide.
    pub fn dnssec(&self) -> Option<Dnssec> {
        match self {
            DnsResult::Records { dnssec, .. } | DnsResult::NoRecords { dnssec, .. } => {
                Some(*dnssec)
            }
            DnsResult::Failed {
                reason: DnsFailure::Bogus(_),
            } => Some(Dnssec::Bogus),
            DnsResult::Failed { .. } => None,
        }
    }
}

/// How IKE with one peer ended, as the agent learned from the IKE engine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IkeResult {
    /// The IKE SA and its CHILD SA are up (`IkeSaEstablished`).
    Established {
        /// Whether the peer used AUTH NULL.
        anonymous: bool,
        /// Whether the key that authenticated it came from a DNSSEC-validated answer.
        dnssec: bool,
        /// An anonymous peer accepted although the lookup of its key failed
        /// ([`PeerAnswer::Anonymous`]).
        lookup_failed: bool,
    },
    /// The engine reported failure (`Failed`, or `IkeSaDeleted` before the
    /// CHILD SA was up), with its reason.
    Failed {
        /// Why.
        reason: Failure,
    },
    /// IKE could not even start.
    NotStarted {
        /// Why.
        reason: NotStarted,
    },
    /// The engine's own retransmissions gave up.
    TimedOut,
}

/// Why an IKE attempt the machine asked for ([`Action::StartIke`]) could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotStarted {
    /// A key from IPSECKEY is not a usable Ed25519 public key.
    #[error("an IPSECKEY is not a valid Ed25519 key: {0}")]
    InvalidKey(CryptoError),
    /// The peer's address family is not this host's.
    #[error("this host has no address of {peer_addr}'s family")]
    NoAddressOfFamily {
        /// The peer.
        peer_addr: IpAddr,
    },
}

/// How the IKE engine should authenticate the peer we start IKE with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// Its Ed25519 keys from IPSECKEY, lowest precedence first, at most
    /// [`crate::ike::endpoint::MAX_PEER_KEYS`] (→ the engine's
    /// `PeerAuth::Ed25519`): the AUTH may verify with any of them, so a peer in
    /// the middle of a key rollover authenticates with its old or new key.
    Ed25519(Vec<[u8; 32]>),
    /// AUTH NULL (RFC 7619): anonymous (→ `PeerAuth::Null`).
    Null,
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::Ed25519(keys) => {
                write!(f, "Ed25519(")?;
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    for b in k.iter().take(4) {
                        write!(f, "{b:02x}")?;
                    }
                    f.write_str("…")?;
                }
                f.write_str(")")
            }
            PeerKey::Null => f.write_str("Null"),
        }
    }
}

/// The responder's answer to an IKE peer (the engine's `AuthorizePeer` event).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PeerAnswer {
    /// Check its signature against these keys (most preferred first):
    /// `authorize(sa, Some(PeerAuth::Ed25519(keys)))`.
    Ed25519 {
        /// Usable keys from the IPSECKEY records at its address's reverse
        /// name, lowest precedence first, at most
        /// [`crate::ike::endpoint::MAX_PEER_KEYS`].
        keys: Vec<[u8; 32]>,
        /// Whether the answers were DNSSEC-validated (the key's and, for an
        /// FQDN identity, its address records': the weaker counts).
        dnssec: bool,
        /// What it may send from beyond its own address, as DNS vouches
        /// (gateway mode, `oe::vouch`): give the engine
        /// `vouch(sa, ..)` before `authorize`. `keys` may then be empty (a
        /// gateway that publishes no record at its own address).
        vouched: Vec<super::vouch::VouchedFor>,
        /// Why the other selectors it proposed are not vouched for, for the log.
        not_vouched: Vec<String>,
    },
    /// Accept its AUTH NULL: `authorize(sa, Some(PeerAuth::Null))`.
    Anonymous {
        /// The lookup of a key at its address failed or timed out, so nobody
        /// knows whether it publishes one: accepted only in a group that
        /// neither requires authentication nor fails closed, and recorded as
        /// `anonymous (key lookup failed)` (pass it on in
        /// [`IkeResult::Established`]).
        lookup_failed: bool,
    },
    /// Refuse it: `authorize(sa, None)`.
    Refuse {
        /// For the log line.
        reason: String,
    },
}

/// Something the agent must do. Drain with [`super::Machine::poll_action`]
/// after every call into the machine.
#[derive(Debug)]
pub enum Action {
    /// Look up IPSECKEY at `name`; answer with `on_dns_result(now, name, ..)`.
    /// The machine gives up at `deadline` by itself (and says [`Action::CancelLookup`]).
    LookupKey {
        /// The destination (or IKE peer) the key is for.
        dst: IpAddr,
        /// The owner name: `reverse_name(dst)`, or an initiator's FQDN ID.
        name: DomainName,
        /// When the machine stops waiting.
        deadline: Instant,
    },
    /// The answer is no longer wanted: the agent may cancel the query.
    CancelLookup {
        /// The name of the [`Action::LookupKey`].
        name: DomainName,
    },
    /// Start IKE (`Endpoint::connect`) with `peer_addr` to protect traffic to `dst`;
    /// report with `on_ike_result(now, dst, peer_addr, ..)`.
    StartIke {
        /// The destination whose packets are held.
        dst: IpAddr,
        /// The IKE peer: `dst` itself or its IPSECKEY gateway.
        peer_addr: IpAddr,
        /// How to authenticate the peer.
        key: PeerKey,
        /// Whether the key came from a DNSSEC-validated answer.
        authenticated_by_dnssec: bool,
        /// When the machine stops waiting for this attempt.
        deadline: Instant,
    },
    /// Give up the IKE attempt with `peer_addr` for `dst` (`Endpoint::close`):
    /// its deadline passed or another attempt succeeded.
    CancelIke {
        /// The destination.
        dst: IpAddr,
        /// The peer of the attempt.
        peer_addr: IpAddr,
    },
    /// `dst` is private: send `packets` (held, oldest first) encrypted through
    /// the new SA, in order; cache `outcome`.
    Private {
        /// The outcome to cache.
        outcome: Outcome,
        /// Held packets, oldest first.
        packets: Held,
    },
    /// `dst` goes clear: install the bypass, send `packets` in cleartext in
    /// order, cache `outcome` until it expires.
    PassClear {
        /// The outcome to cache.
        outcome: Outcome,
        /// Held packets, oldest first.
        packets: Held,
    },
    /// `dst` publishes no key and its group negotiates by passthrough: send
    /// `packets` in cleartext and cache `outcome` (clear, until the IKE
    /// deadline) **without** a bypass route, so that later packets still reach
    /// the agent and go encrypted once an SA is up. Not a decision: `dst`
    /// stays pending, and `Private`, `PassClear` or `Drop` follows.
    Passthrough {
        /// The provisional outcome to cache.
        outcome: Outcome,
        /// Held packets, oldest first.
        packets: Held,
    },
    /// `dst` is blocked: its held packets were dropped; cache `outcome` and drop
    /// further packets until it expires.
    Drop {
        /// The outcome to cache.
        outcome: Outcome,
        /// How many held packets were dropped.
        dropped: usize,
    },
    /// Look up the A (for an IPv4 `addr`) or AAAA records of `name`: an FQDN
    /// identity that must resolve to `addr` ([`crate::trust`]), or an
    /// IPSECKEY's gateway named by name, whose address is where IKE for the
    /// destination `addr` goes. Answer with `on_address_result(now, name,
    /// addr, ..)`. The machine gives up at `deadline` by itself.
    LookupAddress {
        /// The name.
        name: DomainName,
        /// The address it must resolve to, or the destination a named
        /// gateway is for (either way, its family is the record type).
        addr: IpAddr,
        /// When the machine stops waiting.
        deadline: Instant,
    },
    /// Answer the engine's `ConfirmIdentity` for `request` (the `SaHandle`):
    /// `confirm_identity(now, sa, result.map(|_| ()))`. `Ok(dnssec)` says
    /// whether the address records were DNSSEC-validated (the attempt's key
    /// counts as validated only if both were).
    IdentityChecked {
        /// The request id given to `on_identity_check`.
        request: u64,
        /// Whether the name resolves to the responder's address.
        result: Result<bool, IdentityRefused>,
    },
    /// Answer the engine's `AuthorizePeer` for `request` (the `SaHandle`).
    AnswerPeer {
        /// The request id given to `on_ike_request`.
        request: u64,
        /// The peer's address.
        peer_addr: IpAddr,
        /// What to answer.
        answer: PeerAnswer,
    },
}

/// What became of the packet given to [`super::Machine::on_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketFate {
    /// Held until the decision; see the actions.
    Held,
    /// Decided at once from policy; the packet is in the action
    /// ([`Action::PassClear`]) or dropped ([`Action::Drop`]).
    Decided,
    /// Dropped, no decision started: too many pending destinations.
    DroppedPendingFull,
    /// Dropped, no decision started: the DNS lookup rate limit.
    DroppedRateLimited,
    /// Dropped: larger than a destination's hold limit.
    DroppedTooBig,
    /// Dropped: an address this host gives peers behind a NAT (its pool),
    /// whose SA is gone; never decided, never sent in clear.
    DroppedPoolAddress,
}

#[cfg(test)]
mod tests {
    use super::DnsFailure;

    #[test]
    fn dns_failures_read_as_operators_write_them() {
        assert_eq!(DnsFailure::Rcode(2).to_string(), "SERVFAIL");
        assert_eq!(DnsFailure::Rcode(5).to_string(), "REFUSED");
        assert_eq!(DnsFailure::Rcode(23).to_string(), "RCODE 23");
        let t = DnsFailure::Timeout(std::time::Duration::from_secs(2));
        assert_eq!(t.to_string(), "timeout after 2s");
        assert_eq!(
            DnsFailure::NoResolver.to_string(),
            "no DNS resolver configured"
        );
    }
}

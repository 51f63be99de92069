//! What was decided for a destination, why, and for how long: the value the agent
//! caches (until `expires_at`) and prints (`oemesh peers`, the decision log line).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::crypto::CryptoError;
use crate::ipseckey::{Algorithm, DomainName, Gateway};

use super::action::Dnssec;
use super::policy::PolicyMatch;

/// How traffic to the destination goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Encrypted through an ESP SA.
    Private,
    /// In cleartext, through a bypass route.
    Clear,
    /// Dropped.
    Blocked,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Private => "private",
            State::Clear => "clear",
            State::Blocked => "blocked",
        })
    }
}

/// How the peer was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Its signature verified against its key from DNS.
    Authenticated,
    /// AUTH NULL (RFC 7619): encrypted, but anyone could be on the other end.
    Anonymous,
    /// Not private: no peer authentication at all.
    None,
}

/// The kind of negative DNS answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoRecord {
    /// The name does not exist.
    Nxdomain,
    /// The name exists but has no IPSECKEY.
    Nodata,
}

impl fmt::Display for NoRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoRecord::Nxdomain => "NXDOMAIN",
            NoRecord::Nodata => "NODATA",
        })
    }
}

/// Why one IPSECKEY record could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnusableWhy {
    /// An algorithm other than EdDSA (4).
    Algorithm(Algorithm),
    /// EdDSA, but not a 32-byte Ed25519 key (Ed448 is 57).
    KeyLength(usize),
    /// 32 bytes, but not an Ed25519 key to trust: not a curve point, a point
    /// of small order (it would vouch for any message), or not canonical.
    BadKey(CryptoError),
}

/// One record that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unusable {
    /// Its precedence.
    pub precedence: u8,
    /// Its gateway.
    pub gateway: Gateway,
    /// Why it was skipped.
    pub why: UnusableWhy,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "precedence {}: ", self.precedence)?;
        match &self.why {
            UnusableWhy::Algorithm(a) => write!(f, "algorithm {a:?} is not supported"),
            UnusableWhy::KeyLength(n) => {
                write!(f, "EdDSA key of {n} bytes is not Ed25519 (32)")
            }
            UnusableWhy::BadKey(e) => write!(f, "{e}"),
        }
    }
}

/// Why there was no key to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoKey {
    /// A negative answer.
    NoRecord(NoRecord),
    /// Records, none usable.
    Unusable(Vec<Unusable>),
    /// A key, but `require-dnssec` and the answer is not secure.
    NotSecure(Dnssec),
}

impl fmt::Display for NoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoKey::NoRecord(kind) => write!(f, "no IPSECKEY ({kind})"),
            NoKey::NotSecure(state) => write!(
                f,
                "IPSECKEY not DNSSEC-secure ({state}), and the group requires DNSSEC"
            ),
            NoKey::Unusable(list) => {
                f.write_str("no usable IPSECKEY (")?;
                for (i, u) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{u}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Whom one attempt went to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptPeer {
    /// An address: the destination itself, or a gateway its record gave by
    /// address.
    Addr(IpAddr),
    /// A gateway its record gave by name (IPSECKEY gateway type 3).
    Named {
        /// The gateway's name.
        name: DomainName,
        /// The address it resolved to; `None`: it gave no usable address, and
        /// no IKE was tried.
        addr: Option<IpAddr>,
    },
}

impl AttemptPeer {
    /// The address IKE went to, if it went anywhere.
    pub fn addr(&self) -> Option<IpAddr> {
        match self {
            AttemptPeer::Addr(a) => Some(*a),
            AttemptPeer::Named { addr, .. } => *addr,
        }
    }
}

/// `192.0.2.1`, `192.0.2.1 (gateway gw.example.)`, `gateway gw.example.`.
impl fmt::Display for AttemptPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptPeer::Addr(a) => write!(f, "{a}"),
            AttemptPeer::Named {
                name,
                addr: Some(a),
            } => write!(f, "{a} (gateway {name})"),
            AttemptPeer::Named { name, addr: None } => write!(f, "gateway {name}"),
        }
    }
}

/// One IKE attempt that did not establish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptFailure {
    /// Whom IKE went to, or was to go to.
    pub peer: AttemptPeer,
    /// `None`: it timed out; else the engine's reason or, for a gateway name
    /// that gave no address, why (`has no address: NXDOMAIN`).
    pub reason: Option<String>,
}

impl AttemptFailure {
    /// Whether the attempt never reached IKE: its gateway's name gave no
    /// usable address.
    pub fn unresolved(&self) -> bool {
        matches!(self.peer, AttemptPeer::Named { addr: None, .. })
    }
}

/// `192.0.2.1: timed out`, `gateway gw.example. has no address: NXDOMAIN`.
impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason.as_deref().unwrap_or("timed out");
        if self.unresolved() {
            write!(f, "{} {reason}", self.peer)
        } else {
            write!(f, "{}: {reason}", self.peer)
        }
    }
}

/// What decided the outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The policy group alone (`clear`, `clear-or-private`, `block`).
    Policy,
    /// DNS had no usable key, and no anonymous IKE was tried.
    NoKey(NoKey),
    /// The DNS lookup failed.
    DnsFailed(super::DnsFailure),
    /// The DNS lookup did not answer in time.
    DnsTimeout(Duration),
    /// IKE established.
    Established {
        /// The IKE peer.
        peer_addr: IpAddr,
    },
    /// Every IKE attempt failed or the IKE deadline passed.
    IkeFailed {
        /// The attempts, in order.
        attempts: Vec<AttemptFailure>,
        /// Time from the first attempt to giving up.
        after: Duration,
        /// Whether the key came from DNS (`false`: anonymous attempt).
        key_in_dns: bool,
    },
    /// Provisional: no key in DNS, packets pass in clear while anonymous IKE
    /// runs (`negotiation = "passthrough"`).
    Passthrough,
}

impl Cause {
    /// A short, stable label of what decided an outcome, for metrics
    /// (`oemesh_decisions_total{reason=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Policy => "policy",
            Cause::NoKey(NoKey::NoRecord(_)) => "no_ipseckey",
            Cause::NoKey(NoKey::Unusable(_)) => "unusable_ipseckey",
            Cause::NoKey(NoKey::NotSecure(_)) => "ipseckey_not_secure",
            Cause::DnsFailed(f) if f.is_dnssec() => "dnssec_failed",
            Cause::DnsFailed(_) => "dns_failed",
            Cause::DnsTimeout(_) => "dns_timeout",
            Cause::Established { .. } => "ike_established",
            Cause::IkeFailed { attempts, .. } if attempts.iter().all(|a| a.reason.is_none()) => {
                "ike_timeout"
            }
            Cause::IkeFailed { .. } => "ike_failed",
            Cause::Passthrough => "passthrough",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Policy => f.write_str("policy"),
            Cause::NoKey(k) => write!(f, "{k}"),
            Cause::DnsFailed(r) => write!(f, "DNS lookup failed: {r}"),
            Cause::DnsTimeout(d) => write!(f, "DNS timed out after {}", human(*d)),
            Cause::Established { peer_addr } => write!(f, "IKE established with {peer_addr}"),
            Cause::Passthrough => {
                f.write_str("no key in DNS; passthrough while anonymous IKE runs")
            }
            Cause::IkeFailed {
                attempts,
                after,
                key_in_dns,
            } => {
                let key = if *key_in_dns {
                    "key in DNS"
                } else {
                    "anonymous, no key in DNS"
                };
                match attempts.as_slice() {
                    [a] if a.unresolved() => write!(f, "{a} ({key})"),
                    [
                        AttemptFailure {
                            peer: AttemptPeer::Addr(_),
                            reason: None,
                        },
                    ] => write!(f, "IKE timed out after {} ({key})", human(*after)),
                    [AttemptFailure { peer, reason }] => {
                        let r = reason.as_deref().map_or_else(
                            || format!("timed out after {}", human(*after)),
                            |r| format!("failed: {r}"),
                        );
                        write!(f, "IKE with {peer} {r} ({key})")
                    }
                    _ => {
                        write!(f, "IKE failed after {}, ", human(*after))?;
                        for (i, a) in attempts.iter().enumerate() {
                            if i > 0 {
                                f.write_str("; ")?;
                            }
                            write!(f, "{a}")?;
                        }
                        write!(f, " ({key})")
                    }
                }
            }
        }
    }
}

/// The decision for one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The destination (or, for a responder-side SA, the peer).
    pub dst: IpAddr,
    /// Private, clear or blocked.
    pub state: State,
    /// How the peer authenticated.
    pub auth: Auth,
    /// Whether the key came from a DNSSEC-validated answer.
    pub dnssec: bool,
    /// The DNSSEC status of the answer behind the decision, when DNS was
    /// asked (`None`: policy, or an SA the peer started).
    pub dnssec_state: Option<Dnssec>,
    /// The policy group and prefix that applied.
    pub policy: PolicyMatch,
    /// What decided it.
    pub cause: Cause,
    /// A peer that was private before now is not, while its key is still in
    /// DNS: someone may be blocking IKE. Logged loudly, counted.
    pub downgrade: bool,
    /// When it was decided.
    pub decided_at: Instant,
    /// When the agent should forget it (remove the bypass; the next packet
    /// decides again). `None` for private: it lives as long as the SA.
    pub expires_at: Option<Instant>,
    /// One line for people: `no IPSECKEY (NXDOMAIN) → clear for 15m`.
    pub reason: String,
}

impl Outcome {
    /// Builds the outcome and its reason line.
    pub(crate) fn new(
        dst: IpAddr,
        state: State,
        auth: Auth,
        policy: PolicyMatch,
        cause: Cause,
        now: Instant,
        lifetime: Option<Duration>,
    ) -> Self {
        let mut reason = match &cause {
            Cause::Policy => format!("policy {policy}"),
            other => other.to_string(),
        };
        reason.push_str(" → ");
        reason.push_str(&state.to_string());
        match (state, auth) {
            (State::Private, Auth::Authenticated) => reason.push_str(" (authenticated)"),
            (State::Private, Auth::Anonymous) => reason.push_str(" (anonymous, AUTH NULL)"),
            _ => {}
        }
        if let Some(d) = lifetime {
            reason.push_str(" for ");
            reason.push_str(&human(d));
        }
        Self {
            dst,
            state,
            auth,
            dnssec: false,
            dnssec_state: None,
            policy,
            cause,
            downgrade: false,
            decided_at: now,
            expires_at: lifetime.map(|d| now + d),
            reason,
        }
    }

    /// Records whether the key was DNSSEC-validated, and says which in the
    /// reason of an authenticated private outcome: without DNSSEC the
    /// signature proves only that the peer holds the key DNS gave, and a
    /// forged answer is indistinguishable from a real one.
    pub(crate) fn with_dnssec(mut self, dnssec: bool, state: Option<Dnssec>) -> Self {
        self.dnssec = dnssec;
        self.dnssec_state = state.or(dnssec.then_some(Dnssec::Secure));
        if self.state == State::Private && self.auth == Auth::Authenticated {
            self.reason.push_str(if dnssec {
                " (key DNSSEC-validated)"
            } else {
                " (key not DNSSEC-validated)"
            });
        }
        self
    }

    /// Whether this outcome deserves a warning rather than an info line:
    /// blocked, a downgrade, or clear although the peer publishes a key (it
    /// meant to be private: IKE failing toward it may be an attacker dropping
    /// IKE, the active downgrade OE cannot prevent without `private`).
    pub fn is_warning(&self) -> bool {
        let key_in_dns = matches!(
            self.cause,
            Cause::IkeFailed {
                key_in_dns: true,
                ..
            }
        );
        self.downgrade || self.state == State::Blocked || (self.state == State::Clear && key_in_dns)
    }

    /// Appends a note to the reason line.
    pub(crate) fn note(mut self, note: &str) -> Self {
        self.reason.push_str("; ");
        self.reason.push_str(note);
        self
    }

    /// Marks a downgrade and says so in the reason.
    pub(crate) fn downgraded(mut self) -> Self {
        self.downgrade = true;
        self.note("DOWNGRADE: peer was private")
    }

    /// How long it is valid from `decided_at`, `None` for as long as the SA lives.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at
            .map(|e| e.saturating_duration_since(self.decided_at))
    }
}

/// `10.77.0.4: no IPSECKEY (NXDOMAIN) → clear for 15m` — the decision log line.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.dst, self.reason)
    }
}

/// A duration as people write it: `15m`, `1h`, `90s`, `2s`, `500ms`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            return format!("{}s", ms / 1000);
        }
        return if secs == 0 {
            format!("{ms}ms")
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs >= 60 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

//! The control protocol: one JSON object per line over a Unix stream socket,
//! request then reply, as many pairs per connection as the client likes.
//!
//! ```text
//! → {"request":"status"}
//! ← {"reply":"status","version":"0.1.0",...}
//! → {"request":"peers"}
//! ← {"reply":"peers","peers":[{"peer":"192.0.2.20","state":"private",...}]}
//! → {"request":"check","addr":"192.0.2.20"}
//! ← {"reply":"check","addr":"192.0.2.20","group":"private-or-clear",...}
//! ← {"reply":"error","message":"..."}
//! ```
//!
//! The names here are a contract with scripts (`oemesh peers --json` prints
//! [`PeerInfo`] as is): fields may be added, never renamed.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Longest request line the server reads; longer ones are refused.
pub const MAX_REQUEST_LEN: usize = 4096;

/// A request from `oemesh status|peers|check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Unknown fields are ignored: a newer client may add some for a newer agent.
#[serde(tag = "request", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The agent's own state.
    Status,
    /// Every peer with its outcome.
    Peers,
    /// What the agent knows and would do for one address.
    Check {
        /// The address asked about.
        addr: IpAddr,
    },
    /// Re-read the configuration file and the host key the agent was started
    /// with, and apply the difference (`oemesh reload`, SIGHUP).
    Reload,
}

/// A reply, tagged with the kind of request it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reply {
    /// Answers [`Request::Status`].
    Status(StatusReply),
    /// Answers [`Request::Peers`].
    Peers {
        /// One entry per peer the agent has state for.
        peers: Vec<PeerInfo>,
    },
    /// Answers [`Request::Check`].
    Check(CheckReply),
    /// Answers [`Request::Reload`]: the new configuration is running.
    Reloaded(ReloadReport),
    /// The request could not be served.
    Error {
        /// What went wrong, for a person.
        message: String,
    },
}

/// The agent's own state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The agent's version.
    pub version: String,
    /// Its process ID.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// This host's identity address (the first of `addresses`).
    pub address: Option<IpAddr>,
    /// This host's addresses, one per family, IPv4 first.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Whether a host key is loaded (otherwise anonymous OE only).
    pub authenticated: bool,
    /// The host's Ed25519 public key, base64 (as in its IPSECKEY record).
    pub public_key: Option<String>,
    /// The TUN device.
    pub tun: String,
    /// Whether the TUN runs with offload (IFF_VNET_HDR).
    pub tun_offload: bool,
    /// TUN queues in use.
    pub tun_queues: u32,
    /// Our routing table.
    pub table: u32,
    /// The mark on our sockets.
    pub fwmark: u32,
    /// DNS servers asked for IPSECKEY.
    pub dns_servers: Vec<String>,
    /// Who validates DNSSEC: `validate (root KSKs, anchors for …)`,
    /// `resolver (AD bit)`, `off`.
    #[serde(default)]
    pub dnssec: String,
    /// The metrics endpoint, if any.
    pub metrics: Option<String>,
    /// Peers by state.
    pub peers: PeerCounts,
    /// This host's IKE identity (`192.0.2.10`, or `ID_NULL` when anonymous only).
    #[serde(default)]
    pub identity: String,
    /// The policy, one `prefix group` line per entry, longest prefix first.
    #[serde(default)]
    pub policy: Vec<String>,
    /// Gateway mode: the subnets behind this host (`gateway.protects`),
    /// empty for a host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
    /// The configuration file the agent runs (and reloads) from.
    #[serde(default)]
    pub config: String,
    /// Reloads applied since the start (`oemesh reload`, SIGHUP).
    #[serde(default)]
    pub reloads: u64,
    /// Seconds since the last reload applied, if any.
    #[serde(default)]
    pub reloaded_s_ago: Option<u64>,
    /// Installed ESP SA pairs (CHILD SAs, counting those kept through a rekey).
    #[serde(default)]
    pub sas: u64,
    /// IKE SAs in any state.
    #[serde(default)]
    pub ike_sas: u64,
    /// Responder IKE SAs not yet authenticated.
    #[serde(default)]
    pub half_open: u64,
    /// COOKIE notifies sent: IKE_SA_INIT requests answered statelessly
    /// because too many IKE SAs were half-open (RFC 7296 §2.6), by the UDP
    /// workers and by the engine.
    #[serde(default)]
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests left without a COOKIE reply because their
    /// source's reply rate (`ike.cookie_rate`) was used up.
    #[serde(default)]
    pub cookies_limited: u64,
    /// IKE messages dropped: unparsable, unknown SPI, half-open limit reached,
    /// or the control plane's queue full.
    #[serde(default)]
    pub ike_dropped: u64,
    /// Packets held now, over all destinations being decided.
    #[serde(default)]
    pub held_packets: u64,
    /// Packets to new destinations dropped because the IPSECKEY lookup rate
    /// limit was exhausted.
    #[serde(default)]
    pub lookups_rate_limited: u64,
    /// Packets to new destinations dropped because the most destinations
    /// were being decided already.
    #[serde(default)]
    pub pending_full: u64,
    /// Packets dropped so far (block, fail closed, hold overflow, ESP failures).
    #[serde(default)]
    pub drops: u64,
}

/// Number of peers in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// With a live ESP SA pair.
    pub private: u64,
    /// Cleartext, remembered.
    pub clear: u64,
    /// Decision in progress, packets held.
    pub pending: u64,
    /// Dropped by policy or fail-closed.
    pub blocked: u64,
}

/// A peer's state (the `state` field of `oemesh peers --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// ESP SA pair established.
    Private,
    /// Cleartext (no key, IKE failed, or policy).
    Clear,
    /// Decision in progress.
    Pending,
    /// Dropped.
    Blocked,
}

/// How the peer authenticated in IKE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAuth {
    /// With a key published in DNS (RFC 7427 signature).
    Authenticated,
    /// AUTH NULL (RFC 7619).
    Anonymous,
}

/// One peer, as `oemesh peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's address.
    pub peer: IpAddr,
    /// Its state.
    pub state: PeerState,
    /// How it authenticated; `None` unless private.
    pub auth: Option<PeerAuth>,
    /// Whether the key that authenticated it came from a DNSSEC-secure answer.
    pub dnssec: bool,
    /// The DNSSEC state of the answer behind the decision: `secure`,
    /// `insecure`, `bogus`, `indeterminate` or `unvalidated`; absent when DNS
    /// was not asked (policy, or an SA the peer started without a lookup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec_state: Option<String>,
    /// Why it is in this state, for a person ("no IPSECKEY (NXDOMAIN)").
    pub reason: String,
    /// Seconds until the state expires (SA lifetime, clear lifetime); `None`: no expiry.
    pub expires_in_s: Option<u64>,
    /// Bytes received from it (decrypted, or cleartext seen by the agent).
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// The policy group of its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where its ESP goes and comes from: its address and UDP port as this
    /// host sees them (a NAT's, when it is behind one); private peers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    /// Behind a NAT (RFC 7296 §3.15), the address used inside the SA: the
    /// one this host gave the peer from `nat.pool` (then `peer` itself), or
    /// the one the peer gave this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<IpAddr>,
    /// Whether `assigned` is this host's (the peer gave it), not the peer's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub assigned_to_us: bool,
}

/// What the agent knows and would do for one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReply {
    /// The address asked about.
    pub addr: IpAddr,
    /// Its policy group.
    pub group: String,
    /// The configured prefix that decided the group; `None`: no prefix matched (clear).
    pub prefix: Option<String>,
    /// The reverse name its IPSECKEY would be published at.
    pub reverse_name: String,
    /// What the next packet to it would cause, for a person.
    pub action: String,
    /// Current state, when the agent has any.
    pub peer: Option<PeerInfo>,
    /// The live IPSECKEY lookup done for this request: `2 IPSECKEY record(s)
    /// (DNSSEC-validated)`, `no IPSECKEY (NXDOMAIN)`, `DNS failure (...)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipseckey: Option<String>,
    /// That lookup's DNSSEC state: `secure`, `insecure`, `bogus`,
    /// `indeterminate` or `unvalidated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec: Option<String>,
    /// Where the verdict came from: the trust anchor the chain starts at, or
    /// the resolver whose AD bit was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec_chain: Option<String>,
}

/// Why a request line was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// More than [`MAX_REQUEST_LEN`] bytes.
    #[error("request longer than {MAX_REQUEST_LEN} bytes")]
    TooLong,
    /// Not UTF-8 JSON of a known request.
    #[error("malformed request: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses one request line (with or without its trailing newline). Pure: the
/// fuzz target calls it on arbitrary bytes.
pub fn parse_request(line: &[u8]) -> Result<Request, ParseError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(ParseError::TooLong);
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(serde_json::from_slice(line)?)
}

/// One line of JSON (newline included) for `value`.
pub fn encode_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys.
    let mut out = serde_json::to_vec(value).unwrap_or_else(|e| {
        serde_json::to_vec(&Reply::Error {
            message: format!("cannot encode reply: {e}"),
        })
        .unwrap_or_default()
    });
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(b"{\"request\":\"status\"}\n").unwrap(),
            Request::Status
        );
        assert_eq!(
            parse_request(b"{\"request\":\"peers\"}\r\n").unwrap(),
            Request::Peers
        );
        assert_eq!(
            parse_request(br#"{"request":"check","addr":"2001:db8::1"}"#).unwrap(),
            Request::Check {
                addr: "2001:db8::1".parse().unwrap()
            }
        );
        for bad in [
            &b""[..],
            b"{}",
            b"{\"request\":\"reboot\"}",
            b"{\"request\":\"check\",\"addr\":\"nope\"}",
            b"\xff\xfe",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_request(&[b' '; 5000]),
            Err(ParseError::TooLong)
        ));
        let extra = parse_request(b"{\"request\":\"status\",\"extra\":1}");
        assert_eq!(extra.unwrap(), Request::Status);
    }

    #[test]
    fn peer_json_field_names_are_the_contract() {
        let p = PeerInfo {
            peer: "192.0.2.20".parse().unwrap(),
            state: PeerState::Private,
            auth: Some(PeerAuth::Authenticated),
            dnssec: true,
            dnssec_state: None,
            reason: "IKE established".into(),
            expires_in_s: Some(3500),
            bytes_in: 1,
            bytes_out: 2,
            group: None,
            endpoint: None,
            assigned: None,
            assigned_to_us: false,
        };
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"peer":"192.0.2.20","state":"private","auth":"authenticated",
                "dnssec":true,"reason":"IKE established","expires_in_s":3500,
                "bytes_in":1,"bytes_out":2})
        );
        let clear = PeerInfo {
            state: PeerState::Clear,
            auth: None,
            ..p.clone()
        };
        let v = serde_json::to_value(&clear).unwrap();
        assert_eq!(v["state"], "clear");
        assert_eq!(v["auth"], serde_json::Value::Null);
        // A peer behind a NAT: where it is, and the address it was given.
        let natted = PeerInfo {
            peer: "100.64.0.1".parse().unwrap(),
            endpoint: Some("198.51.100.1:4500".parse().unwrap()),
            assigned: Some("100.64.0.1".parse().unwrap()),
            ..p
        };
        let v = serde_json::to_value(&natted).unwrap();
        assert_eq!(v["endpoint"], "198.51.100.1:4500");
        assert_eq!(v["assigned"], "100.64.0.1");
        assert!(v.get("assigned_to_us").is_none());
    }

    #[test]
    fn replies_round_trip() {
        let r = Reply::Error {
            message: "x".into(),
        };
        let line = encode_line(&r);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(serde_json::from_slice::<Reply>(&line).unwrap(), r);
        let s = Reply::Status(StatusReply::default());
        assert_eq!(
            serde_json::from_slice::<Reply>(&encode_line(&s)).unwrap(),
            s
        );
    }
}

/// What a reload changed. An invalid configuration is refused whole with
/// [`Reply::Error`] instead, and the running one stays.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The file read.
    pub config: String,
    /// Policy prefixes: `+ 10.1.0.0/16 private`, `- 192.0.2.0/24 clear`,
    /// `~ 198.51.100.0/24 private-or-clear -> private`.
    pub policy: Vec<String>,
    /// Group options that changed: `require-dnssec: private`, ...
    pub options: Vec<String>,
    /// The host key: `new host key <base64>`, `host key removed (anonymous only)`;
    /// `None` when unchanged.
    pub key: Option<String>,
    /// `[dns]` servers, timeout, DNSSEC or trust anchors changed: what runs now.
    pub dns: Option<String>,
    /// Peers whose SAs were closed, because the new policy does not allow
    /// them: `192.0.2.20: now in `clear``.
    pub closed: Vec<String>,
    /// Cached clear or blocked outcomes whose group changed: their next
    /// packet is decided again under the new policy.
    pub forgotten: u64,
    /// Settings that changed in the file but apply only at the next start
    /// (`[ike]`, `[tun]`, `[routing]`, ...).
    pub restart_needed: Vec<String>,
}

impl ReloadReport {
    /// Whether anything was applied.
    pub fn changed(&self) -> bool {
        !(self.policy.is_empty()
            && self.options.is_empty()
            && self.key.is_none()
            && self.dns.is_none()
            && self.closed.is_empty()
            && self.forgotten == 0)
    }
}

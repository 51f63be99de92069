//! The server's answer to an UPDATE, and what each refusal means for the admin.

use std::net::SocketAddr;

use hickory_proto::op::{DnsResponse, ResponseCode};
use hickory_proto::rr::TSigVerifier;
use hickory_proto::rr::rdata::tsig::TsigError;

use super::{PlanError, Updater};
use crate::transport::TransportError;

/// Why an update did not happen. Each message says what it means and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// No answer, or the connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// TSIG BADKEY (RFC 8945 §5.2.1): the server has no key of that name and algorithm.
    #[error(
        "the server does not know TSIG key '{key}' (BADKEY); check that the server's \
         configuration defines key '{key}' with algorithm hmac-sha256 (BIND: a key statement \
         in named.conf; Knot DNS: an entry under keys: in knot.conf) and that the key name in \
         the --tsig-key file is the same"
    )]
    BadKey {
        /// the key name we used
        key: String,
    },
    /// TSIG BADSIG (RFC 8945 §5.2.2): the key name is known, the MAC is wrong.
    #[error(
        "the server knows TSIG key '{key}' but our signature does not verify (BADSIG): the \
         secret in the --tsig-key file differs from the server's; copy the key again"
    )]
    BadSig {
        /// the key name we used
        key: String,
    },
    /// TSIG BADTIME (RFC 8945 §5.2.3): the clocks differ by more than the fudge.
    #[error(
        "the server refused our TSIG signature because our clock differs from its clock by \
         more than 300 seconds (BADTIME); fix the time on this host or the server (NTP)"
    )]
    BadTime,
    /// NOTAUTH without a TSIG error.
    #[error(
        "the server is not authoritative for zone '{zone}' or does not accept TSIG key \
         '{key}' for it (NOTAUTH); check --zone and that --server is the zone's primary"
    )]
    NotAuth {
        /// the zone
        zone: String,
        /// the key name we used
        key: String,
    },
    /// REFUSED: the policy does not allow this key to change this name.
    #[error(
        "the server refused the update (REFUSED): TSIG key '{key}' may not change {name} in \
         zone '{zone}'; allow it in the zone's update policy (BIND: update-policy {{ grant {key} \
         zonesub IPSECKEY; }}; Knot DNS: an acl with action: update and key: {key}, listed in \
         the zone's acl)"
    )]
    Refused {
        /// the key name we used
        key: String,
        /// the owner name
        name: String,
        /// the zone
        zone: String,
    },
    /// NOTZONE: the name is not in the zone the UPDATE named.
    #[error("{name} is not in zone '{zone}' (NOTZONE); check --zone")]
    NotZone {
        /// the owner name
        name: String,
        /// the zone
        zone: String,
    },
    /// Another error code.
    #[error("the server rejected the update with {code}{hint}")]
    Rejected {
        /// the response code
        code: ResponseCode,
        /// advice for known codes
        hint: &'static str,
    },
    /// A prerequisite failed (internal: triggers a re-read and re-plan).
    #[error("the IPSECKEY records changed while we were updating them ({0})")]
    PrerequisiteFailed(ResponseCode),
    /// The RRset kept changing between our read and our UPDATE.
    #[error(
        "the IPSECKEY records at {name} kept changing while we updated them ({code}); \
         nothing was changed by us; try again"
    )]
    Concurrent {
        /// the owner name
        name: String,
        /// the last response code
        code: ResponseCode,
    },
    /// An answer that is not signed with our key, or whose signature fails.
    #[error(
        "the answer from {server} is not correctly signed with TSIG key '{key}' ({detail}); \
         not trusting it: the update may or may not have been applied, check with 'dnskeys verify'"
    )]
    UnsignedAnswer {
        /// the server
        server: SocketAddr,
        /// the key name
        key: String,
        /// what failed
        detail: String,
    },
    /// Reading the current records failed.
    #[error("reading the IPSECKEY records at {name} from {server} failed: {code}")]
    ReadFailed {
        /// the owner name
        name: String,
        /// the server
        server: SocketAddr,
        /// the response code
        code: ResponseCode,
    },
    /// The server answered, but not authoritatively.
    #[error(
        "{server} is not authoritative for {name}; --server must be the primary server of its zone"
    )]
    NotAuthoritative {
        /// the owner name
        name: String,
        /// the server
        server: SocketAddr,
    },
    /// The name is a CNAME (e.g. RFC 2317 classless reverse delegation).
    #[error(
        "{name} is an alias (CNAME to {target}); publish the key at the target name's server and zone"
    )]
    Alias {
        /// the owner name
        name: String,
        /// the CNAME target
        target: String,
    },
    /// The zone of the name could not be found from the SOA.
    #[error("cannot find the zone of {name} at {server}: {why}; pass --zone ZONE")]
    NoZone {
        /// the owner name
        name: String,
        /// the server
        server: SocketAddr,
        /// what was wrong with the answer
        why: String,
    },
    /// The name is not inside the zone given with `--zone`.
    #[error(
        "{name} is not inside --zone {zone}; the reverse name of the address must be in the zone"
    )]
    OutsideZone {
        /// the owner name
        name: String,
        /// the zone
        zone: String,
    },
    /// The records do not allow this step (rotate).
    #[error(transparent)]
    Plan(PlanError),
    /// Something that should not happen (signing, randomness).
    #[error("{0}")]
    Internal(String),
}

/// Checks a response to a signed UPDATE: TSIG errors first (those answers are
/// unsigned), then the answer's signature, then the response code.
pub(super) fn check(
    up: &Updater<'_>,
    response: DnsResponse,
    verifier: Option<TSigVerifier>,
) -> Result<(), UpdateError> {
    let key = up.key.name.to_ascii().trim_end_matches('.').to_owned();
    let zone = up.zone.to_ascii();
    let name = up.name.to_ascii();
    if let Some(tsig) = response.signature() {
        match tsig.data.error {
            Some(TsigError::BadKey) => return Err(UpdateError::BadKey { key }),
            Some(TsigError::BadSig) => return Err(UpdateError::BadSig { key }),
            Some(TsigError::BadTime) => return Err(UpdateError::BadTime),
            _ => {}
        }
    }
    let code = response.response_code;
    let unsigned = |detail: String| UpdateError::UnsignedAnswer {
        server: up.server.addr,
        key: key.clone(),
        detail,
    };
    match verifier {
        Some(mut v) => {
            if let Err(e) = v.verify(response.as_buffer()) {
                // An unsigned NOTAUTH is how servers without TSIG detail refuse a key.
                if code == ResponseCode::NotAuth {
                    return Err(UpdateError::NotAuth { zone, key });
                }
                return Err(unsigned(e.to_string()));
            }
        }
        None => return Err(unsigned("no verifier".into())),
    }
    match code {
        ResponseCode::NoError => Ok(()),
        ResponseCode::YXRRSet
        | ResponseCode::NXRRSet
        | ResponseCode::YXDomain
        | ResponseCode::NXDomain => Err(UpdateError::PrerequisiteFailed(code)),
        ResponseCode::Refused => Err(UpdateError::Refused { key, name, zone }),
        ResponseCode::NotAuth => Err(UpdateError::NotAuth { zone, key }),
        ResponseCode::NotZone => Err(UpdateError::NotZone { name, zone }),
        ResponseCode::ServFail => Err(UpdateError::Rejected {
            code,
            hint: " (SERVFAIL): the server failed to apply it; see its log (zone not loaded, journal not writable?)",
        }),
        ResponseCode::NotImp => Err(UpdateError::Rejected {
            code,
            hint: " (NOTIMP): the server does not implement dynamic update",
        }),
        ResponseCode::FormErr => Err(UpdateError::Rejected {
            code,
            hint: " (FORMERR): the server could not parse the UPDATE; please report this",
        }),
        _ => Err(UpdateError::Rejected { code, hint: "" }),
    }
}

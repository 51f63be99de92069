//! RFC 2136 dynamic UPDATE of the IPSECKEY RRset at a host's reverse name,
//! signed with TSIG (RFC 8945, hmac-sha256).
//!
//! Every change is one UPDATE message, which the server applies entirely or
//! not at all (RFC 2136 §3.4: "all or nothing"). The message carries the RRset
//! we read as its prerequisite ([`plan`]), so a concurrent change makes the
//! server answer YXRRSET/NXRRSET and change nothing; we then read again and
//! re-plan, a few times, before giving up with [`UpdateError::Concurrent`].
//!
//! Driving it: [`Updater::apply`] with a closure that turns the current RRset
//! into a [`plan::Plan`].

pub mod plan;
mod response;

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

pub use self::plan::{Current, Plan, PlanError, RrSet};
pub use self::response::UpdateError;
use crate::transport::{Server, Transport};
use crate::tsig::TsigKey;

/// The IPSECKEY type in hickory's terms (it has no IPSECKEY type of its own).
pub const IPSECKEY: RecordType = RecordType::Unknown(oemesh_core::ipseckey::RR_TYPE);

/// How many times a plan is re-made after a concurrent change.
const ATTEMPTS: usize = 3;

/// The outcome of [`Updater::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The zone the UPDATE was sent for.
    pub zone: Name,
    /// The RRset before.
    pub before: RrSet,
    /// What was done (the last plan, the one the server accepted).
    pub plan: Plan,
    /// True when nothing needed to change, so no UPDATE was sent.
    pub noop: bool,
}

/// Sends UPDATEs for one name to one server with one TSIG key.
#[derive(Debug)]
pub struct Updater<'a> {
    /// The primary server.
    pub server: Server,
    /// The signing key.
    pub key: &'a TsigKey,
    /// The owner name.
    pub name: Name,
    /// The zone, given with `--zone` or found with [`find_zone`].
    pub zone: Name,
}

impl Updater<'_> {
    /// Reads the RRset, asks `make_plan` what to change, and sends that as one
    /// signed UPDATE; repeats (at most three times) if the RRset changed meanwhile.
    pub async fn apply(
        &self,
        mut make_plan: impl FnMut(&RrSet) -> Result<Plan, PlanError>,
    ) -> Result<Applied, UpdateError> {
        let mut last = None;
        let mut synthesized = false;
        for _ in 0..ATTEMPTS {
            let mut before = read_rrset(&self.server, &self.name).await?;
            if synthesized {
                // What we read was a wildcard's answer: nothing is at the name.
                before = RrSet::default();
            }
            let plan = make_plan(&before).map_err(UpdateError::Plan)?;
            if plan.is_noop(&before) {
                return Ok(Applied {
                    zone: self.zone.clone(),
                    before,
                    plan,
                    noop: true,
                });
            }
            let message = self.message(&plan)?;
            match self.send(message).await {
                Ok(()) => {
                    return Ok(Applied {
                        zone: self.zone.clone(),
                        before,
                        plan,
                        noop: false,
                    });
                }
                Err(UpdateError::PrerequisiteFailed(code)) => {
                    last = Some(code);
                    // "RRset exists" failed for records we did read: a
                    // wildcard above the name answered for it (RFC 4592),
                    // and the name itself holds nothing.
                    if code == ResponseCode::NXRRSet && !before.records.is_empty() && !synthesized {
                        synthesized = self.wildcard_answered(&before).await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(UpdateError::Concurrent {
            name: self.name.to_ascii(),
            code: last.unwrap_or(ResponseCode::YXRRSet),
        })
    }

    /// Whether `read` (the RRset read at our name) is the RRset of a wildcard
    /// between the name and its zone's apex: then the server synthesized it.
    async fn wildcard_answered(&self, read: &RrSet) -> Result<bool, UpdateError> {
        let mut rdata: Vec<&[u8]> = read.records.iter().map(|c| c.rdata.as_slice()).collect();
        rdata.sort_unstable();
        let mut parent = self.name.base_name();
        while self.zone.zone_of(&parent) {
            let Ok(wildcard) = Name::from_ascii("*").and_then(|star| star.append_domain(&parent))
            else {
                break;
            };
            let there = read_rrset(&self.server, &wildcard).await?;
            let mut theirs: Vec<&[u8]> = there.records.iter().map(|c| c.rdata.as_slice()).collect();
            theirs.sort_unstable();
            if !theirs.is_empty() && theirs == rdata {
                return Ok(true);
            }
            if parent.num_labels() == 0 || parent == self.zone {
                break;
            }
            parent = parent.base_name();
        }
        Ok(false)
    }

    /// The unsigned UPDATE message for `plan`.
    pub fn message(&self, plan: &Plan) -> Result<Message, UpdateError> {
        let mut m = Message::new(random_id()?, MessageType::Query, OpCode::Update);
        // Zone section (RFC 2136 §2.3): ZNAME, ZTYPE SOA, ZCLASS IN.
        let mut zone = Query::query(self.zone.clone(), RecordType::SOA);
        zone.set_query_class(DNSClass::IN);
        m.add_query(zone);
        // Prerequisite section (§2.4), carried in the answer section.
        if plan.prerequisite.is_empty() {
            // §2.4.3 RRset does not exist: class NONE, TTL 0, RDLENGTH 0.
            let mut r = Record::update0(self.name.clone(), 0, IPSECKEY);
            r.dns_class = DNSClass::NONE;
            m.add_answer(r);
        } else {
            // §2.4.2 RRset exists (value dependent): class IN, TTL 0, every RR.
            for rdata in &plan.prerequisite {
                m.add_answer(self.record(rdata.clone(), 0, DNSClass::IN));
            }
        }
        // Update section (§2.5), carried in the authority section; applied in order.
        for rdata in &plan.delete {
            // §2.5.4 Delete an RR from an RRset: class NONE, TTL 0.
            m.add_authority(self.record(rdata.clone(), 0, DNSClass::NONE));
        }
        for add in &plan.add {
            let mut wire = Vec::new();
            add.emit_wire(&mut wire);
            m.add_authority(self.record(wire, plan.ttl, DNSClass::IN));
        }
        Ok(m)
    }

    fn record(&self, rdata: Vec<u8>, ttl: u32, class: DNSClass) -> Record {
        let data = RData::Unknown {
            code: IPSECKEY,
            rdata: NULL::with(rdata),
        };
        let mut r = Record::from_rdata(self.name.clone(), ttl, data);
        r.dns_class = class;
        r
    }

    /// Signs and sends one UPDATE over TCP, and checks the signed answer.
    async fn send(&self, mut message: Message) -> Result<(), UpdateError> {
        let signer = self.key.signer();
        let verifier = message
            .finalize(&signer, unix_now())
            .map_err(|e| UpdateError::Internal(format!("signing the UPDATE: {e}")))?;
        let response = self.server.exchange(message, Transport::Tcp).await?;
        response::check(self, response, verifier)
    }
}

/// A fresh random message ID (RFC 5452 §9.2 spirit; TSIG covers integrity anyway).
fn random_id() -> Result<u16, UpdateError> {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).map_err(|e| UpdateError::Internal(format!("OS randomness: {e}")))?;
    Ok(u16::from_be_bytes(b))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A query message (RD off: we ask the authoritative server itself).
fn query(name: &Name, rtype: RecordType) -> Result<Message, UpdateError> {
    let mut m = Message::new(random_id()?, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), rtype));
    m.metadata.recursion_desired = false;
    Ok(m)
}

/// Reads the IPSECKEY RRset at `name` from the authoritative `server`.
pub async fn read_rrset(server: &Server, name: &Name) -> Result<RrSet, UpdateError> {
    let response = server
        .exchange(query(name, IPSECKEY)?, Transport::Udp)
        .await?;
    match response.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => {
            return Err(UpdateError::ReadFailed {
                name: name.to_ascii(),
                server: server.addr,
                code,
            });
        }
    }
    if !response.authoritative {
        return Err(UpdateError::NotAuthoritative {
            name: name.to_ascii(),
            server: server.addr,
        });
    }
    let mut set = RrSet::default();
    for r in &response.answers {
        if r.record_type() == RecordType::CNAME && r.name == *name {
            return Err(UpdateError::Alias {
                name: name.to_ascii(),
                target: r.data.to_string(),
            });
        }
        if r.record_type() != IPSECKEY || r.name != *name {
            continue;
        }
        if let RData::Unknown { rdata, .. } = &r.data {
            set.ttl = Some(r.ttl);
            set.records
                .push(Current::from_rdata(rdata.anything.clone()));
        }
    }
    Ok(set)
}

/// Finds the zone `name` belongs to on `server`: the owner of the SOA record
/// in the answer (when `name` is the apex) or the authority section.
pub async fn find_zone(server: &Server, name: &Name) -> Result<Name, UpdateError> {
    let response = server
        .exchange(query(name, RecordType::SOA)?, Transport::Udp)
        .await?;
    let no_zone = |why: String| UpdateError::NoZone {
        name: name.to_ascii(),
        server: server.addr,
        why,
    };
    match response.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::Refused => {
            return Err(no_zone(
                "it answered REFUSED, so it serves no zone that contains the name \
                 (is --server the primary of the reverse zone?)"
                    .into(),
            ));
        }
        code => return Err(no_zone(format!("it answered {code}"))),
    }
    response
        .answers
        .iter()
        .chain(&response.authorities)
        .find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
        .map(|r| r.name.clone())
        .ok_or_else(|| no_zone("its answer holds no SOA record for an enclosing zone".into()))
}

/// Converts a core name (`reverse_name`) to hickory's.
pub fn to_hickory_name(name: &oemesh_core::ipseckey::DomainName) -> Result<Name, UpdateError> {
    let text = name.to_string();
    let mut n =
        Name::from_ascii(&text).map_err(|e| UpdateError::Internal(format!("name {text}: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

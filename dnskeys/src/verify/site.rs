//! `verify --subnet`: is a site's wildcard IPSECKEY served, does it carry the
//! key, and does DNS really answer with it for a host inside the subnet?
//!
//! Two queries: the wildcard's own name (`*.0.1.10.in-addr.arpa.`: a query
//! for that very name returns the wildcard's records), and the reverse name
//! of a host inside (the probe, by default the first host address), which
//! the server answers by synthesis from the wildcard (RFC 4592 §3.3.1) only
//! when that name does not exist and no name between it and the wildcard's
//! parent exists either. Then the checks of [`problems`]: the records a
//! wildcard may not hold (no gateway; a gateway inside the subnet) and the
//! reasons a probe gets no answer from the wildcard.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use oemesh_core::ipseckey::{DomainName, Gateway};
use serde_json::{Value, json};

use super::{Report, VerifyError, verify, verify_name};
use crate::dnssec::{Anchor, State};
use crate::subnet::Subnet;
use crate::transport::{Server, Transport};
use crate::update::{UpdateError, to_hickory_name};

/// The addresses of gateways given by name, as the server answered (`Err`:
/// it answered neither NOERROR nor NXDOMAIN; the text says what it did).
pub type GatewayAddrs = BTreeMap<String, Result<Vec<IpAddr>, String>>;

/// What `verify --subnet` learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteReport {
    /// The subnet.
    pub subnet: Subnet,
    /// The records at the wildcard's own name.
    pub wildcard: Report,
    /// The answer for the probe, a host's reverse name inside the subnet.
    pub probe: Report,
    /// Failing checks (each one sentence, saying what to do).
    pub problems: Vec<String>,
    /// Things worth knowing that are not failures.
    pub notes: Vec<String>,
}

impl SiteReport {
    /// The verdict: both answers pass as [`Report::ok`], and no check failed.
    pub fn ok(&self) -> bool {
        self.wildcard.ok() && self.probe.ok() && self.problems.is_empty()
    }

    /// The wildcard's [`Report::to_json`] (with `"ip": null`) plus `subnet`,
    /// `probe` (the probe's report in the same shape), `problems`, `notes`,
    /// and `ok` as [`SiteReport::ok`].
    pub fn to_json(&self) -> Value {
        let mut v = self.wildcard.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("subnet".into(), json!(self.subnet.to_string()));
            m.insert("probe".into(), self.probe.to_json());
            m.insert("problems".into(), json!(self.problems));
            m.insert("notes".into(), json!(self.notes));
            m.insert("ok".into(), json!(self.ok()));
        }
        v
    }
}

/// Queries `server` for the wildcard of `subnet` and for the reverse name of
/// `probe` (inside the subnet), and checks both; `expected` and `dnssec` as
/// for [`verify`], applied to both answers.
pub async fn verify_subnet(
    server: &Server,
    subnet: Subnet,
    probe: IpAddr,
    expected: Option<[u8; 32]>,
    dnssec: Option<(&[Anchor], i64)>,
) -> Result<SiteReport, VerifyError> {
    let wildcard = verify_name(server, &subnet.wildcard(), None, expected, dnssec).await?;
    let probe = verify(server, probe, expected, dnssec).await?;
    let mut named = GatewayAddrs::new();
    for found in &wildcard.records {
        if let Ok(k) = &found.decoded
            && let Gateway::Name(n) = &k.gateway
            && !named.contains_key(&n.to_string())
        {
            named.insert(n.to_string(), addresses(server, n).await?);
        }
    }
    let (problems, notes) = problems(&subnet, &wildcard, &probe, &named);
    Ok(SiteReport {
        subnet,
        wildcard,
        probe,
        problems,
        notes,
    })
}

/// The A and AAAA addresses of `name` at `server` (recursion desired, as a
/// peer's resolver would look the gateway up).
async fn addresses(
    server: &Server,
    name: &DomainName,
) -> Result<Result<Vec<IpAddr>, String>, VerifyError> {
    let qname = to_hickory_name(name)?;
    let mut found = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        let mut id = [0u8; 2];
        getrandom::fill(&mut id)
            .map_err(|e| UpdateError::Internal(format!("OS randomness: {e}")))?;
        let mut m = Message::new(u16::from_be_bytes(id), MessageType::Query, OpCode::Query);
        m.add_query(Query::query(qname.clone(), rtype));
        m.metadata.recursion_desired = true;
        let response = server.exchange(m, Transport::Udp).await?;
        if !matches!(
            response.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        ) {
            return Ok(Err(format!(
                "{} answered {} for {qname} {rtype}",
                server, response.response_code
            )));
        }
        for r in &response.answers {
            match &r.data {
                RData::A(a) => found.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => found.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
    }
    Ok(Ok(found))
}

/// The failing checks and the notes for a subnet's wildcard answer, its
/// probe's answer, and the addresses of gateways given by name. Pure, so
/// each is unit-tested.
pub fn problems(
    subnet: &Subnet,
    wildcard: &Report,
    probe: &Report,
    named: &GatewayAddrs,
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for found in &wildcard.records {
        let Ok(k) = &found.decoded else { continue };
        match &k.gateway {
            Gateway::None => problems.push(format!(
                "the wildcard record '{k}' has no gateway: it tells every host in {subnet} to do \
                 IKE with itself, all with one key that only one host can hold; republish it \
                 with 'dnskeys publish --subnet {subnet} --gateway GATEWAY' (and remove this one)"
            )),
            Gateway::Ipv4(_) | Gateway::Ipv6(_) => {
                let gw = match k.gateway {
                    Gateway::Ipv4(a) => IpAddr::V4(a),
                    Gateway::Ipv6(a) => IpAddr::V6(a),
                    _ => continue,
                };
                if subnet.contains(gw) {
                    problems.push(format!(
                        "the wildcard record '{k}' names gateway {gw}, which is inside {subnet}: \
                         the wildcard covers the gateway itself; publish the gateway's own \
                         record with 'dnskeys publish --ip {gw}' (a name with records of its own \
                         is not covered by the wildcard), and publish the wildcard for a subnet \
                         that does not contain {gw}"
                    ));
                }
            }
            Gateway::Name(n) => match named.get(&n.to_string()) {
                Some(Ok(addrs)) if addrs.is_empty() => notes.push(format!(
                    "the wildcard record '{k}' names gateway {n}, which has no A or AAAA record \
                     at {}: peers cannot reach it",
                    wildcard.server
                )),
                Some(Ok(addrs)) => {
                    for gw in addrs.iter().filter(|a| subnet.contains(**a)) {
                        problems.push(format!(
                            "the wildcard record '{k}' names gateway {n}, whose address {gw} is \
                             inside {subnet}: the wildcard covers the gateway itself; publish the \
                             gateway's own record with 'dnskeys publish --ip {gw}' (a name with \
                             records of its own is not covered by the wildcard), and publish the \
                             wildcard for a subnet that does not contain {gw}"
                        ));
                    }
                }
                Some(Err(why)) => notes.push(format!(
                    "could not check the addresses of gateway {n} ({why})"
                )),
                None => {}
            },
        }
    }
    let probe_ip = probe.ip.map(|ip| ip.to_string()).unwrap_or_default();
    if wildcard.records.is_empty() {
        // Nothing to synthesize from; the wildcard's own verdict says so.
    } else if probe.rcode == ResponseCode::NXDomain {
        problems.push(format!(
            "{} ({probe_ip}) is NXDOMAIN although the wildcard {} has records: a name between \
             them exists (an empty non-terminal, made by a record further down, such as \
             another host's PTR), and a wildcard answers only for names whose closest existing \
             ancestor is the wildcard's parent (RFC 4592 §2.2.1); publish explicit records \
             ('dnskeys publish --ip ADDR --gateway GATEWAY') for the hosts below that name",
            probe.name, wildcard.name
        ));
    } else if probe.records.is_empty() {
        problems.push(format!(
            "{} ({probe_ip}) exists (it holds other records, e.g. a PTR), so the wildcard does \
             not answer for it (RFC 4592 §2.2.1): a host whose reverse name has any record needs \
             its own IPSECKEY record ('dnskeys publish --ip {probe_ip} --gateway GATEWAY'); \
             check the other hosts with --probe ADDR",
            probe.name
        ));
    } else {
        let mut own: Vec<&[u8]> = probe.records.iter().map(|r| r.rdata.as_slice()).collect();
        let mut wild: Vec<&[u8]> = wildcard
            .records
            .iter()
            .map(|r| r.rdata.as_slice())
            .collect();
        own.sort_unstable();
        wild.sort_unstable();
        if own != wild {
            notes.push(format!(
                "{} ({probe_ip}) has IPSECKEY records of its own, which hide the wildcard for \
                 that host; a host that publishes its own key must publish its gateway record \
                 there too",
                probe.name
            ));
        } else if let (Some(w), Some(p)) = (&wildcard.validation, &probe.validation)
            && w.state == State::Secure
            && p.state == State::Bogus
        {
            notes.push(format!(
                "the wildcard validates as secure but its expansion at {} is judged bogus: the \
                 DNSSEC validator dnskeys uses (hickory-net 0.26) rejects wildcard expansions \
                 proven with NSEC (hickory-dns pull request 3812), so this may be that bug, not \
                 the zone; check with 'delv -x {probe_ip} IPSECKEY', and note that agents using \
                 the same validator treat the key the same way",
                probe.name
            ));
        }
    }
    (problems, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Found;
    use oemesh_core::crypto::ed25519::Ed25519SigningKey;
    use oemesh_core::ipseckey::Ipseckey;

    fn key(seed: u8) -> [u8; 32] {
        Ed25519SigningKey::from_seed(&[seed; 32])
            .public_key()
            .to_bytes()
    }

    fn found(k: Ipseckey, expected: [u8; 32]) -> Found {
        let mut rdata = Vec::new();
        k.emit_wire(&mut rdata);
        Found {
            ttl: 60,
            matches: k.ed25519_key() == Some(expected),
            decoded: Ok(k),
            rdata,
        }
    }

    fn report(ip: Option<&str>, rcode: ResponseCode, records: Vec<Found>) -> Report {
        Report {
            ip: ip.map(|i| i.parse().unwrap()),
            name: match ip {
                Some(i) => oemesh_core::ipseckey::reverse_name(i.parse().unwrap()).to_string(),
                None => "*.0.1.10.in-addr.arpa.".into(),
            },
            server: crate::transport::parse_server(
                "127.0.0.1:53",
                std::time::Duration::from_secs(1),
            )
            .unwrap(),
            rcode,
            authentic_data: false,
            authoritative: true,
            rrsig_present: false,
            aliases: Vec::new(),
            records,
            expected: Some(key(1)),
            validation: None,
        }
    }

    fn gw(a: &str) -> Gateway {
        Gateway::Ipv4(a.parse().unwrap())
    }

    fn site(wildcard: Vec<Found>, probe_rcode: ResponseCode, probe: Vec<Found>) -> SiteReport {
        let subnet: Subnet = "10.1.0.0/24".parse().unwrap();
        let wildcard = report(None, ResponseCode::NoError, wildcard);
        let probe = report(Some("10.1.0.1"), probe_rcode, probe);
        let (problems, notes) = problems(&subnet, &wildcard, &probe, &GatewayAddrs::new());
        SiteReport {
            subnet,
            wildcard,
            probe,
            problems,
            notes,
        }
    }

    #[test]
    fn a_served_wildcard_with_an_outside_gateway_passes() {
        let rec = || found(Ipseckey::ed25519(10, gw("192.0.2.1"), key(1)), key(1));
        let s = site(vec![rec()], ResponseCode::NoError, vec![rec()]);
        assert!(s.problems.is_empty() && s.notes.is_empty(), "{s:?}");
        assert!(s.ok());
        let v = s.to_json();
        assert_eq!(v["subnet"], "10.1.0.0/24");
        assert_eq!(v["ip"], Value::Null);
        assert_eq!(v["name"], "*.0.1.10.in-addr.arpa.");
        assert_eq!(v["probe"]["ip"], "10.1.0.1");
        assert_eq!(v["probe"]["records"][0]["matches_key"], true);
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn a_wildcard_covering_its_gateway_fails() {
        let rec = || found(Ipseckey::ed25519(10, gw("10.1.0.1"), key(1)), key(1));
        let s = site(vec![rec()], ResponseCode::NoError, vec![rec()]);
        assert!(!s.ok(), "fails although the key matches");
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        let p = &s.problems[0];
        assert!(
            p.contains("names gateway 10.1.0.1, which is inside 10.1.0.0/24")
                && p.contains("dnskeys publish --ip 10.1.0.1"),
            "{p}"
        );
        assert_eq!(s.to_json()["ok"], false);
    }

    #[test]
    fn a_wildcard_without_a_gateway_fails() {
        let rec = || found(Ipseckey::ed25519(10, Gateway::None, key(1)), key(1));
        let s = site(vec![rec()], ResponseCode::NoError, vec![rec()]);
        assert!(!s.ok());
        assert!(s.problems[0].contains("has no gateway"), "{:?}", s.problems);
    }

    #[test]
    fn a_probe_the_wildcard_does_not_answer_for_is_explained() {
        let rec = || found(Ipseckey::ed25519(10, gw("192.0.2.1"), key(1)), key(1));
        // The name exists (a PTR): NOERROR, no IPSECKEY.
        let s = site(vec![rec()], ResponseCode::NoError, vec![]);
        assert!(!s.ok());
        assert!(
            s.problems[0].contains("exists (it holds other records, e.g. a PTR)")
                && s.problems[0].contains("dnskeys publish --ip 10.1.0.1 --gateway"),
            "{:?}",
            s.problems
        );
        // An empty non-terminal between: NXDOMAIN.
        let s = site(vec![rec()], ResponseCode::NXDomain, vec![]);
        assert!(
            s.problems[0].contains("empty non-terminal"),
            "{:?}",
            s.problems
        );
        // No wildcard at all: no extra problem, the wildcard's verdict fails.
        let s = site(vec![], ResponseCode::NXDomain, vec![]);
        assert!(s.problems.is_empty() && !s.ok());
    }

    #[test]
    fn a_named_gateway_whose_address_is_inside_fails() {
        let subnet: Subnet = "10.1.0.0/24".parse().unwrap();
        let name = DomainName::from_ascii("gw.example.").unwrap();
        let rec = || {
            found(
                Ipseckey::ed25519(10, Gateway::Name(name.clone()), key(1)),
                key(1),
            )
        };
        let wildcard = report(None, ResponseCode::NoError, vec![rec()]);
        let probe = report(Some("10.1.0.1"), ResponseCode::NoError, vec![rec()]);
        let mut named = GatewayAddrs::new();
        named.insert(
            "gw.example.".into(),
            Ok(vec![
                "192.0.2.1".parse().unwrap(),
                "10.1.0.254".parse().unwrap(),
            ]),
        );
        let (p, _) = problems(&subnet, &wildcard, &probe, &named);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("names gateway gw.example., whose address 10.1.0.254 is inside"),
            "{p:?}"
        );
        named.insert("gw.example.".into(), Ok(vec!["192.0.2.1".parse().unwrap()]));
        assert!(problems(&subnet, &wildcard, &probe, &named).0.is_empty());
        named.insert("gw.example.".into(), Ok(vec![]));
        let (p, n) = problems(&subnet, &wildcard, &probe, &named);
        assert!(p.is_empty() && n[0].contains("no A or AAAA"), "{n:?}");
    }

    #[test]
    fn explicit_records_at_the_probe_are_a_note() {
        let wild = found(Ipseckey::ed25519(10, gw("192.0.2.1"), key(1)), key(1));
        let own = found(Ipseckey::ed25519(5, Gateway::None, key(2)), key(1));
        let s = site(vec![wild.clone()], ResponseCode::NoError, vec![own, wild]);
        assert!(s.problems.is_empty());
        assert!(s.notes[0].contains("hide the wildcard"), "{:?}", s.notes);
        assert!(s.ok());
    }
}

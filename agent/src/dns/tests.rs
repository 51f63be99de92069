//! Lookups against a scripted DNS server on loopback: the query carries RD, AD
//! and DO; answers, NXDOMAIN, NODATA, SERVFAIL and silence are told apart.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{NULL, SOA};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinEncodable};
use oemesh_core::ipseckey::{Gateway, Ipseckey};

use super::*;

fn key() -> Ipseckey {
    Ipseckey::ed25519(10, Gateway::None, [7; 32])
}

fn soa() -> Record {
    let zone = Name::from_ascii("2.0.192.in-addr.arpa.").unwrap();
    let rdata = SOA::new(
        Name::from_ascii("ns.example.").unwrap(),
        Name::from_ascii("admin.example.").unwrap(),
        1,
        3600,
        600,
        86400,
        300,
    );
    Record::from_rdata(zone, 3600, RData::SOA(rdata))
}

/// Answers by the first label of the reverse name (the last octet).
fn respond(query: &Message) -> Option<Message> {
    let q = query.queries.first()?;
    let octet = q.name().to_ascii();
    let octet = octet.split('.').next()?.to_owned();
    assert_eq!(q.query_type(), RecordType::from(IPSECKEY));
    assert!(query.metadata.recursion_desired, "RD not set");
    assert!(query.metadata.authentic_data, "AD not set");
    assert!(
        query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        "DO not set"
    );
    let mut r = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = true;
    r.metadata.recursion_available = true;
    r.add_query(q.clone());
    match octet.as_str() {
        "20" => {
            r.metadata.authentic_data = true;
            let mut second = key();
            second.precedence = 5;
            for k in [key(), second] {
                let rdata = RData::Unknown {
                    code: RecordType::from(IPSECKEY),
                    rdata: NULL::with(k.to_wire()),
                };
                r.answers
                    .push(Record::from_rdata(q.name().clone(), 600, rdata));
            }
        }
        "21" => {
            r.metadata.response_code = ResponseCode::NXDomain;
            r.authorities.push(soa());
        }
        "22" => r.authorities.push(soa()),
        "23" => r.metadata.response_code = ResponseCode::ServFail,
        _ => return None, // silence: the client times out
    }
    Some(r)
}

async fn server() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(query) = Message::from_bytes(&buf[..n]) else {
                continue;
            };
            if let Some(reply) = respond(&query) {
                let _ = sock.send_to(&reply.to_bytes().unwrap(), from).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn outcomes_are_told_apart() {
    let addr = server().await;
    let resolver = KeyResolver::new(&[addr], Duration::from_millis(500), 0x6f65).unwrap();
    assert_eq!(resolver.servers(), [addr]);
    told_apart(async |ip| resolver.lookup(ip).await).await;
}

/// The same through the inline UDP query (and the pool after it on silence).
#[tokio::test]
async fn outcomes_are_told_apart_sent_inline() {
    let addr = server().await;
    let resolver = KeyResolver::new(&[addr], Duration::from_millis(500), 0x6f65).unwrap();
    told_apart(async |ip| {
        let owner = reverse_name(ip).to_string();
        let sent = resolver.send_query(&owner).unwrap();
        resolver.answer(sent).await
    })
    .await;
}

async fn told_apart(lookup: impl AsyncFn(IpAddr) -> KeyLookup) {
    let ip = |last: u8| IpAddr::from([192, 0, 2, last]);

    match lookup(ip(20)).await {
        KeyLookup::Found {
            keys,
            malformed,
            ttl,
            dnssec,
        } => {
            assert_eq!(
                keys.iter().map(|k| k.precedence).collect::<Vec<_>>(),
                [5, 10]
            );
            assert_eq!(keys[1], key());
            assert_eq!((malformed, ttl, dnssec), (0, 600, Dnssec::Secure));
        }
        other => panic!("{other:?}"),
    }
    let nx = lookup(ip(21)).await;
    assert_eq!(
        nx,
        KeyLookup::NxDomain {
            negative_ttl: Some(300),
            dnssec: Dnssec::Unvalidated,
        }
    );
    assert_eq!(nx.reason(), "no IPSECKEY (NXDOMAIN)");
    assert_eq!(
        lookup(ip(22)).await,
        KeyLookup::NoData {
            negative_ttl: Some(300),
            dnssec: Dnssec::Unvalidated,
        }
    );
    let fail = lookup(ip(23)).await;
    assert!(
        matches!(fail, KeyLookup::Failed(LookupFailure::Rcode(_))),
        "{fail:?}"
    );
    let started = std::time::Instant::now();
    let silent = lookup(ip(24)).await;
    assert!(matches!(silent, KeyLookup::Failed(_)), "{silent:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout bounds the lookup"
    );
}

/// The chain for a name starts at the closest enclosing anchored zone, by
/// labels: `12.0.192.in-addr.arpa.` ends with the text of
/// `2.0.192.in-addr.arpa.` but is not in that zone.
#[test]
fn the_covering_anchor_is_found_by_labels_not_text() {
    let key =
        "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==";
    let text = format!(
        "2.0.192.in-addr.arpa. IN DNSKEY 257 3 13 {key}\n0.192.in-addr.arpa. IN DNSKEY 257 3 13 {key}\n. IN DNSKEY 257 3 13 {key}\n"
    );
    let anchors: Vec<LoadedAnchor> = oemesh_core::anchors::parse(&text)
        .unwrap()
        .into_iter()
        .map(|anchor| LoadedAnchor {
            origin: format!("test:{}", anchor.line),
            anchor,
        })
        .collect();
    let zone_of = |name: &str| {
        validate::covering_anchor(&anchors, &Name::from_ascii(name).unwrap())
            .map(|a| a.anchor.zone.clone())
    };
    assert_eq!(
        zone_of("20.2.0.192.in-addr.arpa.").as_deref(),
        Some("2.0.192.in-addr.arpa.")
    );
    assert_eq!(
        zone_of("12.0.192.in-addr.arpa.").as_deref(),
        Some("0.192.in-addr.arpa.")
    );
    assert_eq!(
        zone_of("20.2.0.193.in-addr.arpa."),
        None,
        "the root anchor is not a private one"
    );
}

//! IPSECKEY against published vectors: the RFC 4025 §3.2 examples, an EdDSA
//! (RFC 9373) record, hand-written RDATA bytes for every gateway type, and
//! reverse names as `dig -x` prints them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use oemesh_core::ipseckey::{
    Algorithm, DomainName, Gateway, Ipseckey, PresentationError, RR_TYPE, Record, reverse_name,
};

/// The RSA key of every RFC 4025 example, `AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==`,
/// as bytes (the same bytes the ldns/Knot test suites carry for that record).
const RFC4025_KEY: [u8; 34] = [
    0x01, 0x03, 0x51, 0x53, 0x79, 0x86, 0xed, 0x35, 0x53, 0x3b, 0x60, 0x64, 0x47, 0x8e, 0xee, 0xb2,
    0x7b, 0x5b, 0xd7, 0x4d, 0xae, 0x14, 0x9b, 0x6e, 0x81, 0xba, 0x3a, 0x05, 0x21, 0xaf, 0x82, 0xab,
    0x78, 0x01,
];
const RFC4025_KEY_B64: &str = "AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==";

/// RFC 8032 §7.1 TEST 1 public key (also RFC 8037 Appendix A's Ed25519 key).
const ED25519_TEST1: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

fn rfc_records() -> Vec<Record> {
    let zone = include_str!("data/ipseckey-rfc4025.zone");
    zone.split("\n\n")
        .filter(|chunk| chunk.lines().any(|l| !l.trim_start().starts_with(';')))
        .map(|chunk| {
            Record::parse_presentation(chunk)
                .map_err(|e| format!("{chunk}: {e}"))
                .expect("every RFC 4025 example parses")
        })
        .collect()
}

fn name(s: &str) -> DomainName {
    DomainName::from_ascii(s).expect("test names are valid")
}

fn wire(k: &Ipseckey) -> Vec<u8> {
    let mut out = Vec::new();
    k.emit_wire(&mut out);
    assert_eq!(out.len(), k.wire_len());
    out
}

/// `header ++ gateway ++ key` as RDATA.
fn rdata(head: &[u8], key: &[u8]) -> Vec<u8> {
    [head, key].concat()
}

#[test]
fn rfc4025_examples_parse() {
    let records = rfc_records();
    let key = RFC4025_KEY.to_vec();
    let rsa = |gateway| Ipseckey {
        precedence: 10,
        gateway,
        algorithm: Algorithm::RSA,
        public_key: key.clone(),
    };
    let expected = [
        (
            "38.2.0.192.in-addr.arpa.",
            rsa(Gateway::Ipv4(Ipv4Addr::new(192, 0, 2, 38))),
        ),
        ("38.2.0.192.in-addr.arpa.", rsa(Gateway::None)),
        (
            "38.2.0.192.in-addr.arpa.",
            rsa(Gateway::Ipv4(Ipv4Addr::new(192, 0, 2, 3))),
        ),
        (
            "38.1.0.192.in-addr.arpa.",
            rsa(Gateway::Name(name("mygateway.example.com."))),
        ),
        (
            "0.d.4.0.3.0.e.f.f.f.3.f.0.1.2.0.1.0.0.0.0.0.2.8.b.d.0.1.0.0.2.ip6.arpa.",
            rsa(Gateway::Ipv6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0x8002, 0, 0, 0x2000, 1,
            ))),
        ),
    ];
    assert_eq!(records.len(), expected.len());
    for (record, (owner, rdata)) in records.iter().zip(expected) {
        assert_eq!(record.owner, name(owner));
        assert_eq!(record.ttl, 7200);
        assert_eq!(record.rdata, rdata);
    }
}

#[test]
fn rfc4025_examples_as_bytes() {
    let records = rfc_records();
    let expected: [Vec<u8>; 5] = [
        rdata(&[10, 1, 2, 192, 0, 2, 38], &RFC4025_KEY),
        rdata(&[10, 0, 2], &RFC4025_KEY),
        rdata(&[10, 1, 2, 192, 0, 2, 3], &RFC4025_KEY),
        rdata(
            b"\x0a\x03\x02\x09mygateway\x07example\x03com\x00",
            &RFC4025_KEY,
        ),
        rdata(
            &[
                10, 2, 2, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x80, 0x02, 0x00, 0x00, 0x00, 0x00,
                0x20, 0x00, 0x00, 0x01,
            ],
            &RFC4025_KEY,
        ),
    ];
    for (record, bytes) in records.iter().zip(&expected) {
        assert_eq!(&wire(&record.rdata), bytes, "{record}");
        assert_eq!(Ipseckey::parse_wire(bytes).as_ref(), Ok(&record.rdata));
    }
}

#[test]
fn rfc4025_examples_format_one_line() {
    let lines: Vec<String> = rfc_records().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            format!(
                "38.2.0.192.in-addr.arpa. 7200 IN IPSECKEY 10 1 2 192.0.2.38 {RFC4025_KEY_B64}"
            ),
            format!("38.2.0.192.in-addr.arpa. 7200 IN IPSECKEY 10 0 2 . {RFC4025_KEY_B64}"),
            format!("38.2.0.192.in-addr.arpa. 7200 IN IPSECKEY 10 1 2 192.0.2.3 {RFC4025_KEY_B64}"),
            format!(
                "38.1.0.192.in-addr.arpa. 7200 IN IPSECKEY 10 3 2 mygateway.example.com. \
                 {RFC4025_KEY_B64}"
            ),
            // Owner case is kept; the address is printed in RFC 5952 form.
            format!(
                "0.d.4.0.3.0.e.f.f.f.3.f.0.1.2.0.1.0.0.0.0.0.2.8.B.D.0.1.0.0.2.ip6.arpa. 7200 IN \
                 IPSECKEY 10 2 2 2001:db8:0:8002::2000:1 {RFC4025_KEY_B64}"
            ),
        ]
    );
    for line in &lines {
        let again = Record::parse_presentation(line).unwrap();
        assert_eq!(&again.to_string(), line);
    }
}

#[test]
fn rfc4025_ipv6_example_owner_lacks_a_nibble() {
    let records = rfc_records();
    let rfc_owner = &records[4].owner;
    assert_eq!(rfc_owner.labels().count(), 31 + 2);
    let node: IpAddr = "2001:0DB8:0200:1:210:f3ff:fe03:4d0".parse().unwrap();
    let correct = reverse_name(node);
    assert_eq!(
        correct.to_string(),
        "0.d.4.0.3.0.e.f.f.f.3.f.0.1.2.0.1.0.0.0.0.0.2.0.8.b.d.0.1.0.0.2.ip6.arpa."
    );
    assert_ne!(&correct, rfc_owner);
}

#[test]
fn ed25519_record() {
    // RFC 9373 gives algorithm 4 the RFC 8080 §3 key form: the raw 32-byte key.
    let text = "38.2.0.192.in-addr.arpa. 3600 IN IPSECKEY 10 0 4 . \
                11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let record = Record::parse_presentation(text).unwrap();
    assert_eq!(
        record.rdata,
        Ipseckey::ed25519(10, Gateway::None, ED25519_TEST1)
    );
    assert_eq!(record.rdata.ed25519_key(), Some(ED25519_TEST1));
    assert_eq!(format!("{:?}", record.rdata.algorithm), "EdDSA(4)");
    assert_eq!(record.to_string(), text);
    assert_eq!(wire(&record.rdata), rdata(&[10, 0, 4], &ED25519_TEST1));
    // Split base64, TYPE45, class and TTL swapped, as BIND accepts it.
    let split = "38.2.0.192.in-addr.arpa. IN 1h TYPE45 ( 10 0 4 .\n\
                 11qYAYKxCrfVS/7TyWQH ; first half\n\
                 Og7hcvPapiMlrwIaaPcHURo= )";
    let again = Record::parse_presentation(split).unwrap();
    assert_eq!(again.rdata, record.rdata);
    assert_eq!(again.ttl, 3600);
    // Not Ed25519: wrong algorithm, or an Ed448-sized key.
    let rsa = Ipseckey {
        algorithm: Algorithm::RSA,
        ..record.rdata.clone()
    };
    assert_eq!(rsa.ed25519_key(), None);
    let ed448 = Ipseckey {
        public_key: vec![7; 57],
        ..record.rdata.clone()
    };
    assert_eq!(ed448.ed25519_key(), None);
}

#[test]
fn byte_vectors_every_gateway_type() {
    let key = [0xaa, 0xbb, 0xcc];
    let cases: [(&str, Vec<u8>); 5] = [
        ("1 0 4 . qrvM", vec![1, 0, 4, 0xaa, 0xbb, 0xcc]),
        (
            "2 1 4 10.0.77.10 qrvM",
            vec![2, 1, 4, 10, 0, 77, 10, 0xaa, 0xbb, 0xcc],
        ),
        (
            "3 2 4 fd00::1 qrvM",
            [&[3, 2, 4, 0xfd][..], &[0; 14], &[1, 0xaa, 0xbb, 0xcc]].concat(),
        ),
        (
            "4 3 4 gw.example. qrvM",
            [&b"\x04\x03\x04\x02gw\x07example\x00"[..], &key].concat(),
        ),
        // Algorithm 0 has no key (RFC 4025 §2.6); the key field is left out.
        ("255 0 0 .", vec![255, 0, 0]),
    ];
    for (text, bytes) in cases {
        let parsed = Ipseckey::parse_presentation(text).unwrap();
        assert_eq!(wire(&parsed), bytes, "{text}");
        let from_wire = Ipseckey::parse_wire(&bytes).unwrap();
        assert_eq!(from_wire, parsed);
        assert_eq!(from_wire.to_string(), text);
        assert_eq!(from_wire.gateway_type(), bytes[1]);
        // And through the generic form.
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            from_wire.generic().to_string(),
            format!("\\# {} {hex}", bytes.len())
        );
        assert_eq!(
            Ipseckey::parse_presentation(&from_wire.generic().to_string()),
            Ok(parsed)
        );
    }
}

#[test]
fn unknown_algorithm_round_trips() {
    let k = Ipseckey::parse_wire(&[5, 1, 77, 192, 0, 2, 1, 1, 2, 3]).unwrap();
    assert_eq!(k.algorithm, Algorithm(77));
    assert_eq!(format!("{:?}", k.algorithm), "Algorithm(77)");
    assert_eq!(k.to_string(), "5 1 77 192.0.2.1 AQID");
    assert_eq!(Ipseckey::parse_presentation("5 1 77 192.0.2.1 AQID"), Ok(k));
}

#[test]
fn generic_form_with_split_hex() {
    let text = r"\# 10 ( 0a 0102 c0000226
                  ; key
                  010203 )";
    let k = Ipseckey::parse_presentation(text).unwrap();
    assert_eq!(k.gateway, Gateway::Ipv4(Ipv4Addr::new(192, 0, 2, 38)));
    assert_eq!(k.public_key, [1, 2, 3]);
    let rr =
        Record::parse_presentation(&format!("host.example. 60 IN TYPE{RR_TYPE} {text}")).unwrap();
    assert_eq!(rr.rdata, k);
    assert_eq!(
        Ipseckey::parse_presentation(r"\# 11 0a0102c0000226 010203"),
        Err(PresentationError::Invalid(
            "generic RDATA length says 11 octets but the hex holds 10".into()
        ))
    );
}

#[test]
fn gateway_and_type_must_agree() {
    let cases = [
        (
            "10 1 4 2001:db8::1 AA==",
            "gateway type 1 (IPv4) but gateway \"2001:db8::1\" is not an IPv4 address",
        ),
        (
            "10 2 4 192.0.2.1 AA==",
            "gateway type 2 (IPv6) but gateway \"192.0.2.1\" is not an IPv6 address",
        ),
        (
            "10 1 4 gw.example. AA==",
            "gateway type 1 (IPv4) but gateway \"gw.example.\" is not an IPv4 address",
        ),
        (
            "10 0 4 gw.example. AA==",
            "gateway type 0 (none) needs the gateway written \".\", not \"gw.example.\"",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(
            Ipseckey::parse_presentation(text).unwrap_err().to_string(),
            message
        );
    }
}

#[test]
fn relative_owner_is_absolute() {
    let rr = Record::parse_presentation("host.example 60 IPSECKEY 1 0 4 . AA==").unwrap();
    assert_eq!(rr.owner, name("host.example."));
    assert_eq!(rr.to_string(), "host.example. 60 IN IPSECKEY 1 0 4 . AA==");
}

#[test]
fn reverse_names_like_dig_x() {
    let cases = [
        ("192.0.2.38", "38.2.0.192.in-addr.arpa."),
        ("10.0.77.10", "10.77.0.10.in-addr.arpa."),
        ("0.0.0.0", "0.0.0.0.in-addr.arpa."),
        ("255.255.255.255", "255.255.255.255.in-addr.arpa."),
        (
            "2001:db8::567:89ab",
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        ),
        (
            "::1",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
        ),
        (
            "fd00:77::a",
            "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa.",
        ),
    ];
    for (addr, expected) in cases {
        let addr: IpAddr = addr.parse().unwrap();
        assert_eq!(reverse_name(addr).to_string(), expected, "{addr}");
        assert!(reverse_name(addr).is_subdomain_of(&name(if addr.is_ipv4() {
            "in-addr.arpa."
        } else {
            "ip6.arpa."
        })));
    }
}

//! Property tests: every `Ipseckey` survives wire, presentation and generic `\#`
//! round trips, and no input makes a parser panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use oemesh_core::ipseckey::{Algorithm, DomainName, Gateway, Ipseckey, Record};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Host-name-like labels, mixed case.
        "[a-zA-Z0-9-]{1,20}".prop_map(String::into_bytes),
        // Any octet at all, including '.', '\\', whitespace and non-ASCII.
        proptest::collection::vec(any::<u8>(), 1..=63),
    ]
}

fn domain_name() -> impl Strategy<Value = DomainName> {
    proptest::collection::vec(label(), 0..6).prop_filter_map("name over 255 octets", |labels| {
        DomainName::from_labels(labels).ok()
    })
}

fn gateway() -> impl Strategy<Value = Gateway> {
    prop_oneof![
        Just(Gateway::None),
        any::<[u8; 4]>().prop_map(|o| Gateway::Ipv4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| Gateway::Ipv6(Ipv6Addr::from(o))),
        domain_name().prop_map(Gateway::Name),
    ]
}

fn ipseckey() -> impl Strategy<Value = Ipseckey> {
    (
        any::<u8>(),
        gateway(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(precedence, gateway, algorithm, public_key)| Ipseckey {
            precedence,
            gateway,
            algorithm: Algorithm(algorithm),
            public_key,
        })
}

fn record() -> impl Strategy<Value = Record> {
    (domain_name(), 0..=0x7fff_ffffu32, ipseckey()).prop_map(|(owner, ttl, rdata)| Record {
        owner,
        ttl,
        rdata,
    })
}

/// The characters zone text is made of, so random text reaches past the first field.
const ZONE_CHARS: &str = "[0-9a-fA-F .:;()\\\\#\n\t=+/IPSECKYN@-]{0,80}";

/// BIND-style multi-line text: RDATA in parentheses, one field per line with a
/// comment, and the base64 key cut into pieces of `chunk` characters.
fn multi_line(rr: &Record, chunk: usize) -> String {
    let k = &rr.rdata;
    let gateway = match &k.gateway {
        Gateway::None => ".".to_owned(),
        Gateway::Ipv4(a) => a.to_string(),
        Gateway::Ipv6(a) => a.to_string(),
        Gateway::Name(n) => n.to_string(),
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(&k.public_key);
    let pieces: Vec<&str> = b64
        .as_bytes()
        .chunks(chunk)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "{} IN {} IPSECKEY ( {} {} {} ; precedence, gateway type, algorithm\n\t{gateway} ; gw\n\t{} )",
        rr.owner,
        rr.ttl,
        k.precedence,
        k.gateway_type(),
        k.algorithm.0,
        pieces.join("\n\t")
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn wire_round_trip(k in ipseckey()) {
        let mut bytes = Vec::new();
        k.emit_wire(&mut bytes);
        prop_assert_eq!(bytes.len(), k.wire_len());
        let parsed = Ipseckey::parse_wire(&bytes).unwrap();
        prop_assert_eq!(&parsed, &k);
        // Byte-exact, case of names included.
        prop_assert_eq!(parsed.to_wire(), bytes);
    }

    #[test]
    fn presentation_round_trip(k in ipseckey()) {
        let text = k.to_string();
        let parsed = Ipseckey::parse_presentation(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&k), "{}", text);
        prop_assert_eq!(parsed.map(|p| p.to_wire()), Ok(k.to_wire()));
    }

    #[test]
    fn generic_round_trip(k in ipseckey()) {
        let text = k.generic().to_string();
        prop_assert_eq!(Ipseckey::parse_presentation(&text), Ok(k), "{}", text);
    }

    #[test]
    fn record_round_trip(rr in record(), chunk in 1usize..70) {
        let text = rr.to_string();
        let parsed = Record::parse_presentation(&text);
        prop_assert_eq!(parsed, Ok(rr.clone()), "{}", text);
        let text = multi_line(&rr, chunk);
        prop_assert_eq!(Record::parse_presentation(&text), Ok(rr), "{}", text);
    }

    #[test]
    fn name_round_trip(name in domain_name()) {
        let text = name.to_string();
        let parsed = DomainName::from_ascii(&text).unwrap();
        prop_assert!(parsed.labels().eq(name.labels()), "{}", text);
        let mut wire = Vec::new();
        name.emit_wire(&mut wire);
        prop_assert_eq!(wire.len(), name.wire_len());
        prop_assert_eq!(DomainName::parse_wire(&wire), Ok((name.clone(), wire.len())));
        if let Some(parent) = name.parent() {
            prop_assert!(name.is_subdomain_of(&parent));
            prop_assert!(!parent.is_subdomain_of(&name));
        }
    }

    #[test]
    fn parse_wire_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(k) = Ipseckey::parse_wire(&bytes) {
            prop_assert_eq!(k.to_wire(), bytes.clone());
        }
        let _ = DomainName::parse_wire(&bytes);
    }

    #[test]
    fn parse_wire_near_valid_never_panics(k in ipseckey(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut bytes = k.to_wire();
        let at = cut.index(bytes.len());
        bytes[at] ^= flip;
        if let Ok(k) = Ipseckey::parse_wire(&bytes) {
            prop_assert_eq!(k.to_wire(), bytes.clone());
        }
        bytes.truncate(at);
        let _ = Ipseckey::parse_wire(&bytes);
    }

    #[test]
    fn parse_presentation_never_panics(text in "\\PC{0,80}", zone in ZONE_CHARS) {
        for text in [text.as_str(), zone.as_str()] {
            if let Ok(k) = Ipseckey::parse_presentation(text) {
                prop_assert_eq!(Ipseckey::parse_presentation(&k.to_string()), Ok(k));
            }
            if let Ok(rr) = Record::parse_presentation(text) {
                prop_assert_eq!(Record::parse_presentation(&rr.to_string()), Ok(rr));
            }
            let _ = DomainName::from_ascii(text);
        }
    }
}

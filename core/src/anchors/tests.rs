//! Fixtures are real: `dnssec-keygen -a ECDSAP256SHA256|ED25519 -n ZONE -f KSK test.`,
//! `dnssec-dsfromkey -2` / `-a SHA-384`, and dig against a `named` serving the
//! zone signed with `dnssec-signzone -S` (core/tests/data/anchors-*).
#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

const K13: &str = include_str!("../../tests/data/anchors-Ktest.+013+12068.key");
const K15: &str = include_str!("../../tests/data/anchors-Ktest.+015+28183.key");
const DS13: &str = include_str!("../../tests/data/anchors-dsset-test.+013+12068.txt");
const DS15: &str = include_str!("../../tests/data/anchors-dsset-test.+015+28183.txt");
const MULTILINE: &str = include_str!("../../tests/data/anchors-dig-multiline.txt");
const DNSSEC: &str = include_str!("../../tests/data/anchors-dig-dnssec.txt");

fn key(a: &TrustAnchor) -> (u16, u8, u8, Vec<u8>) {
    match &a.kind {
        AnchorKind::Dnskey {
            flags,
            protocol,
            algorithm,
            public_key,
        } => (*flags, *protocol, *algorithm, public_key.clone()),
        AnchorKind::Ds { .. } => panic!("not a DNSKEY: {a:?}"),
    }
}

fn err(text: &str) -> AnchorError {
    parse(text).expect_err(text)
}

#[test]
fn bind_key_files_and_their_key_tags() {
    for (file, tag, alg, len) in [(K13, 12068, 13, 64), (K15, 28183, 15, 32)] {
        let anchors = parse(file).unwrap();
        assert_eq!(anchors.len(), 1);
        let a = &anchors[0];
        assert_eq!(a.zone, "test.");
        assert_eq!(a.line, 5, "after the four comment lines");
        let (flags, protocol, algorithm, public_key) = key(a);
        assert_eq!((flags, protocol, algorithm), (257, 3, alg));
        assert_eq!(public_key.len(), len);
        assert_eq!(a.key_tag(), tag, "the keyid in the K-file name");
        assert!(a.matches_dnskey("TEST", flags, protocol, algorithm, &public_key));
        assert!(a.matches_dnskey("test.", flags, protocol, algorithm, &public_key));
        assert!(!a.matches_dnskey("other.", flags, protocol, algorithm, &public_key));
        assert!(!a.matches_dnskey("test.", 256, protocol, algorithm, &public_key));
    }
}

#[test]
fn dsfromkey_digests_match_their_keys() {
    for (keyfile, dsset, tag) in [(K13, DS13, 12068), (K15, DS15, 28183)] {
        let k = &parse(keyfile).unwrap()[0];
        let (flags, protocol, algorithm, public_key) = key(k);
        let ds = parse(dsset).unwrap();
        assert_eq!(ds.len(), 2);
        for (d, digest_type) in ds.iter().zip([2, 4]) {
            assert!(
                matches!(d.kind, AnchorKind::Ds { digest_type: t, .. } if t == digest_type),
                "{d:?}"
            );
            assert_eq!(d.key_tag(), tag);
            assert!(d.matches_dnskey("test", flags, protocol, algorithm, &public_key));
            assert!(d.matches_dnskey("TeSt.", flags, protocol, algorithm, &public_key));
            assert!(!d.matches_dnskey("test.test.", flags, protocol, algorithm, &public_key));
            let mut other = public_key.clone();
            other[0] ^= 1;
            assert!(!d.matches_dnskey("test.", flags, protocol, algorithm, &other));
        }
    }
    // The other key's DS does not match.
    let (flags, protocol, algorithm, public_key) = key(&parse(K13).unwrap()[0]);
    for d in parse(DS15).unwrap() {
        assert!(!d.matches_dnskey("test.", flags, protocol, algorithm, &public_key));
    }
}

#[test]
fn dig_multiline_and_dnssec_output() {
    let ml = parse(MULTILINE).unwrap();
    assert_eq!(ml.iter().map(|a| a.line).collect::<Vec<_>>(), [2, 6]);
    assert_eq!(ml[0].key_tag(), 12068);
    assert_eq!(ml[1].key_tag(), 3687);
    assert_eq!(key(&ml[0]), key(&parse(K13).unwrap()[0]));
    // +dnssec: the RRSIGs are skipped; the same two keys remain.
    let signed = parse(DNSSEC).unwrap();
    assert_eq!(signed.len(), 2);
    let mut tags: Vec<u16> = signed.iter().map(TrustAnchor::key_tag).collect();
    tags.sort_unstable();
    assert_eq!(tags, [3687, 12068]);
}

#[test]
fn ttl_and_class_in_either_order_split_digests_and_comments() {
    let text = "; comment\n\n2.0.192.IN-ADDR.ARPA. IN 3600 DS 12068 13 2 81C06E464694C725 \
                C6D001A4921A360F9C1E8E831A8C88BCBD8779F9C1F45F10 ; trailing\n\
                test. 1h DS 12068 13 2 (\n 81c06e464694c725c6d001a4921a360f\n \
                9c1e8e831a8c88bcbd8779f9c1f45f10 )\n. DS 20326 8 2 \
                E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n";
    let a = parse(text).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(
        (a[0].zone.as_str(), a[0].line),
        ("2.0.192.in-addr.arpa.", 3)
    );
    assert_eq!((a[1].zone.as_str(), a[1].line), ("test.", 4));
    assert_eq!((a[2].zone.as_str(), a[2].line), (".", 7));
    assert_eq!(a[2].key_tag(), 20326);
    let bom = format!("\u{feff}{}", K15);
    assert_eq!(parse(&bom).unwrap(), parse(K15).unwrap());
    let (flags, protocol, algorithm, public_key) = key(&parse(K13).unwrap()[0]);
    assert!(a[1].matches_dnskey("test", flags, protocol, algorithm, &public_key));
}

#[test]
fn errors_say_what_is_wrong() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "no DNSKEY or DS record found"),
        ("; only a comment\n", 1, "no DNSKEY or DS record found"),
        (
            "test. 300 IN RRSIG DNSKEY 13 1 300 2027 2026 1 test. AA==\n",
            1,
            "no DNSKEY or DS record found",
        ),
        (
            "\n\ntest. IN TXT \"x\"\n",
            3,
            "record type TXT is not a trust anchor (expected DNSKEY or DS)",
        ),
        (
            "test. IN DNSKEY 257 3 13 !!!\n",
            1,
            "DNSKEY public key is not valid base64",
        ),
        (
            "foo IN DNSKEY 257 3 13 AAAA\n",
            1,
            "owner name \"foo\" must be absolute (end with '.')",
        ),
        ("foo\\. IN DNSKEY 257 3 13 AAAA\n", 1, "must be absolute"),
        ("@ IN DNSKEY 257 3 13 AAAA\n", 1, "must be absolute"),
        ("a..b. IN DNSKEY 257 3 13 AAAA\n", 1, "empty label"),
        (
            "x.\nx. DS 1 13 1 4075428B935E161CF0F88B736796FE5B695EFE63\n",
            1,
            "no type",
        ),
        (
            "test. DS 1 13 1 4075428B935E161CF0F88B736796FE5B695EFE63\n",
            1,
            "DS digest type 1 (SHA-1) is not supported; publish a SHA-256 (2) DS",
        ),
        (
            "test. DS 1 13 2 4075\n",
            1,
            "DS digest is 2 bytes; digest type 2 has 32",
        ),
        ("test. DS 1 13 2 40X5\n", 1, "not hexadecimal"),
        (
            "test. DS 1 13 3 4075\n",
            1,
            "digest type 3 is not supported",
        ),
        (
            "test. DS 70000 13 2 4075\n",
            1,
            "DS key tag \"70000\" is not a number",
        ),
        (
            "test. IN DNSKEY 1 3 13 AAAA\n",
            1,
            "lack the zone-key bit (256)",
        ),
        ("test. IN DNSKEY 385 3 13 AAAA\n", 1, "REVOKE"),
        ("test. IN DNSKEY 257 2 13 AAAA\n", 1, "protocol 2 is not 3"),
        ("test. IN DNSKEY 257 3 13\n", 1, "no public key"),
        ("test. IN DNSKEY 257 3\n", 1, "ends before its algorithm"),
        ("test. CH DNSKEY 257 3 13 AAAA\n", 1, "class CH is not IN"),
        (
            "$ORIGIN test.\n",
            1,
            "$ORIGIN is not supported in a trust anchor file; write absolute owner names",
        ),
        ("\n$TTL 300\n", 2, "$TTL is not supported"),
        ("  300 IN DNSKEY 257 3 13 AAAA\n", 1, "no owner name"),
        ("test. DNSKEY 257 3 13 (\nAAAA\n", 1, "'(' is not closed"),
        ("test. DNSKEY 257 3 13 ( ( AAAA ) )\n", 1, "nested"),
        ("test. DNSKEY 257 3 13 AAAA )\n", 1, "')' without '('"),
        ("test. DNSKEY 257 3 13 AAAA\nbad. TXT x\n", 2, "TXT"),
        ("test. 1x DS 1 13 2 4075\n", 1, "TTL \"1x\""),
    ];
    for (text, line, why) in cases {
        let e = err(text);
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.why.contains(why), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
}

#[test]
fn names_round_trip_through_escapes() {
    assert_eq!(wire_name(".").unwrap(), [0]);
    assert_eq!(wire_name("A.b.").unwrap(), [1, b'a', 1, b'b', 0]);
    assert_eq!(wire_name("a\\.b.").unwrap(), [3, b'a', b'.', b'b', 0]);
    assert_eq!(wire_name("\\065.").unwrap(), [1, b'a', 0]);
    assert!(wire_name("\\256.").is_err());
    assert!(wire_name("\\1").is_err());
    assert!(wire_name(&format!("{}.", "a".repeat(64))).is_err());
    assert!(wire_name(&"a.".repeat(128)).is_err());
    assert_eq!(
        presentation(&wire_name("a\\.b.\\000.").unwrap()),
        "a\\.b.\\000."
    );
    // Characters the tokenizer splits at come back as \DDD, which it does not.
    let odd = presentation(&wire_name("\\040\\;x\\$.").unwrap());
    assert_eq!(odd, "\\040\\059x\\036.");
    let text = format!("{odd} DS 1 13 2 {}", "ab".repeat(32));
    assert_eq!(parse(&text).unwrap()[0].zone, odd);
    // Non-ASCII is bytes (never sliced mid-character).
    let w = wire_name("é.").unwrap();
    assert_eq!(w, [2, 0xc3, 0xa9, 0]);
    assert_eq!(presentation(&w), "\\195\\169.");
}

#[test]
fn never_panics_on_odd_input() {
    for text in [
        "é ( ; )",
        "\u{feff}test. DS",
        "test. DNSKEY 257 3 13 ∑∑∑",
        "test. DS 1 13 2 é1",
        "(((",
        ")",
        "test.\\",
        "\\\\\\",
        "test. IN IN DNSKEY",
        "test. 1 1 DNSKEY",
    ] {
        let _ = parse(text);
    }
    let long = format!("test. DNSKEY 257 3 13 {}\n", "A".repeat(200_000));
    assert!(err(&long).why.contains("more than a record holds"));
    assert_eq!(key_tag(257, 3, 1, &[1]), 0);
    assert_eq!(key_tag(257, 3, 1, &[0xab, 0xcd, 0xef]), 0xabcd);
}

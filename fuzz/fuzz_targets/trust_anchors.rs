//! Trust-anchor files (DNSKEY and DS records in zone-file presentation format,
//! `oemesh_core::anchors`): any text parses or is refused with a line number,
//! never a panic; every anchor's key tag and `matches_dnskey` take arbitrary
//! keys and names; a DNSKEY anchor matches its own key, and a DS anchor
//! printed back as a record re-parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_core::anchors::{self, AnchorKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let anchors = match anchors::parse(&text) {
        Ok(a) => a,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e}");
            assert!(!e.why.is_empty());
            return;
        }
    };
    assert!(!anchors.is_empty());
    // Arbitrary DNSKEY fields from the input itself.
    let flags = u16::from_be_bytes([
        data.first().copied().unwrap_or(1),
        data.get(1).copied().unwrap_or(1),
    ]);
    let protocol = data.get(2).copied().unwrap_or(3);
    let algorithm = data.get(3).copied().unwrap_or(13);
    let key = data.get(4..).unwrap_or_default();
    for a in &anchors {
        let _ = a.key_tag();
        let _ = anchors::key_tag(flags, protocol, algorithm, key);
        for zone in [
            a.zone.as_str(),
            a.zone.trim_end_matches('.'),
            &text,
            "",
            ".",
            "\\",
            "\\1",
        ] {
            let _ = a.matches_dnskey(zone, flags, protocol, algorithm, key);
        }
        match &a.kind {
            AnchorKind::Dnskey {
                flags,
                protocol,
                algorithm,
                public_key,
            } => {
                assert!(a.matches_dnskey(&a.zone, *flags, *protocol, *algorithm, public_key));
                assert!(a.matches_dnskey(
                    &a.zone.to_uppercase(),
                    *flags,
                    *protocol,
                    *algorithm,
                    public_key
                ));
            }
            AnchorKind::Ds {
                key_tag,
                algorithm,
                digest_type,
                digest,
            } => {
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                let record = format!(
                    "{} IN DS {key_tag} {algorithm} {digest_type} {hex}\n",
                    a.zone
                );
                let again = anchors::parse(&record).expect("a DS we printed parses");
                assert_eq!(again.len(), 1);
                assert_eq!(
                    (&again[0].zone, &again[0].kind),
                    (&a.zone, &a.kind),
                    "{record}"
                );
            }
        }
    }
});

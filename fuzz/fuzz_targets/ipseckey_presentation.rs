//! IPSECKEY zone text: whatever parses must format to text that parses to the same
//! value (RDATA alone and whole records). Parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_core::ipseckey::{DomainName, Ipseckey, Record};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = DomainName::from_ascii(text) {
        let again = DomainName::from_ascii(&name.to_string()).expect("formatted name parses");
        assert!(again.labels().eq(name.labels()));
    }
    if let Ok(parsed) = Ipseckey::parse_presentation(text) {
        let formatted = parsed.to_string();
        let reparsed = Ipseckey::parse_presentation(&formatted).expect("formatted RDATA parses");
        assert_eq!(reparsed, parsed);
        assert_eq!(reparsed.to_string(), formatted);
        assert_eq!(Ipseckey::parse_wire(&parsed.to_wire()).as_ref(), Ok(&parsed));
    }
    if let Ok(parsed) = Record::parse_presentation(text) {
        let formatted = parsed.to_string();
        let reparsed = Record::parse_presentation(&formatted).expect("formatted record parses");
        assert_eq!(reparsed, parsed);
        assert_eq!(reparsed.to_string(), formatted);
    }
});

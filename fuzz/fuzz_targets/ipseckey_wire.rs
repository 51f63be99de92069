//! IPSECKEY RDATA from the wire: parse → emit must give back the same bytes, and
//! the emitted bytes must parse to the same value. Parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_core::ipseckey::{DomainName, Ipseckey};

fuzz_target!(|data: &[u8]| {
    let _ = DomainName::parse_wire(data);
    let Ok(parsed) = Ipseckey::parse_wire(data) else {
        return;
    };
    let mut emitted = Vec::new();
    parsed.emit_wire(&mut emitted);
    assert_eq!(emitted.len(), parsed.wire_len());
    // The key is "the rest", so nothing is dropped: emit is byte-exact.
    assert_eq!(emitted, data);
    let reparsed = Ipseckey::parse_wire(&emitted).expect("emitted RDATA parses");
    assert_eq!(reparsed, parsed);
    // The text forms hold the same value.
    assert_eq!(Ipseckey::parse_presentation(&parsed.to_string()).as_ref(), Ok(&parsed));
    assert_eq!(Ipseckey::parse_presentation(&parsed.generic().to_string()).as_ref(), Ok(&parsed));
});

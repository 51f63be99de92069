//! The Configuration payload (RFC 7296 §3.15, issue 13) on any bytes, as the
//! body after the generic payload header: parse, then read it the way both
//! roles do (a responder's request, an initiator's reply, for both
//! families). Never panics; what parses emits back to the same bytes but
//! the reserved ones (sent as zero); an
//! address read from a reply is of the family asked for.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use oemesh_core::ike::message::Cp;

fuzz_target!(|data: &[u8]| {
    let Ok(cp) = Cp::parse(data) else {
        return;
    };
    let mut out = Vec::new();
    cp.emit(&mut out);
    // The three RESERVED bytes are ignored on receipt and sent as zero
    // (RFC 7296 §3.15); everything else comes back as it came.
    assert_eq!(out[0], data[0], "CFG Type");
    assert_eq!(out[1..4], [0, 0, 0]);
    assert_eq!(out[4..], data[4..], "emit gives back the attributes");
    assert_eq!(cp.buffer_len(), data.len());
    let _ = cp.requested();
    for like in [IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])] {
        if let Ok(Some(a)) = cp.assigned(like) {
            assert_eq!(a.is_ipv4(), like.is_ipv4());
        }
    }
    assert!(cp.attributes().count() <= oemesh_core::ike::message::payload::MAX_CP_ATTRIBUTES + 1);
});

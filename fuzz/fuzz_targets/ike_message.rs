//! IKE message codec: anything that parses must emit and re-parse to the same value
//! (and, since emit is canonical, emit the same bytes twice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_core::ike::message::Message;
use oemesh_core::ike::udp_encap::{self, Datagram};

fuzz_target!(|data: &[u8]| {
    let ike = match udp_encap::classify(data) {
        Datagram::Ike(ike) => ike,
        _ => data,
    };
    let Ok(message) = Message::parse(ike) else {
        return;
    };
    let mut first = Vec::new();
    message.emit(&mut first);
    assert_eq!(first.len(), message.buffer_len());
    let reparsed = Message::parse(&first).expect("re-emitted message must parse");
    assert_eq!(reparsed, message);
    let mut second = Vec::new();
    reparsed.emit(&mut second);
    assert_eq!(first, second);
});

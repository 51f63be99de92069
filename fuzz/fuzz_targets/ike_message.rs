//! IKE message codec: anything that parses must emit and re-parse to the same value
//! (and, since emit is canonical, emit the same bytes twice). Parsing, plain or
//! protected, must hold no more heap at once than `parse_allocation_bound` of
//! the input (issue 11); a counting allocator checks it for every input.
#![no_main]

#[path = "support/counting.rs"]
mod counting;

use libfuzzer_sys::fuzz_target;
use oemesh_core::ike::message::{Message, parse_allocation_bound};
use oemesh_core::ike::udp_encap::{self, Datagram};
use oemesh_testkit::attacker::bombs::ClearCipher;

fuzz_target!(|data: &[u8]| {
    let ike = match udp_encap::classify(data) {
        Datagram::Ike(ike) => ike,
        _ => data,
    };
    let bound = parse_allocation_bound(ike.len());
    let (protected, peak) = counting::peak(|| Message::parse_protected(ike, &ClearCipher).is_ok());
    counting::assert_within("Message::parse_protected", ike.len(), peak, bound);
    let (parsed, peak) = counting::peak(|| Message::parse(ike));
    counting::assert_within("Message::parse", ike.len(), peak, bound);
    let Ok(message) = parsed else {
        assert!(
            !protected,
            "parse_protected took a message that parse refuses"
        );
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

//! Request lines on the control socket (`oemesh status|peers|check`): any bytes
//! a local client sends are parsed or refused, never panic, and a request that
//! parses survives being encoded and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_agent::control::proto::{encode_line, parse_request};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_request(data) else {
        return;
    };
    let line = encode_line(&request);
    let again = parse_request(&line).expect("a request we encoded parses");
    assert_eq!(again, request);
});

//! Every IKE datagram a UDP worker reads goes through
//! `Cookies::triage` (core/src/ike/cookie.rs) before anything else: the
//! header and the generic payload headers are read to find the cookie and
//! the nonce, from bytes anyone may have sent. Arbitrary input never panics
//! it; a reply is sent only while cookies are required, is never larger than
//! the request, and is an IKE_SA_INIT response with only N(COOKIE) to the
//! request's SPIi.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use oemesh_core::ike::cookie::{Cookies, Triage};
use oemesh_core::ike::message::{ExchangeType, Message, NotifyType, Payload};

fuzz_target!(|data: &[u8]| {
    let [flags, message @ ..] = data else {
        return;
    };
    let cookies = Cookies::with_seed([7; 32]);
    let required = flags & 1 == 1;
    cookies.set_required(required);
    let from = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let Triage::Cookie(reply) = cookies.triage(Instant::now(), message, from) else {
        return;
    };
    assert!(required, "a cookie reply while cookies were not required");
    let reply = reply.bytes();
    assert!(reply.len() <= message.len(), "a reply larger than its request");
    let m = Message::parse(reply).expect("the reply parses");
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert!(m.header.flags.response());
    assert_eq!(m.header.spi_i.to_be_bytes(), message[..8]);
    assert!(matches!(&m.payloads[..], [Payload::Notify(n)] if n.ty == NotifyType::COOKIE));
});

//! Every ICMP error the IKE socket's error queue hands over goes through
//! `oe::Unreachable::parse` (core/src/oe/unreachable.rs): the type and code
//! come from the ICMP sender, the quoted bytes from whatever it chose to
//! quote. Arbitrary input never panics it; only destination-unreachable
//! types are accepted, and a quoted SPI is one the input holds.
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use oemesh_core::oe::Unreachable;

fuzz_target!(|data: &[u8]| {
    let [flags, icmp_type, code, rest @ ..] = data else {
        return;
    };
    let (v6, natt) = (flags & 1 == 1, flags & 2 == 2);
    let to = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 500);
    let Some(u) = Unreachable::parse(to, None, v6, *icmp_type, *code, rest, natt) else {
        return;
    };
    assert_eq!(*icmp_type, if v6 { 1 } else { 3 }, "not a destination unreachable");
    if let Some(spi) = u.spi_i {
        let at = if natt { 4 } else { 0 };
        assert_eq!(rest.get(at..at + 8), Some(&spi.to_be_bytes()[..]));
    }
    let _ = u.to_string();
});

//! dnskeys (stub)
fn main() {}

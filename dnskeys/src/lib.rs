//! dnskeys library (stub)

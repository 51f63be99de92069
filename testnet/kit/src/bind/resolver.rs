//! A validating BIND resolver in front of a signed [`Bind`]: `recursion yes`,
//! `dnssec-validation yes`, the zones' keys as static trust anchors and a
//! `static-stub` zone per served zone pointing at the authoritative server.
//! Its answers from the signed zones carry AD; a forged or expired answer is
//! SERVFAIL.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::dnssec::trust_anchors_block;
use super::extra::{Named, file_options, listen_on};
use super::{Bind, REVERSE_V4_ZONE};

/// Starts the resolver where `real` runs (its namespace), on `addr` (which
/// must exist there); waits until it answers for `real`'s zones with AD.
/// `real` must be signed and listen on port 53 (`static-stub` knows no port:
/// [`Bind::start_in_signed`]).
pub fn start_validating_resolver(real: &Bind, addr: SocketAddr) -> Result<Named> {
    let anchors = real
        .anchor_file()
        .context("a validating resolver needs the zones signed")?;
    if real.port() != 53 {
        bail!(
            "static-stub zones reach port 53 only; the authoritative server is on {}",
            real.addr()
        );
    }
    let anchors = fs::read_to_string(anchors)?;
    let server = real.addr().ip();
    let zones = real.zones().to_vec();
    let write = |dir: &Path| -> Result<()> {
        let mut conf = format!(
            "options {{\n{}{}    recursion yes;\n    allow-recursion {{ any; }};\n    \
             allow-query {{ any; }};\n    allow-query-cache {{ any; }};\n    \
             dnssec-validation yes;\n    notify no;\n}};\ncontrols {{ }};\n{}",
            file_options(dir),
            listen_on(addr),
            trust_anchors_block(&anchors)
        );
        for zone in &zones {
            conf.push_str(&format!(
                "zone \"{}\" {{\n    type static-stub;\n    server-addresses {{ {server}; }};\n}};\n",
                zone.trim_end_matches('.')
            ));
        }
        fs::write(dir.join("named.conf"), conf)?;
        Ok(())
    };
    let ready = |n: &Named| {
        n.dig(&["+comments", "+dnssec", REVERSE_V4_ZONE, "SOA"])
            .is_ok_and(|o| authenticated(&o))
    };
    Named::launch(real.netns_name(), addr, write, ready).context("starting the validating resolver")
}

/// Whether dig output (with `+comments`) has the AD flag in its header.
pub fn authenticated(dig_output: &str) -> bool {
    dig_output
        .lines()
        .find_map(|l| l.strip_prefix(";; flags:"))
        .and_then(|f| f.split(';').next())
        .is_some_and(|flags| flags.split_whitespace().any(|f| f == "ad"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_flag() {
        assert!(authenticated(
            ";; flags: qr rd ra ad; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n"
        ));
        assert!(!authenticated(
            ";; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n"
        ));
    }
}

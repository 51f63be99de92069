//! A second `named` that lies about the reverse zones: what an on-path
//! attacker or a poisoned resolver would answer, for the agent's DNSSEC tests.
//!
//! ```no_run
//! use oemesh_testkit::bind::{Bind, forge::{Forgery, start_forger}};
//! let real = Bind::start_signed().unwrap();
//! let addr = "127.0.0.1:5354".parse().unwrap();
//! let ip = "192.0.2.10".parse().unwrap();
//! let forger = start_forger(&real, addr, &Forgery::Unsigned(vec![(ip, None)])).unwrap();
//! assert!(forger.dig(&["-x", "192.0.2.10", "IPSECKEY"]).unwrap().is_empty());
//! ```

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::dnssec::{reverse_name, reverse_zone_of};
use super::extra::{Named, file_options, listen_on};
use super::{Bind, REVERSE_V4_ZONE, REVERSE_V6_ZONE, which, zone_file_name};

/// What the forger serves for [`REVERSE_V4_ZONE`] and [`REVERSE_V6_ZONE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// An unsigned copy of the real zones (no DNSKEY, RRSIG, NSEC) in which
    /// each listed address's reverse name has only the given IPSECKEY RDATA
    /// (`"10 0 4 . <base64>"`), or, for `None`, does not exist (NXDOMAIN).
    Unsigned(Vec<(IpAddr, Option<String>)>),
    /// The real zones as they are now (IPSECKEYs included), signed with the
    /// real, anchored keys, but every RRSIG valid only from 2020-01-01 to
    /// 2020-01-02: a replay of old signatures.
    Expired,
}

/// Starts `named` where `real` runs (its namespace), on `addr` (which must
/// exist there), serving `forgery` of `real`'s reverse zones, read from `real`
/// by AXFR now. For [`Forgery::Expired`] `real` must be signed.
pub fn start_forger(real: &Bind, addr: SocketAddr, forgery: &Forgery) -> Result<Named> {
    let zones = [REVERSE_V4_ZONE, REVERSE_V6_ZONE];
    let mut texts = Vec::new();
    for zone in zones {
        let text = match forgery {
            Forgery::Unsigned(lies) => {
                let lies: Vec<_> = lies
                    .iter()
                    .filter(|(ip, _)| reverse_zone_of(*ip) == zone)
                    .collect();
                forge_unsigned(&real.zone_copy(zone, false)?, &lies)
            }
            Forgery::Expired => {
                if !real.signed() {
                    bail!("Forgery::Expired needs the real zones signed");
                }
                real.zone_copy(zone, true)?
            }
        };
        texts.push((zone, text));
    }
    let expired = *forgery == Forgery::Expired;
    let key_dir = real.key_dir();
    let write = |dir: &Path| -> Result<()> {
        let mut conf = format!(
            "options {{\n{}{}    recursion no;\n    dnssec-validation no;\n    \
             allow-query {{ any; }};\n    notify no;\n}};\ncontrols {{ }};\n",
            file_options(dir),
            listen_on(addr)
        );
        for (zone, text) in &texts {
            let file = dir.join(zone_file_name(zone));
            fs::write(&file, text)?;
            if expired {
                sign_expired(zone, &file, &key_dir)?;
            }
            conf.push_str(&format!(
                "zone \"{}\" {{\n    type primary;\n    file \"{}\";\n}};\n",
                zone.trim_end_matches('.'),
                file.display()
            ));
        }
        fs::write(dir.join("named.conf"), conf)?;
        Ok(())
    };
    let ready = |n: &Named| {
        zones.iter().all(|z| {
            n.dig(&["+norecurse", z, "SOA"])
                .is_ok_and(|o| o.contains("SOA"))
        })
    };
    Named::launch(real.netns_name(), addr, write, ready).context("starting the forger")
}

/// `copy` (a zone as [`Bind::zone_copy`] gives it) with every record at each
/// lie's reverse name replaced by the lie's IPSECKEY, or by nothing.
fn forge_unsigned(copy: &str, lies: &[&(IpAddr, Option<String>)]) -> String {
    let names: Vec<String> = lies.iter().map(|(ip, _)| reverse_name(*ip)).collect();
    let mut out: String = copy
        .lines()
        .filter(|l| {
            let owner = l
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            !names.contains(&owner)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for ((_, rdata), name) in lies.iter().zip(&names) {
        if let Some(rdata) = rdata {
            out.push_str(&format!("{name} 300 IN IPSECKEY {rdata}\n"));
        }
    }
    out
}

/// Signs `file` in place with the keys in `key_dir`, every RRSIG already expired.
fn sign_expired(zone: &str, file: &Path, key_dir: &Path) -> Result<()> {
    let signed = file.with_extension("signed");
    let tool = which("dnssec-signzone").context("dnssec-signzone (package bind9-utils)")?;
    // -z: the CSK (flags 257) signs everything; -P: no post-signing check
    // (it would reject the expired signatures).
    let out = Command::new(tool)
        .args(["-z", "-P", "-s", "20200101000000", "-e", "20200102000000"])
        .arg("-K")
        .arg(key_dir)
        // The dsset- file goes beside the zone, not into the working directory.
        .arg("-d")
        .arg(file.parent().unwrap_or(Path::new(".")))
        .args(["-o", zone])
        .arg("-f")
        .arg(&signed)
        .arg(file)
        .output()
        .context("running dnssec-signzone")?;
    if !out.status.success() {
        bail!(
            "dnssec-signzone {zone} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::rename(&signed, file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn unsigned_and_expired_forgeries() {
        let real = Bind::start_signed().expect("signed BIND starts");
        let key = "10 0 2 . AQPSKmynfzW4kyBv015MUG2DeIQ3Cbl+BBZH4b/0PY1kxkmvHjcZc8nokfzj31GajIQKY+5CptLr3buXA10hWqTkF7H6RfoRqXQeogmMHfpftf6zMv1LyBUgia7za6ZEzOJBOztyvhjL742iU/TpPSEDhm2SNKLijfUppn1UaNvv4w==";
        real.nsupdate(&format!(
            "update add 10.2.0.192.in-addr.arpa. 300 IN IPSECKEY {key}\n\
             update add 20.2.0.192.in-addr.arpa. 300 IN IPSECKEY {key}"
        ))
        .unwrap();
        let port = super::super::free_port().unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let ten: IpAddr = "192.0.2.10".parse().unwrap();
        let twenty: IpAddr = "192.0.2.20".parse().unwrap();
        let lie = "10 0 2 . AQPZZZZZ".to_owned();
        let forger = start_forger(
            &real,
            addr,
            &Forgery::Unsigned(vec![(ten, Some(lie)), (twenty, None)]),
        )
        .unwrap();
        let ten_answer = forger
            .dig(&["+dnssec", "-x", "192.0.2.10", "IPSECKEY"])
            .unwrap();
        assert!(ten_answer.contains("AQPZZZZZ"), "{ten_answer}");
        assert!(!ten_answer.contains("RRSIG"), "{ten_answer}");
        let twenty_answer = forger.dig(&["-x", "192.0.2.20", "IPSECKEY"]).unwrap();
        assert!(twenty_answer.is_empty(), "NXDOMAIN: {twenty_answer}");
        assert!(forger.dig(&[REVERSE_V4_ZONE, "DNSKEY"]).unwrap().is_empty());
        drop(forger);

        let port = super::super::free_port().unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let forger = start_forger(&real, addr, &Forgery::Expired).unwrap();
        let answer = forger
            .dig(&["+dnssec", "-x", "192.0.2.10", "IPSECKEY"])
            .unwrap();
        assert!(
            answer.contains("RRSIG\tIPSECKEY 13 6 300 20200102000000 20200101000000"),
            "{answer}"
        );
        let dnskey = forger.dig(&[REVERSE_V4_ZONE, "DNSKEY"]).unwrap();
        let anchors = fs::read_to_string(real.anchor_file().unwrap()).unwrap();
        let anchor = super::super::dnssec::anchor_lines(&anchors)
            .into_iter()
            .find(|l| l.starts_with(REVERSE_V4_ZONE))
            .unwrap()
            .split_whitespace()
            .skip(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            dnskey.replace('\t', " ").contains(&anchor),
            "the real key: {dnskey}"
        );
    }
}

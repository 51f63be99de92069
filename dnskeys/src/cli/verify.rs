//! `dnskeys verify`: ask, check, print (text or JSON).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::args::VerifyArgs;
use super::run::{load_key, unix_now};
use crate::record::{Owner, key_base64};
use crate::transport;
use crate::verify::{self, Report, site};

pub(super) async fn verify(a: &VerifyArgs, timeout: Duration) -> Result<bool> {
    let owner = a.owner.owner()?;
    if let (Owner::Subnet(s), Some(probe)) = (owner, a.probe)
        && !s.contains(probe)
    {
        return Err(super::Usage(anyhow::anyhow!(
            "--probe {probe} is not inside --subnet {s}; give a host address inside it, e.g. {}",
            s.first_host()
        ))
        .into());
    }
    let expected = match &a.key {
        Some(path) => Some(load_key(path)?.public_key()),
        None => None,
    };
    let server = match &a.server {
        Some(s) => transport::parse_server(s, timeout)?,
        None => transport::system_resolver(Path::new("/etc/resolv.conf"), timeout)?,
    };
    let anchors = if a.dnssec {
        Some(crate::dnssec::load_anchor_files(&a.trust_anchor)?)
    } else {
        None
    };
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let dnssec = anchors.as_deref().map(|an| (an, now));
    let mut out = std::io::stdout().lock();
    let subnet = match owner {
        Owner::Subnet(s) => s,
        Owner::Host(ip) => {
            let report = verify::verify(&server, ip, expected, dnssec).await?;
            warn_expiry(&report);
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?;
                return Ok(report.ok());
            }
            print_report(&mut out, &report, &ip.to_string())?;
            print_verdict(&mut out, &report, expected, "")?;
            return Ok(report.ok());
        }
    };
    let probe = a.probe.unwrap_or_else(|| subnet.first_host());
    let site = site::verify_subnet(&server, subnet, probe, expected, dnssec).await?;
    warn_expiry(&site.wildcard);
    warn_expiry(&site.probe);
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&site.to_json())?)?;
        return Ok(site.ok());
    }
    print_report(&mut out, &site.wildcard, &format!("wildcard for {subnet}"))?;
    print_report(
        &mut out,
        &site.probe,
        &format!("{probe}, a host inside {subnet}"),
    )?;
    for note in &site.notes {
        writeln!(out, "NOTE: {note}")?;
    }
    for problem in &site.problems {
        writeln!(out, "FAIL: {problem}")?;
    }
    for (report, whose) in [
        (&site.wildcard, "the wildcard".to_owned()),
        (&site.probe, format!("{} (a host inside)", site.probe.name)),
    ] {
        if !report.ok() {
            print_verdict(&mut out, report, expected, &whose)?;
        }
    }
    if site.ok() {
        print_verdict(
            &mut out,
            &site.wildcard,
            expected,
            &format!("the wildcard and {probe}"),
        )?;
    }
    Ok(site.ok())
}

/// The records of one answer and its `DNSSEC:` line.
fn print_report(out: &mut impl Write, report: &Report, what: &str) -> Result<()> {
    let n = report.records.len();
    writeln!(
        out,
        "{} ({what}) at {}: {} IPSECKEY record{}",
        report.name,
        report.server,
        n,
        if n == 1 { "" } else { "s" }
    )?;
    for alias in &report.aliases {
        writeln!(out, "  alias: {alias}")?;
    }
    for r in &report.records {
        let tag = if r.matches {
            "match  "
        } else if r.usable() {
            "other  "
        } else {
            "invalid"
        };
        match &r.decoded {
            Ok(k) => match r.problem() {
                None => writeln!(out, "  [{tag}] {} IN IPSECKEY {k}", r.ttl)?,
                Some(why) => writeln!(out, "  [{tag}] {} IN IPSECKEY {k}: {why}", r.ttl)?,
            },
            Err(why) => {
                let hex: String = r.rdata.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(
                    out,
                    "  [{tag}] {} IN IPSECKEY \\# {} {hex}: {why}",
                    r.ttl,
                    r.rdata.len()
                )?
            }
        }
    }
    writeln!(out, "DNSSEC: {}", report.dnssec_summary())?;
    Ok(())
}

/// The `OK: …` or `FAIL: …` line for one answer; `whose` names it when there
/// are several ("the wildcard"), empty for `--ip`.
fn print_verdict(
    out: &mut impl Write,
    report: &Report,
    expected: Option<[u8; 32]>,
    whose: &str,
) -> Result<()> {
    let at = if whose.is_empty() {
        String::new()
    } else {
        format!(" for {whose}")
    };
    if let Some(v) = &report.validation
        && v.state != crate::dnssec::State::Secure
    {
        writeln!(
            out,
            "FAIL: the answer{at} is not DNSSEC-secure ({})",
            v.state
        )?;
        return Ok(());
    }
    let found = match expected {
        Some(_) => report.records.iter().any(|r| r.matches),
        None => report.records.iter().any(verify::Found::usable),
    };
    let at = if whose.is_empty() {
        String::new()
    } else {
        format!(" (answer{at})")
    };
    let verdict = match (expected, found) {
        (Some(k), true) => format!("OK: a record carries key {}{at}", key_base64(&k)),
        (Some(k), false) => format!("FAIL: no record carries key {}{at}", key_base64(&k)),
        (None, true) => format!("OK: at least one usable Ed25519 record{at}"),
        (None, false) => format!("FAIL: no usable Ed25519 record{at}"),
    };
    writeln!(out, "{verdict}")?;
    Ok(())
}

/// Warns (stderr) when the signature over the answer expires within
/// [`crate::dnssec::EXPIRY_WARNING_S`], or has expired.
fn warn_expiry(report: &Report) {
    use crate::dnssec::{EXPIRY_WARNING_S, human_duration, human_time};
    let Some(v) = &report.validation else { return };
    let (Some(at), Some(left)) = (v.expires, v.expires_in) else {
        return;
    };
    if left >= EXPIRY_WARNING_S {
        return;
    }
    let when = if left < 0 {
        format!("expired {}", human_time(at))
    } else {
        format!("expires {}, in {}", human_time(at), human_duration(left))
    };
    eprintln!(
        "dnskeys: warning: the RRSIG over {} IPSECKEY {when}; re-sign the zone, or \
         every validating peer treats the key as bogus",
        report.name
    );
}

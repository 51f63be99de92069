//! The commands' bodies: load, decide, print. Messages for the admin go to
//! stderr as `dnskeys: warning: ...`; results go to stdout.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hickory_proto::rr::Name;
use oemesh_core::hostkey::HostKey;
use oemesh_core::ipseckey::{Ipseckey, reverse_name};
use zeroize::Zeroizing;

use super::args::{
    KeygenArgs, PublishArgs, RecordArgs, RemoveArgs, RotateArgs, UpdateTarget, VerifyArgs,
};
use crate::record::{self, host_record, key_base64};
use crate::transport::{self, Server};
use crate::update::{self, Applied, UpdateError, Updater, plan};
use crate::{keyfile, rollover, tsig, verify};

/// Loads a host key, printing its warnings.
pub(super) fn load_key(path: &Path) -> Result<HostKey> {
    let loaded = keyfile::load(path)?;
    for w in &loaded.warnings {
        eprintln!("dnskeys: warning: {w}");
    }
    Ok(loaded.key)
}

pub(super) fn keygen(a: &KeygenArgs) -> Result<()> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).context("drawing random bytes from the OS")?;
    let key = HostKey::from_seed(&seed);
    keyfile::write_new(&a.out, &key, a.force)?;
    println!("{}", key_base64(&key.public_key()));
    eprintln!(
        "dnskeys: wrote a new Ed25519 key to {} (mode 0600); its public key is printed above",
        a.out.display()
    );
    Ok(())
}

pub(super) fn pubkey(path: &Path) -> Result<()> {
    println!("{}", key_base64(&load_key(path)?.public_key()));
    Ok(())
}

pub(super) fn record(a: &RecordArgs) -> Result<()> {
    let key = load_key(&a.key.key)?;
    let r = host_record(
        a.ip,
        key.public_key(),
        a.shape.precedence,
        a.shape.gateway.clone(),
        a.ttl,
    );
    let mut out = std::io::stdout().lock();
    out.write_all(record::render(&r, a.format).as_bytes())?;
    Ok(())
}

/// Everything an update command needs, checked before anything is sent.
struct Prepared {
    tsig: tsig::TsigKey,
    server: Server,
    name: Name,
    zone: Option<Name>,
}

fn prepare(t: &UpdateTarget, timeout: Duration) -> Result<Prepared> {
    let tsig = tsig::load(&t.tsig_key)?;
    if let Ok(meta) = std::fs::metadata(&t.tsig_key) {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o004 != 0 {
            eprintln!(
                "dnskeys: warning: TSIG key file {} is readable by everyone; \
                 restrict it with 'chmod 600 {}'",
                t.tsig_key.display(),
                t.tsig_key.display()
            );
        }
    }
    let server = transport::parse_server(&t.server, timeout)?;
    let name = update::to_hickory_name(&reverse_name(t.ip))?;
    let zone = match &t.zone {
        None => None,
        Some(z) => {
            let mut zone = Name::from_ascii(z)
                .map_err(|e| anyhow::anyhow!("--zone {z:?} is not a domain name: {e}"))
                .map_err(super::Usage)?;
            zone.set_fqdn(true);
            if !zone.zone_of(&name) {
                return Err(UpdateError::OutsideZone {
                    name: name.to_ascii(),
                    zone: zone.to_ascii(),
                }
                .into());
            }
            Some(zone)
        }
    };
    Ok(Prepared {
        tsig,
        server,
        name,
        zone,
    })
}

async fn updater(p: &Prepared) -> Result<Updater<'_>> {
    let zone = match &p.zone {
        Some(z) => z.clone(),
        None => update::find_zone(&p.server, &p.name).await?,
    };
    Ok(Updater {
        server: p.server,
        key: &p.tsig,
        name: p.name.clone(),
        zone,
    })
}

fn print_applied(verb: &str, applied: &Applied, name: &Name) {
    if applied.noop {
        println!(
            "{verb}: nothing to change at {name} (zone {})",
            applied.zone
        );
        return;
    }
    for d in &applied.plan.delete {
        if !applied.plan.add.iter().any(|a| wire(a) == *d) {
            match Ipseckey::parse_wire(d) {
                Ok(k) => println!("removed: {name} IN IPSECKEY {k}"),
                Err(_) => println!("removed: {name} IN IPSECKEY (undecodable)"),
            }
        }
    }
    for a in &applied.plan.add {
        println!("published: {name} {} IN IPSECKEY {a}", applied.plan.ttl);
    }
    println!("{verb}: done, one UPDATE to zone {}", applied.zone);
}

fn wire(k: &Ipseckey) -> Vec<u8> {
    let mut w = Vec::new();
    k.emit_wire(&mut w);
    w
}

pub(super) async fn publish(a: &PublishArgs, timeout: Duration) -> Result<()> {
    let key = load_key(&a.key.key)?;
    let p = prepare(&a.target, timeout)?;
    let up = updater(&p).await?;
    let pk = key.public_key();
    let rdata = Ipseckey::ed25519(a.shape.precedence, a.shape.gateway.clone(), pk);
    let applied = up
        .apply(|cur| Ok(plan::publish(cur, &pk, rdata.clone(), a.ttl)))
        .await?;
    print_applied("publish", &applied, &p.name);
    Ok(())
}

pub(super) async fn remove(a: &RemoveArgs, timeout: Duration) -> Result<()> {
    let key = load_key(&a.key.key)?;
    let p = prepare(&a.target, timeout)?;
    let up = updater(&p).await?;
    let pk = key.public_key();
    let applied = up.apply(|cur| Ok(plan::remove(cur, &pk))).await?;
    if applied.noop {
        println!(
            "remove: no record at {} carries this key; nothing to change",
            p.name
        );
    } else {
        print_applied("remove", &applied, &p.name);
    }
    Ok(())
}

pub(super) async fn rotate(a: &RotateArgs, timeout: Duration) -> Result<()> {
    let old = load_key(&a.old)?.public_key();
    let new = load_key(&a.new)?.public_key();
    let p = prepare(&a.target, timeout)?;
    let up = updater(&p).await?;
    let name = p.name.to_ascii();
    // When step 1 ran: recorded beside the new key (see crate::rollover).
    let record_path = rollover::record_path(&a.new);
    let (old_b64, new_b64) = (key_base64(&old), key_base64(&new));
    let step1 =
        rollover::Step1::load(&record_path)?.filter(|r| r.is_for(&name, &old_b64, &new_b64));
    let now = unix_now();
    let applied = if a.finish {
        up.apply(|cur| {
            let plan = plan::rotate_finish(cur, &name, &old, &new, a.precedence, a.ttl)?;
            // Done already (the old key is gone): nothing to wait for.
            if !plan.is_noop(cur) {
                rollover::finish_allowed(step1.as_ref(), &record_path, now, a.force)?;
            }
            Ok(plan)
        })
        .await?
    } else {
        up.apply(|cur| plan::rotate_start(cur, &name, &old, &new, a.gateway.clone(), a.ttl))
            .await?
    };
    print_applied(
        if a.finish {
            "rotate --finish"
        } else {
            "rotate"
        },
        &applied,
        &p.name,
    );
    if a.finish {
        match std::fs::remove_file(&record_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "dnskeys: warning: could not remove {}: {e}",
                record_path.display()
            ),
        }
        return Ok(());
    }
    // Caches may hold the RRset as it was before, for its TTL (or the old TTL, if lowered).
    let ttl = applied.before.ttl.unwrap_or(0).max(applied.plan.ttl);
    // Running step 1 again (nothing changed) keeps the clock of the first run;
    // a change in DNS, or no record of an earlier run, starts it now.
    let record = match step1 {
        Some(r) if applied.noop => r,
        _ => rollover::Step1 {
            name: name.clone(),
            old: old_b64,
            new: new_b64,
            at: now,
            wait: u64::from(ttl),
        },
    };
    let recorded = match record.save(&record_path) {
        Ok(()) => format!("recorded in {}", record_path.display()),
        Err(e) => {
            eprintln!(
                "dnskeys: warning: could not record when step 1 ran ({e:#}); \
                 --finish will then need --force"
            );
            "not recorded".to_owned()
        }
    };
    let remaining = record.finish_after().saturating_sub(now);
    println!(
        "next: wait at least {remaining} s (until {}; {recorded}) plus the time your \
         secondary servers take to pick up the change, so that no cache still holds the \
         records without the new key; then switch the host to {} and run this command again \
         with --finish (refused before then)",
        rollover::utc(record.finish_after()),
        a.new.display()
    );
    Ok(())
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) async fn verify(a: &VerifyArgs, timeout: Duration) -> Result<bool> {
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
    let report = verify::verify(
        &server,
        a.ip,
        expected,
        anchors.as_deref().map(|an| (an, now)),
    )
    .await?;
    if let Some(v) = &report.validation {
        warn_expiry(&report.name, v);
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?;
        return Ok(report.ok());
    }
    let n = report.records.len();
    writeln!(
        out,
        "{} ({}) at {}: {} IPSECKEY record{}",
        report.name,
        a.ip,
        server,
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
    let verdict = match (expected, report.ok()) {
        (Some(k), true) => format!("OK: a record carries key {}", key_base64(&k)),
        (Some(k), false) => format!("FAIL: no record carries key {}", key_base64(&k)),
        (None, true) => "OK: at least one usable Ed25519 record".to_owned(),
        (None, false) => "FAIL: no usable Ed25519 record".to_owned(),
    };
    match &report.validation {
        Some(v) if v.state != crate::dnssec::State::Secure => {
            writeln!(out, "FAIL: the answer is not DNSSEC-secure ({})", v.state)?
        }
        _ => writeln!(out, "{verdict}")?,
    }
    Ok(report.ok())
}

/// Warns (stderr) when the signature over the answer expires within
/// [`crate::dnssec::EXPIRY_WARNING_S`], or has expired.
fn warn_expiry(name: &str, v: &crate::dnssec::Validation) {
    use crate::dnssec::{EXPIRY_WARNING_S, human_duration, human_time};
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
        "dnskeys: warning: the RRSIG over {name} IPSECKEY {when}; re-sign the zone, or \
         every validating peer treats the key as bogus"
    );
}

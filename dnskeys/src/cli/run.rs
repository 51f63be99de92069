//! The commands' bodies: load, decide, print. Messages for the admin go to
//! stderr as `dnskeys: warning: ...`; results go to stdout.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hickory_proto::rr::Name;
use oemesh_core::hostkey::HostKey;
use oemesh_core::ipseckey::{DomainName, Gateway, Ipseckey};
use zeroize::Zeroizing;

use super::args::{KeygenArgs, PublishArgs, RecordArgs, RemoveArgs, RotateArgs, UpdateTarget};
use crate::record::{self, Owner, key_base64, owner_record};
use crate::transport::{self, Server};
use crate::update::{self, Applied, UpdateError, Updater, plan};
use crate::{keyfile, rollover, tsig};

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
    let owner = a.owner.owner()?;
    owner
        .check_gateway(&a.shape.gateway)
        .map_err(|e| super::Usage(e.into()))?;
    let key = load_key(&a.key.key)?;
    let r = owner_record(
        &owner,
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
    owner: Owner,
    tsig: tsig::TsigKey,
    server: Server,
    name: Name,
    zone: Option<Name>,
}

fn prepare(t: &UpdateTarget, timeout: Duration) -> Result<Prepared> {
    let owner = t.owner.owner()?;
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
    let name = update::to_hickory_name(&owner.name())?;
    let zone = match &t.zone {
        None => None,
        Some(z) => {
            let mut zone = Name::from_ascii(z)
                .map_err(|e| anyhow::anyhow!("--zone {z:?} is not a domain name: {e}"))
                .map_err(super::Usage)?;
            zone.set_fqdn(true);
            if let Owner::Subnet(s) = &owner {
                let core_zone = DomainName::from_ascii(&zone.to_ascii())
                    .map_err(|e| anyhow::anyhow!("--zone {z:?} is not a domain name: {e}"))
                    .map_err(super::Usage)?;
                crate::subnet::check_zone(s, &core_zone).map_err(|e| super::Usage(e.into()))?;
            }
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
        owner,
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
    let owner = a.target.owner.owner()?;
    owner
        .check_gateway(&a.shape.gateway)
        .map_err(|e| super::Usage(e.into()))?;
    if let (Owner::Subnet(s), Gateway::Name(n)) = (&owner, &a.shape.gateway) {
        eprintln!(
            "dnskeys: warning: --gateway {n} is a name, so dnskeys cannot check here that its \
             addresses are outside --subnet {s}; 'dnskeys verify --subnet {s}' checks them"
        );
    }
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
    if let Some(g) = &a.gateway {
        let owner = a.target.owner.owner()?;
        owner.check_gateway(g).map_err(|e| super::Usage(e.into()))?;
    }
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
            check_added(&p.owner, &plan)?;
            // Done already (the old key is gone): nothing to wait for.
            if !plan.is_noop(cur) {
                rollover::finish_allowed(step1.as_ref(), &record_path, now, a.force)?;
            }
            Ok(plan)
        })
        .await?
    } else {
        up.apply(|cur| {
            let plan = plan::rotate_start(cur, &name, &old, &new, a.gateway.clone(), a.ttl)?;
            check_added(&p.owner, &plan)?;
            Ok(plan)
        })
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

/// A rollover step at a subnet's wildcard keeps the old record's gateway:
/// refuse it when that gateway is one a wildcard may not have.
fn check_added(owner: &Owner, plan: &plan::Plan) -> Result<(), plan::PlanError> {
    for added in &plan.add {
        owner.check_gateway(&added.gateway)?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

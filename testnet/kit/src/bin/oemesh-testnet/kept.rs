//! `down` and `shell`: what `testnet/demo --down` and `--shell HOST` run, on
//! the records kept testnets leave in [`KEPT_DIR`].

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use oemesh_testkit::netns;
use oemesh_testkit::topology::{KEPT_DIR, Kept, KeptProcess};

use crate::say;
use crate::wire::Verdict;

/// `down [--keep-capture] [RECORD...]`: tears down the kept testnets named by
/// their records, or all of them, then any demo namespace whose creator is
/// gone and that no record holds (left by a version without records).
pub(crate) fn down(args: &[String]) -> Result<Verdict> {
    let keep_capture = args.iter().any(|a| a == "--keep-capture");
    let files: Vec<PathBuf> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let all = files.is_empty();
    let records = if all {
        Kept::list()
    } else {
        files
            .iter()
            .map(|f| Kept::load(f))
            .collect::<Result<Vec<_>>>()?
    };
    let mut failed = false;
    for k in &records {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        say!(
            "testnet {:?}, kept {} s ago (record {}):",
            k.label,
            now.saturating_sub(k.kept_at),
            k.file.display()
        );
        match k.down(keep_capture) {
            Ok(r) => {
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "none running".to_owned()
                    } else {
                        v.join(", ")
                    }
                };
                say!("  stopped: {}", list(&r.stopped));
                if !r.killed.is_empty() {
                    say!("  (needed SIGKILL: {})", r.killed.join(", "));
                }
                say!(
                    "  namespaces deleted: {}{}",
                    r.namespaces.len(),
                    match k.namespaces.len() - r.namespaces.len() {
                        0 => String::new(),
                        1 => " (1 was gone already)".to_owned(),
                        n => format!(" ({n} were gone already)"),
                    }
                );
                for d in &r.removed {
                    say!("  removed {}", d.display());
                }
                for c in &r.kept_captures {
                    say!("  kept the capture: {p}  (tshark -r {p})", p = c.display());
                }
            }
            Err(e) => {
                say!("  FAILED: {e:#}");
                failed = true;
            }
        }
    }
    if all {
        // Demo namespaces of dead drivers that no record holds.
        let swept = netns::cleanup_stale_where(|n| n.contains("-demo-"))?;
        if !swept.is_empty() {
            say!(
                "removed {} unrecorded demo namespaces (and what ran in them): {}",
                swept.len(),
                swept.join(" ")
            );
        }
        if records.is_empty() && swept.is_empty() {
            say!("no kept testnet found (records live in {KEPT_DIR})");
        }
    }
    Ok(if failed { Verdict::Fail } else { Verdict::Pass })
}

/// `shell HOST [RECORD]`: a bash in HOST's namespace with `oemesh` and
/// `dnskeys` on PATH and `OEMESH_SOCKET` set, in the newest kept testnet (or
/// the one RECORD names). Replaces this process.
pub(crate) fn shell(host: &str, record: Option<&str>) -> Result<Verdict> {
    let kept = match record {
        Some(f) => Kept::load(std::path::Path::new(f))?,
        None => match Kept::list().pop() {
            Some(k) => k,
            None => bail!("no kept testnet: start one with `testnet/demo --keep`"),
        },
    };
    let argv = kept.shell_command(host)?;
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(err).with_context(|| format!("running {}", argv.join(" ")))
}

/// After `--keep` under `testnet/demo`: stay as the parent of what the testnet
/// runs and reap it when `down` stops it, then exit.
///
/// A process whose parent exits is handed to init, and an init that does not
/// reap (as in some containers and VMs) leaves each stopped one a zombie in
/// `ps`. So the script sets `$OEMESH_KEEP_READY` to a file; the driver records
/// itself as the testnet's keeper, writes its exit status into that file (the
/// script then exits with it), lets go of the terminal and waits for its
/// children until none is left. Without the variable it returns at once.
pub(crate) fn keep_alive(mut kept: Kept, verdict: Verdict) -> Result<()> {
    let Some(ready) = std::env::var_os("OEMESH_KEEP_READY") else {
        return Ok(());
    };
    kept.keeper = KeptProcess::of("oemesh-testnet (keeper)", std::process::id());
    kept.save()?;
    std::fs::write(&ready, format!("{}\n", verdict.exit_code()))
        .with_context(|| format!("writing {}", PathBuf::from(&ready).display()))?;
    // The terminal (or a pipe to `tee`) is the script's: let go of it.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some(_)) | Err(rustix::io::Errno::INTR) => {}
            // ECHILD: nothing left to wait for.
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

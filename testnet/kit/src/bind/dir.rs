//! Where an instance keeps its files (see the [module docs](super) on AppArmor).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::{BIND_STATE_DIR, DIR_PREFIX};

/// A fresh directory for one instance: under [`BIND_STATE_DIR`] when it can be
/// written, else in the system temporary directory. Sweeps stale ones first.
pub(crate) fn instance_dir() -> Result<tempfile::TempDir> {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let prefix = format!("{DIR_PREFIX}{}-", std::process::id());
    let parent = Path::new(BIND_STATE_DIR);
    if parent.is_dir() {
        SWEEP.call_once(|| sweep_stale(parent));
        match tempfile::Builder::new().prefix(&prefix).tempdir_in(parent) {
            Ok(dir) => return Ok(dir),
            // Not root (nor in group bind): the temporary directory it is.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating a directory in {BIND_STATE_DIR}"));
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir()
        .context("creating a temporary directory for named")
}

/// Removes `oemesh-bind-<pid>-*` directories in `parent` whose creator is gone
/// and whose `named` (by `named.pid`) no longer runs: left by a killed test.
/// A kept testnet's directory has a running `named`, so it stays.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(creator) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        let named_runs = fs::read_to_string(path.join("named.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(crate::process::pid_alive);
        if creator != std::process::id() && !crate::process::pid_alive(creator) && !named_runs {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// When `named` runs confined by an enforcing AppArmor profile and `dir` is not
/// where that profile lets it write, a paragraph saying so and what to do;
/// otherwise nothing.
pub(crate) fn apparmor_hint(dir: &Path) -> String {
    let allowed = ["/var/lib/bind/", "/var/cache/bind/"];
    if allowed.iter().any(|a| dir.starts_with(a)) {
        return String::new();
    }
    match apparmor_mode("named") {
        Some(mode) if mode == "enforce" => format!(
            "\nAppArmor confines named (profile `named`, enforce mode), and its files are in {}, \
             where the profile does not let it read or write. Run as root, so that they go \
             under {BIND_STATE_DIR}, or put the profile in complain mode for the test run: \
             `aa-complain /usr/sbin/named` (package apparmor-utils; `aa-enforce` undoes it).",
            dir.display()
        ),
        _ => String::new(),
    }
}

/// The mode (`enforce`, `complain`, …) of the loaded AppArmor profile `profile`,
/// from `/sys/kernel/security/apparmor/profiles`; `None` without AppArmor or
/// such a profile.
pub fn apparmor_mode(profile: &str) -> Option<String> {
    let list = fs::read_to_string("/sys/kernel/security/apparmor/profiles").ok()?;
    list.lines().find_map(|line| {
        let (name, mode) = line.rsplit_once(" (")?;
        (name == profile).then(|| mode.trim_end_matches(')').to_owned())
    })
}

/// Writes a secret file, created with mode 0600 as a careful admin would.
pub(super) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    Ok(())
}

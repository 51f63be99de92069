//! Taking a kept testnet down ([`Kept::down`]): its processes stopped by PID
//! (SIGTERM, SIGKILL after a grace period), its namespaces deleted, its
//! directories removed (captures kept on request) and its record too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::Signal;

use super::{Kept, KeptProcess};
use crate::process::{STOP_GRACE, kill_pid};

/// How long SIGKILLed processes get to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What [`Kept::down`] did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Processes stopped (`named (pid 123)`).
    pub stopped: Vec<String>,
    /// Of those, the ones that needed SIGKILL.
    pub killed: Vec<String>,
    /// Namespaces deleted (those someone had not deleted already).
    pub namespaces: Vec<String>,
    /// Directories removed.
    pub removed: Vec<PathBuf>,
    /// Captures kept on request.
    pub kept_captures: Vec<PathBuf>,
}

impl Kept {
    /// Stops the processes, deletes the namespaces, removes the directories
    /// (except `*.pcap` when `keep_capture`) and the record.
    pub fn down(&self, keep_capture: bool) -> Result<DownReport> {
        let mut report = DownReport::default();
        // Agents first: on SIGTERM they remove their routes and nftables table.
        let mut order: Vec<&KeptProcess> = self.processes.iter().collect();
        order.sort_by_key(|p| p.name == "named");
        let running: Vec<&KeptProcess> = order.into_iter().filter(|p| p.is_running()).collect();
        for p in &running {
            kill_pid(p.pid, Signal::TERM)?;
        }
        let deadline = Instant::now() + STOP_GRACE;
        while running.iter().any(|p| p.is_running()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
        for p in running.iter().filter(|p| p.is_running()) {
            kill_pid(p.pid, Signal::KILL)?;
            report.killed.push(format!("{} (pid {})", p.name, p.pid));
        }
        let deadline = Instant::now() + KILL_WAIT;
        while running.iter().any(|p| p.is_running()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
        if let Some(p) = running.iter().find(|p| p.is_running()) {
            bail!("{} (pid {}) is still running after SIGKILL", p.name, p.pid);
        }
        report.stopped = running
            .iter()
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        // The keeper reaps them and, with no children left, exits by itself.
        if let Some(k) = &self.keeper {
            let deadline = Instant::now() + KILL_WAIT;
            while k.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
            if k.is_running() {
                kill_pid(k.pid, Signal::KILL)?;
                report.killed.push(format!("{} (pid {})", k.name, k.pid));
            }
        }

        for ns in &self.namespaces {
            if Path::new("/run/netns").join(ns).exists() {
                crate::netns::delete(ns).with_context(|| format!("deleting namespace {ns}"))?;
                report.namespaces.push(ns.clone());
            }
        }

        if keep_capture {
            report.kept_captures = self.captures();
        }
        remove_dir_keeping(&self.dir, keep_capture)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        if !keep_capture || report.kept_captures.is_empty() {
            report.removed.push(self.dir.clone());
        }
        if self.bind_dir.exists() {
            std::fs::remove_dir_all(&self.bind_dir)
                .with_context(|| format!("removing {}", self.bind_dir.display()))?;
            report.removed.push(self.bind_dir.clone());
        }
        match std::fs::remove_file(&self.file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.file.display())),
        }
        Ok(report)
    }
}

/// Removes `dir`, or with `keep_capture` everything in it but `*.pcap` files
/// (and `dir` itself if nothing is left). A missing `dir` is fine.
fn remove_dir_keeping(dir: &Path, keep_capture: bool) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !keep_capture {
        return std::fs::remove_dir_all(dir);
    }
    let mut left = false;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pcap") && path.is_file() {
            left = true;
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    if !left {
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_capture_keeps_only_the_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("net");
        std::fs::create_dir(&d).unwrap();
        for f in ["demo.pcap", "alice.key", "alice.toml", "demo.tcpdump.log"] {
            std::fs::write(d.join(f), f).unwrap();
        }
        std::fs::create_dir(d.join("sub")).unwrap();
        remove_dir_keeping(&d, true).unwrap();
        let left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["demo.pcap".to_owned()]);
        remove_dir_keeping(&d, false).unwrap();
        assert!(!d.exists());
        remove_dir_keeping(&d, false).unwrap();
    }
}

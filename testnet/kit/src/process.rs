//! Child processes that end when dropped, bounded command runs and bounded waits.
//!
//! Every wait in here has a deadline: a test that drives a real daemon must fail
//! with a message, never hang. A [`Child`] is stopped by PID (SIGTERM, then SIGKILL
//! after a grace period) when it is dropped, also while a test is panicking, and
//! its stdout/stderr go to a file so that a failure message can quote them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::{Pid, Signal, kill_process};

/// How long a stopped child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How often [`wait_until`] and [`wait_for`] poll.
const POLL: Duration = Duration::from_millis(25);

/// A spawned process that is ended by PID when dropped.
///
/// stdout and stderr both go to [`Child::output_path`]; [`Child::output_tail`]
/// reads the end of it for failure messages.
#[derive(Debug)]
pub struct Child {
    name: String,
    inner: std::process::Child,
    output: PathBuf,
    status: Option<ExitStatus>,
}

impl Child {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `output`.
    ///
    /// `name` is used in messages ("charon alice", "tcpdump").
    pub fn spawn(name: &str, mut cmd: Command, output: &Path) -> Result<Child> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(output)
            .with_context(|| format!("{name}: opening output file {}", output.display()))?;
        let err = out.try_clone().context("duplicating output file handle")?;
        let inner = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("{name}: spawning {cmd:?}"))?;
        Ok(Child {
            name: name.to_owned(),
            inner,
            output: output.to_owned(),
            status: None,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where stdout and stderr go.
    pub fn output_path(&self) -> &Path {
        &self.output
    }

    /// The last `lines` lines of the captured output (for failure messages).
    pub fn output_tail(&self, lines: usize) -> String {
        tail_of_file(&self.output, lines)
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// The exit status if the process has exited, without blocking.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.inner.try_wait().ok().flatten();
        }
        self.status
    }

    /// Fails with the tail of the output if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "{} (pid {}) exited with {status}; last output:\n{}",
                self.name,
                self.pid(),
                self.output_tail(30)
            )),
        }
    }

    /// Sends `signal` to the process by PID.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.exit_status().is_some() {
            return Ok(());
        }
        kill_pid(self.pid(), signal)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL and reap. Returns the exit status.
    pub fn stop_within(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.signal(Signal::TERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            thread::sleep(POLL);
        }
        self.signal(Signal::KILL)?;
        let status = self
            .inner
            .wait()
            .with_context(|| format!("{}: waiting after SIGKILL", self.name))?;
        self.status = Some(status);
        Ok(status)
    }

    /// [`Child::stop_within`] with [`STOP_GRACE`].
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.stop_within(STOP_GRACE)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("oemesh-testkit: stopping {}: {e:#}", self.name);
        }
    }
}

/// Sends `signal` to process `pid`. A process that is already gone is not an error.
pub fn kill_pid(pid: u32, signal: Signal) -> Result<()> {
    let raw = i32::try_from(pid).context("pid out of range")?;
    let pid = Pid::from_raw(raw).ok_or_else(|| anyhow!("pid 0"))?;
    match kill_process(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(anyhow!("kill({pid:?}, {signal:?}): {e}")),
    }
}

/// Whether a process with this PID exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `cond` until it returns true; fails after `timeout` naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, timeout, || cond().then_some(()))
}

/// Polls `f` until it returns `Some`; fails after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL);
    }
}

/// Runs `cmd` to completion within `timeout` (killing it otherwise) and returns its
/// output; fails with stderr/stdout in the message when it exits unsuccessfully.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let output = run_unchecked(cmd, timeout)?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Like [`run`], but an unsuccessful exit status is returned, not an error.
pub fn run_unchecked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut stdout = child.stdout.take().context("stdout pipe")?;
    let mut stderr = child.stderr.take().context("stderr pipe")?;
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for command")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = kill_pid(child.id(), Signal::KILL);
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}; killed");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// The last `lines` lines of a text file, or a note saying it could not be read.
pub fn tail_of_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Fails (never skips) unless the test runs as root: the network tests build
/// namespaces and start daemons.
pub fn require_root() {
    let uid = rustix::process::geteuid();
    assert!(
        uid.is_root(),
        "this test needs root (network namespaces, daemons): run `scripts/test` as root \
         (it also installs the Debian packages the tests drive)"
    );
}

/// Fails (never skips) unless every program in `programs` exists (an absolute
/// path, or a name found in `PATH`).
pub fn require_programs(programs: &[&str]) {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !program_exists(p))
        .collect();
    assert!(
        missing.is_empty(),
        "missing programs {missing:?}: run `scripts/test` as root, which installs the \
         Debian packages the tests drive (bind9, strongswan-*, tcpdump, iproute2, …)"
    );
}

fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

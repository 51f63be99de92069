//! Helpers shared by the CLI tests: run the real binary, make keys.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    /// Panics with the whole output unless the exit status is `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit status; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        self
    }

    /// The one error line (errors are exactly one line on stderr).
    #[track_caller]
    pub fn error_line(&self) -> &str {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("dnskeys: error:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "exactly one error line expected:\n{}",
            self.stderr
        );
        errors[0]
    }
}

/// Runs `dnskeys ARGS`.
pub fn dnskeys<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_dnskeys"))
        .args(args)
        .output()
        .expect("run dnskeys");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// `dnskeys keygen --out DIR/NAME`, returning the path and the public key (base64).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let run = dnskeys(&["keygen", "--out", path.to_str().unwrap()]).expect_code(0);
    (path, run.stdout.trim().to_owned())
}

/// The public key of a key file, as `dnskeys pubkey` prints it.
pub fn pubkey(path: &Path) -> String {
    dnskeys(&["pubkey", "--key", path.to_str().unwrap()])
        .expect_code(0)
        .stdout
        .trim()
        .to_owned()
}

/// Runs a tool and returns stdout, panicking with its stderr on failure.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); run scripts/test, which installs it")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets a file's mode.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The Ed25519 public key of a PEM file according to OpenSSL (base64 of the last 32 DER bytes).
pub fn openssl_pubkey(path: &Path) -> String {
    use base64::Engine as _;
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(path)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    base64::engine::general_purpose::STANDARD.encode(&out.stdout[out.stdout.len() - 32..])
}

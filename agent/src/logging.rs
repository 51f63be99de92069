//! Logs to stderr through `tracing`: `RUST_LOG` when set, else `--log-level`,
//! else `info`. Decisions get one line each, in the form
//! `10.77.0.4: no IPSECKEY (NXDOMAIN) → clear for 15m`.
//!
//! Colour (ANSI escapes) only when stderr is a terminal, `NO_COLOR` is unset
//! or empty (<https://no-color.org>) and the journal is not the reader: a log
//! file or the journal gets plain text.

use std::ffi::OsStr;
use std::fmt;
use std::io::IsTerminal as _;
use std::net::IpAddr;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber. `level` is a filter directive (`info`,
/// `debug`, `oemesh_agent=trace`); `RUST_LOG` overrides it.
pub fn init(level: Option<&str>) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG={v:?}: {e}"))?
        }
        _ => {
            let l = level.unwrap_or("info");
            EnvFilter::try_new(l).map_err(|e| format!("--log-level {l:?}: {e}"))?
        }
    };
    // Under systemd the journal adds its own timestamps.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        under_journal,
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let result = if under_journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| e.to_string())
}

/// Whether log lines get colour: only on a terminal, never when `NO_COLOR`
/// holds anything, never into the journal (which stores the escapes verbatim).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>, under_journal: bool) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty) && !under_journal
}

/// Where a decision sent a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// ESP SA pair up.
    Private,
    /// Cleartext.
    Clear,
    /// Dropped.
    Blocked,
}

/// One decision, formatted as the log line a person reads.
#[derive(Clone, Debug)]
pub struct Decision<'a> {
    /// The peer.
    pub peer: IpAddr,
    /// Why, for a person: `no IPSECKEY (NXDOMAIN)`, `IKE with 192.0.2.20 established (authenticated)`.
    pub reason: &'a str,
    /// The outcome.
    pub verdict: Verdict,
    /// How long the outcome lasts, if bounded.
    pub lifetime: Option<Duration>,
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Private => "private",
            Verdict::Clear => "clear",
            Verdict::Blocked => "blocked",
        };
        write!(f, "{}: {} → {verdict}", self.peer, self.reason)?;
        if let Some(l) = self.lifetime {
            write!(f, " for {}", crate::control::display::duration(l.as_secs()))?;
        }
        Ok(())
    }
}

impl Decision<'_> {
    /// Logs the line: `info` for private and clear, `warn` for blocked.
    pub fn log(&self) {
        match self.verdict {
            Verdict::Blocked => tracing::warn!("{self}"),
            _ => tracing::info!("{self}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None, false));
        assert!(
            !colour(false, None, false),
            "a file or a pipe gets plain text"
        );
        assert!(!colour(true, Some(OsStr::new("1")), false), "NO_COLOR=1");
        assert!(
            colour(true, Some(OsStr::new("")), false),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour(true, None, true), "the journal");
    }

    #[test]
    fn decision_line() {
        let d = Decision {
            peer: "10.77.0.4".parse().unwrap(),
            reason: "no IPSECKEY (NXDOMAIN)",
            verdict: Verdict::Clear,
            lifetime: Some(Duration::from_secs(900)),
        };
        assert_eq!(
            d.to_string(),
            "10.77.0.4: no IPSECKEY (NXDOMAIN) → clear for 15m"
        );
        let d = Decision {
            verdict: Verdict::Blocked,
            lifetime: None,
            reason: "IKE timed out after 2s (policy private)",
            ..d
        };
        assert_eq!(
            d.to_string(),
            "10.77.0.4: IKE timed out after 2s (policy private) → blocked"
        );
    }
}

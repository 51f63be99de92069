//! The clock of a key rollover: when step 1 (`rotate`) published the new key,
//! and so when step 2 (`rotate --finish`) may remove the old one.
//!
//! Resolvers may keep serving the IPSECKEY RRset as it was *before* step 1 (it
//! lacks the new key) for as long as its TTL. A host that switched to the new
//! key inside that window fails authentication at peers behind such a cache,
//! and once `--finish` has removed the old key there is nothing left to fall
//! back to. DNS does not say when a record was added, so step 1 writes it down
//! next to the new key: `<new key file>.rollover` ([`record_path`]), a small
//! JSON file naming the owner name, both public keys, when step 1 ran and how
//! long to wait. `--finish` refuses before that time has passed
//! ([`Step1::check_finish`]) or without such a record, unless `--force`, and
//! removes the record when it is done.
//!
//! The record sits beside the new key because the admin must have that key
//! at hand for both steps (dnskeys reads it each time), and it goes away with
//! the rollover: nothing else keeps state.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::update::plan::PlanError;

/// The file that records step 1 of a rollover to `new_key`.
pub fn record_path(new_key: &Path) -> PathBuf {
    let mut p = new_key.as_os_str().to_owned();
    p.push(".rollover");
    PathBuf::from(p)
}

/// What step 1 wrote down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step1 {
    /// The owner name (`10.2.0.192.in-addr.arpa.`).
    pub name: String,
    /// The old public key (base64).
    pub old: String,
    /// The new public key (base64).
    pub new: String,
    /// When step 1 ran (Unix seconds).
    pub at: u64,
    /// How long caches may serve the RRset from before step 1 (seconds): the
    /// larger of its TTL then and the TTL step 1 set.
    pub wait: u64,
}

impl Step1 {
    /// When `--finish` may run (Unix seconds).
    pub fn finish_after(&self) -> u64 {
        self.at.saturating_add(self.wait)
    }

    /// Whether this record is about the rollover of `old` to `new` at `name`.
    pub fn is_for(&self, name: &str, old: &str, new: &str) -> bool {
        self.name.eq_ignore_ascii_case(name) && self.old == old && self.new == new
    }

    /// `Ok` when `--finish` may run at `now` (Unix seconds), else why not.
    pub fn check_finish(&self, now: u64) -> Result<(), PlanError> {
        if now >= self.finish_after() {
            return Ok(());
        }
        Err(PlanError::TooEarly {
            step1: utc(self.at),
            finish_after: utc(self.finish_after()),
            remaining_s: self.finish_after() - now,
        })
    }

    /// Reads the record at `path`; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Step1>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a rollover record", path.display()))?;
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{}: no {k:?}", path.display()))
        };
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .with_context(|| format!("{}: no {k:?}", path.display()))
        };
        Ok(Some(Step1 {
            name: s("name")?,
            old: s("old_key")?,
            new: s("new_key")?,
            at: n("step1_unix")?,
            wait: n("wait_s")?,
        }))
    }

    /// Writes the record to `path` (replacing it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let v = json!({
            "what": "dnskeys rotate: step 1 of a key rollover; `dnskeys rotate --finish` reads and removes it",
            "name": self.name,
            "old_key": self.old,
            "new_key": self.new,
            "step1_unix": self.at,
            "step1": utc(self.at),
            "wait_s": self.wait,
            "finish_after": utc(self.finish_after()),
        });
        let text = serde_json::to_string_pretty(&v)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// `Ok` when `--finish` may run at `now` given what step 1 recorded at
/// `path` (`record`, already checked to be about this rollover, or `None`);
/// `force` skips the check.
pub fn finish_allowed(
    record: Option<&Step1>,
    path: &Path,
    now: u64,
    force: bool,
) -> Result<(), PlanError> {
    if force {
        return Ok(());
    }
    match record {
        Some(r) => r.check_finish(now),
        None => Err(PlanError::NoStep1Record {
            path: path.display().to_string(),
        }),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time (the civil-from-days algorithm).
pub fn utc(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step1() -> Step1 {
        Step1 {
            name: "10.2.0.192.in-addr.arpa.".into(),
            old: "OLD".into(),
            new: "NEW".into(),
            at: 1_700_000_000,
            wait: 3600,
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn finish_waits_for_the_ttl_since_step_1() {
        let r = step1();
        let p = Path::new("host-2.key.rollover");
        let early = finish_allowed(Some(&r), p, r.at + 10, false).unwrap_err();
        assert_eq!(
            early,
            PlanError::TooEarly {
                step1: "2023-11-14 22:13:20 UTC".into(),
                finish_after: "2023-11-14 23:13:20 UTC".into(),
                remaining_s: 3590,
            }
        );
        let text = early.to_string();
        assert!(
            text.contains("2023-11-14 23:13:20 UTC") && text.contains("--force"),
            "{text}"
        );
        assert!(finish_allowed(Some(&r), p, r.at + 3599, false).is_err());
        assert!(finish_allowed(Some(&r), p, r.at + 3600, false).is_ok());
        assert!(
            finish_allowed(Some(&r), p, r.at + 10, true).is_ok(),
            "--force"
        );
    }

    #[test]
    fn finish_without_a_record_of_step_1_is_refused_unless_forced() {
        let p = Path::new("/keys/host-2.key.rollover");
        let e = finish_allowed(None, p, 0, false).unwrap_err();
        assert!(e.to_string().contains("/keys/host-2.key.rollover"), "{e}");
        assert!(finish_allowed(None, p, 0, true).is_ok());
    }

    #[test]
    fn record_round_trips_and_names_its_rollover() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(&dir.path().join("host-2.key"));
        assert!(path.ends_with("host-2.key.rollover"));
        assert_eq!(Step1::load(&path).unwrap(), None);
        step1().save(&path).unwrap();
        let back = Step1::load(&path).unwrap().unwrap();
        assert_eq!(back, step1());
        assert!(back.is_for("10.2.0.192.IN-ADDR.arpa.", "OLD", "NEW"));
        assert!(!back.is_for("10.2.0.192.in-addr.arpa.", "NEW", "OLD"));
    }
}

//! The summary table at the end of a run.

use crate::say;
use crate::wire::Verdict;

/// One line of the summary.
#[derive(Debug)]
pub(crate) struct Row {
    /// `alice → bob`.
    pub(crate) flow: String,
    /// `private, authenticated`.
    pub(crate) expected: String,
    /// What the sniffer saw.
    pub(crate) seen: String,
    /// The flow's verdict.
    pub(crate) verdict: Verdict,
}

/// Prints the rows as an aligned table (`flow | expected | seen on the wire | result`).
pub(crate) fn print_table(rows: &[Row]) {
    let width = |f: &dyn Fn(&Row) -> usize, title: &str| {
        rows.iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(title.chars().count())
    };
    let w0 = width(&|r| r.flow.chars().count(), "flow");
    let w1 = width(&|r| r.expected.chars().count(), "expected");
    let w2 = width(&|r| r.seen.chars().count(), "seen on the wire");
    let line = |a: &str, b: &str, c: &str, d: &str| {
        say!("{} | {} | {} | {d}", pad(a, w0), pad(b, w1), pad(c, w2));
    };
    line("flow", "expected", "seen on the wire", "result");
    say!(
        "{}-|-{}-|-{}-|-------",
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(w2)
    );
    for r in rows {
        line(&r.flow, &r.expected, &r.seen, r.verdict.mark());
    }
}

/// `s` padded with spaces to `w` characters (not bytes: `→` is one).
fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

#[cfg(test)]
mod tests {
    use super::pad;

    #[test]
    fn pads_by_characters() {
        assert_eq!(pad("a → b", 7), "a → b  ");
    }
}

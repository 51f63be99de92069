//! `dnskeys man`: one page, dnskeys(1), with a section per command.
//!
//! clap_mangen renders the top level; each command's synopsis, options and
//! examples are added as roff sections of their own so the page is complete.

use std::io::{self, Write};

use clap_mangen::Man;

const EXIT_STATUS: &str = "\
.SH \"EXIT STATUS\"
.TP
\\fB0\\fR
success (\\fBverify\\fR: a matching or, without \\-\\-key, a usable record was found)
.TP
\\fB1\\fR
\\fBverify\\fR found no matching (or no usable) record; or an unexpected failure
.TP
\\fB2\\fR
bad usage: an unknown flag, an address that does not parse, a name outside \\-\\-zone, a refused \\-\\-subnet (off a label boundary, host bits set, no gateway, a gateway inside it)
.TP
\\fB3\\fR
a key or TSIG key file is missing, unreadable or malformed; \\fBkeygen\\fR would overwrite a file
.TP
\\fB4\\fR
the server refused or failed the request (TSIG BADKEY, BADSIG, BADTIME, NOTAUTH, REFUSED, SERVFAIL, a concurrent change)
.TP
\\fB5\\fR
no answer from the server (timeout, connection refused, network error)
";

/// Renders the page.
pub(super) fn render(cmd: clap::Command) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    // A fixed date keeps the committed page reproducible.
    let man = Man::new(cmd.clone()).date("2025").manual("oemesh");
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    // clap_mangen's list points at dnskeys-COMMAND(1) pages; this page has them all.
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", sub.get_name(), roff(&about))?;
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        render_command(&mut out, sub)?;
    }
    man.render_extra_section(&mut out)?;
    out.write_all(EXIT_STATUS.as_bytes())?;
    out.write_all(
        b".SH \"SEE ALSO\"\nnamed.conf(5), knot.conf(5), nsupdate(1), tsig\\-keygen(8), dig(1), openssl\\-genpkey(1), pki(1)\n",
    )?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

fn render_command(out: &mut Vec<u8>, sub: &clap::Command) -> io::Result<()> {
    let name = sub.get_name();
    writeln!(out, ".SH \"DNSKEYS {}\"", name.to_uppercase())?;
    let mut usage = sub.clone().bin_name(format!("dnskeys {name}"));
    let usage = usage.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    writeln!(out, ".B {}", roff(usage))?;
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        writeln!(out, ".PP\n{}", roff(&about.to_string()))?;
    }
    for arg in sub
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
    {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let head = match arg.get_long() {
            Some(long) => {
                let value = arg
                    .get_value_names()
                    .map(|v| v.iter().map(|v| format!(" {v}")).collect::<String>())
                    .unwrap_or_default();
                if arg.get_action().takes_values() {
                    format!("\\-\\-{long}{}", roff(&value))
                } else {
                    format!("\\-\\-{long}")
                }
            }
            None => format!("<{}>", id.to_uppercase()),
        };
        writeln!(out, ".TP\n\\fB{head}\\fR")?;
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && arg.get_action().takes_values() {
            help.push_str(&format!(" [default: {}]", defaults.join(", ")));
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        if !values.is_empty() && arg.get_long().is_some() && arg.get_action().takes_values() {
            help.push_str(&format!(" [possible values: {}]", values.join(", ")));
        }
        writeln!(out, "{}", roff(&help))?;
    }
    if let Some(after) = sub.get_after_help() {
        writeln!(out, ".PP\n.nf")?;
        for line in after.to_string().lines() {
            writeln!(out, "{}", roff_line(line))?;
        }
        writeln!(out, ".fi")?;
    }
    Ok(())
}

/// Escapes text for roff: backslashes and leading dots/quotes; '-' as '\-'.
fn roff(text: &str) -> String {
    text.lines().map(roff_line).collect::<Vec<_>>().join("\n")
}

fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

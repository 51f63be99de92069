//! The `dnskeys` command line: parsing ([`args`]), the commands, exit codes.
//!
//! Exit status (also in `--help`, the man page and docs/dnskeys.md):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`verify`: a matching / usable record was found) |
//! | 1 | `verify`: no matching (or, without `--key`, no usable) record; with `--dnssec`, an answer that is not secure |
//! | 2 | bad usage: unknown flag, an IP that does not parse, a name outside `--zone`, a bad `--trust-anchor` file, a refused `--subnet` ([`crate::subnet`]) |
//! | 3 | a key or TSIG key file is missing, unreadable or malformed; `keygen` target exists |
//! | 4 | the server refused or failed the request (TSIG BADKEY/BADSIG/BADTIME, NOTAUTH, REFUSED, SERVFAIL, ...) |
//! | 5 | no answer from the server (timeout, connection refused, network error) |

pub mod args;
mod man;
mod run;
mod verify;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, Parser as _};

use self::args::{Cli, Command};
use crate::dnssec::AnchorFileError;
use crate::keyfile::KeyFileError;
use crate::transport::{ServerError, TransportError};
use crate::tsig::TsigFileError;
use crate::update::UpdateError;
use crate::verify::VerifyError;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: `verify` found no (matching) record.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit status: bad usage or argument.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: a local key or TSIG key file problem.
pub const EXIT_FILE: u8 = 3;
/// Exit status: the server refused or failed the request.
pub const EXIT_REFUSED: u8 = 4;
/// Exit status: no answer from the server.
pub const EXIT_UNREACHABLE: u8 = 5;

/// A usage error found after parsing (exits with [`EXIT_USAGE`]).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Usage(pub anyhow::Error);

/// The clap command, for completions, the man page and tests.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The man page as roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    man::render(command())
}

/// Runs dnskeys with the process arguments; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("dnskeys: error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let timeout = Duration::from_secs_f64(cli.timeout);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
    };
    match &cli.command {
        Command::Keygen(a) => run::keygen(a)?,
        Command::Pubkey(a) => run::pubkey(&a.key)?,
        Command::Record(a) => run::record(a)?,
        Command::Publish(a) => runtime()?.block_on(run::publish(a, timeout))?,
        Command::Remove(a) => runtime()?.block_on(run::remove(a, timeout))?,
        Command::Rotate(a) => runtime()?.block_on(run::rotate(a, timeout))?,
        Command::Verify(a) => {
            let found = runtime()?.block_on(verify::verify(a, timeout))?;
            return Ok(if found { EXIT_OK } else { EXIT_NOT_FOUND });
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut command(), "dnskeys", &mut std::io::stdout());
        }
        Command::Man => {
            use std::io::Write as _;
            std::io::stdout().write_all(&man_page()?)?;
        }
    }
    Ok(EXIT_OK)
}

/// The error and its causes on one line, leaving out causes whose text the
/// message already includes (library errors name their source themselves).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// The exit status for an error, from the first library error in its chain.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>() || cause.is::<ServerError>() || cause.is::<AnchorFileError>() {
            return EXIT_USAGE;
        }
        if cause.is::<KeyFileError>() || cause.is::<TsigFileError>() {
            return EXIT_FILE;
        }
        if cause.is::<TransportError>() {
            return EXIT_UNREACHABLE;
        }
        if let Some(u) = cause.downcast_ref::<UpdateError>() {
            return match u {
                UpdateError::Transport(_) => EXIT_UNREACHABLE,
                UpdateError::OutsideZone { .. } => EXIT_USAGE,
                _ => EXIT_REFUSED,
            };
        }
        if let Some(v) = cause.downcast_ref::<VerifyError>() {
            return match v {
                VerifyError::Transport(_) => EXIT_UNREACHABLE,
                _ => EXIT_REFUSED,
            };
        }
    }
    1
}

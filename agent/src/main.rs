//! `oemesh`: the opportunistic-encryption agent and its command line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use oemesh_agent::cli::{self, Cli, Command, QueryArgs};
use oemesh_agent::config::Config;
use oemesh_agent::control::proto::{Reply, Request};
use oemesh_agent::control::{client, display};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oemesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => {
            oemesh_agent::logging::init(Some(&args.log_level)).map_err(anyhow::Error::msg)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(oemesh_agent::run::run(&args.config.config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Down(args) => {
            let (cfg, removed) = oemesh_agent::down::down(&args.config)?;
            println!("{}", removed.describe(&cfg));
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let cfg = Config::load(&args.config)?;
            println!("{}: valid", args.config.display());
            for (prefix, group) in cfg.policy.entries() {
                println!("  {prefix:<24} {group}");
            }
            for (group, negotiation) in cfg.policy.negotiation() {
                println!(
                    "  {group}: negotiation = {negotiation} (packets to destinations without \
                     a key go in clear while IKE runs)"
                );
            }
            gateway_settings(&args.config, &cfg)
        }
        Command::Status(q) => query(&q, &Request::Status),
        Command::Peers(q) => query(&q, &Request::Peers),
        Command::Check(c) => query(&c.query, &Request::Check { addr: c.addr }),
        Command::Reload(q) => query(&q, &Request::Reload),
        Command::Completions { shell } => {
            cli::completions(shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let page = cli::man_page().context("rendering the man page")?;
            std::io::stdout()
                .write_all(&page)
                .context("writing the man page")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `check-config` of a gateway: this host's forwarding settings
/// (`oemesh_agent::net::forwarding`); exit 1 when one is missing.
fn gateway_settings(path: &std::path::Path, cfg: &Config) -> Result<ExitCode> {
    use oemesh_agent::net::forwarding::{Severity, check_host};
    let Some(g) = cfg.gateway.describe() else {
        return Ok(ExitCode::SUCCESS);
    };
    println!("  gateway: {g}");
    let findings = check_host(cfg);
    for f in findings.iter().filter(|f| f.severity == Severity::Warning) {
        println!("  warning: {}", f.message);
    }
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "oemesh: {}: [gateway] needs settings this host lacks:",
        path.display()
    );
    for f in errors {
        eprintln!("  {}", f.message);
    }
    Ok(ExitCode::FAILURE)
}

fn query(q: &QueryArgs, request: &Request) -> Result<ExitCode> {
    let socket = match &q.config {
        Some(path) => {
            Config::load(path)
                .context("finding the agent's control socket (nothing was sent to the agent)")?
                .control_socket
        }
        None => q.socket.clone(),
    };
    let reply = client::request(&socket, request)?;
    let text = match (&reply, q.json) {
        (Reply::Error { message }, _) => anyhow::bail!("the agent says: {message}"),
        (Reply::Peers { peers }, true) => serde_json::to_string_pretty(peers)?,
        (Reply::Status(s), true) => serde_json::to_string_pretty(s)?,
        (Reply::Check(c), true) => serde_json::to_string_pretty(c)?,
        (Reply::Reloaded(r), true) => serde_json::to_string_pretty(r)?,
        (Reply::Reloaded(r), false) => display::reloaded(r),
        (Reply::Peers { peers }, false) => display::peers(peers),
        (Reply::Status(s), false) => display::status(s),
        (Reply::Check(c), false) => display::check(c),
        (other, _) => anyhow::bail!("unexpected reply from the agent: {other:?}"),
    };
    println!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}

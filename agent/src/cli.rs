//! The command line of `oemesh` (clap derive). Every command's `--help` ends
//! with examples; `oemesh man` prints the manual page generated from this.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where `--config` points unless told otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/oemesh/oemesh.toml";

/// oemesh: opportunistic IPsec for end hosts.
///
/// The agent encrypts IP traffic to every host that publishes an IPSECKEY record
/// (IKEv2 + ESP in UDP), and lets traffic to everyone else through in cleartext
/// after a short, bounded delay.
#[derive(Debug, Parser)]
#[command(
    name = "oemesh",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Examples:
  oemesh run --config /etc/oemesh/oemesh.toml
  oemesh status
  oemesh peers --json
  oemesh check 192.0.2.20")]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent in the foreground (logs to stderr).
    ///
    /// Creates the TUN device, routes, rules and nftables table, opens the IKE
    /// and ESP sockets and the control socket, and tells systemd it is ready.
    /// SIGINT or SIGTERM (a stop or restart) removes the TUN, its routes and the
    /// nftables table but keeps the rules and the `unreachable` routes of
    /// `private` and `block` prefixes, so that they never go clear while the
    /// agent is away; `oemesh down` removes those. A start installs its state
    /// over what a previous run left before removing what is stale.
    #[command(after_help = "Examples:
  oemesh run --config /etc/oemesh/oemesh.toml
  oemesh run --config ./oemesh.toml --log-level debug
  RUST_LOG=oemesh_agent=trace oemesh run --config ./oemesh.toml")]
    Run(RunArgs),

    /// Remove everything a stopped or crashed agent left: rules, the routes
    /// of its table, the TUN, the nftables table.
    ///
    /// The removal counterpart of a stop: after it, `private` and `block`
    /// prefixes are no longer held unreachable. Idempotent; refuses while an
    /// agent listens on the control socket.
    #[command(after_help = "Examples:
  oemesh down
  systemctl stop oemesh && oemesh down --config /etc/oemesh/oemesh.toml")]
    Down(ConfigArgs),

    /// Check a configuration file and print the effective policy.
    ///
    /// Exits 0 when the file is valid, 1 with every problem listed otherwise.
    /// For a gateway (`[gateway] protects`) it also checks this host: IP
    /// forwarding on for each protected family (net.ipv4.ip_forward,
    /// net.ipv6.conf.all.forwarding; exit 1 without), and warns of a
    /// non-zero rp_filter for the TUN (docs/operations.md, "Gateways").
    #[command(after_help = "Examples:
  oemesh check-config --config /etc/oemesh/oemesh.toml
  oemesh check-config --config ./oemesh.toml && systemctl restart oemesh")]
    CheckConfig(ConfigArgs),

    /// Show the running agent's state.
    #[command(after_help = "Examples:
  oemesh status
  oemesh status --json | jq .peers
  oemesh status --socket /tmp/oemesh.sock")]
    Status(QueryArgs),

    /// List peers: private (ESP), clear, pending or blocked, with reasons.
    #[command(after_help = "Examples:
  oemesh peers
  oemesh peers --json | jq -r '.[] | select(.state == \"private\") | .peer'")]
    Peers(QueryArgs),

    /// Show what the agent knows and would do for one address.
    #[command(after_help = "Examples:
  oemesh check 192.0.2.20
  oemesh check 2001:db8::20 --json")]
    Check(CheckArgs),

    /// Make the running agent re-read its configuration and host key.
    ///
    /// The agent reads the file it was started with (and the key and trust
    /// anchors it names) and applies the difference: routes of changed
    /// prefixes, the policy, a new host key for new IKE SAs, new DNS
    /// settings. SAs whose peers the new policy still allows stay up. An
    /// invalid file is refused whole (exit 1, with the errors check-config
    /// gives) and the running configuration stays. SIGHUP and `systemctl
    /// reload oemesh` do the same.
    #[command(after_help = "Examples:
  oemesh reload
  oemesh check-config --config /etc/oemesh/oemesh.toml && oemesh reload
  oemesh reload --json | jq .policy
  oemesh reload --config /etc/oemesh/oemesh.toml   # its control_socket
  systemctl reload oemesh")]
    Reload(QueryArgs),

    /// Print a shell completion script.
    #[command(after_help = "Examples:
  oemesh completions bash > /etc/bash_completion.d/oemesh
  oemesh completions zsh > \"${fpath[1]}/_oemesh\"
  oemesh completions fish > ~/.config/fish/completions/oemesh.fish")]
    Completions {
        /// The shell.
        shell: Shell,
    },

    /// Print the manual page (roff).
    #[command(after_help = "Examples:
  oemesh man | man -l -
  oemesh man > /usr/local/share/man/man1/oemesh.1")]
    Man,
}

/// Shells with completion scripts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `--config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (TOML; see docs/oemesh.example.toml).
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Arguments of `oemesh run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Log filter: error, warn, info, debug, trace, or tracing directives.
    /// RUST_LOG, when set, wins.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Arguments of the commands that ask the running agent.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The agent's control socket.
    #[arg(long, value_name = "PATH", env = "OEMESH_SOCKET", default_value = crate::config::defaults::CONTROL_SOCKET)]
    pub socket: PathBuf,
    /// Take the control socket from this configuration file's
    /// `control_socket` instead (what the agent was started with).
    #[arg(long, short, value_name = "FILE", conflicts_with = "socket")]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts instead of aligned text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `oemesh check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The address to check.
    pub addr: IpAddr,
    /// Socket and output format.
    #[command(flatten)]
    pub query: QueryArgs,
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The manual page, as `oemesh man` prints it and `agent/man/oemesh.1` holds it.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("oemesh {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
        // One section per command: what it does, usage, options and examples.
        out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        man.render_description_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_options_section(&mut out)?;
        man.render_extra_section(&mut out)?;
    }
    Ok(out)
}

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn std::io::Write) {
    let mut cmd = command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "oemesh", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }
}

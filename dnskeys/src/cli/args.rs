//! The command line: commands, flags, help texts with examples.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use oemesh_core::ipseckey::Gateway;

use crate::record::{DEFAULT_PRECEDENCE, Format, Owner};
use crate::subnet::Subnet;

const EXAMPLES: &str = "\
Examples:
  # A new host key, its record, and publishing it with the TSIG key from tsig-keygen
  dnskeys keygen --out /etc/oemesh/host.key
  dnskeys record --key /etc/oemesh/host.key --ip 192.0.2.10
  dnskeys publish --key /etc/oemesh/host.key --ip 192.0.2.10 \\
      --server ns1.example.net --tsig-key /etc/oemesh/update.tsig
  dnskeys verify --key /etc/oemesh/host.key --ip 192.0.2.10

Exit status: 0 success; 1 verify found no (matching) record, or with --dnssec
an answer that is not secure; 2 bad usage or arguments (a bad trust anchor file); 3 a key or TSIG key file is missing, unreadable or malformed;
4 the server refused or failed the request; 5 no answer from the server.
See 'dnskeys COMMAND --help' and docs/publishing-keys.md.";

const KEYGEN_EXAMPLES: &str = "\
Examples:
  dnskeys keygen --out /etc/oemesh/host.key
  dnskeys keygen --out host.key --force      # replace an existing key

The file is PKCS#8 PEM, created with mode 0600; 'openssl genpkey -algorithm
ed25519' and strongSwan's 'pki --gen --type ed25519 --outform pem' write the
same format, and dnskeys loads their keys too.";

const PUBKEY_EXAMPLES: &str = "\
Examples:
  dnskeys pubkey --key /etc/oemesh/host.key
  dnskeys pubkey --key /etc/oemesh/host.key | wc -c     # 45: base64 of 32 bytes + newline";

const RECORD_EXAMPLES: &str = "\
Examples:
  dnskeys record --key host.key --ip 192.0.2.10
    10.2.0.192.in-addr.arpa. 3600 IN IPSECKEY 10 0 4 . Bg0rrL...=
  dnskeys record --key host.key --ip 2001:db8::10 --gateway 2001:db8::1 --ttl 600
  (echo server ns1.example.net; dnskeys record --key host.key --ip 192.0.2.10 \\
      --format nsupdate) | nsupdate -k update.tsig
  dnskeys record --key host.key --ip 192.0.2.10 --format json
  # A site behind a gateway: one wildcard for the subnet, with the gateway's key
  dnskeys record --key gw.key --subnet 10.1.0.0/24 --gateway 192.0.2.1
    *.0.1.10.in-addr.arpa. 3600 IN IPSECKEY 10 1 4 192.0.2.1 Bg0rrL...=";

const PUBLISH_EXAMPLES: &str = "\
Examples:
  dnskeys publish --key host.key --ip 192.0.2.10 --server ns1.example.net \\
      --tsig-key update.tsig
  dnskeys publish --key host.key --ip 2001:db8::10 --server [2001:db8::53]:53 \\
      --tsig-key update.tsig --zone 8.b.d.0.1.0.0.2.ip6.arpa --ttl 600
  dnskeys publish --key gw.key --subnet 10.1.0.0/24 --gateway 192.0.2.1 \\
      --server ns1.example.net --tsig-key update.tsig

Adds this key's IPSECKEY record at the address's reverse name, replacing any
record that carries the same key; other keys and other record types at the
name are left alone. The change is one UPDATE message with the current
IPSECKEY records as its prerequisite: all of it happens, or none.

With --subnet the record goes at the wildcard under the subnet's reverse zone
(*.0.1.10.in-addr.arpa. for 10.1.0.0/24), which answers for every host in the
subnet whose reverse name holds no records of its own (no PTR either). It needs
a --gateway outside the subnet. See docs/publishing-keys.md, \"A whole site
behind a gateway\".";

const VERIFY_EXAMPLES: &str = "\
Examples:
  dnskeys verify --ip 192.0.2.10                        # any usable key, system resolver
  dnskeys verify --ip 192.0.2.10 --key host.key         # this key
  dnskeys verify --ip 192.0.2.10 --server 127.0.0.1 --json
  dnskeys verify --ip 192.0.2.10 --dnssec               # validate here, from the root
  dnskeys verify --ip 192.0.2.10 --server ns1.example.net --dnssec \\
      --trust-anchor 2.0.192.in-addr.arpa.anchors     # a private zone's DNSKEY or DS
  dnskeys verify --subnet 10.1.0.0/24 --key gw.key      # the wildcard, and 10.1.0.1
  dnskeys verify --subnet 10.1.0.0/24 --probe 10.1.0.77 # ... and what 10.1.0.77 gets

With --subnet, the wildcard's own name and a host's name inside the subnet
(--probe, default the first host) are both asked for; it fails when the host's
name does not get the wildcard's records (it exists, e.g. with a PTR, or a
name between exists), or when a record at the wildcard has no gateway or a
gateway inside the subnet.

DNSSEC: the query sets DO and AD; the output says whether the resolver set AD
(validated) or not. Use a validating resolver you trust, ideally on localhost.
With --dnssec, dnskeys validates the chain itself (even through an
authoritative-only server) and says secure, insecure, bogus (and what failed,
e.g. an expired signature) or indeterminate, and when the signature expires;
the exit status is 0 only when the answer is secure. A trust anchor file holds
DNSKEY or DS records as 'dig +noall +answer DNSKEY zone.' prints them.";

const ROTATE_EXAMPLES: &str = "\
Examples:
  # 1. Publish the new key beside the old one (old still preferred)
  dnskeys rotate --old host.key --new host-2.key --ip 192.0.2.10 \\
      --server ns1.example.net --tsig-key update.tsig
  # 2. Wait at least the record TTL (the command prints until when), so that
  #    every cache holds the new key; then switch the host to host-2.key
  #    (`key = \"/etc/oemesh/host-2.key\"` in oemesh.toml, then `oemesh reload`:
  #    no restart, SAs stay up).
  # 3. Remove the old key; the new one gets the old one's precedence
  dnskeys rotate --old host.key --new host-2.key --ip 192.0.2.10 \\
      --server ns1.example.net --tsig-key update.tsig --finish";

const REMOVE_EXAMPLES: &str = "\
Examples:
  dnskeys remove --key host.key --ip 192.0.2.10 --server ns1.example.net \\
      --tsig-key update.tsig
  dnskeys remove --key gw.key --subnet 10.1.0.0/24 --server ns1.example.net \\
      --tsig-key update.tsig

Removes every IPSECKEY record that carries this key; other records stay.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  dnskeys completions bash > /etc/bash_completion.d/dnskeys
  dnskeys completions zsh > \"${fpath[1]}/_dnskeys\"
  dnskeys completions fish > ~/.config/fish/completions/dnskeys.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  dnskeys man > /usr/local/share/man/man1/dnskeys.1
  dnskeys man | man -l -";

/// Publish, verify and roll over oemesh host keys as IPSECKEY records in DNS.
///
/// Each oemesh host has an Ed25519 key. Its public half is published as an
/// IPSECKEY record (RFC 4025, algorithm 4 of RFC 9373) at the host address's
/// reverse name, where other hosts look it up before IKE. dnskeys makes the
/// keys, prints the records, publishes them with RFC 2136 dynamic updates
/// signed with TSIG, checks what DNS serves, and rolls keys over.
#[derive(Debug, Parser)]
#[command(name = "dnskeys", version, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Seconds to wait for a DNS server before giving up.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5.0,
          value_parser = parse_timeout)]
    pub timeout: f64,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new Ed25519 host key (PKCS#8 PEM, mode 0600).
    #[command(after_help = KEYGEN_EXAMPLES)]
    Keygen(KeygenArgs),
    /// Print the base64 of the 32-byte public key (RFC 8080 §3).
    #[command(after_help = PUBKEY_EXAMPLES)]
    Pubkey(KeyArg),
    /// Print the IPSECKEY record for a key and address.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Add or replace this key's record in DNS (RFC 2136 UPDATE with TSIG).
    #[command(after_help = PUBLISH_EXAMPLES)]
    Publish(PublishArgs),
    /// Fetch and check the IPSECKEY records of an address.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Roll over to a new key: publish it beside the old one, later --finish.
    #[command(after_help = ROTATE_EXAMPLES)]
    Rotate(RotateArgs),
    /// Remove this key's records from DNS.
    #[command(after_help = REMOVE_EXAMPLES)]
    Remove(RemoveArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    #[command(after_help = MAN_EXAMPLES)]
    Man,
}

/// Where the record lives: one host's reverse name, or the wildcard of a subnet.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct OwnerArg {
    /// The host's address (IPv4 or IPv6): the record goes at its reverse name.
    #[arg(long, value_name = "ADDR", value_parser = parse_ip)]
    pub ip: Option<IpAddr>,
    /// A site's subnet behind a gateway (IPv4: /8, /16, /24; IPv6: a multiple of
    /// 4 bits): the record is the wildcard under its reverse zone, which covers
    /// every host in it; a wildcard's record needs a --gateway outside the subnet.
    #[arg(long, value_name = "PREFIX", value_parser = parse_subnet)]
    pub subnet: Option<Subnet>,
}

impl OwnerArg {
    /// The owner the flags name (clap's group makes exactly one of them present).
    pub fn owner(&self) -> Result<Owner, super::Usage> {
        match (self.ip, self.subnet) {
            (Some(ip), None) => Ok(Owner::Host(ip)),
            (None, Some(s)) => Ok(Owner::Subnet(s)),
            _ => Err(super::Usage(anyhow::anyhow!(
                "give exactly one of --ip ADDR (one host) and --subnet PREFIX (a site behind a gateway)"
            ))),
        }
    }
}

/// `keygen` flags.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace FILE if it exists (the old key is lost).
    #[arg(long)]
    pub force: bool,
}

/// `--key FILE`.
#[derive(Debug, Args)]
pub struct KeyArg {
    /// The host's private key (PKCS#8 PEM, Ed25519).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// What a record looks like.
#[derive(Debug, Args)]
pub struct RecordShape {
    /// Precedence: lower is tried first (RFC 4025 §2.2).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PRECEDENCE)]
    pub precedence: u8,
    /// Where peers send IKE for this key: none (the host itself), an IP address, or a name.
    #[arg(long, value_name = "none|IP|NAME", default_value = "none", value_parser = parse_gateway)]
    pub gateway: Gateway,
}

/// `record` flags.
#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub key: KeyArg,
    #[command(flatten)]
    pub owner: OwnerArg,
    #[command(flatten)]
    pub shape: RecordShape,
    /// Time to live in seconds.
    #[arg(long, value_name = "S", default_value_t = crate::record::DEFAULT_TTL, value_parser = parse_ttl)]
    pub ttl: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Zone)]
    pub format: Format,
}

/// Where and how to update.
#[derive(Debug, Args)]
pub struct UpdateTarget {
    #[command(flatten)]
    pub owner: OwnerArg,
    /// The zone's primary server: HOST or HOST:PORT (port 53 by default).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: String,
    /// The TSIG key file, as 'tsig-keygen -a hmac-sha256 NAME' writes it.
    #[arg(long, value_name = "FILE")]
    pub tsig_key: PathBuf,
    /// The zone to update (default: found from the SOA of the reverse name, or of
    /// the wildcard with --subnet).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
}

/// `publish` flags.
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub key: KeyArg,
    #[command(flatten)]
    pub target: UpdateTarget,
    #[command(flatten)]
    pub shape: RecordShape,
    /// Time to live in seconds.
    #[arg(long, value_name = "S", default_value_t = crate::record::DEFAULT_TTL, value_parser = parse_ttl)]
    pub ttl: u32,
}

/// `verify` flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub owner: OwnerArg,
    /// With --subnet: the host address inside the subnet whose reverse name is
    /// asked for too, to see what the wildcard answers for it (default: the
    /// subnet's first host address).
    #[arg(long, value_name = "ADDR", value_parser = parse_ip, requires = "subnet")]
    pub probe: Option<IpAddr>,
    /// The key that must be published (default: any usable key will do).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The resolver or server to ask (default: the first nameserver in /etc/resolv.conf).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: Option<String>,
    /// Print JSON (see docs/dnskeys.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Validate DNSSEC here, from the root anchors and --trust-anchor files;
    /// success then needs a secure answer.
    #[arg(long)]
    pub dnssec: bool,
    /// With --dnssec: a file of DNSKEY or DS records (dig output, BIND K*.key,
    /// dsset-*) trusted for their zones. Repeatable.
    #[arg(long, value_name = "FILE", requires = "dnssec")]
    pub trust_anchor: Vec<PathBuf>,
}

/// `rotate` flags.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The key published now.
    #[arg(long, value_name = "FILE")]
    pub old: PathBuf,
    /// The key to roll over to.
    #[arg(long, value_name = "FILE")]
    pub new: PathBuf,
    #[command(flatten)]
    pub target: UpdateTarget,
    /// Step 2: remove the old key. Refused until the TTL has passed since step 1
    /// (recorded in NEW.rollover, beside the new key), unless --force.
    #[arg(long)]
    pub finish: bool,
    /// With --finish: go ahead before the wait has passed, or without a record of
    /// step 1 (when you know no cache still holds the records from before it).
    #[arg(long, requires = "finish")]
    pub force: bool,
    /// With --finish: the new key's final precedence (default: the old key's).
    #[arg(long, value_name = "N")]
    pub precedence: Option<u8>,
    /// Step 1: the new key's gateway (default: the old key's).
    #[arg(long, value_name = "none|IP|NAME", value_parser = parse_gateway)]
    pub gateway: Option<Gateway>,
    /// Time to live in seconds (default: the TTL the records have now).
    #[arg(long, value_name = "S", value_parser = parse_ttl)]
    pub ttl: Option<u32>,
}

/// `remove` flags.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub key: KeyArg,
    #[command(flatten)]
    pub target: UpdateTarget,
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim().parse::<IpAddr>().map_err(|_| {
        format!("'{s}' is not an IP address; give one IPv4 or IPv6 address, e.g. 192.0.2.10 or 2001:db8::10")
    })
}

fn parse_subnet(s: &str) -> Result<Subnet, String> {
    s.parse::<Subnet>().map_err(|e| e.to_string())
}

fn parse_gateway(s: &str) -> Result<Gateway, String> {
    crate::record::parse_gateway(s).map_err(|e| e.reason)
}

fn parse_ttl(s: &str) -> Result<u32, String> {
    // RFC 2181 §8: TTLs are 31-bit values.
    match s.parse::<u32>() {
        Ok(t) if t <= i32::MAX as u32 => Ok(t),
        _ => Err(format!(
            "'{s}' is not a TTL; give seconds from 0 to 2147483647"
        )),
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 3600.0 => Ok(t),
        _ => Err(format!(
            "'{s}' is not a timeout; give seconds, more than 0 and at most 3600"
        )),
    }
}

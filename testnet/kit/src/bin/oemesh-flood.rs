//! `oemesh-flood`: the flood generator of `oemesh_testkit::flood` on the
//! command line, for use inside an attacker namespace (needs CAP_NET_RAW).
//!
//! ```text
//! oemesh-flood ike    --target 192.0.2.20 --sources 198.51.100.0/24 [--seconds 5] [--count N] [--rate PPS]
//! oemesh-flood esp    --target 192.0.2.20 --sources 198.51.100.0/24 [--len 96] ...
//! oemesh-flood ike-spi --target 192.0.2.20 --sources 198.51.100.0/24 [--len 160] ...
//! oemesh-flood replay --pcap FILE.pcap [--port 4500] ...
//! ```
//!
//! Prints one line: packets sent, time, rate, send errors.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oemesh_testkit::flood::{self, Datagram, Kind, Limits};

const USAGE: &str = "usage:
  oemesh-flood ike    --target IPV4 --sources PREFIX [LIMITS]
  oemesh-flood esp    --target IPV4 --sources PREFIX [--len BYTES] [LIMITS]
  oemesh-flood ike-spi --target IPV4 --sources PREFIX [--len BYTES] [LIMITS]
  oemesh-flood replay --pcap FILE [--port 4500] [LIMITS]
LIMITS: [--seconds S (5)] [--count N] [--rate PACKETS_PER_SECOND] [--seed N]
Sends spoofed raw IPv4 packets from the current network namespace.";

fn main() {
    if let Err(e) = run() {
        eprintln!("oemesh-flood: {e:#}\n{USAGE}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().context("no mode given")?;
    let mut target: Option<Ipv4Addr> = None;
    let mut sources: Option<(Ipv4Addr, u8)> = None;
    let mut len = 96usize;
    let mut pcap: Option<PathBuf> = None;
    let mut port = flood::NAT_T_PORT;
    let mut limits = Limits::default();
    let mut seed = u64::from(std::process::id());
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag} {value}: bad value");
        match flag.as_str() {
            "--target" => target = Some(value.parse().with_context(bad)?),
            "--sources" => sources = Some(flood::parse_prefix(&value)?),
            "--len" => len = value.parse().with_context(bad)?,
            "--pcap" => pcap = Some(PathBuf::from(value)),
            "--port" => port = value.parse().with_context(bad)?,
            "--seconds" => {
                limits.duration = Duration::from_secs_f64(value.parse().with_context(bad)?);
            }
            "--count" => limits.count = Some(value.parse().with_context(bad)?),
            "--rate" => limits.rate = Some(value.parse().with_context(bad)?),
            "--seed" => seed = value.parse().with_context(bad)?,
            other => bail!("unknown flag {other}"),
        }
    }
    let need_target = || target.context("--target is required");
    let need_sources = || sources.context("--sources is required");
    let kind = match mode.as_str() {
        "ike" => Kind::IkeInit {
            target: need_target()?,
            sources: need_sources()?,
        },
        "esp" => Kind::EspRandomSpi {
            target: need_target()?,
            sources: need_sources()?,
            len,
        },
        "ike-spi" => Kind::IkeRandomSpi {
            target: need_target()?,
            sources: need_sources()?,
            len,
        },
        "replay" => {
            let pcap = pcap.context("--pcap is required")?;
            let packets = oemesh_testkit::capture::read_pcap(&pcap)
                .with_context(|| format!("reading {}", pcap.display()))?;
            let datagrams: Vec<Datagram> = packets
                .iter()
                .filter(|p| p.ports.is_some_and(|(_, d)| d == port))
                .filter_map(Datagram::of_packet)
                .collect();
            if datagrams.is_empty() {
                bail!(
                    "{}: no UDP/IPv4 datagrams to port {port} to replay",
                    pcap.display()
                );
            }
            Kind::Replay(datagrams)
        }
        other => bail!("unknown mode {other}"),
    };
    let report = flood::run(kind, limits, seed)?;
    println!("{mode}: {report}");
    Ok(())
}

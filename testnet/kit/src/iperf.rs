//! `iperf3` between two namespaces: a server as a [`Child`], bounded client
//! runs whose JSON report (`-J`) is parsed into what a benchmark needs.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::netns::Netns;
use crate::process::{Child, wait_until};

/// The port the server listens on.
pub const PORT: u16 = 5201;

/// An `iperf3 -s` running in a namespace, stopped by PID on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `iperf3 -s -p PORT` in `ns` (output to `log`) and waits (bounded)
    /// until it accepts connections on `addr`.
    pub fn start(ns: &Netns, addr: IpAddr, log: &Path) -> Result<Server> {
        let port = PORT.to_string();
        let mut child = ns.spawn("iperf3 server", &["iperf3", "-s", "-p", &port], log)?;
        let sa = std::net::SocketAddr::new(addr, PORT);
        let up = wait_until("iperf3 server to listen", Duration::from_secs(10), || {
            !child.is_running()
                || ns
                    .run(|| std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)))
                    .is_ok_and(|r| r.is_ok())
        });
        child.check_running()?;
        up?;
        Ok(Server { child })
    }

    /// Fails with the server's output if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.child.check_running()
    }
}

/// What one client run measured (the receiver's view).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Bytes the receiver got.
    pub bytes: u64,
    /// Receiver throughput in bit/s.
    pub bits_per_second: f64,
    /// Sender-side TCP retransmissions.
    pub retransmits: u64,
}

/// Runs `iperf3 -c dst -t secs -P streams -J` in `ns` (TCP), bounded by the
/// duration plus 30 s, and parses the report.
pub fn run_client(ns: &Netns, dst: IpAddr, secs: u32, streams: u32) -> Result<Report> {
    let (dst, port, t, p) = (
        dst.to_string(),
        PORT.to_string(),
        secs.to_string(),
        streams.to_string(),
    );
    let argv = [
        "iperf3",
        "-c",
        &dst,
        "-p",
        &port,
        "-t",
        &t,
        "-P",
        &p,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    let timeout = Duration::from_secs(u64::from(secs) + 30);
    let out = ns
        .exec(&argv, timeout)
        .with_context(|| format!("iperf3 client to {dst}"))?;
    parse_report(&String::from_utf8_lossy(&out.stdout))
}

/// Parses iperf3's `-J` output: `end.sum_received` and `end.sum_sent.retransmits`.
pub fn parse_report(json: &str) -> Result<Report> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3 JSON")?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(anyhow!("iperf3 reported: {err}"));
    }
    let recv = &v["end"]["sum_received"];
    let bytes = recv["bytes"]
        .as_u64()
        .or_else(|| recv["bytes"].as_f64().map(|b| b as u64))
        .context("iperf3 JSON without end.sum_received.bytes")?;
    let bits_per_second = recv["bits_per_second"]
        .as_f64()
        .context("iperf3 JSON without end.sum_received.bits_per_second")?;
    let retransmits = v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok(Report {
        bytes,
        bits_per_second,
        retransmits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parses() {
        let json = r#"{"start":{},"intervals":[],"end":{
            "sum_sent":{"bytes":1000,"bits_per_second":8000.0,"retransmits":3},
            "sum_received":{"bytes":900,"bits_per_second":7200.5}}}"#;
        let r = parse_report(json).unwrap();
        assert_eq!(r.bytes, 900);
        assert!((r.bits_per_second - 7200.5).abs() < 1e-9);
        assert_eq!(r.retransmits, 3);
        assert!(parse_report(r#"{"error":"unable to connect"}"#).is_err());
    }
}

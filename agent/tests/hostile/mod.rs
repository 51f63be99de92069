//! Helpers of the fault and attack tests (`faults.rs`, `downgrade.rs`): faults
//! injected with nftables in a namespace, a DNS server that answers SERVFAIL
//! (reached through an nftables redirect in front of the real BIND), DNS
//! records replaced with `nsupdate`, packets forged on a raw socket, and
//! counting the agent's log lines.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};
use oemesh_testkit::netns::Netns;
use oemesh_testkit::topology::{Binaries, Host, Testnet};

/// Bound on one `nft` run.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads an nftables ruleset (`nft -f`) inside `ns`.
pub(crate) fn nft(ns: &Netns, ruleset: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), ruleset)?;
    let path = file.path().to_str().context("temp path is not UTF-8")?;
    ns.exec(&["nft", "-f", path], NFT_TIMEOUT)
        .with_context(|| format!("nft -f in {}:\n{ruleset}", ns.name()))?;
    Ok(())
}

/// Deletes nftables table `family name` inside `ns`.
pub(crate) fn nft_delete_table(ns: &Netns, family: &str, name: &str) -> Result<()> {
    ns.exec(&["nft", "delete", "table", family, name], NFT_TIMEOUT)
        .with_context(|| format!("deleting table {family} {name} in {}", ns.name()))?;
    Ok(())
}

/// The reverse name of an IPv4 address (`20.2.0.192.in-addr.arpa.`).
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        panic!("the tests publish IPv4 keys only");
    };
    let o = v4.octets();
    format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
}

/// Replaces every IPSECKEY at `ip`'s reverse name with `rdata` (presentation
/// form, e.g. `10 0 4 . BASE64`), TTL 60 s; `None` deletes them.
pub(crate) fn set_ipseckey(net: &Testnet, ip: IpAddr, rdata: Option<&str>) -> Result<()> {
    let name = reverse_name(ip);
    let mut script = format!("update delete {name} IPSECKEY\n");
    if let Some(r) = rdata {
        script.push_str(&format!("update add {name} 60 IPSECKEY {r}\n"));
    }
    net.dns()
        .bind()
        .nsupdate(&script)
        .with_context(|| format!("nsupdate: {script}"))
}

/// An IPSECKEY RDATA for `host`'s real public key.
pub(crate) fn real_key_rdata(host: &Host) -> String {
    format!(
        "10 0 4 . {}",
        host.public_key().expect("host has a published key")
    )
}

/// A new Ed25519 key made with the real `dnskeys keygen` in the testnet's
/// directory: its file (PKCS#8 PEM) and its public half (base64).
pub(crate) fn keygen(net: &Testnet, name: &str) -> Result<(std::path::PathBuf, String)> {
    let bins = Binaries::locate(std::path::Path::new(crate::e2e_support::OEMESH))?;
    let path = net.dir().join(format!("{name}.key"));
    let out = oemesh_testkit::process::run(
        std::process::Command::new(&bins.dnskeys)
            .args(["keygen", "--out"])
            .arg(&path),
        Duration::from_secs(15),
    )?;
    Ok((path, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// An EdDSA IPSECKEY with a 2-byte key: passes BIND (RDATA is well formed),
/// malformed for us (not an Ed25519 key).
pub(crate) const MALFORMED_KEY_RDATA: &str = "10 0 4 . AQI=";

/// Decision lines the agent logged about `peer` that contain `needle`.
pub(crate) fn decision_lines(host: &Host, peer: IpAddr, needle: &str) -> Vec<String> {
    let prefix = format!("{peer}: ");
    host.log()
        .lines()
        .filter(|l| l.contains(&prefix) && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Lines of `host`'s agent log containing `needle`.
pub(crate) fn log_lines(host: &Host, needle: &str) -> Vec<String> {
    host.log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A DNS server in the `dns` namespace that answers every query with
/// SERVFAIL, put in front of BIND by an nftables redirect of UDP 53 (BIND
/// keeps running; removing the redirect brings it back).
#[derive(Debug)]
pub(crate) struct Servfail {
    ns_name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The table the redirect lives in.
const SERVFAIL_TABLE: &str = "oemesh_fault_servfail";
/// Where the SERVFAIL server listens.
const SERVFAIL_PORT: u16 = 5354;

impl Servfail {
    /// Starts the server and the redirect.
    pub(crate) fn start(net: &Testnet) -> Result<Servfail> {
        Self::start_for(net, None)
    }

    /// Starts the server and the redirect, for queries from `only` if given
    /// (the others still reach BIND).
    pub(crate) fn start_for(net: &Testnet, only: Option<IpAddr>) -> Result<Servfail> {
        let dns = net.dns();
        let socket = dns
            .netns()
            .bind_udp(SocketAddr::new(dns.ip(), SERVFAIL_PORT))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                let mut answer = buf[..n].to_vec();
                answer[2] = 0x80 | (buf[2] & 0x79); // QR, opcode and RD kept
                answer[3] = 0x80 | 2; // RA, RCODE SERVFAIL
                answer[6..10].fill(0); // no answer, no authority
                let _ = socket.send_to(&answer, from);
            }
        });
        nft(
            dns.netns(),
            &format!(
                "table ip {SERVFAIL_TABLE} {{\n  chain pre {{\n    type nat hook prerouting priority dstnat;\n    {from}udp dport 53 redirect to :{SERVFAIL_PORT}\n  }}\n}}\n",
                from = only.map(|a| format!("ip saddr {a} ")).unwrap_or_default(),
            ),
        )?;
        Ok(Servfail {
            ns_name: dns.netns().name().to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// Removes the redirect (BIND answers again) and stops the server.
    pub(crate) fn stop(mut self, net: &Testnet) -> Result<()> {
        assert_eq!(net.dns().netns().name(), self.ns_name);
        nft_delete_table(net.dns().netns(), "ip", SERVFAIL_TABLE)?;
        self.halt();
        Ok(())
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Servfail {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Sends one IPv4/UDP datagram with a forged source address from a raw socket
/// inside `ns` (the test kit's attacker does the writing).
pub(crate) fn send_spoofed_udp(
    ns: &Netns,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Result<()> {
    let payload = payload.to_vec();
    ns.run(move || oemesh_testkit::attacker::send_spoofed_udp(src, dst, &payload))?
}

/// `host`'s IPv4 address.
pub(crate) fn v4(host: &Host) -> Ipv4Addr {
    host.v4()
}

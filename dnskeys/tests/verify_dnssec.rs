//! `dnskeys verify --dnssec` against a real BIND 9 serving zones signed
//! offline (dnssec-keygen + dnssec-signzone): a good zone, one whose
//! signatures expired in 2020, and an unsigned one. One `named -g` on a free
//! port of 127.0.0.1, authoritative only (no recursion), in its own directory.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::{Run, dnskeys, keygen, tool};

const GOOD: &str = "2.0.192.in-addr.arpa.";
const GOOD_IP: &str = "192.0.2.10";
const EXPIRED: &str = "100.51.198.in-addr.arpa.";
const EXPIRED_IP: &str = "198.51.100.10";
const SOON: &str = "0.0.10.in-addr.arpa.";
const SOON_IP: &str = "10.0.0.10";
const UNSIGNED: &str = "113.0.203.in-addr.arpa.";
const UNSIGNED_IP: &str = "203.0.113.10";

struct Named {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Named {
    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn dig(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec![
            "@127.0.0.1",
            "-p",
            &port,
            "+noall",
            "+answer",
            "+time=1",
            "+tries=1",
        ];
        all.extend(args);
        tool("dig", &all)
    }
}

fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// Signs `zone` (KSK + ZSK, ECDSAP256SHA256) with an IPSECKEY at `ip`, `extra` passed to dnssec-signzone.
fn signed_zone(dir: &Path, zone: &str, ip: &str, extra: &[&str]) {
    let (key, _) = keygen(dir, &format!("{zone}host.key"));
    let record = dnskeys(&[
        "record",
        "--key",
        key.to_str().unwrap(),
        "--ip",
        ip,
        "--ttl",
        "300",
    ])
    .expect_code(0)
    .stdout;
    let file = dir.join(format!("{zone}zone"));
    fs::write(
        &file,
        format!(
            "$TTL 300\n@ IN SOA ns.{zone} root.{zone} 1 3600 600 86400 300\n@ IN NS ns.{zone}\n\
             ns IN A 127.0.0.1\n{record}"
        ),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    // KSK, then ZSK; their DNSKEYs go into the zone, and each signs what it
    // signs by name (-k KSK ... ZSK): no key timing, so a past period works.
    let keys: Vec<String> = [&["-f", "KSK"][..], &[]]
        .iter()
        .map(|flags| {
            let mut args = vec!["-q", "-K", d, "-a", "ECDSAP256SHA256", "-n", "ZONE"];
            args.extend(*flags);
            args.push(zone);
            let name = tool("dnssec-keygen", &args).trim().to_owned();
            let public = fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
            fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, public.as_bytes()))
                .unwrap();
            dir.join(name).to_str().unwrap().to_owned()
        })
        .collect();
    let out = format!("{}.signed", file.display());
    // -d: its dsset file goes beside the keys, not into the working directory.
    let mut args = vec!["-d", d, "-o", zone, "-f", &out, "-k", &keys[0]];
    args.extend(extra);
    args.extend([file.to_str().unwrap(), &keys[1]]);
    tool("dnssec-signzone", &args);
}

/// The server the running tests share (the zones do not change). Each test
/// holds it while it runs; the last one to finish stops it (a static would
/// never be dropped, and `named` would outlive the test binary).
fn named() -> Arc<Named> {
    static SHARED: Mutex<Weak<Named>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = shared.upgrade() {
        return n;
    }
    let n = Arc::new(start_named());
    *shared = Arc::downgrade(&n);
    n
}

fn start_named() -> Named {
    {
        // Debian's AppArmor profile lets named read and write under /var/lib/bind.
        let base = Path::new("/var/lib/bind");
        let dir = if base.is_dir() {
            tempfile::Builder::new()
                .prefix("oemesh-dnssec-")
                .tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let d = dir.path();
        signed_zone(d, GOOD, GOOD_IP, &[]);
        signed_zone(d, SOON, SOON_IP, &["-e", "+86400"]);
        // -P: dnssec-signzone's own check would refuse the expired signatures.
        let past = ["-P", "-s", "20200101000000", "-e", "20200102000000"];
        signed_zone(d, EXPIRED, EXPIRED_IP, &past);
        fs::write(
            d.join(format!("{UNSIGNED}zone.signed")),
            format!(
                "$TTL 300\n@ IN SOA ns.{UNSIGNED} root.{UNSIGNED} 1 3600 600 86400 300\n\
                 @ IN NS ns.{UNSIGNED}\nns IN A 127.0.0.1\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let zones: String = [GOOD, SOON, EXPIRED, UNSIGNED]
            .iter()
            .map(|z| format!("zone \"{z}\" {{ type primary; file \"{z}zone.signed\"; }};\n"))
            .collect();
        fs::write(
            d.join("named.conf"),
            format!(
                "options {{ directory \"{}\"; pid-file none; listen-on port {port} {{ 127.0.0.1; }};\n\
                 listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; }};\n{zones}",
                d.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(d.join("named.log")).unwrap();
        let child = Command::new("named")
            .args(["-g", "-c"])
            .arg(d.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("named runs (apt-get install bind9)");
        let named = Named { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = named.port.to_string();
        let answers = || {
            Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port,
                    "+short",
                    "+time=1",
                    "+tries=1",
                    UNSIGNED,
                    "SOA",
                ])
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
        };
        while !answers() {
            assert!(
                Instant::now() < deadline,
                "named did not answer: {}",
                fs::read_to_string(named.path("named.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        named
    }
}

fn verify(n: &Named, ip: &str, extra: &[&str]) -> Run {
    let server = n.server();
    let mut args = vec!["verify", "--ip", ip, "--server", &server, "--timeout", "3"];
    args.extend(extra);
    dnskeys(&args)
}

/// `dig +noall +answer DNSKEY zone.` output, as an anchor file.
fn dnskey_anchor(n: &Named, zone: &str) -> PathBuf {
    let path = n.path(&format!("{zone}anchors"));
    fs::write(&path, n.dig(&[zone, "DNSKEY"])).unwrap();
    path
}

#[test]
fn signed_zone_is_secure_from_a_dnskey_anchor() {
    let n = named();
    let anchor = dnskey_anchor(&n, GOOD);
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", anchor.to_str().unwrap()],
    )
    .expect_code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("DNSSEC:"))
        .unwrap();
    assert!(
        line.starts_with("DNSSEC: secure (chain: 2.0.192.in-addr.arpa. DNSKEY 257 alg 13 tag "),
        "{line}"
    );
    assert!(
        line.contains(&format!("from trust anchor {GOOD}anchors:")),
        "{line}"
    );
    assert!(
        line.contains("RRSIG expires 20") && line.contains("(in 29 days)"),
        "{line}"
    );
    assert!(
        run.stdout
            .contains("OK: at least one usable Ed25519 record"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);

    let json = verify(
        &n,
        GOOD_IP,
        &[
            "--dnssec",
            "--trust-anchor",
            anchor.to_str().unwrap(),
            "--json",
        ],
    )
    .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let d = &v["dnssec"];
    assert_eq!(d["state"], "secure", "{d}");
    assert_eq!(d["validated"], true);
    assert_eq!(d["source"], "local-validation");
    assert!(d["expires"].as_str().unwrap().ends_with('Z'), "{d}");
    let left = d["expires_in_s"].as_i64().unwrap();
    assert!(left > 29 * 86400 && left <= 30 * 86400, "{d}");
    assert_eq!(d["chain"][0]["zone"], GOOD);
    assert_eq!(d["chain"][0]["flags"], 257);
    assert_eq!(v["ok"], true);
}

#[test]
fn signed_zone_is_secure_from_a_ds_anchor() {
    let n = named();
    let ksk = fs::read_dir(n.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("K{GOOD}"))
                && name.ends_with(".key")
                && fs::read_to_string(p).unwrap().contains("key-signing")
        })
        .unwrap();
    // The KSK's K-file alone: it signs the DNSKEY RRset, which vouches for the ZSK.
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", ksk.to_str().unwrap()],
    )
    .expect_code(0);
    assert!(
        run.stdout
            .contains("DNSSEC: secure (chain: 2.0.192.in-addr.arpa. DNSKEY 257"),
        "{}",
        run.stdout
    );
    let ds = n.path("ds.anchors");
    fs::write(
        &ds,
        tool("dnssec-dsfromkey", &["-2", ksk.to_str().unwrap()]),
    )
    .unwrap();
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", ds.to_str().unwrap()],
    )
    .expect_code(0);
    assert!(
        run.stdout
            .contains("DNSSEC: secure (chain: 2.0.192.in-addr.arpa. DNSKEY 257"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("from trust anchor ds.anchors:1 (DS)"),
        "{}",
        run.stdout
    );
}

#[test]
fn expired_signatures_are_bogus() {
    let n = named();
    let anchor = dnskey_anchor(&n, EXPIRED);
    let run = verify(
        &n,
        EXPIRED_IP,
        &["--dnssec", "--trust-anchor", anchor.to_str().unwrap()],
    )
    .expect_code(1);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("DNSSEC:"))
        .unwrap();
    assert!(
        line.starts_with(
            "DNSSEC: bogus (expired signature (RRSIG expired 2020-01-02 00:00:00 UTC)"
        ),
        "{line}"
    );
    assert!(
        run.stdout
            .contains("FAIL: the answer is not DNSSEC-secure (bogus)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("warning: the RRSIG over 10.100.51.198.in-addr.arpa. IPSECKEY expired"),
        "{}",
        run.stderr
    );
}

#[test]
fn without_the_zones_anchor_it_is_not_secure() {
    let n = named();
    // Only the root anchors: an authoritative-only server cannot give the
    // chain from the root, so neither zone validates.
    for ip in [GOOD_IP, UNSIGNED_IP] {
        let run = verify(&n, ip, &["--dnssec"]);
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with("DNSSEC:"))
            .unwrap_or_else(|| panic!("{run:?}"));
        assert!(
            line.starts_with("DNSSEC: bogus (no chain from the root"),
            "{line}"
        );
        assert_eq!(run.code, 1, "{run:?}");
    }
    // Without --dnssec nothing changes: the record is there, AD is clear.
    let run = verify(&n, GOOD_IP, &[]).expect_code(0);
    assert!(
        run.stdout.contains("DNSSEC: not validated"),
        "{}",
        run.stdout
    );
}

#[test]
fn another_zones_key_is_no_anchor_for_this_one() {
    let n = named();
    // The expired zone's keys as the anchor for the good zone: no key of its own is trusted.
    let wrong = n.path("wrong.anchors");
    let other = n.dig(&[EXPIRED, "DNSKEY"]).replace(EXPIRED, GOOD);
    fs::write(&wrong, other).unwrap();
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", wrong.to_str().unwrap()],
    )
    .expect_code(1);
    // The anchors are not served for the zone, so they are trusted as given,
    // and no signature in the zone verifies with them.
    assert!(
        run.stdout
            .contains("DNSSEC: bogus (the signatures do not verify with a DNSKEY chained"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_anchor_files_are_usage_errors() {
    let n = named();
    let bad = n.path("bad.anchors");
    fs::write(&bad, "; c\ntest. IN DNSKEY 257 3 13 AAAA\nfoo IN TXT x\n").unwrap();
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", bad.to_str().unwrap()],
    )
    .expect_code(2);
    assert!(
        run.error_line()
            .contains("bad.anchors: line 3: owner name \"foo\" must be absolute"),
        "{}",
        run.stderr
    );
    let missing = n.path("missing.anchors");
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", missing.to_str().unwrap()],
    )
    .expect_code(2);
    assert!(
        run.error_line().contains("missing.anchors: cannot read"),
        "{}",
        run.stderr
    );
    // --trust-anchor without --dnssec is refused by clap.
    verify(&n, GOOD_IP, &["--trust-anchor", bad.to_str().unwrap()]).expect_code(2);
    // A DS that matches no DNSKEY of the zone names the file and line.
    let ds = n.path("stale-ds.anchors");
    fs::write(&ds, format!("{GOOD} IN DS 1 13 2 {}\n", "ab".repeat(32))).unwrap();
    let run = verify(
        &n,
        GOOD_IP,
        &["--dnssec", "--trust-anchor", ds.to_str().unwrap()],
    )
    .expect_code(4);
    assert!(
        run.error_line()
            .contains("stale-ds.anchors:1: no DNSKEY of 2.0.192.in-addr.arpa."),
        "{}",
        run.stderr
    );
}

#[test]
fn a_name_without_records_in_a_signed_zone() {
    let n = named();
    // NXDOMAIN, with the zone's NSEC records proving it: a secure denial.
    let anchor = dnskey_anchor(&n, GOOD);
    let run = verify(
        &n,
        "192.0.2.99",
        &["--dnssec", "--trust-anchor", anchor.to_str().unwrap()],
    )
    .expect_code(1);
    assert!(run.stdout.contains("0 IPSECKEY records"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("DNSSEC: secure (chain: 2.0.192.in-addr.arpa. DNSKEY 257"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("FAIL: no usable Ed25519 record"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_signature_about_to_expire_is_secure_with_a_warning() {
    let n = named();
    let anchor = dnskey_anchor(&n, SOON);
    let run = verify(
        &n,
        SOON_IP,
        &["--dnssec", "--trust-anchor", anchor.to_str().unwrap()],
    )
    .expect_code(0);
    assert!(run.stdout.contains("DNSSEC: secure ("), "{}", run.stdout);
    // -e +86400 counts from the start of validity, an hour before signing.
    assert!(run.stdout.contains(" hours)"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("dnskeys: warning: the RRSIG over 10.0.0.10.in-addr.arpa. IPSECKEY expires"),
        "{}",
        run.stderr
    );
}

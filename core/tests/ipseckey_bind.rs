//! Interop with BIND 9: records we format (one-line and generic `\#` form) are
//! loaded by `named-compilezone`, and what BIND writes back parses to the same
//! values. Skipped, with a note, where BIND's tools are not installed.

use std::path::PathBuf;
use std::process::Command;

use oemesh_core::ipseckey::{Algorithm, DomainName, Gateway, Ipseckey, Record};

fn have_named_compilezone() -> bool {
    Command::new("named-compilezone")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oemesh-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `records` (zone-file lines) into zone `example.` with BIND and returns
/// the canonical text it writes, or BIND's complaint.
fn bind_roundtrip(tmp: &TempDir, records: &[String]) -> Result<String, String> {
    let zone = tmp.0.join("in.zone");
    let out = tmp.0.join("out.zone");
    let mut text = String::from(
        "$TTL 300\n@ IN SOA ns.invalid. admin.invalid. 1 3600 600 86400 300\n@ IN NS ns.invalid.\n",
    );
    for r in records {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(&zone, text).expect("write zone");
    let output = Command::new("named-compilezone")
        .args(["-i", "none", "-k", "ignore", "-o"])
        .arg(&out)
        .arg("example.")
        .arg(&zone)
        .output()
        .expect("run named-compilezone");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Ok(std::fs::read_to_string(&out).expect("read BIND output"))
}

fn name(s: &str) -> DomainName {
    DomainName::from_ascii(s).expect("test names are valid")
}

fn samples() -> Vec<Record> {
    let rsa = vec![
        0x01, 0x03, 0x51, 0x53, 0x79, 0x86, 0xed, 0x35, 0x53, 0x3b, 0x60, 0x64, 0x47, 0x8e, 0xee,
        0xb2, 0x7b, 0x5b, 0xd7, 0x4d, 0xae, 0x14, 0x9b, 0x6e, 0x81, 0xba, 0x3a, 0x05, 0x21, 0xaf,
        0x82, 0xab, 0x78, 0x01,
    ];
    let gateways = [
        Gateway::None,
        Gateway::Ipv4("192.0.2.38".parse().expect("v4")),
        Gateway::Ipv6("2001:db8:0:8002::2000:1".parse().expect("v6")),
        Gateway::Name(name("mygateway.example.com.")),
        Gateway::Name(name(r"odd\.label\032with\(specials\).example.")),
        Gateway::Name(DomainName::root()),
    ];
    let keys = [
        (Algorithm::RSA, rsa),
        (Algorithm::EDDSA, (0u8..32).collect()),
        (Algorithm(200), vec![0xff; 100]),
    ];
    let mut out = Vec::new();
    for (i, gateway) in gateways.iter().enumerate() {
        for (j, (algorithm, key)) in keys.iter().enumerate() {
            out.push(Record {
                owner: name(&format!("h{i}-{j}.example.")),
                ttl: 60 + u32::try_from(i * 10 + j).expect("small"),
                rdata: Ipseckey {
                    precedence: u8::try_from(i * 40 + j).expect("small"),
                    gateway: gateway.clone(),
                    algorithm: *algorithm,
                    public_key: key.clone(),
                },
            });
        }
    }
    out
}

/// The IPSECKEY lines of BIND's output, parsed.
fn parse_bind_output(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| l.contains("IPSECKEY"))
        .map(|l| {
            Record::parse_presentation(l)
                .map_err(|e| format!("BIND wrote {l:?}: {e}"))
                .expect("BIND's IPSECKEY text parses")
        })
        .collect()
}

fn sorted(mut v: Vec<Record>) -> Vec<Record> {
    v.sort_by_key(|r| r.owner.to_string().to_ascii_lowercase());
    v
}

#[test]
fn bind_reads_what_we_write() {
    if !have_named_compilezone() {
        eprintln!("skipped: named-compilezone (bind9-utils) not installed");
        return;
    }
    let tmp = TempDir::new("ipseckey-bind");
    let records = samples();

    let lines: Vec<String> = records.iter().map(ToString::to_string).collect();
    let back = bind_roundtrip(&tmp, &lines).expect("BIND loads our one-line records");
    assert_eq!(sorted(parse_bind_output(&back)), sorted(records.clone()));

    // The generic form, under owners "g-…", must load to the same RDATA.
    let generic: Vec<String> = records
        .iter()
        .map(|r| format!("g-{} {} IN TYPE45 {}", r.owner, r.ttl, r.rdata.generic()))
        .collect();
    let back = bind_roundtrip(&tmp, &generic).expect("BIND loads our generic records");
    let expected: Vec<Record> = records
        .iter()
        .map(|r| Record {
            owner: name(&format!("g-{}", r.owner)),
            ..r.clone()
        })
        .collect();
    assert_eq!(sorted(parse_bind_output(&back)), sorted(expected));
}

/// BIND 9.18 will not load an IPSECKEY whose key field is empty, although RFC 4025
/// §2.4 uses algorithm 0 for "no key". We read and write that form; whoever
/// publishes to BIND must not produce it.
#[test]
fn bind_refuses_an_empty_key() {
    if !have_named_compilezone() {
        eprintln!("skipped: named-compilezone (bind9-utils) not installed");
        return;
    }
    let tmp = TempDir::new("ipseckey-bind-nokey");
    let nokey = Ipseckey {
        precedence: 10,
        gateway: Gateway::None,
        algorithm: Algorithm::NONE,
        public_key: Vec::new(),
    };
    assert_eq!(nokey.to_string(), "10 0 0 .");
    for line in [
        format!("nokey 60 IN IPSECKEY {nokey}"),
        format!("nokey 60 IN TYPE45 {}", nokey.generic()),
    ] {
        let complaint = bind_roundtrip(&tmp, std::slice::from_ref(&line)).expect_err(&line);
        assert!(
            complaint.contains("unexpected end of input"),
            "{line}: {complaint}"
        );
    }
    // With a one-byte key the same record loads.
    let one = Ipseckey {
        public_key: vec![1],
        ..nokey
    };
    bind_roundtrip(&tmp, &[format!("onebyte 60 IN IPSECKEY {one}")]).expect("loads");
}

//! BIND signing its own zones, and the anchors a validator needs.
//!
//! Checked on BIND 9.18 (Debian 12): `dnssec-policy` on a zone with an
//! `update-policy` signs it in place (the zone is dynamic, so no
//! `inline-signing`; 9.18 warns that 9.20 turns inline-signing on by default,
//! hence the explicit `inline-signing no`). At load `named` makes one
//! ECDSAP256SHA256 CSK per zone in the `key-directory`, publishes and uses it
//! at once, and re-signs what each TSIG update adds. Signing a fresh zone takes
//! well under a second.
//!
//! The anchor file ([`ANCHOR_FILE`]) is what the agent's `[dns] trust_anchors`
//! reads: the DNSKEY records with flags 257 (here the CSK) of every zone, as
//! `dig +noall +answer DNSKEY zone.` prints them. `delv -a` and `named` want a
//! `trust-anchors { "zone." static-key 257 3 13 "…"; };` block instead
//! ([`DELV_ANCHOR_FILE`], [`trust_anchors_block`]).

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{Bind, REVERSE_V4_ZONE, REVERSE_V6_ZONE, command_in};

/// The `dnssec-policy` the testkit's zones are signed with.
pub const POLICY: &str = "oemesh";
/// The key directory, inside the instance's directory.
pub const KEY_DIR: &str = "keys";
/// The anchors in `dig` format, inside the instance's directory.
pub const ANCHOR_FILE: &str = "anchors.txt";
/// The anchors as a `trust-anchors` block, inside the instance's directory.
pub const DELV_ANCHOR_FILE: &str = "anchors.delv.conf";

/// The policy: a CSK that never rolls, timings short enough that the key is
/// published and used at load (no waiting for propagation or a parent DS).
fn policy_conf() -> String {
    format!(
        r#"dnssec-policy "{POLICY}" {{
    keys {{ csk key-directory lifetime unlimited algorithm ecdsap256sha256; }};
    dnskey-ttl 300;
    max-zone-ttl 300;
    zone-propagation-delay 1;
    publish-safety 1;
    retire-safety 1;
    parent-ds-ttl 300;
    parent-propagation-delay 1;
}};
"#
    )
}

/// Whether `zone` is one of the [`super::SITE_ZONES`], which a signed
/// instance leaves unsigned: hickory 0.26.3 judges an answer expanded from a
/// wildcard in an NSEC-signed zone bogus (hickory-dns PR 3812), and the sites
/// are published as wildcards (docs/architecture.md, "Gateways").
pub(super) fn is_site_zone(zone: &str) -> bool {
    super::SITE_ZONES.contains(&zone)
}

/// The zones of `zones` a signed instance signs.
pub(super) fn signed_of(zones: &[String]) -> Vec<String> {
    zones.iter().filter(|z| !is_site_zone(z)).cloned().collect()
}

/// `conf` (a `named.conf` of [`super::named_conf`]) with the policy added and
/// the primary zones `zones` signed by it, keys in `<dir>/keys`.
pub(super) fn sign_zones(conf: &str, dir: &Path, zones: &[String]) -> String {
    let keys = dir.join(KEY_DIR);
    let per_zone = format!(
        "    type primary;\n    dnssec-policy \"{POLICY}\";\n    inline-signing no;\n    \
         key-directory \"{}\";\n",
        keys.display()
    );
    let mut signed = conf.to_owned();
    for zone in zones {
        let head = format!(
            "zone \"{}\" {{\n    type primary;\n",
            zone.trim_end_matches('.')
        );
        let with = format!("zone \"{}\" {{\n{per_zone}", zone.trim_end_matches('.'));
        signed = signed.replace(&head, &with);
    }
    debug_assert_eq!(signed.matches("dnssec-policy \"").count(), zones.len());
    format!("{}{signed}", policy_conf())
}

/// Whether `dig +dnssec … DNSKEY` output has a DNSKEY and its RRSIG.
pub(super) fn has_signed_dnskey(dig_answer: &str) -> bool {
    let types: Vec<(&str, Option<&str>)> = dig_answer
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace().skip(3);
            (f.next().unwrap_or(""), f.next())
        })
        .collect();
    types.iter().any(|(t, _)| *t == "DNSKEY") && types.contains(&("RRSIG", Some("DNSKEY")))
}

/// The lines of `dig +noall +answer DNSKEY` output that are DNSKEY records
/// with flags 257 (KSK or CSK): what an anchor file holds.
pub fn anchor_lines(dig_answer: &str) -> Vec<String> {
    dig_answer
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3) == Some(&"DNSKEY") && f.get(4) == Some(&"257")
        })
        .map(str::to_owned)
        .collect()
}

/// The anchors of an anchor file (dig format) as a `trust-anchors` block for
/// `delv -a` or `named.conf`.
pub fn trust_anchors_block(anchor_file_text: &str) -> String {
    let mut block = String::from("trust-anchors {\n");
    for line in anchor_lines(anchor_file_text) {
        let f: Vec<&str> = line.split_whitespace().collect();
        block.push_str(&format!(
            "    \"{}\" static-key {} {} {} \"{}\";\n",
            f[0],
            f[4],
            f[5],
            f[6],
            f[7..].concat()
        ));
    }
    block.push_str("};\n");
    block
}

/// Asks the running instance for each zone's DNSKEY RRset and writes
/// [`ANCHOR_FILE`] and [`DELV_ANCHOR_FILE`] into its directory.
pub(super) fn write_anchor_files(bind: &Bind) -> Result<()> {
    let mut anchors = String::new();
    for zone in bind.signed_zones() {
        let answer = bind.dig(&["+norecurse", zone, "DNSKEY"])?;
        let lines = anchor_lines(&answer);
        if lines.is_empty() {
            bail!("{zone} has no DNSKEY with flags 257:\n{answer}");
        }
        for l in lines {
            anchors.push_str(&l);
            anchors.push('\n');
        }
    }
    let dir = bind.dir();
    fs::write(dir.join(ANCHOR_FILE), &anchors)?;
    fs::write(dir.join(DELV_ANCHOR_FILE), trust_anchors_block(&anchors))?;
    Ok(())
}

/// The anchor line of a BIND key file (`K<zone>+013+<tag>.key`, as
/// `dnssec-keygen` or `dnssec-policy` write it) when its key has flags 257,
/// in `dig +noall +answer` form (tabs, the key in 56-character chunks): for a
/// server that has no dig at hand (the compose twin's `dns` container).
pub fn anchor_from_key_file(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| !l.starts_with(';') && l.contains(" DNSKEY "))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let at = f.iter().position(|w| *w == "DNSKEY")?;
    let (owner, ttl) = (f[0], if at == 3 { f[1] } else { "300" });
    let [flags, proto, alg] = [f.get(at + 1)?, f.get(at + 2)?, f.get(at + 3)?];
    if *flags != "257" {
        return None;
    }
    let key = f[at + 4..].concat();
    let chunks: Vec<&str> = key
        .as_bytes()
        .chunks(56)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Some(format!(
        "{owner}\t{ttl}\tIN\tDNSKEY\t{flags} {proto} {alg} {}",
        chunks.join(" ")
    ))
}

/// `1.2.0.192.in-addr.arpa.` / nibbles `.ip6.arpa.` for `ip`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// The testkit's reverse zone that holds `ip`'s reverse name.
pub fn reverse_zone_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => REVERSE_V4_ZONE,
        IpAddr::V6(_) => REVERSE_V6_ZONE,
    }
}

/// The record types BIND adds when it signs (stripped from a copy).
const SIGNING_TYPES: [&str; 7] = [
    "RRSIG",
    "NSEC",
    "NSEC3",
    "NSEC3PARAM",
    "TYPE65534",
    "CDS",
    "CDNSKEY",
];

impl Bind {
    /// The zone's current records by AXFR, without what signing added
    /// (RRSIG, NSEC, BIND's private type 65534, CDS/CDNSKEY); DNSKEY kept when
    /// `keep_dnskey`. One record per line, duplicates (the closing SOA) removed.
    pub fn zone_copy(&self, zone: &str, keep_dnskey: bool) -> Result<String> {
        let axfr = self.dig(&[zone, "AXFR"])?;
        let mut out: Vec<&str> = Vec::new();
        for line in axfr.lines() {
            let Some(rtype) = line.split_whitespace().nth(3) else {
                continue;
            };
            if line.starts_with(';')
                || SIGNING_TYPES.contains(&rtype)
                || (rtype == "DNSKEY" && !keep_dnskey)
                || out.contains(&line)
            {
                continue;
            }
            out.push(line);
        }
        if !out
            .iter()
            .any(|l| l.split_whitespace().nth(3) == Some("SOA"))
        {
            bail!("AXFR of {zone} returned no SOA:\n{axfr}");
        }
        Ok(out.join("\n") + "\n")
    }

    /// `delv @SERVER -p PORT -a <delv anchors> +root=ZONE ARGS…` (inside the
    /// server's namespace): validation of an answer in `zone` from this
    /// instance's anchors alone. Standard output and error together; fails
    /// when the instance is unsigned or delv cannot run. A validated answer
    /// has the line `; fully validated`.
    pub fn delv(&self, zone: &str, args: &[&str]) -> Result<String> {
        let anchors = self
            .delv_anchor_file()
            .context("delv needs a signed instance (Bind::start_signed)")?;
        delv_at(self.netns_name(), self.addr(), &anchors, zone, args)
    }
}

/// `delv @ADDR -p PORT -a ANCHORS +root=ZONE ARGS…` in `netns` (or here):
/// standard output and error together. `anchors` is a `trust-anchors` block
/// ([`Bind::delv_anchor_file`]). Validated: `; fully validated`; a forgery
/// shows `resolution failed` and why (e.g. `; validating …: no valid
/// signature found`, `RRSIG has expired`). Fails only when delv cannot run.
pub fn delv_at(
    netns: Option<&str>,
    addr: SocketAddr,
    anchors: &Path,
    zone: &str,
    args: &[&str],
) -> Result<String> {
    let out = command_in(netns, "delv")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .arg("-a")
        .arg(anchors)
        .arg(format!("+root={zone}"))
        .args(args)
        .output()
        .context("running delv (package bind9-dnsutils)")?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIG: &str = "2.0.192.in-addr.arpa.\t300\tIN\tDNSKEY\t257 3 13 hGpN6EPK LR0 g1gW==\n\
                       2.0.192.in-addr.arpa.\t300\tIN\tDNSKEY\t256 3 13 zsk==\n\
                       2.0.192.in-addr.arpa.\t300\tIN\tRRSIG\tDNSKEY 13 5 300 2026 2026 5392 x. sig\n";

    #[test]
    fn anchors_keep_257_and_become_static_keys() {
        assert_eq!(anchor_lines(DIG).len(), 1);
        assert!(has_signed_dnskey(DIG));
        assert!(!has_signed_dnskey(&anchor_lines(DIG)[0]));
        let block = trust_anchors_block(DIG);
        assert_eq!(
            block,
            "trust-anchors {\n    \"2.0.192.in-addr.arpa.\" static-key 257 3 13 \
             \"hGpN6EPKLR0g1gW==\";\n};\n"
        );
    }

    #[test]
    fn key_file_becomes_a_dig_line() {
        let key = "; This is a key-signing key, keyid 5392, for 2.0.192.in-addr.arpa.\n\
                   ; Created: 20261207155035 (Mon Dec  7 15:50:35 2026)\n\
                   2.0.192.in-addr.arpa. 300 IN DNSKEY 257 3 13 hGpN6EPKGRJLhuU+4CRuMecQeMlCTRiKCHKbIQOEucZUPk3GaP7DxLR0g1gW1KCgDLQIz29zgD/5e0DOi9e9xQ==\n";
        assert_eq!(
            anchor_from_key_file(key).unwrap(),
            "2.0.192.in-addr.arpa.\t300\tIN\tDNSKEY\t257 3 13 \
             hGpN6EPKGRJLhuU+4CRuMecQeMlCTRiKCHKbIQOEucZUPk3GaP7DxLR0 g1gW1KCgDLQIz29zgD/5e0DOi9e9xQ=="
        );
        assert_eq!(anchor_from_key_file(&key.replace(" 257 ", " 256 ")), None);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa."
        );
        let v6 = reverse_name("2001:db8::10".parse().unwrap());
        assert!(v6.starts_with("0.1.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."), "{v6}");
    }

    #[test]
    fn signed_instance_validates_an_update() {
        let bind = Bind::start_signed().expect("signed BIND starts");
        let anchors = fs::read_to_string(bind.anchor_file().unwrap()).unwrap();
        assert_eq!(
            anchor_lines(&anchors).len(),
            bind.signed_zones().len(),
            "{anchors}"
        );
        bind.nsupdate("update add 7.2.0.192.in-addr.arpa. 300 IN PTR h7.example.test.")
            .unwrap();
        let ptr = bind
            .dig(&["+dnssec", "7.2.0.192.in-addr.arpa.", "PTR"])
            .unwrap();
        assert!(ptr.contains("RRSIG\tPTR"), "BIND signs the update:\n{ptr}");
        let delv = bind
            .delv(REVERSE_V4_ZONE, &["7.2.0.192.in-addr.arpa.", "PTR"])
            .unwrap();
        assert!(delv.contains("; fully validated"), "{delv}");
        assert!(bind.key_dir().read_dir().unwrap().count() >= 3);
    }
}

//! DNSSEC trust-anchor files: DNSKEY and DS records in zone-file presentation
//! format (RFC 1035 §5.1, RFC 4034 §2.2 and §5.3), exactly as
//! `dig +noall +answer DNSKEY zone.` (also with `+multiline` or `+dnssec`)
//! prints them and as BIND's `K*.key` and `dsset-*` files hold them.
//!
//! ```text
//! ; comments and blank lines are skipped, and so are RRSIG records
//! 2.0.192.in-addr.arpa. 300 IN DNSKEY 257 3 13 OimcFtUY... QxzvPFXA...==
//! 2.0.192.in-addr.arpa. IN DS 12068 13 2 81C06E46...F45F10
//! ```
//!
//! Owner names must be absolute; TTL and class are optional, in either order.
//! `$ORIGIN`, `$TTL` and relative names are refused: an anchor file names its
//! zones in full. [`parse`] never panics, whatever the input.

use base64::Engine as _;
use ring::digest;

/// One anchor from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    /// Lowercase, absolute, presentation form: "2.0.192.in-addr.arpa.", "." for the root.
    pub zone: String,
    /// 1-based line where the record starts.
    pub line: usize,
    /// The key, or the digest of it.
    pub kind: AnchorKind,
}

/// What an anchor holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorKind {
    /// A DNSKEY record (RFC 4034 §2).
    Dnskey {
        /// Flags (256: zone key; 257: zone key and SEP).
        flags: u16,
        /// Always 3.
        protocol: u8,
        /// The DNSSEC algorithm number (13: ECDSAP256SHA256, 15: ED25519, ...).
        algorithm: u8,
        /// The public key bytes.
        public_key: Vec<u8>,
    },
    /// A DS record (RFC 4034 §5), digest type 2 or 4.
    Ds {
        /// The key tag of the DNSKEY it refers to.
        key_tag: u16,
        /// That DNSKEY's algorithm.
        algorithm: u8,
        /// 2 (SHA-256) or 4 (SHA-384).
        digest_type: u8,
        /// The digest (32 or 48 bytes).
        digest: Vec<u8>,
    },
}

/// Why a trust-anchor file is refused.
///
/// Display: "line {line}: {why}" (the caller prefixes the file name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct AnchorError {
    /// 1-based line of the record at fault.
    pub line: usize,
    /// What is wrong and what to do.
    pub why: String,
}

/// The zone-key flag of a DNSKEY (RFC 4034 §2.1.1).
const ZONE_KEY: u16 = 0x0100;
/// The REVOKE flag (RFC 5011 §3).
const REVOKE: u16 = 0x0080;
/// The longest DNSKEY public key that fits an RDATA (65535 minus 4 bytes of fields).
const MAX_KEY_LEN: usize = u16::MAX as usize - 4;

/// Parses a trust-anchor file. Every record must be a DNSKEY or DS anchor
/// (RRSIGs are skipped); the first problem found is the error.
pub fn parse(text: &str) -> Result<Vec<TrustAnchor>, AnchorError> {
    // A byte-order mark, as some editors write, is not part of the owner name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut anchors = Vec::new();
    for record in records(text) {
        let (line, tokens) = record?;
        if let Some(anchor) = parse_record(&tokens).map_err(|why| AnchorError { line, why })? {
            anchors.push(TrustAnchor { line, ..anchor });
        }
    }
    if anchors.is_empty() {
        return Err(AnchorError {
            line: text.lines().count().max(1),
            why: "no DNSKEY or DS record found; put the output of \
                  `dig +noall +answer DNSKEY ZONE.` (or the zone's DS records) in the file"
                .into(),
        });
    }
    Ok(anchors)
}

impl TrustAnchor {
    /// RFC 4034 Appendix B key tag (for a DS anchor: its key_tag field).
    pub fn key_tag(&self) -> u16 {
        match &self.kind {
            AnchorKind::Dnskey {
                flags,
                protocol,
                algorithm,
                public_key,
            } => key_tag(*flags, *protocol, *algorithm, public_key),
            AnchorKind::Ds { key_tag, .. } => *key_tag,
        }
    }

    /// Whether a DNSKEY (its owner `zone`, any case, with or without the final dot, and its RDATA
    /// fields) is this anchor: the same key for a DNSKEY anchor; for a DS anchor, the digest
    /// (RFC 4034 §5.1.4: digest over owner name in canonical wire form || DNSKEY RDATA) matches,
    /// digest types 2 (SHA-256) and 4 (SHA-384).
    pub fn matches_dnskey(
        &self,
        zone: &str,
        flags: u16,
        protocol: u8,
        algorithm: u8,
        public_key: &[u8],
    ) -> bool {
        let absolute = if zone.ends_with('.') {
            zone.to_owned()
        } else {
            format!("{zone}.")
        };
        let (Ok(theirs), Ok(ours)) = (wire_name(&absolute), wire_name(&self.zone)) else {
            return false;
        };
        if theirs != ours {
            return false;
        }
        match &self.kind {
            AnchorKind::Dnskey {
                flags: f,
                protocol: p,
                algorithm: a,
                public_key: k,
            } => *f == flags && *p == protocol && *a == algorithm && k.as_slice() == public_key,
            AnchorKind::Ds {
                key_tag: tag,
                algorithm: a,
                digest_type,
                digest: want,
            } => {
                // RFC 4034 §5.2: a DS refers to a zone key.
                if flags & ZONE_KEY == 0 || *a != algorithm {
                    return false;
                }
                if *tag != key_tag(flags, protocol, algorithm, public_key) {
                    return false;
                }
                let alg = match digest_type {
                    2 => &digest::SHA256,
                    4 => &digest::SHA384,
                    _ => return false,
                };
                let mut ctx = digest::Context::new(alg);
                ctx.update(&ours);
                ctx.update(&flags.to_be_bytes());
                ctx.update(&[protocol, algorithm]);
                ctx.update(public_key);
                ctx.finish().as_ref() == want.as_slice()
            }
        }
    }
}

/// RFC 4034 Appendix B key tag of a DNSKEY RDATA.
pub fn key_tag(flags: u16, protocol: u8, algorithm: u8, public_key: &[u8]) -> u16 {
    if algorithm == 1 {
        // RSA/MD5 (Appendix B.1): the 16 bits before the last byte of the modulus.
        let n = public_key.len();
        return match (n.checked_sub(3), n.checked_sub(2)) {
            (Some(a), Some(b)) => u16::from_be_bytes([public_key[a], public_key[b]]),
            _ => 0,
        };
    }
    let [f0, f1] = flags.to_be_bytes();
    let rdata = [f0, f1, protocol, algorithm]
        .into_iter()
        .chain(public_key.iter().copied());
    let mut acc: u32 = 0;
    for (i, b) in rdata.enumerate() {
        let b = u32::from(b);
        acc = acc.wrapping_add(if i % 2 == 0 { b << 8 } else { b });
    }
    acc = acc.wrapping_add(acc >> 16);
    (acc & 0xffff) as u16
}

/// Joins lines into records: comments cut, `( ... )` spanning lines. Yields
/// the record's first line and its tokens (parentheses dropped).
fn records(text: &str) -> impl Iterator<Item = Result<(usize, Vec<&str>), AnchorError>> {
    let mut lines = text.lines().enumerate();
    std::iter::from_fn(move || {
        let mut tokens: Vec<&str> = Vec::new();
        let mut start = 0;
        let mut open = false;
        for (i, raw) in lines.by_ref() {
            let n = i + 1;
            let line = raw.split(';').next().unwrap_or("");
            if !open {
                if line.trim().is_empty() {
                    continue;
                }
                start = n;
                let err = |why: String| Some(Err(AnchorError { line: n, why }));
                if line.starts_with('$') {
                    let directive = line.split_whitespace().next().unwrap_or("$");
                    return err(format!(
                        "{directive} is not supported in a trust anchor file; write absolute owner names"
                    ));
                }
                if line.starts_with(char::is_whitespace) {
                    return err(
                        "the record has no owner name (the line starts with a space); \
                         write the zone's absolute name first, as dig prints it"
                            .into(),
                    );
                }
            }
            for token in split_tokens(line) {
                match token {
                    "(" if open => {
                        return Some(Err(AnchorError {
                            line: n,
                            why: "nested '(' ; close the first '(' before opening another".into(),
                        }));
                    }
                    "(" => open = true,
                    ")" if !open => {
                        return Some(Err(AnchorError {
                            line: n,
                            why: "')' without '('".into(),
                        }));
                    }
                    ")" => open = false,
                    t => tokens.push(t),
                }
            }
            if !open {
                return Some(Ok((start, tokens)));
            }
        }
        open.then(|| {
            Err(AnchorError {
                line: start,
                why: "'(' is not closed by the end of the file; add the ')'".into(),
            })
        })
    })
}

/// Splits on whitespace, with `(` and `)` as tokens of their own.
fn split_tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split_whitespace().flat_map(|word| {
        let mut parts = Vec::new();
        let mut rest = word;
        while let Some(at) = rest.find(['(', ')']) {
            let (before, paren_and_after) = rest.split_at(at);
            let (paren, after) = paren_and_after.split_at(1);
            if !before.is_empty() {
                parts.push(before);
            }
            parts.push(paren);
            rest = after;
        }
        if !rest.is_empty() {
            parts.push(rest);
        }
        parts
    })
}

/// One record's tokens to an anchor (line not yet set), `None` for an RRSIG.
fn parse_record(tokens: &[&str]) -> Result<Option<TrustAnchor>, String> {
    let mut it = tokens.iter().copied();
    let owner = it.next().ok_or("empty record")?;
    let wire = wire_name(owner)?;
    let zone = presentation(&wire);
    let mut ttl = false;
    let mut class = false;
    let rtype = loop {
        let Some(t) = it.next() else {
            return Err(format!(
                "the record for {zone} has no type; expected DNSKEY or DS"
            ));
        };
        if !ttl && t.starts_with(|c: char| c.is_ascii_digit()) {
            if !t
                .chars()
                .all(|c| c.is_ascii_digit() || "smhdwSMHDW".contains(c))
            {
                return Err(format!("TTL {t:?} is not a number of seconds"));
            }
            ttl = true;
        } else if !class && t.eq_ignore_ascii_case("IN") {
            class = true;
        } else if !class
            && ["CH", "HS", "CS", "ANY", "NONE"]
                .iter()
                .any(|c| t.eq_ignore_ascii_case(c))
        {
            return Err(format!("class {t} is not IN; trust anchors are IN records"));
        } else {
            break t.to_ascii_uppercase();
        }
    };
    let rest: Vec<&str> = it.collect();
    let kind = match rtype.as_str() {
        "DNSKEY" => dnskey(&rest)?,
        "DS" => ds(&rest)?,
        "RRSIG" => return Ok(None),
        other => {
            return Err(format!(
                "record type {other} is not a trust anchor (expected DNSKEY or DS)"
            ));
        }
    };
    Ok(Some(TrustAnchor {
        zone,
        line: 0,
        kind,
    }))
}

fn number<T: std::str::FromStr>(field: Option<&&str>, what: &str, rr: &str) -> Result<T, String> {
    let text = field.ok_or_else(|| format!("{rr} record ends before its {what}"))?;
    text.parse()
        .map_err(|_| format!("{rr} {what} {text:?} is not a number in range"))
}

fn dnskey(fields: &[&str]) -> Result<AnchorKind, String> {
    let flags: u16 = number(fields.first(), "flags", "DNSKEY")?;
    let protocol: u8 = number(fields.get(1), "protocol", "DNSKEY")?;
    let algorithm: u8 = number(fields.get(2), "algorithm", "DNSKEY")?;
    if flags & ZONE_KEY == 0 {
        return Err(format!(
            "DNSKEY flags {flags} lack the zone-key bit (256); a trust anchor is a zone's \
             key (flags 257 for a KSK, 256 for a ZSK)"
        ));
    }
    if flags & REVOKE != 0 {
        return Err(format!(
            "DNSKEY flags {flags} have the REVOKE bit (128) set; a revoked key is no trust \
             anchor (RFC 5011), use the zone's current key"
        ));
    }
    if protocol != 3 {
        return Err(format!(
            "DNSKEY protocol {protocol} is not 3 (RFC 4034 §2.1.2); this is not a DNSSEC key"
        ));
    }
    let text: String = fields.get(3..).unwrap_or_default().concat();
    if text.is_empty() {
        return Err("DNSKEY record has no public key (base64 after the algorithm)".into());
    }
    let public_key = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|e| format!("DNSKEY public key is not valid base64: {e}"))?;
    if public_key.len() > MAX_KEY_LEN {
        return Err(format!(
            "DNSKEY public key is {} bytes, more than a record holds",
            public_key.len()
        ));
    }
    Ok(AnchorKind::Dnskey {
        flags,
        protocol,
        algorithm,
        public_key,
    })
}

fn ds(fields: &[&str]) -> Result<AnchorKind, String> {
    let key_tag: u16 = number(fields.first(), "key tag", "DS")?;
    let algorithm: u8 = number(fields.get(1), "algorithm", "DS")?;
    let digest_type: u8 = number(fields.get(2), "digest type", "DS")?;
    let want = match digest_type {
        2 => 32,
        4 => 48,
        1 => {
            return Err(
                "DS digest type 1 (SHA-1) is not supported; publish a SHA-256 (2) DS".into(),
            );
        }
        n => {
            return Err(format!(
                "DS digest type {n} is not supported; use 2 (SHA-256) or 4 (SHA-384), as \
                 `dnssec-dsfromkey -2` writes"
            ));
        }
    };
    let text: String = fields.get(3..).unwrap_or_default().concat();
    let digest = hex(&text).ok_or_else(|| format!("DS digest {text:?} is not hexadecimal"))?;
    if digest.len() != want {
        return Err(format!(
            "DS digest is {} bytes; digest type {digest_type} has {want}",
            digest.len()
        ));
    }
    Ok(AnchorKind::Ds {
        key_tag,
        algorithm,
        digest_type,
        digest,
    })
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .chars()
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// An absolute presentation-form name to canonical wire form (RFC 4034 §6.2:
/// ASCII lowercased), with `\X` and `\DDD` escapes (RFC 1035 §5.1).
fn wire_name(name: &str) -> Result<Vec<u8>, String> {
    if name == "." {
        return Ok(vec![0]);
    }
    let mut wire = Vec::new();
    let mut label: Vec<u8> = Vec::new();
    let mut chars = name.chars();
    let mut absolute = false;
    let push = |wire: &mut Vec<u8>, label: &mut Vec<u8>| -> Result<(), String> {
        if label.is_empty() {
            return Err(format!("owner name {name:?} has an empty label ('..')"));
        }
        if label.len() > 63 {
            return Err(format!("owner name {name:?} has a label over 63 bytes"));
        }
        wire.push(label.len() as u8);
        wire.append(label);
        Ok(())
    };
    while let Some(c) = chars.next() {
        absolute = false;
        match c {
            '.' => {
                push(&mut wire, &mut label)?;
                absolute = true;
            }
            '\\' => {
                let e = chars
                    .next()
                    .ok_or_else(|| format!("owner name {name:?} ends in '\\'"))?;
                if let Some(d) = e.to_digit(10) {
                    let d2 = chars.next().and_then(|c| c.to_digit(10));
                    let d3 = chars.next().and_then(|c| c.to_digit(10));
                    let value = match (d2, d3) {
                        (Some(d2), Some(d3)) => d * 100 + d2 * 10 + d3,
                        _ => return Err(format!("owner name {name:?}: \\DDD needs three digits")),
                    };
                    let byte = u8::try_from(value)
                        .map_err(|_| format!("owner name {name:?}: \\{value} is over 255"))?;
                    label.push(byte.to_ascii_lowercase());
                } else {
                    let mut buf = [0; 4];
                    label.extend(
                        e.encode_utf8(&mut buf)
                            .bytes()
                            .map(|b| b.to_ascii_lowercase()),
                    );
                }
            }
            c => {
                let mut buf = [0; 4];
                label.extend(
                    c.encode_utf8(&mut buf)
                        .bytes()
                        .map(|b| b.to_ascii_lowercase()),
                );
            }
        }
    }
    if !absolute {
        return Err(format!(
            "owner name {name:?} must be absolute (end with '.')"
        ));
    }
    wire.push(0);
    if wire.len() > 255 {
        return Err(format!("owner name {name:?} is longer than 255 bytes"));
    }
    Ok(wire)
}

/// Canonical wire form back to presentation form, escaping what needs it.
fn presentation(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = wire;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 {
            break;
        }
        let (label, after) = tail.split_at(usize::from(len).min(tail.len()));
        for &b in label {
            match b {
                // `\X` only where the tokenizer keeps it whole; parentheses,
                // `;` and quotes as `\DDD`, which it does not split at.
                b'.' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e if !b"();\"$@".contains(&b) => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('.');
        rest = after;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests;

//! Domain names: presentation form with escapes (RFC 1035 §5.1), uncompressed wire
//! form (RFC 1035 §3.1), ASCII case-insensitive comparison (RFC 4343).

use std::fmt;
use std::hash::{Hash, Hasher};

use super::WireError;

/// Longest label, in octets (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;
/// Longest name in wire form, length octets and the root label included (RFC 1035 §2.3.4).
const MAX_WIRE: usize = 255;

/// An absolute DNS name, validated: labels of 1..=63 octets, at most 255 octets
/// in wire form. Comparison is ASCII case-insensitive.
#[derive(Clone)]
pub struct DomainName {
    /// Uncompressed wire form without the root label: each label as its length
    /// octet (1..=63) and its raw octets (any byte, escaped in text). One
    /// allocation per name, not one per label: a reverse IPv6 name has 34
    /// labels, and the responder builds, clones, hashes and drops one per
    /// IKE request.
    wire: Box<[u8]>,
}

/// The labels of a wire form without the root label (lengths checked at construction).
#[derive(Clone)]
struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let (label, rest) = tail.split_at(usize::from(len).min(tail.len()));
        self.rest = rest;
        Some(label)
    }
}

/// Why a string is not a domain name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Detail names the problem (empty label, label over 63, name over 255, bad escape).
    #[error("invalid domain name {name:?}: {reason}")]
    Invalid {
        /// the input
        name: String,
        /// what is wrong
        reason: &'static str,
    },
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> Self {
        Self {
            wire: Box::default(),
        }
    }

    /// A name from wire-form labels already checked against the limits.
    fn from_checked<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut wire = Vec::new();
        for label in labels {
            // At most 63 octets: checked by the caller.
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        Self {
            wire: wire.into_boxed_slice(),
        }
    }

    /// Parses presentation form (`host.example.` or `host.example`, treated as
    /// absolute), with `\.` and `\DDD` escapes.
    ///
    /// Characters outside printable ASCII (`!`..`~`) must be written as `\DDD`.
    pub fn from_ascii(text: &str) -> Result<Self, NameError> {
        let fail = |reason| NameError::Invalid {
            name: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(fail("empty name (the root is written \".\")"));
        }
        if text == "." {
            return Ok(Self::root());
        }
        let mut wire = Vec::with_capacity(text.len() + 1);
        let mut label = Vec::new();
        let mut wire_len = 1; // the root label
        let mut bytes = text.bytes();
        // Set when the input ended right after a label separator.
        let mut ended_with_dot = false;
        while let Some(b) = bytes.next() {
            ended_with_dot = false;
            let octet = match b {
                b'.' => {
                    if label.is_empty() {
                        return Err(fail("empty label (two dots in a row, or a leading dot)"));
                    }
                    wire_len += 1 + label.len();
                    // At most 63 octets: checked as each octet is added.
                    wire.push(label.len() as u8);
                    wire.append(&mut label);
                    ended_with_dot = true;
                    continue;
                }
                b'\\' => match bytes.next() {
                    None => return Err(fail("backslash at the end of the name")),
                    Some(d) if d.is_ascii_digit() => {
                        let (Some(d2), Some(d3)) = (bytes.next(), bytes.next()) else {
                            return Err(fail("\\DDD escape needs exactly three digits"));
                        };
                        if !d2.is_ascii_digit() || !d3.is_ascii_digit() {
                            return Err(fail("\\DDD escape needs exactly three digits"));
                        }
                        let value = u16::from(d - b'0') * 100
                            + u16::from(d2 - b'0') * 10
                            + u16::from(d3 - b'0');
                        u8::try_from(value).map_err(|_| fail("\\DDD escape above 255"))?
                    }
                    Some(c) if (0x21..=0x7e).contains(&c) || c == b' ' => c,
                    Some(_) => return Err(fail("backslash before a non-printable character")),
                },
                0x21..=0x7e => b,
                _ => {
                    return Err(fail(
                        "whitespace, control or non-ASCII character (write it as \\DDD)",
                    ));
                }
            };
            if label.len() == MAX_LABEL {
                return Err(fail("label longer than 63 octets"));
            }
            label.push(octet);
        }
        if !ended_with_dot {
            // A relative name is taken as absolute: the last label ends here.
            wire_len += 1 + label.len();
            wire.push(label.len() as u8);
            wire.append(&mut label);
        }
        if wire_len > MAX_WIRE {
            return Err(fail("name longer than 255 octets in wire form"));
        }
        Ok(Self {
            wire: wire.into_boxed_slice(),
        })
    }

    /// Builds a name from raw labels, most specific first, checking the limits.
    pub fn from_labels<I, L>(labels: I) -> Result<Self, WireError>
    where
        I: IntoIterator<Item = L>,
        L: Into<Vec<u8>>,
    {
        let labels: Vec<Vec<u8>> = labels.into_iter().map(Into::into).collect();
        let mut wire_len = 1;
        for label in &labels {
            if label.is_empty() {
                return Err(WireError::BadName("empty label"));
            }
            if label.len() > MAX_LABEL {
                return Err(WireError::BadName("label longer than 63 octets"));
            }
            wire_len += 1 + label.len();
        }
        if wire_len > MAX_WIRE {
            return Err(WireError::BadName("name longer than 255 octets"));
        }
        Ok(Self::from_checked(labels.iter().map(Vec::as_slice)))
    }

    /// Labels without the root label.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        Labels { rest: &self.wire }
    }

    /// True for the root name `.`.
    pub fn is_root(&self) -> bool {
        self.wire.is_empty()
    }

    /// True when `self` equals `zone` or lies below it (case-insensitive).
    pub fn is_subdomain_of(&self, zone: &DomainName) -> bool {
        let Some(skip) = self.labels().count().checked_sub(zone.labels().count()) else {
            return false;
        };
        let mut rest = Labels { rest: &self.wire };
        for _ in 0..skip {
            rest.next();
        }
        // Length octets are below 64, so ASCII case folding leaves them alone.
        rest.rest.eq_ignore_ascii_case(&zone.wire)
    }

    /// The parent name (one label less); `None` for the root.
    pub fn parent(&self) -> Option<DomainName> {
        let mut labels = Labels { rest: &self.wire };
        labels.next()?;
        Some(Self {
            wire: labels.rest.into(),
        })
    }

    /// Uncompressed wire form, root label included.
    pub fn emit_wire(&self, out: &mut Vec<u8>) {
        out.reserve(self.wire_len());
        out.extend_from_slice(&self.wire);
        out.push(0);
    }

    /// Length of the uncompressed wire form.
    pub fn wire_len(&self) -> usize {
        1 + self.wire.len()
    }

    /// Parses an uncompressed wire name at the start of `buf`; returns it and the bytes used.
    ///
    /// Compression pointers are refused: RFC 4025 §2.5 says the gateway name
    /// "MUST NOT be compressed".
    pub fn parse_wire(buf: &[u8]) -> Result<(Self, usize), WireError> {
        let mut pos = 0;
        loop {
            let Some(&len) = buf.get(pos) else {
                return Err(WireError::Truncated {
                    need: pos + 1,
                    have: buf.len(),
                });
            };
            match len {
                0 => {
                    pos += 1;
                    break;
                }
                0xc0..=0xff => {
                    return Err(WireError::BadName(
                        "compression pointer (RFC 4025 §2.5 forbids it)",
                    ));
                }
                0x40..=0xbf => return Err(WireError::BadName("unknown label type")),
                _ => {}
            }
            let end = pos + 1 + usize::from(len);
            // The terminating root label must fit, too.
            if end + 1 > MAX_WIRE {
                return Err(WireError::BadName("name longer than 255 octets"));
            }
            if buf.len() < end {
                return Err(WireError::Truncated {
                    need: end,
                    have: buf.len(),
                });
            }
            pos = end;
        }
        // `buf[..pos]` is the wire form checked above, root label last.
        let wire = buf.get(..pos - 1).unwrap_or_default().into();
        Ok((Self { wire }, pos))
    }
}

/// Octets that need a backslash in presentation form: the label separator, the
/// escape itself and the zone-file specials BIND escapes (`"();@$`).
fn needs_escape(b: u8) -> bool {
    matches!(b, b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$')
}

/// Displays the absolute presentation form with the trailing dot (`.` for the root).
impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wire.is_empty() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &b in label {
                if needs_escape(b) {
                    write!(f, "\\{}", char::from(b))?;
                } else if (0x21..=0x7e).contains(&b) {
                    write!(f, "{}", char::from(b))?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

/// `DomainName("host.example.")`.
impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({:?})", self.to_string())
    }
}

/// ASCII case-insensitive (RFC 4343).
impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        // Length octets are below 64, so ASCII case folding leaves them alone.
        self.wire.eq_ignore_ascii_case(&other.wire)
    }
}
impl Eq for DomainName {}

/// Consistent with the case-insensitive equality.
impl Hash for DomainName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut lower = [0u8; MAX_WIRE];
        let lower = &mut lower[..self.wire.len()];
        lower.copy_from_slice(&self.wire);
        lower.make_ascii_lowercase();
        state.write(lower);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DomainName {
        DomainName::from_ascii(s).unwrap()
    }

    #[test]
    fn root_and_relative_forms() {
        assert!(name(".").is_root());
        assert_eq!(name("host.example"), name("host.example."));
        assert_eq!(name("host.example").to_string(), "host.example.");
    }

    #[test]
    fn escapes_round_trip() {
        let n = name(r"a\.b.c\092\(\032x.");
        let labels: Vec<&[u8]> = n.labels().collect();
        assert_eq!(labels, [&b"a.b"[..], &b"c\\( x"[..]]);
        assert_eq!(n.to_string(), r"a\.b.c\\\(\032x.");
        assert_eq!(name(&n.to_string()), n);
        let bin = DomainName::from_labels([vec![0u8, 0xff, b'@']]).unwrap();
        assert_eq!(bin.to_string(), r"\000\255\@.");
        assert_eq!(
            name(&bin.to_string()).labels().next(),
            Some(&[0u8, 0xff, b'@'][..])
        );
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "..",
            ".a",
            "a..b",
            "a\\",
            "a\\25",
            "a\\256",
            "a b",
            "é.example",
        ] {
            assert!(DomainName::from_ascii(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits() {
        let l63 = "a".repeat(63);
        assert!(DomainName::from_ascii(&l63).is_ok());
        let err = DomainName::from_ascii(&"a".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("63"), "{err}");
        // 4 labels of 63 = 4*64 + 1 = 257 > 255; 3 labels of 63 + one of 61 = 255.
        let too_long = [l63.as_str(); 4].join(".");
        assert!(DomainName::from_ascii(&too_long).is_err());
        let just_fits = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(name(&just_fits).wire_len(), 255);
        let one_more = format!("{l63}.{l63}.{l63}.{}", "b".repeat(62));
        assert!(DomainName::from_ascii(&one_more).is_err());
    }

    #[test]
    fn case_insensitive_eq_and_hash() {
        use std::collections::HashSet;
        let a = name("Host.EXAMPLE.");
        let b = name("host.example.");
        assert_eq!(a, b);
        let set: HashSet<_> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
        // Case is kept for display.
        assert_eq!(name("Host.EXAMPLE").to_string(), "Host.EXAMPLE.");
    }

    #[test]
    fn subdomain_and_parent() {
        let host = name("a.b.example.");
        assert!(host.is_subdomain_of(&name("EXAMPLE.")));
        assert!(host.is_subdomain_of(&host));
        assert!(host.is_subdomain_of(&DomainName::root()));
        assert!(!host.is_subdomain_of(&name("b.example.org.")));
        assert!(!name("example.").is_subdomain_of(&host));
        assert!(!name("xexample.").is_subdomain_of(&name("example.")));
        assert_eq!(host.parent(), Some(name("b.example.")));
        assert_eq!(name("example.").parent(), Some(DomainName::root()));
        assert_eq!(DomainName::root().parent(), None);
    }

    #[test]
    fn wire_form() {
        let n = name("mygateway.example.com.");
        let mut out = Vec::new();
        n.emit_wire(&mut out);
        assert_eq!(out, b"\x09mygateway\x07example\x03com\x00");
        assert_eq!(out.len(), n.wire_len());
        assert_eq!(DomainName::parse_wire(&out), Ok((n, out.len())));
        assert_eq!(DomainName::parse_wire(&[0]), Ok((DomainName::root(), 1)));
    }

    #[test]
    fn wire_errors() {
        assert_eq!(
            DomainName::parse_wire(&[]),
            Err(WireError::Truncated { need: 1, have: 0 })
        );
        assert_eq!(
            DomainName::parse_wire(b"\x03ab"),
            Err(WireError::Truncated { need: 4, have: 3 })
        );
        assert_eq!(
            DomainName::parse_wire(b"\x01a"),
            Err(WireError::Truncated { need: 3, have: 2 })
        );
        assert!(matches!(
            DomainName::parse_wire(b"\xc0\x0c"),
            Err(WireError::BadName(_))
        ));
        assert!(matches!(
            DomainName::parse_wire(b"\x41"),
            Err(WireError::BadName(_))
        ));
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert!(matches!(
            DomainName::parse_wire(&long),
            Err(WireError::BadName(_))
        ));
    }
}

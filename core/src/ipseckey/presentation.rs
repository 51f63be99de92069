//! IPSECKEY presentation form (RFC 4025 §3.1), the generic RFC 3597 form, and
//! whole zone-file records.
//!
//! ```text
//! 38.2.0.192.in-addr.arpa. 7200 IN IPSECKEY ( 10 1 2
//!                  192.0.2.38
//!                  AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ== )
//! 38.2.0.192.in-addr.arpa. 7200 IN TYPE45 \# 9 0a01 02 c0000226 0102
//! ```
//!
//! Errors name the field and the value so that the person editing the zone knows
//! what to change.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::text::tokenize;
use super::{
    Algorithm, DomainName, Gateway, Ipseckey, PresentationError, RR_TYPE, Record, gateway_type_name,
};

/// Standard alphabet; padding optional when reading, always written.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The field order, for messages about missing fields.
const RDATA_SHAPE: &str = "IPSECKEY RDATA is \"precedence gateway-type algorithm gateway \
                           public-key\" (RFC 4025 §3.1)";

/// TTLs above this are treated as zero by resolvers (RFC 2181 §8).
const MAX_TTL: u32 = 0x7fff_ffff;

fn invalid(msg: impl Into<String>) -> PresentationError {
    PresentationError::Invalid(msg.into())
}

/// Shortens a long value for an error message.
fn shown(value: &str) -> String {
    const MAX: usize = 48;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", value.get(..cut).unwrap_or(value)),
        None => format!("{value:?}"),
    }
}

/// Digits only: `u8::from_str` would also take a leading `+`.
fn all_digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal field of 0..=255, digits only (no sign, no spaces).
fn parse_u8(field: &str, value: Option<&str>) -> Result<u8, PresentationError> {
    let value = value.ok_or_else(|| invalid(format!("missing {field}: {RDATA_SHAPE}")))?;
    let n = all_digits(value)
        .then(|| value.parse::<u8>().ok())
        .flatten();
    n.ok_or_else(|| {
        invalid(format!(
            "{field} {} is not a number from 0 to 255",
            shown(value)
        ))
    })
}

fn parse_gateway(gateway_type: u8, value: &str) -> Result<Gateway, PresentationError> {
    let what = gateway_type_name(gateway_type);
    let mismatch = |expected: &str| {
        invalid(format!(
            "gateway type {gateway_type} ({what}) but gateway {} is not {expected}",
            shown(value)
        ))
    };
    match gateway_type {
        0 if value == "." => Ok(Gateway::None),
        0 => Err(invalid(format!(
            "gateway type 0 (none) needs the gateway written \".\", not {}",
            shown(value)
        ))),
        1 => value
            .parse::<Ipv4Addr>()
            .map(Gateway::Ipv4)
            .map_err(|_| mismatch("an IPv4 address")),
        2 => value
            .parse::<Ipv6Addr>()
            .map(Gateway::Ipv6)
            .map_err(|_| mismatch("an IPv6 address")),
        3 => DomainName::from_ascii(value)
            .map(Gateway::Name)
            .map_err(|e| invalid(format!("gateway type 3 (domain name) but gateway: {e}"))),
        other => Err(invalid(format!(
            "gateway type {other} is not defined; RFC 4025 §2.3 knows 0 (none), 1 (IPv4), \
             2 (IPv6) and 3 (domain name)"
        ))),
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, PresentationError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks(2) {
        let &[hi, lo] = pair else {
            return Err(invalid(format!(
                "generic RDATA hex has an odd number of digits ({})",
                bytes.len()
            )));
        };
        match (nibble(hi), nibble(lo)) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => {
                return Err(invalid(format!(
                    "generic RDATA hex {} holds a character that is not a hex digit",
                    shown(hex)
                )));
            }
        }
    }
    Ok(out)
}

/// RFC 3597 §5: `\# <length> <hex>…`, the hex possibly split by whitespace.
fn parse_generic(fields: &[&str]) -> Result<Ipseckey, PresentationError> {
    let (len, hex) = fields.split_first().ok_or_else(|| {
        invalid("generic RDATA \\# needs a length: \\# <octets> <hex> (RFC 3597 §5)")
    })?;
    let declared = all_digits(len).then(|| len.parse::<u16>().ok()).flatten();
    let declared = declared.ok_or_else(|| {
        invalid(format!(
            "generic RDATA length {} is not a number from 0 to 65535",
            shown(len)
        ))
    })?;
    let rdata = decode_hex(&hex.concat())?;
    if rdata.len() != usize::from(declared) {
        return Err(invalid(format!(
            "generic RDATA length says {declared} octets but the hex holds {}",
            rdata.len()
        )));
    }
    Ok(Ipseckey::parse_wire(&rdata)?)
}

impl Ipseckey {
    /// Parses the RDATA part of presentation form: `10 0 4 . KEY`, possibly in
    /// parentheses across lines with `;` comments, or RFC 3597 `\# len hex`.
    ///
    /// The base64 key may be split by whitespace. It may be absent (RFC 4025
    /// §2.6), which is how algorithm 0 is written.
    pub fn parse_presentation(text: &str) -> Result<Self, PresentationError> {
        Self::from_fields(&tokenize(text)?)
    }

    fn from_fields(fields: &[&str]) -> Result<Self, PresentationError> {
        if let Some((&r"\#", rest)) = fields.split_first() {
            return parse_generic(rest);
        }
        let mut it = fields.iter().copied();
        let precedence = parse_u8("precedence", it.next())?;
        let gateway_type = parse_u8("gateway type", it.next())?;
        let algorithm = Algorithm(parse_u8("algorithm", it.next())?);
        let gateway_text = it
            .next()
            .ok_or_else(|| invalid(format!("missing gateway: {RDATA_SHAPE}")))?;
        let gateway = parse_gateway(gateway_type, gateway_text)?;
        let key_text: String = it.collect();
        let public_key = BASE64.decode(key_text.as_bytes()).map_err(|e| {
            invalid(format!(
                "public key {} is not valid base64: {e}",
                shown(&key_text)
            ))
        })?;
        Ok(Self {
            precedence,
            gateway,
            algorithm,
            public_key,
        })
    }

    /// The RFC 3597 generic form of this RDATA, `\# 37 0a0004…`, for tools that do
    /// not know type 45 (written with type `TYPE45`).
    pub fn generic(&self) -> GenericRdata<'_> {
        GenericRdata(self)
    }
}

/// Displays the one-line presentation form, `10 0 4 . BASE64`.
impl fmt::Display for Ipseckey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            self.precedence,
            self.gateway_type(),
            self.algorithm.0
        )?;
        match &self.gateway {
            Gateway::None => f.write_str(".")?,
            Gateway::Ipv4(addr) => write!(f, "{addr}")?,
            Gateway::Ipv6(addr) => write!(f, "{addr}")?,
            Gateway::Name(name) => write!(f, "{name}")?,
        }
        if !self.public_key.is_empty() {
            write!(f, " {}", BASE64.encode(&self.public_key))?;
        }
        Ok(())
    }
}

/// An [`Ipseckey`] displayed in the RFC 3597 generic form `\# <len> <hex>`
/// (from [`Ipseckey::generic`]).
#[derive(Clone, Copy, Debug)]
pub struct GenericRdata<'a>(&'a Ipseckey);

impl fmt::Display for GenericRdata<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.0.to_wire();
        write!(f, "\\# {}", wire.len())?;
        if !wire.is_empty() {
            f.write_str(" ")?;
            for b in wire {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// A TTL in seconds, or in BIND's units (`1h30m`, `2d`, `1w`).
fn parse_ttl(text: &str) -> Result<u32, PresentationError> {
    let bad = || {
        invalid(format!(
            "TTL {} is not a number of seconds (or BIND units such as 1h30m)",
            shown(text)
        ))
    };
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for b in text.bytes() {
        if b.is_ascii_digit() {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')));
            number = Some(n.filter(|&n| n <= u64::from(u32::MAX)).ok_or_else(bad)?);
            continue;
        }
        let unit: u64 = match b.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            b'w' => 604_800,
            _ => return Err(bad()),
        };
        total = total.saturating_add(number.take().ok_or_else(bad)? * unit);
    }
    total = total.saturating_add(number.unwrap_or(0));
    if text.is_empty() {
        return Err(bad());
    }
    u32::try_from(total)
        .ok()
        .filter(|&t| t <= MAX_TTL)
        .ok_or_else(|| {
            invalid(format!(
                "TTL {} is above {MAX_TTL} seconds (RFC 2181 §8)",
                shown(text)
            ))
        })
}

/// Class mnemonics other than IN that a zone line might carry.
fn is_other_class(field: &str) -> bool {
    ["CH", "CHAOS", "HS", "HESIOD", "NONE", "ANY"]
        .iter()
        .any(|c| field.eq_ignore_ascii_case(c))
        || (field
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("CLASS"))
            && !field.eq_ignore_ascii_case("CLASS1"))
}

impl Record {
    /// Parses one zone-file record `owner [ttl] [IN] IPSECKEY rdata` (TTL and class in
    /// either order, as BIND allows; a missing TTL is an error, since there is no `$TTL` here).
    ///
    /// The type may also be written `TYPE45` (RFC 3597 §5), and the RDATA in the
    /// generic `\#` form. A relative owner is taken as absolute. A TTL may use
    /// BIND's units (`1h30m`); above 2147483647 it is refused (RFC 2181 §8).
    pub fn parse_presentation(text: &str) -> Result<Self, PresentationError> {
        let fields = tokenize(text)?;
        let (&owner_text, rest) = fields
            .split_first()
            .ok_or_else(|| invalid("empty record: expected \"owner ttl IN IPSECKEY rdata\""))?;
        if owner_text == "@" {
            return Err(invalid(
                "owner \"@\" needs an $ORIGIN, which a single record does not have; \
                 write the full name",
            ));
        }
        let owner =
            DomainName::from_ascii(owner_text).map_err(|e| invalid(format!("owner: {e}")))?;
        let mut ttl = None;
        let mut class_seen = false;
        let mut rest = rest.iter();
        loop {
            let Some(&field) = rest.next() else {
                return Err(invalid(format!(
                    "missing record type: expected IPSECKEY (or TYPE{RR_TYPE}) after the owner{}",
                    if ttl.is_none() {
                        ", TTL and class"
                    } else {
                        " and TTL"
                    }
                )));
            };
            if field.eq_ignore_ascii_case("IPSECKEY") || field.eq_ignore_ascii_case("TYPE45") {
                break;
            }
            if !class_seen
                && (field.eq_ignore_ascii_case("IN") || field.eq_ignore_ascii_case("CLASS1"))
            {
                class_seen = true;
            } else if is_other_class(field) {
                return Err(invalid(format!(
                    "class {} is not supported: IPSECKEY records here are class IN",
                    shown(field)
                )));
            } else if ttl.is_none() && field.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = Some(parse_ttl(field)?);
            } else {
                return Err(invalid(format!(
                    "record type {} is not IPSECKEY (type {RR_TYPE})",
                    shown(field)
                )));
            }
        }
        let ttl = ttl.ok_or_else(|| {
            let hint = if parse_ttl(owner_text).is_ok() {
                format!(" (the first field, {owner_text:?}, was taken as the owner name)")
            } else {
                String::new()
            };
            invalid(format!(
                "missing TTL: give it after the owner, e.g. \"{owner} 3600 IN IPSECKEY …\"; \
                 there is no $TTL default here{hint}"
            ))
        })?;
        let rdata: Vec<&str> = rest.copied().collect();
        let rdata = Ipseckey::from_fields(&rdata)?;
        Ok(Self { owner, ttl, rdata })
    }
}

/// Displays `owner ttl IN IPSECKEY rdata`.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} IN IPSECKEY {}", self.owner, self.ttl, self.rdata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Ipseckey::parse_presentation(text).unwrap_err().to_string()
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("1W2d"), Ok(777_600));
        assert_eq!(parse_ttl("1h5"), Ok(3605));
        assert_eq!(parse_ttl("2147483647"), Ok(MAX_TTL));
        for bad in ["", "h", "1x", "2147483648", "99999999999999999999", "1hh"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn field_errors_name_field_and_value() {
        assert_eq!(
            err("300 0 4 . AA=="),
            "precedence \"300\" is not a number from 0 to 255"
        );
        assert_eq!(
            err("+1 0 4 . AA=="),
            "precedence \"+1\" is not a number from 0 to 255"
        );
        assert!(err("10 7 4 . AA==").contains("gateway type 7 is not defined"));
        assert_eq!(
            err("10 1 2 2001:db8::1 AA=="),
            "gateway type 1 (IPv4) but gateway \"2001:db8::1\" is not an IPv4 address"
        );
        assert_eq!(
            err("10 2 2 192.0.2.1 AA=="),
            "gateway type 2 (IPv6) but gateway \"192.0.2.1\" is not an IPv6 address"
        );
        assert!(err("10 0 2 192.0.2.1 AA==").contains("gateway type 0 (none)"));
        assert!(err("10 3 2 a..b AA==").contains("gateway type 3 (domain name)"));
        assert!(err("10 0 4 . AA*=").contains("public key \"AA*=\" is not valid base64"));
        assert!(err("10 0").starts_with("missing algorithm"));
        assert!(err("").starts_with("missing precedence"));
    }

    #[test]
    fn generic_errors() {
        assert!(err(r"\# 4 0a0000").contains("says 4 octets but the hex holds 3"));
        assert!(err(r"\# 3 0a000").contains("odd number"));
        assert!(err(r"\# 3 0a00zz").contains("not a hex digit"));
        assert!(err(r"\# x 0a0000").contains("length \"x\""));
        assert!(err(r"\#").contains("needs a length"));
        assert_eq!(
            err(r"\# 2 0a00"),
            "generic RDATA (\\# form) is not a valid IPSECKEY: IPSECKEY RDATA truncated: need 3 bytes, have 2"
        );
    }

    #[test]
    fn record_errors() {
        let rerr = |t: &str| Record::parse_presentation(t).unwrap_err().to_string();
        assert!(rerr("host. IN IPSECKEY 10 0 4 . AA==").starts_with("missing TTL"));
        assert!(rerr("3600 IN IPSECKEY 10 0 4 . AA==").contains("taken as the owner"));
        assert!(rerr("host. 60 CH IPSECKEY 10 0 4 . AA==").contains("class \"CH\""));
        assert!(rerr("host. 60 IN A 192.0.2.1").contains("record type \"A\" is not IPSECKEY"));
        assert!(rerr("@ 60 IN IPSECKEY 10 0 4 . AA==").contains("$ORIGIN"));
        assert!(rerr("host. 60 IN").starts_with("missing record type"));
        assert!(rerr("").starts_with("empty record"));
    }
}

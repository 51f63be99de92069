//! Zone-file tokens for one record (RFC 1035 §5.1): whitespace-separated fields,
//! `;` comments to the end of the line, `( … )` letting a record run over several
//! lines, and `\` escaping the next character.
//!
//! Only what a single IPSECKEY record needs: no `$ORIGIN`/`$TTL` directives, and
//! quoted strings are refused (no IPSECKEY field is a character-string).

use super::PresentationError;

fn invalid(msg: impl Into<String>) -> PresentationError {
    PresentationError::Invalid(msg.into())
}

/// Splits one record's text into fields. Escapes stay in the field text (`\.`
/// is still two characters) for the field's own parser to interpret.
pub(super) fn tokenize(input: &str) -> Result<Vec<&str>, PresentationError> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    // A newline outside parentheses after some field ends the record.
    let mut record_ended = false;
    let mut line = 1usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\r' => i += 1,
            b'\n' => {
                if depth == 0 && !tokens.is_empty() {
                    record_ended = true;
                }
                line += 1;
                i += 1;
            }
            b';' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'"' => {
                return Err(invalid(format!(
                    "line {line}: quoted text is not part of any IPSECKEY field"
                )));
            }
            b')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| invalid(format!("line {line}: ')' without a matching '('")))?;
                i += 1;
            }
            _ => {
                if record_ended {
                    return Err(invalid(format!(
                        "line {line}: the record continues on a new line outside parentheses; \
                         wrap multi-line RDATA in ( … )"
                    )));
                }
                if b == b'(' {
                    depth += 1;
                    i += 1;
                    continue;
                }
                let start = i;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                        // The escaped character never ends the field.
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                let end = i.min(bytes.len());
                // Fields end at ASCII bytes or at the end, so this is a char boundary.
                let token = input
                    .get(start..end)
                    .ok_or_else(|| invalid(format!("line {line}: broken escape sequence")))?;
                tokens.push(token);
            }
        }
    }
    if depth > 0 {
        return Err(invalid("'(' without a closing ')'"));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line() {
        assert_eq!(
            tokenize("10 0 4 . AAAA").unwrap(),
            ["10", "0", "4", ".", "AAAA"]
        );
        assert_eq!(tokenize("  \t10\t0  ").unwrap(), ["10", "0"]);
        assert!(tokenize("").unwrap().is_empty());
    }

    #[test]
    fn parentheses_and_comments() {
        let text = "owner. 7200 IN IPSECKEY ( 10 1 2 ; precedence, IPv4, RSA\n\
                    \t192.0.2.38 ; gateway\n\
                    \tAQNR U3mG ) ; trailing\n";
        assert_eq!(
            tokenize(text).unwrap(),
            [
                "owner.",
                "7200",
                "IN",
                "IPSECKEY",
                "10",
                "1",
                "2",
                "192.0.2.38",
                "AQNR",
                "U3mG"
            ]
        );
        assert_eq!(tokenize("(a)(b)").unwrap(), ["a", "b"]);
        assert_eq!(tokenize("a(b c)d").unwrap(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn escapes_stay_in_the_field() {
        assert_eq!(tokenize(r"a\ b\;c\(d e").unwrap(), [r"a\ b\;c\(d", "e"]);
        assert_eq!(tokenize(r"\# 3 0a00").unwrap(), [r"\#", "3", "0a00"]);
        assert_eq!(tokenize("x\\").unwrap(), ["x\\"]);
        assert_eq!(tokenize("x\\é y").unwrap(), ["x\\é", "y"]);
    }

    #[test]
    fn errors() {
        for bad in ["a (b", "a ) b", "a\nb", "a \"q\"", "(a\n) \n b"] {
            assert!(tokenize(bad).is_err(), "{bad:?} accepted");
        }
        // A trailing newline or comment line does not start another record.
        assert!(tokenize("a b\n; note\n\n").is_ok());
        assert!(tokenize("\n\na b").is_ok());
    }
}

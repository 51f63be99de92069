//! TSIG key files (RFC 8945) as BIND's `tsig-keygen` writes them:
//!
//! ```text
//! key "oemesh-update" {
//!         algorithm hmac-sha256;
//!         secret "2Yb3...=";
//! };
//! ```
//!
//! The parser follows named.conf's lexical rules: `#`, `//` and `/* */`
//! comments, free whitespace, quoted or bare words. Other top-level statements
//! are skipped, so a named.conf fragment with one `key` clause also loads. Only
//! `hmac-sha256` is accepted: it is what `tsig-keygen` makes by default and what
//! every server implements.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use zeroize::Zeroizing;

/// The clock skew a TSIG signature tolerates, in seconds (RFC 8945 §10 recommends 300).
pub const FUDGE: u16 = 300;

/// A TSIG key: its name, as the server knows it, and the shared secret.
#[derive(Clone)]
pub struct TsigKey {
    /// The key name (absolute, e.g. `oemesh-update.`).
    pub name: Name,
    /// The HMAC-SHA256 secret.
    secret: Zeroizing<Vec<u8>>,
}

/// Why a TSIG key file is not usable. Messages name the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsigFileError {
    /// The file could not be read.
    #[error("cannot read TSIG key file {path}: {source}")]
    Unreadable {
        /// the file
        path: PathBuf,
        /// the OS error
        source: io::Error,
    },
    /// The text is not a `key "name" { ... };` clause.
    #[error(
        "TSIG key file {path}, line {line}: {what}; expected what tsig-keygen writes: \
             key \"NAME\" {{ algorithm hmac-sha256; secret \"BASE64\"; }};"
    )]
    Syntax {
        /// the file
        path: PathBuf,
        /// 1-based line of the problem
        line: usize,
        /// what is wrong
        what: String,
    },
    /// No `key` clause at all.
    #[error(
        "TSIG key file {0} holds no 'key' clause; make one with 'tsig-keygen -a hmac-sha256 NAME > FILE'"
    )]
    NoKey(PathBuf),
    /// More than one `key` clause: which one to use is ambiguous.
    #[error(
        "TSIG key file {path} holds {count} keys ({names}); put the one to use in a file of its own"
    )]
    SeveralKeys {
        /// the file
        path: PathBuf,
        /// how many
        count: usize,
        /// their names, comma-separated
        names: String,
    },
    /// A key of another algorithm.
    #[error(
        "TSIG key '{name}' in {path} uses {algorithm}; dnskeys signs with hmac-sha256 only: \
             make a key with 'tsig-keygen -a hmac-sha256 {name}' and give the server the same \
             name and secret"
    )]
    Algorithm {
        /// the file
        path: PathBuf,
        /// the key name
        name: String,
        /// the algorithm found
        algorithm: String,
    },
    /// The key clause lacks a field or has a bad one.
    #[error("TSIG key '{name}' in {path}: {what}")]
    Key {
        /// the file
        path: PathBuf,
        /// the key name
        name: String,
        /// what is wrong
        what: String,
    },
}

impl TsigKey {
    /// A key from its parts (the secret is copied into zeroizing storage).
    pub fn new(name: Name, secret: &[u8]) -> Self {
        Self {
            name,
            secret: Zeroizing::new(secret.to_vec()),
        }
    }

    /// The signer hickory uses to sign requests and verify responses.
    ///
    /// Note: hickory's `TSigner` keeps its own copy of the secret, which it does
    /// not zeroize; it lives only for the duration of one command.
    pub fn signer(&self) -> TSigner {
        // hmac-sha256 is always supported by hickory's dnssec-ring backend, so
        // this cannot fail; TSigner::new only refuses unsupported algorithms.
        match TSigner::new(
            self.secret.to_vec(),
            TsigAlgorithm::HmacSha256,
            self.name.clone(),
            FUDGE,
        ) {
            Ok(s) => s,
            Err(e) => unreachable!("hmac-sha256 is supported: {e}"),
        }
    }
}

impl TsigKey {
    /// The key in the form `tsig-keygen` writes (for named.conf and `nsupdate -k`).
    pub fn to_keyfile(&self) -> Zeroizing<String> {
        let name = self.name.to_ascii();
        let name = name
            .strip_suffix('.')
            .unwrap_or(&name)
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let secret =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.secret));
        Zeroizing::new(format!(
            "key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            secret.as_str()
        ))
    }

    /// True when both keys have the same name and secret (the secret compared in constant time).
    pub fn same_as(&self, other: &TsigKey) -> bool {
        use subtle::ConstantTimeEq as _;
        self.name == other.name && bool::from(self.secret.as_slice().ct_eq(other.secret.as_slice()))
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Reads and parses a TSIG key file.
pub fn load(path: &Path) -> Result<TsigKey, TsigFileError> {
    let text =
        Zeroizing::new(
            fs::read_to_string(path).map_err(|source| TsigFileError::Unreadable {
                path: path.to_owned(),
                source,
            })?,
        );
    parse(&text, path)
}

/// Parses the text of a TSIG key file; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<TsigKey, TsigFileError> {
    let tokens = tokenize(text).map_err(|(line, what)| TsigFileError::Syntax {
        path: path.to_owned(),
        line,
        what,
    })?;
    let syntax = |line: usize, what: String| TsigFileError::Syntax {
        path: path.to_owned(),
        line,
        what,
    };
    // (name, algorithm, secret) of each `key` clause.
    type Clause = (String, Option<String>, Option<String>);
    let mut keys: Vec<Clause> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (tok, line) = (&tokens[i].text, tokens[i].line);
        if tokens[i].is_word("key") {
            let name = match tokens.get(i + 1) {
                Some(t) if t.quoted || !t.is_punct() => t.text.clone(),
                _ => {
                    return Err(syntax(
                        line,
                        "'key' must be followed by the key's name".into(),
                    ));
                }
            };
            if !tokens.get(i + 2).is_some_and(|t| t.is_sym("{")) {
                return Err(syntax(line, format!("expected '{{' after key \"{name}\"")));
            }
            i += 3;
            let (mut algorithm, mut secret) = (None, None);
            loop {
                let Some(t) = tokens.get(i) else {
                    return Err(syntax(
                        line,
                        format!("key \"{name}\" is not closed with '}};'"),
                    ));
                };
                if t.is_sym("}") {
                    if !tokens.get(i + 1).is_some_and(|t| t.is_sym(";")) {
                        return Err(syntax(t.line, "expected ';' after '}'".into()));
                    }
                    i += 2;
                    break;
                }
                let field = t.text.to_ascii_lowercase();
                let value = match tokens.get(i + 1) {
                    Some(v) if v.quoted || !v.is_punct() => v,
                    _ => return Err(syntax(t.line, format!("'{field}' needs a value"))),
                };
                if !tokens.get(i + 2).is_some_and(|t| t.is_sym(";")) {
                    return Err(syntax(
                        value.line,
                        format!("expected ';' after {field} value"),
                    ));
                }
                match field.as_str() {
                    "algorithm" => algorithm = Some(value.text.clone()),
                    "secret" => secret = Some(value.text.clone()),
                    other => {
                        return Err(syntax(
                            t.line,
                            format!("unknown field '{other}' in key \"{name}\""),
                        ));
                    }
                }
                i += 3;
            }
            keys.push((name, algorithm, secret));
        } else if tok == ";" {
            i += 1;
        } else {
            // Some other statement (options, server, ...): skip to its ';' at depth 0.
            let mut depth = 0usize;
            while let Some(t) = tokens.get(i) {
                i += 1;
                if t.is_sym("{") {
                    depth += 1;
                } else if t.is_sym("}") {
                    depth = depth.saturating_sub(1);
                } else if t.is_sym(";") && depth == 0 {
                    break;
                }
            }
        }
    }
    let (name, algorithm, secret) = match keys.len() {
        0 => return Err(TsigFileError::NoKey(path.to_owned())),
        1 => keys.remove(0),
        n => {
            let names = keys
                .iter()
                .map(|k| k.0.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TsigFileError::SeveralKeys {
                path: path.to_owned(),
                count: n,
                names,
            });
        }
    };
    let key_err = |what: String| TsigFileError::Key {
        path: path.to_owned(),
        name: name.clone(),
        what,
    };
    let algorithm = algorithm.ok_or_else(|| key_err("no 'algorithm' line".into()))?;
    if !algorithm.eq_ignore_ascii_case("hmac-sha256") {
        return Err(TsigFileError::Algorithm {
            path: path.to_owned(),
            name,
            algorithm,
        });
    }
    let secret = secret.ok_or_else(|| key_err("no 'secret' line".into()))?;
    let compact: Zeroizing<String> = Zeroizing::new(
        secret
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| key_err(format!("the secret is not valid base64 ({e})")))?,
    );
    if bytes.is_empty() {
        return Err(key_err("the secret is empty".into()));
    }
    let dns_name = Name::from_ascii(&name)
        .map_err(|e| key_err(format!("the name is not a DNS name ({e})")))?;
    let mut dns_name = dns_name;
    dns_name.set_fqdn(true);
    Ok(TsigKey {
        name: dns_name,
        secret: Zeroizing::new(bytes.to_vec()),
    })
}

#[derive(Debug)]
struct Token {
    text: String,
    quoted: bool,
    line: usize,
}

impl Token {
    fn is_sym(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
    fn is_punct(&self) -> bool {
        !self.quoted && matches!(self.text.as_str(), "{" | "}" | ";")
    }
    fn is_word(&self, w: &str) -> bool {
        !self.quoted && self.text.eq_ignore_ascii_case(w)
    }
}

/// named.conf lexing: words, "quoted strings", `{` `}` `;`, and three comment styles.
fn tokenize(text: &str) -> Result<Vec<Token>, (usize, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let start = line;
                i += 2;
                loop {
                    match chars.get(i) {
                        None => return Err((start, "a '/*' comment is never closed".into())),
                        Some('*') if chars.get(i + 1) == Some(&'/') => {
                            i += 2;
                            break;
                        }
                        Some('\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            '{' | '}' | ';' => {
                out.push(Token {
                    text: c.to_string(),
                    quoted: false,
                    line,
                });
                i += 1;
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err((start, "a quoted string is never closed".into())),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if i + 1 < chars.len() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token {
                    text: s,
                    quoted: true,
                    line: start,
                });
            }
            _ => {
                let mut s = String::new();
                while let Some(&ch) = chars.get(i) {
                    if ch.is_whitespace() || matches!(ch, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    s.push(ch);
                    i += 1;
                }
                out.push(Token {
                    text: s,
                    quoted: false,
                    line,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<TsigKey, TsigFileError> {
        parse(text, Path::new("k.conf"))
    }

    const KEYGEN: &str = "key \"oemesh-update\" {\n\talgorithm hmac-sha256;\n\t\
                          secret \"S2V5U2VjcmV0S2V5U2VjcmV0S2V5U2VjcmV0S2V5U2U=\";\n};\n";

    #[test]
    fn tsig_keygen_output() {
        let k = p(KEYGEN).unwrap();
        assert_eq!(k.name.to_ascii(), "oemesh-update.");
        assert_eq!(&k.secret[..9], b"KeySecret");
        assert!(!format!("{k:?}").contains("S2V5"));
        assert_eq!(k.to_keyfile().as_str(), KEYGEN);
        assert!(p(&k.to_keyfile()).unwrap().same_as(&k));
    }

    #[test]
    fn comments_whitespace_and_other_statements() {
        let text = "# made by tsig-keygen\n// another comment\n/* block\n comment */\n\
                    options { directory \"/x\"; };\n\
                    key   upd.example.   {   # bare name\n  ALGORITHM HMAC-SHA256 ;\n\
                    secret \"S2V5U2Vj cmV0\" ; /* split */ } ;";
        let k = p(text).unwrap();
        assert_eq!(k.name.to_ascii(), "upd.example.");
        assert_eq!(&k.secret[..], b"KeySecret");
    }

    #[test]
    fn other_algorithms_are_refused() {
        let e = p(&KEYGEN.replace("hmac-sha256", "hmac-md5")).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("hmac-md5") && m.contains("'oemesh-update'") && m.contains("tsig-keygen"),
            "{m}"
        );
        let e = p(&KEYGEN.replace("hmac-sha256", "hmac-sha512")).unwrap_err();
        assert!(matches!(e, TsigFileError::Algorithm { .. }));
    }

    #[test]
    fn malformed() {
        let cases = [
            ("", "no 'key' clause"),
            ("key \"a\" { algorithm hmac-sha256; };", "no 'secret'"),
            ("key \"a\" { secret \"AAAA\"; };", "no 'algorithm'"),
            (
                "key \"a\" { algorithm hmac-sha256; secret \"!!\"; };",
                "not valid base64",
            ),
            (
                "key \"a\" { algorithm hmac-sha256; secret \"AAAA\" };",
                "expected ';'",
            ),
            (
                "key \"a\" { algorithm hmac-sha256; secret \"AAAA\";",
                "not closed",
            ),
            (
                "key \"a\" { algorithm hmac-sha256; secret \"AAAA; };",
                "never closed",
            ),
            ("key \"a\" { colour blue; };", "unknown field 'colour'"),
            ("/* x", "never closed"),
            (
                &format!("{KEYGEN}{}", KEYGEN.replace("oemesh-update", "other")),
                "2 keys (oemesh-update, other)",
            ),
        ];
        for (text, want) in cases {
            let m = p(text).unwrap_err().to_string();
            assert!(m.contains(want), "{text:?}: {m}");
            assert!(m.contains("k.conf"), "{m}");
        }
    }
}

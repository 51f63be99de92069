//! A host's long-term Ed25519 key in PKCS#8 PEM (RFC 5208 / RFC 5958, RFC 8410).
//!
//! This is the key whose public half is published in an IPSECKEY record
//! (algorithm 4, the 32-byte RFC 8080 §3 form, RFC 9373) and that signs IKE_AUTH
//! (RFC 8420). The file format is the one `openssl genpkey -algorithm ed25519`
//! and strongSwan's `pki --gen --type ed25519 --outform pem` write:
//!
//! ```text
//! -----BEGIN PRIVATE KEY-----
//! MC4CAQAwBQYDK2VwBCIEI...
//! -----END PRIVATE KEY-----
//! ```
//!
//! Sans-IO like the rest of the crate: no file access and no randomness of its
//! own. [`HostKey::from_seed`] takes the 32 random bytes from the caller;
//! reading files, checking their permissions and naming them in errors is the
//! job of the caller (`dnskeys::keyfile`).
//!
//! The secret is zeroized on drop (ed25519-dalek's `ZeroizeOnDrop`) and never
//! shown by `Debug`.

use std::fmt;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::{self, LineEnding};
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, KeypairBytes, ObjectIdentifier, PrivateKeyInfo,
};
use zeroize::Zeroizing;

/// The PEM label of an unencrypted PKCS#8 private key (RFC 7468 §10).
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// id-Ed25519, RFC 8410 §3.
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A host's Ed25519 private key. The secret is zeroized on drop and redacted in `Debug`.
#[derive(Clone)]
pub struct HostKey {
    key: SigningKey,
}

/// Why a key file's text is not a usable Ed25519 private key. Messages say what
/// was found and, where there is one, what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// No `-----BEGIN ...-----` block, or one whose base64 or framing is broken.
    #[error("not a PEM file ({0}); expected a '-----BEGIN PRIVATE KEY-----' block")]
    NotPem(String),
    /// A password-protected PKCS#8 key (`ENCRYPTED PRIVATE KEY`).
    #[error(
        "the key is encrypted (ENCRYPTED PRIVATE KEY); store it unencrypted, e.g. \
         'openssl pkey -in FILE -out PLAIN'"
    )]
    Encrypted,
    /// A PEM block of another kind (a public key, a certificate, a legacy
    /// `RSA PRIVATE KEY` / `EC PRIVATE KEY` block).
    #[error("the PEM block is '{label}', not 'PRIVATE KEY'{hint}")]
    UnexpectedLabel {
        /// the label found after `-----BEGIN `
        label: String,
        /// extra advice for known labels (starts with "; " or is empty)
        hint: &'static str,
    },
    /// The block's content is not PKCS#8 DER.
    #[error("not a PKCS#8 private key: {0}")]
    NotPkcs8(String),
    /// A well-formed PKCS#8 key of another algorithm.
    #[error(
        "the key is {algorithm} (OID {oid}), but oemesh host keys must be Ed25519; \
         make one with 'dnskeys keygen' or 'openssl genpkey -algorithm ed25519'"
    )]
    WrongAlgorithm {
        /// human name of the algorithm, e.g. "RSA" or "ECDSA P-256"
        algorithm: String,
        /// the algorithm OID in dotted form
        oid: String,
    },
    /// An Ed25519 key whose private key octets are malformed, or whose
    /// embedded public key (PKCS#8 v2) does not belong to the private key.
    #[error("malformed Ed25519 private key: {0}")]
    Malformed(&'static str),
}

impl HostKey {
    /// A key from a 32-byte RFC 8032 secret seed. For a new key the caller
    /// draws the seed from a CSPRNG (the OS); this crate has no randomness.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Parses the PEM text of a key file. Text before and after the block
    /// (comments, `openssl pkey -text` output) is ignored.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, HostKeyError> {
        let start = text
            .find("-----BEGIN ")
            .ok_or_else(|| HostKeyError::NotPem("no '-----BEGIN' line".into()))?;
        let block = &text[start..];
        let label = block["-----BEGIN ".len()..]
            .split_once("-----")
            .map(|(label, _)| label)
            .filter(|label| !label.contains('\n'))
            .ok_or_else(|| HostKeyError::NotPem("broken '-----BEGIN' line".into()))?;
        if label != PKCS8_LABEL {
            return Err(label_error(label));
        }
        // Cut after the end line: text after the block is ignored, as before it.
        let end_marker = "-----END PRIVATE KEY-----";
        let block = match block.find(end_marker) {
            Some(i) => Zeroizing::new(format!("{}\n", &block[..i + end_marker.len()])),
            None => {
                return Err(HostKeyError::NotPem(
                    "no '-----END PRIVATE KEY-----' line".into(),
                ));
            }
        };
        let (_, der) =
            pem::decode_vec(block.as_bytes()).map_err(|e| HostKeyError::NotPem(e.to_string()))?;
        Self::from_pkcs8_der(Zeroizing::new(der).as_slice())
    }

    /// Parses PKCS#8 DER (v1 `PrivateKeyInfo` or v2 `OneAsymmetricKey`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, HostKeyError> {
        let info =
            PrivateKeyInfo::try_from(der).map_err(|e| HostKeyError::NotPkcs8(e.to_string()))?;
        if info.algorithm.oid != OID_ED25519 {
            return Err(HostKeyError::WrongAlgorithm {
                algorithm: algorithm_name(info.algorithm.oid, info.algorithm.parameters_oid().ok()),
                oid: info.algorithm.oid.to_string(),
            });
        }
        if info.algorithm.parameters.is_some() {
            // RFC 8410 §3: "the parameters MUST be absent".
            return Err(HostKeyError::Malformed(
                "algorithm parameters present (RFC 8410 §3)",
            ));
        }
        let key = SigningKey::from_pkcs8_der(der).map_err(|e| match e {
            ed25519_dalek::pkcs8::Error::KeyMalformed => {
                HostKeyError::Malformed("private key octets or public key do not match")
            }
            _ => HostKeyError::Malformed("private key is not a 32-byte OCTET STRING"),
        })?;
        Ok(Self { key })
    }

    /// PKCS#8 v1 DER, the form OpenSSL and strongSwan write (no embedded public key).
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let bytes = KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        match bytes.to_pkcs8_der() {
            Ok(doc) => Zeroizing::new(doc.as_bytes().to_vec()),
            // Encoding 48 fixed bytes cannot fail; an empty result would then be
            // refused by every reader rather than silently accepted.
            Err(_) => Zeroizing::new(Vec::new()),
        }
    }

    /// The PEM text of a key file, LF line endings, ending in a newline.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let der = self.to_pkcs8_der();
        Zeroizing::new(pem::encode_string(PKCS8_LABEL, LineEnding::LF, &der).unwrap_or_default())
    }

    /// The 32-byte public key, the RFC 8080 §3 form that IPSECKEY algorithm 4 carries.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing key, for IKE_AUTH signatures (RFC 8420).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// Shows only the public key.
impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pk = self.public_key();
        let hex: String = pk.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("HostKey")
            .field("public_key", &hex)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn label_error(label: &str) -> HostKeyError {
    let hint = match label {
        "ENCRYPTED PRIVATE KEY" => return HostKeyError::Encrypted,
        "RSA PRIVATE KEY" => "; that is an RSA key (PKCS#1), but oemesh host keys must be Ed25519",
        "EC PRIVATE KEY" => "; that is an ECDSA key (SEC 1), but oemesh host keys must be Ed25519",
        "DSA PRIVATE KEY" => "; that is a DSA key, but oemesh host keys must be Ed25519",
        "OPENSSH PRIVATE KEY" => {
            "; that is an OpenSSH key; convert it or make a new one with 'dnskeys keygen'"
        }
        "PUBLIC KEY" => "; that is a public key, the private key is needed",
        "CERTIFICATE" => "; that is a certificate, the private key is needed",
        _ => "",
    };
    HostKeyError::UnexpectedLabel {
        label: label.to_owned(),
        hint,
    }
}

/// Names the algorithms a PKCS#8 key file is likely to hold.
fn algorithm_name(oid: ObjectIdentifier, param: Option<ObjectIdentifier>) -> String {
    let curve = |p: Option<ObjectIdentifier>| match p.map(|p| p.to_string()).as_deref() {
        Some("1.2.840.10045.3.1.7") => "P-256".to_owned(),
        Some("1.3.132.0.34") => "P-384".to_owned(),
        Some("1.3.132.0.35") => "P-521".to_owned(),
        Some("1.3.132.0.10") => "secp256k1".to_owned(),
        Some(other) => format!("curve {other}"),
        None => "unknown curve".to_owned(),
    };
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_owned(),
        "1.2.840.10045.2.1" => format!("ECDSA {}", curve(param)),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        "1.3.101.110" => "X25519".to_owned(),
        "1.3.101.111" => "X448".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        _ => "an unknown algorithm".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8410 §10.3, the example private key.
    const RFC8410_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";

    /// RFC 8032 §7.1 test 1: this secret has this public key.
    fn test1_secret() -> [u8; 32] {
        hex_bytes("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .try_into()
            .unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc8032_test1_public_key() {
        let k = HostKey::from_seed(&test1_secret());
        assert_eq!(
            hex(&k.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn rfc8410_example_loads_and_round_trips() {
        let k = HostKey::from_pkcs8_pem(RFC8410_PEM).unwrap();
        // RFC 8410 §10.3 gives the secret; the PEM we write is the same bytes.
        assert_eq!(
            hex(&k.signing_key().to_bytes()),
            "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842"
        );
        assert_eq!(k.to_pkcs8_pem().as_str(), RFC8410_PEM);
        let again = HostKey::from_pkcs8_pem(&k.to_pkcs8_pem()).unwrap();
        assert_eq!(again.public_key(), k.public_key());
    }

    #[test]
    fn der_is_v1_48_bytes() {
        let k = HostKey::from_seed(&[7; 32]);
        let der = k.to_pkcs8_der();
        assert_eq!(der.len(), 48);
        assert_eq!(
            &der[..16],
            &hex_bytes("302e020100300506032b657004220420")[..]
        );
        assert_eq!(&der[16..], &[7; 32]);
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn surrounding_text_is_ignored() {
        let text = format!("# host key of alice\n\n{RFC8410_PEM}\nED25519 Private-Key:\n");
        HostKey::from_pkcs8_pem(&text).unwrap();
    }

    #[test]
    fn crlf_line_endings() {
        let text = RFC8410_PEM.replace('\n', "\r\n");
        HostKey::from_pkcs8_pem(&text).unwrap();
    }

    #[test]
    fn debug_redacts_secret() {
        let k = HostKey::from_seed(&test1_secret());
        let dbg = format!("{k:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains("d75a9801"));
        assert!(!dbg.contains("9d61b19d"));
    }

    #[test]
    fn not_pem() {
        assert!(matches!(
            HostKey::from_pkcs8_pem("hello"),
            Err(HostKeyError::NotPem(_))
        ));
        let broken = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            HostKey::from_pkcs8_pem(broken),
            Err(HostKeyError::NotPem(_))
        ));
    }

    #[test]
    fn other_labels_are_named() {
        let pubkey = "-----BEGIN PUBLIC KEY-----\n\
            MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
            -----END PUBLIC KEY-----\n";
        let e = HostKey::from_pkcs8_pem(pubkey).unwrap_err();
        assert!(e.to_string().contains("'PUBLIC KEY'"), "{e}");
        assert!(e.to_string().contains("private key is needed"), "{e}");
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            HostKey::from_pkcs8_pem(enc).unwrap_err(),
            HostKeyError::Encrypted
        );
    }

    #[test]
    fn p256_key_is_named() {
        // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
        let p256 = "-----BEGIN PRIVATE KEY-----\n\
            MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2WeuWdDR5ePpgVRo\n\
            ftUZYe1qz7IwClgSlIF+1jE+kMmhRANCAATRufMznS1/Kj3vRdBBRggPMiI2U4C5\n\
            /3ZEUCDM1AV85zjNN6Y3CjBas5/NUvwPIebreb4j3Q0wosrxErDKS+5g\n\
            -----END PRIVATE KEY-----\n";
        match HostKey::from_pkcs8_pem(p256).unwrap_err() {
            HostKeyError::WrongAlgorithm { algorithm, oid } => {
                assert_eq!(algorithm, "ECDSA P-256");
                assert_eq!(oid, "1.2.840.10045.2.1");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn ed448_key_is_named() {
        let ed448 = "-----BEGIN PRIVATE KEY-----\n\
            MEcCAQAwBQYDK2VxBDsEOSDBPRBW7I0P8wv6C3kWhgsyMUA7oaGW5GjJ8UcOgix6\n\
            fh18geqNvOR67vJNrPpf7T3PzLwn8RuI/w==\n\
            -----END PRIVATE KEY-----\n";
        let e = HostKey::from_pkcs8_pem(ed448).unwrap_err();
        assert!(
            e.to_string().contains("the key is Ed448 (OID 1.3.101.113)"),
            "{e}"
        );
    }

    #[test]
    fn v2_with_mismatched_public_key_is_refused() {
        // OneAsymmetricKey v2 with a [1] public key that belongs to another secret.
        let other = HostKey::from_seed(&[1; 32]).public_key();
        let mut der = hex_bytes("3051020101300506032b657004220420");
        der.extend_from_slice(&[7; 32]);
        der.extend_from_slice(&hex_bytes("812100"));
        der.extend_from_slice(&other);
        assert!(matches!(
            HostKey::from_pkcs8_der(&der),
            Err(HostKeyError::Malformed(_))
        ));
        // ... and is accepted when it matches.
        let mut der = hex_bytes("3051020101300506032b657004220420");
        der.extend_from_slice(&[7; 32]);
        der.extend_from_slice(&hex_bytes("812100"));
        der.extend_from_slice(&HostKey::from_seed(&[7; 32]).public_key());
        assert!(HostKey::from_pkcs8_der(&der).is_ok());
    }

    #[test]
    fn truncated_der() {
        let k = HostKey::from_seed(&[3; 32]);
        let der = k.to_pkcs8_der();
        for n in 0..der.len() {
            assert!(HostKey::from_pkcs8_der(&der[..n]).is_err());
        }
    }
}

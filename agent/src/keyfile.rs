//! The host key file: Ed25519 in PKCS#8 PEM (RFC 8410), as `openssl genpkey
//! -algorithm ed25519` and strongSwan's `pki --gen --type ed25519` write it.
//!
// TODO(integration): replace with `dnskeys::keyfile::load` (which checks file
// permissions too) and `oemesh_core::hostkey::HostKey` once the dnskeys branch
// has landed on main; this minimal loader only extracts the 32-byte seed.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::{Zeroize, Zeroizing};

/// The DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410 §7): SEQUENCE,
/// version 0, AlgorithmIdentifier id-Ed25519 (1.3.101.112), OCTET STRING
/// wrapping the 32-byte CurvePrivateKey OCTET STRING.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 private key seed; zeroized on drop, redacted in `Debug`.
pub struct HostKeySeed([u8; 32]);

impl HostKeySeed {
    /// The 32-byte seed (RFC 8032 §5.1.5 private key).
    pub fn seed(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for HostKeySeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for HostKeySeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostKeySeed(<redacted>)")
    }
}

/// Why a key file could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Unreadable.
    #[error("cannot read key file {path}: {error}")]
    Read {
        /// the file
        path: PathBuf,
        /// why
        error: std::io::Error,
    },
    /// Not a PEM `PRIVATE KEY` block with an Ed25519 key.
    #[error(
        "key file {path} is not an Ed25519 private key in PKCS#8 PEM: {why} (create one with `openssl genpkey -algorithm ed25519`)"
    )]
    Format {
        /// the file
        path: PathBuf,
        /// what is wrong
        why: &'static str,
    },
}

/// Loads the seed from `path`.
pub fn load(path: &Path) -> Result<HostKeySeed, KeyFileError> {
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|error| KeyFileError::Read {
                path: path.to_owned(),
                error,
            })?,
        );
    parse_pem(&text).map_err(|why| KeyFileError::Format {
        path: path.to_owned(),
        why,
    })
}

fn parse_pem(text: &str) -> Result<HostKeySeed, &'static str> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = text
        .find(BEGIN)
        .ok_or("no '-----BEGIN PRIVATE KEY-----' line")?
        + BEGIN.len();
    let len = text[start..]
        .find(END)
        .ok_or("no '-----END PRIVATE KEY-----' line")?;
    let b64: Zeroizing<String> =
        Zeroizing::new(text[start..start + len].split_whitespace().collect());
    let der = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| "the PEM body is not base64")?,
    );
    let seed = der
        .strip_prefix(&ED25519_PKCS8_PREFIX[..])
        .ok_or("not an Ed25519 key (RSA, ECDSA and Ed448 keys are not supported)")?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| "unexpected length for an Ed25519 key")?;
    Ok(HostKeySeed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8410 §10.3's example private key.
    const RFC8410: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

    #[test]
    fn loads_rfc8410_example() {
        let k = parse_pem(RFC8410).unwrap();
        assert_eq!(k.seed()[..4], [0xd4, 0xee, 0x72, 0xdb]);
        assert_eq!(format!("{k:?}"), "HostKeySeed(<redacted>)");
    }

    #[test]
    fn rejects_others() {
        assert!(parse_pem("").is_err());
        assert!(parse_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----").is_err());
        let rsa_ish = "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\n-----END PRIVATE KEY-----";
        assert!(parse_pem(rsa_ish).unwrap_err().contains("not an Ed25519"));
    }
}

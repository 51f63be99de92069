//! Host key files on disk: loading with errors that name the file, the
//! permission check, and writing new keys with mode 0600 from the start.
//!
//! The format itself (PKCS#8 PEM, Ed25519) is [`oemesh_core::hostkey`]; this
//! module adds the file system. The agent loads its key with [`load`] too.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oemesh_core::hostkey::{HostKey, HostKeyError};
use zeroize::Zeroizing;

/// Key files larger than this are not key files (an Ed25519 PEM is 119 bytes).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A key read from a file, with what the caller should warn about.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: HostKey,
    /// Problems that do not stop us (e.g. the file is readable by others).
    pub warnings: Vec<KeyFileWarning>,
}

/// Something wrong with a key file that is worth saying but not fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileWarning {
    /// Group or others may read the private key.
    #[error(
        "private key file {path} is readable by {who} (mode {mode:04o}); \
         restrict it with 'chmod 600 {path}'"
    )]
    ReadableByOthers {
        /// the file
        path: PathBuf,
        /// "its group", "everyone" or "its group and everyone"
        who: &'static str,
        /// the permission bits
        mode: u32,
    },
}

/// Why a key file could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file does not exist.
    #[error("key file {0} does not exist; create one with 'dnskeys keygen --out {0}'")]
    Missing(PathBuf),
    /// The file exists but could not be read (permissions, a directory, I/O).
    #[error("cannot read key file {path}: {source}")]
    Unreadable {
        /// the file
        path: PathBuf,
        /// the OS error
        source: io::Error,
    },
    /// The file is far too large to be a key.
    #[error("key file {0} is larger than 64 KiB; it is not a PEM private key")]
    TooLarge(PathBuf),
    /// The contents are not an Ed25519 PKCS#8 key; the inner error says what they are.
    #[error("key file {path}: {source}")]
    Invalid {
        /// the file
        path: PathBuf,
        /// what is wrong with the contents
        source: HostKeyError,
    },
    /// `keygen` would overwrite a file.
    #[error("{0} already exists; pass --force to overwrite it (the old key is then lost)")]
    Exists(PathBuf),
    /// Writing a new key failed.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// the file
        path: PathBuf,
        /// the OS error
        source: io::Error,
    },
}

/// Reads and parses a host key file, and checks that only its owner can read it.
pub fn load(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing(path.to_owned()));
        }
        Err(source) => {
            return Err(KeyFileError::Unreadable {
                path: path.to_owned(),
                source,
            });
        }
    };
    if meta.is_dir() {
        return Err(KeyFileError::Unreadable {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "it is a directory"),
        });
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge(path.to_owned()));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|source| KeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyFileError::Invalid {
        path: path.to_owned(),
        source: HostKeyError::NotPem("the file is binary, not text".into()),
    })?;
    let key = HostKey::from_pkcs8_pem(text).map_err(|source| KeyFileError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    let warnings = permission_warning(path, meta.permissions().mode())
        .into_iter()
        .collect();
    Ok(LoadedKey { key, warnings })
}

/// The warning for a private key file with these mode bits, if any.
pub fn permission_warning(path: &Path, mode: u32) -> Option<KeyFileWarning> {
    let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (false, false) => return None,
        (true, false) => "its group",
        (false, true) => "everyone",
        (true, true) => "its group and everyone",
    };
    Some(KeyFileWarning::ReadableByOthers {
        path: path.to_owned(),
        who,
        mode: mode & 0o7777,
    })
}

/// Writes `key` as PKCS#8 PEM to `path`, creating the file with mode 0600.
///
/// Without `force` an existing file is an error. With `force` the key is written
/// to a new 0600 file beside `path` and renamed over it, so the old file is
/// replaced whole and its mode never applies to the new key.
pub fn write_new(path: &Path, key: &HostKey, force: bool) -> Result<(), KeyFileError> {
    let pem = key.to_pkcs8_pem();
    let write_err = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    if !force {
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(KeyFileError::Exists(path.to_owned()));
            }
            Err(e) => return Err(write_err(e)),
        };
        return f
            .write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(write_err);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for attempt in 0..100u32 {
        let tmp = dir.join(format!(".{name}.dnskeys-{}-{attempt}", std::process::id()));
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write_err(e)),
        };
        let written = f
            .write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        return Ok(());
    }
    Err(write_err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.pem");
        let key = HostKey::from_seed(&[9; 32]);
        write_new(&path, &key, false).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.key.public_key(), key.public_key());
        assert!(loaded.warnings.is_empty());

        assert!(matches!(
            write_new(&path, &key, false),
            Err(KeyFileError::Exists(_))
        ));
        // --force over a 0644 file: the new file is 0600 and holds the new key.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let other = HostKey::from_seed(&[10; 32]);
        write_new(&path, &other, true).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(&path).unwrap().key.public_key(), other.public_key());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = load(&missing).unwrap_err();
        assert!(
            e.to_string().contains("nope.pem") && e.to_string().contains("keygen"),
            "{e}"
        );
        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "hello\n").unwrap();
        let e = load(&garbage).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("key file {}", garbage.display())),
            "{e}"
        );
        let e = load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn permission_warnings() {
        let p = Path::new("k.pem");
        assert_eq!(permission_warning(p, 0o100600), None);
        assert_eq!(permission_warning(p, 0o100400), None);
        let w = permission_warning(p, 0o100644).unwrap().to_string();
        assert!(
            w.contains("everyone") && w.contains("0644") && w.contains("chmod 600"),
            "{w}"
        );
        assert!(
            permission_warning(p, 0o640)
                .unwrap()
                .to_string()
                .contains("its group")
        );
    }
}

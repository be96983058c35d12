//! Signing secrets of endpoints managed at runtime, at rest: sealed with XChaCha20-Poly1305 under
//! the key in `secrets.key_file`, the endpoint's name bound as associated data (a sealed value
//! copied to another endpoint's row does not open). The key file holds 32 random bytes in
//! base64 on one line; it is created (mode 0640) the first time a secret is stored.
//!
//! Whoever can read the key file and the database can read the secrets: the daemon's user and,
//! with the packaged file (0640 root:webhookd), root and the members of group `webhookd`, who
//! can read the database anyway. The database alone (a backup, a copy) does not reveal them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The first bytes of a sealed value (format version 1).
const MAGIC: &[u8; 4] = b"whs1";
const NONCE_LEN: usize = 24;
/// Random bytes in a generated `whsec_` secret.
const SECRET_BYTES: usize = 24;

/// One signing secret and, during a rotation's overlap, when it stops signing (ms since the
/// epoch).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Secret {
    pub(crate) secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<i64>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("secret", &"<redacted>")
            .field("until", &self.until)
            .finish()
    }
}

/// The secrets key, loaded.
pub(crate) struct SecretsKey {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey({})", self.path.display())
    }
}

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::SecretsKey {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl SecretsKey {
    /// Reads the key at `path`; with `create`, a missing file is created with a new key.
    ///
    /// # Errors
    /// `SecretsKey` naming the file and the reason (missing, unreadable, not 32 bytes).
    pub(crate) fn load(path: &Path, create: bool) -> Result<SecretsKey> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                return SecretsKey::create(path)
            }
            Err(e) => return Err(key_error(path, e.to_string())),
        };
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| key_error(path, format!("not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(key_error(
                path,
                format!("holds {} bytes, a key is 32", bytes.len()),
            ));
        }
        Ok(SecretsKey {
            cipher: XChaCha20Poly1305::new_from_slice(&bytes).expect("32 bytes"),
            path: path.to_path_buf(),
        })
    }

    /// Writes a new key beside `path`, then links it into place: a reader never sees a partial
    /// file, and of two processes creating it at once one wins and both use its key.
    fn create(path: &Path) -> Result<SecretsKey> {
        let mut bytes = [0u8; 32];
        crate::random::fill(&mut bytes)?;
        // A name of its own (threads of one process create it at once, too).
        let mut unique = [0u8; 8];
        crate::random::fill(&mut unique)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", u64::from_le_bytes(unique)));
        let tmp = PathBuf::from(tmp);
        // Beside an SQLite file the directory exists; the state directory of a PostgreSQL
        // queue's daemon may not yet.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| key_error(path, format!("cannot create {}: {e}", dir.display())))?;
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(format!("{}\n", STANDARD.encode(bytes)).as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => log::info!("created the secrets key {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(key_error(path, format!("cannot create: {e}"))),
        }
        SecretsKey::load(path, false)
    }

    /// Seals `secrets` for the endpoint `name`.
    ///
    /// # Errors
    /// `ReadInput` when no random nonce can be read.
    pub(crate) fn seal(&self, name: &str, secrets: &[Secret]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::random::fill(&mut nonce)?;
        let plain = serde_json::to_vec(secrets).expect("secrets serialize");
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("encryption of a bounded message");
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`SecretsKey::seal`] sealed for `name`.
    ///
    /// # Errors
    /// `SecretsKey` when the value was sealed under another key (or for another endpoint) or is
    /// damaged.
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<Secret>> {
        let bad = |why: &str| key_error(&self.path, format!("endpoint {name:?}: {why}"));
        let rest = sealed
            .strip_prefix(MAGIC.as_slice())
            .filter(|r| r.len() > NONCE_LEN)
            .ok_or_else(|| bad("its stored secrets are damaged"))?;
        let (nonce, data) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: data,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| bad("its secrets were sealed under another key (or are damaged)"))?;
        serde_json::from_slice(&plain).map_err(|_| bad("its stored secrets are damaged"))
    }
}

/// A new signing secret: `whsec_` and 24 random bytes in base64.
///
/// # Errors
/// `ReadInput` when the system's random source cannot be read.
pub(crate) fn generate() -> Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    crate::random::fill(&mut bytes)?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// The secrets that still sign at `now`, newest first.
pub(crate) fn current(secrets: &[Secret], now: i64) -> impl Iterator<Item = &Secret> {
    secrets
        .iter()
        .filter(move |s| s.until.is_none_or(|u| u > now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let dir = std::env::temp_dir().join(format!("webhookd-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let _ = std::fs::remove_file(&path);
        assert!(
            SecretsKey::load(&path, false).is_err(),
            "missing, not created"
        );
        let key = SecretsKey::load(&path, true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "not readable by others: {mode:o}");
        let s = generate().unwrap();
        assert!(s.starts_with("whsec_") && crate::sign::Key::parse(&s).is_ok());
        let secrets = vec![Secret {
            secret: s.clone(),
            until: Some(5),
        }];
        let sealed = key.seal("billing", &secrets).unwrap();
        assert!(!sealed
            .windows(10)
            .any(|w| s.as_bytes().windows(10).any(|x| x == w)));
        assert_eq!(key.open("billing", &sealed).unwrap(), secrets);
        assert!(key.open("other", &sealed).is_err(), "bound to the name");
        let again = SecretsKey::load(&path, true).unwrap();
        assert_eq!(again.open("billing", &sealed).unwrap(), secrets);
        // Made by many at once: one key, which all of them use.
        let racing = dir.join("racing");
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        SecretsKey::load(&racing, true)
                            .unwrap()
                            .seal("n", &secrets)
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winner = SecretsKey::load(&racing, false).unwrap();
        for sealed in &keys {
            assert_eq!(winner.open("n", sealed).unwrap(), secrets);
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary file left"
        );
        std::fs::remove_file(&path).unwrap();
        let other = SecretsKey::load(&path, true).unwrap();
        let err = other.open("billing", &sealed).unwrap_err().to_string();
        assert!(err.contains("another key"), "{err}");
        assert!(!format!("{secrets:?}").contains("whsec"));
        assert_eq!(current(&secrets, 4).count(), 1);
        assert_eq!(current(&secrets, 5).count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Tokens of the TCP listener: `Authorization: Bearer TOKEN`, checked against the SHA-256 hashes
//! in `api.tokens_file`, each with its scopes.
//!
//! The file has one token per line, `NAME SCOPES sha256:HEX` (`#` starts a comment); `SCOPES` is
//! a comma-separated list of `enqueue` (post messages), `read` (every GET, `/metrics`) and
//! `admin` (act on messages and endpoints; includes `read`). `webhookd token NAME` makes a token
//! and prints its line. Only hashes are stored: the file does not reveal a token.

use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::problem::Problem;
use crate::error::{Error, Result};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Enqueue,
    Read,
    Admin,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Enqueue, Scope::Read, Scope::Admin];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Enqueue => "enqueue",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Parses `enqueue,read`.
    ///
    /// # Errors
    /// The unknown scope's name.
    pub(crate) fn parse_list(s: &str) -> std::result::Result<Vec<Scope>, String> {
        s.split(',')
            .map(|p| {
                let p = p.trim();
                Scope::ALL
                    .into_iter()
                    .find(|x| x.as_str() == p)
                    .ok_or_else(|| format!("unknown scope {p:?} (expected enqueue, read, admin)"))
            })
            .collect()
    }
}

struct Entry {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
}

impl Entry {
    fn login(&self) -> Login {
        Login {
            name: self.name.clone(),
            hash: self.hash,
            scopes: self.scopes.clone(),
        }
    }
}

/// Whether `scopes` grant `needed` (`admin` includes `read`).
fn grants(scopes: &[Scope], needed: Scope) -> bool {
    scopes.contains(&needed) || (needed == Scope::Read && scopes.contains(&Scope::Admin))
}

/// A known token, as a dashboard session holds it (the hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) name: String,
    pub(crate) hash: [u8; 32],
    pub(crate) scopes: Vec<Scope>,
}

impl Login {
    /// Whether the token may do what `needed` covers, as over TCP.
    pub(crate) fn allows(&self, needed: Scope) -> bool {
        grants(&self.scopes, needed)
    }
}

/// The tokens TCP clients may present.
#[derive(Default)]
pub(crate) struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} entries)", self.entries.len())
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokens {
    /// Reads `path`.
    ///
    /// # Errors
    /// `ReadConfig`; `InvalidConfig` naming the line.
    pub(crate) fn load(path: &Path) -> Result<Tokens> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(&text).map_err(|message| Error::InvalidConfig {
            path: path.to_path_buf(),
            message,
        })
    }

    fn parse(text: &str) -> std::result::Result<Tokens, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |m: &str| format!("line {}: {m}", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, hashed] = fields.as_slice() else {
                return Err(at("expected NAME SCOPES sha256:HEX"));
            };
            let scopes = Scope::parse_list(scopes).map_err(|m| at(&m))?;
            let digest = hashed
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| {
                    (0..32)
                        .map(|j| u8::from_str_radix(&h[2 * j..2 * j + 2], 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .ok_or_else(|| at("the hash is not sha256: and 64 hex digits"))?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&digest);
            if entries.iter().any(|e: &Entry| e.name == *name) {
                return Err(at(&format!("token name {name:?} is used twice")));
            }
            entries.push(Entry {
                name: (*name).to_owned(),
                hash,
                scopes,
            });
        }
        Ok(Tokens { entries })
    }

    /// Tokens from the text of a tokens file (tests elsewhere in the crate).
    #[cfg(test)]
    pub(crate) fn parse_for_tests(text: &str) -> Tokens {
        Tokens::parse(text).expect("a valid tokens file")
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether an `Authorization` header carries a known token (whatever its scopes).
    pub(crate) fn known(&self, authorization: Option<&str>) -> bool {
        self.entry(authorization).is_some()
    }

    /// The answer to a request without a known token.
    pub(crate) fn unauthorized(&self) -> Problem {
        Problem::new(401, "unauthorized")
            .detail("send Authorization: Bearer TOKEN")
            .header("www-authenticate", "Bearer")
    }

    fn entry(&self, authorization: Option<&str>) -> Option<&Entry> {
        let token = authorization?
            .strip_prefix("Bearer ")
            .or_else(|| authorization?.strip_prefix("bearer "))?
            .trim();
        self.by_hash(&hash(token))
    }

    /// A token as the dashboard knows it after a login: its name, hash and scopes now (none
    /// when the tokens file no longer has it).
    pub(crate) fn login(&self, token: &str) -> Option<Login> {
        self.by_hash(&hash(token.trim())).map(Entry::login)
    }

    /// The token of a session, if it is still in the tokens file.
    pub(crate) fn find(&self, hashed: &[u8; 32]) -> Option<Login> {
        self.by_hash(hashed).map(Entry::login)
    }

    fn by_hash(&self, presented: &[u8; 32]) -> Option<&Entry> {
        // Compare every entry without stopping early.
        let mut found = None;
        for e in &self.entries {
            let diff = e
                .hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(e);
            }
        }
        found
    }

    /// Checks an `Authorization` header for `needed`.
    ///
    /// # Errors
    /// 401 without a known token, 403 without the scope.
    pub(crate) fn check(
        &self,
        authorization: Option<&str>,
        needed: Scope,
    ) -> std::result::Result<(), Problem> {
        let Some(entry) = self.entry(authorization) else {
            return Err(self.unauthorized());
        };
        if grants(&entry.scopes, needed) {
            Ok(())
        } else {
            Err(Problem::new(403, "forbidden").detail(format!(
                "token {} lacks the {} scope",
                entry.name,
                needed.as_str()
            )))
        }
    }
}

/// A new token (`whk_` and 32 random bytes, base64url) and its line for the tokens file.
///
/// # Errors
/// `ReadInput` when the system's random source cannot be read.
pub(crate) fn new_token(name: &str, scopes: &[Scope]) -> Result<(String, String)> {
    let mut bytes = [0u8; 32];
    crate::random::fill(&mut bytes)?;
    let token = format!(
        "whk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let line = format!("{name} {} sha256:{}", scopes.join(","), hex(&hash(&token)));
    Ok((token, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_and_scope() {
        let (token, line) = new_token("billing", &[Scope::Enqueue]).unwrap();
        let (admin, admin_line) = new_token("ops", &[Scope::Admin]).unwrap();
        assert!(!line.contains(&token[4..]), "only the hash is stored");
        let t = Tokens::parse(&format!("# comment\n\n{line}\n{admin_line} # ops team\n")).unwrap();
        assert_eq!(t.len(), 2);
        let bearer = format!("Bearer {token}");
        assert!(t.check(Some(&bearer), Scope::Enqueue).is_ok());
        let status = |r: std::result::Result<(), Problem>| r.err().map(|p| p.response().status);
        assert_eq!(status(t.check(Some(&bearer), Scope::Read)), Some(403));
        assert_eq!(status(t.check(Some(&bearer), Scope::Admin)), Some(403));
        assert_eq!(status(t.check(None, Scope::Read)), Some(401));
        assert_eq!(
            status(t.check(Some("Bearer whk_nope"), Scope::Read)),
            Some(401)
        );
        assert_eq!(status(t.check(Some(&token), Scope::Enqueue)), Some(401));
        let admin = format!("Bearer {admin}");
        assert!(t.check(Some(&admin), Scope::Read).is_ok(), "admin reads");
        assert!(t.check(Some(&admin), Scope::Admin).is_ok());
        assert_eq!(status(t.check(Some(&admin), Scope::Enqueue)), Some(403));
        for (bad, needle) in [
            ("a b", "line 1: expected"),
            ("a write sha256:00", "unknown scope"),
            ("a read md5:00", "64 hex"),
            (&format!("a read sha256:{}é", "0".repeat(62)), "64 hex"),
            (
                &format!("{line}\n{line}"),
                "line 2: token name \"billing\" is used twice",
            ),
        ] {
            let e = Tokens::parse(bad).err().unwrap();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}

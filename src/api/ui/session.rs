//! The dashboard's sessions: made by a login with an API token, named by a random cookie, each
//! with its own CSRF token; kept in memory (a restart logs everyone out). A session holds the
//! token's hash, never the token, and asks the tokens file at every request: a token removed
//! (and the daemon reloaded) ends its sessions at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::api::auth::{Login, Tokens};
use crate::error::Result;

/// The cookie that names a session.
pub(super) const COOKIE: &str = "webhookd_session";
/// A session ends this long after its login, however busy.
pub(super) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// ... and after this long without a request (the overview polls every few seconds).
const IDLE: Duration = Duration::from_secs(3600);
/// Sessions kept at most; a login beyond ends the oldest.
const MAX_SESSIONS: usize = 1024;

struct Session {
    token: [u8; 32],
    csrf: String,
    started: Instant,
    seen: Instant,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) login: Login,
    pub(super) csrf: String,
}

/// Every live session, by the SHA-256 of its cookie.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

fn random_text() -> Result<String> {
    let mut bytes = [0u8; 32];
    crate::random::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// Whether two strings are equal, comparing every byte (a CSRF token is a secret).
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Starts a session for `login`: its cookie value and its CSRF token.
    ///
    /// # Errors
    /// `ReadInput` when no random bytes can be read.
    pub(super) fn start(&self, login: &Login) -> Result<(String, String)> {
        let cookie = random_text()?;
        let csrf = random_text()?;
        let now = Instant::now();
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, s| alive(s, now));
        if all.len() >= MAX_SESSIONS {
            if let Some(oldest) = all.iter().min_by_key(|(_, s)| s.started).map(|(k, _)| *k) {
                all.remove(&oldest);
            }
        }
        all.insert(
            key(&cookie),
            Session {
                token: login.hash,
                csrf: csrf.clone(),
                started: now,
                seen: now,
            },
        );
        Ok((cookie, csrf))
    }

    /// The session a `Cookie` header names, if it is alive and its token still known.
    pub(super) fn find(&self, cookie_header: Option<&str>, tokens: &Tokens) -> Option<Current> {
        let k = key(cookie(cookie_header)?);
        let now = Instant::now();
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let session = all.get_mut(&k)?;
        let login = tokens.find(&session.token).filter(|_| alive(session, now));
        let Some(login) = login else {
            all.remove(&k);
            return None;
        };
        session.seen = now;
        Some(Current {
            login,
            csrf: session.csrf.clone(),
        })
    }

    /// Ends the session a `Cookie` header names.
    pub(super) fn end(&self, cookie_header: Option<&str>) {
        if let Some(value) = cookie(cookie_header) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key(value));
        }
    }
}

/// The session cookie's value in a `Cookie` header.
fn cookie(header: Option<&str>) -> Option<&str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.started) < LIFETIME && now.duration_since(s.seen) < IDLE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::{new_token, Scope};

    #[test]
    fn a_session_lives_while_its_token_does() {
        let (token, line) = new_token("ops", &[Scope::Admin]).unwrap();
        let tokens = Tokens::parse_for_tests(&line);
        let login = tokens.login(&token).unwrap();
        assert!(login.allows(Scope::Admin) && login.allows(Scope::Read));
        let sessions = Sessions::default();
        let (cookie, csrf) = sessions.start(&login).unwrap();
        let header = format!("theme=dark; {COOKIE}={cookie}");
        let found = sessions.find(Some(&header), &tokens).unwrap();
        assert_eq!(found.login.name, "ops");
        assert!(same(&found.csrf, &csrf) && !same(&found.csrf, "x"));
        assert!(sessions
            .find(Some("webhookd_session=forged"), &tokens)
            .is_none());
        assert!(sessions.find(None, &tokens).is_none());
        // The token leaves the tokens file: the session ends.
        assert!(sessions.find(Some(&header), &Tokens::default()).is_none());
        assert!(
            sessions.find(Some(&header), &tokens).is_none(),
            "ended, not hidden"
        );
        let (cookie, _) = sessions.start(&login).unwrap();
        let header = format!("{COOKIE}={cookie}");
        sessions.end(Some(&header));
        assert!(sessions.find(Some(&header), &tokens).is_none());
    }
}

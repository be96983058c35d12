//! `[api]`: where and how `webhookd run` serves its HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Database;

/// Connections served at once (each has a thread while it is open).
const DEFAULT_MAX_CONNECTIONS: usize = 256;
const MAX_MAX_CONNECTIONS: usize = 4096;
/// Messages accepted but not yet committed; beyond it, 429.
const DEFAULT_INGEST_QUEUE: usize = 20_000;
/// The longest request (headers and body): a batch of thousands of messages.
const DEFAULT_MAX_REQUEST_SIZE: usize = 16 << 20;
/// Bytes of request bodies held in memory at once, over every connection.
const DEFAULT_MAX_BUFFERED: usize = 256 << 20;
/// A request's headers and body must arrive within this (a client sending a byte a second is cut
/// off).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiConfig {
    /// The Unix socket (always served), when the config names it; else [`default_socket`].
    pub(crate) socket: Option<PathBuf>,
    pub(crate) max_connections: usize,
    pub(crate) ingest_queue: usize,
    pub(crate) max_request_size: usize,
    pub(crate) max_buffered: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// The TCP listener, if any: every request on it needs a token.
    pub(crate) listen: Option<SocketAddr>,
    /// The tokens of TCP clients (hashed), when TCP is served.
    pub(crate) tokens_file: Option<PathBuf>,
    /// TLS for the TCP listener: certificate chain and key (PEM).
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP on purpose, behind a TLS-terminating proxy (the dashboard's cookie is then
    /// `Secure`: the browser speaks HTTPS).
    pub(crate) allow_plaintext: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiSection {
    socket: Option<PathBuf>,
    max_connections: Option<usize>,
    ingest_queue: Option<usize>,
    max_request_size: Option<super::ByteSize>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    listen: Option<String>,
    tokens_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allow_plaintext: Option<bool>,
}

/// Where the socket goes when `api.socket` is not set: `$RUNTIME_DIRECTORY/api.sock` (systemd's
/// `RuntimeDirectory=`), else beside the database (`<db>.api.sock`; PostgreSQL: `api.sock` in the
/// state directory).
pub(crate) fn default_socket(db: &Database) -> PathBuf {
    if let Some(dirs) = std::env::var_os("RUNTIME_DIRECTORY").filter(|v| !v.is_empty()) {
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if !first.is_empty() {
            return PathBuf::from(first).join("api.sock");
        }
    }
    match db {
        Database::Sqlite(path) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".api.sock");
            path.with_file_name(name)
        }
        Database::Postgres(_) => super::default_state_dir().join("api.sock"),
    }
}

impl ApiSection {
    /// Validates the section; `bad(key, reason)` builds the error.
    pub(super) fn check<E>(self, bad: &dyn Fn(&str, String) -> E) -> Result<ApiConfig, E> {
        let duration = |key: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => match crate::check::duration(key, s) {
                Ok(d) if d.is_zero() => Err(bad(key, "must be greater than 0".into())),
                Ok(d) => Ok(d),
                Err(e) => Err(bad(key, e.reason)),
            },
        };
        let socket = match self.socket {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(bad("api.socket", "is empty".into()))
            }
            p => p,
        };
        // sockaddr_un holds 108 bytes with the terminating NUL.
        if let Some(socket) = socket.as_ref().filter(|s| s.as_os_str().len() > 107) {
            return Err(bad(
                "api.socket",
                format!(
                    "{} is longer than the 107 bytes a Unix socket path may have",
                    socket.display()
                ),
            ));
        }
        let in_range = |key: &str, v: Option<usize>, default: usize, max: usize| match v {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(bad(key, format!("{n} is out of range 1..={max}"))),
        };
        let listen = match &self.listen {
            None => None,
            Some(l) => Some(l.trim().parse::<SocketAddr>().map_err(|_| {
                bad(
                    "api.listen",
                    format!("{l:?} is not an address and port (e.g. \"127.0.0.1:8080\", \"[::1]:8080\")"),
                )
            })?),
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(bad("api.tls_cert", "set without api.tls_key".into())),
            (None, Some(_)) => return Err(bad("api.tls_key", "set without api.tls_cert".into())),
        };
        let tokens_file = self.tokens_file.or_else(credential_tokens);
        if let Some(addr) = listen {
            if tokens_file.is_none() {
                return Err(bad(
                    "api.listen",
                    "needs api.tokens_file (every request over TCP needs a token)".into(),
                ));
            }
            if !addr.ip().is_loopback() && tls.is_none() && self.allow_plaintext != Some(true) {
                return Err(bad(
                    "api.listen",
                    format!(
                        "{addr} is not a loopback address: set api.tls_cert and api.tls_key, or api.allow_plaintext = true behind a TLS-terminating proxy"
                    ),
                ));
            }
        } else if tls.is_some() {
            return Err(bad("api.tls_cert", "set without api.listen".into()));
        }
        Ok(ApiConfig {
            listen,
            tokens_file,
            tls,
            allow_plaintext: self.allow_plaintext == Some(true),
            socket,
            max_connections: in_range(
                "api.max_connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
                MAX_MAX_CONNECTIONS,
            )?,
            ingest_queue: in_range(
                "api.ingest_queue",
                self.ingest_queue,
                DEFAULT_INGEST_QUEUE,
                10_000_000,
            )?,
            max_request_size: match &self.max_request_size {
                None => DEFAULT_MAX_REQUEST_SIZE,
                Some(b) => match super::parse_byte_size(b) {
                    // Bodies are held whole, within max_buffered over every connection.
                    Ok(n) if n > DEFAULT_MAX_BUFFERED => {
                        return Err(bad(
                            "api.max_request_size",
                            format!("{n} bytes is more than the 256MiB of bodies held at once"),
                        ))
                    }
                    Ok(n) => n,
                    Err(m) => return Err(bad("api.max_request_size", m)),
                },
            },
            max_buffered: DEFAULT_MAX_BUFFERED,
            request_timeout: duration(
                "api.request_timeout",
                &self.request_timeout,
                DEFAULT_REQUEST_TIMEOUT,
            )?,
            idle_timeout: duration("api.idle_timeout", &self.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
        })
    }
}

impl ApiConfig {
    /// The socket the API listens on for the queue `db`.
    pub(crate) fn socket_path(&self, db: &Database) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| default_socket(db))
    }
}

/// The systemd credential `api-tokens` (`LoadCredential=api-tokens:...`), if the unit passes one.
fn credential_tokens() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|v| !v.is_empty())?;
    let path = PathBuf::from(dir).join("api-tokens");
    path.exists().then_some(path)
}

//! Config file + command-line flags -> one validated `Config`. All defaults live here.
//!
//! Precedence: flags > config file > built-in defaults. Unknown keys, wrong types and bad values are
//! refused with one line naming the file, the line and the key. Durations ("100ms", "5s", "10m",
//! "6h", "7d") are parsed only here; everything inside webhookd uses `std::time::Duration`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;
use serde::Deserialize;

use crate::check;
use crate::cli::Cli;
use crate::endpoint::{Endpoint, EndpointSection};
use crate::error::{Error, Result};

/// Read when `--config` is not given, if it exists.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/webhookd/webhookd.toml";
/// Delivery worker threads. Defaults to 16 (enough to saturate two cores on a fast receiver and to
/// keep slow receivers from blocking each other).
const DEFAULT_WORKERS: usize = 16;
/// Total attempts, the first included. Defaults to 18: with `base_delay` 5s and `max_delay` 6h
/// the last attempt comes 35 h after the first (at least 28 h with jitter), so a receiver that is down
/// for 24 hours still gets its messages.
const DEFAULT_MAX_ATTEMPTS: u32 = 18;
/// First retry delay; each further retry doubles it. Defaults to 5 s.
const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(5);
/// Cap on one retry delay, also on `Retry-After`. Defaults to 6 h.
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(6 * 3600);
/// Whole-request timeout. Defaults to 30 s.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP + TLS connect timeout. Defaults to 5 s.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Delivered messages are purged this long after delivery. Defaults to 7 days.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86400);
/// Largest accepted body. Defaults to 1 MiB.
const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;
/// Log level of `run`. Defaults to info.
const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::Info;
/// How long shutdown waits for requests in flight before abandoning them (their messages are
/// requeued, never lost). Defaults to 30 s: below the unit's `TimeoutStopSec=45s`, with room for
/// the final commit.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a claim stays its daemon's without a renewal (see `store::LEASE`).
const MIN_LEASE: Duration = Duration::from_secs(1);
/// Bytes of a failed attempt's response body kept for `show` and the DLQ. Defaults to 4 KiB.
const DEFAULT_CAPTURE: usize = 4 * 1024;
/// The most `http.capture` may keep: what a worker reads of a response at most.
pub(crate) const MAX_CAPTURE: usize = 64 * 1024;

const MAX_WORKERS: usize = 1024;

/// Retry policy: how often and how long to try a message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
}

/// HTTP client settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpConfig {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Extra trusted CA certificates (PEM), beside the system's.
    pub(crate) ca_file: Option<PathBuf>,
    /// Bytes of a failed attempt's response body to keep (a successful one: 1 KiB at most).
    pub(crate) capture: usize,
    /// `http.proxy` and `http.no_proxy`: every request goes through it (unless its endpoint
    /// says otherwise, or its host is in `no_proxy`).
    pub(crate) proxy: Option<HttpProxy>,
}

/// A proxy for all requests, with the hosts that bypass it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpProxy {
    pub(crate) url: crate::egress::ProxyUrl,
    /// Host names, `.domain` suffixes or addresses that go directly.
    pub(crate) no_proxy: Vec<String>,
}

/// The validated configuration every command works from.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The file this came from, if any (re-read on reload).
    pub(crate) source: Option<PathBuf>,
    pub(crate) db: Database,
    /// `db_password_file`, `db_ca_file` (for a `postgres://` db; kept for `--db`).
    pub(crate) db_password_file: Option<PathBuf>,
    pub(crate) db_ca_file: Option<PathBuf>,
    pub(crate) workers: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) http: HttpConfig,
    pub(crate) retention: Duration,
    /// Longest wait for requests in flight at shutdown.
    pub(crate) shutdown_timeout: Duration,
    /// `lease`: how long a claim is its daemon's without a renewal; another daemon of a
    /// PostgreSQL queue takes over a claim only after it.
    pub(crate) lease: Duration,
    pub(crate) max_body_size: usize,
    pub(crate) log_level: LevelFilter,
    /// Named endpoints (`[endpoints.NAME]`), by name.
    pub(crate) endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// Where alerts are posted, and in which form.
    pub(crate) alerts: Option<AlertConfig>,
    /// The HTTP API of `webhookd run`.
    pub(crate) api: ApiConfig,
    /// `secrets.key_file`: the key that seals the secrets of endpoints managed at runtime.
    pub(crate) secrets_key_file: Option<PathBuf>,
    /// `[origins]`: the policy of plain URLs' origins.
    pub(crate) origins: crate::endpoint::OriginPolicy,
    /// `[egress]`: which addresses requests may go to.
    pub(crate) egress: crate::egress::Policy,
}

/// `alert_url` and `alert_format`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertConfig {
    pub(crate) url: String,
    pub(crate) format: AlertFormat,
}

/// The body of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlertFormat {
    /// `{"text": "..."}`, as Slack, Mattermost and Rocket.Chat incoming webhooks take it.
    Slack,
    /// The event as a JSON object (`event`, `text`, `endpoint`, `message`, ...).
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<PathBuf>,
    db_password_file: Option<PathBuf>,
    db_ca_file: Option<PathBuf>,
    workers: Option<usize>,
    log_level: Option<String>,
    retention: Option<String>,
    shutdown_timeout: Option<String>,
    lease: Option<String>,
    max_body_size: Option<ByteSize>,
    #[serde(default)]
    retry: RetrySection,
    #[serde(default)]
    http: HttpSection,
    alert_url: Option<String>,
    alert_format: Option<String>,
    #[serde(default)]
    api: api::ApiSection,
    #[serde(default)]
    endpoints: BTreeMap<String, EndpointSection>,
    #[serde(default)]
    secrets: sections::SecretsSection,
    #[serde(default)]
    origins: sections::OriginsSection,
    #[serde(default)]
    egress: sections::EgressSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrySection {
    max_attempts: Option<u32>,
    base_delay: Option<String>,
    max_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    timeout: Option<String>,
    connect_timeout: Option<String>,
    ca_file: Option<PathBuf>,
    capture: Option<ByteSize>,
    proxy: Option<String>,
    #[serde(default)]
    no_proxy: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl Config {
    /// Reads the config file named by `--config` (or the default path if it exists) and applies
    /// the command-line overrides.
    ///
    /// # Errors
    /// `ReadConfig` when a named file cannot be read, `InvalidConfig` for syntax errors, unknown
    /// keys, wrong types and out-of-range values.
    pub(crate) fn load(cli: &Cli) -> Result<Config> {
        let common = cli.common();
        let env_path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        // Flags first, then the environment, then the default file if it exists.
        let path = match common.config.or_else(|| env_path("WEBHOOKD_CONFIG")) {
            Some(p) => Some(p),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        // Only the daemon sends: other commands get by without secret files they cannot read
        // (under systemd they are often readable by the service alone, via LoadCredential=).
        let secrets_required = matches!(cli.command, crate::cli::Command::Run { .. });
        let mut config = match &path {
            Some(p) => Config::from_file(p, secrets_required)?,
            None => Config::from_file_config(FileConfig::default(), None, true)?,
        };
        if let Some(db) = common.db.or_else(|| env_path("WEBHOOKD_DB")) {
            config.db = Database::from_path(db)
                .map_err(|m| Error::Usage {
                    message: format!("--db: {m}"),
                })?
                .with_options(
                    config.db_password_file.as_deref(),
                    config.db_ca_file.as_deref(),
                    config.lease,
                )
                .map_err(|(key, m)| Error::Usage {
                    message: format!("--db: {key} {m}"),
                })?;
        }
        if let crate::cli::Command::Run {
            workers: Some(w), ..
        } = &cli.command
        {
            config.workers = check_workers(*w).map_err(|message| Error::Usage {
                message: format!("--workers: {message}"),
            })?;
        }
        Ok(config)
    }

    /// Parses and validates one config file.
    ///
    /// # Errors
    /// As for [`Config::load`].
    pub(crate) fn from_file(path: &Path, secrets_required: bool) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| Error::InvalidConfig {
            path: path.to_path_buf(),
            message: describe_toml_error(&text, &e),
        })?;
        Config::from_file_config(file, Some(path), secrets_required)
    }

    fn from_file_config(
        file: FileConfig,
        path: Option<&Path>,
        secrets_required: bool,
    ) -> Result<Config> {
        let bad = |key: &str, message: String| Error::InvalidConfig {
            path: path.map_or_else(|| PathBuf::from("(defaults)"), Path::to_path_buf),
            message: format!("{key}: {message}"),
        };
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(s) => check::duration(key, s).map_err(|e| bad(key, e.reason)),
        };
        let retry = RetryPolicy {
            max_attempts: match file.retry.max_attempts {
                None => DEFAULT_MAX_ATTEMPTS,
                Some(n) => check::max_attempts("retry.max_attempts", n)
                    .map_err(|e| bad("retry.max_attempts", e.reason))?,
            },
            base_delay: duration(
                "retry.base_delay",
                &file.retry.base_delay,
                DEFAULT_BASE_DELAY,
            )?,
            max_delay: duration("retry.max_delay", &file.retry.max_delay, DEFAULT_MAX_DELAY)?,
        };
        if retry.base_delay > retry.max_delay {
            return Err(bad(
                "retry.base_delay",
                format!(
                    "{} is larger than retry.max_delay ({})",
                    humantime::format_duration(retry.base_delay),
                    humantime::format_duration(retry.max_delay)
                ),
            ));
        }
        let http = HttpConfig {
            timeout: duration("http.timeout", &file.http.timeout, DEFAULT_TIMEOUT)?,
            connect_timeout: duration(
                "http.connect_timeout",
                &file.http.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            ca_file: match file.http.ca_file {
                Some(p) if p.as_os_str().is_empty() => {
                    return Err(bad("http.ca_file", "is empty".into()))
                }
                p => p,
            },
            capture: match &file.http.capture {
                None => DEFAULT_CAPTURE,
                Some(b) => parse_capture(b).map_err(|m| bad("http.capture", m))?,
            },
            proxy: sections::proxy(file.http.proxy.as_deref(), &file.http.no_proxy, &bad)?,
        };
        for (key, d) in [
            ("http.timeout", http.timeout),
            ("http.connect_timeout", http.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be greater than 0".into()));
            }
        }
        let retention = duration("retention", &file.retention, DEFAULT_RETENTION)?;
        let lease = duration("lease", &file.lease, database::DEFAULT_LEASE)?;
        if lease < MIN_LEASE {
            return Err(bad("lease", "must be at least 1s".into()));
        }
        let shutdown_timeout = duration(
            "shutdown_timeout",
            &file.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
        )?;
        if shutdown_timeout.is_zero() {
            return Err(bad("shutdown_timeout", "must be greater than 0".into()));
        }
        let max_body_size = match &file.max_body_size {
            None => DEFAULT_MAX_BODY_SIZE,
            Some(b) => parse_byte_size(b).map_err(|m| bad("max_body_size", m))?,
        };
        let log_level = match &file.log_level {
            None => DEFAULT_LOG_LEVEL,
            Some(s) => parse_level(s).map_err(|m| bad("log_level", m))?,
        };
        let workers = match file.workers {
            None => DEFAULT_WORKERS,
            Some(w) => check_workers(w).map_err(|m| bad("workers", m))?,
        };
        let db = match file.db {
            Some(db) => Database::from_path(db).map_err(|m| bad("db", m))?,
            None => Database::Sqlite(database::default_db_path()),
        };
        let alerts = match (file.alert_url, file.alert_format.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => return Err(bad("alert_format", "set without alert_url".into())),
            (Some(url), format) => {
                check::url("alert_url", &url).map_err(|e| bad("alert_url", e.reason))?;
                let format = match format {
                    None | Some("slack") => AlertFormat::Slack,
                    Some("json") => AlertFormat::Json,
                    Some(other) => {
                        return Err(bad(
                            "alert_format",
                            format!("{other:?} is not one of \"slack\", \"json\""),
                        ))
                    }
                };
                Some(AlertConfig { url, format })
            }
        };
        let config_dir = path
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let db_password_file = file.db_password_file.map(|p| config_dir.join(p));
        let db_ca_file = file.db_ca_file.map(|p| config_dir.join(p));
        let db = db
            .with_options(db_password_file.as_deref(), db_ca_file.as_deref(), lease)
            .map_err(|(key, m)| bad(key, m))?;
        let mut endpoints = BTreeMap::new();
        for (name, section) in file.endpoints {
            let e = crate::endpoint::from_section(&name, section, &config_dir, secrets_required)
                .map_err(|e| bad(&e.field, e.reason))?;
            endpoints.insert(name, Arc::new(e));
        }
        let api = file.api.check(&bad)?;
        let secrets_key_file = match file.secrets.key_file {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(bad("secrets.key_file", "is empty".into()))
            }
            p => p.map(|p| config_dir.join(p)),
        };
        let origins = file.origins.check(&bad)?;
        let egress = file.egress.check(&bad)?;
        Ok(Config {
            api,
            origins,
            egress,
            secrets_key_file,
            endpoints,
            alerts,
            source: path.map(Path::to_path_buf),
            db,
            db_password_file,
            db_ca_file,
            workers,
            retry,
            http,
            retention,
            shutdown_timeout,
            lease,
            max_body_size,
            log_level,
        })
    }
}

fn check_workers(w: usize) -> Result<usize, String> {
    if (1..=MAX_WORKERS).contains(&w) {
        Ok(w)
    } else {
        Err(format!("{w} is out of range 1..={MAX_WORKERS}"))
    }
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse::<LevelFilter>().map_err(|_| {
        format!("invalid log level {s:?} (expected off, error, warn, info, debug or trace)")
    })
}

/// `http.capture`: 0 to 64 KiB.
fn parse_capture(b: &ByteSize) -> Result<usize, String> {
    if matches!(b, ByteSize::Bytes(0)) {
        return Ok(0);
    }
    let n = parse_byte_size(b)?;
    if n > MAX_CAPTURE {
        return Err(format!(
            "{n} bytes is more than the 64KiB a response is read"
        ));
    }
    Ok(n)
}

fn parse_byte_size(b: &ByteSize) -> Result<usize, String> {
    let bytes = match b {
        ByteSize::Bytes(n) => *n,
        ByteSize::Text(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, unit) = t.split_at(split);
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("invalid size {s:?} (e.g. 1048576, \"512KiB\", \"1MiB\")"))?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" | "K" | "k" => 1 << 10,
                "MiB" | "M" => 1 << 20,
                "GiB" | "G" => 1 << 30,
                _ => {
                    return Err(format!(
                        "invalid size unit in {s:?} (use B, KiB, MiB or GiB)"
                    ))
                }
            };
            n.checked_mul(mult)
                .ok_or_else(|| format!("size {s:?} is too large"))?
        }
    };
    if bytes == 0 || bytes > 1 << 30 {
        return Err(format!("{bytes} bytes is out of range 1..=1GiB"));
    }
    Ok(bytes as usize)
}

/// Turns a toml error into one line: `line N (text): message`.
/// Names the table the line is in (a key after `[retry]` is `retry.KEY`, which a reader easily
/// misses).
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            let table = text
                .lines()
                .take(line_no)
                .filter_map(|l| {
                    let l = l.trim();
                    l.strip_prefix('[').and_then(|t| t.strip_suffix(']'))
                })
                .last()
                .filter(|t| *t != line.trim_start_matches('[').trim_end_matches(']'));
            match table {
                Some(t) => format!("line {line_no} ({line}, in [{t}]): {message}"),
                None => format!("line {line_no} ({line}): {message}"),
            }
        }
        None => message,
    }
}

mod api;
pub(crate) mod database;
mod sections;
#[cfg(test)]
mod tests;

pub(crate) use api::ApiConfig;
pub(crate) use database::{default_state_dir, Database};

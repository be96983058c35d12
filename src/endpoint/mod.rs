//! Named endpoints: their configuration (`[endpoints.NAME]`), validated into [`Endpoint`], and the
//! files their secrets come from. Pure apart from reading those files.
//!
//! A secret or a header value can live in a file instead of the config: a relative path is looked
//! up in `$CREDENTIALS_DIRECTORY` when systemd set it (`LoadCredential=`), else next to the config
//! file. Secrets and header values are never logged and never printed (`Debug` redacts them).
//!
//! Endpoints managed at runtime (`webhookd endpoints add`, `POST /v1/endpoints`) are stored in
//! the database as a definition: the same settings as JSON (`defined`), their secrets sealed
//! (`secrets`).

pub(crate) mod defined;
pub(crate) mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::{self, Invalid, Rate};
use crate::egress::{Identity, ProxyUrl, Route, Via};
use crate::sign::Key;

/// Consecutive failures that open an endpoint's circuit breaker.
pub(crate) const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// First wait before probing an open endpoint; each failed probe doubles it, up to
/// `MAX_PROBE_INTERVAL`.
pub(crate) const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(10);
pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(3600);
/// An endpoint failing without a success for this long is disabled.
pub(crate) const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 86400);

/// `[origins]`: the policy of plain URLs' origins (each an implicit endpoint).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OriginPolicy {
    /// Requests in flight per origin at most; `None`: no cap of its own (all the workers). Not
    /// half the workers as for endpoints: measured, that halves the throughput of everyone who
    /// sends to one host (BENCHMARKS.md, "Endpoints at runtime"); slow start, the failing budget
    /// and the breaker protect the others from a dead or hanging host.
    pub(crate) concurrency: Option<usize>,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: Duration,
}

impl Default for OriginPolicy {
    fn default() -> OriginPolicy {
        OriginPolicy {
            concurrency: None,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }
}

/// What a message that dead-letters does to its ordered lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDead {
    /// The lane stops until the dead message is retried or deleted (`webhookd dlq`).
    Block,
    /// The next message of the lane goes.
    Skip,
}

/// One named endpoint, validated.
#[derive(Clone, PartialEq)]
pub(crate) struct Endpoint {
    pub(crate) name: String,
    /// Base URL; a message's path is appended to it.
    pub(crate) url: String,
    /// Sent with every message (a message's own header of the same name wins).
    pub(crate) headers: Vec<(String, String)>,
    /// Signing keys, newest first; empty: messages are not signed.
    pub(crate) keys: Arc<Vec<Key>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: Option<u32>,
    /// Requests in flight at most; `None`: half the workers.
    pub(crate) concurrency: Option<usize>,
    pub(crate) rate: Option<Rate>,
    pub(crate) ordered: bool,
    pub(crate) on_dead: OnDead,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) disable_after: Duration,
    /// Secret or header files this process could not read (only when they were not required).
    pub(crate) unreadable: Vec<String>,
    /// The tenant it belongs to (a customer, an application), if any.
    pub(crate) tenant: Option<String>,
    /// Subscription patterns (`invoice.paid`, `invoice.*`, `*`); empty: it receives only
    /// messages addressed to it by name.
    pub(crate) events: Vec<String>,
    /// Paused by an operator: none of its messages is claimed until it is resumed.
    pub(crate) paused: bool,
    /// Managed at runtime (stored in the database), not read from the config file.
    pub(crate) managed: bool,
    /// Private ranges, proxy, CA certificates and client identity of its requests.
    pub(crate) route: Arc<Route>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("keys", &self.keys.len())
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("concurrency", &self.concurrency)
            .field("rate", &self.rate)
            .field("ordered", &self.ordered)
            .field("on_dead", &self.on_dead)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("disable_after", &self.disable_after)
            .field("tenant", &self.tenant)
            .field("events", &self.events)
            .field("paused", &self.paused)
            .field("managed", &self.managed)
            .field("route", &self.route)
            .finish()
    }
}

impl Endpoint {
    /// The URL a message with `path` (possibly empty) goes to.
    pub(crate) fn url_for(&self, path: &str) -> String {
        if path.is_empty() {
            return self.url.clone();
        }
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    /// The implicit endpoint of a plain URL's origin (`https://host:443`): the default policy,
    /// nothing added to the request.
    pub(crate) fn for_origin(origin: &str, p: &OriginPolicy) -> Endpoint {
        Endpoint {
            name: origin.to_owned(),
            url: String::new(),
            headers: Vec::new(),
            keys: Arc::default(),
            timeout: None,
            max_attempts: None,
            concurrency: Some(p.concurrency.unwrap_or(usize::MAX)),
            rate: None,
            ordered: false,
            on_dead: OnDead::Block,
            breaker_failures: p.breaker_failures,
            breaker_cooldown: p.breaker_cooldown,
            disable_after: DEFAULT_DISABLE_AFTER,
            unreadable: Vec::new(),
            tenant: None,
            events: Vec::new(),
            paused: false,
            managed: false,
            route: Arc::default(),
        }
    }

    /// Whether it is a plain URL's origin rather than a named endpoint.
    pub(crate) fn is_origin(&self) -> bool {
        crate::message::is_origin(&self.name)
    }

    /// The concurrency cap in force with `workers` delivery workers.
    pub(crate) fn concurrency_with(&self, workers: usize) -> usize {
        self.concurrency.unwrap_or((workers / 2).max(1))
    }
}

/// `[endpoints.NAME]` as written (and, without files and secrets, an endpoint's definition in
/// the database).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointSection {
    pub(crate) url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) header_files: BTreeMap<String, PathBuf>,
    #[serde(skip_serializing)]
    secret: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ordered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_dead: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker_cooldown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_private: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key: Option<PathBuf>,
}

impl EndpointSection {
    /// Whether it names a secret (inline or a file): definitions keep secrets apart, sealed.
    pub(crate) fn has_secret(&self) -> bool {
        self.secret.is_some() || self.secret_file.is_some()
    }

    /// The file keys it uses (`header_files`, `ca_file`, `client_cert`, `client_key`): a
    /// definition in the database names no file of this machine.
    pub(crate) fn file_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for (key, set) in [
            ("header_files", !self.header_files.is_empty()),
            ("ca_file", self.ca_file.is_some()),
            ("client_cert", self.client_cert.is_some()),
            ("client_key", self.client_key.is_some()),
        ] {
            if set {
                keys.push(key);
            }
        }
        keys
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Validates one `[endpoints.NAME]`; `config_dir` is where relative secret files are found when
/// there is no `$CREDENTIALS_DIRECTORY`. Without `files_required`, a file that cannot be read is
/// noted in `unreadable` instead of failing.
///
/// # Errors
/// `Invalid` naming the key (`endpoints.NAME.key`) of the first bad value.
pub(crate) fn from_section(
    name: &str,
    s: EndpointSection,
    config_dir: &Path,
    files_required: bool,
) -> Result<Endpoint, Invalid> {
    let key = |k: &str| format!("endpoints.{name}.{k}");
    let mut unreadable = Vec::new();
    let mut read_any = |k: &str, file: &Path, secret: bool| -> Result<Option<String>, Invalid> {
        match read_file(file, config_dir, secret) {
            Ok(text) => Ok(Some(text)),
            Err(m) if files_required => Err(Invalid::new(key(k), m)),
            Err(m) => {
                unreadable.push(m);
                Ok(None)
            }
        }
    };
    let route = route(&s, &key, &mut read_any)?;
    let mut read = |k: &str, file: &Path| read_any(k, file, true);
    check::endpoint_name(&key("name"), name)?;
    check::url(&key("url"), &s.url)?;
    if s.url.contains('?') || s.url.contains('#') {
        return Err(Invalid::new(
            key("url"),
            "must not have a query or fragment (messages append their path to it)",
        ));
    }
    let mut headers = Vec::new();
    for (n, v) in &s.headers {
        headers.push(check::header(&key("headers"), n, v)?);
    }
    for (n, file) in &s.header_files {
        let Some(value) = read("header_files", file)? else {
            continue;
        };
        headers.push(check::header(&key("header_files"), n, &value)?);
    }
    let mut secrets: Vec<String> = match s.secret {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    };
    if let Some(file) = &s.secret_file {
        if let Some(text) = read("secret_file", file)? {
            secrets.extend(text.split_whitespace().map(str::to_owned));
        }
    }
    let secret_key = key(if s.secret_file.is_some() {
        "secret_file"
    } else {
        "secret"
    });
    let keys = secrets
        .iter()
        .map(|s| Key::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| Invalid::new(secret_key, reason))?;
    let duration = |k: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(text) => match check::duration(&key(k), text) {
            Ok(d) if d.is_zero() => Err(Invalid::new(key(k), "must be greater than 0")),
            d => d,
        },
    };
    let timeout = match &s.timeout {
        None => None,
        t => Some(duration("timeout", t, Duration::ZERO)?),
    };
    let max_attempts = match s.max_attempts {
        None => None,
        Some(n) => Some(check::max_attempts(&key("max_attempts"), n)?),
    };
    if s.concurrency == Some(0) {
        return Err(Invalid::new(key("concurrency"), "must be at least 1"));
    }
    let rate = s
        .rate
        .as_deref()
        .map(|r| Rate::parse(&key("rate"), r))
        .transpose()?;
    let on_dead = match s.on_dead.as_deref() {
        None | Some("block") => OnDead::Block,
        Some("skip") => OnDead::Skip,
        Some(other) => {
            return Err(Invalid::new(
                key("on_dead"),
                format!("{other:?} is not one of \"block\", \"skip\""),
            ))
        }
    };
    if let Some(t) = &s.tenant {
        check::tenant(&key("tenant"), t)?;
    }
    for (i, p) in s.events.iter().enumerate() {
        check::event_pattern(&format!("{}[{i}]", key("events")), p)?;
    }
    let breaker_failures = s.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if breaker_failures == 0 {
        return Err(Invalid::new(key("breaker_failures"), "must be at least 1"));
    }
    Ok(Endpoint {
        name: name.to_owned(),
        url: s.url,
        headers,
        keys: Arc::new(keys),
        timeout,
        max_attempts,
        concurrency: s.concurrency,
        rate,
        ordered: s.ordered.unwrap_or(false),
        on_dead,
        breaker_failures,
        breaker_cooldown: duration(
            "breaker_cooldown",
            &s.breaker_cooldown,
            DEFAULT_BREAKER_COOLDOWN,
        )?,
        disable_after: duration("disable_after", &s.disable_after, DEFAULT_DISABLE_AFTER)?,
        unreadable,
        tenant: s.tenant,
        events: s.events,
        paused: false,
        managed: false,
        route: Arc::new(route),
    })
}

/// Reads a file of an endpoint's key as text (`true`: a secret); `None` when it cannot be read
/// and need not be.
type ReadFile<'a> = dyn FnMut(&str, &Path, bool) -> Result<Option<String>, Invalid> + 'a;

/// The route of an endpoint (`allow_private`, `proxy`, `ca_file`, `client_cert`, `client_key`);
/// `read` reads a file as text (a missing one: `None`, noted by the caller).
fn route(
    s: &EndpointSection,
    key: &dyn Fn(&str) -> String,
    read: &mut ReadFile<'_>,
) -> Result<Route, Invalid> {
    let via = match s.proxy.as_deref() {
        None => Via::Default,
        Some("none") => Via::Direct,
        Some(p) => Via::Proxy(ProxyUrl::parse(p).map_err(|m| Invalid::new(key("proxy"), m))?),
    };
    let pem = |k: &str, text: Option<String>| -> Result<Option<Vec<u8>>, Invalid> {
        match text {
            Some(t) if !t.contains("-----BEGIN ") => {
                Err(Invalid::new(key(k), "is not PEM (-----BEGIN ...)"))
            }
            t => Ok(t.map(String::into_bytes)),
        }
    };
    let ca_pem = match &s.ca_file {
        Some(f) => pem("ca_file", read("ca_file", f, false)?)?.map(Arc::new),
        None => None,
    };
    let identity = match (&s.client_cert, &s.client_key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(Invalid::new(
                key("client_key"),
                "missing (client_cert is set)",
            ))
        }
        (None, Some(_)) => {
            return Err(Invalid::new(
                key("client_cert"),
                "missing (client_key is set)",
            ))
        }
        (Some(cert), Some(k)) => {
            match (
                pem("client_cert", read("client_cert", cert, false)?)?,
                pem("client_key", read("client_key", k, true)?)?,
            ) {
                (Some(cert_pem), Some(key_pem)) => Some(Arc::new(Identity {
                    cert_pem,
                    key_pem,
                    source: cert.display().to_string(),
                })),
                _ => None,
            }
        }
    };
    Ok(Route {
        vet_proxy: false,
        allow_private: s.allow_private.unwrap_or(false),
        via,
        ca_pem,
        identity,
    })
}

/// Reads a file: relative paths are in `config_dir`, a secret's first in
/// `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`). Surrounding whitespace is dropped.
fn read_file(file: &Path, config_dir: &Path, secret: bool) -> Result<String, String> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| secret && !d.is_empty());
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else if let Some(dir) = credentials {
        Path::new(&dir).join(file)
    } else {
        config_dir.join(file)
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests;

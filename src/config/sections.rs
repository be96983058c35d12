//! Small sections of the config file: `[secrets]` (where the key of endpoint secrets is),
//! `[origins]` (the policy of plain URLs' origins), `[egress]` (ranges over the default egress
//! policy) and `http.proxy`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, Database, HttpProxy};
use crate::egress::{ranges, Policy, ProxyUrl};
use crate::endpoint::OriginPolicy;
use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretsSection {
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OriginsSection {
    concurrency: Option<usize>,
    breaker_failures: Option<u32>,
    breaker_cooldown: Option<String>,
}

impl OriginsSection {
    /// Validates `[origins]`.
    ///
    /// # Errors
    /// `InvalidConfig` naming the key.
    pub(super) fn check(&self, bad: &dyn Fn(&str, String) -> Error) -> Result<OriginPolicy> {
        let d = OriginPolicy::default();
        Ok(OriginPolicy {
            concurrency: match self.concurrency {
                Some(0) => return Err(bad("origins.concurrency", "must be at least 1".into())),
                c => c,
            },
            breaker_failures: match self.breaker_failures {
                Some(0) => {
                    return Err(bad("origins.breaker_failures", "must be at least 1".into()))
                }
                n => n.unwrap_or(d.breaker_failures),
            },
            breaker_cooldown: match &self.breaker_cooldown {
                None => d.breaker_cooldown,
                Some(t) => match crate::check::duration("origins.breaker_cooldown", t) {
                    Ok(v) if !v.is_zero() => v,
                    Ok(_) => {
                        return Err(bad(
                            "origins.breaker_cooldown",
                            "must be greater than 0".into(),
                        ))
                    }
                    Err(e) => return Err(bad("origins.breaker_cooldown", e.reason)),
                },
            },
        })
    }
}

/// `[egress]`: ranges opened and closed over the default policy (see `egress`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EgressSection {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

impl EgressSection {
    /// Validates `[egress]`.
    ///
    /// # Errors
    /// `InvalidConfig` naming the key and the entry.
    pub(super) fn check(&self, bad: &dyn Fn(&str, String) -> Error) -> Result<Policy> {
        Ok(Policy {
            allow: ranges(&self.allow).map_err(|m| bad("egress.allow", m))?,
            deny: ranges(&self.deny).map_err(|m| bad("egress.deny", m))?,
        })
    }
}

/// `http.proxy` and `http.no_proxy`.
///
/// # Errors
/// `InvalidConfig` naming the key.
pub(super) fn proxy(
    url: Option<&str>,
    no_proxy: &[String],
    bad: &dyn Fn(&str, String) -> Error,
) -> Result<Option<HttpProxy>> {
    let Some(url) = url else {
        if !no_proxy.is_empty() {
            return Err(bad("http.no_proxy", "set without http.proxy".into()));
        }
        return Ok(None);
    };
    let url = ProxyUrl::parse(url).map_err(|m| bad("http.proxy", m))?;
    for (i, entry) in no_proxy.iter().enumerate() {
        if entry.is_empty() || entry.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad(
                &format!("http.no_proxy[{i}]"),
                format!("{entry:?} is not a host name, domain (.example.com) or address"),
            ));
        }
    }
    Ok(Some(HttpProxy {
        url,
        no_proxy: no_proxy.to_vec(),
    }))
}

impl Config {
    /// The secrets key: `secrets.key_file`, else the systemd credential `secrets-key` when
    /// there is one, else `<db>.secrets.key` beside the database (PostgreSQL:
    /// `webhookd.secrets.key` in the state directory; every daemon of the queue needs the same).
    pub(crate) fn secrets_key_path(&self) -> PathBuf {
        if let Some(p) = &self.secrets_key_file {
            return p.clone();
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            let p = Path::new(&dir).join("secrets-key");
            if p.exists() {
                return p;
            }
        }
        match &self.db {
            Database::Sqlite(db) => {
                let mut name = db.as_os_str().to_owned();
                name.push(".secrets.key");
                PathBuf::from(name)
            }
            Database::Postgres(_) => super::default_state_dir().join("webhookd.secrets.key"),
        }
    }
}

impl Config {
    /// The config file's endpoints and `alert_url` whose URL is an address the egress policy
    /// denies, each as a line to log. Not a configuration error: an upgrade that brought the
    /// policy must not stop every command and delivery for one internal receiver; its attempts
    /// fail with `egress_denied` until it is opened (`egress.allow`, `allow_private`).
    pub(crate) fn egress_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, e) in self.endpoints.iter().filter(|(_, e)| !e.managed) {
            if let Err(d) = self.egress.check_url(&e.url, e.route.allow_private) {
                out.push(format!(
                    "endpoints.{name}.url: blocked by egress policy: {d}; its messages fail until it is opened (egress.allow, or allow_private = true for this endpoint)"
                ));
            }
        }
        if let Some(a) = &self.alerts {
            if let Err(d) = self.egress.check_url(&a.url, false) {
                out.push(format!(
                    "alert_url: blocked by egress policy: {d}; no alert is sent until it is opened (egress.allow)"
                ));
            }
        }
        out
    }
}

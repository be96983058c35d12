//! Small sections of the config file: `[secrets]` (where the key of endpoint secrets is) and
//! `[origins]` (the policy of plain URLs' origins).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, Database};
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

impl Config {
    /// The secrets key: `secrets.key_file`, else the systemd credential `secrets-key` when
    /// there is one, else `<db>.secrets.key` beside the database.
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
        let Database::Sqlite(db) = &self.db;
        let mut name = db.as_os_str().to_owned();
        name.push(".secrets.key");
        PathBuf::from(name)
    }
}

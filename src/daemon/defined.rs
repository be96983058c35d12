//! The endpoints stored in the database, as the daemon follows them: read in full at start,
//! on SIGHUP and when a secret's overlap ends; otherwise only the rows changed since the
//! generation it holds, so that a change costs what it changed, not what the database holds.

use std::time::{Duration, Instant};

use super::dispatcher::Dispatcher;
use crate::config::Config;
use crate::endpoint::secrets::SecretsKey;
use crate::ops::defined::{apply, merge, Keys, Merged};
use crate::store::DefinedRow;

/// The API's copy of the configuration follows changed endpoints at most this often (a full
/// copy costs in proportion to all endpoints; the API reads a just-added endpoint from the
/// database).
pub(super) const API_SYNC_EVERY: Duration = Duration::from_millis(250);

impl Dispatcher {
    /// Follows the stored endpoints when they changed (a definition, a pause, new secrets) or a
    /// secret's overlap ended, and applies them as a reload applies the config's.
    pub(super) fn refresh_defined(&mut self, now: i64) {
        // Also the rows a missed notice or a failed look left unknown (at least every 5 s).
        self.discover(now);
        let generation = match self.queue.generation() {
            Ok(g) => g,
            Err(e) => return log::warn!("{e}"),
        };
        if self.next_expiry.is_some_and(|t| now >= t) {
            return self.reload_defined(now);
        }
        if generation == self.generation {
            return;
        }
        let rows = match self.queue.definitions_since(self.generation) {
            Ok(rows) => rows,
            Err(e) => return log::warn!("{e}"),
        };
        let keys = keys_for(&rows, &self.config);
        let mut m = Merged::default();
        let names = apply(&mut self.config.endpoints, rows, &keys, now, &mut m);
        for broken in &m.broken {
            log::error!("{broken}; its messages wait until this is fixed");
        }
        if let Err(e) = self.queue.ensure_endpoints(&names) {
            // The old definitions stay in force until a full read succeeds.
            log::error!("endpoints in the database not applied: {e}");
            return self.reload_defined(now);
        }
        self.discover(now);
        let changed = self
            .endpoints
            .reconfigure_named(&names, &self.config.endpoints);
        self.generation = generation;
        self.next_expiry = match (self.next_expiry, m.next_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !changed.is_empty() {
            log::info!("endpoints in the database changed: {}", changed.join(", "));
        }
        self.api_stale = true;
    }

    /// Reads every stored endpoint again and applies them as a reload does.
    fn reload_defined(&mut self, now: i64) {
        let (merged, generation) = match load_defined(self.queue.as_ref(), &self.config, now) {
            Ok(m) => m,
            Err(e) => return log::error!("endpoints in the database not applied: {e}"),
        };
        let mut new = self.config.clone();
        new.endpoints = merged.endpoints;
        let mut applied = Vec::new();
        if self.reconfigure_endpoints(&mut new, &mut applied) {
            self.generation = generation;
            self.next_expiry = merged.next_expiry;
            if !applied.is_empty() {
                log::info!("endpoints in the database changed: {}", applied.join("; "));
            }
            self.config = new;
            self.api_stale = true;
        }
    }

    /// Gives the API the endpoints in force, at most every `API_SYNC_EVERY`.
    pub(super) fn sync_api(&mut self, last: &mut Instant) {
        if self.api_stale && last.elapsed() >= API_SYNC_EVERY {
            *last = Instant::now();
            self.api_stale = false;
            self.api_config.set_endpoints(&self.config);
        }
    }
}

/// How the secrets of `rows` are opened: with the secrets key when any has secrets.
fn keys_for(rows: &[DefinedRow], config: &Config) -> Keys {
    if rows.iter().any(|r| r.secrets.is_some()) {
        match SecretsKey::load(&config.secrets_key_path(), false) {
            Ok(k) => Keys::Open(k),
            Err(e) => Keys::Missing(e.to_string()),
        }
    } else {
        Keys::Ignore
    }
}

/// The config's endpoints with the stored ones merged in (their secrets opened), and the
/// generation they were read at. A stored endpoint that cannot be used (its secrets do not open)
/// is left out, with an error in the log: its messages wait, none goes out unsigned.
///
/// # Errors
/// A name in the config file and the database (`InvalidConfig`), the store's.
pub(super) fn load_defined(
    queue: &dyn crate::store::Queue,
    config: &Config,
    now: i64,
) -> crate::error::Result<(Merged, i64)> {
    let generation = queue.generation()?;
    let rows = queue.definitions()?;
    let keys = keys_for(&rows, config);
    let merged = merge(config, rows, &keys, now)?;
    for broken in &merged.broken {
        log::error!("{broken}; its messages wait until this is fixed");
    }
    Ok((merged, generation))
}

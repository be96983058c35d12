//! `webhookd copy --from PATH.db [--to URL]`: an SQLite queue copied into PostgreSQL.

use std::path::Path;

use super::out;
use crate::config::{Config, Database};
use crate::error::{exit, Error, Result};

/// Runs `copy`: `--to`, else the configuration's `db`, must be a PostgreSQL database.
///
/// # Errors
/// `Usage` (no PostgreSQL target, `--from` not a file path), `AlreadyRunning` (a daemon on the
/// SQLite file), the stores' errors.
pub(crate) fn run(config: &Config, from: &Path, to: Option<&str>, json: bool) -> Result<u8> {
    let usage = |message: String| Error::Usage { message };
    let target = match to {
        Some(url) => Database::from_path(url.into())
            .map_err(|m| usage(format!("--to: {m}")))?
            .with_options(
                config.db_password_file.as_deref(),
                config.db_ca_file.as_deref(),
                config.lease,
            )
            .map_err(|(key, m)| usage(format!("--to: {key} {m}")))?,
        None => config.db.clone(),
    };
    let Database::Postgres(pg) = &target else {
        return Err(usage(
            "--to: give the PostgreSQL database to copy into (postgres://...), or set db to it in the config"
                .into(),
        ));
    };
    if !matches!(
        Database::from_path(from.to_path_buf()),
        Ok(Database::Sqlite(_))
    ) {
        return Err(usage(format!(
            "--from: {} is not an SQLite file path",
            from.display()
        )));
    }
    let copied = crate::store::copy::copy(from, pg, |read| {
        if read % 50_000 < 500 {
            log::info!("copy: {read} messages read");
        }
    })?;
    if json {
        out(serde_json::to_string(&copied).expect("a view serializes"))?;
    } else {
        out(format!(
            "copied {} from {} to {}: {} ({} already there), {}, {}",
            crate::text::count(copied.messages, "message"),
            from.display(),
            target,
            crate::text::count(copied.attempts, "attempt"),
            copied.messages_skipped,
            crate::text::count(copied.endpoints, "new endpoint"),
            crate::text::count(copied.events, "event"),
        ))?;
    }
    Ok(exit::OK)
}

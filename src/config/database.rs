//! Where the queue is kept: `db`, `--db`, `WEBHOOKD_DB`; for PostgreSQL also `db_password_file`
//! and `db_ca_file`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Database file name inside the state directory.
const DB_FILE_NAME: &str = "webhookd.db";

/// How long a claim stays its daemon's without a renewal, unless `lease` says otherwise.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Where the queue is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Database {
    /// An SQLite file (with its `-wal`, `-shm`, `.lock` and `.sock` beside it).
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by any number of daemons.
    Postgres(Postgres),
}

/// A PostgreSQL database and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Postgres {
    /// The URL as given (`postgres://user@host:5432/db?sslmode=require`), without a password.
    pub(crate) url: String,
    /// The file holding the password (`db_password_file`, else the systemd credential
    /// `db-password` when there is one).
    pub(crate) password_file: Option<PathBuf>,
    /// The CA certificates that sign the server's certificate (`db_ca_file`); else the system's.
    pub(crate) ca_file: Option<PathBuf>,
    /// `lease`: how long a claim is its daemon's without a renewal.
    pub(crate) lease: Duration,
}

impl Database {
    /// The database a `db` value names: a `postgres://` (or `postgresql://`) URL, else a file
    /// path. Another URL is refused: taking it for a relative path would make a directory named
    /// after its scheme and a queue nobody meant.
    ///
    /// # Errors
    /// The reason, for the caller to name the option.
    pub(crate) fn from_path(path: PathBuf) -> Result<Database, String> {
        let text = path.to_string_lossy();
        if text.is_empty() {
            return Err("the path is empty".into());
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if matches!(scheme, "postgres" | "postgresql") {
                return Postgres::parse(&text).map(Database::Postgres);
            }
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                return Err(format!(
                    "{scheme}:// is a URL, and not one this version knows: give a file path (SQLite) or a postgres:// URL"
                ));
            }
        }
        Ok(Database::Sqlite(path))
    }

    /// What names this database to a daemon's API (`Webhookd-Db`): an SQLite file's resolved
    /// path (`None` while it does not exist), a PostgreSQL URL.
    pub(crate) fn identity(&self) -> Option<String> {
        match self {
            Database::Sqlite(path) => std::fs::canonicalize(path)
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned)),
            Database::Postgres(pg) => Some(pg.url.clone()),
        }
    }

    /// Applies `db_password_file`, `db_ca_file` and `lease` to a PostgreSQL database.
    ///
    /// # Errors
    /// The key and the reason, when one is set for an SQLite file.
    pub(crate) fn with_options(
        self,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
        lease: Duration,
    ) -> Result<Database, (&'static str, String)> {
        match self {
            Database::Postgres(mut pg) => {
                pg.lease = lease;
                pg.password_file = password_file
                    .map(Path::to_path_buf)
                    .or_else(credential_password);
                pg.ca_file = ca_file.map(Path::to_path_buf);
                Ok(Database::Postgres(pg))
            }
            Database::Sqlite(_) if password_file.is_some() => Err((
                "db_password_file",
                "is set, but db is an SQLite file (it is for a postgres:// db)".into(),
            )),
            Database::Sqlite(_) if ca_file.is_some() => Err((
                "db_ca_file",
                "is set, but db is an SQLite file (it is for a postgres:// db)".into(),
            )),
            sqlite => Ok(sqlite),
        }
    }
}

/// The systemd credential `db-password` (`LoadCredential=db-password:...`), if there is one.
fn credential_password() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let p = Path::new(&dir).join("db-password");
    p.exists().then_some(p)
}

impl Postgres {
    /// Checks a URL: it parses, and it holds no password (a password in a URL ends up in `ps`,
    /// shell history and logs; it belongs in `db_password_file` or a systemd credential).
    fn parse(url: &str) -> Result<Postgres, String> {
        let parsed: postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if parsed.get_password().is_some() {
            return Err(
                "the URL holds a password: put it in the file db_password_file names (or the systemd credential db-password), not in the URL"
                    .into(),
            );
        }
        if parsed.get_dbname().is_none() {
            return Err(
                "the URL names no database: give one, as in postgres://webhookd@db.example:5432/webhookd"
                    .into(),
            );
        }
        Ok(Postgres {
            url: url.to_owned(),
            password_file: None,
            ca_file: None,
            lease: DEFAULT_LEASE,
        })
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(pg) => f.write_str(&pg.url),
        }
    }
}

/// The directory of the default database: the state directory (see [`default_db_path`]).
pub(crate) fn default_state_dir() -> PathBuf {
    let db = default_db_path();
    db.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where the database goes when neither the config nor `--db` names it: `$STATE_DIRECTORY` (set by
/// systemd's `StateDirectory=`), else `$XDG_STATE_HOME/webhookd`, else `~/.local/state/webhookd`,
/// else the current directory.
pub(crate) fn default_db_path() -> PathBuf {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // Several directories are separated by ':'; the first is ours.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if !first.is_empty() {
            return PathBuf::from(first).join(DB_FILE_NAME);
        }
    }
    if let Some(dir) = env_dir("XDG_STATE_HOME") {
        return dir.join("webhookd").join(DB_FILE_NAME);
    }
    if let Some(home) = env_dir("HOME") {
        return home.join(".local/state/webhookd").join(DB_FILE_NAME);
    }
    PathBuf::from(DB_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_db_is_a_file_path_or_a_postgres_url() {
        for ok in [
            "webhookd.db",
            "/var/lib/webhookd/webhookd.db",
            "./a:b.db",
            "dir/x://y",
        ] {
            assert!(
                matches!(Database::from_path(ok.into()), Ok(Database::Sqlite(_))),
                "{ok}"
            );
        }
        for ok in [
            "postgres://webhookd@db.example:5432/webhookd?sslmode=require",
            "postgresql://u@/webhookd?host=/run/postgresql",
        ] {
            assert!(
                matches!(Database::from_path(ok.into()), Ok(Database::Postgres(_))),
                "{ok}"
            );
        }
        for (bad, needle) in [
            ("", "empty"),
            ("postgres://u:secret@db/webhookd", "holds a password"),
            ("postgres://u@db:5432", "names no database"),
            ("postgres://u@db:x/w", "not a PostgreSQL URL"),
            ("sqlite://x.db", "sqlite:// is a URL"),
            ("mysql://db/x", "mysql:// is a URL"),
        ] {
            let e = Database::from_path(bad.into()).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains("secret"), "{bad}: the password printed: {e}");
        }
    }
}

//! Where the queue is kept: `db`, `--db`, `WEBHOOKD_DB`.

use std::path::PathBuf;

/// Where the queue is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Database {
    /// An SQLite file (with its `-wal`, `-shm`, `.lock` and `.sock` beside it).
    Sqlite(PathBuf),
}

impl Database {
    /// The database a `db` value names: a file path. A URL (`postgres://...`) is refused: this
    /// version keeps its queue in an SQLite file only, and taking a URL for a relative path would
    /// make a directory named `postgres:` and a queue nobody meant.
    ///
    /// # Errors
    /// The reason, for the caller to name the option.
    pub(crate) fn from_path(path: PathBuf) -> Result<Database, String> {
        let text = path.to_string_lossy();
        if text.is_empty() {
            return Err("the path is empty".into());
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                return Err(format!(
                    "{scheme}:// is a URL: this version keeps its queue in an SQLite file; give a file path"
                ));
            }
        }
        Ok(Database::Sqlite(path))
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_db_is_a_file_path_not_a_url() {
        for ok in [
            "webhookd.db",
            "/var/lib/webhookd/webhookd.db",
            "./a:b.db",
            "dir/x://y",
        ] {
            assert!(Database::from_path(ok.into()).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("postgres://u@db:5432/webhookd", "postgres:// is a URL"),
            ("postgresql://db/webhookd", "postgresql:// is a URL"),
            ("sqlite://x.db", "sqlite:// is a URL"),
        ] {
            let e = Database::from_path(bad.into()).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}

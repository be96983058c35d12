//! The SQLite store: one file (WAL mode) and the files beside it (`coord`).
//!
//! # Durability
//! The database is in WAL mode. Every command that accepts or changes operator data (`enqueue`,
//! `dlq retry`, `dlq delete`) commits with `synchronous=FULL`: the WAL is fsynced before the uuid is
//! printed, so an accepted message survives `kill -9` and a power cut.
//!
//! The daemon opens its connection with `synchronous=NORMAL`: its commits (claims, attempt
//! outcomes, retention purges) reach the WAL at once but are fsynced only at checkpoints. A power cut
//! can therefore lose the daemon's last few commits, and only those: the WAL is one sequential file
//! and any later FULL commit by a CLI syncs everything before it. Losing a claim puts the message
//! back to pending; losing a "delivered" or "dead" outcome makes the message be attempted again. So
//! the relaxation can cause a duplicate delivery, never a lost message. The daemon never inserts
//! messages, so it cannot lose one.
//!
//! # One daemon per database, leased claims
//! The daemon holds the database's lock (`coord`), so when it starts it knows that the owner of
//! any claim still in flight is gone, and takes them all over at once. Claims still record their
//! owner and a lease (renewed while the attempt runs), as every backend does, and
//! `take_over_expired` is the rule a backend shared by several daemons follows.

mod bulk;
pub(in crate::store) mod codes;
pub(crate) mod coord;
mod defined;
mod endpoints;
mod events;
mod export;
mod insert;
mod inspect;
mod list;
mod queue;
mod schema;
#[cfg(test)]
pub(crate) mod tests;
mod traits;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub(crate) use schema::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::store::{Access, DaemonState};

/// How a statement waits for another process's write lock: SQLite's own busy timeout sleeps 1, 2,
/// 5, 10, ... 100 ms between tries, which turns every collision between the daemon and an enqueue
/// into milliseconds of latency. Write transactions here last well under a millisecond, so this
/// handler retries every 50 us for the first 50 ms, then every millisecond up to about 10 s.
const BUSY_FAST_TRIES: i32 = 1_000;
const BUSY_MAX_TRIES: i32 = BUSY_FAST_TRIES + 10_000;

/// WAL pages after which a CLI commit checkpoints inline (only matters when no daemon runs).
const CLI_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// After a checkpoint resets the WAL, its file is truncated to this many bytes.
const WAL_SIZE_LIMIT: u64 = 64 << 20;

/// How far a checkpoint got: pages in the WAL and pages copied into the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint {
    pub(crate) wal_pages: i64,
    pub(crate) copied_pages: i64,
}

impl Store {
    /// Copies WAL pages into the database. `restart` also waits for writers and readers so that
    /// the next writer starts the WAL from its beginning (bounding its size).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn checkpoint(&self, restart: bool) -> Result<Checkpoint> {
        let sql = if restart {
            "PRAGMA wal_checkpoint(RESTART)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        self.conn
            .query_row(sql, [], |r| {
                Ok(Checkpoint {
                    wal_pages: r.get(1)?,
                    copied_pages: r.get(2)?,
                })
            })
            .map_err(|e| self.err("checkpoint", e))
    }
}

fn busy_handler(tries: i32) -> bool {
    if tries < BUSY_FAST_TRIES {
        std::thread::sleep(Duration::from_micros(50));
        true
    } else if tries < BUSY_MAX_TRIES {
        std::thread::sleep(Duration::from_millis(1));
        true
    } else {
        false
    }
}

/// How long opening a database keeps trying while another process creates or migrates it.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// An open database.
pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
    /// The daemon's instance id, recorded with its claims (0 for commands, which claim nothing).
    owner: i64,
    /// `PRAGMA data_version` when `changed` last looked.
    last_version: Option<i64>,
}

impl Store {
    /// Opens (and for `Write`/`Daemon` creates) the database at `path`, refuses files that are not
    /// webhookd databases without modifying them, and migrates the schema (`Read` never does).
    ///
    /// Several processes may open a database that does not exist yet at the same moment (a
    /// deploy, a cron burst): one creates and migrates it, the others wait for that and retry.
    ///
    /// # Errors
    /// `NoDatabase` (Read: missing or empty), `OldSchema` (Read), `NotOurDb`, `NewerSchema`,
    /// `DbPermission`, `OpenDb`, `Db`, `Busy` after `OPEN_PATIENCE`.
    pub(crate) fn open(path: &Path, access: Access) -> Result<Store> {
        let deadline = std::time::Instant::now() + OPEN_PATIENCE;
        loop {
            match Store::try_open(path, access) {
                Err(Error::Busy { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2 + fastrand::u64(0..8)));
                }
                result => return result,
            }
        }
    }

    fn try_open(path: &Path, access: Access) -> Result<Store> {
        let exists = path.exists();
        if !exists {
            if matches!(access, Access::Read | Access::Modify) {
                return Err(Error::NoDatabase {
                    path: path.to_path_buf(),
                    empty: false,
                });
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        } else {
            check_header(path)?;
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if matches!(access, Access::Write | Access::Daemon) {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = match Connection::open_with_flags(path, flags) {
            // A reader without write permission still reads.
            Err(_) if access == Access::Read => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            c => c,
        }
        .map_err(|source| open_error(path, source))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            owner: 0,
            last_version: None,
        };
        store
            .conn
            .busy_handler(Some(busy_handler))
            .map_err(|e| store.err("set busy handler", e))?;
        // Identify before changing anything: setting WAL mode would rewrite the header of another
        // application's database.
        let identity = schema::check_identity(&store)?;
        // Only while a daemon runs: it keeps the WAL index alive and checkpoints. Without one, the
        // last connection must checkpoint as it closes, or every later open would replay (scan) a
        // WAL that keeps growing.
        if access != Access::Daemon && matches!(coord::probe(path), DaemonState::Running { .. }) {
            store
                .conn
                .set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    true,
                )
                .map_err(|e| store.err("set no checkpoint on close", e))?;
        }
        if access == Access::Modify && identity == schema::Identity::Empty {
            return Err(Error::NoDatabase {
                path: path.to_path_buf(),
                empty: true,
            });
        }
        if access == Access::Read {
            match identity {
                schema::Identity::Empty => {
                    return Err(Error::NoDatabase {
                        path: path.to_path_buf(),
                        empty: true,
                    })
                }
                schema::Identity::Ours { version } if version < schema::SCHEMA_VERSION => {
                    return Err(Error::OldSchema {
                        path: path.to_path_buf(),
                        found: version,
                        supported: schema::SCHEMA_VERSION,
                    })
                }
                schema::Identity::Ours { .. } => {}
            }
            store
                .conn
                .execute_batch("PRAGMA query_only=ON; PRAGMA temp_store=MEMORY;")
                .map_err(|e| store.err("set pragmas", e))?;
            return Ok(store);
        }
        // The daemon checkpoints from its own thread (see `checkpoint`), so its connections never
        // checkpoint inline; CLI connections keep a large threshold as a safety net for when no
        // daemon runs, and skip the checkpoint SQLite otherwise does when the last connection
        // closes (two extra fsyncs in every `enqueue`)...
        let (sync, autocheckpoint) = match access {
            Access::Daemon => ("NORMAL", 0),
            Access::Write | Access::Modify | Access::Read => ("FULL", CLI_AUTOCHECKPOINT_PAGES),
        };
        // Switching to WAL takes an exclusive lock: only the process that creates the file does
        // it (others racing with it get `Busy` and try again).
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| store.err("read journal mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            store
                .conn
                .execute_batch("PRAGMA journal_mode=WAL;")
                .map_err(|e| store.err("set WAL mode", e))?;
        }
        store
            .conn
            .execute_batch(&format!(
                "PRAGMA synchronous={sync}; PRAGMA temp_store=MEMORY; \
                 PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint={autocheckpoint}; \
                 PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
            ))
            .map_err(|e| store.err("set pragmas", e))?;
        schema::migrate(&mut store)?;
        Ok(store)
    }

    /// Maps a SQLite error to `Busy` (lock timeout), `DbPermission` or `Db`, naming the operation.
    fn err(&self, op: &'static str, source: rusqlite::Error) -> Error {
        wrap(&self.path, op, source)
    }

    /// The daemon's instance id: its claims record it.
    pub(crate) fn set_owner(&mut self, owner: i64) {
        self.owner = owner;
    }
}

fn open_error(path: &Path, source: rusqlite::Error) -> Error {
    let denied = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
    if denied {
        Error::DbPermission {
            path: path.to_path_buf(),
            source: source.into(),
        }
    } else {
        Error::OpenDb {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// Refuses a non-empty file that does not start with the SQLite header, reading only.
fn check_header(path: &Path) -> Result<()> {
    let mut header = [0u8; 16];
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::DbPermission {
                path: path.to_path_buf(),
                source: e.into(),
            })
        }
        Err(e) => {
            return Err(Error::ReadInput {
                what: path.display().to_string(),
                source: e,
            })
        }
    };
    if path.is_dir() {
        return Err(Error::NotOurDb {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let n = file.read(&mut header).map_err(|source| Error::ReadInput {
        what: path.display().to_string(),
        source,
    })?;
    if n == 0 {
        return Ok(());
    }
    if n < header.len() || &header != b"SQLite format 3\0" {
        return Err(Error::NotOurDb {
            path: path.to_path_buf(),
            reason: "not an SQLite file".into(),
        });
    }
    Ok(())
}

/// Like `Store::err` for code that holds a transaction borrowed from the store.
fn wrap(path: &std::path::Path, op: &'static str, source: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, PermissionDenied, ReadOnly,
    };
    match source.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => Error::Busy {
            path: path.to_path_buf(),
            op,
        },
        Some(ReadOnly | PermissionDenied | CannotOpen) => Error::DbPermission {
            path: path.to_path_buf(),
            source: source.into(),
        },
        _ => Error::Db {
            path: path.to_path_buf(),
            op,
            source: source.into(),
        },
    }
}

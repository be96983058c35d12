//! The SQLite queue: the only module that writes SQL.
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
//! # One daemon per database
//! `run` holds an exclusive `flock` on `<db>.lock` (which holds its pid) for its whole life. The
//! kernel drops the lock when the process dies, even by SIGKILL, so `status` never trusts a stale
//! pid: it asks for the lock, and only a held lock means "running".

mod bulk;
mod codes;
mod endpoints;
mod inspect;
mod list;
mod queue;
mod schema;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

pub(crate) use crate::model::State;
pub(crate) use crate::model::{Claim, Health};
pub(crate) use bulk::{Action, RetryEdit};
pub(crate) use endpoints::{EndpointRow, Lane};
pub(crate) use inspect::{parse_uuid, Attempt, Counts, MessageView};
pub(crate) use queue::{Claimed, Cycle, Enqueued, Outcome, OutcomeKind};

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

/// Who opens the database, which decides durability and whether it may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A CLI command that writes (enqueue, dlq retry/delete): creates the file if missing,
    /// `synchronous=FULL`.
    Write,
    /// A CLI command that only reads: the file must exist and be a webhookd database of the
    /// current schema; nothing is created, migrated or written (`query_only`).
    Read,
    /// The daemon: creates the file if missing, `synchronous=NORMAL` (see the module doc).
    Daemon,
}

/// How long opening a database keeps trying while another process creates or migrates it.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// An open database.
pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
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
            if access == Access::Read {
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
        if access != Access::Read {
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
        if access != Access::Daemon
            && matches!(DaemonLock::probe(path), DaemonState::Running { .. })
        {
            store
                .conn
                .set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    true,
                )
                .map_err(|e| store.err("set no checkpoint on close", e))?;
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
            Access::Write | Access::Read => ("FULL", CLI_AUTOCHECKPOINT_PAGES),
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
        queue::wrap(&self.path, op, source)
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

/// The daemon's claim on a database: an exclusive `flock` on `<db>.lock`, released by the kernel
/// when the process exits in any way.
pub(crate) struct DaemonLock {
    _file: File,
}

/// Whether a daemon holds the lock of the database at `db`, and its pid if so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DaemonState {
    Running { pid: Option<u32> },
    Stopped,
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

impl DaemonLock {
    /// Takes the daemon lock for `db` and writes our pid into it.
    ///
    /// # Errors
    /// `AlreadyRunning` when another process holds it, `Lock` on I/O errors.
    pub(crate) fn acquire(db: &Path) -> Result<DaemonLock> {
        let path = lock_path(db);
        let io = |source| Error::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(Error::AlreadyRunning {
                    path: db.to_path_buf(),
                    pid: pid.trim().to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DaemonLock { _file: file })
    }

    /// Asks the kernel whether a daemon holds the lock for `db`. Never trusts a stale pid.
    pub(crate) fn probe(db: &Path) -> DaemonState {
        let Ok(mut file) = File::open(lock_path(db)) else {
            return DaemonState::Stopped;
        };
        match file.try_lock_shared() {
            // Only a lock held by someone else means "running"; any other error does not.
            Ok(()) | Err(std::fs::TryLockError::Error(_)) => DaemonState::Stopped,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                DaemonState::Running {
                    pid: pid.trim().parse().ok(),
                }
            }
        }
    }
}

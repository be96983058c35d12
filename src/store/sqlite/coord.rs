//! How processes sharing one SQLite file find each other, with files beside it:
//! - `<db>.lock`: the daemon holds an exclusive `flock` on it (with its pid inside) for its whole
//!   life; the kernel drops it when the process dies, even by SIGKILL, so `status` never trusts a
//!   stale pid: only a held lock means "running". One daemon per file.
//! - `<db>.sock`: the daemon's wake-up datagram socket; a command that committed sends one byte
//!   (`w`: new messages, `r`: messages made due again, `e`: endpoints) so new messages are claimed at once, not at the next poll.
//! - the WAL checkpoint thread, which copies the WAL into the database off the delivery path.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

use super::Store;
use crate::error::{Error, Result};
use crate::store::{Access, Background, Coordination, DaemonState, Notice, Presence, Registration};
use crate::threads::spawn;

/// How often the checkpoint thread copies the WAL into the database, and the WAL size (pages of
/// 4 KiB) past which it also forces the WAL back to its start. Checkpointing inline, as SQLite does
/// by default, stalls whichever commit crosses the threshold for tens of milliseconds.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// While the WAL stays as it was (nothing written), the interval doubles up to this: an idle
/// daemon wakes for it about once a second instead of ten times.
const CHECKPOINT_IDLE_INTERVAL: Duration = Duration::from_secs(1);
const CHECKPOINT_RESTART_PAGES: i64 = 8_192;

/// The files beside the database at `db`.
pub(crate) struct Files {
    db: PathBuf,
}

impl Files {
    pub(crate) fn new(db: &Path) -> Files {
        Files {
            db: db.to_path_buf(),
        }
    }
}

fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

/// The daemon's claim on a database: the lock file, locked.
struct Lock {
    _file: File,
}

impl Registration for Lock {}

/// Asks the kernel whether a daemon holds the lock for `db`. Never trusts a stale pid.
pub(in crate::store) fn probe(db: &Path) -> DaemonState {
    let Ok(mut file) = File::open(beside(db, ".lock")) else {
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

impl Coordination for Files {
    fn register_daemon(&self, _owner: i64) -> Result<Box<dyn Registration>> {
        let path = beside(&self.db, ".lock");
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
                    path: self.db.clone(),
                    pid: pid.trim().to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Box::new(Lock { _file: file }))
    }

    fn daemon(&self) -> DaemonState {
        probe(&self.db)
    }

    fn presence(&self) -> Presence {
        match Store::open(&self.db, Access::Read) {
            Ok(_) => Presence::Ready,
            Err(Error::NoDatabase { empty: true, .. }) => Presence::Empty,
            Err(Error::NoDatabase { empty: false, .. }) => Presence::Missing,
            // Something is there (another format, a newer schema): the commands say what.
            Err(_) => Presence::Ready,
        }
    }

    fn notify(&self, notice: Notice) {
        if let Ok(sock) = UnixDatagram::unbound() {
            let _ = sock.set_nonblocking(true);
            let byte: &[u8] = match notice {
                Notice::Messages => b"w",
                Notice::Requeued => b"r",
                Notice::Endpoints => b"e",
            };
            let _ = sock.send_to(byte, beside(&self.db, ".sock"));
        }
    }

    fn listen(&self, tx: Sender<Notice>) -> Result<Box<dyn Background>> {
        Ok(Box::new(WakeThread::start(&self.db, tx)?))
    }

    fn maintain(&self) -> Result<Box<dyn Background>> {
        Ok(Box::new(Checkpointer::start(&self.db)?))
    }
}

/// Receives wake-up datagrams on `<db>.sock`.
struct WakeThread {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WakeThread {
    fn start(db: &Path, tx: Sender<Notice>) -> Result<WakeThread> {
        let path = beside(db, ".sock");
        let stop = Arc::new(AtomicBool::new(false));
        // The daemon holds the lock, so a socket file left here is a dead daemon's.
        let _ = std::fs::remove_file(&path);
        let sock = match UnixDatagram::bind(&path) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "cannot bind wake-up socket {}: {e}; new messages are found by polling",
                    path.display()
                );
                return Ok(WakeThread {
                    path,
                    stop,
                    thread: None,
                });
            }
        };
        // The timeout only bounds how long `stop` can wait if its own datagram is lost.
        let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
        let flag = Arc::clone(&stop);
        let thread = spawn("webhookd-wake", move || {
            let mut buf = [0u8; 16];
            while !flag.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let notice = match &buf[..n] {
                    b"e" => Notice::Endpoints,
                    b"r" => Notice::Requeued,
                    _ => Notice::Messages,
                };
                if tx.send(notice).is_err() {
                    return;
                }
            }
        })?;
        Ok(WakeThread {
            path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Background for WakeThread {
    fn hears(&self) -> bool {
        self.thread.is_some()
    }

    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread {
            if let Ok(s) = UnixDatagram::unbound() {
                let _ = s.send_to(b"q", &self.path);
            }
            if thread.join().is_err() {
                log::error!("webhookd-wake panicked");
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Checkpoints the WAL from its own connection and thread, off the delivery path.
struct Checkpointer {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(db: &Path) -> Result<Checkpointer> {
        let store = Store::open(db, Access::Daemon)?;
        let (stop, stopped) = bounded::<()>(0);
        let thread = spawn("webhookd-checkpoint", move || {
            let mut interval = CHECKPOINT_INTERVAL;
            let mut last = None;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                let done = store.checkpoint(false);
                let seen = done.as_ref().ok().map(|c| (c.wal_pages, c.copied_pages));
                interval = if seen.is_some() && seen == last {
                    (interval * 2).min(CHECKPOINT_IDLE_INTERVAL)
                } else {
                    CHECKPOINT_INTERVAL
                };
                last = seen;
                match done {
                    Ok(c) if c.wal_pages >= CHECKPOINT_RESTART_PAGES => {
                        log::debug!("WAL at {} pages: restarting it", c.wal_pages);
                        if let Err(e) = store.checkpoint(true) {
                            log::warn!("{e}");
                        }
                    }
                    Ok(c) => log::trace!("checkpoint {}/{} pages", c.copied_pages, c.wal_pages),
                    Err(e) => log::warn!("{e}"),
                }
            }
        })?;
        Ok(Checkpointer { stop, thread })
    }
}

impl Background for Checkpointer {
    fn stop(self: Box<Self>) {
        drop(self.stop);
        if self.thread.join().is_err() {
            log::error!("webhookd-checkpoint panicked");
        }
    }
}

//! How daemons sharing one PostgreSQL database find each other:
//! - the registry of daemons (`registry`);
//! - `LISTEN webhookd` / `NOTIFY webhookd, 'm' | 'r' | 'e'`: the wake-ups that SQLite sends as
//!   datagrams (new messages, messages made due again, endpoints). A lost notification costs
//!   latency only: the dispatcher looks at the whole queue every few seconds anyway.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use postgres::fallible_iterator::FallibleIterator;

use super::Store;
use crate::config::database::Postgres;
use crate::error::{Error, Result};
use crate::store::{Access, Background, Coordination, DaemonState, Notice, Presence, Registration};
use crate::threads::spawn;

/// How long the listener waits for a notification before it checks whether to stop.
const LISTEN_TICK: Duration = Duration::from_millis(500);
/// The longest pause between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The processes sharing the database at `pg`.
pub(crate) struct Shared {
    pg: Postgres,
    name: PathBuf,
}

impl Shared {
    pub(crate) fn new(pg: &Postgres) -> Shared {
        Shared {
            pg: pg.clone(),
            name: PathBuf::from(&pg.url),
        }
    }

    /// The daemons seen within two leases, oldest first.
    ///
    /// # Errors
    /// As `Store::open` (Read).
    pub(crate) fn daemons(&self) -> Result<Vec<super::registry::DaemonRow>> {
        let store = Store::open(&self.pg, Access::Read)?;
        super::registry::daemons(&store)
    }
}

impl Coordination for Shared {
    fn register_daemon(&self, owner: i64) -> Result<Box<dyn Registration>> {
        let (registration, requeued) = super::registry::register(&self.pg, owner)?;
        if requeued > 0 {
            self.notify(Notice::Requeued);
        }
        Ok(registration)
    }

    fn daemon(&self) -> DaemonState {
        match self.daemons() {
            Ok(rows) if rows.is_empty() => DaemonState::Stopped,
            Ok(rows) => DaemonState::Running {
                pid: rows
                    .first()
                    .filter(|r| r.host == crate::store::hostname())
                    .and_then(|r| u32::try_from(r.pid).ok()),
            },
            Err(_) => DaemonState::Stopped,
        }
    }

    fn presence(&self) -> Presence {
        match Store::open(&self.pg, Access::Read) {
            Ok(_) => Presence::Ready,
            Err(Error::NoDatabase { empty: true, .. }) => Presence::Empty,
            Err(_) => Presence::Ready,
        }
    }

    fn notify(&self, notice: Notice) {
        let payload = match notice {
            // The transaction that stored them notified (`Inserter::commit`).
            Notice::Messages => return,
            Notice::Requeued => "r",
            Notice::Endpoints => "e",
        };
        let sent = super::connect(&self.pg, &self.name).and_then(|mut c| {
            c.execute("SELECT pg_notify('webhookd', $1)", &[&payload])
                .map_err(|e| super::wrap(&self.name, "notify", e))
        });
        if let Err(e) = sent {
            log::debug!("{e}");
        }
    }

    fn listen(&self, tx: Sender<Notice>) -> Result<Box<dyn Background>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (pg, name) = (self.pg.clone(), self.name.clone());
        let thread = spawn("webhookd-listen", move || listen(&pg, &name, &flag, &tx))?;
        Ok(Box::new(Listener {
            stop,
            thread: Some(thread),
        }))
    }

    fn maintain(&self) -> Result<Box<dyn Background>> {
        // PostgreSQL maintains itself (autovacuum); retention is the dispatcher's.
        Ok(Box::new(Listener {
            stop: Arc::new(AtomicBool::new(true)),
            thread: None,
        }))
    }
}

/// Forwards notifications to `tx` until `stop`, reconnecting with backoff. After a reconnect
/// it asks for a full look: notifications sent meanwhile were lost.
fn listen(pg: &Postgres, name: &std::path::Path, stop: &AtomicBool, tx: &Sender<Notice>) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let mut client = match super::connect(pg, name).and_then(|mut c| {
            c.batch_execute("LISTEN webhookd")
                .map_err(|e| super::wrap(name, "listen", e))?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    log::warn!("{e}; retrying");
                    failing = true;
                }
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(LISTEN_TICK.min(backoff));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if failing {
            log::info!("database {}: listening again", name.display());
            failing = false;
        }
        backoff = Duration::from_millis(100);
        if tx.send(Notice::Requeued).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            let next = client.notifications().timeout_iter(LISTEN_TICK).next();
            match next {
                Ok(Some(n)) => {
                    log::debug!("notified: {}", n.payload());
                    let notice = match n.payload() {
                        "e" => Notice::Endpoints,
                        "r" => Notice::Requeued,
                        _ => Notice::Messages,
                    };
                    if tx.send(notice).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    log::warn!("database {}: listen: {e}; reconnecting", name.display());
                    failing = true;
                    break;
                }
            }
        }
    }
}

/// The listener thread (or nothing, for `maintain`).
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background for Listener {
    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread {
            if t.join().is_err() {
                log::error!("webhookd-listen panicked");
            }
        }
    }
}

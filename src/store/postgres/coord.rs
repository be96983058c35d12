//! How daemons sharing one PostgreSQL database find each other:
//! - `daemons`: every daemon registers (instance id, host, pid, start) and refreshes `seen_at`
//!   every `HEARTBEAT` from its registration thread, which also takes over the claims whose lease
//!   expired (a killed daemon's, or one cut off from the database) and tells every daemon; a row
//!   not seen for two leases is a daemon that is gone, and is removed;
//! - `LISTEN webhookd` / `NOTIFY webhookd, 'm' | 'r' | 'e'`: the wake-ups that SQLite sends as
//!   datagrams (new messages, messages made due again, endpoints). A lost notification costs
//!   latency only: the dispatcher looks at the whole queue every few seconds anyway.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use postgres::fallible_iterator::FallibleIterator;

use super::Store;
use crate::config::database::Postgres;
use crate::error::{Error, Result};
use crate::store::{Access, Background, Coordination, DaemonState, Notice, Presence, Registration};
use crate::threads::spawn;

/// How often a daemon refreshes its row and looks for expired leases (at most a third of the
/// lease).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the listener waits for a notification before it checks whether to stop.
const LISTEN_TICK: Duration = Duration::from_millis(500);
/// The longest pause between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A daemon as the registry shows it.
#[derive(Debug, Clone)]
pub(crate) struct DaemonRow {
    pub(crate) instance: i64,
    pub(crate) host: String,
    pub(crate) pid: i64,
    pub(crate) started_at: i64,
    pub(crate) seen_at: i64,
}

/// A row not refreshed for this long (two leases) is a daemon that is gone.
pub(crate) fn gone_after(pg: &Postgres) -> i64 {
    2 * crate::time::duration_ms(pg.lease)
}

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
    pub(crate) fn daemons(&self) -> Result<Vec<DaemonRow>> {
        let store = Store::open(&self.pg, Access::Read)?;
        daemons(&store)
    }
}

/// The daemons seen within two leases, oldest first, but those of this host whose process is
/// gone (killed: their row stays until another daemon removes it).
///
/// # Errors
/// `Db`/`DbUnavailable`.
pub(crate) fn daemons(store: &Store) -> Result<Vec<DaemonRow>> {
    let here = crate::store::hostname();
    Ok(registered(store)?
        .into_iter()
        .filter(|d| d.host != here || alive(d.pid))
        .collect())
}

/// Whether process `pid` of this host is a webhookd.
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "webhookd")
}

/// The rows of the daemons seen within two leases, oldest first.
fn registered(store: &Store) -> Result<Vec<DaemonRow>> {
    let since = crate::time::now_ms() - gone_after(&store.pg);
    store.run("read the daemons", |c| {
        c.query(
            "SELECT instance, host, pid, started_at, seen_at FROM daemons
             WHERE seen_at >= $1 ORDER BY started_at, instance",
            &[&since],
        )?
        .iter()
        .map(|r| {
            Ok(DaemonRow {
                instance: r.try_get(0)?,
                host: r.try_get(1)?,
                pid: r.try_get(2)?,
                started_at: r.try_get(3)?,
                seen_at: r.try_get(4)?,
            })
        })
        .collect()
    })
}

/// A daemon's registration: its row, kept fresh by its thread, removed when it is dropped.
struct Registered {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    store: Store,
    instance: i64,
}

impl Registration for Registered {}

impl Drop for Registered {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("webhookd-registry panicked");
            }
        }
        let instance = self.instance;
        if let Err(e) = self.store.run("unregister", |c| {
            c.execute("DELETE FROM daemons WHERE instance = $1", &[&instance])?;
            Ok(())
        }) {
            log::warn!("{e}");
        }
    }
}

/// Takes over at once the claims of the daemons of this host whose process is gone (their
/// leases need not be waited for), and removes their rows. Returns how many were requeued.
fn bury_dead_neighbours(store: &Store, me: i64, host: &str) -> Result<usize> {
    let mut requeued = 0;
    for d in registered(store)? {
        if d.instance == me || d.host != host || alive(d.pid) {
            continue;
        }
        let n = store.take_over_owner(d.instance, crate::time::now_ms())?;
        if n > 0 {
            log::warn!(
                "took over {} of daemon pid {} of this host, which is gone: pending again",
                crate::text::count(n as u64, "message"),
                d.pid
            );
        }
        requeued += n;
        let instance = d.instance;
        store.run("unregister a dead daemon", |c| {
            c.execute("DELETE FROM daemons WHERE instance = $1", &[&instance])?;
            Ok(())
        })?;
    }
    Ok(requeued)
}

/// Writes this daemon's row (and removes those of daemons gone for long).
fn heartbeat(store: &Store, instance: i64, host: &str, started_at: i64) -> Result<()> {
    let gone = gone_after(&store.pg);
    let now = crate::time::now_ms();
    let pid = i64::from(std::process::id());
    store.run("register", |c| {
        c.execute(
            "INSERT INTO daemons (instance, host, pid, started_at, seen_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (instance) DO UPDATE SET seen_at = excluded.seen_at",
            &[&instance, &host, &pid, &started_at, &now],
        )?;
        c.execute(
            "DELETE FROM daemons WHERE seen_at < $1",
            &[&(now - 10 * gone)],
        )?;
        Ok(())
    })
}

impl Coordination for Shared {
    fn register_daemon(&self, owner: i64) -> Result<Box<dyn Registration>> {
        let mut store = Store::open(&self.pg, Access::Daemon)?;
        store.set_owner(owner);
        let host = crate::store::hostname();
        let started_at = crate::time::now_ms();
        heartbeat(&store, owner, &host, started_at)?;
        if bury_dead_neighbours(&store, owner, &host)? > 0 {
            self.notify(Notice::Requeued);
        }
        let mut worker = Store::open(&self.pg, Access::Daemon)?;
        worker.set_owner(owner);
        let (stop, stopped) = bounded::<()>(0);
        let tick = HEARTBEAT.min(self.pg.lease / 3);
        let thread = spawn("webhookd-registry", move || {
            let mut failing = false;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick)
            {
                let result = heartbeat(&worker, owner, &host, started_at).and_then(|()| {
                    let dead = bury_dead_neighbours(&worker, owner, &host)?;
                    let expired = worker.take_over_expired(crate::time::now_ms())?;
                    if expired > 0 {
                        log::warn!(
                            "took over {} whose lease expired (their daemon stopped or lost the database): pending again",
                            crate::text::count(expired as u64, "message")
                        );
                    }
                    Ok(dead + expired)
                });
                match result {
                    Ok(n) => {
                        failing = false;
                        if n > 0 {
                            let _ = worker.run("notify", |c| {
                                c.execute("SELECT pg_notify('webhookd', 'r')", &[])?;
                                Ok(())
                            });
                        }
                    }
                    // Logged once per outage, then again when it changes.
                    Err(e) if !failing => {
                        failing = true;
                        log::warn!("{e}");
                    }
                    Err(e) => log::debug!("{e}"),
                }
            }
        })?;
        Ok(Box::new(Registered {
            stop: Some(stop),
            thread: Some(thread),
            store,
            instance: owner,
        }))
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
            Notice::Messages => "m",
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

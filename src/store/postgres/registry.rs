//! The registry of the daemons of a PostgreSQL queue (`daemons`): every daemon registers
//! (instance id, host, pid, start) and, from its registration thread:
//! - refreshes `seen_at` every `HEARTBEAT` (a row not seen for two leases is a daemon that is
//!   gone, and is removed later);
//! - takes over the claims whose lease expired (a killed daemon's, or one cut off from the
//!   database), and at once those of a daemon of this host whose process no longer runs;
//! - folds the counts' changes into `counts` every `FOLD` (see `schema`).

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};

use super::Store;
use crate::config::database::Postgres;
use crate::error::Result;
use crate::store::{Access, Registration};
use crate::threads::spawn;

/// How often a daemon refreshes its row and looks for expired leases (at most a third of the
/// lease).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often the counts' changes are folded.
const FOLD: Duration = Duration::from_secs(1);
/// The most changes folded at once.
const FOLD_BATCH: i64 = 50_000;

const FOLD_COUNTS: &str = "WITH moved AS (
        DELETE FROM count_changes WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM count_changes LIMIT $1 FOR UPDATE SKIP LOCKED))
        RETURNING state, n),
     s AS (SELECT state, sum(n)::bigint AS n FROM moved GROUP BY state)
     UPDATE counts SET n = counts.n + s.n FROM s WHERE counts.state = s.state";

/// A daemon as the registry shows it.
#[derive(Debug, Clone)]
pub(crate) struct DaemonRow {
    pub(crate) instance: i64,
    pub(crate) host: String,
    /// Where its pid means something: this boot of this kernel, this pid namespace (see `node`).
    pub(crate) node: String,
    pub(crate) pid: i64,
    pub(crate) started_at: i64,
    pub(crate) seen_at: i64,
}

/// A row not refreshed for this long (two leases) is a daemon that is gone.
pub(crate) fn gone_after(pg: &Postgres) -> i64 {
    2 * crate::time::duration_ms(pg.lease)
}

/// The daemons seen within two leases, oldest first, but those of this host whose process is
/// gone (killed: their row stays until another daemon removes it).
///
/// # Errors
/// `Db`/`DbUnavailable`.
pub(crate) fn daemons(store: &Store) -> Result<Vec<DaemonRow>> {
    let here = node();
    Ok(registered(store)?
        .into_iter()
        .filter(|d| d.node != here || alive(d.pid))
        .collect())
}

/// Whether process `pid` (of this node) is a daemon like this one: its command is ours.
fn alive(pid: i64) -> bool {
    let ours = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == ours)
}

/// This process's pid space: the kernel's boot id and the pid namespace. Two daemons whose
/// nodes are equal see each other's pids (a host name is not enough: containers share one
/// without sharing pids).
fn node() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{} {ns}", boot.trim())
}

/// The rows of the daemons seen within two leases, oldest first.
fn registered(store: &Store) -> Result<Vec<DaemonRow>> {
    let since = crate::time::now_ms() - gone_after(&store.pg);
    store.run("read the daemons", |c| {
        c.query(
            "SELECT instance, host, pid, started_at, seen_at, node FROM daemons
             WHERE seen_at >= $1 ORDER BY started_at, instance",
            &[&since],
        )?
        .iter()
        .map(|r| {
            Ok(DaemonRow {
                instance: r.try_get(0)?,
                host: r.try_get(1)?,
                node: r.try_get(5)?,
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
            c.execute("DELETE FROM claims_held WHERE owner = $1", &[&instance])?;
            Ok(())
        }) {
            log::warn!("{e}");
        }
    }
}

/// Takes over at once the claims of the daemons of this host whose process is gone (their
/// leases need not be waited for), and removes their rows. Returns how many were requeued.
fn bury_dead_neighbours(store: &Store, me: i64) -> Result<usize> {
    let (mut requeued, here) = (0, node());
    for d in registered(store)? {
        if d.instance == me || d.node != here || alive(d.pid) {
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
            "INSERT INTO daemons (instance, host, pid, started_at, seen_at, node)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (instance) DO UPDATE SET seen_at = excluded.seen_at",
            &[&instance, &host, &pid, &started_at, &now, &node()],
        )?;
        c.execute(
            "DELETE FROM daemons WHERE seen_at < $1",
            &[&(now - 10 * gone)],
        )?;
        c.execute(
            "DELETE FROM claims_held h WHERE NOT EXISTS
             (SELECT 1 FROM daemons d WHERE d.instance = h.owner)",
            &[],
        )?;
        Ok(())
    })
}

/// Registers daemon `owner` and starts its registration thread. Returns how many claims of
/// gone daemons of this host were taken over.
///
/// # Errors
/// As `Store::open`, `Spawn`.
pub(super) fn register(pg: &Postgres, owner: i64) -> Result<(Box<dyn Registration>, usize)> {
    let mut store = Store::open(pg, Access::Daemon)?;
    store.set_owner(owner);
    let host = crate::store::hostname();
    let started_at = crate::time::now_ms();
    heartbeat(&store, owner, &host, started_at)?;
    let requeued = bury_dead_neighbours(&store, owner)?;
    let mut worker = Store::open(pg, Access::Daemon)?;
    worker.set_owner(owner);
    let (stop, stopped) = bounded::<()>(0);
    let tick = HEARTBEAT.min(pg.lease / 3);
    let thread = spawn("webhookd-registry", move || {
        let mut failing = false;
        let mut last_beat = Instant::now();
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(FOLD.min(tick))
        {
            let result = fold_counts(&worker).and_then(|()| {
                if last_beat.elapsed() < tick {
                    return Ok(0);
                }
                last_beat = Instant::now();
                heartbeat(&worker, owner, &host, started_at)?;
                let dead = bury_dead_neighbours(&worker, owner)?;
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
    Ok((
        Box::new(Registered {
            stop: Some(stop),
            thread: Some(thread),
            store,
            instance: owner,
        }),
        requeued,
    ))
}

/// Folds the changes of the counts into `counts`, in batches.
fn fold_counts(store: &Store) -> Result<()> {
    store.run("fold the counts", |c| {
        let fold = store.prepared.get(c, FOLD_COUNTS)?;
        c.execute(&fold, &[&FOLD_BATCH])?;
        Ok(())
    })
}

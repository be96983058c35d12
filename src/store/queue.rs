//! Queue operations: insert, claim, record outcomes, release, requeue, purge.
//!
//! States: 0 pending -> 1 in_flight (claimed) -> 2 delivered | 3 dead, or back to 0 for a retry.
//! The daemon is the only writer of states 1-3 and does one IMMEDIATE transaction per unit of work
//! ([`Store::cycle`]): record finished attempts, release unstarted jobs, claim due ones. No
//! transaction is ever held across an HTTP request.
//!
//! A job claimed before a crash stays `in_flight` in the file; [`Store::requeue_in_flight`], run by
//! the daemon at start-up before it claims anything, makes every such row pending and due now, so it
//! is attempted again at once. Its attempt counter is only raised when an outcome is recorded, so
//! the lost attempt costs nothing from the message's budget (the receiver may see a duplicate).

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::Store;
use crate::error::{Error, Result};
use crate::message::{self, Message};
use crate::model::{Claim, Health, Job};

pub(super) use super::codes::{CANCELLED, DEAD, DELIVERED, IN_FLIGHT, PENDING, WAITING};

// Writes use `OR FAIL` (and the attempt record `OR IGNORE`) instead of the default `OR ABORT`:
// every statement here runs inside a transaction that is rolled back as a whole on any error, so
// SQLite never needs to undo one statement alone. With ABORT it keeps a statement journal for
// that, writing page images into memory chunks it allocates and frees at every statement: most
// of the writer's time in the static (musl) build, where each free returned memory to the kernel.
const INSERT_MESSAGE: &str = "INSERT OR FAIL INTO messages
     (uuid, idem_key, state, due_at, created_at, max_attempts, endpoint, lane)
     VALUES (?1, ?2, ?6, ?3, ?4, ?5, ?7, ?8)
     ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING";
const INSERT_PAYLOAD: &str =
    "INSERT OR FAIL INTO payloads (seq, method, url, headers, body) VALUES (?1, ?2, ?3, ?4, ?5)";
const SELECT_BY_KEY: &str = "SELECT m.uuid, m.state, m.endpoint, p.method, p.url, p.headers,
     p.body FROM messages m JOIN payloads p USING (seq) WHERE m.idem_key = CAST(?1 AS TEXT)";
/// `LIMIT CAST(?2 AS INTEGER)`, not `LIMIT ?2`: SQLite's planner reads a bare variable's value in
/// LIMIT and then recompiles the statement whenever a new value is bound, which was every claim
/// (and each recompile freed and reallocated its program: musl's allocator turned that into
/// munmap/TLB shootdowns, the static binary drained at 13k/s instead of 50k/s).
const CLAIM: &str = "UPDATE OR FAIL messages SET state = 1, due_at = ?1
     WHERE seq IN (SELECT seq FROM messages WHERE state = 0 AND endpoint = CAST(?3 AS INTEGER) AND due_at <= ?1
                   ORDER BY due_at LIMIT CAST(?2 AS INTEGER))
     RETURNING seq, uuid, attempts, attempts_total, max_attempts, endpoint, lane";
const SELECT_PAYLOAD: &str = "SELECT method, url, headers, body FROM payloads WHERE seq = ?1";
const INSERT_ATTEMPT: &str =
    "INSERT OR IGNORE INTO attempts (seq, n, at, duration_us, status, error, response)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const MARK_DELIVERED: &str =
    "UPDATE OR FAIL messages SET state = 2, due_at = ?2, delivered_at = ?2,
     attempts = attempts + 1, attempts_total = ?3, last_error = NULL WHERE seq = ?1 AND state = 1";
/// A failed attempt: pending again at ?2, or cancelled (at ?5) when an operator asked for that
/// while it was in flight. Returns the new state and the lane.
const MARK_RETRY: &str = "UPDATE OR FAIL messages SET
     state = iif(cancel_requested, 5, 0), due_at = iif(cancel_requested, ?5, ?2),
     cancelled_at = iif(cancel_requested, ?5, NULL),
     attempts = attempts + 1, attempts_total = ?3, last_error = ?4 WHERE seq = ?1 AND state = 1
     RETURNING state";
const MARK_DEAD: &str =
    "UPDATE OR FAIL messages SET state = iif(cancel_requested, 5, 3), due_at = ?2,
     dead_at = iif(cancel_requested, NULL, ?2), cancelled_at = iif(cancel_requested, ?2, NULL),
     attempts = attempts + 1, attempts_total = ?3, last_error = ?4 WHERE seq = ?1 AND state = 1
     RETURNING state";
const RELEASE: &str =
    "UPDATE OR FAIL messages SET state = iif(cancel_requested, 5, 0), due_at = ?2,
     cancelled_at = iif(cancel_requested, ?2, NULL) WHERE seq = ?1 AND state = 1
     RETURNING state, lane";
/// Messages left in flight by a daemon that died: the cancelled ones first (their lanes move on).
const CANCEL_IN_FLIGHT: &str = "UPDATE messages SET state = 5, due_at = ?1, cancelled_at = ?1
     WHERE state = 1 AND cancel_requested RETURNING lane";
const REQUEUE_IN_FLIGHT: &str = "UPDATE messages SET state = 0, due_at = ?1 WHERE state = 1";
const NEXT_DUE: &str = "SELECT min(due_at) FROM messages WHERE state = 0 AND endpoint = ?1";
/// The state index is per endpoint: `IN` makes one range scan per endpoint (0 is plain URLs).
const PURGE_DELIVERED: &str = "DELETE FROM messages WHERE seq IN
     (SELECT seq FROM messages WHERE state IN (2, 5)
        AND endpoint IN (SELECT 0 UNION ALL SELECT id FROM endpoints)
        AND due_at < ?1 LIMIT CAST(?2 AS INTEGER))
     RETURNING seq";
const ENDPOINT_ID: &str = "SELECT id FROM endpoints WHERE name = ?1";
const INSERT_ENDPOINT: &str = "INSERT OR IGNORE INTO endpoints (name) VALUES (?1)";
/// Whether a new message of `lane` must wait: the lane has a message pending, in flight or
/// waiting, or (when dead messages block, ?2) a dead one.
const LANE_BUSY: &str = "SELECT EXISTS (SELECT 1 FROM messages WHERE lane = ?1 AND state != 2
     AND state != 5 AND (state != 3 OR ?2))";
/// After a lane's head is delivered (or dead and skipped), its next message becomes pending.
/// (`CAST`: a bare parameter here made SQLite recompile the statement at each execution.)
const PROMOTE: &str = "UPDATE OR FAIL messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = CAST(?1 AS TEXT) AND state != 2 AND state = 4
      ORDER BY seq LIMIT 1)";
/// After a lane's message left it other than by delivery (deleted, cancelled), its next waiting
/// message goes, unless the lane still has one pending, in flight or dead.
pub(super) const PROMOTE_IF_FREE: &str = "UPDATE OR FAIL messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = CAST(?1 AS TEXT) AND state != 2 AND state = 4
      ORDER BY seq LIMIT 1)
     AND NOT EXISTS (SELECT 1 FROM messages WHERE lane = CAST(?1 AS TEXT) AND state != 2
      AND state IN (0, 1, 3))";
const SAVE_HEALTH: &str = "UPDATE OR FAIL endpoints SET state = ?2, failures = ?3,
     failing_since = ?4, last_success_at = ?5, last_error = ?6, last_error_at = ?7,
     changed_at = ?8, reason = ?9 WHERE id = ?1";
const TAKE_ENABLES: &str =
    "UPDATE endpoints SET enable_requested = 0 WHERE enable_requested = 1 RETURNING id";
pub(super) const DELETE_PAYLOAD: &str = "DELETE FROM payloads WHERE seq = ?1";
pub(super) const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE seq = ?1";

/// The result of storing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Enqueued {
    pub(crate) uuid: Uuid,
    /// False when the idempotency key was known and the first message's uuid is returned.
    pub(crate) created: bool,
    /// The message's state now (the first message's, for a known key).
    pub(crate) state: super::State,
    /// For a known key: whether the first message is the same request (method, destination,
    /// headers, body). A different one was not stored.
    pub(crate) same_request: bool,
}

/// How an attempt ended, as decided by the dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutcomeKind {
    Delivered,
    Retry { due_at: i64 },
    Dead,
}

/// One finished attempt to record.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) seq: i64,
    /// Attempt number over the message's life (1-based).
    pub(crate) n: u32,
    pub(crate) at: i64,
    pub(crate) duration_us: i64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) response: Vec<u8>,
    /// Stored as the message's last error when it failed.
    pub(crate) summary: String,
    pub(crate) kind: OutcomeKind,
    /// The message's ordered lane, if any.
    pub(crate) lane: Option<String>,
    /// Whether the lane's next message becomes pending (this one was delivered, or died in a
    /// lane that skips dead messages). A message cancelled at the end of its attempt always
    /// lets its lane go on.
    pub(crate) promote: bool,
}

/// One unit of the dispatcher's work (see [`Store::cycle`]).
#[derive(Debug, Default)]
pub(crate) struct Cycle<'a> {
    pub(crate) outcomes: &'a [Outcome],
    /// Claimed jobs never started, back to pending.
    pub(crate) released: &'a [i64],
    pub(crate) claims: &'a [Claim],
    /// Endpoint health to save.
    pub(crate) health: &'a [Health],
    /// Take the endpoints an operator asked to enable (`webhookd endpoints enable`).
    pub(crate) take_enables: bool,
}

/// What a cycle claimed and learnt.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) jobs: Vec<Job>,
    /// Messages (seq) whose attempt or release ended in `cancelled`: an operator cancelled them
    /// while they were in flight.
    pub(crate) cancelled: Vec<i64>,
    /// For each claim that got fewer than its limit (all due ones): the endpoint's next due time.
    pub(crate) next_due: Vec<(i64, Option<i64>)>,
    /// Endpoints to enable.
    pub(crate) enabled: Vec<i64>,
}

/// Inserts messages inside one IMMEDIATE transaction: all are stored by [`Inserter::commit`], or
/// none if it is dropped.
pub(crate) struct Inserter<'s> {
    tx: Transaction<'s>,
    store_path: &'s std::path::Path,
    /// Endpoint ids by name, looked up (or created) once per batch.
    endpoints: std::collections::HashMap<String, i64>,
}

impl Store {
    /// Starts a batch of inserts.
    ///
    /// # Errors
    /// `Busy` when another writer holds the lock beyond the busy timeout, `Db` otherwise.
    pub(crate) fn inserter(&mut self) -> Result<Inserter<'_>> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(path, "begin enqueue", e))?;
        Ok(Inserter {
            tx,
            store_path: path,
            endpoints: std::collections::HashMap::new(),
        })
    }

    /// Makes every message left `in_flight` by a previous daemon pending and due at `now`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    /// Those an operator cancelled meanwhile become cancelled instead. Returns how many were
    /// requeued.
    pub(crate) fn requeue_in_flight(&mut self, now: i64) -> Result<usize> {
        let path = &self.path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin requeue"))?;
        let lanes: Vec<Option<String>> = tx
            .prepare(CANCEL_IN_FLIGHT)
            .and_then(|mut s| {
                s.query_map([now], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(e("cancel in-flight messages"))?;
        for lane in lanes.iter().flatten() {
            tx.prepare_cached(PROMOTE_IF_FREE)
                .and_then(|mut s| s.execute([lane]))
                .map_err(e("promote lane"))?;
        }
        let n = tx
            .execute(REQUEUE_IN_FLIGHT, [now])
            .map_err(e("requeue in-flight messages"))?;
        tx.commit().map_err(e("commit requeue"))?;
        Ok(n)
    }

    /// One unit of the dispatcher's work, in one transaction: records `outcomes` (promoting the
    /// next message of their lanes), puts `released` jobs back to pending, saves endpoint health,
    /// takes enable requests, and claims due messages per endpoint.
    ///
    /// # Errors
    /// `Db`/`Busy`; the transaction is rolled back and nothing changes.
    pub(crate) fn cycle(&mut self, c: &Cycle<'_>, now: i64) -> Result<Claimed> {
        let path = &self.path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let mut out = Claimed::default();
        if !c.outcomes.is_empty() {
            record(&tx, c.outcomes, now, &mut out.cancelled).map_err(e("record outcome"))?;
        }
        if !c.released.is_empty() {
            let mut release = tx.prepare_cached(RELEASE).map_err(e("prepare"))?;
            for seq in c.released {
                let row: Option<(i64, Option<String>)> = release
                    .query_row(params![seq, now], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(e("release"))?;
                if let Some((CANCELLED, lane)) = row {
                    out.cancelled.push(*seq);
                    if let Some(lane) = lane {
                        tx.prepare_cached(PROMOTE_IF_FREE)
                            .and_then(|mut s| s.execute([lane]))
                            .map_err(e("promote lane"))?;
                    }
                }
            }
        }
        if !c.health.is_empty() {
            let mut save = tx.prepare_cached(SAVE_HEALTH).map_err(e("prepare"))?;
            for h in c.health {
                save.execute(params![
                    h.id,
                    super::codes::circuit_code(h.state),
                    h.failures,
                    h.failing_since,
                    h.last_success_at,
                    h.last_error,
                    h.last_error_at,
                    h.changed_at,
                    h.reason
                ])
                .map_err(e("save endpoint health"))?;
            }
        }
        if c.take_enables {
            let mut take = tx.prepare_cached(TAKE_ENABLES).map_err(e("prepare"))?;
            out.enabled = take
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
                .map_err(e("take enable requests"))?;
        }
        for claim in c.claims.iter().filter(|c| c.limit > 0) {
            let before = out.jobs.len();
            claim_due(&tx, claim, now, &mut out.jobs).map_err(e("claim"))?;
            if out.jobs.len() - before < claim.limit {
                let next = tx
                    .prepare_cached(NEXT_DUE)
                    .and_then(|mut s| s.query_row([claim.endpoint], |r| r.get(0)))
                    .map_err(e("find next due message"))?;
                out.next_due.push((claim.endpoint, next));
            }
        }
        tx.commit().map_err(e("commit"))?;
        Ok(out)
    }

    /// The earliest `due_at` of a pending message of endpoint `endpoint` (0: plain URLs).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn next_due(&self, endpoint: i64) -> Result<Option<i64>> {
        self.conn
            .query_row(NEXT_DUE, [endpoint], |r| r.get(0))
            .map_err(|e| self.err("find next due message", e))
    }

    /// A number that changes whenever another connection commits (`PRAGMA data_version`): the
    /// daemon polls it to notice enqueues and DLQ retries without querying the queue.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err("read data_version", e))
    }

    /// Deletes up to `limit` messages delivered (or cancelled) before `before`, with their
    /// payloads and attempts.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn purge_delivered(&mut self, before: i64, limit: usize) -> Result<usize> {
        let path = &self.path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin purge"))?;
        let seqs: Vec<i64> = {
            let mut stmt = tx.prepare_cached(PURGE_DELIVERED).map_err(e("prepare"))?;
            let rows = stmt
                .query_map(params![before, limit as i64], |r| r.get(0))
                .map_err(e("purge"))?;
            rows.collect::<rusqlite::Result<_>>().map_err(e("purge"))?
        };
        delete_details(&tx, &seqs).map_err(e("purge"))?;
        tx.commit().map_err(e("commit purge"))?;
        Ok(seqs.len())
    }
}

/// The id of endpoint `name`, inserted if it has none yet.
pub(super) fn endpoint_id(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(INSERT_ENDPOINT)?.execute([name])?;
    conn.prepare_cached(ENDPOINT_ID)?
        .query_row([name], |r| r.get(0))
}

/// Deletes the payloads and attempts of deleted messages.
pub(super) fn delete_details(tx: &Transaction<'_>, seqs: &[i64]) -> rusqlite::Result<()> {
    let mut payload = tx.prepare_cached(DELETE_PAYLOAD)?;
    let mut attempts = tx.prepare_cached(DELETE_ATTEMPTS)?;
    for seq in seqs {
        payload.execute([seq])?;
        attempts.execute([seq])?;
    }
    Ok(())
}

fn record(
    tx: &Transaction<'_>,
    outcomes: &[Outcome],
    now: i64,
    cancelled: &mut Vec<i64>,
) -> rusqlite::Result<()> {
    let mut attempt = tx.prepare_cached(INSERT_ATTEMPT)?;
    let mut delivered = tx.prepare_cached(MARK_DELIVERED)?;
    let mut retry = tx.prepare_cached(MARK_RETRY)?;
    let mut dead = tx.prepare_cached(MARK_DEAD)?;
    for o in outcomes {
        let response = (!o.response.is_empty()).then_some(o.response.as_slice());
        attempt.execute(params![
            o.seq,
            o.n,
            o.at,
            o.duration_us,
            o.status,
            o.error,
            response
        ])?;
        let state: Option<i64> = match o.kind {
            OutcomeKind::Delivered => {
                delivered.execute(params![o.seq, now, o.n])?;
                Some(DELIVERED)
            }
            OutcomeKind::Retry { due_at } => retry
                .query_row(params![o.seq, due_at, o.n, o.summary, now], |r| r.get(0))
                .optional()?,
            OutcomeKind::Dead => dead
                .query_row(params![o.seq, now, o.n, o.summary], |r| r.get(0))
                .optional()?,
        };
        let was_cancelled = state == Some(CANCELLED);
        if was_cancelled {
            cancelled.push(o.seq);
        }
        if let Some(lane) = &o.lane {
            if was_cancelled {
                tx.prepare_cached(PROMOTE_IF_FREE)?.execute([lane])?;
            } else if o.promote {
                tx.prepare_cached(PROMOTE)?.execute([lane])?;
            }
        }
    }
    Ok(())
}

fn claim_due(
    tx: &Transaction<'_>,
    c: &Claim,
    now: i64,
    out: &mut Vec<Job>,
) -> rusqlite::Result<()> {
    let mut claim = tx.prepare_cached(CLAIM)?;
    let mut jobs = claim
        .query_map(params![now, c.limit as i64, c.endpoint], |r| {
            let uuid: [u8; 16] = r.get(1)?;
            Ok(Job {
                seq: r.get(0)?,
                uuid: Uuid::from_bytes(uuid),
                attempts: r.get(2)?,
                attempts_total: r.get(3)?,
                max_attempts: r.get(4)?,
                endpoint: r.get(5)?,
                lane: r.get(6)?,
                ..Job::default()
            })
        })?
        .collect::<rusqlite::Result<Vec<Job>>>()?;
    jobs.sort_unstable_by_key(|j| j.seq);
    let mut payload = tx.prepare_cached(SELECT_PAYLOAD)?;
    for job in &mut jobs {
        let (method, url, headers, body): (String, String, String, Vec<u8>) = payload
            .query_row([job.seq], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        job.method = method;
        job.url = url;
        job.headers = message::decode_headers(&headers);
        job.body = body;
    }
    out.append(&mut jobs);
    Ok(())
}

impl Inserter<'_> {
    /// Stores one validated message due at `now + delay`; with a known idempotency key, stores
    /// nothing and returns the first message's uuid.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn insert(&mut self, m: &Message, now: i64) -> Result<Enqueued> {
        let path = self.store_path;
        let e = |op| move |source| wrap(path, op, source);
        let uuid = Uuid::now_v7();
        // `created_at` is the time in the uuid, so that filters on it are uuid ranges.
        let created = crate::filter::uuid_ms(&uuid);
        let due = now.saturating_add(crate::time::duration_ms(m.delay));
        let endpoint = match &m.endpoint {
            None => 0,
            Some(name) => self.endpoint_id(name)?,
        };
        let state = match &m.lane {
            Some(lane) => {
                let busy: bool = self
                    .tx
                    .prepare_cached(LANE_BUSY)
                    .and_then(|mut s| s.query_row(params![lane, m.lane_dead_blocks], |r| r.get(0)))
                    .map_err(e("look up ordered lane"))?;
                if busy {
                    WAITING
                } else {
                    PENDING
                }
            }
            None => PENDING,
        };
        let inserted = self
            .tx
            .prepare_cached(INSERT_MESSAGE)
            .and_then(|mut s| {
                s.execute(params![
                    uuid.as_bytes(),
                    m.key,
                    due,
                    created,
                    m.max_attempts,
                    state,
                    endpoint,
                    m.lane
                ])
            })
            .map_err(e("insert message"))?;
        if inserted == 0 {
            type First = ([u8; 16], i64, i64, String, String, String, Vec<u8>);
            let first: First = self
                .tx
                .prepare_cached(SELECT_BY_KEY)
                .and_then(|mut s| {
                    s.query_row([&m.key], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })
                    .optional()
                })
                .map_err(e("look up idempotency key"))?
                .ok_or_else(|| Error::Db {
                    path: path.to_path_buf(),
                    op: "look up idempotency key",
                    source: rusqlite::Error::QueryReturnedNoRows.into(),
                })?;
            let (uuid, state, first_endpoint, method, url, headers, body) = first;
            return Ok(Enqueued {
                uuid: Uuid::from_bytes(uuid),
                created: false,
                state: super::codes::state(state).map_err(e("read state"))?,
                same_request: first_endpoint == endpoint
                    && method == m.method
                    && url == m.url
                    && message::decode_headers(&headers) == m.headers
                    && body == m.body,
            });
        }
        let seq = self.tx.last_insert_rowid();
        self.tx
            .prepare_cached(INSERT_PAYLOAD)
            .and_then(|mut s| {
                s.execute(params![
                    seq,
                    m.method,
                    m.url,
                    message::encode_headers(&m.headers),
                    m.body
                ])
            })
            .map_err(e("insert payload"))?;
        Ok(Enqueued {
            uuid,
            created: true,
            state: super::codes::state(state).map_err(e("read state"))?,
            same_request: true,
        })
    }

    /// The id of endpoint `name`, created at its first use.
    fn endpoint_id(&mut self, name: &str) -> Result<i64> {
        if let Some(id) = self.endpoints.get(name) {
            return Ok(*id);
        }
        let id = endpoint_id(&self.tx, name)
            .map_err(|e| wrap(self.store_path, "look up endpoint", e))?;
        self.endpoints.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Commits every insert durably.
    ///
    /// # Errors
    /// `Db`/`Busy`; nothing is stored then.
    pub(crate) fn commit(self) -> Result<()> {
        let path = self.store_path;
        self.tx
            .commit()
            .map_err(|e| wrap(path, "commit enqueue", e))
    }
}

/// Like `Store::err` for code that holds a transaction borrowed from the store.
pub(super) fn wrap(path: &std::path::Path, op: &'static str, source: rusqlite::Error) -> Error {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::Access;
    use std::time::Duration;

    pub(crate) fn test_store() -> (tempdir::Dir, Store) {
        let dir = tempdir::Dir::new();
        let store = Store::open(&dir.path.join("q.db"), Access::Daemon).unwrap();
        (dir, store)
    }

    pub(crate) mod tempdir {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        pub(crate) struct Dir {
            pub(crate) path: PathBuf,
        }
        impl Dir {
            pub(crate) fn new() -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "webhookd-unit-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    pub(crate) fn msg(url: &str) -> Message {
        Message {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("X-A".into(), "1".into())],
            body: b"\x00\xffbody".to_vec(),
            key: None,
            ..Message::default()
        }
    }

    pub(crate) fn cyc(
        s: &mut Store,
        outcomes: &[Outcome],
        released: &[i64],
        claim: usize,
        now: i64,
    ) -> Result<Vec<Job>> {
        let claims = [Claim {
            endpoint: 0,
            limit: claim,
        }];
        let c = Cycle {
            outcomes,
            released,
            claims: &claims,
            ..Cycle::default()
        };
        Ok(s.cycle(&c, now)?.jobs)
    }

    fn outcome(job: &Job, kind: OutcomeKind) -> Outcome {
        Outcome {
            seq: job.seq,
            n: job.attempts_total + 1,
            at: 1,
            duration_us: 5,
            status: Some(500),
            error: None,
            response: b"oops".to_vec(),
            summary: "HTTP 500".into(),
            kind,
            lane: None,
            promote: false,
        }
    }

    #[test]
    fn claim_returns_payload_and_marks_in_flight() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        let a = ins.insert(&msg("http://127.0.0.1:1/a"), 100)?;
        ins.insert(&msg("http://127.0.0.1:1/b"), 100)?;
        ins.commit()?;
        let jobs = cyc(&mut s, &[], &[], 1, 100)?;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].uuid, a.uuid);
        assert_eq!(jobs[0].url, "http://127.0.0.1:1/a");
        assert_eq!(jobs[0].body, b"\x00\xffbody");
        assert_eq!(jobs[0].headers, vec![("X-A".to_owned(), "1".to_owned())]);
        // The claimed one is not claimed again.
        let more = cyc(&mut s, &[], &[], 10, 100)?;
        assert_eq!(more.len(), 1);
        assert_ne!(more[0].uuid, a.uuid);
        assert!(cyc(&mut s, &[], &[], 10, 100)?.is_empty());
        Ok(())
    }

    #[test]
    fn delayed_messages_are_not_claimed_early() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut m = msg("http://127.0.0.1:1/");
        m.delay = Duration::from_secs(90);
        let mut ins = s.inserter()?;
        ins.insert(&m, 1_000)?;
        ins.commit()?;
        assert!(cyc(&mut s, &[], &[], 10, 1_000 + 89_999)?.is_empty());
        assert_eq!(s.next_due(0)?, Some(91_000));
        assert_eq!(cyc(&mut s, &[], &[], 10, 91_000)?.len(), 1);
        Ok(())
    }

    #[test]
    fn idempotency_key_returns_first_uuid_and_stores_nothing() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut m = msg("http://127.0.0.1:1/");
        m.key = Some("k1".into());
        let mut ins = s.inserter()?;
        let first = ins.insert(&m, 1)?;
        let second = ins.insert(&m, 2)?;
        ins.commit()?;
        assert!(first.created && !second.created);
        assert_eq!(first.uuid, second.uuid);
        assert_eq!(s.counts(0)?.pending, 1);
        Ok(())
    }

    #[test]
    fn retry_outcome_reschedules_and_counts_the_attempt() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
        ins.commit()?;
        let job = cyc(&mut s, &[], &[], 1, 0)?.remove(0);
        let o = outcome(&job, OutcomeKind::Retry { due_at: 500 });
        assert!(cyc(&mut s, &[o], &[], 10, 10)?.is_empty());
        let again = cyc(&mut s, &[], &[], 10, 500)?.remove(0);
        assert_eq!((again.attempts, again.attempts_total), (1, 1));
        Ok(())
    }

    #[test]
    fn requeue_makes_in_flight_due_without_spending_an_attempt() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
        ins.commit()?;
        assert_eq!(cyc(&mut s, &[], &[], 1, 0)?.len(), 1);
        assert_eq!(s.requeue_in_flight(7)?, 1);
        let job = cyc(&mut s, &[], &[], 1, 7)?.remove(0);
        assert_eq!(job.attempts, 0);
        Ok(())
    }

    #[test]
    fn purge_removes_only_old_delivered() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        for _ in 0..3 {
            ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
        }
        ins.commit()?;
        let jobs = cyc(&mut s, &[], &[], 3, 0)?;
        let outs = [
            outcome(&jobs[0], OutcomeKind::Delivered),
            outcome(&jobs[1], OutcomeKind::Dead),
        ];
        cyc(&mut s, &outs, &[jobs[2].seq], 0, 100)?;
        assert_eq!(s.purge_delivered(100, 10)?, 0);
        assert_eq!(s.purge_delivered(101, 10)?, 1);
        let c = s.counts(0)?;
        assert_eq!((c.pending, c.delivered, c.dead), (1, 0, 1));
        Ok(())
    }

    /// The trigger-kept counts equal a real count after every kind of transition.
    #[test]
    fn trigger_counts_match_a_scan() -> Result<()> {
        let (_d, mut s) = test_store();
        let scan = |s: &Store| -> Result<Vec<i64>> {
            (0..4)
                .map(|state| {
                    s.conn
                        .query_row(
                            "SELECT count(*) FROM messages WHERE state = ?1",
                            [state],
                            |r| r.get(0),
                        )
                        .map_err(|e| s.err("scan", e))
                })
                .collect()
        };
        let check = |s: &Store| -> Result<()> {
            let c = s.totals()?;
            let want = scan(s)?;
            let got = [c.pending, c.in_flight, c.delivered, c.dead].map(|n| n as i64);
            assert_eq!(got.to_vec(), want);
            Ok(())
        };
        let mut ins = s.inserter()?;
        for _ in 0..6 {
            ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
        }
        ins.commit()?;
        check(&s)?;
        let jobs = cyc(&mut s, &[], &[], 5, 0)?;
        check(&s)?;
        let outs = [
            outcome(&jobs[0], OutcomeKind::Delivered),
            outcome(&jobs[1], OutcomeKind::Dead),
            outcome(&jobs[2], OutcomeKind::Retry { due_at: 50 }),
        ];
        cyc(&mut s, &outs, &[jobs[3].seq], 0, 10)?;
        check(&s)?;
        assert_eq!(s.requeue_in_flight(20)?, 1);
        check(&s)?;
        assert_eq!(s.purge_delivered(100, 10)?, 1);
        check(&s)?;
        let c = s.totals()?;
        assert_eq!((c.pending, c.in_flight, c.delivered, c.dead), (4, 0, 0, 1));
        Ok(())
    }

    /// A version-3 database (before endpoints) upgrades in place: its messages keep their states
    /// and counts, become plain-URL messages, and are claimed as before.
    #[test]
    fn version_3_database_upgrades_with_its_messages() -> Result<()> {
        let d = tempdir::Dir::new();
        let path = d.path.join("q.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &super::super::schema::MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "PRAGMA user_version = 3; PRAGMA application_id = 2003331940;
                 INSERT INTO messages (uuid, state, due_at, created_at) VALUES
                   (x'00000000000000000000000000000001', 0, 0, 0), (x'00000000000000000000000000000002', 1, 0, 0), (x'00000000000000000000000000000003', 2, 0, 0), (x'00000000000000000000000000000004', 3, 0, 0);
                 INSERT INTO payloads (seq, method, url, headers, body)
                   SELECT seq, 'POST', 'http://127.0.0.1:1/', '', x'' FROM messages;",
            )
            .unwrap();
        }
        let mut s = Store::open(&path, Access::Daemon)?;
        let c = s.totals()?;
        assert_eq!((c.pending, c.in_flight, c.delivered, c.dead), (1, 1, 1, 1));
        assert_eq!(s.requeue_in_flight(0)?, 1);
        let jobs = cyc(&mut s, &[], &[], 10, 0)?;
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|j| j.endpoint == 0 && j.lane.is_none()));
        Ok(())
    }

    /// Ordered lanes: only the head is pending; delivering it promotes the next; a dead head
    /// blocks (or, when skipped, promotes); counts include waiting messages as pending.
    #[test]
    fn lanes_deliver_one_at_a_time_in_order() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        let mut uuids = Vec::new();
        for _ in 0..3 {
            let m = Message {
                lane: Some("k".into()),
                lane_dead_blocks: true,
                ..msg("http://127.0.0.1:1/")
            };
            uuids.push(ins.insert(&m, 0)?.uuid);
        }
        ins.commit()?;
        assert_eq!(s.totals()?.pending, 3);
        let first = cyc(&mut s, &[], &[], 10, 0)?;
        assert_eq!(
            first.iter().map(|j| j.uuid).collect::<Vec<_>>(),
            vec![uuids[0]]
        );
        let mut done = outcome(&first[0], OutcomeKind::Delivered);
        done.lane = Some("k".into());
        done.promote = true;
        let second = cyc(&mut s, &[done], &[], 10, 1)?;
        assert_eq!(
            second.iter().map(|j| j.uuid).collect::<Vec<_>>(),
            vec![uuids[1]]
        );
        // Dead without promotion: the lane stops.
        let dead = outcome(&second[0], OutcomeKind::Dead);
        assert!(cyc(&mut s, &[dead], &[], 10, 2)?.is_empty());
        // A new message of the lane waits behind the dead one.
        let mut ins = s.inserter()?;
        let m = Message {
            lane: Some("k".into()),
            lane_dead_blocks: true,
            ..msg("http://127.0.0.1:1/")
        };
        ins.insert(&m, 3)?;
        ins.commit()?;
        assert!(cyc(&mut s, &[], &[], 10, 3)?.is_empty());
        // Deleting the dead head lets the lane go on.
        s.act_on(crate::store::Action::Delete, &[uuids[1]], 4)?;
        let third = cyc(&mut s, &[], &[], 10, 4)?;
        assert_eq!(
            third.iter().map(|j| j.uuid).collect::<Vec<_>>(),
            vec![uuids[2]]
        );
        Ok(())
    }

    /// Claims of different sizes, and every statement of an enqueue and a cycle, reuse their
    /// compiled statements (no SQLITE_STMTSTATUS_REPREPARE): a recompile per execution is
    /// planner work on the hot path (and, in the static build, allocator churn).
    #[test]
    fn claims_of_any_size_are_not_recompiled() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        for i in 0..20 {
            let m = Message {
                lane: (i % 2 == 0).then(|| format!("lane{}", i % 4)),
                key: Some(format!("k{i}")),
                ..msg("http://127.0.0.1:1/")
            };
            ins.insert(&m, 0)?;
        }
        ins.commit()?;
        let mut total = 0;
        for (i, n) in [1, 3, 2, 5, 4].into_iter().enumerate() {
            let jobs = cyc(&mut s, &[], &[], n, 0)?;
            total += jobs.len();
            let outs: Vec<Outcome> = jobs
                .iter()
                .enumerate()
                .map(|(j, job)| {
                    let kind = match (i + j) % 3 {
                        0 => OutcomeKind::Delivered,
                        1 => OutcomeKind::Retry { due_at: 1_000 },
                        _ => OutcomeKind::Dead,
                    };
                    let mut o = outcome(job, kind);
                    o.lane = job.lane.clone();
                    o.promote = o.lane.is_some();
                    o
                })
                .collect();
            cyc(&mut s, &outs, &[], 0, 1)?;
        }
        assert!(total > 0);
        assert_eq!(s.purge_delivered(1, 7)?, 0);
        assert_eq!(s.purge_delivered(1, 9)?, 0);
        for sql in [
            CLAIM,
            PURGE_DELIVERED,
            SELECT_PAYLOAD,
            INSERT_MESSAGE,
            INSERT_PAYLOAD,
            LANE_BUSY,
            INSERT_ATTEMPT,
            MARK_DELIVERED,
            MARK_RETRY,
            MARK_DEAD,
            PROMOTE,
            PROMOTE_IF_FREE,
            NEXT_DUE,
        ] {
            let stmt = s
                .conn
                .prepare_cached(sql)
                .map_err(|e| s.err("prepare", e))?;
            let reprepared = stmt.get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(reprepared, 0, "{sql}");
        }
        Ok(())
    }
}

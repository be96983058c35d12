//! Queue operations: claim, record outcomes, release, take over, renew, purge.
//!
//! States: 0 pending -> 1 in_flight (claimed) -> 2 delivered | 3 dead, or back to 0 for a retry.
//! The daemon is the only writer of states 1-3 and does one IMMEDIATE transaction per unit of work
//! ([`Store::cycle`]): record finished attempts, release unstarted jobs, claim due ones. No
//! transaction is ever held across an HTTP request.
//!
//! A job claimed before a crash stays `in_flight` in the file; [`Store::take_over_all`], run by
//! the daemon at start-up before it claims anything, makes every such row pending and due now, so it
//! is attempted again at once. Its attempt counter is only raised when an outcome is recorded, so
//! the lost attempt costs nothing from the message's budget (the receiver may see a duplicate).

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::{wrap, Store};
use crate::error::Result;
use crate::message;
use crate::model::{Claim, Job};
use crate::store::{Claimed, Cycle, Outcome, OutcomeKind};

use super::codes::{CANCELLED, DELIVERED};

// Writes use `OR FAIL` (and the attempt record `OR IGNORE`) instead of the default `OR ABORT`:
// every statement here runs inside a transaction that is rolled back as a whole on any error, so
// SQLite never needs to undo one statement alone. With ABORT it keeps a statement journal for
// that, writing page images into memory chunks it allocates and frees at every statement: most
// of the writer's time in the static (musl) build, where each free returned memory to the kernel.
/// `LIMIT CAST(?2 AS INTEGER)`, not `LIMIT ?2`: SQLite's planner reads a bare variable's value in
/// LIMIT and then recompiles the statement whenever a new value is bound, which was every claim
/// (and each recompile freed and reallocated its program: musl's allocator turned that into
/// munmap/TLB shootdowns, the static binary drained at 13k/s instead of 50k/s).
/// Claims record their owner (?4) and lease (?5), and keep `due_at`: it returns when the message
/// was due (for the delivery lag), and nothing reads it while the message is in flight.
pub(super) const CLAIM: &str = "UPDATE OR FAIL messages SET state = 1,
     owner = CAST(?4 AS INTEGER), lease_until = CAST(?5 AS INTEGER)
     WHERE seq IN (SELECT seq FROM messages WHERE state = 0 AND endpoint = CAST(?3 AS INTEGER) AND due_at <= ?1
                   ORDER BY due_at LIMIT CAST(?2 AS INTEGER))
     RETURNING seq, uuid, attempts, attempts_total, max_attempts, endpoint, lane, due_at, event";
/// A daemon's leases, extended (its claims are in the state index's in-flight range).
pub(super) const RENEW: &str = "UPDATE messages SET lease_until = CAST(?2 AS INTEGER)
     WHERE state = 1 AND owner = CAST(?1 AS INTEGER)";
/// Of the ?2 oldest events (seq order is creation order), those created before ?1 whose
/// deliveries are all purged (a pending or dead one keeps its event, and so its key).
const PURGE_EVENTS: &str = "DELETE FROM events WHERE seq IN
     (SELECT seq FROM events ORDER BY seq LIMIT ?2) AND created_at < ?1
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event = events.uuid)";
const OLDEST_EVENT: &str = "SELECT created_at FROM events ORDER BY seq LIMIT 1";
pub(super) const SELECT_PAYLOAD: &str =
    "SELECT method, url, headers, body FROM payloads WHERE seq = ?1";
pub(super) const INSERT_ATTEMPT: &str =
    "INSERT OR IGNORE INTO attempts (seq, n, at, duration_us, status, error, response)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub(super) const MARK_DELIVERED: &str =
    "UPDATE OR FAIL messages SET state = 2, due_at = ?2, delivered_at = ?2, cancel_requested = 0,
     owner = NULL, lease_until = NULL,
     attempts = attempts + 1, attempts_total = ?3, last_error = NULL
     WHERE seq = ?1 AND state = 1 AND owner IS CAST(?4 AS INTEGER)";
/// A failed attempt: pending again at ?2, or cancelled (at ?5) when an operator asked for that
/// while it was in flight. Returns the new state and the lane.
pub(super) const MARK_RETRY: &str = "UPDATE OR FAIL messages SET
     state = iif(cancel_requested, 5, 0), due_at = iif(cancel_requested, ?5, ?2),
     cancelled_at = iif(cancel_requested, ?5, NULL), cancel_requested = 0, owner = NULL,
     lease_until = NULL, attempts = attempts + 1, attempts_total = ?3, last_error = ?4
     WHERE seq = ?1 AND state = 1 AND owner IS CAST(?6 AS INTEGER)
     RETURNING state";
pub(super) const MARK_DEAD: &str =
    "UPDATE OR FAIL messages SET state = iif(cancel_requested, 5, 3), due_at = ?2,
     dead_at = iif(cancel_requested, NULL, ?2), cancelled_at = iif(cancel_requested, ?2, NULL),
     cancel_requested = 0, owner = NULL, lease_until = NULL,
     attempts = attempts + 1, attempts_total = ?3, last_error = ?4
     WHERE seq = ?1 AND state = 1 AND owner IS CAST(?5 AS INTEGER)
     RETURNING state";
pub(super) const RELEASE: &str =
    "UPDATE OR FAIL messages SET state = iif(cancel_requested, 5, 0), due_at = ?2,
     cancelled_at = iif(cancel_requested, ?2, NULL), cancel_requested = 0, owner = NULL,
     lease_until = NULL WHERE seq = ?1 AND state = 1 AND owner IS CAST(?3 AS INTEGER)
     RETURNING state, lane";
/// Claims taken over (?1: now, ?2: this daemon): the cancelled ones first (their lanes move on),
/// then the rest back to pending.
/// Whose claims a take-over takes (?3): 0 every other owner's, 1 other owners' with an expired
/// lease, 2 this owner's own (abandoned at shutdown).
macro_rules! taken {
    () => {
        "WHERE state = 1 AND CASE CAST(?3 AS INTEGER)
            WHEN 2 THEN owner IS CAST(?2 AS INTEGER)
            ELSE owner IS NOT CAST(?2 AS INTEGER)
                AND (?3 = 0 OR coalesce(lease_until, 0) < ?1) END"
    };
}
pub(super) const CANCEL_TAKEN: &str = concat!(
    "UPDATE messages SET state = 5, due_at = ?1, cancelled_at = ?1,
     cancel_requested = 0, owner = NULL, lease_until = NULL ",
    taken!(),
    " AND cancel_requested RETURNING lane"
);
pub(super) const REQUEUE_TAKEN: &str = concat!(
    "UPDATE messages SET state = 0, due_at = ?1, owner = NULL, lease_until = NULL ",
    taken!()
);
pub(super) const NEXT_DUE: &str =
    "SELECT min(due_at) FROM messages WHERE state = 0 AND endpoint = CAST(?1 AS INTEGER)";
/// The state index is per endpoint: `IN` makes one range scan per endpoint (0 is plain URLs).
pub(super) const PURGE_DELIVERED: &str = "DELETE FROM messages WHERE seq IN
     (SELECT seq FROM messages WHERE state IN (2, 5)
        AND endpoint IN (SELECT 0 UNION ALL SELECT id FROM endpoints)
        AND due_at < ?1 LIMIT CAST(?2 AS INTEGER))
     RETURNING seq";
/// After a lane's head is delivered (or dead and skipped), its next message becomes pending.
/// (`CAST`: a bare parameter here made SQLite recompile the statement at each execution.)
pub(super) const PROMOTE: &str = "UPDATE OR FAIL messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = CAST(?1 AS TEXT) AND state != 2 AND state = 4
      ORDER BY seq LIMIT 1)";
/// After a lane's message left it other than by delivery (deleted, cancelled), its next waiting
/// message goes, unless the lane still has one pending, in flight or dead.
pub(super) const PROMOTE_IF_FREE: &str = "UPDATE OR FAIL messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = CAST(?1 AS TEXT) AND state != 2 AND state = 4
      ORDER BY seq LIMIT 1)
     AND NOT EXISTS (SELECT 1 FROM messages WHERE lane = CAST(?1 AS TEXT) AND state != 2
      AND state IN (0, 1, 3))";
pub(super) const SAVE_HEALTH: &str = "UPDATE OR FAIL endpoints SET state = ?2, failures = ?3,
     failing_since = ?4, last_success_at = ?5, last_error = ?6, last_error_at = ?7,
     changed_at = ?8, reason = ?9 WHERE id = ?1";
pub(super) const TAKE_ENABLES: &str =
    "UPDATE endpoints SET enable_requested = 0 WHERE enable_requested = 1 RETURNING id";
pub(super) const DELETE_PAYLOAD: &str = "DELETE FROM payloads WHERE seq = ?1";
pub(super) const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE seq = ?1";

impl Store {
    /// Takes over every claim but this daemon's (the caller holds the database's lock, so their
    /// owners are gone): pending again and due at `now`, without spending an attempt; those an
    /// operator cancelled meanwhile become cancelled. Returns how many were requeued.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn take_over_all(&mut self, now: i64) -> Result<usize> {
        self.take_over(now, 0)
    }

    /// Takes over only the claims whose lease ended before `now`: the rule when several daemons
    /// share a queue (their own claims are renewed while their attempts run). With one daemon per
    /// SQLite file only the tests need it.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    #[cfg(test)]
    pub(crate) fn take_over_expired(&mut self, now: i64) -> Result<usize> {
        self.take_over(now, 1)
    }

    /// Gives up this daemon's own claims (requests still running at the end of a shutdown), as a
    /// take-over would.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn abandon(&mut self, now: i64) -> Result<usize> {
        self.take_over(now, 2)
    }

    fn take_over(&mut self, now: i64, whose: i64) -> Result<usize> {
        let (path, owner) = (&self.path, self.owner);
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin take-over"))?;
        let lanes: Vec<Option<String>> = tx
            .prepare_cached(CANCEL_TAKEN)
            .and_then(|mut s| {
                s.query_map(params![now, owner, whose], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(e("cancel taken-over messages"))?;
        for lane in lanes.iter().flatten() {
            tx.prepare_cached(PROMOTE_IF_FREE)
                .and_then(|mut s| s.execute([lane]))
                .map_err(e("promote lane"))?;
        }
        let n = tx
            .prepare_cached(REQUEUE_TAKEN)
            .and_then(|mut s| s.execute(params![now, owner, whose]))
            .map_err(e("requeue taken-over messages"))?;
        tx.commit().map_err(e("commit take-over"))?;
        Ok(n)
    }

    /// Extends this daemon's leases to `until`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn renew(&mut self, until: i64) -> Result<usize> {
        let owner = self.owner;
        self.conn
            .prepare_cached(RENEW)
            .and_then(|mut s| s.execute(params![owner, until]))
            .map_err(|e| self.err("renew leases", e))
    }

    /// One unit of the dispatcher's work, in one transaction: records `outcomes` (promoting the
    /// next message of their lanes), puts `released` jobs back to pending, saves endpoint health,
    /// takes enable requests, and claims due messages per endpoint.
    ///
    /// # Errors
    /// `Db`/`Busy`; the transaction is rolled back and nothing changes.
    pub(crate) fn cycle(&mut self, c: &Cycle<'_>, now: i64) -> Result<Claimed> {
        if c.inserts.is_empty() {
            return self.cycle_in_tx(c, now);
        }
        // New messages must be on disk when the cycle returns: this commit syncs the log (and
        // with it every commit before it), the others do not (see the module's Durability).
        self.conn
            .execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| self.err("set synchronous", e))?;
        let result = self.cycle_in_tx(c, now);
        // The cycle's outcome stands either way: a committed cycle is reported as committed.
        if let Err(e) = self.conn.execute_batch("PRAGMA synchronous = NORMAL") {
            log::warn!("{}", self.err("set synchronous back to NORMAL", e));
        }
        result
    }

    fn cycle_in_tx(&mut self, c: &Cycle<'_>, now: i64) -> Result<Claimed> {
        let path = &self.path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let mut out = Claimed::default();
        if !c.inserts.is_empty() {
            let mut endpoints = std::collections::HashMap::new();
            out.inserted = c
                .inserts
                .iter()
                .map(|m| super::insert::insert(&tx, path, &mut endpoints, m, now))
                .collect::<Result<_>>()?;
        }
        if !c.outcomes.is_empty() {
            record(&tx, c.outcomes, now, self.owner, &mut out.cancelled)
                .map_err(e("record outcome"))?;
        }
        if !c.released.is_empty() {
            let mut release = tx.prepare_cached(RELEASE).map_err(e("prepare"))?;
            for seq in c.released {
                let row: Option<(i64, Option<String>)> = release
                    .query_row(params![seq, now, self.owner], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
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
        let lease = (
            self.owner,
            now.saturating_add(crate::time::duration_ms(crate::store::LEASE)),
        );
        let mut budget = c.claim_budget.unwrap_or(usize::MAX);
        for claim in c.claims.iter().filter(|c| c.limit > 0) {
            if budget == 0 {
                break;
            }
            let claim = &Claim {
                endpoint: claim.endpoint,
                limit: claim.limit.min(budget),
                // One daemon per file: its own limits are the shared ones.
                shared: None,
            };
            let before = out.jobs.len();
            claim_due(&tx, claim, now, lease, &mut out.jobs).map_err(e("claim"))?;
            budget -= out.jobs.len() - before;
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

    /// Whether another connection committed since the last call (`PRAGMA data_version`
    /// changed): the daemon polls it to notice enqueues and DLQ retries without querying the queue.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn changed(&mut self) -> Result<bool> {
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err("read data_version", e))?;
        Ok(self.last_version.replace(version) != Some(version))
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
        // Events past retention too (their deliveries keep the event's id), oldest first: a
        // look at the oldest row, so a table with none to purge costs one seek.
        let oldest: Option<i64> = tx
            .prepare_cached(OLDEST_EVENT)
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(e("purge events"))?;
        let events = match oldest {
            Some(t) if t < before => tx
                .prepare_cached(PURGE_EVENTS)
                .and_then(|mut s| s.execute(params![before, limit as i64]))
                .map_err(e("purge events"))?,
            _ => 0,
        };
        tx.commit().map_err(e("commit purge"))?;
        Ok(seqs.len() + events)
    }
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

/// Records outcomes of claims `owner` still holds; an outcome of a claim another daemon took over
/// meanwhile (its lease expired) changes nothing but the attempt's history.
fn record(
    tx: &Transaction<'_>,
    outcomes: &[Outcome],
    now: i64,
    owner: i64,
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
                (delivered.execute(params![o.seq, now, o.n, owner])? > 0).then_some(DELIVERED)
            }
            OutcomeKind::Retry { due_at } => retry
                .query_row(params![o.seq, due_at, o.n, o.summary, now, owner], |r| {
                    r.get(0)
                })
                .optional()?,
            OutcomeKind::Dead => dead
                .query_row(params![o.seq, now, o.n, o.summary, owner], |r| r.get(0))
                .optional()?,
        };
        if state.is_none() {
            continue; // not this daemon's claim any more: its lane is the new owner's business
        }
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
    (owner, lease_until): (i64, i64),
    out: &mut Vec<Job>,
) -> rusqlite::Result<()> {
    let mut claim = tx.prepare_cached(CLAIM)?;
    let mut jobs = claim
        .query_map(
            params![now, c.limit as i64, c.endpoint, owner, lease_until],
            |r| {
                let uuid: [u8; 16] = r.get(1)?;
                Ok(Job {
                    seq: r.get(0)?,
                    uuid: Uuid::from_bytes(uuid),
                    attempts: r.get(2)?,
                    attempts_total: r.get(3)?,
                    max_attempts: r.get(4)?,
                    endpoint: r.get(5)?,
                    lane: r.get(6)?,
                    due_at: r.get(7)?,
                    event: r.get::<_, Option<[u8; 16]>>(8)?.map(Uuid::from_bytes),
                    ..Job::default()
                })
            },
        )?
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

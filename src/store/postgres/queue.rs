//! Queue operations on PostgreSQL: claim, record outcomes, release, take over, renew, purge.
//!
//! The rules of `store::sqlite::queue`, with several daemons on one queue:
//! - a claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so daemons claiming the same
//!   endpoint at once take different messages and never wait for each other;
//! - an outcome is recorded only while its daemon still owns the claim (`owner = $me`): after a
//!   takeover the late outcome adds the attempt to the history and changes nothing else;
//! - only claims whose lease expired are taken over (a daemon cannot tell that another one is
//!   dead before that), by every daemon's registration thread (`coord`);
//! - one cycle is one short transaction; the outcomes of a cycle are written with one statement
//!   per kind (arrays), not one per message: each statement is a round trip to the server.

use std::collections::{HashMap, HashSet};

use postgres::types::ToSql;
use postgres::{GenericClient, Transaction};

use super::{uuid_at, uuid_opt_at, Prepared, Store, R};
use crate::error::Result;
use crate::message;
use crate::model::{Claim, Job};
use crate::store::{Claimed, Cycle, Outcome, OutcomeKind};

use super::super::sqlite::codes::CANCELLED;

/// Claims and reads the requests in one statement (each statement is a round trip). The claimed
/// rows are found by `= ANY(ARRAY(...))`, an index lookup whatever the planner guesses of the
/// CTE's size (a join with it was planned as a scan of every message once the plan was generic).
const CLAIM: &str = "WITH c AS (
        SELECT seq FROM messages WHERE state = 0 AND endpoint = $3 AND due_at <= $1
        ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED),
     u AS (
        UPDATE messages m SET state = 1, owner = $4, lease_until = $5
        WHERE m.seq = ANY(ARRAY(SELECT seq FROM c))
        RETURNING m.seq, m.uuid, m.attempts, m.attempts_total, m.max_attempts, m.endpoint,
                  m.lane, m.due_at, m.event)
     SELECT u.seq, u.uuid, u.attempts, u.attempts_total, u.max_attempts, u.endpoint, u.lane,
            u.due_at, u.event, p.method, p.url, p.headers, p.body
     FROM u JOIN payloads p ON p.seq = u.seq ORDER BY u.seq";
/// Plans the prepared statements of a transaction once, not at each execution. With the default
/// plan cache mode the claim's custom plan cost 1.3 ms of planning per cycle (measured with
/// `EXPLAIN ANALYZE`: 0.6 ms to run it), because the generic plan of its first shape (a join
/// with the claimed rows) was costed as a scan. Every statement of the cycle has an index path
/// whatever its parameters (the claimed rows are found by `= ANY(ARRAY(...))`, the outcomes'
/// arrays are small).
///
/// Without sequential scans: a generic plan made while the tables are small (a daemon started on
/// a new queue) found the claimed rows and their payloads by scanning both tables, and kept doing
/// so as they grew, until an analyze replanned it (seen with `auto_explain`: 2.5 ms per claim at
/// 1,000/s, the latency's p50 at 11 ms). Every statement of a cycle has an index path, but for
/// the few rows of `endpoints`: no JIT, which the penalty cost of a disabled scan would call in
/// (seen: 157 ms compiling one `UPDATE endpoints`).
pub(super) const GENERIC: &str = "SET LOCAL plan_cache_mode = force_generic_plan;
     SET LOCAL enable_seqscan = off; SET LOCAL jit = off";
const RENEW: &str = "UPDATE messages SET lease_until = $2
     WHERE state = 1 AND owner = $1 AND seq = ANY($3)";
/// Records the attempts ($1-$7) and marks the delivered ones ($8, with their attempt numbers
/// $10) in one statement; returns the seqs marked (those this daemon still owned, $11).
const RECORD_DELIVERED: &str = "WITH a AS (
        INSERT INTO attempts (seq, n, at, duration_us, status, error, response)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                             $5::bigint[], $6::text[], $7::bytea[])
        ON CONFLICT DO NOTHING)
     UPDATE messages m SET state = 2, due_at = $9, delivered_at = $9, cancel_requested = 0,
        owner = NULL, lease_until = NULL, attempts = m.attempts + 1, attempts_total = u.n,
        last_error = NULL
     FROM unnest($8::bigint[], $10::bigint[]) AS u(seq, n)
     WHERE m.seq = u.seq AND m.state = 1 AND m.owner = $11
     RETURNING m.seq";
/// A failed attempt: pending again at $2, or cancelled (at $5) when an operator asked for that
/// while it was in flight. Returns the new state.
const MARK_RETRY: &str = "UPDATE messages SET
     state = CASE WHEN cancel_requested <> 0 THEN 5 ELSE 0 END,
     due_at = CASE WHEN cancel_requested <> 0 THEN $5::bigint ELSE $2::bigint END,
     cancelled_at = CASE WHEN cancel_requested <> 0 THEN $5::bigint END,
     cancel_requested = 0, owner = NULL, lease_until = NULL, attempts = attempts + 1,
     attempts_total = $3, last_error = $4
     WHERE seq = $1 AND state = 1 AND owner = $6
     RETURNING state";
const MARK_DEAD: &str = "UPDATE messages SET
     state = CASE WHEN cancel_requested <> 0 THEN 5 ELSE 3 END, due_at = $2,
     dead_at = CASE WHEN cancel_requested <> 0 THEN NULL ELSE $2::bigint END,
     cancelled_at = CASE WHEN cancel_requested <> 0 THEN $2::bigint END,
     cancel_requested = 0, owner = NULL, lease_until = NULL, attempts = attempts + 1,
     attempts_total = $3, last_error = $4
     WHERE seq = $1 AND state = 1 AND owner = $5
     RETURNING state";
const RELEASE: &str = "UPDATE messages SET
     state = CASE WHEN cancel_requested <> 0 THEN 5 ELSE 0 END, due_at = $2,
     cancelled_at = CASE WHEN cancel_requested <> 0 THEN $2::bigint END, cancel_requested = 0,
     owner = NULL, lease_until = NULL
     WHERE seq = $1 AND state = 1 AND owner = $3
     RETURNING state, lane";
/// Whose claims a takeover takes: `$3` = 1 every claim whose lease expired (this daemon's too:
/// it renews only the claims it holds, see `Store::held`), 2 owner `$2`'s (abandoned at
/// shutdown, or a dead daemon's). The in-flight rows are few: the lease index finds them.
macro_rules! taken {
    () => {
        "WHERE state = 1 AND CASE WHEN $3::bigint = 2 THEN owner = $2
            ELSE lease_until < $1 AND owner IS NOT NULL AND $2::bigint IS NOT NULL END"
    };
}
const CANCEL_TAKEN: &str = concat!(
    "UPDATE messages SET state = 5, due_at = $1, cancelled_at = $1,
     cancel_requested = 0, owner = NULL, lease_until = NULL ",
    taken!(),
    " AND cancel_requested <> 0 RETURNING lane"
);
const REQUEUE_TAKEN: &str = concat!(
    "UPDATE messages SET state = 0, due_at = $1, owner = NULL, lease_until = NULL ",
    taken!()
);
const NEXT_DUE: &str = "SELECT min(due_at) FROM messages WHERE state = 0 AND endpoint = $1";
/// (The outer conditions again: a row replayed while the delete waited for its lock is re-checked
/// against them only.)
const PURGE_DELIVERED: &str = "DELETE FROM messages WHERE seq IN
     (SELECT seq FROM messages WHERE state IN (2, 5) AND due_at < $1 LIMIT $2)
     AND state IN (2, 5) AND due_at < $1
     RETURNING seq";
/// Of the $2 oldest events, those created before $1 whose deliveries are all purged.
const PURGE_EVENTS: &str = "DELETE FROM events WHERE seq IN
     (SELECT seq FROM events ORDER BY seq LIMIT $2) AND created_at < $1
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event = events.uuid)";
const OLDEST_EVENT: &str = "SELECT created_at FROM events ORDER BY seq LIMIT 1";
/// After a lane's head is delivered (or dead and skipped), its next message becomes pending.
/// (The outer `state = 4`: under READ COMMITTED a row changed meanwhile is re-checked against the
/// outer conditions only; without it a message just promoted and claimed could be set back.)
pub(super) const PROMOTE: &str = "UPDATE messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = $1 AND state <> 2 AND state = 4
      ORDER BY seq LIMIT 1) AND state = 4";
/// After a lane's message left it other than by delivery, its next waiting message goes, unless
/// the lane still has one pending, in flight or dead.
pub(super) const PROMOTE_IF_FREE: &str = "UPDATE messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = $1 AND state <> 2 AND state = 4
      ORDER BY seq LIMIT 1)
     AND state = 4
     AND NOT EXISTS (SELECT 1 FROM messages WHERE lane = $1 AND state <> 2
      AND state IN (0, 1, 3))";
const TAKE_ENABLES: &str =
    "UPDATE endpoints SET enable_requested = 0 WHERE enable_requested = 1 RETURNING id";

impl Store {
    /// Takes over the claims whose lease ended before `now` (their daemon is gone, or cut off
    /// from the database for longer than its lease). Returns how many were requeued.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn take_over_expired(&self, now: i64) -> Result<usize> {
        self.take_over(now, self.owner, 1)
    }

    /// Takes over every claim of daemon `owner`, known to be gone (a process of this host that
    /// no longer runs), without waiting for its leases.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn take_over_owner(&self, owner: i64, now: i64) -> Result<usize> {
        self.take_over(now, owner, 2)
    }

    /// Gives up this daemon's own claims (requests still running at the end of a shutdown).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn abandon(&self, now: i64) -> Result<usize> {
        self.held.borrow_mut().clear();
        self.take_over(now, self.owner, 2)
    }

    /// `whose`: 1 the claims of owners other than `owner` whose lease expired, 2 those of `owner`.
    fn take_over(&self, now: i64, owner: i64, whose: i64) -> Result<usize> {
        self.tx("take over claims", |tx| {
            let lanes: Vec<Option<String>> = tx
                .query(CANCEL_TAKEN, &[&now, &owner, &whose])?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            for lane in lanes.iter().flatten() {
                tx.execute(PROMOTE_IF_FREE, &[lane])?;
            }
            let n = tx.execute(REQUEUE_TAKEN, &[&now, &owner, &whose])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    /// Extends this daemon's leases to `until`.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn renew(&self, until: i64) -> Result<usize> {
        let owner = self.owner;
        let held: Vec<i64> = self.held.borrow().seqs();
        self.run("renew leases", |c| {
            let renew = self.prepared.get(c, RENEW)?;
            let n = c.execute(&renew, &[&owner, &until, &held])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    /// One unit of the dispatcher's work, in one transaction (see `Queue::cycle`). A cycle with
    /// new messages commits with `synchronous_commit = on` (they are accepted when it returns)
    /// and tells the other daemons; the others with `off`.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`; the transaction is rolled back and nothing changes.
    pub(crate) fn cycle(&self, c: &Cycle<'_>, now: i64) -> Result<Claimed> {
        let (owner, lease) = (self.owner, crate::time::duration_ms(self.pg.lease));
        let seen_since = now.saturating_sub(super::registry::gone_after(&self.pg));
        let gone: HashSet<i64> = c
            .outcomes
            .iter()
            .map(|o| o.seq)
            .chain(c.released.iter().copied())
            .collect();
        let mut counts = self.held.borrow().counts_without(&gone);
        let out = self.tx("cycle", |tx| {
            let mut out = Claimed::default();
            // The cycle's statements are prepared once and planned once (`GENERIC`); accepted
            // messages are durable when the cycle returns (the daemon's session commits with
            // `off`, see `Store::connection`).
            if c.inserts.is_empty() {
                tx.batch_execute(GENERIC)?;
            } else {
                tx.batch_execute(&format!("{GENERIC}; SET LOCAL synchronous_commit = on"))?;
                let mut endpoints = HashMap::new();
                let mut batch = super::batch::Batch::default();
                out.inserted = c
                    .inserts
                    .iter()
                    .map(|m| {
                        super::insert::insert(
                            tx,
                            &self.prepared,
                            (&mut endpoints, &mut batch),
                            m,
                            now,
                        )
                    })
                    .collect::<R<_>>()?;
                batch.flush(tx, &self.prepared)?;
                tx.execute("SELECT pg_notify('webhookd', 'm')", &[])?;
            }
            if !c.outcomes.is_empty() {
                record(
                    tx,
                    &self.prepared,
                    c.outcomes,
                    now,
                    owner,
                    &mut out.cancelled,
                )?;
            }
            for seq in c.released {
                let release = self.prepared.get(tx, RELEASE)?;
                if let Some(row) = tx.query_opt(&release, &[seq, &now, &owner])? {
                    let (state, lane): (i64, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
                    if state == CANCELLED {
                        out.cancelled.push(*seq);
                        if let Some(lane) = lane {
                            tx.execute(PROMOTE_IF_FREE, &[&lane])?;
                        }
                    }
                }
            }
            out.health = super::endpoints::save_health(tx, &self.prepared, c.health)?;
            if c.take_enables {
                let take = self.prepared.get(tx, TAKE_ENABLES)?;
                out.enabled = tx
                    .query(&take, &[])?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<std::result::Result<_, _>>()?;
            }
            let lease = (owner, now.saturating_add(lease));
            let mut budget = c.claim_budget.unwrap_or(usize::MAX);
            for claim in c.claims.iter().filter(|c| c.limit > 0) {
                if budget == 0 {
                    break;
                }
                let wanted = claim.limit.min(budget);
                let allowance = match &claim.shared {
                    Some(limits) if claim.endpoint != 0 => {
                        let mine = super::limits::Mine {
                            owner,
                            own: counts.get(&claim.endpoint).copied().unwrap_or(0),
                            seen_since,
                        };
                        Some(super::limits::allow(
                            tx,
                            &self.prepared,
                            (claim.endpoint, limits),
                            wanted,
                            &mine,
                            now,
                        )?)
                    }
                    _ => None,
                };
                let limit = allowance.as_ref().map_or(wanted, |a| a.limit);
                let before = out.jobs.len();
                if limit > 0 {
                    let take = Claim {
                        endpoint: claim.endpoint,
                        limit,
                        shared: None,
                    };
                    claim_due(tx, &self.prepared, &take, now, lease, &mut out.jobs)?;
                }
                let claimed = out.jobs.len() - before;
                budget -= claimed;
                if claimed > 0 {
                    *counts.entry(claim.endpoint).or_insert(0) += claimed as i64;
                }
                if let Some(a) = &allowance {
                    super::limits::spend(tx, &self.prepared, claim.endpoint, a, claimed, now)?;
                }
                if claimed < wanted {
                    let next_due = self.prepared.get(tx, NEXT_DUE)?;
                    let next: Option<i64> =
                        tx.query_one(&next_due, &[&claim.endpoint])?.try_get(0)?;
                    // Held back by another daemon's share: due again when it may be claimed.
                    let retry = allowance.as_ref().and_then(|a| a.retry_at);
                    out.next_due
                        .push((claim.endpoint, next.map(|n| retry.map_or(n, |r| n.max(r)))));
                }
            }
            self.held
                .borrow()
                .publish(tx, &self.prepared, owner, &counts)?;
            Ok(out)
        })?;
        self.held.borrow_mut().committed(&gone, &out.jobs, counts);
        Ok(out)
    }

    /// The earliest `due_at` of a pending message of endpoint `endpoint` (0: plain URLs).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn next_due(&self, endpoint: i64) -> Result<Option<i64>> {
        self.run("find next due message", |c| {
            Ok(c.query_one(NEXT_DUE, &[&endpoint])?.try_get(0)?)
        })
    }

    /// Deletes up to `limit` messages delivered (or cancelled) before `before`, with their
    /// payloads and attempts, and the events past retention whose deliveries are all gone.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn purge_delivered(&self, before: i64, limit: usize) -> Result<usize> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.tx("purge", |tx| {
            let seqs: Vec<i64> = tx
                .query(PURGE_DELIVERED, &[&before, &limit])?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            delete_details(tx, &seqs)?;
            let oldest: Option<i64> = match tx.query_opt(OLDEST_EVENT, &[])? {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            };
            let events = match oldest {
                Some(t) if t < before => tx.execute(PURGE_EVENTS, &[&before, &limit])?,
                _ => 0,
            };
            Ok(seqs.len() + usize::try_from(events).unwrap_or(0))
        })
    }
}

/// Deletes the payloads and attempts of deleted messages.
pub(super) fn delete_details(c: &mut impl GenericClient, seqs: &[i64]) -> R<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let seqs = seqs.to_vec();
    c.execute("DELETE FROM payloads WHERE seq = ANY($1)", &[&seqs])?;
    c.execute("DELETE FROM attempts WHERE seq = ANY($1)", &[&seqs])?;
    Ok(())
}

/// Records outcomes of claims `owner` still holds; an outcome of a claim another daemon took over
/// meanwhile changes nothing but the attempt's history.
fn record(
    tx: &mut Transaction<'_>,
    p: &Prepared,
    outcomes: &[Outcome],
    now: i64,
    owner: i64,
    cancelled: &mut Vec<i64>,
) -> R<()> {
    let seqs: Vec<i64> = outcomes.iter().map(|o| o.seq).collect();
    let ns: Vec<i64> = outcomes.iter().map(|o| i64::from(o.n)).collect();
    let ats: Vec<i64> = outcomes.iter().map(|o| o.at).collect();
    let durations: Vec<i64> = outcomes.iter().map(|o| o.duration_us).collect();
    let statuses: Vec<Option<i64>> = outcomes.iter().map(|o| o.status.map(i64::from)).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let responses: Vec<Option<&[u8]>> = outcomes
        .iter()
        .map(|o| (!o.response.is_empty()).then_some(o.response.as_slice()))
        .collect();
    let delivered: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.kind == OutcomeKind::Delivered)
        .collect();
    let delivered_seqs: Vec<i64> = delivered.iter().map(|o| o.seq).collect();
    let delivered_ns: Vec<i64> = delivered.iter().map(|o| i64::from(o.n)).collect();
    let params: [&(dyn ToSql + Sync); 11] = [
        &seqs,
        &ns,
        &ats,
        &durations,
        &statuses,
        &errors,
        &responses,
        &delivered_seqs,
        &now,
        &delivered_ns,
        &owner,
    ];
    let record = p.get(tx, RECORD_DELIVERED)?;
    let mut states: HashMap<i64, i64> = HashMap::new();
    for row in tx.query(&record, &params)? {
        states.insert(row.try_get(0)?, super::super::sqlite::codes::DELIVERED);
    }
    for o in outcomes {
        let n = i64::from(o.n);
        let row = match o.kind {
            OutcomeKind::Delivered => None,
            OutcomeKind::Retry { due_at } => {
                let retry = p.get(tx, MARK_RETRY)?;
                tx.query_opt(&retry, &[&o.seq, &due_at, &n, &o.summary, &now, &owner])?
            }
            OutcomeKind::Dead => {
                let dead = p.get(tx, MARK_DEAD)?;
                tx.query_opt(&dead, &[&o.seq, &now, &n, &o.summary, &owner])?
            }
        };
        if let Some(row) = row {
            states.insert(o.seq, row.try_get(0)?);
        }
    }
    for o in outcomes {
        // Not this daemon's claim any more: its lane is the new owner's business.
        let Some(&state) = states.get(&o.seq) else {
            continue;
        };
        let was_cancelled = state == CANCELLED;
        if was_cancelled {
            cancelled.push(o.seq);
        }
        if let Some(lane) = &o.lane {
            if was_cancelled {
                let promote_if_free = p.get(tx, PROMOTE_IF_FREE)?;
                tx.execute(&promote_if_free, &[lane])?;
            } else if o.promote {
                let promote = p.get(tx, PROMOTE)?;
                tx.execute(&promote, &[lane])?;
            }
        }
    }
    Ok(())
}

fn claim_due(
    tx: &mut Transaction<'_>,
    p: &Prepared,
    c: &Claim,
    now: i64,
    (owner, lease_until): (i64, i64),
    out: &mut Vec<Job>,
) -> R<()> {
    let limit = i64::try_from(c.limit).unwrap_or(i64::MAX);
    let claim = p.get(tx, CLAIM)?;
    let rows = tx.query(&claim, &[&now, &limit, &c.endpoint, &owner, &lease_until])?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        let count = |i: usize| -> R<u32> {
            let v: i64 = r.try_get(i)?;
            Ok(u32::try_from(v).unwrap_or(u32::MAX))
        };
        let max: Option<i64> = r.try_get(4)?;
        jobs.push(Job {
            seq: r.try_get(0)?,
            uuid: uuid_at(r, 1)?,
            attempts: count(2)?,
            attempts_total: count(3)?,
            max_attempts: max.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
            endpoint: r.try_get(5)?,
            lane: r.try_get(6)?,
            due_at: r.try_get(7)?,
            event: uuid_opt_at(r, 8)?,
            method: r.try_get(9)?,
            url: r.try_get(10)?,
            headers: message::decode_headers(r.try_get(11)?),
            body: r.try_get(12)?,
            ..Job::default()
        });
    }
    out.append(&mut jobs);
    Ok(())
}

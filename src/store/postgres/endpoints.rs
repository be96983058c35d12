//! The `endpoints` table: one row per endpoint name ever used, with the health the daemons save
//! (see `deliver::endpoints`), and what `webhookd endpoints` reads: counts per state and the
//! ordered lanes of an endpoint.
//!
//! On PostgreSQL several processes add endpoints at once: a row is added under the advisory lock
//! `ENDPOINTS_LOCK` (`endpoint_id`), so ids become visible in their order and a daemon that
//! discovers endpoints by id (`endpoint_health_after`) never passes over one committed late.

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Transaction};
use uuid::Uuid;

use super::inspect::{int_at, int_opt_at};
use super::{circuit_at, state_at, uuid_at, Prepared, Store, R};
use crate::error::Result;
use crate::model::{Health, State};
use crate::store::{Attempt, EndpointRow, Lane, Pending};

/// The advisory lock under which endpoint rows are added ("whke"; migrations use "whkd").
const ENDPOINTS_LOCK: i64 = 0x7768_6B65;

const ALL: &str = "SELECT id, name, state, failures, failing_since, last_success_at, last_error,
     last_error_at, changed_at, reason, health_gen FROM endpoints ORDER BY name";
/// The same for the rows made after endpoint $1 (new origins, mostly).
const AFTER: &str = "SELECT id, name, state, failures, failing_since, last_success_at, last_error,
     last_error_at, changed_at, reason, health_gen FROM endpoints WHERE id > $1 ORDER BY id";
/// The rows whose state changed since generation $1 (another daemon's or an operator's change).
const CHANGED: &str = "SELECT id, name, state, failures, failing_since, last_success_at,
     last_error, last_error_at, changed_at, reason, health_gen FROM endpoints
     WHERE health_gen > $1 ORDER BY health_gen";
/// Every endpoint with pending messages and its earliest due time: a skip scan of the state
/// index (one seek per such endpoint, none for the others).
const PENDING_ALL: &str = "WITH RECURSIVE e(id) AS (
       SELECT (SELECT endpoint FROM messages WHERE state = 0 ORDER BY endpoint LIMIT 1)
       UNION ALL
       SELECT (SELECT endpoint FROM messages WHERE state = 0 AND endpoint > e.id
               ORDER BY endpoint LIMIT 1)
       FROM e WHERE e.id IS NOT NULL)
     SELECT id, (SELECT min(due_at) FROM messages WHERE state = 0 AND endpoint = e.id)
     FROM e WHERE id IS NOT NULL";
/// The attempts of endpoint $1's latest messages, newest first ($2 at most). There is no index of
/// attempts by time; the messages with the latest attempts are found by the state index: in each
/// finished or in-flight state the last $2 by due time (when they were last due), and among the
/// pending ones the $2 due soonest (a retry waits its backoff: the latest failures are due soon)
/// and the $2 due last. Backwards and forwards ranges of the state index, never a scan.
const RECENT_ATTEMPTS: &str = "WITH recent(seq) AS (
       SELECT seq FROM (SELECT seq FROM messages WHERE state = 0 AND endpoint = $1
                        ORDER BY due_at LIMIT $2) r0
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 0 AND endpoint = $1
                        ORDER BY due_at DESC LIMIT $2) r0d
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 1 AND endpoint = $1
                        ORDER BY due_at DESC LIMIT $2) r1
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 2 AND endpoint = $1
                        ORDER BY due_at DESC LIMIT $2) r2
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 3 AND endpoint = $1
                        ORDER BY due_at DESC LIMIT $2) r3
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 4 AND endpoint = $1
                        ORDER BY due_at DESC LIMIT $2) r4
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 5 AND endpoint = $1
                        ORDER BY due_at DESC LIMIT $2) r5)
     SELECT m.uuid, m.state, a.n, a.at, a.duration_us, a.status, a.error
     FROM recent r JOIN attempts a ON a.seq = r.seq JOIN messages m ON m.seq = r.seq
     ORDER BY a.at DESC, a.n DESC LIMIT $2";
/// The same among messages $1 < seq <= $2 (those committed since the daemon last looked).
const PENDING_NEW: &str = "SELECT endpoint, min(due_at) FROM messages
     WHERE seq > $1 AND seq <= $2 AND state = 0 GROUP BY endpoint";
/// Counts per state of one endpoint: one range of the state index per state.
const COUNTS: &str = "SELECT state, count(*) FROM messages
     WHERE state IN (0, 1, 3, 4) AND endpoint = $1 GROUP BY state";
/// Every daemon takes the enabled state (a new `health_gen`); one of them logs the operator's
/// request (`enable_requested`).
const ENABLE: &str = "UPDATE endpoints SET enable_requested = 1, state = 0, failures = 0,
     failing_since = NULL, reason = NULL, changed_at = $2, probe_at = NULL,
     health_gen = nextval('endpoint_health_gen') WHERE name = $1";
/// Lanes of an endpoint with messages not yet delivered: messages, the head (lowest seq) and its
/// state.
const LANES: &str = "SELECT l.lane, l.n, h.uuid, h.state FROM
       (SELECT lane, count(*) AS n, min(seq) AS head FROM messages
        WHERE state IN (0, 1, 3, 4) AND endpoint = $1 AND lane IS NOT NULL
        GROUP BY lane) l
     JOIN messages h ON h.seq = l.head ORDER BY l.lane";
/// Saves a daemon's health of an endpoint, which several daemons share: the state (and what
/// goes with it) only if it is still the generation the daemon knew ($10); a new state takes the
/// next generation. A daemon that did not know of a newer change (another daemon opened or
/// disabled the endpoint, an operator enabled it) keeps that change and takes it from the row
/// returned (`deliver::Endpoints::adopt`).
const SAVE_HEALTH: &str = "UPDATE endpoints SET
     last_success_at = $5, last_error = $6, last_error_at = $7,
     failures = CASE WHEN health_gen = $10 THEN $3 ELSE failures END,
     failing_since = CASE WHEN health_gen = $10 THEN $4 ELSE failing_since END,
     state = CASE WHEN health_gen = $10 THEN $2 ELSE state END,
     changed_at = CASE WHEN health_gen = $10 THEN $8 ELSE changed_at END,
     reason = CASE WHEN health_gen = $10 THEN $9 ELSE reason END,
     health_gen = CASE WHEN health_gen = $10 AND state <> $2
                       THEN nextval('endpoint_health_gen') ELSE health_gen END
     WHERE id = $1
     RETURNING id, name, state, failures, failing_since, last_success_at, last_error,
       last_error_at, changed_at, reason, health_gen";
const ENDPOINT_ID: &str = "SELECT id FROM endpoints WHERE name = $1";
const INSERT_ENDPOINT: &str =
    "INSERT INTO endpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id";

/// Saves the daemon's `health` of endpoints in the cycle's transaction, in id order (two daemons
/// saving the same endpoints never wait for each other in a circle). Returns the rows whose
/// generation moved (another daemon's change came first, or this one took a new generation),
/// and notifies the other daemons when a state changed.
///
/// # Errors
/// The database's.
pub(super) fn save_health(
    tx: &mut Transaction<'_>,
    p: &Prepared,
    health: &[Health],
) -> R<Vec<Health>> {
    let mut health: Vec<&Health> = health.iter().collect();
    health.sort_unstable_by_key(|h| h.id);
    let (mut moved, mut state_changed) = (Vec::new(), false);
    for h in health {
        let save = p.get(tx, SAVE_HEALTH)?;
        let row = tx.query_opt(
            &save,
            &[
                &h.id,
                &super::circuit_code(h.state),
                &h.failures,
                &h.failing_since,
                &h.last_success_at,
                &h.last_error,
                &h.last_error_at,
                &h.changed_at,
                &h.reason,
                &h.gen,
            ],
        )?;
        if let Some(row) = row {
            let (_, now) = health_row(&row)?;
            if now.gen != h.gen {
                state_changed |= now.state == h.state;
                moved.push(now);
            }
        }
    }
    if state_changed {
        // The other daemons take the new state at once (and every few seconds anyway).
        tx.execute("SELECT pg_notify('webhookd', 'e')", &[])?;
    }
    Ok(moved)
}

/// The id of endpoint `name`, inserted if it has none yet (in the caller's transaction).
///
/// A new row is added under `ENDPOINTS_LOCK`, held until the transaction ends: the rows of
/// concurrent transactions get their ids and commit one after the other. A name another process
/// adds meanwhile is not added again (`ON CONFLICT DO NOTHING` waits for it, then it is read).
///
/// # Errors
/// The database's.
pub(super) fn endpoint_id(c: &mut impl GenericClient, name: &str) -> R<i64> {
    if let Some(row) = c.query_opt(ENDPOINT_ID, &[&name])? {
        return Ok(row.try_get(0)?);
    }
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&ENDPOINTS_LOCK])?;
    match c.query_opt(INSERT_ENDPOINT, &[&name])? {
        Some(row) => Ok(row.try_get(0)?),
        None => Ok(c.query_one(ENDPOINT_ID, &[&name])?.try_get(0)?),
    }
}

/// An endpoint's name and saved health, from a row of `ALL`/`AFTER`/`CHANGED` (and
/// `SAVE_HEALTH`'s).
fn health_row(r: &Row) -> R<(String, Health)> {
    Ok((
        r.try_get(1)?,
        Health {
            id: r.try_get(0)?,
            state: circuit_at(r, 2)?,
            failures: r.try_get(3)?,
            failing_since: r.try_get(4)?,
            last_success_at: r.try_get(5)?,
            last_error: r.try_get(6)?,
            last_error_at: r.try_get(7)?,
            changed_at: r.try_get(8)?,
            reason: r.try_get(9)?,
            gen: r.try_get(10)?,
        },
    ))
}

impl Store {
    /// Makes sure every name has a row (and so an id). Daemons that start together may add the
    /// same names: each is added once.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn ensure_endpoints(&mut self, names: &[String]) -> Result<()> {
        self.tx("add endpoint", |tx| {
            for name in names {
                endpoint_id(tx, name)?;
            }
            Ok(())
        })
    }

    /// Every endpoint's saved health, by name.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn endpoint_health(&self) -> Result<Vec<(String, Health)>> {
        self.health_rows(ALL, &[])
    }

    /// The saved health whose state changed after generation `after`.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn health_changes(&self, after: i64) -> Result<Vec<Health>> {
        Ok(self
            .health_rows(CHANGED, &[&after])?
            .into_iter()
            .map(|(_, h)| h)
            .collect())
    }

    /// The saved health of the endpoints (and origins) made after endpoint `id`.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn endpoint_health_after(&self, id: i64) -> Result<Vec<(String, Health)>> {
        self.health_rows(AFTER, &[&id])
    }

    /// Endpoints with pending messages and their earliest due times: among every message, or
    /// among those above seq `after` (committed since the daemon last looked).
    ///
    /// On PostgreSQL a seq is taken when a message is inserted, not when it commits: a message
    /// whose transaction commits after one with a higher seq is not found among the new ones,
    /// only by the next look at every message (the dispatcher's periodic one).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn pending_endpoints(&self, after: Option<i64>) -> Result<Pending> {
        self.run("find endpoints with pending messages", |c| {
            // The highest seq first: a message committed after it is found by the next look.
            let seen: i64 = c
                .query_one("SELECT coalesce(max(seq), 0) FROM messages", &[])?
                .try_get(0)?;
            let rows = match after {
                Some(after) => c.query(PENDING_NEW, &[&after, &seen])?,
                None => c.query(PENDING_ALL, &[])?,
            };
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<R<Vec<_>>>()?;
            Ok(Pending { rows, seen })
        })
    }

    fn health_rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<(String, Health)>> {
        self.run("read endpoints", |c| {
            c.query(sql, params)?.iter().map(health_row).collect()
        })
    }

    /// Every known endpoint with its health and message counts.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn endpoint_rows(&self) -> Result<Vec<EndpointRow>> {
        let health = self.endpoint_health()?;
        self.run("count endpoint messages", |c| {
            let counts = c.prepare(COUNTS)?;
            let mut out = Vec::with_capacity(health.len());
            for (name, health) in health {
                let mut row = EndpointRow {
                    name,
                    ..EndpointRow::default()
                };
                for r in c.query(&counts, &[&health.id])? {
                    let state: i64 = r.try_get(0)?;
                    let n = u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0);
                    match state {
                        0 => row.pending = n,
                        1 => row.in_flight = n,
                        3 => row.dead = n,
                        _ => row.waiting = n,
                    }
                }
                row.health = health;
                out.push(row);
            }
            Ok(out)
        })
    }

    /// The ordered lanes of endpoint `id` (0: plain URLs) that have messages not yet delivered.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn lanes(&self, id: i64) -> Result<Vec<Lane>> {
        self.run("read lanes", |c| {
            c.query(LANES, &[&id])?
                .iter()
                .map(|r| {
                    let lane: String = r.try_get(0)?;
                    Ok(Lane {
                        key: crate::model::Lane::decode(&lane).key,
                        messages: r.try_get::<_, i64>(1)?.try_into().unwrap_or(0),
                        head: uuid_at(r, 2)?,
                        head_state: state_at(r, 3)?,
                    })
                })
                .collect()
        })
    }

    /// Asks for endpoint `name` to be enabled (healthy, failures forgotten); a running daemon takes
    /// the request at its next look (`webhookd endpoints enable` also wakes it). False when the
    /// database has no such endpoint yet (nothing to enable).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn request_enable(&mut self, name: &str, now: i64) -> Result<bool> {
        let n = self.run(
            "enable endpoint",
            |c| Ok(c.execute(ENABLE, &[&name, &now])?),
        )?;
        Ok(n > 0)
    }

    /// The id of endpoint `name`, if the database knows it.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn find_endpoint(&self, name: &str) -> Result<Option<i64>> {
        self.run("find endpoint", |c| {
            c.query_opt(ENDPOINT_ID, &[&name])?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(Into::into)
        })
    }

    /// The last `limit` attempts of endpoint `id`'s latest messages (`RECENT_ATTEMPTS`), newest
    /// first, with each message's uuid and state (the responses are left out).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn recent_attempts(
        &self,
        id: i64,
        limit: usize,
    ) -> Result<Vec<(Uuid, State, Attempt)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("read recent attempts", |c| {
            c.query(RECENT_ATTEMPTS, &[&id, &limit])?
                .iter()
                .map(|r| {
                    Ok((
                        uuid_at(r, 0)?,
                        state_at(r, 1)?,
                        Attempt {
                            n: int_at(r, 2)?,
                            at: r.try_get(3)?,
                            duration_us: r.try_get(4)?,
                            status: int_opt_at(r, 5)?,
                            error: r.try_get(6)?,
                            response: Vec::new(),
                        },
                    ))
                })
                .collect()
        })
    }
}

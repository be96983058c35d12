//! The `endpoints` table: one row per endpoint name ever used, with the health the daemon saves
//! (see `deliver::endpoints`), and what `webhookd endpoints` reads: counts per state and the
//! ordered lanes of an endpoint.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use super::insert::endpoint_id;
use super::wrap;
use super::Store;
use crate::error::Result;
use crate::model::Health;
use crate::model::State;
use crate::store::{Attempt, EndpointRow, Lane, Pending};

const ALL: &str = "SELECT id, name, state, failures, failing_since, last_success_at, last_error,
     last_error_at, changed_at, reason FROM endpoints ORDER BY name";
/// The same for the rows made after endpoint ?1 (new origins, mostly).
const AFTER: &str = "SELECT id, name, state, failures, failing_since, last_success_at, last_error,
     last_error_at, changed_at, reason FROM endpoints WHERE id > ?1 ORDER BY id";
/// Every endpoint with pending messages and its earliest due time: a skip scan of the state
/// index (one seek per such endpoint, none for the others).
pub(super) const PENDING_ALL: &str = "WITH RECURSIVE e(id) AS (
       SELECT (SELECT endpoint FROM messages WHERE state = 0 ORDER BY endpoint LIMIT 1)
       UNION ALL
       SELECT (SELECT endpoint FROM messages WHERE state = 0 AND endpoint > e.id
               ORDER BY endpoint LIMIT 1)
       FROM e WHERE e.id IS NOT NULL)
     SELECT id, (SELECT min(due_at) FROM messages WHERE state = 0 AND endpoint = e.id)
     FROM e WHERE id IS NOT NULL";
/// The attempts of endpoint ?1's latest messages, newest first (?2 at most). There is no index of
/// attempts by time; the messages with the latest attempts are found by the state index: in each
/// finished or in-flight state the last ?2 by due time (when they were last due), and among the
/// pending ones the ?2 due soonest (a retry waits its backoff: the latest failures are due soon)
/// and the ?2 due last. Backwards and forwards ranges of the state index, never a scan.
pub(super) const RECENT_ATTEMPTS: &str = "WITH recent(seq) AS (
       SELECT seq FROM (SELECT seq FROM messages WHERE state = 0 AND endpoint = ?1
                        ORDER BY due_at LIMIT ?2)
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 0 AND endpoint = ?1
                        ORDER BY due_at DESC LIMIT ?2)
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 1 AND endpoint = ?1
                        ORDER BY due_at DESC LIMIT ?2)
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 2 AND endpoint = ?1
                        ORDER BY due_at DESC LIMIT ?2)
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 3 AND endpoint = ?1
                        ORDER BY due_at DESC LIMIT ?2)
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 4 AND endpoint = ?1
                        ORDER BY due_at DESC LIMIT ?2)
       UNION SELECT seq FROM (SELECT seq FROM messages WHERE state = 5 AND endpoint = ?1
                        ORDER BY due_at DESC LIMIT ?2))
     SELECT m.uuid, m.state, a.n, a.at, a.duration_us, a.status, a.error
     FROM recent r JOIN attempts a ON a.seq = r.seq JOIN messages m ON m.seq = r.seq
     ORDER BY a.at DESC, a.n DESC LIMIT ?2";
/// The same among messages ?1 < seq <= ?2 (those committed since the daemon last looked).
const PENDING_NEW: &str = "SELECT endpoint, min(due_at) FROM messages
     WHERE seq > ?1 AND seq <= ?2 AND state = 0 GROUP BY endpoint";
/// Counts per state of one endpoint: one range of the state index per state.
const COUNTS: &str = "SELECT state, count(*) FROM messages
     WHERE state IN (0, 1, 3, 4) AND endpoint = ?1 GROUP BY state";
const ENABLE: &str = "UPDATE endpoints SET enable_requested = 1, state = 0, failures = 0,
     failing_since = NULL, reason = NULL, changed_at = ?2 WHERE name = ?1";
/// Lanes of an endpoint with messages not yet delivered: messages, the head (lowest seq) and its
/// state.
const LANES: &str = "SELECT l.lane, l.n, h.uuid, h.state FROM
       (SELECT lane, count(*) AS n, min(seq) AS head FROM messages
        WHERE state IN (0, 1, 3, 4) AND endpoint = CAST(?1 AS INTEGER) AND lane IS NOT NULL
        GROUP BY lane) l
     JOIN messages h ON h.seq = l.head ORDER BY l.lane";

impl Store {
    /// Makes sure every name has a row (and so an id).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn ensure_endpoints(&mut self, names: &[String]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, "begin", e))?;
        for name in names {
            endpoint_id(&tx, name).map_err(|e| wrap(&path, "add endpoint", e))?;
        }
        tx.commit().map_err(|e| wrap(&path, "commit", e))
    }

    /// Every endpoint's saved health, by name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn endpoint_health(&self) -> Result<Vec<(String, Health)>> {
        self.health_rows(ALL, &[])
    }

    /// The saved health of the endpoints (and origins) made after endpoint `id`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn endpoint_health_after(&self, id: i64) -> Result<Vec<(String, Health)>> {
        self.health_rows(AFTER, &[&id])
    }

    /// Endpoints with pending messages and their earliest due times: among every message, or
    /// among those above seq `after` (committed since the daemon last looked).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn pending_endpoints(&self, after: Option<i64>) -> Result<Pending> {
        let e = |err| self.err("find endpoints with pending messages", err);
        // The highest seq first: a message committed after it is found by the next look.
        let seen: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM messages")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(e)?;
        let rows = match after {
            Some(after) => {
                let mut stmt = self.conn.prepare_cached(PENDING_NEW).map_err(e)?;
                let rows = stmt.query_map([after, seen], |r| Ok((r.get(0)?, r.get(1)?)));
                rows.and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            }
            None => {
                let mut stmt = self.conn.prepare_cached(PENDING_ALL).map_err(e)?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)));
                rows.and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            }
        }
        .map_err(e)?;
        Ok(Pending { rows, seen })
    }

    fn health_rows(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<(String, Health)>> {
        let e = |err| self.err("read endpoints", err);
        let mut stmt = self.conn.prepare_cached(sql).map_err(e)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get(1)?,
                    Health {
                        id: r.get(0)?,
                        state: super::codes::circuit_at(r, 2)?,
                        failures: r.get(3)?,
                        failing_since: r.get(4)?,
                        last_success_at: r.get(5)?,
                        last_error: r.get(6)?,
                        last_error_at: r.get(7)?,
                        changed_at: r.get(8)?,
                        reason: r.get(9)?,
                        gen: 0, // one daemon: nothing shared
                    },
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }

    /// Every known endpoint with its health and message counts.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn endpoint_rows(&self) -> Result<Vec<EndpointRow>> {
        let mut out = Vec::new();
        for (name, health) in self.endpoint_health()? {
            let mut row = EndpointRow {
                name,
                ..EndpointRow::default()
            };
            let mut stmt = self
                .conn
                .prepare_cached(COUNTS)
                .map_err(|e| self.err("count endpoint messages", e))?;
            let counts = stmt
                .query_map([health.id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.err("count endpoint messages", e))?;
            for (state, n) in counts {
                let n = u64::try_from(n).unwrap_or(0);
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
    }

    /// The ordered lanes of endpoint `id` (0: plain URLs) that have messages not yet delivered.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn lanes(&self, id: i64) -> Result<Vec<Lane>> {
        let e = |err| self.err("read lanes", err);
        let mut stmt = self.conn.prepare_cached(LANES).map_err(e)?;
        let rows = stmt
            .query_map([id], |r| {
                let lane: String = r.get(0)?;
                let uuid: [u8; 16] = r.get(2)?;
                Ok(Lane {
                    key: crate::model::Lane::decode(&lane).key,
                    messages: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    head: Uuid::from_bytes(uuid),
                    head_state: super::codes::state_at(r, 3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }

    /// Asks for endpoint `name` to be enabled (healthy, failures forgotten); a running daemon takes
    /// the request at its next look (`webhookd endpoints enable` also wakes it). False when the
    /// database has no such endpoint yet (nothing to enable).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn request_enable(&mut self, name: &str, now: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(ENABLE, params![name, now])
            .map_err(|e| self.err("enable endpoint", e))?;
        Ok(n > 0)
    }

    /// The id of endpoint `name`, if the database knows it.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn find_endpoint(&self, name: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT id FROM endpoints WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err("find endpoint", e))
    }

    /// The last `limit` attempts of endpoint `id`'s latest messages (`RECENT_ATTEMPTS`), newest
    /// first, with each message's uuid and state (the responses are left out).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn recent_attempts(
        &self,
        id: i64,
        limit: usize,
    ) -> Result<Vec<(Uuid, State, Attempt)>> {
        let e = |err| self.err("read recent attempts", err);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(RECENT_ATTEMPTS).map_err(e)?;
        let rows = stmt
            .query_map(params![id, limit], |r| {
                let uuid: [u8; 16] = r.get(0)?;
                Ok((
                    Uuid::from_bytes(uuid),
                    super::codes::state_at(r, 1)?,
                    Attempt {
                        n: r.get(2)?,
                        at: r.get(3)?,
                        duration_us: r.get(4)?,
                        status: r.get(5)?,
                        error: r.get(6)?,
                        response: Vec::new(),
                    },
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }
}

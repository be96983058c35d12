//! Finding messages by filter, newest first (the UUIDv7 order), a page at a time: what `list`
//! shows and what the bulk commands act on.
//!
//! As on SQLite, each selected state is read on its own access path, already in uuid order
//! (`bytea` compares as SQLite's memcmp), and the paths are merged: pending, waiting, dead and
//! cancelled by the partial indexes `messages_live` / `messages_live_endpoint`, in flight by the
//! state index, delivered by walking the uuid index newest first (`state + 0` keeps the state
//! index out, as SQLite's `+state`). PostgreSQL has no `INDEXED BY`: the shapes (literal
//! predicates of the partial indexes, optional conditions that fold away once the statement is
//! planned with its values) let its planner pick those indexes. `--error` is case-insensitive
//! with PostgreSQL's `lower`, which also folds non-ASCII letters (SQLite's folds ASCII only).

use postgres::types::ToSql;
use postgres::GenericClient;
use uuid::Uuid;

use super::{state_code, uuid_at, Store, R};
use crate::error::Result;
use crate::filter::{self, Filter, StateName};
use crate::model::State;
use crate::store::{Found, Query};

/// The conditions every path shares: $2/$3 uuid bounds, $4 due after (scheduled), $5 key, $6
/// error text, $7/$8 status range, $9 URL prefix, $10 limit, $11 endpoint id, $12 event type,
/// $13 the names of a tenant's endpoints (each between two U+001F).
///
/// Each optional parameter is cast where it is tested for NULL, which gives it its type; the
/// statement is planned with its values, so an absent condition folds away.
macro_rules! list_sql {
    ($head:literal) => {
        concat!(
            $head,
            " AND m.uuid < $2::bytea AND m.uuid >= $3::bytea
              AND ($4::bigint IS NULL OR m.due_at > $4)
              AND ($5::text IS NULL OR m.idem_key = $5)
              AND ($6::text IS NULL OR strpos(lower(m.last_error), lower($6)) > 0)
              AND ($7::bigint IS NULL OR EXISTS (SELECT 1 FROM attempts a
                   WHERE a.seq = m.seq AND a.n = m.attempts_total
                   AND a.status BETWEEN $7 AND $8::bigint))
              AND ($9::text IS NULL OR NOT EXISTS (SELECT 1 FROM endpoints d
                   WHERE d.id = m.endpoint AND strpos(d.name, '://') = 0) AND EXISTS (SELECT 1
                   FROM payloads p WHERE p.seq = m.seq
                   AND substr(p.url, 1, length($9)) = $9))
              AND ($11::bigint IS NULL OR m.endpoint = $11)
              AND ($12::text IS NULL OR m.event IN
                   (SELECT v.uuid FROM events v WHERE v.type = $12))
              AND ($13::text IS NULL OR m.endpoint IN (SELECT d.id FROM endpoints d
                   WHERE strpos($13, chr(31) || d.name || chr(31)) > 0))
            ORDER BY m.uuid DESC LIMIT $10::bigint"
        )
    };
}

/// Pending, waiting, dead or cancelled ($1), any endpoint. The literal `NOT IN` is the partial
/// index's predicate, so the planner may use it.
pub(super) const LIST_LIVE: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m
     WHERE m.state = $1::bigint AND m.state NOT IN (1, 2)"
);
/// The same for one named endpoint ($11): `messages_live_endpoint`.
pub(super) const LIST_LIVE_ENDPOINT: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m
     WHERE m.endpoint = $11::bigint AND m.endpoint <> 0
       AND m.state = $1::bigint AND m.state NOT IN (1, 2)"
);
/// In flight: few rows (the daemon's claim capacity).
pub(super) const LIST_IN_FLIGHT: &str =
    list_sql!("SELECT m.seq, m.uuid FROM messages m WHERE m.state = 1 AND $1::bigint = 1");
/// Delivered: walks the uuid index newest first (`+ 0` keeps the state index out).
pub(super) const LIST_DELIVERED: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m
     WHERE m.state + 0 = 2 AND $1::bigint = 2"
);
/// One idempotency key: at most one row.
pub(super) const LIST_KEY: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m WHERE m.idem_key = $5::text
               AND m.state = $1::bigint"
);

impl Store {
    /// Resolves `filter` over `states` (already checked against what the command allows).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn query<'f>(
        &self,
        filter: &'f Filter,
        states: &[StateName],
        now: i64,
    ) -> Result<Query<'f>> {
        let endpoint = match &filter.endpoint {
            None => None,
            Some(name) => Some(self.find_endpoint(name)?),
        };
        Ok(Query::new(filter, states, endpoint, now))
    }

    /// Up to `limit` messages matching `q`, newest first, older than `cursor` (the last uuid of
    /// the previous page).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn find(
        &self,
        q: &Query<'_>,
        cursor: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Found>> {
        self.run("list messages", |c| find_in(c, q, cursor, limit))
    }
}

/// [`Store::find`] on a connection or inside a transaction.
///
/// # Errors
/// The database's, or `Bad` for a uuid that is not 16 bytes.
pub(super) fn find_in(
    c: &mut impl GenericClient,
    q: &Query<'_>,
    cursor: Option<Uuid>,
    limit: usize,
) -> R<Vec<Found>> {
    if q.is_void() || limit == 0 {
        return Ok(Vec::new());
    }
    let f = q.filter;
    let mut high = cursor.unwrap_or(Uuid::max());
    if let Some(until) = f.until {
        high = high.min(filter::uuid_at(until));
    }
    let low = f.since.map_or(Uuid::nil(), filter::uuid_at);
    let (high, low): (&[u8], &[u8]) = (high.as_bytes(), low.as_bytes());
    let endpoint: Option<i64> = q.endpoint.flatten();
    let status_low = f.status.map(|s| i64::from(s.low));
    let status_high = f.status.map(|s| i64::from(s.high));
    let limit_i64 = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut found: Vec<Found> = Vec::new();
    for &(state, scheduled) in &q.paths {
        let sql = if f.key.is_some() {
            LIST_KEY
        } else {
            match state {
                State::InFlight => LIST_IN_FLIGHT,
                State::Delivered => LIST_DELIVERED,
                _ if endpoint.is_some_and(|e| e != 0) => LIST_LIVE_ENDPOINT,
                _ => LIST_LIVE,
            }
        };
        let state = state_code(state);
        let due_after = scheduled.then_some(q.now);
        let params: [&(dyn ToSql + Sync); 13] = [
            &state,
            &high,
            &low,
            &due_after,
            &f.key,
            &f.error,
            &status_low,
            &status_high,
            &f.url_prefix,
            &limit_i64,
            &endpoint,
            &f.event,
            &q.tenant_endpoints,
        ];
        for row in c.query(sql, &params)? {
            found.push(Found {
                seq: row.try_get(0)?,
                uuid: uuid_at(&row, 1)?,
            });
        }
    }
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.uuid));
    found.truncate(limit);
    Ok(found)
}

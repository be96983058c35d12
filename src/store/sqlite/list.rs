//! Finding messages by filter, newest first (the UUIDv7 order), a page at a time: what `list`
//! shows and what the bulk commands act on.
//!
//! Each selected state is read on its own access path, already in uuid order, and the paths are
//! merged, so a page costs about `limit` index entries per state, whatever the queue holds:
//! - pending, waiting, dead, cancelled: the partial index `messages_live` (state, uuid), or
//!   `messages_live_endpoint` (endpoint, state, uuid) with `--endpoint`;
//! - in flight: the state index (at most the daemon's claim capacity, sorted in memory);
//! - delivered: the uuid index itself, newest first, skipping other states (delivered messages
//!   are the bulk of a queue that keeps them, so this stops early; with a rare filter it walks
//!   far: a bounded scan, documented in webhookd(8)).
//!
//! `--since`/`--until` are uuid bounds (a UUIDv7 starts with its creation time); `--key` uses the
//! unique key index. `--status`, `--error`, `--url-prefix` and `scheduled` are checked on the rows
//! the paths yield: with a broad selection they scan it, stopping at `limit` matches.

use rusqlite::params;
use uuid::Uuid;

use super::wrap;
use super::{codes, Store};
use crate::error::Result;
use crate::filter::{uuid_at, Filter, StateName};
use crate::model::State;
use crate::store::{Found, Query};

/// The conditions every path shares: ?2/?3 uuid bounds, ?4 due after (scheduled), ?5 key, ?6
/// error text, ?7/?8 status range, ?9 URL prefix, ?10 limit, ?11 endpoint id, ?12 event type,
/// ?13 the names of a tenant's endpoints (each between two U+001F). The last two are checked on the rows the
/// path yields (each a lookup of a small list the statement builds once).
///
/// Every parameter is wrapped in `CAST`: SQLite's planner otherwise reads a bare parameter's value
/// and recompiles the statement whenever it changes (each page's cursor, each state's path).
macro_rules! list_sql {
    ($head:literal) => {
        concat!(
            $head,
            " AND m.uuid < CAST(?2 AS BLOB) AND m.uuid >= CAST(?3 AS BLOB)
              AND (CAST(?4 AS INTEGER) IS NULL OR m.due_at > CAST(?4 AS INTEGER))
              AND (CAST(?5 AS TEXT) IS NULL OR m.idem_key = CAST(?5 AS TEXT))
              AND (CAST(?6 AS TEXT) IS NULL
                   OR instr(lower(m.last_error), lower(CAST(?6 AS TEXT))) > 0)
              AND (CAST(?7 AS INTEGER) IS NULL OR EXISTS (SELECT 1 FROM attempts a
                   WHERE a.seq = m.seq AND a.n = m.attempts_total
                   AND a.status BETWEEN CAST(?7 AS INTEGER) AND CAST(?8 AS INTEGER)))
              AND (CAST(?9 AS TEXT) IS NULL OR NOT EXISTS (SELECT 1 FROM endpoints d
                   WHERE d.id = m.endpoint AND instr(d.name, '://') = 0) AND EXISTS (SELECT 1
                   FROM payloads p WHERE p.seq = m.seq
                   AND substr(p.url, 1, length(CAST(?9 AS TEXT))) = CAST(?9 AS TEXT)))
              AND (CAST(?11 AS INTEGER) IS NULL OR m.endpoint = CAST(?11 AS INTEGER))
              AND (CAST(?12 AS TEXT) IS NULL OR m.event IN
                   (SELECT v.uuid FROM events v WHERE v.type = CAST(?12 AS TEXT)))
              AND (CAST(?13 AS TEXT) IS NULL OR m.endpoint IN (SELECT d.id FROM endpoints d
                   WHERE instr(CAST(?13 AS TEXT), char(31) || d.name || char(31)) > 0))
            ORDER BY m.uuid DESC LIMIT CAST(?10 AS INTEGER)"
        )
    };
}

/// Pending, waiting, dead or cancelled (?1), any endpoint. The literal `NOT IN` lets the planner
/// use the partial index.
pub(super) const LIST_LIVE: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m INDEXED BY messages_live
     WHERE m.state = CAST(?1 AS INTEGER) AND m.state NOT IN (1, 2)"
);
/// The same for one named endpoint (?11).
pub(super) const LIST_LIVE_ENDPOINT: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m INDEXED BY messages_live_endpoint
     WHERE m.endpoint = CAST(?11 AS INTEGER) AND m.endpoint != 0
       AND m.state = CAST(?1 AS INTEGER) AND m.state NOT IN (1, 2)"
);
/// In flight: few rows (the daemon's claim capacity).
pub(super) const LIST_IN_FLIGHT: &str =
    list_sql!("SELECT m.seq, m.uuid FROM messages m WHERE m.state = 1 AND CAST(?1 AS INTEGER) = 1");
/// Delivered: walks the uuid index newest first (`+` keeps the state index out).
pub(super) const LIST_DELIVERED: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m INDEXED BY sqlite_autoindex_messages_1
     WHERE +m.state = 2 AND CAST(?1 AS INTEGER) = 2"
);
/// One idempotency key: at most one row.
pub(super) const LIST_KEY: &str = list_sql!(
    "SELECT m.seq, m.uuid FROM messages m WHERE m.idem_key = CAST(?5 AS TEXT)
               AND m.state = CAST(?1 AS INTEGER)"
);

impl Store {
    /// Resolves `filter` over `states` (already checked against what the command allows).
    ///
    /// # Errors
    /// `Db`/`Busy`.
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
    /// `Db`/`Busy`.
    pub(crate) fn find(
        &self,
        q: &Query<'_>,
        cursor: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Found>> {
        find_in(&self.conn, &self.path, q, cursor, limit)
    }
}

/// [`Store::find`] on a connection or transaction.
pub(super) fn find_in(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    q: &Query<'_>,
    cursor: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Found>> {
    if q.is_void() || limit == 0 {
        return Ok(Vec::new());
    }
    let f = q.filter;
    let mut high = cursor.unwrap_or(Uuid::max());
    if let Some(until) = f.until {
        high = high.min(uuid_at(until));
    }
    let low = f.since.map_or(Uuid::nil(), uuid_at);
    let endpoint: Option<i64> = q.endpoint.flatten();
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
        let state = codes::state_code(state);
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(|e| wrap(path, "prepare list", e))?;
        let rows = stmt
            .query_map(
                params![
                    state,
                    high.as_bytes(),
                    low.as_bytes(),
                    scheduled.then_some(q.now),
                    f.key,
                    f.error,
                    f.status.map(|s| s.low),
                    f.status.map(|s| s.high),
                    f.url_prefix,
                    limit as i64,
                    endpoint,
                    f.event,
                    q.tenant_endpoints,
                ],
                |r| {
                    Ok(Found {
                        seq: r.get(0)?,
                        uuid: Uuid::from_bytes(r.get(1)?),
                    })
                },
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| wrap(path, "list messages", e))?;
        found.extend(rows);
    }
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.uuid));
    found.truncate(limit);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{cyc, msg, test_store};

    fn plan(s: &Store, sql: &str) -> String {
        let mut stmt = s
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt
            .query_map(
                params![
                    0,
                    Uuid::max().as_bytes(),
                    Uuid::nil().as_bytes(),
                    None::<i64>,
                    None::<String>,
                    None::<String>,
                    None::<u16>,
                    None::<u16>,
                    None::<String>,
                    50,
                    None::<i64>,
                    None::<String>,
                    None::<String>
                ],
                |r| r.get::<_, String>(3),
            )
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join(" | ")
    }

    /// Every list path is an index range in uuid order: no full scan, no sort of a whole state
    /// (the in-flight path sorts at most the claim capacity).
    #[test]
    fn every_list_path_uses_an_index() {
        let (_d, s) = test_store();
        for (sql, want) in [
            (
                LIST_LIVE,
                "USING INDEX messages_live (state=? AND uuid>? AND uuid<?)",
            ),
            (
                LIST_LIVE_ENDPOINT,
                "USING INDEX messages_live_endpoint (endpoint=? AND state=? AND uuid>? AND uuid<?)",
            ),
            (LIST_IN_FLIGHT, "USING INDEX messages_due (state=?)"),
            (
                LIST_DELIVERED,
                "USING INDEX sqlite_autoindex_messages_1 (uuid>? AND uuid<?)",
            ),
            (LIST_KEY, "USING INDEX messages_key (idem_key=?)"),
        ] {
            let p = plan(&s, sql);
            assert!(p.contains(want), "{want} not in plan: {p}");
            if sql != LIST_IN_FLIGHT && sql != LIST_KEY {
                assert!(!p.contains("TEMP B-TREE"), "sorts: {p}");
            }
        }
    }

    /// Paging through a selection reuses each path's compiled statement: a new cursor (or any
    /// other filter value) must not recompile it.
    #[test]
    fn paging_does_not_recompile_the_paths() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        for i in 0..6 {
            ins.insert(&msg(&format!("http://127.0.0.1:1/{i}")), 0)?;
        }
        ins.commit()?;
        let f = Filter {
            error: Some("x".into()),
            ..Filter::default()
        };
        for filter in [&Filter::default(), &f] {
            let q = s.query(filter, &StateName::ALL, 0)?;
            let mut cursor = None;
            loop {
                let page = s.find(&q, cursor, 2)?;
                match page.last() {
                    Some(l) if page.len() == 2 => cursor = Some(l.uuid),
                    _ => break,
                }
            }
        }
        for sql in [LIST_LIVE, LIST_IN_FLIGHT, LIST_DELIVERED] {
            let stmt = s.conn.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql}"
            );
        }
        Ok(())
    }

    #[test]
    fn pages_are_newest_first_and_filtered_by_state_and_time() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        let mut uuids = Vec::new();
        for i in 0..7 {
            uuids.push(
                ins.insert(&msg(&format!("http://127.0.0.1:1/{i}")), 0)?
                    .uuid,
            );
        }
        ins.commit()?;
        let claimed = cyc(&mut s, &[], &[], 2, 0)?;
        assert_eq!(claimed.len(), 2);
        let f = Filter::default();
        let all = [StateName::Pending, StateName::InFlight];
        let q = s.query(&f, &all, 0)?;
        let page1 = s.find(&q, None, 4)?;
        let mut newest: Vec<Uuid> = uuids.clone();
        newest.reverse();
        assert_eq!(
            page1.iter().map(|f| f.uuid).collect::<Vec<_>>(),
            newest[..4]
        );
        let page2 = s.find(&q, Some(page1[3].uuid), 4)?;
        assert_eq!(
            page2.iter().map(|f| f.uuid).collect::<Vec<_>>(),
            newest[4..]
        );
        let only_in_flight = s.query(&f, &[StateName::InFlight], 0)?;
        let got: Vec<Uuid> = s
            .find(&only_in_flight, None, 10)?
            .iter()
            .map(|f| f.uuid)
            .collect();
        assert_eq!(got, vec![uuids[1], uuids[0]]);
        let until = Filter {
            until: Some(crate::filter::uuid_ms(&uuids[0])),
            ..Filter::default()
        };
        assert!(s.find(&s.query(&until, &all, 0)?, None, 10)?.is_empty());
        let unknown = Filter {
            endpoint: Some("nosuch".into()),
            ..Filter::default()
        };
        assert!(s.query(&unknown, &all, 0)?.is_void());
        Ok(())
    }
}

//! Read-only views for operators: queue counts, one message with its attempts, the dead list.

use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use super::codes;
use super::Store;
use crate::error::{Error, Result};
use crate::message;
use crate::model::State;
use crate::store::{Attempt, Counts, MessageView};

const TOTALS: &str = "SELECT state, n FROM counts";
/// The oldest pending message overall (`messages_live`: its first row) and of each endpoint
/// (`messages_live_endpoint`: one seek per endpoint).
const OLDEST_PENDING: &str =
    "SELECT uuid FROM messages WHERE state = 0 AND state NOT IN (1, 2) ORDER BY uuid LIMIT 1";
const OLDEST_PENDING_BY_ENDPOINT: &str = "SELECT e.name,
     (SELECT m.uuid FROM messages m WHERE m.endpoint = e.id AND m.state = 0
        AND m.state NOT IN (1, 2) AND m.endpoint != 0 ORDER BY m.uuid LIMIT 1)
     FROM endpoints e";
const IN_FLIGHT_COUNT: &str = "SELECT count(*) FROM messages WHERE state = 1";
/// Served by the partial index `messages_live` (state, uuid): a count of one state's range.
const WAITING: &str = "SELECT count(*) FROM messages WHERE state = 4 AND state NOT IN (1, 2)";
const SCHEDULED: &str = "SELECT count(*) FROM messages WHERE state = 0
     AND endpoint IN (SELECT 0 UNION ALL SELECT id FROM endpoints) AND due_at > ?1";
/// One message without its body (?2 = 1 adds it) and attempts.
macro_rules! view_sql {
    ($by:literal) => {
        concat!(
            "SELECT m.seq, m.state, m.idem_key, m.due_at, m.created_at, m.attempts,
                m.attempts_total, m.max_attempts, m.delivered_at, m.retried_at, m.dead_at,
                m.last_error, p.method, p.url, p.headers, iif(?2, p.body, NULL), e.name, m.lane,
                m.uuid, m.cancel_requested, m.cancelled_at, m.replayed_at, length(p.body),
                (SELECT a.status FROM attempts a WHERE a.seq = m.seq AND a.n = m.attempts_total),
                e.state, m.event
             FROM messages m JOIN payloads p USING (seq) LEFT JOIN endpoints e ON e.id = m.endpoint
             WHERE ",
            $by
        )
    };
}
/// By uuid (?1). `CAST`: with a join, SQLite's constant propagation reads a bare parameter's
/// value and then recompiles the statement whenever it changes (every row of a `list` page).
const VIEW_BY_UUID: &str = view_sql!("m.uuid = CAST(?1 AS BLOB)");
/// By seq (?1).
const VIEW_BY_SEQ: &str = view_sql!("m.seq = CAST(?1 AS INTEGER)");
const ATTEMPTS: &str =
    "SELECT n, at, duration_us, status, error, response FROM attempts WHERE seq = ?1 ORDER BY n";
/// When a message was created (ms), from its UUIDv7.
fn created_ms(b: Vec<u8>) -> Option<i64> {
    let u = Uuid::from_slice(&b).ok()?;
    let (secs, nanos) = u.get_timestamp()?.to_unix();
    Some(i64::try_from(secs).ok()? * 1000 + i64::from(nanos / 1_000_000))
}

impl Store {
    /// Starts a read transaction that lasts as long as this connection: what a command reads
    /// next (a page of `list`, then each message of it) comes from one consistent snapshot, and
    /// the file is locked once instead of at each statement.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn snapshot(&self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.err("begin read", e))
    }

    /// When the oldest pending message was created (from its UUIDv7), overall: one index seek.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn oldest_pending_overall(&self) -> Result<Option<i64>> {
        let first: Option<Vec<u8>> = self
            .conn
            .prepare_cached(OLDEST_PENDING)
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(|source| self.err("find the oldest pending message", source))?;
        Ok(first.and_then(created_ms))
    }

    /// When the oldest pending message was created (from its UUIDv7), overall (name `""`) and
    /// for each endpoint that has one.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn oldest_pending(&self) -> Result<Vec<(String, i64)>> {
        let e = |source| self.err("find the oldest pending message", source);
        let mut out = Vec::new();
        if let Some(at) = self.oldest_pending_overall()? {
            out.push((String::new(), at));
        }
        let mut stmt = self
            .conn
            .prepare_cached(OLDEST_PENDING_BY_ENDPOINT)
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
            })
            .map_err(e)?;
        for row in rows {
            let (name, uuid) = row.map_err(e)?;
            if message::is_origin(&name) {
                continue; // counted in the overall figure: a label per host would be unbounded
            }
            if let Some(at) = uuid.and_then(created_ms) {
                out.push((name, at));
            }
        }
        Ok(out)
    }

    /// Ends the read transaction `snapshot` began, if one is open.
    pub(crate) fn end_snapshot(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err("end read", e))
    }

    /// Messages per state: the trigger-kept `counts` (pending and in flight together, delivered,
    /// dead) and the in-flight rows of the state index, which are at most the daemon's claim
    /// capacity. Constant time in the queue's size. `scheduled` is left 0.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn totals(&self) -> Result<Counts> {
        let e = |source| self.err("count messages", source);
        let mut stmt = self.conn.prepare_cached(TOTALS).map_err(e)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(e)?;
        let mut c = Counts::default();
        let mut queued = 0;
        for row in rows {
            let (state, n) = row.map_err(e)?;
            let n = u64::try_from(n).unwrap_or(0);
            match codes::state(state).map_err(e)? {
                State::Pending => queued = n,
                State::InFlight | State::Waiting => {}
                State::Delivered => c.delivered = n,
                State::Dead => c.dead = n,
                State::Cancelled => c.cancelled = n,
            }
        }
        let in_flight: i64 = self
            .conn
            .prepare_cached(IN_FLIGHT_COUNT)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(e)?;
        c.in_flight = u64::try_from(in_flight).unwrap_or(0);
        c.pending = queued.saturating_sub(c.in_flight);
        Ok(c)
    }

    /// [`Store::totals`] plus how many pending messages are due after `now` and how many wait
    /// behind an earlier message of their lane: those parts read index ranges, so they grow with
    /// the numbers counted.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn counts(&self, now: i64) -> Result<Counts> {
        let mut c = self.totals()?;
        let scheduled: i64 = self
            .conn
            .prepare_cached(SCHEDULED)
            .and_then(|mut s| s.query_row([now], |r| r.get(0)))
            .map_err(|e| self.err("count scheduled messages", e))?;
        c.scheduled = u64::try_from(scheduled).unwrap_or(0);
        let waiting: i64 = self
            .conn
            .prepare_cached(WAITING)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err("count waiting messages", e))?;
        c.waiting = u64::try_from(waiting).unwrap_or(0);
        c.pending = c.pending.saturating_sub(c.waiting);
        Ok(c)
    }

    /// Everything about the message `uuid`, with its body and attempts in order.
    ///
    /// # Errors
    /// `NoSuchMessage`, `Db`/`Busy`.
    pub(crate) fn view(&self, uuid: &Uuid) -> Result<MessageView> {
        let Some(mut view) = self.read_view(VIEW_BY_UUID, uuid.as_bytes().to_vec().into(), true)?
        else {
            return Err(Error::NoSuchMessage {
                uuid: uuid.to_string(),
            });
        };
        let e = |source| self.err("read attempts", source);
        let mut stmt = self.conn.prepare_cached(ATTEMPTS).map_err(e)?;
        view.attempts = stmt
            .query_map([view.seq], |r| {
                Ok(Attempt {
                    n: r.get(0)?,
                    at: r.get(1)?,
                    duration_us: r.get(2)?,
                    status: r.get(3)?,
                    error: r.get(4)?,
                    response: r.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default(),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(view)
    }

    /// The message `seq` without its body and attempts (what `list` shows); `None` if it is gone.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn summary(&self, seq: i64) -> Result<Option<MessageView>> {
        self.read_view(VIEW_BY_SEQ, seq.into(), false)
    }

    fn read_view(
        &self,
        sql: &str,
        by: rusqlite::types::Value,
        body: bool,
    ) -> Result<Option<MessageView>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.err("read message", e))?;
        stmt.query_row(params![by, body], |r| {
            let state = codes::state_at(r, 1)?;
            let due_at: i64 = r.get(3)?;
            Ok(MessageView {
                seq: r.get(0)?,
                uuid: Uuid::from_bytes(r.get(18)?),
                state,
                key: r.get(2)?,
                next_attempt_at: matches!(state, State::Pending).then_some(due_at),
                created_at: r.get(4)?,
                attempts_in_budget: r.get(5)?,
                attempts_total: r.get(6)?,
                max_attempts: r.get(7)?,
                delivered_at: r.get(8)?,
                retried_at: r.get(9)?,
                dead_at: r.get(10)?,
                last_error: r.get(11)?,
                method: r.get(12)?,
                url: r.get(13)?,
                headers: message::decode_headers(&r.get::<_, String>(14)?),
                body: r.get(15)?,
                // A plain URL's origin is no endpoint to show.
                endpoint: r
                    .get::<_, Option<String>>(16)?
                    .filter(|n| !message::is_origin(n)),
                endpoint_circuit: match r.get::<_, Option<String>>(16)? {
                    Some(n) if !message::is_origin(&n) => Some(codes::circuit_at(r, 24)?),
                    _ => None,
                },
                ordering_key: r.get::<_, Option<String>>(17)?.map(|l| {
                    l.split_once('\u{1f}')
                        .map_or(l.clone(), |(_, k)| k.to_owned())
                }),
                cancel_requested: r.get(19)?,
                cancelled_at: r.get(20)?,
                replayed_at: r.get(21)?,
                body_size: u64::try_from(r.get::<_, i64>(22)?).unwrap_or(0),
                last_status: r.get(23)?,
                event: r.get::<_, Option<[u8; 16]>>(25)?.map(Uuid::from_bytes),
                attempts: Vec::new(),
            })
        })
        .optional()
        .map_err(|e| self.err("read message", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::test_store;

    /// Reading one message after another reuses the compiled statement (a join with a bare
    /// parameter was recompiled at every row).
    #[test]
    fn views_are_not_recompiled_row_after_row() -> Result<()> {
        let (_d, mut s) = test_store();
        let mut ins = s.inserter()?;
        let mut uuids = Vec::new();
        for _ in 0..4 {
            uuids.push(
                ins.insert(&crate::store::sqlite::tests::msg("http://127.0.0.1:1/"), 0)?
                    .uuid,
            );
        }
        ins.commit()?;
        for (i, u) in uuids.iter().enumerate() {
            s.summary(i as i64 + 1)?;
            s.view(u)?;
        }
        for sql in [VIEW_BY_SEQ, VIEW_BY_UUID] {
            let stmt = s.conn.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql}"
            );
        }
        Ok(())
    }

    /// Reading one message is an index lookup, never a scan of the table.
    #[test]
    fn message_views_are_lookups() {
        let (_d, s) = test_store();
        for sql in [VIEW_BY_UUID, VIEW_BY_SEQ, ATTEMPTS] {
            let mut stmt = s
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let n = stmt.parameter_count();
            let args: Vec<rusqlite::types::Value> = (0..n).map(|_| 1i64.into()).collect();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                plan.iter().all(|p| !p.starts_with("SCAN")),
                "{sql}: {plan:?}"
            );
        }
    }

    /// The oldest pending message, overall and per endpoint, is found by index seeks; delivered,
    /// in-flight and other endpoints' messages do not count.
    #[test]
    fn oldest_pending_is_an_index_seek() {
        let (_d, mut s) = test_store();
        s.ensure_endpoints(&["billing".into(), "idle".into()])
            .unwrap();
        let mut ins = s.inserter().unwrap();
        let plain = ins
            .insert(&crate::store::sqlite::tests::msg("http://127.0.0.1:9/a"), 0)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let billing = crate::message::Message {
            endpoint: Some("billing".into()),
            ..crate::store::sqlite::tests::msg("")
        };
        let b = ins.insert(&billing, 0).unwrap();
        ins.commit().unwrap();
        let created = |u: Uuid| {
            let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        };
        assert_eq!(
            s.oldest_pending().unwrap(),
            vec![
                (String::new(), created(plain.uuid)),
                ("billing".into(), created(b.uuid))
            ]
        );
        for sql in [OLDEST_PENDING, OLDEST_PENDING_BY_ENDPOINT] {
            let plan: Vec<String> = s
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let messages_scanned = plan
                .iter()
                .any(|p| p.starts_with("SCAN m") || p.starts_with("SCAN messages"));
            assert!(!messages_scanned, "{sql}: {plan:?}");
        }
    }
}

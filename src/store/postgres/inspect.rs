//! Read-only views for operators: queue counts, one message with its attempts, the dead list.
//!
//! On PostgreSQL the totals come from `counts`, whose rows (one per class and writer slot) are
//! summed; a snapshot is a `REPEATABLE READ READ ONLY` transaction on the store's connection (a
//! write inside one is refused). A statement that fails inside a snapshot aborts it: the next
//! reads fail until `end_snapshot`.

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row};
use uuid::Uuid;

use super::{circuit_at, state_at, uuid_at, uuid_opt_at, Fail, Store, R};
use crate::error::{Error, Result};
use crate::message;
use crate::model::State;
use crate::store::{Attempt, Counts, MessageView};

/// Messages per class, summed over the writers' slots (`sum(bigint)` is numeric: cast back).
/// The counts folded so far and the changes not yet folded (see `schema`).
const TOTALS: &str = "SELECT state, sum(n)::bigint FROM
     (SELECT state, n FROM counts UNION ALL SELECT state, n FROM count_changes) c
     GROUP BY state";
/// The oldest pending message overall (`messages_live`: its first row) and of each endpoint
/// (`messages_live_endpoint`: one seek per endpoint).
const OLDEST_PENDING: &str =
    "SELECT uuid FROM messages WHERE state = 0 AND state NOT IN (1, 2) ORDER BY uuid LIMIT 1";
const OLDEST_PENDING_BY_ENDPOINT: &str = "SELECT e.name,
     (SELECT m.uuid FROM messages m WHERE m.endpoint = e.id AND m.state = 0
        AND m.state NOT IN (1, 2) AND m.endpoint <> 0 ORDER BY m.uuid LIMIT 1)
     FROM endpoints e";
const IN_FLIGHT_COUNT: &str = "SELECT count(*) FROM messages WHERE state = 1";
/// Served by the partial index `messages_live` (state, uuid): a count of one state's range.
const WAITING: &str = "SELECT count(*) FROM messages WHERE state = 4 AND state NOT IN (1, 2)";
/// One range of the state index (state, endpoint, due_at) per endpoint.
const SCHEDULED: &str = "SELECT count(*) FROM messages WHERE state = 0
     AND endpoint IN (SELECT 0 UNION ALL SELECT id FROM endpoints) AND due_at > $1";
/// One message without its body ($2 = true adds it) and attempts.
macro_rules! view_sql {
    ($by:literal) => {
        concat!(
            "SELECT m.seq, m.state, m.idem_key, m.due_at, m.created_at, m.attempts,
                m.attempts_total, m.max_attempts, m.delivered_at, m.retried_at, m.dead_at,
                m.last_error, p.method, p.url, p.headers,
                CASE WHEN $2::boolean THEN p.body END, e.name, m.lane,
                m.uuid, m.cancel_requested, m.cancelled_at, m.replayed_at,
                octet_length(p.body)::bigint,
                (SELECT a.status FROM attempts a WHERE a.seq = m.seq AND a.n = m.attempts_total),
                e.state, m.event
             FROM messages m JOIN payloads p USING (seq) LEFT JOIN endpoints e ON e.id = m.endpoint
             WHERE ",
            $by
        )
    };
}
/// By uuid ($1, bytea).
const VIEW_BY_UUID: &str = view_sql!("m.uuid = $1");
/// By seq ($1).
const VIEW_BY_SEQ: &str = view_sql!("m.seq = $1");
/// Whether the connection is in the transaction `snapshot` began.
const IN_SNAPSHOT: &str = "SELECT current_setting('transaction_read_only') = 'on'
     AND current_setting('transaction_isolation') = 'repeatable read'";
const ATTEMPTS: &str =
    "SELECT n, at, duration_us, status, error, response FROM attempts WHERE seq = $1 ORDER BY n";

/// When a message was created (ms), from its UUIDv7.
fn created_ms(u: Uuid) -> Option<i64> {
    let (secs, nanos) = u.get_timestamp()?.to_unix();
    Some(i64::try_from(secs).ok()? * 1000 + i64::from(nanos / 1_000_000))
}

/// An integer column that must fit `T` (an attempt number, an HTTP status).
pub(super) fn int_at<T: TryFrom<i64>>(row: &Row, i: usize) -> R<T> {
    let v: i64 = row.try_get(i)?;
    T::try_from(v).map_err(|_| Fail::Bad(format!("column {i}: {v} is out of range")))
}

/// An optional integer column that must fit `T`.
pub(super) fn int_opt_at<T: TryFrom<i64>>(row: &Row, i: usize) -> R<Option<T>> {
    let v: Option<i64> = row.try_get(i)?;
    v.map(|v| T::try_from(v).map_err(|_| Fail::Bad(format!("column {i}: {v} is out of range"))))
        .transpose()
}

/// A count read as `bigint`: never negative, 0 if it were.
fn count(c: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<u64> {
    let n: i64 = c.query_one(sql, params)?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

impl Store {
    /// Starts a read transaction that lasts until `end_snapshot` on this connection: what a
    /// command reads next (a page of `list`, then each message of it) comes from one consistent
    /// snapshot (`REPEATABLE READ`, read only).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn snapshot(&self) -> Result<()> {
        self.run("begin read", |c| {
            Ok(c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?)
        })
    }

    /// When the oldest pending message was created (from its UUIDv7), overall: one index seek.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn oldest_pending_overall(&self) -> Result<Option<i64>> {
        self.run("find the oldest pending message", |c| {
            match c.query_opt(OLDEST_PENDING, &[])? {
                Some(row) => Ok(created_ms(uuid_at(&row, 0)?)),
                None => Ok(None),
            }
        })
    }

    /// When the oldest pending message was created (from its UUIDv7), overall (name `""`) and
    /// for each endpoint that has one.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn oldest_pending(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        if let Some(at) = self.oldest_pending_overall()? {
            out.push((String::new(), at));
        }
        self.run("find the oldest pending message", |c| {
            for row in c.query(OLDEST_PENDING_BY_ENDPOINT, &[])? {
                let name: String = row.try_get(0)?;
                if message::is_origin(&name) {
                    continue; // counted in the overall figure: a label per host would be unbounded
                }
                if let Some(at) = uuid_opt_at(&row, 1)?.and_then(created_ms) {
                    out.push((name, at));
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Ends the read transaction `snapshot` began, if one is open. Whether one is costs a
    /// question: a `COMMIT` without one only warns, but the warning would be logged at every
    /// read of the API's pooled connections, which end a snapshot after each request.
    ///
    /// # Errors
    /// `Db`/`DbUnavailable`.
    pub(crate) fn end_snapshot(&self) -> Result<()> {
        self.run("end read", |c| {
            let open = match c.query_one(IN_SNAPSHOT, &[]) {
                Ok(row) => row.try_get(0)?,
                // A statement failed inside the snapshot: only its end is accepted now.
                Err(e) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => true,
                Err(e) => return Err(e.into()),
            };
            if open {
                c.batch_execute("COMMIT")?;
            }
            Ok(())
        })
    }

    /// Messages per state: the trigger-kept `counts` (pending, in flight and waiting together,
    /// delivered, dead, cancelled) and the in-flight rows of the state index, which are at most
    /// the daemons' claim capacity. Constant time in the queue's size. `scheduled` is left 0 and
    /// `waiting` counted in `pending`.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn totals(&self) -> Result<Counts> {
        self.run("count messages", |c| {
            let mut counts = Counts::default();
            let mut queued = 0;
            for row in c.query(TOTALS, &[])? {
                let n: Option<i64> = row.try_get(1)?;
                let n = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
                match state_at(&row, 0)? {
                    State::Pending => queued = n,
                    State::InFlight | State::Waiting => {}
                    State::Delivered => counts.delivered = n,
                    State::Dead => counts.dead = n,
                    State::Cancelled => counts.cancelled = n,
                }
            }
            counts.in_flight = count(c, IN_FLIGHT_COUNT, &[])?;
            counts.pending = queued.saturating_sub(counts.in_flight);
            Ok(counts)
        })
    }

    /// [`Store::totals`] plus how many pending messages are due after `now` and how many wait
    /// behind an earlier message of their lane: those parts read index ranges, so they grow with
    /// the numbers counted.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn counts(&self, now: i64) -> Result<Counts> {
        let mut c = self.totals()?;
        c.scheduled = self.run("count scheduled messages", |cl| {
            count(cl, SCHEDULED, &[&now])
        })?;
        c.waiting = self.run("count waiting messages", |cl| count(cl, WAITING, &[]))?;
        c.pending = c.pending.saturating_sub(c.waiting);
        Ok(c)
    }

    /// Everything about the message `uuid`, with its body and attempts in order.
    ///
    /// # Errors
    /// `NoSuchMessage`, `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn view(&self, uuid: &Uuid) -> Result<MessageView> {
        let Some(mut view) = self.run("read message", |c| {
            read_view(c, VIEW_BY_UUID, &uuid.as_bytes().as_slice(), true)
        })?
        else {
            return Err(Error::NoSuchMessage {
                uuid: uuid.to_string(),
            });
        };
        view.attempts = self.run("read attempts", |c| {
            c.query(ATTEMPTS, &[&view.seq])?
                .iter()
                .map(|r| {
                    Ok(Attempt {
                        n: int_at(r, 0)?,
                        at: r.try_get(1)?,
                        duration_us: r.try_get(2)?,
                        status: int_opt_at(r, 3)?,
                        error: r.try_get(4)?,
                        response: r.try_get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default(),
                    })
                })
                .collect::<R<Vec<_>>>()
        })?;
        Ok(view)
    }

    /// The message `seq` without its body and attempts (what `list` shows); `None` if it is gone.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn summary(&self, seq: i64) -> Result<Option<MessageView>> {
        self.run("read message", |c| read_view(c, VIEW_BY_SEQ, &seq, false))
    }
}

/// The message `sql` selects by `by`, with its body if `body`.
fn read_view(
    c: &mut Client,
    sql: &str,
    by: &(dyn ToSql + Sync),
    body: bool,
) -> R<Option<MessageView>> {
    let Some(r) = c.query_opt(sql, &[by, &body])? else {
        return Ok(None);
    };
    let state = state_at(&r, 1)?;
    let due_at: i64 = r.try_get(3)?;
    // A plain URL's origin is no endpoint to show.
    let endpoint = r
        .try_get::<_, Option<String>>(16)?
        .filter(|n| !message::is_origin(n));
    let endpoint_circuit = match endpoint {
        Some(_) => Some(circuit_at(&r, 24)?),
        None => None,
    };
    Ok(Some(MessageView {
        seq: r.try_get(0)?,
        uuid: uuid_at(&r, 18)?,
        state,
        key: r.try_get(2)?,
        next_attempt_at: matches!(state, State::Pending).then_some(due_at),
        created_at: r.try_get(4)?,
        attempts_in_budget: int_at(&r, 5)?,
        attempts_total: int_at(&r, 6)?,
        max_attempts: int_opt_at(&r, 7)?,
        delivered_at: r.try_get(8)?,
        retried_at: r.try_get(9)?,
        dead_at: r.try_get(10)?,
        last_error: r.try_get(11)?,
        method: r.try_get(12)?,
        url: r.try_get(13)?,
        headers: message::decode_headers(r.try_get::<_, &str>(14)?),
        body: r.try_get(15)?,
        endpoint,
        endpoint_circuit,
        ordering_key: r.try_get::<_, Option<String>>(17)?.map(|l| {
            l.split_once('\u{1f}')
                .map_or(l.clone(), |(_, k)| k.to_owned())
        }),
        cancel_requested: r.try_get::<_, i64>(19)? != 0,
        cancelled_at: r.try_get(20)?,
        replayed_at: r.try_get(21)?,
        body_size: u64::try_from(r.try_get::<_, i64>(22)?).unwrap_or(0),
        last_status: int_opt_at(&r, 23)?,
        event: uuid_opt_at(&r, 25)?,
        attempts: Vec::new(),
    }))
}

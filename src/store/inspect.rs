//! Read-only views for operators: queue counts, one message with its attempts, the dead list.

use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use super::queue::{DEAD, DELIVERED, IN_FLIGHT, PENDING};
use super::Store;
use crate::error::{Error, Result};
use crate::message;

const TOTALS: &str = "SELECT state, n FROM counts";
const IN_FLIGHT_COUNT: &str = "SELECT count(*) FROM messages WHERE state = 1";
const SCHEDULED: &str = "SELECT count(*) FROM messages WHERE state = 0
     AND endpoint IN (SELECT 0 UNION ALL SELECT id FROM endpoints) AND due_at > ?1";
const VIEW: &str = "SELECT m.seq, m.state, m.idem_key, m.due_at, m.created_at, m.attempts,
        m.attempts_total, m.max_attempts, m.delivered_at, m.retried_at, m.dead_at, m.last_error,
        p.method, p.url, p.headers, p.body, e.name, m.lane
     FROM messages m JOIN payloads p USING (seq) LEFT JOIN endpoints e ON e.id = m.endpoint
     WHERE m.uuid = ?1";
const ATTEMPTS: &str =
    "SELECT n, at, duration_us, status, error, response FROM attempts WHERE seq = ?1 ORDER BY n";
const DEAD_LIST: &str = "SELECT m.uuid, p.url, m.attempts_total, m.last_error, m.dead_at, e.name
     FROM messages m JOIN payloads p USING (seq) LEFT JOIN endpoints e ON e.id = m.endpoint
     WHERE m.state = 3 ORDER BY m.due_at, m.seq";

/// A message's state, as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    InFlight,
    Delivered,
    Dead,
    /// Behind an earlier message of its ordered lane.
    Waiting,
}

impl State {
    pub(super) fn from_db(v: i64) -> State {
        match v {
            PENDING => State::Pending,
            IN_FLIGHT => State::InFlight,
            DELIVERED => State::Delivered,
            DEAD => State::Dead,
            _ => State::Waiting,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in_flight",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Waiting => "waiting",
        }
    }
}

/// Messages per state. `pending` includes the `scheduled` ones (due in the future).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) pending: u64,
    pub(crate) scheduled: u64,
    pub(crate) in_flight: u64,
    pub(crate) delivered: u64,
    pub(crate) dead: u64,
}

/// One recorded HTTP attempt.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) n: u32,
    pub(crate) at: i64,
    pub(crate) duration_us: i64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) response: Vec<u8>,
}

/// Everything stored about one message.
#[derive(Debug, Clone)]
pub(crate) struct MessageView {
    pub(crate) uuid: Uuid,
    pub(crate) state: State,
    pub(crate) key: Option<String>,
    pub(crate) method: String,
    /// The URL, or for a named endpoint the path appended to its URL.
    pub(crate) url: String,
    pub(crate) endpoint: Option<String>,
    /// The ordering key of its lane, if it is ordered.
    pub(crate) ordering_key: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) created_at: i64,
    /// Only for pending messages.
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) delivered_at: Option<i64>,
    pub(crate) retried_at: Option<i64>,
    pub(crate) dead_at: Option<i64>,
    /// Attempts in the current budget (reset by `dlq retry`).
    pub(crate) attempts_in_budget: u32,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) last_error: Option<String>,
    pub(crate) attempts: Vec<Attempt>,
}

/// One line of `dlq list`.
#[derive(Debug, Clone)]
pub(crate) struct DeadSummary {
    pub(crate) uuid: Uuid,
    /// The URL, or for a named endpoint the path appended to its URL.
    pub(crate) url: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) dead_at: Option<i64>,
}

/// Parses an operator-given uuid; a malformed one is an unknown one.
pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| Error::NoSuchMessage { uuid: s.to_owned() })
}

impl Store {
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
            match State::from_db(state) {
                State::Pending => queued = n,
                State::InFlight | State::Waiting => {}
                State::Delivered => c.delivered = n,
                State::Dead => c.dead = n,
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

    /// [`Store::totals`] plus how many pending messages are due after `now`: that part reads the
    /// index range of scheduled messages, so it grows with their number.
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
        Ok(c)
    }

    /// Everything about the message `uuid`, with its attempts in order.
    ///
    /// # Errors
    /// `NoSuchMessage`, `Db`/`Busy`.
    pub(crate) fn view(&self, uuid: &Uuid) -> Result<MessageView> {
        let e = |op| move |source| self.err(op, source);
        let row = self
            .conn
            .query_row(VIEW, [uuid.as_bytes()], |r| {
                let state = State::from_db(r.get(1)?);
                let due_at: i64 = r.get(3)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    MessageView {
                        uuid: *uuid,
                        state,
                        key: r.get(2)?,
                        next_attempt_at: matches!(state, State::Pending).then_some(due_at),
                        created_at: r.get(4)?,
                        attempts_in_budget: r.get(5)?,
                        max_attempts: r.get(7)?,
                        delivered_at: r.get(8)?,
                        retried_at: r.get(9)?,
                        dead_at: r.get(10)?,
                        last_error: r.get(11)?,
                        method: r.get(12)?,
                        url: r.get(13)?,
                        headers: message::decode_headers(&r.get::<_, String>(14)?),
                        body: r.get(15)?,
                        endpoint: r.get(16)?,
                        ordering_key: r.get::<_, Option<String>>(17)?.map(|l| {
                            l.split_once('\u{1f}')
                                .map_or(l.clone(), |(_, k)| k.to_owned())
                        }),
                        attempts: Vec::new(),
                    },
                ))
            })
            .optional()
            .map_err(e("read message"))?;
        let Some((seq, mut view)) = row else {
            return Err(Error::NoSuchMessage {
                uuid: uuid.to_string(),
            });
        };
        let mut stmt = self
            .conn
            .prepare_cached(ATTEMPTS)
            .map_err(e("read attempts"))?;
        view.attempts = stmt
            .query_map([seq], |r| {
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
            .map_err(e("read attempts"))?;
        Ok(view)
    }

    /// Calls `f` for every dead message, oldest death first, without loading them all.
    ///
    /// # Errors
    /// `Db`/`Busy`, or what `f` returns.
    pub(crate) fn for_each_dead(&self, mut f: impl FnMut(DeadSummary) -> Result<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(DEAD_LIST)
            .map_err(|e| self.err("list dead messages", e))?;
        let mut rows = stmt
            .query(params![])
            .map_err(|e| self.err("list dead messages", e))?;
        while let Some(r) = rows.next().map_err(|e| self.err("list dead messages", e))? {
            let read = || -> rusqlite::Result<DeadSummary> {
                Ok(DeadSummary {
                    uuid: Uuid::from_bytes(r.get(0)?),
                    url: r.get(1)?,
                    attempts: r.get(2)?,
                    last_error: r.get(3)?,
                    dead_at: r.get(4)?,
                    endpoint: r.get(5)?,
                })
            };
            f(read().map_err(|e| self.err("list dead messages", e))?)?;
        }
        Ok(())
    }
}

//! Operator actions on messages: cancel, retry a dead one (optionally edited), delete a dead one,
//! replay a delivered, dead or cancelled one.
//!
//! Named uuids are acted on in one transaction: each must exist and be in a state the action
//! takes, or nothing changes. A filter is acted on in batches of bounded size, each its own short
//! transaction ([`Store::act_batch`]), so that the daemons keep delivering between them; batches
//! follow the uuid order, so a message is acted on at most once.
//!
//! Where SQLite's IMMEDIATE transaction kept the daemon out between reading a message's state and
//! changing it, the rows acted on are read `FOR UPDATE` (in seq order, one statement): a daemon's
//! claim skips them, and one being claimed or recorded is waited for and read again. A replay
//! locks one active message of its lane (`FOR SHARE`), so that it cannot finish, and miss the
//! replayed one waiting behind it, before this transaction commits.
//!
//! Lanes: a message that leaves its ordered lane without being delivered (cancelled, deleted) lets
//! the lane's next message go, unless the lane still has one pending, in flight or dead. A
//! replayed message of a lane that is busy waits for it, then goes next. Every action takes the
//! lane locks of its messages first, as inserts do.

use std::collections::{HashMap, HashSet};

use postgres::Transaction;
use uuid::Uuid;

use super::list::find_in;
use super::{state_at, uuid_at, Store, R};
use crate::error::{Error, Result};
use crate::message;
use crate::model::State;
use crate::store::sqlite::codes::{PENDING, WAITING};
use crate::store::{Action, Done, Found, Query};

/// `named`: the message's endpoint id if it is a named endpoint's, 0 for a plain URL (whose
/// endpoint is its origin's, or 0 for one stored before origins).
macro_rules! named {
    () => {
        "CASE WHEN strpos(coalesce((SELECT e.name FROM endpoints e WHERE e.id = m.endpoint), ''),
         '://') > 0 THEN 0 ELSE m.endpoint END"
    };
}
/// The named messages ($1, `bytea[]`), locked.
const FIND: &str = concat!(
    "SELECT m.uuid, m.seq, m.state, m.lane, ",
    named!(),
    " FROM messages m WHERE m.uuid = ANY($1) ORDER BY m.seq FOR UPDATE OF m"
);
/// The messages of a batch ($1, `bigint[]`), locked.
const READ: &str = concat!(
    "SELECT m.uuid, m.seq, m.state, m.lane, ",
    named!(),
    " FROM messages m WHERE m.seq = ANY($1) ORDER BY m.seq FOR UPDATE OF m"
);
/// The ordered lanes of the messages $1 (uuids) or $2 (seqs), in the order their locks are
/// taken. A message never changes lane: read before anything is locked.
const LANES: &str = "SELECT DISTINCT lane FROM messages
     WHERE (uuid = ANY($1) OR seq = ANY($2)) AND lane IS NOT NULL ORDER BY lane";
/// The newest of the messages $1 (`bigint[]`) that goes to a named endpoint.
const FIRST_NAMED: &str = concat!(
    "SELECT m.uuid FROM messages m WHERE m.seq = ANY($1) AND ",
    named!(),
    " <> 0 ORDER BY m.uuid DESC LIMIT 1"
);
const REPOINT: &str = "UPDATE messages SET endpoint = $2 WHERE seq = $1";
const CANCEL: &str = "UPDATE messages SET state = 5, due_at = $2, cancelled_at = $2
     WHERE seq = $1 AND state IN (0, 4)";
const CANCEL_LATER: &str = "UPDATE messages SET cancel_requested = 1 WHERE seq = $1 AND state = 1";
const REVIVE: &str = "UPDATE messages SET state = 0, due_at = $2, attempts = 0,
     retried_at = $2, dead_at = NULL WHERE seq = $1 AND state = 3";
const REPLAY: &str = "UPDATE messages SET state = $3, due_at = $2, attempts = 0,
     replayed_at = $2, dead_at = NULL, cancelled_at = NULL, cancel_requested = 0
     WHERE seq = $1 AND state IN (2, 3, 5)";
/// A message of lane $1 pending, in flight or waiting (other than $2), locked until commit: it
/// cannot finish (and promote the lane's next) before a replayed message waits behind it.
const LANE_ACTIVE: &str = "SELECT 1 FROM messages WHERE lane = $1 AND seq <> $2
     AND state <> 2 AND state IN (0, 1, 4) LIMIT 1 FOR SHARE";
/// After a lane's message left it other than by delivery (deleted, cancelled), its next waiting
/// message goes, unless the lane still has one pending, in flight or dead (SQLite's
/// `PROMOTE_IF_FREE`; the outer `state = 4` is checked again on a row changed meanwhile).
const PROMOTE_IF_FREE: &str = "UPDATE messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = $1 AND state <> 2 AND state = 4
      ORDER BY seq LIMIT 1) AND state = 4
     AND NOT EXISTS (SELECT 1 FROM messages WHERE lane = $1 AND state <> 2
      AND state IN (0, 1, 3))";
const READ_PAYLOAD: &str = "SELECT url, headers, body FROM payloads WHERE seq = $1";
const WRITE_PAYLOAD: &str = "UPDATE payloads SET url = $2, headers = $3, body = $4 WHERE seq = $1";
const DELETE_MESSAGE: &str = "DELETE FROM messages WHERE seq = $1 AND state = 3";
const DELETE_PAYLOAD: &str = "DELETE FROM payloads WHERE seq = $1";
const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE seq = $1";

/// A message as an action reads it.
struct Target {
    uuid: Uuid,
    seq: i64,
    state: State,
    lane: Option<String>,
    /// Its named endpoint's id, 0 for a plain URL.
    endpoint: i64,
}

/// The operation an action's errors name.
fn op(action: Action<'_>) -> &'static str {
    match action {
        Action::Cancel => "cancel",
        Action::Retry(_) => "retry",
        Action::Delete => "delete",
        Action::Replay => "replay",
    }
}

/// Takes the lane locks (`insert::lock_lane`) of the messages with uuids `uuids` or seqs
/// `seqs`, in lane order, before their rows are locked (as an insert takes its lane's lock
/// before it reads the lane's rows): a replay and an insert into the same lane then cannot both
/// find the lane idle and both let a message go.
///
/// # Errors
/// The database's.
fn lock_lanes(tx: &mut Transaction<'_>, uuids: &[&[u8]], seqs: &[i64]) -> R<()> {
    let lanes: Vec<String> = tx
        .query(LANES, &[&uuids, &seqs])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    for lane in &lanes {
        super::insert::lock_lane(tx, lane)?;
    }
    Ok(())
}

/// Reads and locks the messages `sql` selects with `keys`.
///
/// # Errors
/// The database's, or `Bad` for a row this binary cannot read.
fn lock(
    tx: &mut Transaction<'_>,
    sql: &str,
    keys: &(dyn postgres::types::ToSql + Sync),
) -> R<Vec<Target>> {
    tx.query(sql, &[keys])?
        .iter()
        .map(|r| {
            Ok(Target {
                uuid: uuid_at(r, 0)?,
                seq: r.try_get(1)?,
                state: state_at(r, 2)?,
                lane: r.try_get(3)?,
                endpoint: r.try_get(4)?,
            })
        })
        .collect()
}

impl Store {
    /// Applies `action` to the named messages, all or none.
    ///
    /// # Errors
    /// `NoSuchMessage`, `NotDead`/`WrongState`, `InvalidInput` (`--url` on an endpoint's
    /// message); nothing changes then. `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn act_on(&mut self, action: Action<'_>, uuids: &[Uuid], now: i64) -> Result<Done> {
        self.tx(op(action), |tx| {
            let keys: Vec<&[u8]> = uuids.iter().map(|u| u.as_bytes().as_slice()).collect();
            lock_lanes(tx, &keys, &[])?;
            let rows: HashMap<Uuid, Target> = lock(tx, FIND, &keys)?
                .into_iter()
                .map(|t| (t.uuid, t))
                .collect();
            // Every uuid is checked, in the order given, before anything changes.
            for uuid in uuids {
                let Some(t) = rows.get(uuid) else {
                    return Err(Error::NoSuchMessage {
                        uuid: uuid.to_string(),
                    }
                    .into());
                };
                if !action.takes(t.state) {
                    return Err(action.refusal(uuid, t.state).into());
                }
            }
            let mut done = Done::default();
            let mut seen = HashSet::new();
            for uuid in uuids {
                let t = &rows[uuid];
                if seen.insert(t.seq) {
                    apply(tx, action, t, now, &mut done)?;
                }
            }
            Ok(done)
        })
    }

    /// Applies `action` to the next `limit` messages of `q` older than `cursor`, in one short
    /// transaction. Returns what was found (the next cursor is its last uuid; fewer than `limit`:
    /// the end) and what changed. A message whose state changed between the search and its lock
    /// is acted on if the action takes its new state, skipped otherwise.
    ///
    /// # Errors
    /// `InvalidInput` (`--url` on an endpoint's message): this batch changes nothing.
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn act_batch(
        &mut self,
        action: Action<'_>,
        q: &Query<'_>,
        cursor: Option<Uuid>,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<Found>, Done)> {
        self.tx(op(action), |tx| {
            let found = find_in(tx, q, cursor, limit)?;
            let seqs: Vec<i64> = found.iter().map(|f| f.seq).collect();
            lock_lanes(tx, &[], &seqs)?;
            let rows: HashMap<i64, Target> = lock(tx, READ, &seqs)?
                .into_iter()
                .map(|t| (t.seq, t))
                .collect();
            let mut done = Done::default();
            for f in &found {
                if let Some(t) = rows.get(&f.seq).filter(|t| action.takes(t.state)) {
                    apply(tx, action, t, now, &mut done)?;
                }
            }
            Ok((found, done))
        })
    }

    /// Whether any message of `q` goes to a named endpoint (reads; for `dlq retry --url`).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn selects_endpoint_messages(&self, q: &Query<'_>) -> Result<Option<Uuid>> {
        self.run("read message", |c| {
            let mut cursor = None;
            loop {
                let page = find_in(c, q, cursor, 1000)?;
                if page.is_empty() {
                    return Ok(None);
                }
                let seqs: Vec<i64> = page.iter().map(|f| f.seq).collect();
                if let Some(row) = c.query_opt(FIRST_NAMED, &[&seqs])? {
                    return Ok(Some(uuid_at(&row, 0)?));
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => cursor = Some(last.uuid),
                    _ => return Ok(None),
                }
            }
        })
    }
}

/// Applies `action` to `t`, read and locked in this transaction and in a state it takes.
///
/// # Errors
/// `InvalidInput` (`--url` on an endpoint's message), the database's.
fn apply(
    tx: &mut Transaction<'_>,
    action: Action<'_>,
    t: &Target,
    now: i64,
    done: &mut Done,
) -> R<()> {
    let (seq, uuid) = (t.seq, t.uuid);
    match action {
        Action::Cancel if t.state == State::InFlight => {
            tx.execute(CANCEL_LATER, &[&seq])?;
            done.later.push(uuid);
            return Ok(());
        }
        Action::Cancel => {
            tx.execute(CANCEL, &[&seq, &now])?;
            promote(tx, t.lane.as_deref())?;
        }
        Action::Retry(edit) => {
            if edit.url.is_some() && t.endpoint != 0 {
                return Err(Error::input(format!(
                    "message {uuid} goes to a named endpoint: change the endpoint's url in the config (and reload), or retry it without --url"
                ))
                .into());
            }
            if !edit.is_empty() {
                let row = tx.query_one(READ_PAYLOAD, &[&seq])?;
                let (url, headers, body): (String, String, Vec<u8>) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                let mut headers = message::decode_headers(&headers);
                for name in &edit.remove_headers {
                    message::remove_header(&mut headers, name);
                }
                for (name, value) in &edit.set_headers {
                    message::set_header(&mut headers, name, value);
                }
                let url = edit.url.as_ref().unwrap_or(&url);
                let body = edit.body.as_ref().unwrap_or(&body);
                tx.execute(
                    WRITE_PAYLOAD,
                    &[&seq, url, &message::encode_headers(&headers), body],
                )?;
                // A new URL may be another origin's: the message goes with it.
                if let Some(origin) = edit.url.as_deref().and_then(message::origin) {
                    let id = super::endpoints::endpoint_id(tx, &origin)?;
                    tx.execute(REPOINT, &[&seq, &id])?;
                }
            }
            tx.execute(REVIVE, &[&seq, &now])?;
        }
        Action::Delete => {
            tx.execute(DELETE_MESSAGE, &[&seq])?;
            tx.execute(DELETE_PAYLOAD, &[&seq])?;
            tx.execute(DELETE_ATTEMPTS, &[&seq])?;
            promote(tx, t.lane.as_deref())?;
        }
        Action::Replay => {
            let busy = match &t.lane {
                None => false,
                Some(lane) => tx.query_opt(LANE_ACTIVE, &[lane, &seq])?.is_some(),
            };
            let new_state = if busy { WAITING } else { PENDING };
            tx.execute(REPLAY, &[&seq, &now, &new_state])?;
        }
    }
    done.changed.push(uuid);
    Ok(())
}

/// Lets the next waiting message of `lane` go if the lane is free.
///
/// # Errors
/// The database's.
fn promote(tx: &mut Transaction<'_>, lane: Option<&str>) -> R<()> {
    if let Some(lane) = lane {
        tx.execute(PROMOTE_IF_FREE, &[&lane])?;
    }
    Ok(())
}

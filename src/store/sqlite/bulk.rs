//! Operator actions on messages: cancel, retry a dead one (optionally edited), delete a dead one,
//! replay a delivered, dead or cancelled one.
//!
//! Named uuids are acted on in one IMMEDIATE transaction: each must exist and be in a state the
//! action takes, or nothing changes. A filter is acted on in batches of bounded size, each its own
//! short transaction ([`Store::act_batch`]), so that the daemon keeps delivering between them;
//! batches follow the uuid order, so a message is acted on at most once.
//!
//! Lanes: a message that leaves its ordered lane without being delivered (cancelled, deleted) lets
//! the lane's next message go, unless the lane still has one pending, in flight or dead. A
//! replayed message of a lane that is busy waits for it, then goes next.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::codes;
use super::codes::{PENDING, WAITING};
use super::list::find_in;
use super::queue::{delete_details, PROMOTE_IF_FREE};
use super::wrap;
use super::Store;
use crate::error::{Error, Result};
use crate::message;
use crate::model::State;
use crate::store::{Action, Done, Found, Query};

/// `named`: the message's endpoint id if it is a named endpoint's, 0 for a plain URL (whose
/// endpoint is its origin's, or 0 for one stored before origins).
macro_rules! named {
    () => {
        "CASE WHEN instr(coalesce((SELECT e.name FROM endpoints e WHERE e.id = m.endpoint), ''),
         '://') > 0 THEN 0 ELSE m.endpoint END"
    };
}
const FIND: &str = concat!(
    "SELECT m.seq, m.state, m.lane, ",
    named!(),
    " FROM messages m WHERE m.uuid = ?1"
);
const READ: &str = concat!(
    "SELECT m.state, m.lane, ",
    named!(),
    " FROM messages m WHERE m.seq = ?1"
);
const REPOINT: &str = "UPDATE messages SET endpoint = ?2 WHERE seq = ?1";
const CANCEL: &str = "UPDATE OR FAIL messages SET state = 5, due_at = ?2, cancelled_at = ?2
     WHERE seq = ?1 AND state IN (0, 4)";
const CANCEL_LATER: &str =
    "UPDATE OR FAIL messages SET cancel_requested = 1 WHERE seq = ?1 AND state = 1";
const REVIVE: &str = "UPDATE OR FAIL messages SET state = 0, due_at = ?2, attempts = 0,
     retried_at = ?2, dead_at = NULL WHERE seq = ?1 AND state = 3";
const REPLAY: &str = "UPDATE OR FAIL messages SET state = ?3, due_at = ?2, attempts = 0,
     replayed_at = ?2, dead_at = NULL, cancelled_at = NULL, cancel_requested = 0
     WHERE seq = ?1 AND state IN (2, 3, 5)";
/// Whether a lane has a message pending, in flight or waiting (other than ?2).
const LANE_ACTIVE: &str = "SELECT EXISTS (SELECT 1 FROM messages WHERE lane = ?1 AND seq != ?2
     AND state != 2 AND state IN (0, 1, 4))";
const READ_PAYLOAD: &str = "SELECT url, headers, body FROM payloads WHERE seq = ?1";
const WRITE_PAYLOAD: &str = "UPDATE payloads SET url = ?2, headers = ?3, body = ?4 WHERE seq = ?1";
const DELETE_MESSAGE: &str = "DELETE FROM messages WHERE seq = ?1 AND state = 3";

impl Store {
    /// Applies `action` to the named messages, all or none.
    ///
    /// # Errors
    /// `NoSuchMessage`, `NotDead`/`WrongState`, `InvalidInput` (`--url` on an endpoint's
    /// message); nothing changes then. `Db`/`Busy`.
    pub(crate) fn act_on(&mut self, action: Action<'_>, uuids: &[Uuid], now: i64) -> Result<Done> {
        let path = self.path.clone();
        let e = |op| {
            let path = path.clone();
            move |source| wrap(&path, op, source)
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let mut done = Done::default();
        let mut seen = std::collections::HashSet::new();
        for uuid in uuids {
            let row: Option<(i64, State, Option<String>, i64)> = tx
                .prepare_cached(FIND)
                .and_then(|mut s| {
                    s.query_row([uuid.as_bytes()], |r| {
                        Ok((r.get(0)?, codes::state_at(r, 1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(e("find message"))?;
            let Some((seq, state, lane, endpoint)) = row else {
                return Err(Error::NoSuchMessage {
                    uuid: uuid.to_string(),
                });
            };
            if !action.takes(state) {
                return Err(action.refusal(uuid, state));
            }
            if seen.insert(seq) {
                apply(
                    &tx, action, seq, *uuid, state, lane, endpoint, now, &mut done, &path,
                )?;
            }
        }
        tx.commit().map_err(e("commit"))?;
        Ok(done)
    }

    /// Applies `action` to the next `limit` messages of `q` older than `cursor`, in one short
    /// transaction. Returns what was found (the next cursor is its last uuid; fewer than `limit`:
    /// the end) and what changed.
    ///
    /// # Errors
    /// `InvalidInput` (`--url` on an endpoint's message): this batch changes nothing. `Db`/`Busy`.
    pub(crate) fn act_batch(
        &mut self,
        action: Action<'_>,
        q: &Query<'_>,
        cursor: Option<Uuid>,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<Found>, Done)> {
        let path = self.path.clone();
        let e = |op| {
            let path = path.clone();
            move |source| wrap(&path, op, source)
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let found = find_in(&tx, &path, q, cursor, limit)?;
        let mut done = Done::default();
        for f in &found {
            let row: Option<(State, Option<String>, i64)> = tx
                .prepare_cached(READ)
                .and_then(|mut s| {
                    s.query_row([f.seq], |r| {
                        Ok((codes::state_at(r, 0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(e("read message"))?;
            if let Some((state, lane, endpoint)) = row.filter(|(s, _, _)| action.takes(*s)) {
                apply(
                    &tx, action, f.seq, f.uuid, state, lane, endpoint, now, &mut done, &path,
                )?;
            }
        }
        tx.commit().map_err(e("commit"))?;
        Ok((found, done))
    }

    /// Whether any message of `q` goes to a named endpoint (reads; for `dlq retry --url`).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn selects_endpoint_messages(&self, q: &Query<'_>) -> Result<Option<Uuid>> {
        let mut cursor = None;
        loop {
            let page = self.find(q, cursor, 1000)?;
            for f in &page {
                let endpoint: i64 = self
                    .conn
                    .prepare_cached(READ)
                    .and_then(|mut s| s.query_row([f.seq], |r| r.get(2)))
                    .map_err(|e| self.err("read message", e))?;
                if endpoint != 0 {
                    return Ok(Some(f.uuid));
                }
            }
            match page.last() {
                Some(last) if page.len() == 1000 => cursor = Some(last.uuid),
                _ => return Ok(None),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn apply(
    tx: &Transaction<'_>,
    action: Action<'_>,
    seq: i64,
    uuid: Uuid,
    state: State,
    lane: Option<String>,
    endpoint: i64,
    now: i64,
    done: &mut Done,
    path: &std::path::Path,
) -> Result<()> {
    let e = |op| move |source| wrap(path, op, source);
    let promote = |lane: &Option<String>| -> Result<()> {
        if let Some(lane) = lane {
            tx.prepare_cached(PROMOTE_IF_FREE)
                .and_then(|mut s| s.execute([lane]))
                .map_err(e("promote lane"))?;
        }
        Ok(())
    };
    match action {
        Action::Cancel if state == State::InFlight => {
            tx.prepare_cached(CANCEL_LATER)
                .and_then(|mut s| s.execute([seq]))
                .map_err(e("cancel"))?;
            done.later.push(uuid);
            return Ok(());
        }
        Action::Cancel => {
            tx.prepare_cached(CANCEL)
                .and_then(|mut s| s.execute(params![seq, now]))
                .map_err(e("cancel"))?;
            promote(&lane)?;
        }
        Action::Retry(edit) => {
            if edit.url.is_some() && endpoint != 0 {
                return Err(Error::input(format!(
                    "message {uuid} goes to a named endpoint: change the endpoint's url in the config (and reload), or retry it without --url"
                )));
            }
            if !edit.is_empty() {
                let (url, headers, body): (String, String, Vec<u8>) = tx
                    .prepare_cached(READ_PAYLOAD)
                    .and_then(|mut s| s.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
                    .map_err(e("read payload"))?;
                let mut headers = message::decode_headers(&headers);
                for name in &edit.remove_headers {
                    message::remove_header(&mut headers, name);
                }
                for (name, value) in &edit.set_headers {
                    message::set_header(&mut headers, name, value);
                }
                let url = edit.url.as_ref().unwrap_or(&url);
                let body = edit.body.as_ref().unwrap_or(&body);
                tx.prepare_cached(WRITE_PAYLOAD)
                    .and_then(|mut s| {
                        s.execute(params![seq, url, message::encode_headers(&headers), body])
                    })
                    .map_err(e("edit payload"))?;
                // A new URL may be another origin's: the message goes with it.
                if let Some(origin) = edit.url.as_deref().and_then(message::origin) {
                    super::insert::endpoint_id(tx, &origin)
                        .and_then(|id| tx.prepare_cached(REPOINT)?.execute(params![seq, id]))
                        .map_err(e("edit payload"))?;
                }
            }
            tx.prepare_cached(REVIVE)
                .and_then(|mut s| s.execute(params![seq, now]))
                .map_err(e("retry"))?;
        }
        Action::Delete => {
            tx.prepare_cached(DELETE_MESSAGE)
                .and_then(|mut s| s.execute([seq]))
                .map_err(e("delete"))?;
            delete_details(tx, &[seq]).map_err(e("delete"))?;
            promote(&lane)?;
        }
        Action::Replay => {
            let busy = match &lane {
                None => false,
                Some(lane) => tx
                    .prepare_cached(LANE_ACTIVE)
                    .and_then(|mut s| s.query_row(params![lane, seq], |r| r.get(0)))
                    .map_err(e("look up ordered lane"))?,
            };
            let new_state = if busy { WAITING } else { PENDING };
            tx.prepare_cached(REPLAY)
                .and_then(|mut s| s.execute(params![seq, now, new_state]))
                .map_err(e("replay"))?;
        }
    }
    done.changed.push(uuid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Filter, StateName};
    use crate::store::sqlite::tests::{cyc, msg, test_store};
    use crate::store::{Outcome, OutcomeKind, RetryEdit};

    fn dead_one(s: &mut Store) -> Result<Uuid> {
        let mut ins = s.inserter()?;
        let uuid = ins.insert(&msg("http://127.0.0.1:1/"), 0)?.uuid;
        ins.commit()?;
        let job = cyc(s, &[], &[], 1, 0)?.remove(0);
        let o = Outcome {
            seq: job.seq,
            n: 1,
            at: 0,
            duration_us: 1,
            status: Some(500),
            error: None,
            response: Vec::new(),
            summary: "HTTP 500".into(),
            kind: OutcomeKind::Dead,
            lane: None,
            promote: false,
        };
        cyc(s, &[o], &[], 0, 1)?;
        Ok(uuid)
    }

    #[test]
    fn named_uuids_are_all_or_nothing() -> Result<()> {
        let (_d, mut s) = test_store();
        let dead = dead_one(&mut s)?;
        let mut ins = s.inserter()?;
        let pending = ins.insert(&msg("http://127.0.0.1:1/"), 0)?.uuid;
        ins.commit()?;
        let err = s.act_on(Action::Delete, &[dead, pending], 5).unwrap_err();
        assert!(matches!(err, Error::NotDead { .. }), "{err}");
        assert_eq!(s.view(&dead)?.state, State::Dead, "nothing changed");
        let done = s.act_on(Action::Cancel, &[pending], 5)?;
        assert_eq!(done.changed, vec![pending]);
        let v = s.view(&pending)?;
        assert_eq!((v.state, v.cancelled_at), (State::Cancelled, Some(5)));
        assert_eq!(s.totals()?.cancelled, 1);
        s.act_on(Action::Replay, &[pending, dead], 6)?;
        assert_eq!(s.view(&pending)?.state, State::Pending);
        assert_eq!(s.view(&dead)?.replayed_at, Some(6));
        Ok(())
    }

    #[test]
    fn batches_follow_the_filter_and_move_on() -> Result<()> {
        let (_d, mut s) = test_store();
        let dead: Vec<Uuid> = (0..5).map(|_| dead_one(&mut s)).collect::<Result<_>>()?;
        let f = Filter::default();
        let q = s.query(&f, &[StateName::Dead], 10)?;
        let edit = RetryEdit::default();
        let (found, done) = s.act_batch(Action::Retry(&edit), &q, None, 3, 10)?;
        assert_eq!(found.len(), 3);
        assert_eq!(done.changed.len(), 3);
        let (rest, done) = s.act_batch(Action::Retry(&edit), &q, Some(found[2].uuid), 3, 10)?;
        assert_eq!((rest.len(), done.changed.len()), (2, 2));
        for u in dead {
            assert_eq!(s.view(&u)?.state, State::Pending);
        }
        Ok(())
    }
}

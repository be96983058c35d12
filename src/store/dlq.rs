//! Dead-letter operations: send dead messages again (optionally edited) or delete them.
//!
//! Both run in one IMMEDIATE transaction with `synchronous=FULL` (CLI connection): every named
//! uuid must exist and be dead, or nothing changes.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::queue::{delete_details, wrap, DEAD};
use super::Store;
use crate::error::{Error, Result};
use crate::message;

const FIND: &str = "SELECT seq, state FROM messages WHERE uuid = ?1";
const ALL_DEAD: &str = "SELECT seq, uuid FROM messages WHERE state = 3 ORDER BY due_at, seq";
const REVIVE: &str = "UPDATE messages SET state = 0, due_at = ?2, attempts = 0, retried_at = ?2,
     dead_at = NULL WHERE seq = ?1";
const READ_PAYLOAD: &str = "SELECT url, headers, body FROM payloads WHERE seq = ?1";
const WRITE_PAYLOAD: &str = "UPDATE payloads SET url = ?2, headers = ?3, body = ?4 WHERE seq = ?1";
const DELETE_MESSAGE: &str = "DELETE FROM messages WHERE seq = ?1 RETURNING lane";
/// After a lane's dead message is deleted, its next waiting message goes, unless the lane still
/// has one pending, in flight or dead.
const PROMOTE_AFTER_DELETE: &str = "UPDATE OR FAIL messages SET state = 0 WHERE seq =
     (SELECT seq FROM messages WHERE lane = ?1 AND state != 2 AND state = 4 ORDER BY seq LIMIT 1)
     AND NOT EXISTS (SELECT 1 FROM messages WHERE lane = ?1 AND state != 2 AND state IN (0, 1, 3))";
const ENDPOINT_OF: &str = "SELECT endpoint FROM messages WHERE seq = ?1";

/// Changes an operator makes to dead messages before sending them again. Already validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryEdit {
    pub(crate) url: Option<String>,
    pub(crate) set_headers: Vec<(String, String)>,
    pub(crate) remove_headers: Vec<String>,
    pub(crate) body: Option<Vec<u8>>,
}

impl RetryEdit {
    fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.set_headers.is_empty()
            && self.remove_headers.is_empty()
            && self.body.is_none()
    }
}

impl Store {
    /// Moves the dead messages `uuids` (all dead ones for `None`) back to pending, due now, with a
    /// fresh attempt budget and `retried_at = now`, after applying `edit`.
    ///
    /// # Errors
    /// `NoSuchMessage`, `NotDead` (nothing changes then), `Db`/`Busy`.
    pub(crate) fn retry_dead(
        &mut self,
        uuids: Option<&[Uuid]>,
        edit: &RetryEdit,
        now: i64,
    ) -> Result<Vec<Uuid>> {
        let path = self.path.clone();
        let e = |op| {
            let path = path.clone();
            move |source| wrap(&path, op, source)
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin dlq retry"))?;
        let targets = select_dead(&tx, uuids, &path)?;
        {
            let mut revive = tx.prepare_cached(REVIVE).map_err(e("prepare"))?;
            let mut read = tx.prepare_cached(READ_PAYLOAD).map_err(e("prepare"))?;
            let mut write = tx.prepare_cached(WRITE_PAYLOAD).map_err(e("prepare"))?;
            let mut endpoint_of = tx.prepare_cached(ENDPOINT_OF).map_err(e("prepare"))?;
            for (seq, uuid) in &targets {
                if edit.url.is_some() {
                    let endpoint: i64 = endpoint_of
                        .query_row([seq], |r| r.get(0))
                        .map_err(e("read message"))?;
                    if endpoint != 0 {
                        return Err(Error::input(format!(
                            "message {uuid} goes to a named endpoint: change the endpoint's url in the config (and reload), or retry it without --url"
                        )));
                    }
                }
                if !edit.is_empty() {
                    let (url, headers, body): (String, String, Vec<u8>) = read
                        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
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
                    write
                        .execute(params![seq, url, message::encode_headers(&headers), body])
                        .map_err(e("edit payload"))?;
                }
                revive.execute(params![seq, now]).map_err(e("retry"))?;
            }
        }
        tx.commit().map_err(e("commit dlq retry"))?;
        Ok(targets.into_iter().map(|(_, u)| u).collect())
    }

    /// Deletes the dead messages `uuids` (all dead ones for `None`) with their history.
    ///
    /// # Errors
    /// `NoSuchMessage`, `NotDead` (nothing changes then), `Db`/`Busy`.
    pub(crate) fn delete_dead(&mut self, uuids: Option<&[Uuid]>) -> Result<Vec<Uuid>> {
        let path = self.path.clone();
        let e = |op| {
            let path = path.clone();
            move |source| wrap(&path, op, source)
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin dlq delete"))?;
        let targets = select_dead(&tx, uuids, &path)?;
        {
            let mut delete = tx.prepare_cached(DELETE_MESSAGE).map_err(e("prepare"))?;
            let mut lanes = std::collections::BTreeSet::new();
            for (seq, _) in &targets {
                let lane: Option<String> =
                    delete.query_row([seq], |r| r.get(0)).map_err(e("delete"))?;
                lanes.extend(lane);
            }
            let mut promote = tx
                .prepare_cached(PROMOTE_AFTER_DELETE)
                .map_err(e("prepare"))?;
            for lane in &lanes {
                promote.execute([lane]).map_err(e("promote lane"))?;
            }
        }
        let seqs: Vec<i64> = targets.iter().map(|(s, _)| *s).collect();
        delete_details(&tx, &seqs).map_err(e("delete"))?;
        tx.commit().map_err(e("commit dlq delete"))?;
        Ok(targets.into_iter().map(|(_, u)| u).collect())
    }
}

/// Resolves the targets of a DLQ action; every named uuid must be dead.
fn select_dead(
    tx: &Transaction<'_>,
    uuids: Option<&[Uuid]>,
    path: &std::path::Path,
) -> Result<Vec<(i64, Uuid)>> {
    let e = |op| move |source| wrap(path, op, source);
    match uuids {
        None => {
            let mut stmt = tx.prepare_cached(ALL_DEAD).map_err(e("list dead"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, Uuid::from_bytes(r.get(1)?))))
                .map_err(e("list dead"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(e("list dead"))
        }
        Some(uuids) => {
            let mut find = tx.prepare_cached(FIND).map_err(e("find message"))?;
            let mut out = Vec::with_capacity(uuids.len());
            for uuid in uuids {
                let row: Option<(i64, i64)> = find
                    .query_row([uuid.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(e("find message"))?;
                match row {
                    None => {
                        return Err(Error::NoSuchMessage {
                            uuid: uuid.to_string(),
                        })
                    }
                    Some((seq, DEAD)) => {
                        if !out.iter().any(|(s, _)| *s == seq) {
                            out.push((seq, *uuid));
                        }
                    }
                    Some((_, state)) => {
                        return Err(Error::NotDead {
                            uuid: uuid.to_string(),
                            state: super::State::from_db(state).as_str().into(),
                        })
                    }
                }
            }
            Ok(out)
        }
    }
}

//! Inserting messages: one IMMEDIATE transaction per batch, all stored or none. A message of an
//! ordered lane that already has one pending, in flight or waiting (or dead, when dead ones block)
//! waits behind it; an idempotency key seen before stores nothing and answers the first uuid.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::codes::{PENDING, WAITING};
use super::{wrap, Store};
use crate::error::{Error, Result};
use crate::message::{self, Message};
use crate::store::{Enqueued, EventRecord, EventStored};

// `OR FAIL`: see queue.rs.
pub(super) const INSERT_MESSAGE: &str = "INSERT OR FAIL INTO messages
     (uuid, idem_key, state, due_at, created_at, max_attempts, endpoint, lane, event)
     VALUES (?1, ?2, ?6, ?3, ?4, ?5, ?7, ?8, ?9)
     ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING";
pub(super) const INSERT_PAYLOAD: &str =
    "INSERT OR FAIL INTO payloads (seq, method, url, headers, body) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(super) const SELECT_BY_KEY: &str =
    "SELECT m.uuid, m.state, m.endpoint, p.method, p.url, p.headers,
     p.body FROM messages m JOIN payloads p USING (seq) WHERE m.idem_key = CAST(?1 AS TEXT)";
pub(super) const ENDPOINT_ID: &str = "SELECT id FROM endpoints WHERE name = ?1";
pub(super) const INSERT_ENDPOINT: &str = "INSERT OR IGNORE INTO endpoints (name) VALUES (?1)";
/// Whether a new message of `lane` must wait: the lane has a message pending, in flight or
/// waiting, or (when dead messages block, ?2) a dead one.
pub(super) const LANE_BUSY: &str =
    "SELECT EXISTS (SELECT 1 FROM messages WHERE lane = ?1 AND state != 2
     AND state != 5 AND (state != 3 OR ?2))";

/// Inserts messages inside one IMMEDIATE transaction: all are stored by [`Inserter::commit`], or
/// none if it is dropped.
pub(crate) struct Inserter<'s> {
    tx: Transaction<'s>,
    store_path: &'s std::path::Path,
    /// Endpoint ids by name, looked up (or created) once per batch.
    endpoints: std::collections::HashMap<String, i64>,
}

impl Store {
    /// Starts a batch of inserts.
    ///
    /// # Errors
    /// `Busy` when another writer holds the lock beyond the busy timeout, `Db` otherwise.
    pub(crate) fn inserter(&mut self) -> Result<Inserter<'_>> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(path, "begin enqueue", e))?;
        Ok(Inserter {
            tx,
            store_path: path,
            endpoints: std::collections::HashMap::new(),
        })
    }
}

/// The id of endpoint `name`, inserted if it has none yet.
pub(super) fn endpoint_id(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(INSERT_ENDPOINT)?.execute([name])?;
    conn.prepare_cached(ENDPOINT_ID)?
        .query_row([name], |r| r.get(0))
}

impl Inserter<'_> {
    /// Stores one validated message due at `now + delay`; with a known idempotency key, stores
    /// nothing and returns the first message's uuid.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn insert(&mut self, m: &Message, now: i64) -> Result<Enqueued> {
        insert(&self.tx, self.store_path, &mut self.endpoints, m, now)
    }

    /// Stores an event (its deliveries are inserted after it, each naming it); when its key
    /// (per tenant) is known, stores nothing and returns the first event.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn event(&mut self, e: &EventRecord, now: i64) -> Result<EventStored> {
        let path = self.store_path;
        let err = |op| move |source| wrap(path, op, source);
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO events (uuid, tenant, type, idem_key, created_at, deliveries)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, idem_key) WHERE idem_key IS NOT NULL DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.id.as_bytes(),
                    e.tenant.as_deref().unwrap_or(""),
                    e.kind,
                    e.key,
                    now,
                    i64::try_from(e.deliveries).unwrap_or(i64::MAX)
                ])
            })
            .map_err(err("insert event"))?;
        if n == 1 {
            return Ok(EventStored {
                id: e.id,
                created: true,
                deliveries: e.deliveries,
                same_type: true,
            });
        }
        let (uuid, kind, deliveries): ([u8; 16], String, i64) = self
            .tx
            .query_row(
                "SELECT uuid, type, deliveries FROM events WHERE tenant = ?1 AND idem_key = ?2",
                params![e.tenant.as_deref().unwrap_or(""), e.key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(err("look up event key"))?;
        Ok(EventStored {
            id: Uuid::from_bytes(uuid),
            created: false,
            deliveries: u64::try_from(deliveries).unwrap_or(0),
            same_type: kind == e.kind,
        })
    }

    /// Commits every insert durably.
    ///
    /// # Errors
    /// `Db`/`Busy`; nothing is stored then.
    pub(crate) fn commit(self) -> Result<()> {
        let path = self.store_path;
        self.tx
            .commit()
            .map_err(|e| wrap(path, "commit enqueue", e))
    }
}

/// Inserts one message in the open transaction on `conn` (the enqueue's, or the daemon's cycle);
/// `endpoints` caches endpoint ids by name.
pub(super) fn insert(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    endpoints: &mut std::collections::HashMap<String, i64>,
    m: &Message,
    now: i64,
) -> Result<Enqueued> {
    {
        let e = |op| move |source| wrap(path, op, source);
        let uuid = Uuid::now_v7();
        // `created_at` is the time in the uuid, so that filters on it are uuid ranges.
        let created = crate::filter::uuid_ms(&uuid);
        let due = now.saturating_add(crate::time::duration_ms(m.delay));
        // A plain URL's messages belong to its origin (an implicit endpoint: see
        // `message::origin`), so that one origin's failures cannot take the others' share.
        let origin = match &m.endpoint {
            None => message::origin(&m.url),
            Some(_) => None,
        };
        let endpoint = match m.endpoint.as_ref().or(origin.as_ref()) {
            None => 0,
            Some(name) => match endpoints.get(name) {
                Some(id) => *id,
                None => {
                    let id =
                        endpoint_id(conn, name).map_err(|e| wrap(path, "look up endpoint", e))?;
                    endpoints.insert(name.clone(), id);
                    id
                }
            },
        };
        let state = match &m.lane {
            Some(lane) => {
                let busy: bool = conn
                    .prepare_cached(LANE_BUSY)
                    .and_then(|mut s| s.query_row(params![lane, m.lane_dead_blocks], |r| r.get(0)))
                    .map_err(e("look up ordered lane"))?;
                if busy {
                    WAITING
                } else {
                    PENDING
                }
            }
            None => PENDING,
        };
        let inserted = conn
            .prepare_cached(INSERT_MESSAGE)
            .and_then(|mut s| {
                s.execute(params![
                    uuid.as_bytes(),
                    m.key,
                    due,
                    created,
                    m.max_attempts,
                    state,
                    endpoint,
                    m.lane,
                    m.event.as_ref().map(Uuid::as_bytes)
                ])
            })
            .map_err(e("insert message"))?;
        if inserted == 0 {
            type First = ([u8; 16], i64, i64, String, String, String, Vec<u8>);
            let first: First = conn
                .prepare_cached(SELECT_BY_KEY)
                .and_then(|mut s| {
                    s.query_row([&m.key], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })
                    .optional()
                })
                .map_err(e("look up idempotency key"))?
                .ok_or_else(|| Error::Db {
                    path: path.to_path_buf(),
                    op: "look up idempotency key",
                    source: rusqlite::Error::QueryReturnedNoRows.into(),
                })?;
            let (uuid, state, first_endpoint, method, url, headers, body) = first;
            return Ok(Enqueued {
                uuid: Uuid::from_bytes(uuid),
                created: false,
                state: super::codes::state(state).map_err(e("read state"))?,
                // A plain URL stored before origins existed is at endpoint 0.
                same_request: (first_endpoint == endpoint
                    || first_endpoint == 0 && origin.is_some())
                    && method == m.method
                    && url == m.url
                    && message::decode_headers(&headers) == m.headers
                    && body == m.body,
            });
        }
        let seq = conn.last_insert_rowid();
        conn.prepare_cached(INSERT_PAYLOAD)
            .and_then(|mut s| {
                s.execute(params![
                    seq,
                    m.method,
                    m.url,
                    message::encode_headers(&m.headers),
                    m.body
                ])
            })
            .map_err(e("insert payload"))?;
        Ok(Enqueued {
            uuid,
            created: true,
            state: super::codes::state(state).map_err(e("read state"))?,
            same_request: true,
        })
    }
}

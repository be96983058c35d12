//! Inserting messages: one transaction per batch, all stored or none, committed with
//! `synchronous_commit = on`. A message of an ordered lane that already has one pending, in flight
//! or waiting (or dead, when dead ones block) waits behind it; an idempotency key seen before
//! stores nothing and answers the first uuid. What differs from SQLite, where one IMMEDIATE
//! transaction excludes every other writer:
//! - a known key is `INSERT ... ON CONFLICT DO NOTHING RETURNING`, re-read when nothing returns:
//!   a daemon inserting the same key meanwhile is waited for, never a unique violation that fails
//!   the batch (new endpoint names likewise, in `endpoints::endpoint_id`);
//! - a lane is locked (`lock_lane`) while its messages are inserted, and the rows that make it
//!   busy are read `FOR SHARE`, so that a concurrent delivery cannot promote past a new message.

use std::cell::RefMut;
use std::collections::HashMap;

use postgres::{Client, GenericClient};
use uuid::Uuid;

use super::batch::Batch;
use super::{Fail, Store, R};
use crate::error::{Error, Result};
use crate::message::{self, Message};
use crate::store::sqlite::codes::{self, PENDING, WAITING};
use crate::store::{Enqueued, EventRecord, EventStored};

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO messages
     (uuid, idem_key, state, due_at, created_at, max_attempts, endpoint, lane, event)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING seq";
pub(super) const INSERT_PAYLOAD: &str =
    "INSERT INTO payloads (seq, method, url, headers, body) VALUES ($1, $2, $3, $4, $5)";
const SELECT_BY_KEY: &str = "SELECT m.uuid, m.state, m.endpoint, p.method, p.url, p.headers,
     p.body FROM messages m JOIN payloads p USING (seq) WHERE m.idem_key = $1";
/// Whether a new message of lane `$1` must wait: one of the lane's messages pending, in flight or
/// waiting, or (when dead messages block, `$2`) dead. It is locked `FOR SHARE`: a transaction
/// that is taking it out of the lane (delivered, cancelled, deleted) is waited for and the row
/// read again, and one that comes later waits for this insert and promotes it.
pub(super) const LANE_BUSY: &str = "SELECT 1 FROM messages WHERE lane = $1 AND state <> 2
     AND state <> 5 AND (state <> 3 OR $2) LIMIT 1 FOR SHARE";
/// The lane's advisory lock, held to the end of the transaction: the first key is "whkl", the
/// second the lane's hash (two 32-bit keys, a space apart from the migration lock's 64-bit one).
const LOCK_LANE: &str = "SELECT pg_advisory_xact_lock(2003331948, hashtext($1))";
const INSERT_EVENT: &str = "INSERT INTO events (uuid, tenant, type, idem_key, created_at,
     deliveries) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (tenant, idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING seq";
const SELECT_EVENT_BY_KEY: &str =
    "SELECT uuid, type, deliveries FROM events WHERE tenant = $1 AND idem_key = $2";
/// How many times a key that conflicted but cannot be read (purged meanwhile) is inserted.
const KEY_TRIES: usize = 3;

/// Inserts messages inside one transaction on the store's connection: all are stored by
/// [`Inserter::commit`], or none if it is dropped (`ROLLBACK`).
///
/// It runs `BEGIN`/`COMMIT` itself rather than holding a `postgres::Transaction`, which could not
/// borrow the connection from the `RefMut` held beside it.
pub(crate) struct Inserter<'s> {
    client: RefMut<'s, Client>,
    store: &'s Store,
    /// Endpoint ids by name, looked up (or created) once per batch.
    endpoints: HashMap<String, i64>,
    /// Messages not yet sent to the database (inserted at the latest by `commit`).
    batch: Batch,
    /// A transaction is open: `Drop` rolls it back.
    open: bool,
    /// A statement failed: PostgreSQL aborted the transaction and `COMMIT` would roll it back
    /// without an error, so `commit` refuses.
    failed: bool,
}

impl Store {
    /// Starts a batch of inserts.
    ///
    /// # Errors
    /// `DbUnavailable` when the database cannot be reached, `Busy`/`Db` otherwise.
    pub(crate) fn inserter(&mut self) -> Result<Inserter<'_>> {
        let store: &Store = self;
        let mut client = store.connection()?;
        client
            .batch_execute("BEGIN")
            .map_err(|e| store.fail("begin enqueue", e.into()))?;
        let mut inserter = Inserter {
            client,
            store,
            endpoints: HashMap::new(),
            batch: Batch::default(),
            open: true,
            failed: false,
        };
        // Accepted messages must survive a crash of the server, whatever the session's default.
        inserter
            .client
            .batch_execute(&format!(
                "SET LOCAL synchronous_commit = on; {}",
                super::queue::GENERIC
            ))
            .map_err(|e| store.fail("begin enqueue", e.into()))?;
        Ok(inserter)
    }
}

/// Locks ordered lane `lane` until the end of the transaction. Every transaction that inserts a
/// message into a lane, or makes one of its messages pending or waiting again (replay, retry),
/// should take it first: two of them cannot then both find the lane idle and both let their
/// message go.
///
/// # Errors
/// The database's (`Busy` past the lock timeout).
pub(super) fn lock_lane(c: &mut impl GenericClient, lane: &str) -> R<()> {
    c.execute(LOCK_LANE, &[&lane])?;
    Ok(())
}

impl Inserter<'_> {
    /// Stores one validated message due at `now + delay`; with a known idempotency key, stores
    /// nothing and returns the first message's uuid.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`; the batch can then only be dropped.
    pub(crate) fn insert(&mut self, m: &Message, now: i64) -> Result<Enqueued> {
        let result = insert(
            &mut *self.client,
            &self.store.prepared,
            (&mut self.endpoints, &mut self.batch),
            m,
            now,
        );
        self.failed |= result.is_err();
        result.map_err(|e| self.store.fail("insert message", e))
    }

    /// Stores an event (its deliveries are inserted after it, each naming it); when its key
    /// (per tenant) is known, stores nothing and returns the first event.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`; the batch can then only be dropped.
    pub(crate) fn event(&mut self, e: &EventRecord, now: i64) -> Result<EventStored> {
        let result = event(&mut *self.client, e, now);
        self.failed |= result.is_err();
        result.map_err(|err| self.store.fail("insert event", err))
    }

    /// Commits every insert durably.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable` (then whether it committed is unknown if the connection was
    /// lost during `COMMIT`, else nothing is stored); `Db` if an insert of the batch failed.
    pub(crate) fn commit(mut self) -> Result<()> {
        if self.failed {
            // `Drop` rolls back.
            return Err(Error::Db {
                path: self.store.name().to_path_buf(),
                op: "commit enqueue",
                source: "an insert of this batch failed; nothing was stored".into(),
            });
        }
        if let Err(e) = self.batch.flush(&mut *self.client, &self.store.prepared) {
            // `Drop` rolls back.
            return Err(self.store.fail("insert messages", e));
        }
        // The daemons hear of the new messages from this transaction's commit (`coord`): a
        // separate notice would cost a connection.
        let result = self
            .client
            .batch_execute("SELECT pg_notify('webhookd', 'm'); COMMIT");
        // A failed COMMIT ends the transaction too.
        self.open = false;
        result.map_err(|e| self.store.fail("commit enqueue", e.into()))
    }
}

impl Drop for Inserter<'_> {
    fn drop(&mut self) {
        if self.open && !self.client.is_closed() {
            if let Err(e) = self.client.batch_execute("ROLLBACK") {
                log::warn!("{}", self.store.fail("roll back enqueue", e.into()));
            }
        }
    }
}

/// Inserts one message in the open transaction on `c` (the enqueue's, or the daemon's cycle);
/// `endpoints` caches endpoint ids by name.
///
/// # Errors
/// The database's; `Bad` for a stored state this binary does not know.
pub(super) fn insert(
    c: &mut impl GenericClient,
    p: &super::Prepared,
    (endpoints, batch): (&mut HashMap<String, i64>, &mut Batch),
    m: &Message,
    now: i64,
) -> R<Enqueued> {
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
                let id = super::endpoints::endpoint_id(c, name)?;
                endpoints.insert(name.clone(), id);
                id
            }
        },
    };
    if Batch::takes(m) {
        batch.push(c, p, m, uuid, endpoint, (due, created))?;
        return Ok(Enqueued {
            uuid,
            created: true,
            state: crate::model::State::Pending,
            same_request: true,
        });
    }
    // A key or a lane: what is stored depends on the messages before it.
    batch.flush(c, p)?;
    let state = match &m.lane {
        Some(lane) => {
            lock_lane(c, lane)?;
            let busy = c
                .query_opt(LANE_BUSY, &[lane, &m.lane_dead_blocks])?
                .is_some();
            if busy {
                WAITING
            } else {
                PENDING
            }
        }
        None => PENDING,
    };
    let max_attempts = m.max_attempts.map(i64::from);
    let event = m.event.as_ref().map(|e| e.as_bytes().as_slice());
    for _ in 0..KEY_TRIES {
        let insert_message = p.get(c, INSERT_MESSAGE)?;
        let inserted = c.query_opt(
            &insert_message,
            &[
                &uuid.as_bytes().as_slice(),
                &m.key,
                &state,
                &due,
                &created,
                &max_attempts,
                &endpoint,
                &m.lane,
                &event,
            ],
        )?;
        if let Some(row) = inserted {
            let seq: i64 = row.try_get(0)?;
            let insert_payload = p.get(c, INSERT_PAYLOAD)?;
            c.execute(
                &insert_payload,
                &[
                    &seq,
                    &m.method,
                    &m.url,
                    &message::encode_headers(&m.headers),
                    &m.body,
                ],
            )?;
            return Ok(Enqueued {
                uuid,
                created: true,
                state: state_of(state)?,
                same_request: true,
            });
        }
        // The key is known (committed, maybe by another daemon just now: the insert waited for
        // it). Read the first message, unless it was purged meanwhile: then insert again.
        let Some(first) = c.query_opt(SELECT_BY_KEY, &[&m.key])? else {
            continue;
        };
        let first_endpoint: i64 = first.try_get(2)?;
        let method: String = first.try_get(3)?;
        let url: String = first.try_get(4)?;
        let headers: String = first.try_get(5)?;
        let body: Vec<u8> = first.try_get(6)?;
        return Ok(Enqueued {
            uuid: super::uuid_at(&first, 0)?,
            created: false,
            state: super::state_at(&first, 1)?,
            // A plain URL stored before origins existed is at endpoint 0.
            same_request: (first_endpoint == endpoint || first_endpoint == 0 && origin.is_some())
                && method == m.method
                && url == m.url
                && message::decode_headers(&headers) == m.headers
                && body == m.body,
        });
    }
    Err(Fail::Bad(format!(
        "idempotency key {:?} can neither be inserted nor read",
        m.key
    )))
}

/// Stores event `e`, or reads the first one with its key (per tenant).
fn event(c: &mut impl GenericClient, e: &EventRecord, now: i64) -> R<EventStored> {
    let tenant = e.tenant.as_deref().unwrap_or("");
    let deliveries = i64::try_from(e.deliveries).unwrap_or(i64::MAX);
    for _ in 0..KEY_TRIES {
        let inserted = c.query_opt(
            INSERT_EVENT,
            &[
                &e.id.as_bytes().as_slice(),
                &tenant,
                &e.kind,
                &e.key,
                &now,
                &deliveries,
            ],
        )?;
        if inserted.is_some() {
            return Ok(EventStored {
                id: e.id,
                created: true,
                deliveries: e.deliveries,
                same_type: true,
            });
        }
        // Known key (as for messages): read the first event, unless it was purged meanwhile.
        let Some(first) = c.query_opt(SELECT_EVENT_BY_KEY, &[&tenant, &e.key])? else {
            continue;
        };
        let kind: String = first.try_get(1)?;
        let stored: i64 = first.try_get(2)?;
        return Ok(EventStored {
            id: super::uuid_at(&first, 0)?,
            created: false,
            deliveries: u64::try_from(stored).unwrap_or(0),
            same_type: kind == e.kind,
        });
    }
    Err(Fail::Bad(format!(
        "event key {:?} can neither be inserted nor read",
        e.key
    )))
}

/// The state of a code this file chose.
fn state_of(code: i64) -> R<crate::model::State> {
    codes::state_of(code).ok_or_else(|| Fail::Bad(format!("unknown message state {code}")))
}

//! Messages without an idempotency key or a lane, inserted many at a time: their uuid, state and
//! endpoint are known before the database sees them, so they wait in a `Batch` and go in one
//! statement (arrays), not two round trips each. A message with a key or a lane is inserted on
//! its own, after the batch before it.

use postgres::types::ToSql;
use postgres::GenericClient;
use uuid::Uuid;

use super::{Prepared, R};
use crate::message::{self, Message};

/// The most messages in one statement.
const MAX: usize = 1000;

const INSERT_BATCH: &str = "WITH m AS (
        INSERT INTO messages (uuid, state, due_at, created_at, max_attempts, endpoint, event)
        SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[],
                             $5::bigint[], $6::bigint[], $7::bytea[])
        RETURNING seq, uuid)
     INSERT INTO payloads (seq, method, url, headers, body)
     SELECT m.seq, p.method, p.url, p.headers, p.body
     FROM m JOIN unnest($1::bytea[], $8::text[], $9::text[], $10::text[], $11::bytea[])
        AS p(uuid, method, url, headers, body) ON p.uuid = m.uuid";

/// Messages waiting to be inserted.
#[derive(Default)]
pub(super) struct Batch {
    uuids: Vec<Vec<u8>>,
    states: Vec<i64>,
    due: Vec<i64>,
    created: Vec<i64>,
    max_attempts: Vec<Option<i64>>,
    endpoints: Vec<i64>,
    events: Vec<Option<Vec<u8>>>,
    methods: Vec<String>,
    urls: Vec<String>,
    headers: Vec<String>,
    bodies: Vec<Vec<u8>>,
}

impl Batch {
    /// Whether `m` can wait in a batch: no key (nothing to look up) and no lane (its state does
    /// not depend on the messages before it).
    pub(super) fn takes(m: &Message) -> bool {
        m.key.is_none() && m.lane.is_none()
    }

    /// Adds `m`, pending from `due`; inserts the batch if it is full.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        c: &mut impl GenericClient,
        p: &Prepared,
        m: &Message,
        uuid: Uuid,
        endpoint: i64,
        (due, created): (i64, i64),
    ) -> R<()> {
        self.uuids.push(uuid.as_bytes().to_vec());
        self.states.push(super::super::sqlite::codes::PENDING);
        self.due.push(due);
        self.created.push(created);
        self.max_attempts.push(m.max_attempts.map(i64::from));
        self.endpoints.push(endpoint);
        self.events.push(m.event.map(|e| e.as_bytes().to_vec()));
        self.methods.push(m.method.clone());
        self.urls.push(m.url.clone());
        self.headers.push(message::encode_headers(&m.headers));
        self.bodies.push(m.body.clone());
        if self.uuids.len() >= MAX {
            self.flush(c, p)?;
        }
        Ok(())
    }

    /// Inserts what waits.
    pub(super) fn flush(&mut self, c: &mut impl GenericClient, p: &Prepared) -> R<()> {
        if self.uuids.is_empty() {
            return Ok(());
        }
        let insert = p.get(c, INSERT_BATCH)?;
        let params: [&(dyn ToSql + Sync); 11] = [
            &self.uuids,
            &self.states,
            &self.due,
            &self.created,
            &self.max_attempts,
            &self.endpoints,
            &self.events,
            &self.methods,
            &self.urls,
            &self.headers,
            &self.bodies,
        ];
        c.execute(&insert, &params)?;
        *self = Batch::default();
        Ok(())
    }
}

//! Events: which stored endpoints an event reaches, and an event with its deliveries
//! (`show EVENT_ID`). Matching reads the `subscriptions` primary key by tenant and pattern only:
//! its cost grows with the endpoints that match, not with those of other tenants. Unlike SQLite's
//! `IN (?, ...)` built per call, the patterns are bound as one array (`= ANY($2)`).

use uuid::Uuid;

use super::Store;
use crate::error::Result;
use crate::store::EventView;

const SUBSCRIBERS: &str = "SELECT DISTINCT e.name FROM subscriptions s
     JOIN endpoints e ON e.id = s.endpoint
     WHERE s.tenant = $1 AND s.pattern = ANY($2)
       AND e.definition IS NOT NULL AND e.paused = 0 ORDER BY e.name";
const EVENT: &str = "SELECT tenant, type, idem_key, created_at FROM events WHERE uuid = $1";
const DELIVERIES: &str = "SELECT m.uuid, coalesce(e.name, ''), m.state FROM messages m
     LEFT JOIN endpoints e ON e.id = m.endpoint WHERE m.event = $1 ORDER BY m.seq";

impl Store {
    /// The names of the endpoints managed at runtime, not paused, of `tenant` (`""`: none)
    /// subscribed with one of `patterns`.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn subscribers(&self, tenant: &str, patterns: &[String]) -> Result<Vec<String>> {
        self.run("match subscriptions", |c| {
            c.query(SUBSCRIBERS, &[&tenant, &patterns])?
                .iter()
                .map(|r| Ok(r.try_get(0)?))
                .collect()
        })
    }

    /// Event `id` and its deliveries, if it is stored.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn event_view(&self, id: &Uuid) -> Result<Option<EventView>> {
        let key = id.as_bytes().as_slice();
        self.run("read event", |c| {
            let Some(head) = c.query_opt(EVENT, &[&key])? else {
                return Ok(None);
            };
            let tenant: String = head.try_get(0)?;
            let deliveries = c
                .query(DELIVERIES, &[&key])?
                .iter()
                .map(|r| Ok((super::uuid_at(r, 0)?, r.try_get(1)?, super::state_at(r, 2)?)))
                .collect::<super::R<Vec<_>>>()?;
            Ok(Some(EventView {
                id: *id,
                tenant: Some(tenant).filter(|t| !t.is_empty()),
                kind: head.try_get(1)?,
                key: head.try_get(2)?,
                created_at: head.try_get(3)?,
                deliveries,
            }))
        })
    }
}

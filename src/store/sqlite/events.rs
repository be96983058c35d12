//! Events (schema 8): which stored endpoints an event reaches, and an event with its deliveries
//! (`show EVENT_ID`). Matching reads the `subscriptions` index by tenant and pattern only: its
//! cost grows with the endpoints that match, not with those of other tenants.

use rusqlite::{params_from_iter, OptionalExtension};
use uuid::Uuid;

use super::{codes, Store};
use crate::error::Result;
use crate::store::EventView;

const EVENT: &str =
    "SELECT tenant, type, idem_key, created_at FROM events WHERE uuid = CAST(?1 AS BLOB)";
const DELIVERIES: &str = "SELECT m.uuid, coalesce(e.name, ''), m.state FROM messages m
     LEFT JOIN endpoints e ON e.id = m.endpoint WHERE m.event = CAST(?1 AS BLOB) ORDER BY m.seq";

impl Store {
    /// The names of the endpoints managed at runtime, not paused, of `tenant` (`""`: none)
    /// subscribed with one of `patterns`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn subscribers(&self, tenant: &str, patterns: &[String]) -> Result<Vec<String>> {
        let marks = vec!["?"; patterns.len()].join(", ");
        let sql = format!(
            "SELECT DISTINCT e.name FROM subscriptions s JOIN endpoints e ON e.id = s.endpoint
             WHERE s.tenant = ? AND s.pattern IN ({marks})
               AND e.definition IS NOT NULL AND e.paused = 0 ORDER BY e.name"
        );
        let e = |err| self.err("match subscriptions", err);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(e)?;
        let args = std::iter::once(tenant).chain(patterns.iter().map(String::as_str));
        let names = stmt
            .query_map(params_from_iter(args), |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(e)?;
        Ok(names)
    }

    /// Event `id` and its deliveries, if it is stored.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn event_view(&self, id: &Uuid) -> Result<Option<EventView>> {
        let e = |err| self.err("read event", err);
        let head: Option<(String, String, Option<String>, i64)> = self
            .conn
            .prepare_cached(EVENT)
            .and_then(|mut s| {
                s.query_row([id.as_bytes()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(e)?;
        let Some((tenant, kind, key, created_at)) = head else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(DELIVERIES).map_err(e)?;
        let deliveries = stmt
            .query_map([id.as_bytes()], |r| {
                Ok((
                    Uuid::from_bytes(r.get(0)?),
                    r.get(1)?,
                    codes::state_at(r, 2)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(Some(EventView {
            id: *id,
            tenant: Some(tenant).filter(|t| !t.is_empty()),
            kind,
            key,
            created_at,
            deliveries,
        }))
    }
}

//! Endpoints managed at runtime: their definitions, sealed secrets, pauses and subscriptions, in
//! the `endpoints` row of their name (schema 7). Every change bumps the `endpoints` generation in
//! the same transaction, so that a daemon sees one with a single read.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::codes::{CANCELLED, IN_FLIGHT, PENDING, WAITING};
use super::insert::endpoint_id;
use super::{wrap, Store};
use crate::error::{Error, Result};
use crate::store::{DefinedRow, Definition};

const DEFINED: &str = "SELECT name, definition, secrets, paused FROM endpoints
     WHERE definition IS NOT NULL OR paused != 0 ORDER BY name";
const ONE: &str = "SELECT name, definition, secrets, paused FROM endpoints WHERE name = ?1";
/// The rows changed after generation ?1 (see `bump`): removed endpoints come with no definition.
const CHANGED: &str = "SELECT name, definition, secrets, paused FROM endpoints
     WHERE changed_gen > ?1 ORDER BY name";
const GENERATION: &str = "SELECT n FROM generations WHERE what = 'endpoints'";
const BUMP: &str = "UPDATE generations SET n = n + 1 WHERE what = 'endpoints'";
const TAG: &str = "UPDATE endpoints SET changed_gen =
     (SELECT n FROM generations WHERE what = 'endpoints') WHERE name = ?1";

/// Counts a change to endpoint `name` (in the transaction that makes it): the generation goes
/// up and the row records it.
fn bump(tx: &rusqlite::Transaction<'_>, name: &str) -> rusqlite::Result<()> {
    tx.execute(BUMP, [])?;
    tx.execute(TAG, [name])?;
    Ok(())
}
const QUEUED: &str = "SELECT count(*) FROM messages WHERE endpoint = ?1 AND state IN (?2, ?3, ?4)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DefinedRow> {
    Ok(DefinedRow {
        name: r.get(0)?,
        definition: r.get(1)?,
        secrets: r.get(2)?,
        paused: r.get(3)?,
    })
}

impl Store {
    /// Every endpoint with a definition or paused, by name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn definitions(&self) -> Result<Vec<DefinedRow>> {
        let e = |err| self.err("read endpoint definitions", err);
        let mut stmt = self.conn.prepare_cached(DEFINED).map_err(e)?;
        let rows = stmt
            .query_map([], row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }

    /// Endpoint `name`'s row, if the database knows the name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn definition(&self, name: &str) -> Result<Option<DefinedRow>> {
        self.conn
            .prepare_cached(ONE)
            .and_then(|mut s| s.query_row([name], row).optional())
            .map_err(|e| self.err("read endpoint definition", e))
    }

    /// The rows of endpoints whose definition, secrets or pause changed after `generation`
    /// (a removed endpoint's has no definition), by name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn definitions_since(&self, generation: i64) -> Result<Vec<DefinedRow>> {
        let e = |err| self.err("read changed endpoint definitions", err);
        let mut stmt = self.conn.prepare_cached(CHANGED).map_err(e)?;
        let rows = stmt
            .query_map([generation], row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }

    /// How many times definitions and pauses have changed.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn generation(&self) -> Result<i64> {
        self.conn
            .prepare_cached(GENERATION)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err("read endpoint generation", e))
    }

    /// Stores a definition: a new endpoint (`create`; `EndpointExists` if it has one) or a
    /// change to one (`NoSuchEndpoint` if it has none). Its subscriptions are rewritten.
    ///
    /// # Errors
    /// `EndpointExists`, `NoSuchEndpoint`, `Db`/`Busy`.
    pub(crate) fn define(&mut self, d: &Definition<'_>, create: bool, now: i64) -> Result<()> {
        let path = self.path.clone();
        let path = &path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let id = endpoint_id(&tx, d.name).map_err(e("add endpoint"))?;
        let defined: bool = tx
            .query_row(
                "SELECT definition IS NOT NULL FROM endpoints WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(e("read endpoint"))?;
        if create && defined {
            return Err(Error::EndpointExists {
                name: d.name.into(),
                place: "in the database (change it with `webhookd endpoints update`)",
            });
        }
        if !create && !defined {
            return Err(Error::NoSuchEndpoint {
                name: d.name.into(),
            });
        }
        tx.execute(
            "UPDATE endpoints SET definition = ?2, tenant = ?3, secrets = coalesce(?4, secrets),
             updated_at = ?5, defined_at = coalesce(defined_at, ?5) WHERE id = ?1",
            params![id, d.text, d.tenant, d.secrets, now],
        )
        .map_err(e("store endpoint"))?;
        tx.execute("DELETE FROM subscriptions WHERE endpoint = ?1", [id])
            .map_err(e("store subscriptions"))?;
        for pattern in d.events {
            tx.execute(
                "INSERT OR IGNORE INTO subscriptions (tenant, pattern, endpoint) VALUES (?1, ?2, ?3)",
                params![d.tenant.unwrap_or(""), pattern, id],
            )
            .map_err(e("store subscriptions"))?;
        }
        bump(&tx, d.name).map_err(e("bump generation"))?;
        tx.commit().map_err(e("commit"))
    }

    /// Removes endpoint `name`'s definition, secrets and subscriptions (its row, health and
    /// delivered or dead messages stay). With messages pending, in flight or waiting: refused,
    /// or with `cancel_pending` they are cancelled (in-flight ones when their attempt ends).
    /// Returns how many were cancelled.
    ///
    /// # Errors
    /// `NoSuchEndpoint`, `EndpointBusy`, `Db`/`Busy`.
    pub(crate) fn undefine(&mut self, name: &str, cancel_pending: bool, now: i64) -> Result<u64> {
        let path = self.path.clone();
        let path = &path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM endpoints WHERE name = ?1 AND definition IS NOT NULL",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(e("read endpoint"))?;
        let Some(id) = id else {
            return Err(Error::NoSuchEndpoint { name: name.into() });
        };
        let queued: i64 = tx
            .query_row(QUEUED, params![id, PENDING, IN_FLIGHT, WAITING], |r| {
                r.get(0)
            })
            .map_err(e("count queued messages"))?;
        let queued = u64::try_from(queued).unwrap_or(0);
        if queued > 0 && !cancel_pending {
            return Err(Error::EndpointBusy {
                name: name.into(),
                queued,
            });
        }
        tx.execute(
            "UPDATE messages SET state = ?2, cancelled_at = ?3, due_at = ?3
             WHERE endpoint = ?1 AND state IN (?4, ?5)",
            params![id, CANCELLED, now, PENDING, WAITING],
        )
        .map_err(e("cancel messages"))?;
        tx.execute(
            "UPDATE messages SET cancel_requested = 1 WHERE endpoint = ?1 AND state = ?2",
            params![id, IN_FLIGHT],
        )
        .map_err(e("cancel messages"))?;
        tx.execute(
            // Its pause and health go with it: a name added again starts afresh.
            "UPDATE endpoints SET definition = NULL, tenant = NULL, secrets = NULL,
             defined_at = NULL, updated_at = ?2, paused = 0, state = 0, failures = 0,
             failing_since = NULL, last_error = NULL, last_error_at = NULL, reason = NULL,
             changed_at = NULL WHERE id = ?1",
            params![id, now],
        )
        .map_err(e("remove endpoint"))?;
        tx.execute("DELETE FROM subscriptions WHERE endpoint = ?1", [id])
            .map_err(e("remove subscriptions"))?;
        bump(&tx, name).map_err(e("bump generation"))?;
        tx.commit().map_err(e("commit"))?;
        Ok(queued)
    }

    /// Pauses or resumes endpoint `name` (a row is made for a name the database does not know
    /// yet: a config-file endpoint before the daemon's first start).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn set_paused(&mut self, name: &str, paused: bool) -> Result<()> {
        let path = self.path.clone();
        let path = &path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let id = endpoint_id(&tx, name).map_err(e("add endpoint"))?;
        tx.execute(
            "UPDATE endpoints SET paused = ?2 WHERE id = ?1",
            params![id, paused],
        )
        .map_err(e("pause endpoint"))?;
        bump(&tx, name).map_err(e("bump generation"))?;
        tx.commit().map_err(e("commit"))
    }

    /// Replaces the sealed secrets of the defined endpoint `name`.
    ///
    /// # Errors
    /// `NoSuchEndpoint`, `Db`/`Busy`.
    pub(crate) fn set_secrets(&mut self, name: &str, sealed: &[u8], now: i64) -> Result<()> {
        let path = self.path.clone();
        let path = &path;
        let e = |op| move |source| wrap(path, op, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let n = tx
            .execute(
                "UPDATE endpoints SET secrets = ?2, updated_at = ?3
                 WHERE name = ?1 AND definition IS NOT NULL",
                params![name, sealed, now],
            )
            .map_err(e("store secrets"))?;
        if n == 0 {
            return Err(Error::NoSuchEndpoint { name: name.into() });
        }
        bump(&tx, name).map_err(e("bump generation"))?;
        tx.commit().map_err(e("commit"))
    }
}

//! Endpoints managed at runtime: their definitions, sealed secrets, pauses and subscriptions, in
//! the `endpoints` row of their name. Every change bumps the `endpoints` generation in the same
//! transaction, so that a daemon sees one with a single read.
//!
//! On PostgreSQL a change locks the endpoint's row (`FOR UPDATE`) before it reads what it
//! checks, and the generation's row by bumping it: concurrent changes are made one after the
//! other, and generations are committed in their order.

use postgres::{Row, Transaction};

use super::super::sqlite::codes::{CANCELLED, IN_FLIGHT, PENDING, WAITING};
use super::endpoints::endpoint_id;
use super::{Store, R};
use crate::error::{Error, Result};
use crate::store::{DefinedRow, Definition};

const DEFINED: &str = "SELECT name, definition, secrets, paused FROM endpoints
     WHERE definition IS NOT NULL OR paused <> 0 ORDER BY name";
const ONE: &str = "SELECT name, definition, secrets, paused FROM endpoints WHERE name = $1";
/// The rows changed after generation $1 (see `bump`): removed endpoints come with no definition.
const CHANGED: &str = "SELECT name, definition, secrets, paused FROM endpoints
     WHERE changed_gen > $1 ORDER BY name";
const GENERATION: &str = "SELECT n FROM generations WHERE what = 'endpoints'";
const BUMP: &str = "UPDATE generations SET n = n + 1 WHERE what = 'endpoints'";
const TAG: &str = "UPDATE endpoints SET changed_gen =
     (SELECT n FROM generations WHERE what = 'endpoints') WHERE name = $1";
const QUEUED: &str = "SELECT count(*) FROM messages WHERE endpoint = $1 AND state IN ($2, $3, $4)";
/// Cancels the endpoint's pending and waiting messages, and marks its in-flight ones to be
/// cancelled when their attempt ends. One statement: a message a daemon claims or releases
/// meanwhile is waited for and then taken in its new state, never missed between two.
const CANCEL: &str = "UPDATE messages SET
       state = CASE WHEN state = $3 THEN state ELSE $2 END,
       cancelled_at = CASE WHEN state = $3 THEN cancelled_at ELSE $4 END,
       due_at = CASE WHEN state = $3 THEN due_at ELSE $4 END,
       cancel_requested = CASE WHEN state = $3 THEN 1 ELSE cancel_requested END
     WHERE endpoint = $1 AND state IN ($3, $5, $6)";

/// Counts a change to endpoint `name` (in the transaction that makes it): the generation goes
/// up and the row records it.
fn bump(tx: &mut Transaction<'_>, name: &str) -> R<()> {
    tx.execute(BUMP, &[])?;
    tx.execute(TAG, &[&name])?;
    Ok(())
}

fn row(r: &Row) -> R<DefinedRow> {
    Ok(DefinedRow {
        name: r.try_get(0)?,
        definition: r.try_get(1)?,
        secrets: r.try_get(2)?,
        paused: r.try_get::<_, i64>(3)? != 0,
    })
}

impl Store {
    /// Every endpoint with a definition or paused, by name.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn definitions(&self) -> Result<Vec<DefinedRow>> {
        self.run("read endpoint definitions", |c| {
            c.query(DEFINED, &[])?.iter().map(row).collect()
        })
    }

    /// Endpoint `name`'s row, if the database knows the name.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn definition(&self, name: &str) -> Result<Option<DefinedRow>> {
        self.run("read endpoint definition", |c| {
            c.query_opt(ONE, &[&name])?.as_ref().map(row).transpose()
        })
    }

    /// The rows of endpoints whose definition, secrets or pause changed after `generation`
    /// (a removed endpoint's has no definition), by name.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn definitions_since(&self, generation: i64) -> Result<Vec<DefinedRow>> {
        self.run("read changed endpoint definitions", |c| {
            c.query(CHANGED, &[&generation])?.iter().map(row).collect()
        })
    }

    /// How many times definitions and pauses have changed.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn generation(&self) -> Result<i64> {
        self.run("read endpoint generation", |c| {
            Ok(c.query_one(GENERATION, &[])?.try_get(0)?)
        })
    }

    /// Stores a definition: a new endpoint (`create`; `EndpointExists` if it has one) or a
    /// change to one (`NoSuchEndpoint` if it has none). Its subscriptions are rewritten.
    ///
    /// # Errors
    /// `EndpointExists`, `NoSuchEndpoint`, `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn define(&mut self, d: &Definition<'_>, create: bool, now: i64) -> Result<()> {
        self.tx("store endpoint", |tx| {
            let id = endpoint_id(tx, d.name)?;
            // Locked: two `create`s of one name, or a create and a removal, run one at a time.
            let defined: bool = tx
                .query_one(
                    "SELECT definition IS NOT NULL FROM endpoints WHERE id = $1 FOR UPDATE",
                    &[&id],
                )?
                .try_get(0)?;
            if create && defined {
                return Err(Error::EndpointExists {
                    name: d.name.into(),
                    place: "in the database (change it with `webhookd endpoints update`)",
                }
                .into());
            }
            if !create && !defined {
                return Err(Error::NoSuchEndpoint {
                    name: d.name.into(),
                }
                .into());
            }
            tx.execute(
                "UPDATE endpoints SET definition = $2, tenant = $3,
                 secrets = coalesce($4, secrets), updated_at = $5,
                 defined_at = coalesce(defined_at, $5) WHERE id = $1",
                &[&id, &d.text, &d.tenant, &d.secrets, &now],
            )?;
            tx.execute("DELETE FROM subscriptions WHERE endpoint = $1", &[&id])?;
            let tenant = d.tenant.unwrap_or("");
            for pattern in d.events {
                tx.execute(
                    "INSERT INTO subscriptions (tenant, pattern, endpoint) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&tenant, pattern, &id],
                )?;
            }
            bump(tx, d.name)
        })
    }

    /// Removes endpoint `name`'s definition, secrets and subscriptions (its row, health and
    /// delivered or dead messages stay). With messages pending, in flight or waiting: refused,
    /// or with `cancel_pending` they are cancelled (in-flight ones when their attempt ends).
    /// Returns how many were cancelled.
    ///
    /// # Errors
    /// `NoSuchEndpoint`, `EndpointBusy`, `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn undefine(&mut self, name: &str, cancel_pending: bool, now: i64) -> Result<u64> {
        self.tx("remove endpoint", |tx| {
            let id: Option<i64> = tx
                .query_opt(
                    "SELECT id FROM endpoints WHERE name = $1 AND definition IS NOT NULL
                     FOR UPDATE",
                    &[&name],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            let Some(id) = id else {
                return Err(Error::NoSuchEndpoint { name: name.into() }.into());
            };
            let queued: i64 = tx
                .query_one(QUEUED, &[&id, &PENDING, &IN_FLIGHT, &WAITING])?
                .try_get(0)?;
            let queued = u64::try_from(queued).unwrap_or(0);
            if queued > 0 && !cancel_pending {
                return Err(Error::EndpointBusy {
                    name: name.into(),
                    queued,
                }
                .into());
            }
            tx.execute(
                CANCEL,
                &[&id, &CANCELLED, &IN_FLIGHT, &now, &PENDING, &WAITING],
            )?;
            tx.execute(
                // Its pause and health go with it: a name added again starts afresh.
                "UPDATE endpoints SET definition = NULL, tenant = NULL, secrets = NULL,
                 defined_at = NULL, updated_at = $2, paused = 0, state = 0, failures = 0,
                 failing_since = NULL, last_error = NULL, last_error_at = NULL, reason = NULL,
                 changed_at = NULL WHERE id = $1",
                &[&id, &now],
            )?;
            tx.execute("DELETE FROM subscriptions WHERE endpoint = $1", &[&id])?;
            bump(tx, name)?;
            Ok(queued)
        })
    }

    /// Pauses or resumes endpoint `name` (a row is made for a name the database does not know
    /// yet: a config-file endpoint before the daemon's first start).
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn set_paused(&mut self, name: &str, paused: bool) -> Result<()> {
        self.tx("pause endpoint", |tx| {
            let id = endpoint_id(tx, name)?;
            tx.execute(
                "UPDATE endpoints SET paused = $2 WHERE id = $1",
                &[&id, &i64::from(paused)],
            )?;
            bump(tx, name)
        })
    }

    /// Replaces the sealed secrets of the defined endpoint `name`.
    ///
    /// # Errors
    /// `NoSuchEndpoint`, `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn set_secrets(&mut self, name: &str, sealed: &[u8], now: i64) -> Result<()> {
        self.tx("store secrets", |tx| {
            let n = tx.execute(
                "UPDATE endpoints SET secrets = $2, updated_at = $3
                 WHERE name = $1 AND definition IS NOT NULL",
                &[&name, &sealed, &now],
            )?;
            if n == 0 {
                return Err(Error::NoSuchEndpoint { name: name.into() }.into());
            }
            bump(tx, name)
        })
    }
}

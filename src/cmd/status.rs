//! `webhookd status`: is a daemon running on this database, and what is queued.
//!
//! Exit 0 when a daemon holds the database's lock, 3 when not (LSB). Works without a daemon and
//! without a database (all counts 0).

use super::out;
use crate::config::Config;
use crate::error::{exit, Result};
use crate::store::{self, Access, Counts, DaemonState, Presence};

/// Runs `migrate`: opens the database to write, which creates or upgrades its schema.
///
/// # Errors
/// As the store's open (`NewerSchema`, `NotOurDb`, `DbUnavailable`, ...).
pub(crate) fn migrate(config: &Config, json: bool) -> Result<u8> {
    let version = store::migrate(&config.db)?;
    if json {
        out(
            serde_json::json!({"db": config.db.to_string(), "schema_version": version}).to_string(),
        )?;
    } else {
        out(format!(
            "{}: schema version {version}, up to date",
            config.db
        ))?;
    }
    Ok(exit::OK)
}

/// Runs `status`.
///
/// # Errors
/// Store errors other than a missing database.
pub(crate) fn run(config: &Config, json: bool) -> Result<u8> {
    let coordination = store::coordination(&config.db);
    let daemon = coordination.daemon();
    // A missing or empty file is "not created yet": status never creates or writes it.
    let presence = coordination.presence();
    let (counts, health, daemons) = match presence {
        Presence::Ready => {
            let store = store::open_admin(&config.db, Access::Read)?;
            (
                store.counts(crate::time::now_ms())?,
                store.endpoint_health()?,
                store.daemons()?,
            )
        }
        Presence::Missing | Presence::Empty => (Counts::default(), Vec::new(), Vec::new()),
    };
    let (exists, initialised) = match presence {
        Presence::Missing => (false, false),
        Presence::Empty => (true, false),
        Presence::Ready => (true, true),
    };
    // Endpoints by state; endpoints only in the database (no longer configured) are not counted.
    let (running, pid) = match daemon {
        DaemonState::Running { pid } => (true, pid),
        DaemonState::Stopped => (false, None),
    };
    if json {
        let v = crate::ops::status(
            config,
            running,
            pid,
            (exists, initialised),
            &counts,
            &health,
            &daemons,
        );
        out(serde_json::to_string(&v).expect("a view serializes"))?;
    } else {
        let daemon = match (running, pid) {
            _ if daemons.len() > 1 => {
                let each: Vec<String> = daemons
                    .iter()
                    .map(|d| match d.pid {
                        Some(pid) => format!("{} pid {pid}", crate::text::escape(&d.host)),
                        None => crate::text::escape(&d.host).into_owned(),
                    })
                    .collect();
                format!("{} running ({})", daemons.len(), each.join(", "))
            }
            (true, Some(pid)) => format!("running (pid {pid})"),
            (true, None) => "running".into(),
            (false, _) => "not running".into(),
        };
        let db = match (exists, initialised) {
            (_, true) => config.db.to_string(),
            (true, false) => format!("{} (empty: not initialised yet)", config.db),
            (false, _) => format!("{} (not created yet)", config.db),
        };
        let mut text = format!(
            "daemon:     {daemon}\ndb:         {db}\npending:    {} ({} scheduled)\nwaiting:    {}\nin flight:  {}\ndelivered:  {}\ndead:       {}\ncancelled:  {}",
            counts.pending,
            counts.scheduled,
            counts.waiting,
            counts.in_flight,
            counts.delivered,
            counts.dead,
            counts.cancelled
        );
        if !config.endpoints.is_empty() {
            let e = crate::ops::status(
                config,
                running,
                pid,
                (exists, initialised),
                &counts,
                &health,
                &daemons,
            )
            .endpoints;
            text.push_str(&format!(
                "\nendpoints:  {} healthy, {} open, {} disabled",
                e.healthy, e.open, e.disabled
            ));
        }
        out(text)?;
    }
    Ok(if running { exit::OK } else { exit::NOT_RUNNING })
}

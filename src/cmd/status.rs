//! `webhookd status`: is a daemon running on this database, and what is queued.
//!
//! Exit 0 when a daemon holds the database's lock, 3 when not (LSB). Works without a daemon and
//! without a database (all counts 0).

use super::out;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::model::Circuit;
use crate::store::{Access, Counts, DaemonLock, DaemonState, Store};

/// Runs `status`.
///
/// # Errors
/// Store errors other than a missing database.
pub(crate) fn run(config: &Config, json: bool) -> Result<u8> {
    let daemon = DaemonLock::probe(&config.db);
    let exists = config.db.exists();
    // A missing or empty file is "not created yet": status never creates or writes it.
    let (counts, health, initialised) = match Store::open(&config.db, Access::Read) {
        Ok(store) => (
            store.counts(crate::time::now_ms())?,
            store.endpoint_health()?,
            true,
        ),
        Err(Error::NoDatabase { .. }) => (Counts::default(), Vec::new(), false),
        Err(e) => return Err(e),
    };
    // Endpoints by state; endpoints only in the database (no longer configured) are not counted.
    let mut by_state = [0u64; 3];
    for name in config.endpoints.keys() {
        let state = health
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Circuit::Closed, |(_, h)| h.state);
        by_state[match state {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::Disabled => 2,
        }] += 1;
    }
    let (running, pid) = match daemon {
        DaemonState::Running { pid } => (true, pid),
        DaemonState::Stopped => (false, None),
    };
    if json {
        let v = serde_json::json!({
            "daemon": { "running": running, "pid": pid },
            "db": {
                "path": config.db.display().to_string(),
                "exists": exists,
                "initialised": initialised,
            },
            "queue": {
                "pending": counts.pending,
                "scheduled": counts.scheduled,
                "in_flight": counts.in_flight,
                "delivered": counts.delivered,
                "dead": counts.dead,
                "cancelled": counts.cancelled,
            },
            "endpoints": {
                "healthy": by_state[0],
                "open": by_state[1],
                "disabled": by_state[2],
            },
        });
        out(v)?;
    } else {
        let daemon = match (running, pid) {
            (true, Some(pid)) => format!("running (pid {pid})"),
            (true, None) => "running".into(),
            (false, _) => "not running".into(),
        };
        let db = match (exists, initialised) {
            (_, true) => config.db.display().to_string(),
            (true, false) => format!("{} (empty: not initialised yet)", config.db.display()),
            (false, _) => format!("{} (not created yet)", config.db.display()),
        };
        let mut text = format!(
            "daemon:     {daemon}\ndb:         {db}\npending:    {} ({} scheduled)\nin flight:  {}\ndelivered:  {}\ndead:       {}\ncancelled:  {}",
            counts.pending,
            counts.scheduled,
            counts.in_flight,
            counts.delivered,
            counts.dead,
            counts.cancelled
        );
        if !config.endpoints.is_empty() {
            text.push_str(&format!(
                "\nendpoints:  {} healthy, {} open, {} disabled",
                by_state[0], by_state[1], by_state[2]
            ));
        }
        out(text)?;
    }
    Ok(if running { exit::OK } else { exit::NOT_RUNNING })
}

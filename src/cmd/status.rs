//! `webhookd status`: is a daemon running on this database, and what is queued.
//!
//! Exit 0 when a daemon holds the database's lock, 3 when not (LSB). Works without a daemon and
//! without a database (all counts 0).

use super::out;
use crate::config::Config;
use crate::error::{exit, Result};
use crate::store::{self, Access, Counts, DaemonLock, DaemonState, Store};

/// Runs `status`.
///
/// # Errors
/// Store errors other than a missing database.
pub(crate) fn run(config: &Config, json: bool) -> Result<u8> {
    let daemon = DaemonLock::probe(&config.db);
    let exists = config.db.exists();
    let counts = if exists {
        Store::open(&config.db, Access::Read)?.counts(store::now_ms())?
    } else {
        Counts::default()
    };
    let (running, pid) = match daemon {
        DaemonState::Running { pid } => (true, pid),
        DaemonState::Stopped => (false, None),
    };
    if json {
        let v = serde_json::json!({
            "daemon": { "running": running, "pid": pid },
            "db": { "path": config.db.display().to_string(), "exists": exists },
            "queue": {
                "pending": counts.pending,
                "scheduled": counts.scheduled,
                "in_flight": counts.in_flight,
                "delivered": counts.delivered,
                "dead": counts.dead,
            },
        });
        out(v)?;
    } else {
        let daemon = match (running, pid) {
            (true, Some(pid)) => format!("running (pid {pid})"),
            (true, None) => "running".into(),
            (false, _) => "not running".into(),
        };
        let db = if exists {
            config.db.display().to_string()
        } else {
            format!("{} (not created yet)", config.db.display())
        };
        out(format_args!(
            "daemon:     {daemon}\ndb:         {db}\npending:    {} ({} scheduled)\nin flight:  {}\ndelivered:  {}\ndead:       {}",
            counts.pending, counts.scheduled, counts.in_flight, counts.delivered, counts.dead
        ))?;
    }
    Ok(if running { exit::OK } else { exit::NOT_RUNNING })
}

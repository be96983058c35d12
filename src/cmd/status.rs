//! `webhookd status`: is a daemon running on this database, and what is queued.
//!
//! Exit 0 when a daemon holds the database's lock, 3 when not (LSB). Works without a daemon and
//! without a database (all counts 0).

use super::out;
use crate::config::Config;
use crate::error::{exit, Result};
use crate::model::Circuit;
use crate::store::{self, Access, Counts, DaemonState, Presence};
use crate::view::{DaemonJson, DbJson, EndpointCountsJson, QueueJson, StatusJson};

/// Runs `status`.
///
/// # Errors
/// Store errors other than a missing database.
pub(crate) fn run(config: &Config, json: bool) -> Result<u8> {
    let coordination = store::coordination(&config.db);
    let daemon = coordination.daemon();
    // A missing or empty file is "not created yet": status never creates or writes it.
    let presence = coordination.presence();
    let (counts, health) = match presence {
        Presence::Ready => {
            let store = store::open_admin(&config.db, Access::Read)?;
            (
                store.counts(crate::time::now_ms())?,
                store.endpoint_health()?,
            )
        }
        Presence::Missing | Presence::Empty => (Counts::default(), Vec::new()),
    };
    let (exists, initialised) = match presence {
        Presence::Missing => (false, false),
        Presence::Empty => (true, false),
        Presence::Ready => (true, true),
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
        let v = StatusJson {
            daemon: DaemonJson { running, pid },
            db: DbJson {
                path: config.db.to_string(),
                exists,
                initialised,
            },
            queue: QueueJson {
                pending: counts.pending,
                scheduled: counts.scheduled,
                waiting: counts.waiting,
                in_flight: counts.in_flight,
                delivered: counts.delivered,
                dead: counts.dead,
                cancelled: counts.cancelled,
            },
            endpoints: EndpointCountsJson {
                healthy: by_state[0],
                open: by_state[1],
                disabled: by_state[2],
            },
        };
        out(serde_json::to_string(&v).expect("a view serializes"))?;
    } else {
        let daemon = match (running, pid) {
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
            text.push_str(&format!(
                "\nendpoints:  {} healthy, {} open, {} disabled",
                by_state[0], by_state[1], by_state[2]
            ));
        }
        out(text)?;
    }
    Ok(if running { exit::OK } else { exit::NOT_RUNNING })
}

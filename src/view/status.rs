//! The JSON views of `status`, `enqueue --json` and `dlq list --json`.

use serde::Serialize;

use crate::store::Enqueued;

/// `status --json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusJson {
    pub(crate) daemon: DaemonJson,
    /// Every daemon on the queue (PostgreSQL: all those seen within two leases).
    pub(crate) daemons: Vec<DaemonEntryJson>,
    pub(crate) db: DbJson,
    pub(crate) queue: QueueJson,
    pub(crate) endpoints: EndpointCountsJson,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DaemonJson {
    pub(crate) running: bool,
    pub(crate) pid: Option<u32>,
}

/// One daemon of the queue.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DaemonEntryJson {
    /// Its instance id (the owner of its claims), in hex; `null` on SQLite.
    pub(crate) instance: Option<String>,
    pub(crate) host: String,
    pub(crate) pid: Option<u32>,
    pub(crate) started_at: Option<String>,
    pub(crate) last_seen: Option<String>,
}

impl DaemonEntryJson {
    pub(crate) fn new(d: &crate::store::DaemonInfo) -> DaemonEntryJson {
        DaemonEntryJson {
            instance: d.instance.map(|i| format!("{i:016x}")),
            host: d.host.clone(),
            pid: d.pid,
            started_at: super::opt_time(d.started_at),
            last_seen: super::opt_time(d.seen_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DbJson {
    pub(crate) path: String,
    pub(crate) exists: bool,
    pub(crate) initialised: bool,
}

/// Messages by state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueJson {
    /// Due now or later (`scheduled` of them later).
    pub(crate) pending: u64,
    pub(crate) scheduled: u64,
    /// Behind an earlier message of their ordered lane.
    pub(crate) waiting: u64,
    pub(crate) in_flight: u64,
    pub(crate) delivered: u64,
    pub(crate) dead: u64,
    pub(crate) cancelled: u64,
}

/// Configured endpoints by health.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndpointCountsJson {
    pub(crate) healthy: u64,
    pub(crate) open: u64,
    pub(crate) disabled: u64,
}

/// One stored (or, with a known key, found) message of `enqueue --json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EnqueuedJson {
    pub(crate) uuid: String,
    pub(crate) state: &'static str,
    /// False when an idempotency key matched an earlier message (its uuid is given).
    pub(crate) created: bool,
}

impl EnqueuedJson {
    pub(crate) fn new(e: &Enqueued) -> EnqueuedJson {
        EnqueuedJson {
            uuid: e.uuid.to_string(),
            state: e.state.as_str(),
            created: e.created,
        }
    }
}

/// One dead message of `dlq list --json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeadJson {
    pub(crate) uuid: String,
    pub(crate) url: String,
    pub(crate) endpoint: Option<String>,
    /// Over the message's life.
    pub(crate) attempts: u32,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    pub(crate) dead_at: Option<String>,
}

/// An event: as `enqueue --event --json` and `POST /v1/events` answer (`messages`: the new
/// deliveries), and as `show EVENT_ID --json` shows it (`messages`: every delivery, with its
/// state).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventJson {
    pub(crate) id: String,
    pub(crate) created: bool,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<String>,
    pub(crate) deliveries: u64,
    pub(crate) messages: Vec<DeliveryJson>,
}

/// One delivery of an event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeliveryJson {
    pub(crate) uuid: String,
    pub(crate) endpoint: String,
    pub(crate) state: &'static str,
}

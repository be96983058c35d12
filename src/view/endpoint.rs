//! The JSON views of endpoints (`endpoints list`, `endpoints show`): health as the daemon last
//! saved it, message counts, the configured policy and the ordered lanes.

use serde::Serialize;

use super::opt_time;
use crate::endpoint::{Endpoint, OnDead};
use crate::model::State;
use crate::store::{EndpointRow, Lane};
use crate::text::duration;

/// One endpoint, as `endpoints list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndpointJson {
    pub(crate) name: String,
    /// In the configuration or the database (else its messages are held).
    pub(crate) configured: bool,
    /// Where it is defined: "config" (the file) or "database" (managed at runtime).
    pub(crate) source: Option<&'static str>,
    pub(crate) tenant: Option<String>,
    /// Subscription patterns.
    pub(crate) events: Vec<String>,
    /// Paused by an operator: nothing is sent until it is resumed.
    pub(crate) paused: bool,
    pub(crate) state: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) state_since: Option<String>,
    pub(crate) consecutive_failures: i64,
    pub(crate) failing_since: Option<String>,
    pub(crate) last_success_at: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<String>,
    pub(crate) pending: u64,
    pub(crate) waiting: u64,
    pub(crate) in_flight: u64,
    pub(crate) dead: u64,
}

/// One endpoint with its policy (null when not configured) and lanes, as `endpoints show`
/// shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndpointDetailJson {
    #[serde(flatten)]
    pub(crate) endpoint: EndpointJson,
    pub(crate) policy: Option<PolicyJson>,
    pub(crate) lanes: Vec<LaneJson>,
}

/// An endpoint's configured policy; header values and secrets are never shown.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyJson {
    pub(crate) url: String,
    /// Header names only.
    pub(crate) headers: Vec<String>,
    pub(crate) signing_secrets: usize,
    /// Secret files the command could not read (the daemon may).
    pub(crate) unreadable_files: Vec<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) max_attempts: Option<u32>,
    /// In force, with the configured number of workers.
    pub(crate) concurrency: usize,
    pub(crate) rate: Option<String>,
    pub(crate) ordered: bool,
    pub(crate) on_dead: &'static str,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: String,
    pub(crate) disable_after: String,
}

/// An endpoint managed at runtime, as `endpoints add|update` (and the API) answer; `secret`
/// only when one was just made or given.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DefinedJson {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) tenant: Option<String>,
    pub(crate) events: Vec<String>,
    pub(crate) paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
}

impl DefinedJson {
    pub(crate) fn new(e: &Endpoint, secret: Option<String>) -> DefinedJson {
        DefinedJson {
            name: e.name.clone(),
            url: e.url.clone(),
            tenant: e.tenant.clone(),
            events: e.events.clone(),
            paused: e.paused,
            secret,
        }
    }
}

/// A plain URL's origin, as `origins list` shows it: its breaker and messages.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OriginJson {
    pub(crate) origin: String,
    pub(crate) state: &'static str,
    pub(crate) consecutive_failures: i64,
    pub(crate) failing_since: Option<String>,
    pub(crate) last_success_at: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<String>,
    pub(crate) pending: u64,
    pub(crate) in_flight: u64,
    pub(crate) dead: u64,
}

impl OriginJson {
    pub(crate) fn new(row: &EndpointRow) -> OriginJson {
        let h = &row.health;
        OriginJson {
            origin: row.name.clone(),
            state: h.state.as_str(),
            consecutive_failures: h.failures,
            failing_since: opt_time(h.failing_since),
            last_success_at: opt_time(h.last_success_at),
            last_error: h.last_error.clone(),
            last_error_at: opt_time(h.last_error_at),
            pending: row.pending + row.waiting,
            in_flight: row.in_flight,
            dead: row.dead,
        }
    }
}

/// An ordered lane with messages not yet delivered.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LaneJson {
    /// The ordering key ("" for the endpoint's own lane).
    pub(crate) key: String,
    pub(crate) messages: u64,
    pub(crate) head: String,
    pub(crate) head_state: &'static str,
    /// Its head is dead and dead messages block the lane.
    pub(crate) blocked: bool,
}

impl EndpointJson {
    pub(crate) fn new(row: &EndpointRow, cfg: Option<&Endpoint>) -> EndpointJson {
        let h = &row.health;
        EndpointJson {
            name: row.name.clone(),
            configured: cfg.is_some(),
            source: cfg.map(|e| if e.managed { "database" } else { "config" }),
            tenant: cfg.and_then(|e| e.tenant.clone()),
            events: cfg.map(|e| e.events.clone()).unwrap_or_default(),
            paused: cfg.is_some_and(|e| e.paused),
            state: h.state.as_str(),
            reason: h.reason.clone(),
            state_since: opt_time(h.changed_at),
            consecutive_failures: h.failures,
            failing_since: opt_time(h.failing_since),
            last_success_at: opt_time(h.last_success_at),
            last_error: h.last_error.clone(),
            last_error_at: opt_time(h.last_error_at),
            pending: row.pending,
            waiting: row.waiting,
            in_flight: row.in_flight,
            dead: row.dead,
        }
    }
}

impl PolicyJson {
    pub(crate) fn new(e: &Endpoint, workers: usize) -> PolicyJson {
        PolicyJson {
            url: e.url.clone(),
            headers: e.headers.iter().map(|(n, _)| n.clone()).collect(),
            signing_secrets: e.keys.len(),
            unreadable_files: e.unreadable.clone(),
            timeout: e.timeout.map(duration),
            max_attempts: e.max_attempts,
            concurrency: e.concurrency_with(workers),
            rate: e.rate.as_ref().map(|r| r.text.clone()),
            ordered: e.ordered,
            on_dead: match e.on_dead {
                OnDead::Block => "block",
                OnDead::Skip => "skip",
            },
            breaker_failures: e.breaker_failures,
            breaker_cooldown: duration(e.breaker_cooldown),
            disable_after: duration(e.disable_after),
        }
    }
}

impl LaneJson {
    pub(crate) fn new(l: &Lane) -> LaneJson {
        LaneJson {
            key: l.key.clone(),
            messages: l.messages,
            head: l.head.to_string(),
            head_state: l.head_state.as_str(),
            blocked: l.head_state == State::Dead,
        }
    }
}

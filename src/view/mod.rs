//! The JSON views every `--json` output prints (and the HTTP API will answer): one `Serialize`
//! shape each, so two commands can never describe a thing differently. Messages and attempts
//! (`show`, `list`, the bulk commands) here; endpoints in `endpoint`; status, enqueue results and
//! DLQ items in `status`. Times are RFC 3339 UTC with milliseconds; headers are an ordered list
//! of name/value pairs (a name may repeat).

mod endpoint;
mod stats;
mod status;

pub(crate) use endpoint::{
    DefinedJson, EndpointDetailJson, EndpointJson, LaneJson, OriginJson, PolicyJson,
};
pub(crate) use stats::{EndpointDayJson, RecentAttemptJson, StatsJson};
pub(crate) use status::{
    DaemonEntryJson, DaemonJson, DbJson, DeadJson, DeliveryJson, EndpointCountsJson, EnqueuedJson,
    EventJson, QueueJson, StatusJson,
};

use base64::Engine;
use serde::Serialize;

use crate::config::Config;
use crate::store::{Attempt, MessageView};

/// One header.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// One attempt.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttemptJson {
    pub(crate) n: u32,
    pub(crate) at: String,
    pub(crate) duration_ms: f64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    /// The first bytes of the response body (lossy UTF-8).
    pub(crate) response_excerpt: String,
}

/// A message; `list` leaves out the body and the attempts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageJson {
    pub(crate) uuid: String,
    /// The event it delivers (its webhook-id), if it came from a fan-out.
    pub(crate) event: Option<String>,
    pub(crate) state: &'static str,
    pub(crate) method: String,
    /// Where it goes: its URL, or its endpoint's URL with its path.
    pub(crate) url: String,
    pub(crate) endpoint: Option<String>,
    /// For an endpoint's message: its endpoint's health (`healthy`, `open`, `disabled`, or
    /// `not configured`); its pending messages are held while it is not healthy.
    pub(crate) endpoint_state: Option<&'static str>,
    /// For an endpoint's message: the path appended to the endpoint's URL (null when none).
    pub(crate) path: Option<String>,
    pub(crate) ordering_key: Option<String>,
    pub(crate) headers: Vec<Header>,
    pub(crate) body_size: u64,
    pub(crate) key: Option<String>,
    pub(crate) created_at: String,
    pub(crate) next_attempt_at: Option<String>,
    pub(crate) delivered_at: Option<String>,
    pub(crate) retried_at: Option<String>,
    pub(crate) replayed_at: Option<String>,
    pub(crate) dead_at: Option<String>,
    pub(crate) cancelled_at: Option<String>,
    /// In flight, and cancelled when this attempt ends.
    pub(crate) cancel_requested: bool,
    /// Attempts in the current budget (`dlq retry` and `replay` start a new one).
    pub(crate) attempts_used: u32,
    /// The budget in force: the message's own, its endpoint's, or `retry.max_attempts`.
    pub(crate) max_attempts: u32,
    /// Attempts over the message's life.
    pub(crate) attempts_total: u32,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempts: Option<Vec<AttemptJson>>,
}

/// The attempt budget of a message: its own, else its endpoint's, else the config's.
pub(crate) fn budget(config: &Config, v: &MessageView) -> u32 {
    v.max_attempts
        .or_else(|| {
            v.endpoint
                .as_ref()
                .and_then(|e| config.endpoints.get(e))
                .and_then(|e| e.max_attempts)
        })
        .unwrap_or(config.retry.max_attempts)
}

use crate::time::rfc3339 as time;

pub(crate) fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(time)
}

/// The health of a message's endpoint: as the daemon last saved it, or `not configured` (its
/// messages are held until it is added back).
pub(crate) fn endpoint_state(config: &Config, v: &MessageView) -> Option<&'static str> {
    let name = v.endpoint.as_deref()?;
    if !config.endpoints.contains_key(name) {
        return Some("not configured");
    }
    Some(v.endpoint_circuit.unwrap_or_default().as_str())
}

/// Whether a pending message is held: its endpoint is open, disabled or not configured, so it
/// is not claimed until that changes (an open endpoint's probe excepted).
pub(crate) fn held(config: &Config, v: &MessageView) -> bool {
    v.state == crate::model::State::Pending
        && endpoint_state(config, v).is_some_and(|s| s != "healthy")
}

/// The URL a stored message goes to: its own, or its endpoint's URL with its path appended (an
/// endpoint no longer configured shows as `[NAME]PATH`).
pub(crate) fn target_url(config: &Config, endpoint: Option<&str>, url: &str) -> String {
    match endpoint {
        None => url.to_owned(),
        Some(name) => config
            .endpoints
            .get(name)
            .map_or_else(|| format!("[{name}]{url}"), |e| e.url_for(url)),
    }
}

/// The headers as name/value pairs.
pub(crate) fn headers(h: &[(String, String)]) -> Vec<Header> {
    h.iter()
        .map(|(name, value)| Header {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

impl MessageJson {
    /// The view of `v`: with its body and attempts when the store read them.
    pub(crate) fn new(config: &Config, v: &MessageView) -> MessageJson {
        let (body, body_base64) = match &v.body {
            None => (None, None),
            Some(b) => match std::str::from_utf8(b) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(b)),
                ),
            },
        };
        MessageJson {
            uuid: v.uuid.to_string(),
            event: v.event.map(|e| e.to_string()),
            state: v.state.as_str(),
            method: v.method.clone(),
            url: target_url(config, v.endpoint.as_deref(), &v.url),
            endpoint: v.endpoint.clone(),
            endpoint_state: endpoint_state(config, v),
            path: v
                .endpoint
                .is_some()
                .then(|| v.url.clone())
                .filter(|p| !p.is_empty()),
            ordering_key: v.ordering_key.clone(),
            headers: headers(&v.headers),
            body_size: v.body_size,
            key: v.key.clone(),
            created_at: time(v.created_at),
            next_attempt_at: opt_time(v.next_attempt_at),
            delivered_at: opt_time(v.delivered_at),
            retried_at: opt_time(v.retried_at),
            replayed_at: opt_time(v.replayed_at),
            dead_at: opt_time(v.dead_at),
            cancelled_at: opt_time(v.cancelled_at),
            cancel_requested: v.cancel_requested,
            attempts_used: v.attempts_in_budget,
            max_attempts: budget(config, v),
            attempts_total: v.attempts_total,
            last_status: v.last_status,
            last_error: v.last_error.clone(),
            body,
            body_base64,
            attempts: v
                .body
                .is_some()
                .then(|| v.attempts.iter().map(attempt).collect()),
        }
    }
}

fn attempt(a: &Attempt) -> AttemptJson {
    AttemptJson {
        n: a.n,
        at: time(a.at),
        duration_ms: a.duration_us as f64 / 1000.0,
        status: a.status,
        error: a.error.clone(),
        response_excerpt: String::from_utf8_lossy(&a.response).into_owned(),
    }
}

/// A page of `list`.
#[derive(Debug, Serialize)]
pub(crate) struct Page {
    pub(crate) messages: Vec<MessageJson>,
    /// Pass as `--cursor` for the next page; null on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// What a bulk command did (or, with `--dry-run`, would do).
#[derive(Debug, Serialize)]
pub(crate) struct BulkJson {
    pub(crate) action: &'static str,
    pub(crate) dry_run: bool,
    /// Messages the selection matched.
    pub(crate) matched: u64,
    /// Messages changed (with `--dry-run`: that would change).
    pub(crate) changed: u64,
    /// In-flight messages to be cancelled when their attempt ends (cancel only).
    pub(crate) cancel_requested: u64,
    pub(crate) uuids: Vec<String>,
}

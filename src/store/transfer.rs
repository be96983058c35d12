//! What `webhookd copy` carries from one store to the other (see `store::copy`): rows as plain
//! values, and the columns each list holds, in order.

/// One column's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// An endpoint's row, with its subscriptions (tenant, pattern).
#[derive(Debug, Clone)]
pub(crate) struct EndpointCopy {
    pub(crate) name: String,
    /// The columns of `ENDPOINT_COLUMNS`, in order.
    pub(crate) values: Vec<Value>,
    pub(crate) subscriptions: Vec<(String, String)>,
}

/// The columns of an endpoint copied as they are (not `id`, which each database assigns).
pub(crate) const ENDPOINT_COLUMNS: &[&str] = &[
    "state",
    "failures",
    "failing_since",
    "last_success_at",
    "last_error",
    "last_error_at",
    "changed_at",
    "reason",
    "enable_requested",
    "definition",
    "tenant",
    "secrets",
    "paused",
    "defined_at",
    "updated_at",
];

/// The columns of an event (all but `seq`).
pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "uuid",
    "tenant",
    "type",
    "idem_key",
    "created_at",
    "deliveries",
];

/// A message with its request and attempts.
#[derive(Debug, Clone)]
pub(crate) struct MessageCopy {
    /// Its seq in the SQLite file (pages are read by it).
    pub(crate) seq: i64,
    /// Its endpoint's name (`None`: a plain URL stored before origins, endpoint 0).
    pub(crate) endpoint: Option<String>,
    /// The columns of `MESSAGE_COLUMNS`, in order.
    pub(crate) values: Vec<Value>,
    /// method, url, headers, body.
    pub(crate) payload: Vec<Value>,
    /// The columns of `ATTEMPT_COLUMNS` of each attempt.
    pub(crate) attempts: Vec<Vec<Value>>,
}

/// The columns of a message copied as they are (not `seq`, `endpoint`, `owner`, `lease_until`).
pub(crate) const MESSAGE_COLUMNS: &[&str] = &[
    "uuid",
    "idem_key",
    "state",
    "due_at",
    "created_at",
    "attempts",
    "attempts_total",
    "max_attempts",
    "delivered_at",
    "retried_at",
    "dead_at",
    "last_error",
    "lane",
    "cancel_requested",
    "cancelled_at",
    "replayed_at",
    "event",
];

/// The columns of an attempt (all but `seq`).
pub(crate) const ATTEMPT_COLUMNS: &[&str] =
    &["n", "at", "duration_us", "status", "error", "response"];

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Copied {
    pub(crate) messages: u64,
    /// Messages the target already held (a second run).
    pub(crate) messages_skipped: u64,
    pub(crate) attempts: u64,
    pub(crate) endpoints: u64,
    pub(crate) events: u64,
}

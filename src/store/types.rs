//! The store's types, the same for every backend: what the daemon records and claims, what the
//! commands read and change. Plain data (and the few rules that are about the data alone, such as
//! which states an operator's action takes).

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::filter::{Filter, StateName};
use crate::model::{Claim, Health, Job, State};

/// The result of storing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Enqueued {
    pub(crate) uuid: Uuid,
    /// False when the idempotency key was known and the first message's uuid is returned.
    pub(crate) created: bool,
    /// The message's state now (the first message's, for a known key).
    pub(crate) state: State,
    /// For a known key: whether the first message is the same request (method, destination,
    /// headers, body). A different one was not stored.
    pub(crate) same_request: bool,
}

/// How an attempt ended, as decided by the dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutcomeKind {
    Delivered,
    Retry { due_at: i64 },
    Dead,
}

/// One finished attempt to record.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) seq: i64,
    /// Attempt number over the message's life (1-based).
    pub(crate) n: u32,
    pub(crate) at: i64,
    pub(crate) duration_us: i64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) response: Vec<u8>,
    /// Stored as the message's last error when it failed.
    pub(crate) summary: String,
    pub(crate) kind: OutcomeKind,
    /// The message's ordered lane, if any.
    pub(crate) lane: Option<String>,
    /// Whether the lane's next message becomes pending (this one was delivered, or died in a
    /// lane that skips dead messages). A message cancelled at the end of its attempt always
    /// lets its lane go on.
    pub(crate) promote: bool,
}

/// One unit of the dispatcher's work (see [`Store::cycle`]).
#[derive(Debug, Default)]
pub(crate) struct Cycle<'a> {
    pub(crate) outcomes: &'a [Outcome],
    /// Claimed jobs never started, back to pending.
    pub(crate) released: &'a [i64],
    pub(crate) claims: &'a [Claim],
    /// Endpoint health to save.
    pub(crate) health: &'a [Health],
    /// Take the endpoints an operator asked to enable (`webhookd endpoints enable`).
    pub(crate) take_enables: bool,
    /// New messages (posted to the API), stored first and durably: a cycle with inserts commits
    /// with a sync of the log, as an enqueue does, and may claim them at once.
    pub(crate) inserts: &'a [crate::message::Message],
    /// Claim at most this many jobs in all (`None`: each claim's limit alone): the claims are
    /// made in order, and what one endpoint leaves unused goes to the next.
    pub(crate) claim_budget: Option<usize>,
}

/// What a cycle claimed and learnt.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) jobs: Vec<Job>,
    /// Messages (seq) whose attempt or release ended in `cancelled`: an operator cancelled them
    /// while they were in flight.
    pub(crate) cancelled: Vec<i64>,
    /// For each claim that got fewer than its limit (all due ones): the endpoint's next due time.
    pub(crate) next_due: Vec<(i64, Option<i64>)>,
    /// Endpoints to enable.
    pub(crate) enabled: Vec<i64>,
    /// The saved health as it is now, where daemons share it and another daemon's change came
    /// first (see `Health::gen`): for `deliver::Endpoints::adopt`.
    pub(crate) health: Vec<Health>,
    /// What each of `Cycle::inserts` became, in order.
    pub(crate) inserted: Vec<Enqueued>,
}

/// Endpoints with pending messages (see `Queue::pending_endpoints`).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Endpoint id and the earliest due time of its pending messages.
    pub(crate) rows: Vec<(i64, i64)>,
    /// The highest message seq when it looked: the next look for new messages starts above it.
    pub(crate) seen: i64,
}

/// Messages per state. `pending` includes the `scheduled` ones (due in the future).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Pending (due now or later) and, from `totals`, waiting behind an earlier message of their
    /// lane too.
    pub(crate) pending: u64,
    /// Of the pending ones, due after now (only from `counts`).
    pub(crate) scheduled: u64,
    /// Waiting behind an earlier message of their ordered lane (only from `counts`, which then
    /// leaves them out of `pending`).
    pub(crate) waiting: u64,
    pub(crate) in_flight: u64,
    pub(crate) delivered: u64,
    pub(crate) dead: u64,
    pub(crate) cancelled: u64,
}

/// One recorded HTTP attempt.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) n: u32,
    pub(crate) at: i64,
    pub(crate) duration_us: i64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) response: Vec<u8>,
}

/// Everything stored about one message.
#[derive(Debug, Clone)]
pub(crate) struct MessageView {
    pub(crate) seq: i64,
    pub(crate) uuid: Uuid,
    /// The event it delivers (its webhook-id), if it came from a fan-out.
    pub(crate) event: Option<Uuid>,
    pub(crate) state: State,
    pub(crate) key: Option<String>,
    pub(crate) method: String,
    /// The URL, or for a named endpoint the path appended to its URL.
    pub(crate) url: String,
    pub(crate) endpoint: Option<String>,
    /// Its endpoint's circuit as the daemon last saved it (plain URLs: none).
    pub(crate) endpoint_circuit: Option<crate::model::Circuit>,
    /// The ordering key of its lane, if it is ordered.
    pub(crate) ordering_key: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    /// Only when asked for ([`Store::view`]); `body_size` always.
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) body_size: u64,
    pub(crate) created_at: i64,
    /// Only for pending messages.
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) delivered_at: Option<i64>,
    pub(crate) retried_at: Option<i64>,
    pub(crate) dead_at: Option<i64>,
    pub(crate) cancelled_at: Option<i64>,
    pub(crate) replayed_at: Option<i64>,
    /// In flight and to be cancelled when its attempt ends.
    pub(crate) cancel_requested: bool,
    /// Attempts in the current budget (reset by `dlq retry` and `replay`).
    pub(crate) attempts_in_budget: u32,
    /// Attempts over the message's life.
    pub(crate) attempts_total: u32,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    /// Only from [`Store::view`].
    pub(crate) attempts: Vec<Attempt>,
}

/// Parses an operator-given uuid: a malformed one is a command-line error (64).
pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| Error::Usage {
        message: format!("{s:?} is not a uuid (e.g. 0190c6c8-0000-7000-8000-000000000000)"),
    })
}

/// An endpoint's row, as `webhookd endpoints` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndpointRow {
    pub(crate) name: String,
    pub(crate) health: crate::model::Health,
    pub(crate) pending: u64,
    pub(crate) in_flight: u64,
    /// Waiting behind an earlier message of their ordered lane.
    pub(crate) waiting: u64,
    pub(crate) dead: u64,
}

/// An event to store: fanned out to `deliveries` messages.
#[derive(Debug, Clone)]
pub(crate) struct EventRecord {
    pub(crate) id: uuid::Uuid,
    pub(crate) tenant: Option<String>,
    /// The event type (`invoice.paid`).
    pub(crate) kind: String,
    /// Idempotency key, per tenant.
    pub(crate) key: Option<String>,
    pub(crate) deliveries: u64,
}

/// What storing an event did: stored (`created`), or nothing because its key names `id`.
#[derive(Debug, Clone)]
pub(crate) struct EventStored {
    pub(crate) id: uuid::Uuid,
    pub(crate) created: bool,
    pub(crate) deliveries: u64,
    /// The first event with the key has the same type (else the key was reused for another).
    pub(crate) same_type: bool,
}

/// An event and its deliveries, as `show EVENT_ID` shows it.
#[derive(Debug, Clone)]
pub(crate) struct EventView {
    pub(crate) id: uuid::Uuid,
    pub(crate) tenant: Option<String>,
    pub(crate) kind: String,
    pub(crate) key: Option<String>,
    pub(crate) created_at: i64,
    /// Each delivery: its message's uuid, endpoint name and state.
    pub(crate) deliveries: Vec<(uuid::Uuid, String, crate::model::State)>,
}

/// An endpoint with a definition (managed at runtime) or paused, as stored.
#[derive(Debug, Clone)]
pub(crate) struct DefinedRow {
    pub(crate) name: String,
    /// The settings as JSON (`endpoint::defined`); `None`: a config-file endpoint, paused.
    pub(crate) definition: Option<String>,
    /// Its signing secrets, sealed (`endpoint::secrets`).
    pub(crate) secrets: Option<Vec<u8>>,
    pub(crate) paused: bool,
}

/// A definition to store (`Admin::define`).
#[derive(Debug)]
pub(crate) struct Definition<'a> {
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
    pub(crate) tenant: Option<&'a str>,
    /// Subscription patterns.
    pub(crate) events: &'a [String],
    /// Sealed secrets; `None` keeps the stored ones.
    pub(crate) secrets: Option<&'a [u8]>,
}

/// One ordered lane with messages not yet delivered.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    /// The ordering key ("" for the endpoint's own lane).
    pub(crate) key: String,
    pub(crate) messages: u64,
    pub(crate) head: Uuid,
    pub(crate) head_state: State,
}

/// Changes an operator makes to dead messages before sending them again. Already validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryEdit {
    pub(crate) url: Option<String>,
    pub(crate) set_headers: Vec<(String, String)>,
    pub(crate) remove_headers: Vec<String>,
    pub(crate) body: Option<Vec<u8>>,
}

impl RetryEdit {
    pub(crate) fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.set_headers.is_empty()
            && self.remove_headers.is_empty()
            && self.body.is_none()
    }
}

/// What an operator does to messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    /// Pending, scheduled or waiting: cancelled now; in flight: when its attempt ends.
    Cancel,
    /// Dead: pending again, due now, with a fresh budget, after the edit.
    Retry(&'a RetryEdit),
    /// Dead: deleted with its history.
    Delete,
    /// Delivered, dead or cancelled: pending again with a fresh budget (same uuid).
    Replay,
}

impl Action<'_> {
    /// The states the action takes.
    pub(crate) fn takes(&self, state: State) -> bool {
        match self {
            Action::Cancel => matches!(state, State::Pending | State::Waiting | State::InFlight),
            Action::Retry(_) | Action::Delete => state == State::Dead,
            Action::Replay => matches!(state, State::Delivered | State::Dead | State::Cancelled),
        }
    }

    /// The error for a named message in a state the action does not take.
    pub(crate) fn refusal(&self, uuid: &Uuid, state: State) -> Error {
        let state = state.as_str();
        match self {
            Action::Retry(_) | Action::Delete => Error::NotDead {
                uuid: uuid.to_string(),
                state: state.into(),
            },
            Action::Cancel => Error::WrongState {
                uuid: uuid.to_string(),
                state: state.into(),
                action:
                    "cancelled (only pending, scheduled, waiting and in-flight messages can be)",
            },
            Action::Replay => Error::WrongState {
                uuid: uuid.to_string(),
                state: state.into(),
                action: "replayed (only delivered, dead and cancelled messages can be)",
            },
        }
    }
}

/// What an action did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Done {
    /// Messages changed now.
    pub(crate) changed: Vec<Uuid>,
    /// In-flight messages that will be cancelled when their attempt ends.
    pub(crate) later: Vec<Uuid>,
}

/// A message found by a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) seq: i64,
    pub(crate) uuid: Uuid,
}

/// A filter resolved against a store: the states to read (each with "scheduled only"), the
/// endpoint as its id.
#[derive(Debug, Clone)]
pub(crate) struct Query<'f> {
    pub(crate) filter: &'f Filter,
    pub(crate) paths: Vec<(State, bool)>,
    /// `Some(None)`: the filter names an endpoint the store does not know (nothing matches).
    pub(crate) endpoint: Option<Option<i64>>,
    /// With `--tenant`: the names of the tenant's endpoints, each between two U+001F (names
    /// cannot hold it; `ops` resolves them from the config file and the database).
    pub(crate) tenant_endpoints: Option<String>,
    pub(crate) now: i64,
}

impl<'f> Query<'f> {
    /// `filter` over `states` (already checked against what the command allows), with its
    /// endpoint resolved by the store.
    pub(crate) fn new(
        filter: &'f Filter,
        states: &[StateName],
        endpoint: Option<Option<i64>>,
        now: i64,
    ) -> Query<'f> {
        let mut paths: Vec<(State, bool)> = Vec::new();
        let pending_all = states.contains(&StateName::Pending);
        for s in states {
            let path = match s {
                StateName::Pending => (State::Pending, false),
                StateName::Scheduled if pending_all => continue,
                StateName::Scheduled => (State::Pending, true),
                StateName::InFlight => (State::InFlight, false),
                StateName::Waiting => (State::Waiting, false),
                StateName::Delivered => (State::Delivered, false),
                StateName::Dead => (State::Dead, false),
                StateName::Cancelled => (State::Cancelled, false),
            };
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        Query {
            filter,
            paths,
            endpoint,
            tenant_endpoints: None,
            now,
        }
    }

    /// Whether nothing can match (an endpoint the store has never seen).
    pub(crate) fn is_void(&self) -> bool {
        matches!(self.endpoint, Some(None)) || self.paths.is_empty()
    }
}

/// A daemon running on the store, as its registry shows it (SQLite: the one holding the lock,
/// known by its pid only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaemonInfo {
    /// Its instance id (the owner of its claims); PostgreSQL only.
    pub(crate) instance: Option<i64>,
    pub(crate) host: String,
    pub(crate) pid: Option<u32>,
    pub(crate) started_at: Option<i64>,
    /// When it last said it was alive; PostgreSQL only.
    pub(crate) seen_at: Option<i64>,
}

/// Who opens the database, which decides durability and whether it may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A CLI command that stores messages (enqueue): creates the file if missing,
    /// `synchronous=FULL`.
    Write,
    /// A CLI command that changes messages already stored (cancel, replay, dlq retry/delete,
    /// endpoints enable): the database must exist (a mistyped `--db` must not create one),
    /// `synchronous=FULL`.
    Modify,
    /// A CLI command that only reads: the file must exist and be a webhookd database of the
    /// current schema; nothing is created, migrated or written (`query_only`).
    Read,
    /// The daemon: creates the file if missing, `synchronous=NORMAL` (see `store::sqlite`).
    Daemon,
}

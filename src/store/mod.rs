//! The queue's storage: the only module that writes SQL and names a database library.
//!
//! Three narrow interfaces, which a second backend implements as the first (`sqlite`) does:
//! - [`Queue`]: what the daemon drives: one cycle transaction (record outcomes, claim), taking
//!   over claims whose owner is gone, renewing its own leases, purging, health rows;
//! - [`Admin`]: what commands (and the API) use: enqueue, read, list, act on messages, endpoints;
//! - [`Coordination`]: how processes sharing a store find each other: the daemon's registration,
//!   wake-up notices, the backend's own maintenance.
//!
//! `open_admin`, `open_queue` and `coordination` pick the backend from the configured
//! [`Database`]; nothing outside this module knows which one it is.
//!
//! Claims are leased: a claimed message records its owner (a daemon's instance id) and a lease
//! that the owner renews while the attempt runs. Only a claim whose owner is gone is taken over:
//! at once when the backend knows it (SQLite: the daemon that holds the lock knows the previous
//! one is dead), else when its lease has expired.

pub(crate) mod copy;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod transfer;
mod types;

use std::time::Duration;

use crossbeam_channel::Sender;
use uuid::Uuid;

use crate::config::Database;
use crate::error::Result;
use crate::filter::{Filter, StateName};
use crate::message::Message;
use crate::model::{Health, State};

pub(crate) use types::{
    parse_uuid, Access, Action, Attempt, Claimed, Counts, Cycle, DaemonInfo, DefinedRow,
    Definition, Done, EndpointRow, Enqueued, EventRecord, EventStored, EventView, Found, Lane,
    MessageView, Outcome, OutcomeKind, Pending, Query, RetryEdit,
};

/// How long a claim stays its owner's without a renewal: after that another daemon may take it
/// over. A trade-off: a longer lease delays the takeover of a dead daemon's messages, a shorter one
/// risks duplicates when a live daemon is slow to renew. Renewed every third of it.
pub(crate) const LEASE: Duration = crate::config::database::DEFAULT_LEASE;

/// What the daemon drives.
pub(crate) trait Queue: Send {
    /// One unit of the dispatcher's work, in one transaction: records outcomes (promoting lanes),
    /// releases unstarted jobs, saves endpoint health, takes enable requests, claims due messages
    /// (owned by this daemon, leased until `now + LEASE`).
    ///
    /// # Errors
    /// `Db`/`Busy`; nothing changes then.
    fn cycle(&mut self, c: &Cycle<'_>, now: i64) -> Result<Claimed>;

    /// Makes the claims of daemons that are gone pending again (due `now`, no attempt spent);
    /// those an operator cancelled meanwhile become cancelled. Returns how many were requeued.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn take_over(&mut self, now: i64) -> Result<usize>;

    /// Gives up this daemon's own claims: their requests were abandoned at shutdown (an answer
    /// that still comes is not recorded). Pending again, due `now`, no attempt spent; cancelled
    /// if an operator asked. Returns how many were requeued.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn abandon(&mut self, now: i64) -> Result<usize>;

    /// Extends this daemon's leases to `until`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn renew(&mut self, until: i64) -> Result<usize>;

    /// Deletes up to `limit` messages delivered or cancelled before `before`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn purge(&mut self, before: i64, limit: usize) -> Result<usize>;

    /// The earliest due time of endpoint `id`'s pending messages (0: plain URLs).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn next_due(&self, endpoint: i64) -> Result<Option<i64>>;

    /// Messages per state, in constant time.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn totals(&self) -> Result<Counts>;

    /// Every endpoint's saved health, by name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn endpoint_health(&self) -> Result<Vec<(String, Health)>>;

    /// Makes sure every name has a row (and so an id).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn ensure_endpoints(&mut self, names: &[String]) -> Result<()>;

    /// The saved health of the endpoints (and origins) made after endpoint `id`: those that
    /// commands and posted messages added since the daemon last looked.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn endpoint_health_after(&self, id: i64) -> Result<Vec<(String, Health)>>;

    /// How many jobs per worker the dispatcher may hold claimed (in flight or waiting for a
    /// worker). A cycle on a local file takes microseconds: two per worker keep the workers
    /// busy. A cycle on a database server takes milliseconds of round trips, during which the
    /// workers would run dry: claim further ahead.
    fn claims_per_worker(&self) -> usize {
        2
    }

    /// The endpoints whose shared state (breaker, disabled) another daemon or an operator
    /// changed: saved health above generation `after` (see `Health::gen`). A store with one
    /// daemon shares nothing: none.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn health_changes(&self, after: i64) -> Result<Vec<Health>> {
        let _ = after;
        Ok(Vec::new())
    }

    /// Whether another process committed since the last call (new messages, an operator's action).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn changed(&mut self) -> Result<bool>;

    /// The endpoints with pending messages and the earliest due time of each: among every
    /// message (`None`), or among those committed after seq `after` (cheap: the new ones).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn pending_endpoints(&self, after: Option<i64>) -> Result<Pending>;

    /// Endpoints with a definition or paused.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn definitions(&self) -> Result<Vec<DefinedRow>>;

    /// The rows of the endpoints changed after `generation` (definition, secrets or pause; a
    /// removed endpoint's row has no definition): read the generation first, then these.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn definitions_since(&self, generation: i64) -> Result<Vec<DefinedRow>>;

    /// How many times definitions and pauses have changed (compare, do not interpret).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn generation(&self) -> Result<i64>;
}

/// Stores messages, all or none (dropping it without `commit` stores nothing).
pub(crate) trait Inserter {
    /// Stores one validated message due at `now + delay`; with a known idempotency key, stores
    /// nothing and returns the first message's uuid.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn insert(&mut self, m: &Message, now: i64) -> Result<Enqueued>;

    /// Stores an event before its deliveries (or finds the one its key names, per tenant).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn event(&mut self, e: &EventRecord, now: i64) -> Result<EventStored>;

    /// Commits every insert durably.
    ///
    /// # Errors
    /// `Db`/`Busy`; nothing is stored then.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// What commands (and the API) use.
pub(crate) trait Admin: Send {
    /// Starts storing messages.
    ///
    /// # Errors
    /// `Busy` when another writer holds the store beyond the busy timeout, `Db` otherwise.
    fn inserter(&mut self) -> Result<Box<dyn Inserter + '_>>;

    /// Everything about the message `uuid`, with its body and attempts.
    ///
    /// # Errors
    /// `NoSuchMessage`, `Db`/`Busy`.
    fn view(&self, uuid: &Uuid) -> Result<MessageView>;

    /// The message `seq` without its body and attempts; `None` if it is gone.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn summary(&self, seq: i64) -> Result<Option<MessageView>>;

    /// Reads what follows from one consistent snapshot.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn snapshot(&self) -> Result<()>;

    /// Ends the snapshot `snapshot` began (a kept connection must not hold one).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn end_snapshot(&self) -> Result<()>;

    /// Resolves `filter` over `states`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn query<'f>(&self, filter: &'f Filter, states: &[StateName], now: i64) -> Result<Query<'f>>;

    /// Up to `limit` messages of `q`, newest first, older than `cursor`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn find(&self, q: &Query<'_>, cursor: Option<Uuid>, limit: usize) -> Result<Vec<Found>>;

    /// Applies `action` to the named messages, all or none.
    ///
    /// # Errors
    /// `NoSuchMessage`, `NotDead`/`WrongState`, `InvalidInput`; nothing changes then.
    fn act_on(&mut self, action: Action<'_>, uuids: &[Uuid], now: i64) -> Result<Done>;

    /// Applies `action` to the next `limit` messages of `q` older than `cursor`, in one short
    /// transaction.
    ///
    /// # Errors
    /// `InvalidInput`: this batch changes nothing. `Db`/`Busy`.
    fn act_batch(
        &mut self,
        action: Action<'_>,
        q: &Query<'_>,
        cursor: Option<Uuid>,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<Found>, Done)>;

    /// The first message of `q` that goes to a named endpoint, if any.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn selects_endpoint_messages(&self, q: &Query<'_>) -> Result<Option<Uuid>>;

    /// Messages per state, with how many pending ones are due after `now`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn counts(&self, now: i64) -> Result<Counts>;

    /// Every endpoint's saved health, by name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn endpoint_health(&self) -> Result<Vec<(String, Health)>>;

    /// When the oldest pending message was created (ms), overall (name `""`) and per endpoint
    /// that has one; index seeks only.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn oldest_pending(&self) -> Result<Vec<(String, i64)>>;

    /// When the oldest pending message was created (ms), overall only: one index seek.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn oldest_pending_overall(&self) -> Result<Option<i64>>;

    /// Every known endpoint with its health and message counts.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn endpoint_rows(&self) -> Result<Vec<EndpointRow>>;

    /// The ordered lanes of endpoint `id` that have messages not yet delivered.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn lanes(&self, id: i64) -> Result<Vec<Lane>>;

    /// The id of endpoint `name`, if the store knows it.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn find_endpoint(&self, name: &str) -> Result<Option<i64>>;

    /// The last `limit` attempts of endpoint `id`'s most recently due messages, newest first,
    /// with each message's uuid and state; index ranges only.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn recent_attempts(&self, id: i64, limit: usize) -> Result<Vec<(Uuid, State, Attempt)>>;

    /// Asks for endpoint `name` to be enabled; false when the store has no such endpoint.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn request_enable(&mut self, name: &str, now: i64) -> Result<bool>;

    /// Makes sure every name has a row.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn ensure_endpoints(&mut self, names: &[String]) -> Result<()>;

    /// Endpoints with a definition or paused.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn definitions(&self) -> Result<Vec<DefinedRow>>;

    /// Endpoint `name`'s row, if the database knows the name.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn definition(&self, name: &str) -> Result<Option<DefinedRow>>;

    /// Stores a new definition (`create`) or a changed one, with its subscriptions.
    ///
    /// # Errors
    /// `EndpointExists` (create), `NoSuchEndpoint` (change), `Db`/`Busy`.
    fn define(&mut self, d: &Definition<'_>, create: bool, now: i64) -> Result<()>;

    /// Removes a definition; queued messages refuse it, or are cancelled with `cancel_pending`
    /// (how many is returned).
    ///
    /// # Errors
    /// `NoSuchEndpoint`, `EndpointBusy`, `Db`/`Busy`.
    fn undefine(&mut self, name: &str, cancel_pending: bool, now: i64) -> Result<u64>;

    /// Pauses or resumes an endpoint (any: defined, configured, or a name not yet known).
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn set_paused(&mut self, name: &str, paused: bool) -> Result<()>;

    /// The endpoints managed at runtime, not paused, of `tenant` (`""`: none) that subscribe with
    /// one of `patterns`.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn subscribers(&self, tenant: &str, patterns: &[String]) -> Result<Vec<String>>;

    /// Event `id` and its deliveries, if it is stored.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn event_view(&self, id: &Uuid) -> Result<Option<EventView>>;

    /// The daemons running on the store.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    fn daemons(&self) -> Result<Vec<DaemonInfo>>;

    /// Replaces a defined endpoint's sealed secrets.
    ///
    /// # Errors
    /// `NoSuchEndpoint`, `Db`/`Busy`.
    fn set_secrets(&mut self, name: &str, sealed: &[u8], now: i64) -> Result<()>;
}

/// What a running daemon is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// New messages: claim.
    Messages,
    /// An operator made stored messages due again (retry, replay): claim.
    Requeued,
    /// An operator enabled an endpoint: read the requests.
    Endpoints,
}

/// Whether a daemon runs on a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DaemonState {
    Running { pid: Option<u32> },
    Stopped,
}

/// What a store's location holds, as far as a read-only command can tell without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Nothing there yet.
    Missing,
    /// There, but empty: not yet a webhookd store.
    Empty,
    /// A webhookd store.
    Ready,
}

/// A daemon's registration on a store; dropping it unregisters (SQLite: the lock is released).
pub(crate) trait Registration: Send {}

/// Something running in the background for a daemon; `stop` ends it and joins its thread.
pub(crate) trait Background: Send {
    fn stop(self: Box<Self>);

    /// For a listener: whether wake-up notices can arrive at all (`false`: only polling finds
    /// what other processes commit).
    fn hears(&self) -> bool {
        true
    }
}

/// How processes sharing a store find each other.
pub(crate) trait Coordination: Send + Sync {
    /// Registers this process as a daemon of the store, with its instance id `owner`.
    ///
    /// # Errors
    /// `AlreadyRunning` when the backend allows one daemon and another runs; `Lock` on I/O errors;
    /// the store's errors.
    fn register_daemon(&self, owner: i64) -> Result<Box<dyn Registration>>;

    /// Whether a daemon runs, never trusting a stale pid.
    fn daemon(&self) -> DaemonState;

    /// Whether the store exists, without creating or changing anything.
    fn presence(&self) -> Presence;

    /// Tells a running daemon about a change. Best effort: the daemon also polls.
    fn notify(&self, notice: Notice);

    /// Starts receiving notices, forwarded to `tx` (for the daemon).
    ///
    /// # Errors
    /// `Spawn`.
    fn listen(&self, tx: Sender<Notice>) -> Result<Box<dyn Background>>;

    /// Starts the backend's background maintenance (SQLite: WAL checkpoints).
    ///
    /// # Errors
    /// The store's errors, `Spawn`.
    fn maintain(&self) -> Result<Box<dyn Background>>;
}

/// This machine's name, as the daemons' registry shows it.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Creates or upgrades the store's schema; the version it is at now.
///
/// # Errors
/// As the backend's open.
pub(crate) fn migrate(db: &Database) -> Result<i64> {
    open_admin(db, Access::Write)?;
    Ok(match db {
        Database::Sqlite(_) => sqlite::SCHEMA_VERSION,
        Database::Postgres(_) => postgres::SCHEMA_VERSION,
    })
}

/// Opens the store for a command.
///
/// # Errors
/// As the backend's open (`NoDatabase`, `NotOurDb`, `NewerSchema`, `OldSchema`, ...).
pub(crate) fn open_admin(db: &Database, access: Access) -> Result<Box<dyn Admin>> {
    match db {
        Database::Sqlite(path) => Ok(Box::new(sqlite::Store::open(path, access)?)),
        Database::Postgres(pg) => Ok(Box::new(postgres::Store::open(pg, access)?)),
    }
}

/// Opens the store for the daemon whose instance id is `owner`.
///
/// # Errors
/// As the backend's open.
pub(crate) fn open_queue(db: &Database, owner: i64) -> Result<Box<dyn Queue>> {
    match db {
        Database::Sqlite(path) => {
            let mut store = sqlite::Store::open(path, Access::Daemon)?;
            store.set_owner(owner);
            Ok(Box::new(store))
        }
        Database::Postgres(pg) => {
            let mut store = postgres::Store::open(pg, Access::Daemon)?;
            store.set_owner(owner);
            Ok(Box::new(store))
        }
    }
}

/// How processes share the store at `db`.
pub(crate) fn coordination(db: &Database) -> Box<dyn Coordination> {
    match db {
        Database::Sqlite(path) => Box::new(sqlite::coord::Files::new(path)),
        Database::Postgres(pg) => Box::new(postgres::coord::Shared::new(pg)),
    }
}

//! Schema identity and numbered migrations under `PRAGMA user_version`.
//!
//! A webhookd database carries `application_id` 0x77686B64 ("whkd"). A file with another id, or
//! with tables but no id, belongs to someone else and is refused before anything is written. A
//! `user_version` above `MIGRATIONS.len()` comes from a newer webhookd and is refused too.
//!
//! Tables: `messages` holds the small, hot per-message state (one row rewritten per attempt);
//! `payloads` holds the request (method, URL, headers, body), written once and read at each claim, so
//! state updates never rewrite bodies; `attempts` holds one row per HTTP attempt. `due_at` means:
//! pending: time of the next attempt; in_flight: when claimed; delivered: when delivered; dead: when
//! it died. One index on `(state, due_at)` therefore serves claims, retention purges and the DLQ.
//! `counts` holds, kept exact by triggers on `messages`, the number of messages that are pending or
//! in flight (row 0), delivered (2) and dead (3); row 1 stays 0.

use rusqlite::OptionalExtension;

use super::Store;
use crate::error::{Error, Result};

const APPLICATION_ID: i64 = 0x7768_6B64;

/// Migration N (1-based) brings the schema from `user_version` N-1 to N. Append only.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE messages (
        seq            INTEGER PRIMARY KEY,
        uuid           BLOB NOT NULL UNIQUE,
        idem_key       TEXT,
        state          INTEGER NOT NULL,
        due_at         INTEGER NOT NULL,
        created_at     INTEGER NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        attempts_total INTEGER NOT NULL DEFAULT 0,
        max_attempts   INTEGER,
        delivered_at   INTEGER,
        retried_at     INTEGER,
        dead_at        INTEGER,
        last_error     TEXT
    );
    CREATE INDEX messages_due ON messages(state, due_at);
    CREATE UNIQUE INDEX messages_key ON messages(idem_key) WHERE idem_key IS NOT NULL;
    CREATE TABLE payloads (
        seq     INTEGER PRIMARY KEY,
        method  TEXT NOT NULL,
        url     TEXT NOT NULL,
        headers TEXT NOT NULL,
        body    BLOB NOT NULL
    );
    CREATE TABLE attempts (
        seq         INTEGER NOT NULL,
        n           INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        status      INTEGER,
        error       TEXT,
        response    BLOB,
        PRIMARY KEY (seq, n)
    ) WITHOUT ROWID;",
    // 2: per-state counts kept by triggers, so `status` and the daemon's STATUS= line are O(1)
    // instead of a scan of the state index (1m39s for 10 M rows on a cold cache).
    "CREATE TABLE counts (state INTEGER PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counts (state, n)
        SELECT s.value, (SELECT count(*) FROM messages WHERE state = s.value)
        FROM (SELECT 0 AS value UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) s;
    CREATE TRIGGER counts_insert AFTER INSERT ON messages BEGIN
        UPDATE counts SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TRIGGER counts_delete AFTER DELETE ON messages BEGIN
        UPDATE counts SET n = n - 1 WHERE state = OLD.state;
    END;
    CREATE TRIGGER counts_update AFTER UPDATE OF state ON messages
        WHEN OLD.state != NEW.state BEGIN
        UPDATE counts SET n = n - 1 WHERE state = OLD.state;
        UPDATE counts SET n = n + 1 WHERE state = NEW.state;
    END;",
    // 3: the counts of migration 2 cost two UPDATEs on every claim, on the writer's hot path
    // (drain 45k -> 41k/s). Row 0 now counts pending and in-flight messages together, so a claim,
    // a retry and a requeue (0 <-> 1) fire nothing; the in-flight number is read from the state
    // index, where it is at most the daemon's claim capacity.
    "DROP TRIGGER counts_insert;
    DROP TRIGGER counts_delete;
    DROP TRIGGER counts_update;
    UPDATE counts SET n = (SELECT count(*) FROM messages WHERE state IN (0, 1)) WHERE state = 0;
    UPDATE counts SET n = 0 WHERE state = 1;
    CREATE TRIGGER counts_insert AFTER INSERT ON messages BEGIN
        UPDATE counts SET n = n + 1 WHERE state = (NEW.state > 1) * NEW.state;
    END;
    CREATE TRIGGER counts_delete AFTER DELETE ON messages BEGIN
        UPDATE counts SET n = n - 1 WHERE state = (OLD.state > 1) * OLD.state;
    END;
    CREATE TRIGGER counts_update AFTER UPDATE OF state ON messages
        WHEN OLD.state != NEW.state AND (OLD.state > 1 OR NEW.state > 1) BEGIN
        UPDATE counts SET n = n - 1 WHERE state = (OLD.state > 1) * OLD.state;
        UPDATE counts SET n = n + 1 WHERE state = (NEW.state > 1) * NEW.state;
    END;",
    // 4: named endpoints and ordered lanes. `messages.endpoint` is an `endpoints.id` (0: a plain
    // URL, whose payload holds the full URL; else the payload holds the path appended to the
    // endpoint's URL at delivery). The state index gains the endpoint so that each endpoint is
    // claimed on its own range (an endpoint held back by its breaker or limits is never scanned
    // past). State 4 is a message waiting behind an earlier one of its ordered `lane`; only a
    // lane's head is ever pending. It counts as pending.
    "CREATE TABLE endpoints (
        id               INTEGER PRIMARY KEY,
        name             TEXT NOT NULL UNIQUE,
        state            INTEGER NOT NULL DEFAULT 0,
        failures         INTEGER NOT NULL DEFAULT 0,
        failing_since    INTEGER,
        last_success_at  INTEGER,
        last_error       TEXT,
        last_error_at    INTEGER,
        changed_at       INTEGER,
        reason           TEXT,
        enable_requested INTEGER NOT NULL DEFAULT 0
    );
    ALTER TABLE messages ADD COLUMN endpoint INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN lane TEXT;
    DROP INDEX messages_due;
    CREATE INDEX messages_due ON messages(state, endpoint, due_at);
    CREATE INDEX messages_lane ON messages(lane, seq) WHERE lane IS NOT NULL AND state != 2;
    DROP TRIGGER counts_insert;
    DROP TRIGGER counts_delete;
    DROP TRIGGER counts_update;
    CREATE TRIGGER counts_insert AFTER INSERT ON messages BEGIN
        UPDATE counts SET n = n + 1 WHERE state = (NEW.state IN (2, 3)) * NEW.state;
    END;
    CREATE TRIGGER counts_delete AFTER DELETE ON messages BEGIN
        UPDATE counts SET n = n - 1 WHERE state = (OLD.state IN (2, 3)) * OLD.state;
    END;
    CREATE TRIGGER counts_update AFTER UPDATE OF state ON messages
        WHEN OLD.state != NEW.state AND (OLD.state IN (2, 3) OR NEW.state IN (2, 3)) BEGIN
        UPDATE counts SET n = n - 1 WHERE state = (OLD.state IN (2, 3)) * OLD.state;
        UPDATE counts SET n = n + 1 WHERE state = (NEW.state IN (2, 3)) * NEW.state;
    END;",
    // 5: operator control of every message. State 5 is cancelled (kept like delivered ones until
    // retention purges it; `due_at` is when it was cancelled); `cancel_requested` marks an
    // in-flight message to be cancelled when its attempt ends; `replayed_at` records a replay.
    // Two partial indexes serve `list` newest first (the UUIDv7 order) for the states an operator
    // looks for (pending, dead, waiting, cancelled): in-flight rows are few (the daemon's claim
    // capacity) and delivered ones are the bulk, so neither is indexed here; a claim only
    // removes an entry and a delivery touches none.
    "ALTER TABLE messages ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN cancelled_at INTEGER;
    ALTER TABLE messages ADD COLUMN replayed_at INTEGER;
    CREATE INDEX messages_live ON messages(state, uuid) WHERE state NOT IN (1, 2);
    CREATE INDEX messages_live_endpoint ON messages(endpoint, state, uuid)
        WHERE state NOT IN (1, 2) AND endpoint != 0;
    INSERT INTO counts (state, n) VALUES (5, 0);
    DROP TRIGGER counts_insert;
    DROP TRIGGER counts_delete;
    DROP TRIGGER counts_update;
    CREATE TRIGGER counts_insert AFTER INSERT ON messages BEGIN
        UPDATE counts SET n = n + 1 WHERE state = (NEW.state IN (2, 3, 5)) * NEW.state;
    END;
    CREATE TRIGGER counts_delete AFTER DELETE ON messages BEGIN
        UPDATE counts SET n = n - 1 WHERE state = (OLD.state IN (2, 3, 5)) * OLD.state;
    END;
    CREATE TRIGGER counts_update AFTER UPDATE OF state ON messages
        WHEN OLD.state != NEW.state AND (OLD.state IN (2, 3, 5) OR NEW.state IN (2, 3, 5)) BEGIN
        UPDATE counts SET n = n - 1 WHERE state = (OLD.state IN (2, 3, 5)) * OLD.state;
        UPDATE counts SET n = n + 1 WHERE state = (NEW.state IN (2, 3, 5)) * NEW.state;
    END;",
    // 6: leased claims. A claim records its owner (a daemon's instance id) and how long it holds
    // the message; the owner renews the lease while the attempt runs. Another daemon takes over a
    // claim only when its owner is known to be gone (SQLite: the lock) or its lease has ended.
    // Both are cleared when the attempt's outcome is recorded.
    "ALTER TABLE messages ADD COLUMN owner INTEGER;
    ALTER TABLE messages ADD COLUMN lease_until INTEGER;",
    // 7: endpoints managed at runtime. `definition` is the endpoint's settings as JSON (NULL: a
    // config-file endpoint, or a name only seen on messages); `secrets` its signing secrets,
    // sealed (see endpoint::secrets); `paused` holds its messages (any endpoint). `tenant` and
    // the `subscriptions` (one row per event pattern) are what fan-out matches on.
    // `generations` counts changes to definitions and pauses, so that a daemon learns of one
    // with a single read.
    "ALTER TABLE endpoints ADD COLUMN definition TEXT;
    ALTER TABLE endpoints ADD COLUMN tenant TEXT;
    ALTER TABLE endpoints ADD COLUMN secrets BLOB;
    ALTER TABLE endpoints ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE endpoints ADD COLUMN defined_at INTEGER;
    ALTER TABLE endpoints ADD COLUMN updated_at INTEGER;
    CREATE TABLE subscriptions (
        tenant   TEXT NOT NULL,
        pattern  TEXT NOT NULL,
        endpoint INTEGER NOT NULL,
        PRIMARY KEY (tenant, pattern, endpoint)
    ) WITHOUT ROWID;
    CREATE INDEX subscriptions_endpoint ON subscriptions(endpoint);
    CREATE TABLE generations (what TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO generations (what, n) VALUES ('endpoints', 0);",
    // 8: events and fan-out. An event (`enqueue --event`, POST /v1/events) is delivered as one
    // message per subscribed endpoint; each message's `event` is the event's uuid, sent as their
    // common webhook-id. An event's key is idempotent per tenant ('' for none).
    "CREATE TABLE events (
        seq        INTEGER PRIMARY KEY,
        uuid       BLOB NOT NULL UNIQUE,
        tenant     TEXT NOT NULL,
        type       TEXT NOT NULL,
        idem_key   TEXT,
        created_at INTEGER NOT NULL,
        deliveries INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX events_key ON events(tenant, idem_key) WHERE idem_key IS NOT NULL;
    CREATE INDEX events_type ON events(type);
    ALTER TABLE messages ADD COLUMN event BLOB;
    CREATE INDEX messages_event ON messages(event) WHERE event IS NOT NULL;",
    // 9: the generation at which each endpoint's definition, secrets or pause last changed, so
    // that a daemon reads only the rows changed since the generation it holds, not all of them.
    "ALTER TABLE endpoints ADD COLUMN changed_gen INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX endpoints_changed_gen ON endpoints(changed_gen) WHERE changed_gen > 0;",
];

/// The schema version this binary writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What a database file holds, as far as webhookd is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Identity {
    /// A new, empty database (no tables, no application id).
    Empty,
    /// A webhookd database at this schema version (at most `SCHEMA_VERSION`).
    Ours { version: i64 },
}

/// Refuses databases that belong to another application, reading only. The three values are
/// read in one read transaction: a process creating the database meanwhile is seen either not at
/// all or complete.
///
/// # Errors
/// `NotOurDb`, `NewerSchema`, `Busy`, or `Db` when the file cannot be read (e.g. it is not SQLite).
pub(super) fn check_identity(store: &Store) -> Result<Identity> {
    let not_ours = |reason: &str| Error::NotOurDb {
        path: store.path.clone(),
        reason: reason.into(),
    };
    let read = || -> rusqlite::Result<(i64, i64, i64)> {
        store.conn.execute_batch("BEGIN DEFERRED")?;
        let values = store.conn.query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT count(*) FROM sqlite_schema),
                    (SELECT user_version FROM pragma_user_version)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        );
        store.conn.execute_batch("COMMIT")?;
        values
    };
    let (app_id, tables, version) = read().map_err(|e| {
        let _ = store.conn.execute_batch("ROLLBACK");
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => not_ours("not an SQLite database"),
            _ => store.err("read the schema", e),
        }
    })?;
    if app_id == 0 && tables == 0 {
        return Ok(Identity::Empty);
    }
    if app_id != APPLICATION_ID {
        return Err(not_ours(&format!(
            "SQLite application_id is {app_id:#x}, not webhookd's"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path: store.path.clone(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Identity::Ours { version })
}

fn user_version(store: &Store) -> Result<i64> {
    store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| store.err("read user_version", e))
}

/// Applies pending migrations, each in its own IMMEDIATE transaction with the version bump.
///
/// # Errors
/// `NewerSchema` if another process migrated past us meanwhile, `Db`/`Busy` on SQLite errors.
pub(super) fn migrate(store: &mut Store) -> Result<()> {
    if user_version(store)? == SCHEMA_VERSION {
        return Ok(());
    }
    let path = store.path.clone();
    let tx = store
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| Error::Db {
            path: path.clone(),
            op: "begin migration",
            source: e.into(),
        })?;
    let db_err = |op: &'static str| {
        let path = path.clone();
        move |source: rusqlite::Error| Error::Db {
            path: path.clone(),
            op,
            source: source.into(),
        }
    };
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()
        .map_err(db_err("read user_version"))?
        .unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path,
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(db_err("migrate"))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(db_err("set user_version"))?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(db_err("set application_id"))?;
    tx.commit().map_err(db_err("commit migration"))
}

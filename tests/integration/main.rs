//! Integration tests: the real `webhookd` binary against real HTTP receivers on 127.0.0.1 and real
//! SQLite files, one directory, port and database per test.

mod util;

/// The HTTP API on its Unix socket: every route, errors as problems, bounds, group commit.
mod api;
/// The operator's actions over the API: cancel, dlq retry/delete, replay.
mod api_act;
/// The HTTP API over TCP: tokens with scopes, TLS, refused listeners.
mod api_tcp;
/// `webhookd copy`: an SQLite queue copied into PostgreSQL.
mod copy;
/// Endpoints managed at runtime: CLI and API, sealed secrets, rotation, pause, removal.
mod defined;
/// Delivery: bodies and headers intact, webhook-id/timestamp, many messages, delays, keys.
mod delivery;
/// The dead-letter queue: list, show, retry (with edits), delete.
mod dlq;
/// The egress guard: denied ranges at enqueue and at connect, allow, allow_private, DNS
/// rebinding, an explicit proxy (and none from the environment).
mod egress;
/// Named endpoints: signing, concurrency, rate, breaker, 410, alerts, ordering, reload.
mod endpoints;
/// Bad input is refused with one line and nothing stored; --jsonl all-or-nothing.
mod input;
/// Daemon life: status, one daemon per DB, SIGTERM drain, sd-notify, crash safety, retention.
mod lifecycle;
/// Mutual TLS per endpoint: its own client certificate and CA file, never another's connection.
mod mtls;
/// An operator's control of every message: list, cancel, bulk DLQ actions, replay, capture.
mod operator;
/// Plain URLs grouped by origin: a hanging or failing host cannot hold the workers.
mod origins;
/// Regressions of issue 12 (a new user's findings), named `r12_*` after their item.
mod regressions;
/// Failure handling: exact attempt counts, backoff, Retry-After, 410, redirects, hangs, huge bodies.
mod retries;
/// Several daemons on one PostgreSQL queue: each message once, takeover after the lease, a
/// database restart and outage.
mod scale;
/// Under a supervisor: watchdog pings and their stop when wedged, STATUS=, SIGHUP reload, worker
/// panics.
mod supervision;
/// HTTPS receivers: system CAs, `http.ca_file`.
mod tls;
/// The dashboard: assets, logins, sessions, CSRF; the stats it draws. The pages: tests/browser/run.
mod ui;

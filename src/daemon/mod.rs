//! `webhookd run`: the delivery daemon. The only module that touches signals (`signals`) and
//! sd-notify (`systemd`).
//!
//! Threads: the main thread is the dispatcher (`dispatcher`), the only writer of outcomes; N
//! workers make HTTP requests (`deliver::pool`); `webhookd-signals` turns SIGTERM/SIGINT/SIGHUP
//! into messages; the store's coordination receives the wake-up notices commands send after they
//! commit (SQLite: `webhookd-wake` on `<db>.sock`) and runs its maintenance (SQLite:
//! `webhookd-checkpoint`); `webhookd-alerts` posts alerts, so that a slow alert receiver never
//! delays deliveries.
//!
//! Start-up: check the HTTP settings, open and migrate the store, register as its daemon (SQLite:
//! the lock; one daemon per file), take over the claims of daemons that are gone (their messages
//! pending again, no attempt spent), start the workers, then `READY=1`.
//!
//! Shutdown (SIGTERM/SIGINT): `STOPPING=1`; stop claiming; give back the claimed jobs no worker
//! has started; wait for the requests in flight and record their outcomes, for at most
//! `shutdown_timeout`: requests still open then are abandoned (their messages pending again at
//! once, said in one warning). Queued alerts get what is left of that time (at least
//! `ALERT_GRACE`); every other thread is joined; exit 0.
//!
//! systemd: `STATUS=` every few seconds (in flight, pending, dead, delivered in the last minute,
//! from counters and the trigger-kept counts, never a scan). With `WATCHDOG_USEC` set, the
//! dispatcher sends `WATCHDOG=1` every quarter of it, and only while it is healthy: its loop
//! turns and no worker has been on one request longer than `http.timeout` plus a margin.
//! SIGHUP: `RELOADING=1` + `MONOTONIC_USEC`, re-read the config, apply what can change live
//! (`reload`), `READY=1`; a config that fails to load is logged and the running one stays.

mod decide;
mod defined;
mod dispatcher;
mod drain;
mod look;
mod posts;
mod reload;
mod report;
mod signals;
mod systemd;
mod texts;
mod wait;

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use log::LevelFilter;

use crate::alert::Alerter;
use crate::api::Api;
use crate::config::Config;
use crate::counters::{Counters, Latencies, Published};
use crate::deliver::endpoints::Endpoints;
use crate::deliver::http::Http;
use crate::deliver::pool::Pool;
use crate::deliver::{Finished, Task};
use crate::error::Result;
use crate::store::{self, Notice, Queue};
use dispatcher::Dispatcher;
use signals::SignalThread;
use systemd::{Watchdog, Window};

/// Re-reads the configuration on SIGHUP: the new config and the log level it implies.
pub(crate) type Reload<'a> = &'a dyn Fn() -> Result<(Config, LevelFilter)>;

/// What the signal thread tells the dispatcher.
#[derive(Debug)]
pub(super) enum Control {
    Stop(&'static str),
    Reload,
}

/// How long joining the workers may take when none was abandoned: they return as soon as the
/// job channel is closed and empty.
const JOIN_GRACE: Duration = Duration::from_secs(2);
/// How long queued alerts may still take when the drain used the whole `shutdown_timeout`.
const ALERT_GRACE: Duration = Duration::from_secs(2);

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up failures only: a bad HTTP setting, the store cannot be opened or migrated, another
/// daemon runs on it, or threads cannot be started. Per-message failures are recorded, never
/// returned.
pub(crate) fn run(config: &Config, reload: Reload<'_>) -> Result<()> {
    // First: a bad http.ca_file is a configuration error, found before anything is opened.
    let http = Http::new(&config.http, &config.egress, config.workers)?;
    let coordination = store::coordination(&config.db);
    // Open (creating and migrating) before registering, so that a store that is not ours is
    // refused without leaving a lock file beside it.
    let owner = fastrand::i64(1..);
    let mut queue = store::open_queue(&config.db, owner)?;
    let _registration = coordination.register_daemon(owner)?;
    let requeued = queue.take_over(crate::time::now_ms())?;
    if requeued > 0 {
        log::warn!(
            "{} in flight when the previous daemon stopped: pending again, attempted at once",
            crate::text::count(requeued as u64, "message"),
        );
    }
    let (merged, generation) =
        defined::load_defined(queue.as_ref(), config, crate::time::now_ms())?;
    let mut config = config.clone();
    config.endpoints = merged.endpoints;
    let config = &config;
    let names: Vec<String> = config.endpoints.keys().cloned().collect();
    queue.ensure_endpoints(&names)?;
    let mut endpoints = Endpoints::new(
        queue.endpoint_health()?,
        &config.endpoints,
        config.workers,
        crate::time::now_ms(),
    );
    endpoints.set_origin_policy(&config.origins);
    // What is pending where: the first turns claim from those endpoints only.
    let pending = queue.pending_endpoints(None)?;
    endpoints.begin(&pending.rows);
    warn_unconfigured(queue.as_ref(), &endpoints);
    for w in config.egress_warnings() {
        log::warn!("{w}");
    }
    let alerter = Alerter::start(config.alerts.clone(), &config.http, &config.egress)?;

    let (control_tx, control_rx) = unbounded();
    let signals = SignalThread::start(control_tx)?;
    let (notice_tx, notice_rx) = unbounded::<Notice>();
    let listener = coordination.listen(notice_tx.clone())?;
    let published = Published::default();
    let latencies = Latencies::default();
    let (api, posts) = Api::start(config, published.clone(), &latencies, notice_tx)?;
    let maintenance = coordination.maintain()?;

    // Unbounded: the dispatcher itself never has more than `capacity` jobs unfinished.
    let (jobs_tx, jobs_rx) = unbounded::<Task>();
    let (done_tx, done_rx) = unbounded::<Finished>();
    let pool = Pool::start(config.workers, http, (&jobs_tx, &jobs_rx), &done_tx)?;
    drop(done_tx);

    log::info!(
        "webhookd {} started: db {}, config {}, {} workers",
        env!("WEBHOOKD_VERSION"),
        config.db,
        config
            .source
            .as_ref()
            .map_or_else(|| "(built-in defaults)".into(), |p| p.display().to_string()),
        config.workers
    );
    let watchdog = Watchdog::from_env();
    systemd::ready();
    api.ready();

    let capacity = config.workers * queue.claims_per_worker();
    let mut dispatcher = Dispatcher {
        queue,
        pool,
        config: config.clone(),
        capacity,
        watchdog,
        window: Window::new(),
        in_flight: 0,
        lanes_in_flight: 0,
        endpoints,
        alerter,
        take_enables: false,
        finished: Vec::new(),
        counters: Counters::default(),
        published,
        latencies,
        api_config: api.config_handle(),
        intake: Vec::new(),
        logged: crate::counters::Totals::default(),
        generation,
        next_expiry: merged.next_expiry,
        seen_seq: pending.seen,
        api_stale: false,
        hears_notices: listener.hears(),
    };
    dispatcher.report_status();
    dispatcher.watchdog.ping();
    let reason = dispatcher.deliver(&jobs_tx, &done_rx, &control_rx, &notice_rx, &posts, reload);
    let stop_by = Instant::now() + dispatcher.config.shutdown_timeout;
    log::info!("{reason}: stopping; waiting for requests in flight");
    systemd::stopping();
    // Posts are refused (503) from now on; those already queued are stored by the drain's first
    // cycle, and any sent after this are answered "stopping" as they drop.
    api.stopping();
    dispatcher.intake.extend(posts.try_iter());
    drop(posts);
    let drained = dispatcher.drain(jobs_tx, &jobs_rx, &done_rx, stop_by);
    api.stop(&dispatcher.config);
    let grace = if drained.abandoned > 0 {
        Duration::ZERO
    } else {
        JOIN_GRACE
    };
    let busy = dispatcher.pool.join(grace);
    let abandoned = drained.abandoned.max(busy);
    if abandoned > 0 {
        log::warn!(
            "shutdown_timeout ({:?}) reached with {} still open: abandoned, {} (a receiver may see them twice)",
            dispatcher.config.shutdown_timeout,
            crate::text::count(abandoned as u64, "request"),
            if drained.requeued {
                "their messages are pending again"
            } else {
                "their messages are taken over at the next start"
            }
        );
    }
    // Alerts queued by the last outcomes go out within the shutdown's bound, or a moment after
    // it when the drain used all of it.
    dispatcher
        .alerter
        .stop(stop_by.max(Instant::now() + ALERT_GRACE));
    signals.stop();
    listener.stop();
    maintenance.stop();
    log::info!("stopped");
    Ok(())
}

/// Warns about endpoints the store knows, with messages waiting, that the config no longer has.
pub(super) fn warn_unconfigured(queue: &dyn Queue, endpoints: &Endpoints) {
    for (id, name) in endpoints.unconfigured() {
        match queue.next_due(id) {
            Ok(Some(_)) => log::warn!(
                "endpoint {name} is not in the config any more: its pending messages are held until it is added back (or deleted from the queue)"
            ),
            Ok(None) => {}
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// A worker on one request for longer than this is stuck, and the daemon stops feeding the
/// watchdog: the HTTP timeout (which the client enforces) plus half of it, at least one second
/// more.
pub(super) fn stuck_after(timeout: Duration) -> Duration {
    timeout + (timeout / 2).max(Duration::from_secs(1))
}

//! `webhookd run`: the delivery daemon. The only module that touches signals and sd-notify.
//!
//! Threads: the main thread is the dispatcher and the only writer to the database; N workers make
//! HTTP requests (deliver::pool); `webhookd-signals` turns SIGTERM/SIGINT/SIGHUP into messages;
//! `webhookd-wake` receives the datagram a CLI sends to `<db>.sock` after it commits, so new messages
//! are claimed at once instead of at the next poll.
//! `webhookd-alerts` posts alerts (alert.rs), so that a slow alert receiver never delays deliveries.
//!
//! Claims go per endpoint (endpoint 0: plain URLs), as many as `deliver::endpoints` allows each one
//! now (concurrency, rate, circuit breaker, disabled); health changes are saved in the next
//! cycle's transaction, logged at warning and alerted.
//!
//! Start-up: open + migrate the DB, take the daemon lock, requeue messages left in flight by a
//! previous crash, start the workers, then `READY=1`.
//!
//! Each turn of the dispatcher is one transaction (`Store::cycle`): record the attempts that
//! finished, then claim as many due messages as there are free slots (2 x workers: one running and
//! one queued per worker, so workers never wait for a commit).
//!
//! Shutdown (SIGTERM/SIGINT): `STOPPING=1`; stop claiming; take back the claimed jobs no worker has
//! started and make them pending again; close the job channel; wait for the requests in flight
//! (at most `shutdown_timeout`; those still open then are abandoned and their messages made
//! pending again) and record their outcomes; join every thread; exit 0.
//!
//! systemd: `STATUS=` every few seconds (in flight, pending, dead, delivered in the last minute,
//! from the trigger-kept counts, never a scan). With `WATCHDOG_USEC` set, the dispatcher sends
//! `WATCHDOG=1` every quarter of it, and only while it is healthy: its loop turns (it is the one
//! pinging) and no worker has been on one request longer than `http.timeout` plus a margin.
//! SIGHUP: `RELOADING=1` + `MONOTONIC_USEC`, re-read the config, apply what can change live
//! (workers, retry, http, retention, shutdown_timeout, log level, alert_url and alert_format,
//! endpoints), `READY=1`; a config that fails to load is logged and the running one stays.

use std::collections::VecDeque;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use log::LevelFilter;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::alert::{self, Alert, Alerter};
use crate::config::{Config, RetryPolicy};
use crate::deliver::endpoints::{Endpoints, Event};
use crate::deliver::http::Http;
use crate::deliver::pool::Pool;
use crate::deliver::{Finished, Job, Reply};
use crate::error::{Error, Result};
use crate::store::{Access, Claim, Claimed, Cycle, DaemonLock, Outcome, OutcomeKind, Store};
use crate::verdict::{self, Verdict};

/// How often the database is checked for commits by writers that did not send a wake-up.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often delivered messages past their retention are purged, and how many per transaction.
/// Small transactions keep claims from waiting behind a purge; while a backlog remains (a full
/// batch), the next one follows after `PURGE_BACKLOG_INTERVAL`, up to 20,000 messages a second.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);
const PURGE_BACKLOG_INTERVAL: Duration = Duration::from_millis(50);
const PURGE_BATCH: usize = 1_000;
/// How often the counts are logged at info.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// How often `STATUS=` is updated, and how many of those periods make up "the last minute".
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
const STATUS_WINDOW: usize = 12;
/// After a failed database write the dispatcher waits this long before trying again.
const STORE_RETRY: Duration = Duration::from_millis(250);

/// How often the checkpoint thread copies the WAL into the database, and the WAL size (pages of
/// 4 KiB) past which it also forces the WAL back to its start. Checkpointing inline, as SQLite does
/// by default, stalls whichever commit crosses the threshold for tens of milliseconds.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
const CHECKPOINT_RESTART_PAGES: i64 = 8_192;

/// What the signal and wake threads tell the dispatcher.
#[derive(Debug)]
enum Control {
    Stop(&'static str),
    Reload,
    Wake,
    /// An operator enabled an endpoint (`webhookd endpoints enable`).
    Endpoints,
}

/// Path of the wake-up socket of the database at `db`.
pub(crate) fn wake_socket_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".sock");
    db.with_file_name(name)
}

/// Tells a running daemon that new messages were committed. Best effort: without a daemon, or
/// without permission, the daemon's poll finds them anyway.
pub(crate) fn wake(db: &Path) {
    send_wake(db, b"w");
}

/// Tells a running daemon that an endpoint was enabled. Best effort: the daemon also looks every
/// `STATUS_INTERVAL`.
pub(crate) fn wake_endpoints(db: &Path) {
    send_wake(db, b"e");
}

fn send_wake(db: &Path, what: &[u8]) {
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.set_nonblocking(true);
        let _ = sock.send_to(what, wake_socket_path(db));
    }
}

/// Re-reads the configuration on SIGHUP: the new config and the log level it implies.
pub(crate) type Reload<'a> = &'a dyn Fn() -> Result<(Config, LevelFilter)>;

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up failures only: the database cannot be opened or migrated, another daemon holds the
/// lock, or threads cannot be started. Per-message failures are recorded, never returned.
pub(crate) fn run(config: &Config, reload: Reload<'_>) -> Result<()> {
    // First: a bad http.ca_file is a configuration error, found before anything is opened.
    let http = Http::new(&config.http, config.workers)?;
    let mut store = Store::open(&config.db, Access::Daemon)?;
    let _lock = DaemonLock::acquire(&config.db)?;
    let requeued = store.requeue_in_flight(crate::time::now_ms())?;
    if requeued > 0 {
        log::warn!("{requeued} messages were in flight when the previous daemon stopped; attempting them again");
    }
    store.ensure_endpoints(config.endpoints.keys())?;
    let endpoints = Endpoints::new(
        store.endpoint_health()?,
        &config.endpoints,
        config.workers,
        crate::time::now_ms(),
    );
    warn_unconfigured(&store, &endpoints);
    let alerter = Alerter::start(config.alerts.clone(), &config.http)?;

    let (control_tx, control_rx) = unbounded();
    let signals = SignalThread::start(control_tx.clone())?;
    let wake = WakeThread::start(&config.db, control_tx)?;
    let checkpointer = Checkpointer::start(&config.db)?;

    // Unbounded: the dispatcher itself never has more than `capacity` jobs unfinished.
    let (jobs_tx, jobs_rx) = unbounded::<Job>();
    let (done_tx, done_rx) = unbounded::<Finished>();
    let pool = Pool::start(config.workers, http, &jobs_rx, &done_tx)?;
    drop(done_tx);
    let watchdog = sd_notify::watchdog_enabled();

    log::info!(
        "webhookd {} started: db {}, config {}, {} workers",
        env!("WEBHOOKD_VERSION"),
        config.db.display(),
        config
            .source
            .as_ref()
            .map_or_else(|| "(built-in defaults)".into(), |p| p.display().to_string()),
        config.workers
    );
    if let Some(w) = watchdog {
        log::info!(
            "watchdog enabled: {:?}; pinging every {:?} while healthy",
            w,
            w / 4
        );
    }
    notify(&[NotifyState::Ready]);

    let mut dispatcher = Dispatcher {
        store,
        pool,
        config: config.clone(),
        capacity: config.workers * 2,
        ping_every: watchdog.map(|w| w / 4),
        last_check: Instant::now(),
        last_ping: Instant::now(),
        unhealthy: false,
        window: VecDeque::new(),
        status_delivered: 0,
        in_flight: 0,
        endpoints,
        alerter,
        take_enables: false,
        last_version: None,
        finished: Vec::new(),
        stats: Stats::default(),
    };
    dispatcher.report_status();
    dispatcher.ping();
    let reason = dispatcher.deliver(&jobs_tx, &done_rx, &control_rx, reload);
    log::info!("{reason}: stopping; waiting for requests in flight");
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    let limit = dispatcher.config.shutdown_timeout;
    dispatcher.drain(jobs_tx, &jobs_rx, &done_rx, limit);
    dispatcher.pool.join(Duration::from_secs(2));
    dispatcher.alerter.stop();
    signals.stop();
    wake.stop();
    checkpointer.stop();
    log::info!("stopped");
    Ok(())
}

fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        log::warn!("sd_notify failed: {e}");
    }
}

#[derive(Debug, Default)]
struct Stats {
    delivered: u64,
    retried: u64,
    dead: u64,
    cancelled: u64,
}

struct Dispatcher {
    store: Store,
    pool: Pool,
    /// The configuration in force (replaced on reload, except `db`).
    config: Config,
    capacity: usize,
    /// Watchdog: how often to ping (None: no watchdog), when health was last checked and when the
    /// last ping went out, and whether the last check found a stuck worker.
    ping_every: Option<Duration>,
    last_check: Instant,
    last_ping: Instant,
    unhealthy: bool,
    /// Deliveries per `STATUS_INTERVAL`, newest last, for "delivered in the last minute".
    window: VecDeque<u64>,
    /// Deliveries since the last `STATUS=`.
    status_delivered: u64,
    in_flight: usize,
    /// Per-endpoint policy and health; what may be claimed from which endpoint.
    endpoints: Endpoints,
    alerter: Alerter,
    /// Take enable requests at the next cycle.
    take_enables: bool,
    last_version: Option<i64>,
    finished: Vec<Finished>,
    stats: Stats,
}

impl Dispatcher {
    /// The main loop: returns the reason to stop.
    fn deliver(
        &mut self,
        jobs: &Sender<Job>,
        done: &Receiver<Finished>,
        control: &Receiver<Control>,
        reload: Reload<'_>,
    ) -> &'static str {
        let mut next_purge = Instant::now();
        let mut last_stats = Instant::now();
        let mut last_status = Instant::now();
        let mut last_poll = Instant::now() - POLL_INTERVAL;
        loop {
            let timeout = self.sleep_time(last_poll);
            select! {
                recv(control) -> msg => {
                    let Ok(msg) = msg else { return "control channel closed" };
                    // Wake-ups come in bursts: handle everything queued at once.
                    for msg in std::iter::once(msg).chain(control.try_iter()) {
                        match msg {
                            Control::Stop(signal) => return signal,
                            Control::Reload => self.reload(reload),
                            Control::Wake => self.endpoints.want_all(),
                            Control::Endpoints => self.take_enables = true,
                        }
                    }
                },
                recv(done) -> f => if let Ok(f) = f { self.finished.push(f) },
                default(timeout) => {}
            }
            self.finished.extend(done.try_iter());
            if last_poll.elapsed() >= POLL_INTERVAL {
                last_poll = Instant::now();
                self.poll_version();
            }
            let now = crate::time::now_ms();
            self.turn(jobs, now);
            if Instant::now() >= next_purge {
                let backlog = self.purge(now);
                next_purge = Instant::now()
                    + if backlog {
                        PURGE_BACKLOG_INTERVAL
                    } else {
                        PURGE_INTERVAL
                    };
            }
            if last_status.elapsed() >= STATUS_INTERVAL {
                last_status = Instant::now();
                self.take_enables = true; // in case the wake-up datagram was lost
                self.window
                    .push_back(std::mem::take(&mut self.status_delivered));
                if self.window.len() > STATUS_WINDOW {
                    self.window.pop_front();
                }
                self.report_status();
            }
            if last_stats.elapsed() >= STATS_INTERVAL {
                last_stats = Instant::now();
                self.log_stats();
            }
            self.check_health();
        }
    }

    /// `STATUS=` for `systemctl status`.
    fn report_status(&self) {
        match self.store.totals() {
            Ok(c) => {
                let mut line = format!(
                    "{} in flight, {} pending, {} dead; {} delivered in the last minute",
                    self.in_flight,
                    c.pending,
                    c.dead,
                    self.window.iter().sum::<u64>()
                );
                let (open, disabled) = self.endpoints.unhealthy();
                if open + disabled > 0 {
                    line.push_str(&format!("; endpoints: {open} open, {disabled} disabled"));
                }
                notify(&[NotifyState::Status(&line)]);
            }
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Feeds the watchdog every `ping_every`, unless a worker is stuck. Being called at all shows
    /// that the dispatcher loop turns.
    fn check_health(&mut self) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self.last_check.elapsed() < every {
            return;
        }
        self.last_check = Instant::now();
        crate::faults::maybe_wedge();
        let limit = stuck_after(self.endpoints.max_timeout(self.config.http.timeout));
        if let Some(stuck) = self.pool.stuck(limit) {
            if !self.unhealthy {
                log::error!(
                    "{} has been on one request for {:?}, longer than http.timeout allows ({:?}): no longer feeding the watchdog, so that systemd restarts webhookd",
                    stuck.name,
                    stuck.busy,
                    limit
                );
            }
            self.unhealthy = true;
            return;
        }
        if self.unhealthy {
            log::warn!("no worker is stuck any more; feeding the watchdog again");
            self.unhealthy = false;
        }
        self.ping();
    }

    fn ping(&mut self) {
        if self.ping_every.is_some() {
            notify(&[NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }

    /// SIGHUP: re-read the config and apply what can change while running.
    fn reload(&mut self, reload: Reload<'_>) {
        let mut states = vec![NotifyState::Reloading];
        match NotifyState::monotonic_usec_now() {
            Ok(t) => states.push(t),
            Err(e) => log::warn!("cannot read the monotonic clock for MONOTONIC_USEC: {e}"),
        }
        notify(&states);
        match reload() {
            Ok((new, level)) => self.apply(new, level),
            Err(e) => log::error!("reload failed, the running configuration stays: {e}"),
        }
        notify(&[NotifyState::Ready]);
        self.report_status();
    }

    fn apply(&mut self, mut new: Config, level: LevelFilter) {
        let old = &self.config;
        let mut changed = Vec::new();
        if new.db != old.db {
            log::warn!(
                "reload: db changed to {}; restart webhookd to use it (still using {})",
                new.db.display(),
                old.db.display()
            );
            new.db = old.db.clone();
        }
        if new.workers != old.workers {
            match self.pool.resize(new.workers) {
                Ok(()) => {
                    changed.push(format!("workers {} -> {}", old.workers, new.workers));
                    self.capacity = new.workers * 2;
                }
                Err(e) => {
                    log::error!("reload: {e}; workers stay at {}", old.workers);
                    new.workers = old.workers;
                }
            }
        }
        if new.http != old.http {
            match Http::new(&new.http, new.workers) {
                Ok(http) => {
                    self.pool.set_http(http);
                    changed.push(format!("http {:?} -> {:?}", old.http, new.http));
                }
                Err(e) => {
                    log::error!("reload: {e}; the http settings stay as they were");
                    new.http = old.http.clone();
                }
            }
        }
        if new.retry != old.retry {
            changed.push(format!("retry {:?} -> {:?}", old.retry, new.retry));
        }
        if new.endpoints != old.endpoints || new.workers != old.workers {
            let rows = self
                .store
                .ensure_endpoints(new.endpoints.keys())
                .and_then(|()| self.store.endpoint_health());
            match rows {
                Ok(rows) => {
                    let names = self.endpoints.reconfigure(
                        rows,
                        &new.endpoints,
                        new.workers,
                        crate::time::now_ms(),
                    );
                    if !names.is_empty() {
                        changed.push(format!("endpoints {}", names.join(", ")));
                    }
                    warn_unconfigured(&self.store, &self.endpoints);
                }
                Err(e) => {
                    log::error!("reload: {e}; the endpoints stay as they were");
                    new.endpoints = old.endpoints.clone();
                }
            }
        }
        if new.alerts != old.alerts {
            self.alerter.set_config(new.alerts.clone());
            changed.push(format!(
                "alert_url {}",
                new.alerts.as_ref().map_or("(none)", |a| a.url.as_str())
            ));
        }
        if new.retention != old.retention {
            changed.push(format!(
                "retention {} -> {}",
                humantime::format_duration(old.retention),
                humantime::format_duration(new.retention)
            ));
        }
        if level != log::max_level() {
            changed.push(format!("log level {} -> {level}", log::max_level()));
            log::set_max_level(level);
        }
        log::info!(
            "reloaded {}: {}",
            new.source
                .as_ref()
                .map_or_else(|| "(built-in defaults)".into(), |p| p.display().to_string()),
            if changed.is_empty() {
                "nothing changed".into()
            } else {
                changed.join("; ")
            }
        );
        self.config = new;
    }

    /// How long the loop may block: until the next poll or the next due message, whichever is
    /// first; outcomes and wake-ups interrupt it.
    fn sleep_time(&self, last_poll: Instant) -> Duration {
        let now = crate::time::now_ms();
        let room = self.in_flight < self.capacity;
        if !self.finished.is_empty() || room && self.endpoints.ready(now) {
            return Duration::ZERO;
        }
        let mut t = POLL_INTERVAL.saturating_sub(last_poll.elapsed());
        if let Some(every) = self.ping_every {
            t = t.min(every.saturating_sub(self.last_check.elapsed()));
        }
        if let Some(at) = self.endpoints.next_ready(now).filter(|_| room) {
            t = t.min(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        }
        t
    }

    fn poll_version(&mut self) {
        match self.store.data_version() {
            Ok(v) => {
                if self.last_version != Some(v) {
                    self.endpoints.want_all();
                }
                self.last_version = Some(v);
            }
            Err(e) => log::warn!("{e}"),
        }
    }

    /// One unit of work: record finished attempts, save endpoint health and claim what is due
    /// and allowed, in one transaction.
    fn turn(&mut self, jobs: &Sender<Job>, now: i64) {
        let free = self.capacity.saturating_sub(self.in_flight);
        let claims = if free > 0 {
            self.endpoints.plan(free, now)
        } else {
            Vec::new()
        };
        if self.finished.is_empty()
            && claims.is_empty()
            && !self.take_enables
            && !self.endpoints.health_due(now)
        {
            return;
        }
        let claimed = match self.record(&[], &claims, false, now) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}; retrying");
                self.endpoints.want_all();
                thread::sleep(STORE_RETRY);
                return;
            }
        };
        self.in_flight += claimed.jobs.len();
        for mut job in claimed.jobs {
            log::trace!("claimed {} (attempt {})", job.uuid, job.attempts + 1);
            self.endpoints.complete(&mut job);
            // Never blocks: at most `capacity` jobs are claimed and not finished.
            if jobs.send(job).is_err() {
                log::error!("job channel closed while running");
            }
        }
    }

    /// Records the finished attempts and `released` jobs, saves endpoint health (all of it with
    /// `save_all`) and makes `claims`, in one transaction; on success the finished list is
    /// accounted for and emptied.
    ///
    /// # Errors
    /// The store's; nothing changes then and the finished attempts stay for the next try.
    fn record(
        &mut self,
        released: &[i64],
        claims: &[Claim],
        save_all: bool,
        now: i64,
    ) -> Result<Claimed> {
        let (outcomes, verdicts): (Vec<Outcome>, Vec<Verdict>) = self
            .finished
            .iter()
            .map(|f| decide(f, &self.config.retry, &self.endpoints, now))
            .unzip();
        let health = self.endpoints.health_to_save(now, save_all);
        let cycle = Cycle {
            outcomes: &outcomes,
            released,
            claims,
            health: &health,
            take_enables: self.take_enables,
        };
        let claimed = self.store.cycle(&cycle, now)?;
        self.endpoints.saved(&health, now);
        self.take_enables = false;
        let finished = std::mem::take(&mut self.finished);
        for ((f, o), v) in finished.iter().zip(&outcomes).zip(&verdicts) {
            let cancelled = claimed.cancelled.contains(&f.seq);
            self.account(f, o, *v, cancelled, now);
        }
        self.in_flight -= outcomes.len();
        for id in &claimed.enabled {
            if let Some(name) = self.endpoints.enable(*id, now) {
                log::warn!("endpoint {name} enabled by an operator: delivering its messages again");
            }
        }
        self.endpoints.claimed(&claimed.jobs, &claimed.next_due);
        Ok(claimed)
    }

    /// Logs an endpoint's change at warning and sends it as an alert.
    fn event(&self, ev: Event) {
        let (event, text, endpoint) = match ev {
            Event::Opened {
                endpoint,
                failures,
                error,
            } => (
                "endpoint_opened",
                format!("endpoint {endpoint} opened after {failures} consecutive failures (last: {error}): its messages wait, one probe at growing intervals"),
                endpoint,
            ),
            Event::Disabled { endpoint, reason } => (
                "endpoint_disabled",
                format!("endpoint {endpoint} disabled: {reason}; its messages are held until `webhookd endpoints enable {endpoint}`"),
                endpoint,
            ),
            Event::Recovered { endpoint, down_ms } => (
                "endpoint_recovered",
                format!(
                    "endpoint {endpoint} recovered after failing for {}",
                    alert::duration_text(down_ms)
                ),
                endpoint,
            ),
        };
        log::warn!("{text}");
        self.alerter.send(Alert {
            event,
            text,
            endpoint: Some(endpoint),
            message: None,
        });
    }

    fn account(&mut self, f: &Finished, o: &Outcome, v: Verdict, cancelled: bool, now: i64) {
        if o.promote || cancelled && o.lane.is_some() {
            self.endpoints.want(f.endpoint);
        }
        if let Some(ev) = self
            .endpoints
            .finished(f.endpoint, v.effect, &o.summary, now)
        {
            self.event(ev);
        }
        // Where it went, for log lines: the endpoint, or the host of a plain URL (never the full
        // URL: it may carry credentials or tokens in its query).
        let target = match self.endpoints.config(f.endpoint) {
            Some(c) => format!("endpoint {}", c.name),
            None => format!("host {}", crate::text::host_of(&f.url)),
        };
        if cancelled && !matches!(o.kind, OutcomeKind::Delivered) {
            self.stats.cancelled += 1;
            log::info!(
                "cancelled {} ({}) after attempt {}, as an operator asked while it was in flight: {}",
                f.uuid,
                target,
                o.n,
                o.summary
            );
            return;
        }
        match o.kind {
            OutcomeKind::Delivered => {
                self.stats.delivered += 1;
                self.status_delivered += 1;
                log::debug!("delivered {} (attempt {}, {:?})", f.uuid, o.n, f.duration);
            }
            OutcomeKind::Retry { due_at } => {
                self.stats.retried += 1;
                self.endpoints.due(f.endpoint, due_at);
                log::debug!(
                    "attempt {} of {} ({}) failed: {}; retry in {}",
                    o.n,
                    f.uuid,
                    target,
                    o.summary,
                    crate::text::duration_ms(due_at - o.at)
                );
            }
            OutcomeKind::Dead => {
                self.stats.dead += 1;
                let endpoint = self.endpoints.config(f.endpoint).map(|c| c.name.clone());
                let text = format!(
                    "dead-lettered {} ({}) after {} attempts: {}",
                    f.uuid,
                    target,
                    f.attempts + 1,
                    o.summary
                );
                log::warn!("{text}");
                self.alerter.send(Alert {
                    event: "dead_letter",
                    text,
                    endpoint,
                    message: Some(f.uuid.to_string()),
                });
            }
        }
    }

    /// Purges one batch of delivered messages past retention; true if more may remain.
    fn purge(&mut self, now: i64) -> bool {
        let before = now.saturating_sub(crate::time::duration_ms(self.config.retention));
        match self.store.purge_delivered(before, PURGE_BATCH) {
            Ok(0) => false,
            Ok(n) => {
                log::debug!("purged {n} delivered messages past retention");
                n == PURGE_BATCH
            }
            Err(e) => {
                log::warn!("{e}");
                false
            }
        }
    }

    fn log_stats(&mut self) {
        let s = std::mem::take(&mut self.stats);
        match self.store.totals() {
            Ok(c) => log::info!(
                "last minute: {} delivered, {} retried, {} dead-lettered, {} cancelled in flight; queue: {} pending, {} in flight, {} dead",
                s.delivered, s.retried, s.dead, s.cancelled, c.pending, c.in_flight, c.dead
            ),
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Shutdown: release unstarted jobs, let running requests finish within `limit`, record all.
    fn drain(
        &mut self,
        jobs_tx: Sender<Job>,
        jobs_rx: &Receiver<Job>,
        done: &Receiver<Finished>,
        limit: Duration,
    ) {
        let mut released = Vec::new();
        for job in jobs_rx.try_iter() {
            self.endpoints.released(job.endpoint);
            released.push(job.seq);
        }
        drop(jobs_tx);
        self.in_flight -= released.len();
        let deadline = Instant::now() + limit;
        loop {
            self.finished.extend(done.try_iter());
            if !self.finished.is_empty() || !released.is_empty() {
                match self.record(&released, &[], true, crate::time::now_ms()) {
                    Ok(_) => released.clear(),
                    Err(e) => {
                        log::error!("{e}");
                        if Instant::now() >= deadline {
                            break;
                        }
                        thread::sleep(STORE_RETRY);
                        continue;
                    }
                }
            }
            if self.in_flight == 0 || self.pool.is_finished() && done.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Abandoned: their messages go back to pending now, so that nothing depends on
                // the next start to find them (an answer that still comes is not recorded: the
                // receiver may see the message twice, it is never lost).
                let requeued = self.store.requeue_in_flight(crate::time::now_ms());
                log::error!(
                    "{} requests still in flight after shutdown_timeout ({}): abandoned, their messages are pending again{}",
                    self.in_flight,
                    crate::text::duration(limit),
                    match requeued {
                        Ok(_) => String::new(),
                        Err(e) => format!(" at the next start ({e})"),
                    }
                );
                break;
            }
            if let Ok(f) = done.recv_timeout(left.min(Duration::from_millis(100))) {
                self.finished.push(f);
            }
            // Stopping is bounded by TimeoutStopSec; keep feeding the watchdog meanwhile.
            if self
                .ping_every
                .is_some_and(|every| self.last_ping.elapsed() >= every)
            {
                self.ping();
            }
        }
    }
}

/// Warns about endpoints the database knows but the config does not, whose messages are held.
fn warn_unconfigured(store: &Store, endpoints: &Endpoints) {
    for (id, name) in endpoints.unconfigured() {
        match store.next_due(id) {
            Ok(Some(_)) => log::warn!(
                "endpoint {name} is not in the config any more: its pending messages are held until it is added back (or deleted from the queue)"
            ),
            Ok(None) => {}
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// A worker on one request for longer than this is stuck, and the daemon stops feeding the
/// watchdog: the HTTP timeout (which ureq enforces) plus half of it, at least one second more.
fn stuck_after(timeout: Duration) -> Duration {
    timeout + (timeout / 2).max(Duration::from_secs(1))
}

/// Turns a finished attempt into what to store: the verdict (`verdict::judge`) decides, with
/// the budget in force (the message's own, its endpoint's, or `retry.max_attempts`); a lane's
/// next message is promoted when this one is delivered, or dead and its endpoint skips dead ones.
fn decide(
    f: &Finished,
    policy: &RetryPolicy,
    endpoints: &Endpoints,
    now: i64,
) -> (Outcome, Verdict) {
    let (endpoint_budget, dead_blocks) = endpoints.policy(f.endpoint);
    let budget = f
        .max_attempts
        .or(endpoint_budget)
        .unwrap_or(policy.max_attempts);
    let v = verdict::judge(&verdict::Attempt {
        reply: &f.reply,
        made: f.attempts + 1,
        budget,
        named_endpoint: f.endpoint != 0,
        to_endpoint_url: f.to_endpoint_url,
        retry: policy,
        now,
        random: fastrand::f64(),
    });
    let kind = match v.outcome {
        verdict::Outcome::Delivered => OutcomeKind::Delivered,
        verdict::Outcome::Retry { at } => OutcomeKind::Retry { due_at: at },
        verdict::Outcome::Dead { .. } => OutcomeKind::Dead,
    };
    let (status, error, response) = match &f.reply {
        Reply::Status { code, excerpt, .. } => (Some(*code), None, excerpt.clone()),
        Reply::Transport { error, .. } => (
            None,
            Some(crate::text::escape(error).into_owned()),
            Vec::new(),
        ),
    };
    let error = error.or_else(|| {
        matches!(&f.reply, Reply::Status { location: Some(_), code, .. } if (300..400).contains(code))
            .then(|| verdict::summarize(&f.reply))
    });
    let outcome = Outcome {
        seq: f.seq,
        n: f.attempts_total + 1,
        at: crate::time::to_ms(f.started),
        duration_us: i64::try_from(f.duration.as_micros()).unwrap_or(i64::MAX),
        status,
        error,
        response,
        summary: verdict::summarize(&f.reply),
        lane: f.lane.clone(),
        promote: match kind {
            OutcomeKind::Delivered => true,
            OutcomeKind::Dead => !dead_blocks,
            OutcomeKind::Retry { .. } => false,
        },
        kind,
    };
    (outcome, v)
}

/// Forwards SIGTERM/SIGINT (stop) and SIGHUP (reload) to the dispatcher; does nothing else.
struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: JoinHandle<()>,
}

impl SignalThread {
    fn start(control: Sender<Control>) -> Result<SignalThread> {
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|source| Error::Signals { source })?;
        let handle = signals.handle();
        let thread = spawn("webhookd-signals", move || {
            for signal in signals.forever() {
                let msg = match signal {
                    SIGTERM => Control::Stop("SIGTERM"),
                    SIGINT => Control::Stop("SIGINT"),
                    _ => Control::Reload,
                };
                if control.send(msg).is_err() {
                    return;
                }
            }
        })?;
        Ok(SignalThread { handle, thread })
    }

    fn stop(self) {
        self.handle.close();
        if self.thread.join().is_err() {
            log::error!("webhookd-signals panicked");
        }
    }
}

/// Receives wake-up datagrams from CLIs on `<db>.sock`.
struct WakeThread {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WakeThread {
    fn start(db: &Path, control: Sender<Control>) -> Result<WakeThread> {
        let path = wake_socket_path(db);
        let stop = Arc::new(AtomicBool::new(false));
        // We hold the daemon lock, so a socket file left here is a dead daemon's.
        let _ = std::fs::remove_file(&path);
        let sock = match UnixDatagram::bind(&path) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "cannot bind wake-up socket {}: {e}; new messages are found by polling every {:?}",
                    path.display(),
                    POLL_INTERVAL
                );
                return Ok(WakeThread {
                    path,
                    stop,
                    thread: None,
                });
            }
        };
        // The timeout only bounds how long `stop` can wait if its own datagram is lost.
        let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
        let flag = Arc::clone(&stop);
        let thread = spawn("webhookd-wake", move || {
            let mut buf = [0u8; 16];
            while !flag.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let msg = if buf[..n] == *b"e" {
                    Control::Endpoints
                } else {
                    Control::Wake
                };
                if control.send(msg).is_err() {
                    return;
                }
            }
        })?;
        Ok(WakeThread {
            path,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread {
            if let Ok(s) = UnixDatagram::unbound() {
                let _ = s.send_to(b"q", &self.path);
            }
            if thread.join().is_err() {
                log::error!("webhookd-wake panicked");
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Checkpoints the WAL from its own connection and thread, off the delivery path.
struct Checkpointer {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(db: &Path) -> Result<Checkpointer> {
        let store = Store::open(db, Access::Daemon)?;
        let (stop, stopped) = bounded::<()>(0);
        let thread = spawn("webhookd-checkpoint", move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_INTERVAL)
            {
                match store.checkpoint(false) {
                    Ok(c) if c.wal_pages >= CHECKPOINT_RESTART_PAGES => {
                        log::debug!("WAL at {} pages: restarting it", c.wal_pages);
                        if let Err(e) = store.checkpoint(true) {
                            log::warn!("{e}");
                        }
                    }
                    Ok(c) => log::trace!("checkpoint {}/{} pages", c.copied_pages, c.wal_pages),
                    Err(e) => log::warn!("{e}"),
                }
            }
        })?;
        Ok(Checkpointer { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            log::error!("webhookd-checkpoint panicked");
        }
    }
}

/// Starts a named thread.
fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| Error::Spawn {
            name: name.into(),
            source,
        })
}

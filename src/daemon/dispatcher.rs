//! The dispatcher: the daemon's main loop and the only writer of outcomes. Each turn is one cycle
//! transaction (`store::Queue::cycle`): record the attempts that finished, save endpoint health,
//! claim as many due messages as there are free slots (2 x workers: one running and one queued per
//! worker, so workers never wait for a commit) and as the endpoint policy allows.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use super::decide::decide;
use super::systemd::{Watchdog, Window};
use super::wait::{sleep_time, Wait};
use super::{texts, Control, Reload};
use crate::alert::{Alert, Alerter};
use crate::config::Config;
use crate::counters::{Counters, Latencies, Published, Totals};
use crate::deliver::endpoints::Endpoints;
use crate::deliver::pool::Pool;
use crate::deliver::{Finished, Task};
use crate::model::Claim;
use crate::store::{Claimed, Cycle, Notice, Outcome, OutcomeKind, Queue};
use crate::verdict::Verdict;

/// How often the store is asked whether another process committed (for writers that could not
/// send a wake-up notice). While polls find nothing, nothing is in flight and the store listens
/// for wake-up notices (`hears_notices`), the interval doubles up to `POLL_IDLE_INTERVAL`; a
/// notice, a change found or a request in flight brings it back.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);
const POLL_IDLE_INTERVAL: Duration = Duration::from_secs(1);
/// How often delivered messages past their retention are purged, and how many per transaction.
/// Small transactions keep claims from waiting behind a purge; while a backlog remains (a full
/// batch), the next one follows after `PURGE_BACKLOG_INTERVAL`, up to 20,000 messages a second.
/// While purges find nothing the interval doubles up to `PURGE_IDLE_INTERVAL` (on PostgreSQL
/// each is four round trips).
const PURGE_INTERVAL: Duration = Duration::from_secs(1);
const PURGE_IDLE_INTERVAL: Duration = Duration::from_secs(8);
const PURGE_BACKLOG_INTERVAL: Duration = Duration::from_millis(50);
const PURGE_BATCH: usize = 1_000;
/// How often the counts are logged at info.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// How often `STATUS=` is updated (and the counters published).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Finished attempts wait up to this long to be recorded in the transaction of the next claim, or
/// with more of their kind, instead of in one of their own: at low rates that is one transaction
/// per delivery instead of two. Claims never wait for it; a crash within it sends those messages
/// again, as at-least-once delivery allows. Attempts that something waits for (a lane's next
/// message; work held back by an endpoint's in-flight cap or by the failing endpoints' shared
/// budget, `waits_for_flight`) are recorded at once. With nothing to claim and nothing of that
/// kind due within `POLL_INTERVAL`, the loop does not even wake for a finished attempt (`quiet`
/// in `deliver`): it is then recorded at the next wake-up, at the latest the poll (`POLL_INTERVAL`
/// while anything is in flight).
const RECORD_DELAY: Duration = Duration::from_millis(5);
/// After a failed store write the dispatcher waits this long before trying again.
pub(super) const STORE_RETRY: Duration = Duration::from_millis(250);

/// Where to look for pending messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Look {
    /// Among the messages committed since the last look (an enqueue, an event's fan-out).
    New,
    /// At every endpoint with pending messages (an operator made stored messages due again,
    /// or the periodic look that catches a lost wake-up).
    All,
}

pub(super) struct Dispatcher {
    pub(super) queue: Box<dyn Queue>,
    pub(super) pool: Pool,
    /// The configuration in force (replaced on reload, except `db`).
    pub(super) config: Config,
    pub(super) capacity: usize,
    pub(super) watchdog: Watchdog,
    pub(super) window: Window,
    pub(super) in_flight: usize,
    /// Of them, jobs of a lane (the lane's next message waits for their outcome).
    pub(super) lanes_in_flight: usize,
    /// Per-endpoint policy and health; what may be claimed from which endpoint.
    pub(super) endpoints: Endpoints,
    pub(super) alerter: Alerter,
    /// Take enable requests at the next cycle.
    pub(super) take_enables: bool,
    pub(super) finished: Vec<Finished>,
    pub(super) counters: Counters,
    /// What readers outside the loop see (`report_status` refreshes it).
    pub(super) published: Published,
    pub(super) latencies: Latencies,
    /// The API's copy of the configuration, replaced on reload.
    pub(super) api_config: crate::api::SharedConfig,
    /// Messages posted to the API, stored by the next cycle.
    pub(super) intake: Vec<crate::api::Job>,
    /// The totals the last periodic log line was about.
    pub(super) logged: Totals,
    /// The store's endpoint generation the endpoints in force were read at.
    pub(super) generation: i64,
    /// When a secret's overlap ends: the stored endpoints are read again then.
    pub(super) next_expiry: Option<i64>,
    /// The highest message seq the last look saw (`look`).
    pub(super) seen_seq: i64,
    /// The API's copy of the endpoints is behind (`sync_api`).
    pub(super) api_stale: bool,
    /// Wake-up notices can arrive (the store listens); without them the poll stays fast.
    pub(super) hears_notices: bool,
}

impl Dispatcher {
    /// The main loop: returns the reason to stop.
    pub(super) fn deliver(
        &mut self,
        jobs: &Sender<Task>,
        done: &Receiver<Finished>,
        control: &Receiver<Control>,
        notices: &Receiver<Notice>,
        ingest: &Receiver<crate::api::Job>,
        reload: Reload<'_>,
    ) -> &'static str {
        let mut notices = notices.clone();
        let mut next_purge = Instant::now();
        let mut purge_every = PURGE_INTERVAL;
        let mut last_stats = Instant::now();
        let mut last_status = Instant::now();
        let mut last_poll = Instant::now() - POLL_INTERVAL;
        let mut poll_every = POLL_INTERVAL;
        let mut last_renew = Instant::now();
        let mut last_sync = Instant::now();
        let unheard = crossbeam_channel::never::<Finished>();
        let mut listening = self.hears_notices;
        loop {
            let now = crate::time::now_ms();
            let room = self.in_flight < self.capacity;
            let ready = room && self.endpoints.ready(now);
            // With nothing to claim, an attempt that finishes need not wake the loop: it waits in
            // the channel for the next wake-up (a notice, a due message, at the latest the poll)
            // and is recorded with what that brings. Not while a lane or an endpoint's cap waits
            // for one of them.
            let soon = now.saturating_add(crate::time::duration_ms(POLL_INTERVAL));
            let quiet = room
                && !ready
                && self.lanes_in_flight == 0
                && !self.endpoints.waits_for_flight(now, soon);
            let finishes = if quiet { &unheard } else { done };
            // The poll stays fast while it bounds something: how long a quiet outcome or the API's
            // copy of the endpoints waits, or (without wake-up notices) how new messages are found.
            if self.in_flight > 0 || self.api_stale || !listening {
                poll_every = POLL_INTERVAL;
            }
            let timeout = sleep_time(Wait {
                record_in: self.record_in(now),
                room,
                ready,
                // Only needed to sleep with a free slot (a walk of the endpoints with work).
                next_ready: if room && !ready {
                    self.endpoints.next_ready(now)
                } else {
                    None
                },
                now,
                poll_in: poll_every.saturating_sub(last_poll.elapsed()),
                purge_in: (purge_every == PURGE_BACKLOG_INTERVAL)
                    .then(|| next_purge.saturating_duration_since(Instant::now())),
                check_in: self.watchdog.next_check(),
            });
            select! {
                recv(control) -> msg => {
                    let Ok(msg) = msg else { return "control channel closed" };
                    for msg in std::iter::once(msg).chain(control.try_iter()) {
                        match msg {
                            Control::Stop(signal) => return signal,
                            Control::Reload => self.reload(reload),
                        }
                    }
                },
                recv(notices) -> n => {
                    // No one sends any more (the store could not listen): polling finds what
                    // commands commit; stop selecting on a channel that is always ready.
                    if n.is_err() {
                        notices = crossbeam_channel::never();
                        listening = false;
                    }
                    poll_every = POLL_INTERVAL;
                    // Wake-ups come in bursts: handle everything queued at once, look once.
                    let mut look = None;
                    for n in n.into_iter().chain(notices.try_iter()) {
                        match n {
                            Notice::Messages => look = look.max(Some(Look::New)),
                            Notice::Requeued => look = Some(Look::All),
                            Notice::Endpoints => self.take_enables = true,
                        }
                    }
                    if let Some(scope) = look {
                        self.look(scope, now);
                    }
                },
                recv(finishes) -> f => if let Ok(f) = f { self.finished.push(f) },
                recv(ingest) -> job => if let Ok(job) = job { self.take_posts(job, ingest) },
                default(timeout) => {}
            }
            self.finished.extend(done.try_iter());
            if last_poll.elapsed() >= poll_every {
                last_poll = Instant::now();
                let changed = match self.queue.changed() {
                    Ok(true) => {
                        self.look(Look::New, now);
                        true
                    }
                    Ok(false) => false,
                    Err(e) => {
                        log::warn!("{e}");
                        true
                    }
                };
                self.sync_api(&mut last_sync);
                poll_every = if changed {
                    POLL_INTERVAL
                } else {
                    (poll_every * 2).min(POLL_IDLE_INTERVAL)
                };
            }
            let now = crate::time::now_ms();
            self.turn(jobs, now);
            if Instant::now() >= next_purge {
                purge_every = match self.purge(now) {
                    Some(PURGE_BATCH) => PURGE_BACKLOG_INTERVAL,
                    Some(0) => (purge_every * 2).clamp(PURGE_INTERVAL, PURGE_IDLE_INTERVAL),
                    _ => PURGE_INTERVAL,
                };
                next_purge = Instant::now() + purge_every;
            }
            if last_renew.elapsed() >= self.config.lease / 3 {
                last_renew = Instant::now();
                let until = now.saturating_add(crate::time::duration_ms(self.config.lease));
                if let Err(e) = self.queue.renew(until) {
                    log::warn!("{e}");
                }
            }
            if last_status.elapsed() >= STATUS_INTERVAL {
                last_status = Instant::now();
                // In case a wake-up notice was lost.
                self.take_enables = true;
                self.look(Look::All, now);
                self.window.sample(self.counters.totals().delivered);
                self.report_status();
            }
            if last_stats.elapsed() >= STATS_INTERVAL {
                last_stats = Instant::now();
                self.log_stats();
            }
            if self.watchdog.check_due() {
                crate::faults::maybe_wedge();
                let limit =
                    super::stuck_after(self.endpoints.max_timeout(self.config.http.timeout));
                let stuck = self.pool.stuck(limit).map(|s| {
                    format!(
                        "{} has been on one request for {:?}, longer than http.timeout allows ({limit:?})",
                        s.name, s.busy
                    )
                });
                self.watchdog.checked(stuck);
            }
        }
    }

    /// One unit of work: record finished attempts, save endpoint health and claim what is due
    /// and allowed, in one transaction.
    fn turn(&mut self, jobs: &Sender<Task>, now: i64) {
        if self.take_enables {
            self.refresh_defined(now);
            self.shared_health(now);
        }
        let free = self.capacity.saturating_sub(self.in_flight);
        let claims = if free > 0 {
            self.endpoints.plan(free, now)
        } else {
            Vec::new()
        };
        if self.record_in(now) != Some(Duration::ZERO)
            && claims.is_empty()
            && self.intake.is_empty()
            && !self.take_enables
            && !self.endpoints.health_due(now)
        {
            return;
        }
        let posted = !self.intake.is_empty();
        let claimed = match self.record(&[], &claims, false, now) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}; retrying");
                self.endpoints.want_all();
                thread::sleep(STORE_RETRY);
                return;
            }
        };
        if posted {
            self.discover(now);
        }
        self.in_flight += claimed.jobs.len();
        self.lanes_in_flight += claimed.jobs.iter().filter(|j| j.lane.is_some()).count();
        for mut job in claimed.jobs {
            log::trace!("claimed {} (attempt {})", job.uuid, job.attempts + 1);
            self.endpoints.complete(&mut job);
            // Never blocks: at most `capacity` jobs are claimed and not finished.
            if jobs.send(Task::Attempt(job)).is_err() {
                log::error!("job channel closed while running");
            }
        }
    }

    /// When the finished attempts must be recorded (`RECORD_DELAY`): at once when a batch of an
    /// eighth of the claim slots has finished (the workers still have queued jobs then), or when
    /// another message waits for one of them; `None` with nothing finished.
    fn record_in(&self, now: i64) -> Option<Duration> {
        let first = self.finished.first()?;
        if self.finished.len() >= (self.capacity / 8).max(1)
            || self.finished.iter().any(|f| f.lane.is_some())
            || self.endpoints.waits_for_flight(now, now)
        {
            return Some(Duration::ZERO);
        }
        // A clock stepped back: take it as due rather than hold the outcome for the step.
        let age = std::time::SystemTime::now()
            .duration_since(first.started + first.duration)
            .unwrap_or(RECORD_DELAY);
        Some(RECORD_DELAY.saturating_sub(age))
    }

    /// Records the finished attempts and `released` jobs, saves endpoint health (all of it with
    /// `save_all`) and makes `claims`, in one transaction; on success the finished list is
    /// accounted for and emptied.
    ///
    /// # Errors
    /// The store's; nothing changes then and the finished attempts stay for the next try.
    pub(super) fn record(
        &mut self,
        released: &[i64],
        claims: &[Claim],
        save_all: bool,
        now: i64,
    ) -> crate::error::Result<Claimed> {
        let (outcomes, verdicts): (Vec<Outcome>, Vec<Verdict>) = self
            .finished
            .iter()
            .map(|f| decide(f, &self.config.retry, &self.endpoints, now, fastrand::f64()))
            .unzip();
        let health = self.endpoints.health_to_save(now, save_all);
        let mut posts = std::mem::take(&mut self.intake);
        let inserts: Vec<crate::message::Message> =
            posts.iter_mut().flat_map(|j| j.take_messages()).collect();
        if !inserts.is_empty() {
            crate::faults::before_ingest();
        }
        let cycle = Cycle {
            outcomes: &outcomes,
            released,
            claims,
            health: &health,
            take_enables: self.take_enables,
            inserts: &inserts,
            claim_budget: Some(self.capacity.saturating_sub(self.in_flight)),
        };
        let mut claimed = match self.queue.cycle(&cycle, now) {
            Ok(c) => c,
            Err(e) => {
                // Nothing was stored: every waiting request hears so now (and may retry).
                let failed = crate::api::Failed {
                    busy: matches!(
                        e,
                        crate::error::Error::Busy { .. }
                            | crate::error::Error::DbUnavailable { .. }
                    ),
                    message: e.to_string(),
                };
                for job in posts {
                    job.answer(Err(failed.clone()));
                }
                return Err(e);
            }
        };
        let mut stored = std::mem::take(&mut claimed.inserted).into_iter();
        for job in posts {
            let n = job.len();
            job.answer(Ok(stored.by_ref().take(n).collect()));
        }
        self.endpoints.saved(&health, now);
        self.adopt(&claimed.health, now);
        self.take_enables = false;
        let finished = std::mem::take(&mut self.finished);
        for ((f, o), v) in finished.iter().zip(&outcomes).zip(&verdicts) {
            let cancelled = claimed.cancelled.contains(&f.seq);
            self.account(f, o, v, cancelled, now);
        }
        self.in_flight -= outcomes.len();
        let lanes = finished.iter().filter(|f| f.lane.is_some()).count();
        self.lanes_in_flight = self.lanes_in_flight.saturating_sub(lanes);
        for id in &claimed.enabled {
            if let Some(name) = self.endpoints.enable(*id, now) {
                log::warn!("endpoint {name} enabled by an operator: delivering its messages again");
            }
        }
        self.endpoints.claimed(&claimed.jobs, &claimed.next_due);
        Ok(claimed)
    }

    /// Counts, logs and alerts what one recorded attempt did.
    fn account(&mut self, f: &Finished, o: &Outcome, v: &Verdict, cancelled: bool, now: i64) {
        if o.promote || cancelled && o.lane.is_some() {
            self.endpoints.want(f.endpoint);
        }
        if let Some(ev) = self
            .endpoints
            .finished(f.endpoint, v.effect, &o.summary, now)
        {
            self.event(&ev);
        }
        let cancelled = cancelled && !matches!(o.kind, OutcomeKind::Delivered);
        // Origins count with plain URLs (endpoint ""): a label per host would be unbounded.
        let named = self.endpoints.config(f.endpoint).filter(|c| !c.is_origin());
        let endpoint = named.map(|c| c.name.clone());
        let label = if endpoint.is_some() { f.endpoint } else { 0 };
        self.counters.attempt(label, v, cancelled);
        self.latencies
            .attempt(endpoint.as_deref().unwrap_or(""), f.duration.as_secs_f64());
        self.latencies.history.attempt(
            endpoint.as_deref(),
            matches!(o.kind, OutcomeKind::Delivered),
            f.duration.as_secs_f64() * 1000.0,
            now,
        );
        let started_ms = f
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.latencies
            .lag
            .observe((started_ms - f.due_at).max(0) as f64 / 1000.0);
        if matches!(o.kind, OutcomeKind::Delivered) {
            if let Some(ts) = f.uuid.get_timestamp() {
                let (secs, nanos) = ts.to_unix();
                let created = secs as f64 + f64::from(nanos) / 1e9;
                self.latencies
                    .end_to_end
                    .observe((now as f64 / 1000.0 - created).max(0.0));
            }
        }
        let target = texts::target(endpoint.as_deref(), &f.url);
        let uuid = f.uuid.to_string();
        if cancelled {
            log::info!("{}", texts::cancelled(&uuid, &target, &o.summary));
            return;
        }
        let budget = super::decide::budget(f, &self.config.retry, &self.endpoints);
        match o.kind {
            OutcomeKind::Delivered => {
                log::debug!(
                    "{}",
                    texts::delivered(&uuid, &target, f.attempts + 1, o.duration_us)
                );
            }
            OutcomeKind::Retry { due_at } => {
                self.endpoints.due(f.endpoint, due_at);
                log::debug!(
                    "{}",
                    texts::retry(
                        &uuid,
                        &target,
                        (f.attempts + 1, budget),
                        &o.summary,
                        due_at - o.at
                    )
                );
            }
            OutcomeKind::Dead => {
                let text = texts::dead_letter(&uuid, &target, f.attempts + 1, &o.summary);
                log::warn!("{text}");
                self.alerter.send(Alert {
                    event: "dead_letter",
                    text,
                    endpoint,
                    message: Some(uuid),
                });
            }
        }
    }

    /// Purges one batch of delivered messages past retention: how many (`None`: it failed).
    fn purge(&mut self, now: i64) -> Option<usize> {
        let before = now.saturating_sub(crate::time::duration_ms(self.config.retention));
        match self.queue.purge(before, PURGE_BATCH) {
            Ok(n) => {
                if n > 0 {
                    log::debug!("purged {n} delivered or cancelled messages past retention");
                }
                Some(n)
            }
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }
}

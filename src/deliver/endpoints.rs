//! Per-endpoint delivery policy, as the dispatcher keeps it in memory: which endpoints may be
//! claimed now and how many (concurrency cap, token-bucket rate, circuit breaker, disabled), what
//! a finished attempt does to an endpoint's health, and how a claimed job of an endpoint is
//! completed from its configuration. Pure: times are passed in (ms since the epoch), the
//! database is the dispatcher's business.
//!
//! Breaker: `breaker_failures` consecutive failed attempts open an endpoint. While open, none of its
//! messages is claimed (they keep their attempt budget), except one probe after
//! `breaker_cooldown`, then after twice as long after each failed probe (at most an hour). A
//! success closes it. An endpoint gets one request at a time until its first success since start
//! (slow start), and again whenever its last attempt failed; failing endpoints together have at
//! most a quarter of the workers: receivers that time out cannot take the pool from healthy ones.
//! `410 Gone` for the endpoint's own URL, or for `GONE_STREAK` messages in a row, disables an
//! endpoint, and so does failing without a success for `disable_after`; only an operator enables
//! it again. Endpoint 0 stands for plain URLs: no
//! limits, no breaker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Job;
use crate::endpoint::{Endpoint, OnDead, MAX_PROBE_INTERVAL};
use crate::model::Circuit::{Closed as CLOSED, Disabled as DISABLED, Open as OPEN};
use crate::model::{Circuit, Claim, Health};
use crate::verdict::Effect;
/// A token bucket holds at most this many seconds of its rate (at least one token), so a rate is
/// kept within a few percent over any second.
const BURST_SECS: f64 = 0.1;
/// Health that changed only in counters is saved at most this often.
const SAVE_EVERY_MS: i64 = 1_000;
/// `410 Gone` for this many messages in a row (each one dead-lettered) disables an endpoint, as
/// does one 410 for the endpoint's own URL: a receiver that retired one path is not gone.
pub(crate) const GONE_STREAK: u32 = 3;

/// A change an operator hears about (log at warning, and an alert).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Opened {
        endpoint: String,
        failures: i64,
        error: String,
    },
    Disabled {
        endpoint: String,
        reason: String,
    },
    Recovered {
        endpoint: String,
        down_ms: i64,
    },
}

struct Runtime {
    name: String,
    /// None: plain URLs (id 0), or an endpoint no longer in the config (held).
    config: Option<Arc<Endpoint>>,
    health: Health,
    probe_interval: Duration,
    next_probe: i64,
    in_flight: usize,
    tokens: f64,
    refilled_at: i64,
    /// More may be due than were claimed (or a wake-up came): claim at the next chance.
    want: bool,
    /// Earliest known due time of a pending message.
    next_due: Option<i64>,
    dirty: bool,
    state_changed: bool,
    saved_at: i64,
    /// A request succeeded since start (or since its configuration changed).
    proven: bool,
    /// Consecutive `410 Gone` answers.
    gone: u32,
}

impl Runtime {
    fn new(name: String, config: Option<Arc<Endpoint>>, health: Health, now: i64) -> Runtime {
        let cooldown = config
            .as_ref()
            .map_or(Duration::from_secs(10), |c| c.breaker_cooldown);
        let mut rt = Runtime {
            name,
            config,
            health,
            probe_interval: cooldown,
            next_probe: now + crate::time::duration_ms(cooldown),
            in_flight: 0,
            tokens: 0.0,
            refilled_at: now,
            want: true,
            next_due: None,
            dirty: false,
            state_changed: false,
            saved_at: now,
            proven: false,
            gone: 0,
        };
        rt.tokens = rt.burst();
        rt
    }

    fn burst(&self) -> f64 {
        self.config
            .as_ref()
            .and_then(|c| c.rate.as_ref())
            .map_or(0.0, |r| (r.per_sec * BURST_SECS).max(1.0))
    }

    /// Tokens in the bucket at `now`.
    fn tokens_at(&self, now: i64) -> f64 {
        match self.config.as_ref().and_then(|c| c.rate.as_ref()) {
            Some(rate) => {
                let elapsed = (now - self.refilled_at).max(0) as f64 / 1000.0;
                (self.tokens + elapsed * rate.per_sec).min(self.burst())
            }
            None => 0.0,
        }
    }

    fn refill(&mut self, now: i64) {
        self.tokens = self.tokens_at(now);
        self.refilled_at = now;
    }

    fn has_work(&self, now: i64) -> bool {
        self.want || self.next_due.is_some_and(|d| d <= now)
    }

    /// Failing (its last attempt failed, or open): one request at a time, within the shared
    /// budget of failing endpoints.
    fn degraded(&self) -> bool {
        self.config.is_some() && (self.health.failures > 0 || self.health.state == OPEN)
    }

    /// Not yet proven (no success since start) or failing: one request at a time.
    fn cap(&self, c: &Endpoint, workers: usize) -> usize {
        if self.degraded() || !self.proven {
            1
        } else {
            c.concurrency_with(workers)
        }
    }

    /// How many may be claimed now (usize::MAX: no limit of its own); `room`: what the failing
    /// endpoints' budget has left.
    fn allowed(&self, workers: usize, now: i64, room: usize) -> usize {
        let Some(c) = &self.config else {
            return if self.health.id == 0 { usize::MAX } else { 0 };
        };
        let cap = self.cap(c, workers).saturating_sub(self.in_flight);
        let by_state = match self.health.state {
            DISABLED => 0,
            OPEN if now >= self.next_probe && self.in_flight == 0 => 1,
            OPEN => 0,
            _ => cap,
        };
        let by_rate = if c.rate.is_some() {
            self.tokens_at(now).floor() as usize
        } else {
            usize::MAX
        };
        let by_budget = if self.degraded() { room } else { usize::MAX };
        by_state.min(by_rate).min(by_budget)
    }

    /// When this endpoint may next be claimed, if it is held back only by time.
    fn ready_at(&self, workers: usize, now: i64, room: usize) -> Option<i64> {
        let due = if self.want { now } else { self.next_due? };
        let c = self.config.as_ref()?;
        if self.degraded() && room == 0 {
            return None; // woken when a failing endpoint's request finishes
        }
        let mut at = due.max(now);
        match self.health.state {
            DISABLED => return None,
            OPEN if self.in_flight > 0 => return None,
            OPEN => at = at.max(self.next_probe),
            _ if self.cap(c, workers) <= self.in_flight => return None,
            _ => {}
        }
        if let Some(rate) = &c.rate {
            let tokens = self.tokens_at(now);
            if tokens < 1.0 {
                let wait = (1.0 - tokens) / rate.per_sec * 1000.0;
                at = at.max(now + wait.ceil() as i64);
            }
        }
        Some(at)
    }

    fn set_state(&mut self, state: Circuit, reason: Option<String>, now: i64) {
        self.health.state = state;
        self.health.reason = reason;
        self.health.changed_at = Some(now);
        self.state_changed = true;
        self.dirty = true;
    }
}

/// One claim round of [`Endpoints::plan`].
struct Round {
    claims: Vec<Claim>,
    /// Claim slots left, and what the failing endpoints' budget has left.
    left: usize,
    room: usize,
    workers: usize,
    now: i64,
}

impl Round {
    fn offer(&mut self, id: i64, rt: &mut Runtime) {
        if self.left == 0 || !rt.has_work(self.now) {
            return;
        }
        rt.refill(self.now);
        let limit = rt.allowed(self.workers, self.now, self.room).min(self.left);
        if limit > 0 {
            if rt.degraded() {
                self.room -= limit;
            }
            self.claims.push(Claim {
                endpoint: id,
                limit,
            });
            self.left -= limit;
        }
    }
}

/// Every endpoint's runtime state, by id (0: plain URLs).
pub(crate) struct Endpoints {
    by_id: BTreeMap<i64, Runtime>,
    workers: usize,
    /// The endpoint the last claim round started with.
    turn: i64,
}

impl Endpoints {
    /// `rows`: every endpoint the database knows, with its saved health; `config`: the configured
    /// endpoints by name (each must be among `rows`).
    pub(crate) fn new(
        rows: Vec<(String, Health)>,
        config: &BTreeMap<String, Arc<Endpoint>>,
        workers: usize,
        now: i64,
    ) -> Endpoints {
        let mut by_id = BTreeMap::new();
        by_id.insert(0, Runtime::new(String::new(), None, Health::default(), now));
        for (name, health) in rows {
            let cfg = config.get(&name).cloned();
            by_id.insert(health.id, Runtime::new(name, cfg, health, now));
        }
        Endpoints {
            by_id,
            workers,
            turn: 0,
        }
    }

    /// Applies a reloaded configuration: `rows` as for [`Endpoints::new`]; runtime state stays.
    /// Returns the names of endpoints added, changed or removed.
    pub(crate) fn reconfigure(
        &mut self,
        rows: Vec<(String, Health)>,
        config: &BTreeMap<String, Arc<Endpoint>>,
        workers: usize,
        now: i64,
    ) -> Vec<String> {
        self.workers = workers;
        let mut changed = Vec::new();
        for (name, health) in rows {
            let cfg = config.get(&name).cloned();
            match self.by_id.get_mut(&health.id) {
                Some(rt) => {
                    if rt.config != cfg {
                        changed.push(name);
                        let new_rate = cfg.as_ref().and_then(|c| c.rate.clone());
                        let old_rate = rt.config.as_ref().and_then(|c| c.rate.clone());
                        rt.config = cfg;
                        rt.proven = false;
                        if new_rate != old_rate {
                            rt.tokens = rt.burst();
                        }
                        rt.want = true;
                    }
                }
                None => {
                    if cfg.is_some() {
                        changed.push(name.clone());
                    }
                    self.by_id
                        .insert(health.id, Runtime::new(name, cfg, health, now));
                }
            }
        }
        changed
    }

    /// The configuration of endpoint `id`, if it is configured.
    pub(crate) fn config(&self, id: i64) -> Option<&Arc<Endpoint>> {
        self.by_id.get(&id).and_then(|rt| rt.config.as_ref())
    }

    /// Names of endpoints that the database knows but the config does not.
    pub(crate) fn unconfigured(&self) -> Vec<(i64, String)> {
        self.by_id
            .iter()
            .filter(|(id, rt)| **id != 0 && rt.config.is_none())
            .map(|(id, rt)| (*id, rt.name.clone()))
            .collect()
    }

    /// Something new may be due everywhere (a wake-up, a commit by another process).
    pub(crate) fn want_all(&mut self) {
        for rt in self.by_id.values_mut() {
            rt.want = true;
        }
    }

    /// Endpoint `id` may have a message due now (a lane's next message was promoted).
    pub(crate) fn want(&mut self, id: i64) {
        if let Some(rt) = self.by_id.get_mut(&id) {
            rt.want = true;
        }
    }

    /// A retry of endpoint `id` is due at `due_at`.
    pub(crate) fn due(&mut self, id: i64, due_at: i64) {
        if let Some(rt) = self.by_id.get_mut(&id) {
            rt.next_due = Some(rt.next_due.map_or(due_at, |d| d.min(due_at)));
        }
    }

    /// How many more requests failing endpoints may have in flight: together at most a quarter
    /// of the workers (at least one), so that endpoints that time out cannot take the pool.
    fn degraded_room(&self) -> usize {
        let used: usize = self
            .by_id
            .values()
            .filter(|rt| rt.degraded())
            .map(|rt| rt.in_flight)
            .sum();
        (self.workers / 4).max(1).saturating_sub(used)
    }

    /// The claims to make now, with `free` claim slots in all. Each round starts one endpoint
    /// further on, so that none always goes first.
    pub(crate) fn plan(&mut self, free: usize, now: i64) -> Vec<Claim> {
        let start = self
            .by_id
            .range(self.turn + 1..)
            .next()
            .map_or(0, |(id, _)| *id);
        self.turn = start;
        let mut round = Round {
            claims: Vec::new(),
            left: free,
            room: self.degraded_room(),
            workers: self.workers,
            now,
        };
        for (id, rt) in self.by_id.range_mut(start..) {
            round.offer(*id, rt);
        }
        for (id, rt) in self.by_id.range_mut(..start) {
            round.offer(*id, rt);
        }
        round.claims
    }

    /// Accounts for what a planned round claimed: in-flight counts, tokens, and what is due next.
    pub(crate) fn claimed(&mut self, jobs: &[Job], next_due: &[(i64, Option<i64>)]) {
        for job in jobs {
            if let Some(rt) = self.by_id.get_mut(&job.endpoint) {
                rt.in_flight += 1;
                if rt.config.as_ref().is_some_and(|c| c.rate.is_some()) {
                    rt.tokens -= 1.0;
                }
            }
        }
        for (id, due) in next_due {
            if let Some(rt) = self.by_id.get_mut(id) {
                rt.want = false;
                rt.next_due = *due;
            }
        }
    }

    /// A claimed job went back to pending without an attempt (shutdown).
    pub(crate) fn released(&mut self, id: i64) {
        if let Some(rt) = self.by_id.get_mut(&id) {
            rt.in_flight = rt.in_flight.saturating_sub(1);
        }
    }

    /// Whether any endpoint can be claimed right now.
    pub(crate) fn ready(&self, now: i64) -> bool {
        let room = self.degraded_room();
        self.by_id
            .values()
            .any(|rt| rt.has_work(now) && rt.allowed(self.workers, now, room) > 0)
    }

    /// The earliest time (ms) at which some endpoint held back by time can be claimed.
    pub(crate) fn next_ready(&self, now: i64) -> Option<i64> {
        let room = self.degraded_room();
        self.by_id
            .values()
            .filter_map(|rt| {
                if rt.config.is_none() && rt.health.id == 0 {
                    return if rt.want { Some(now) } else { rt.next_due };
                }
                rt.ready_at(self.workers, now, room)
            })
            .min()
    }

    /// Fills in a claimed job of a named endpoint from its configuration: the URL (its path
    /// appended), headers (the message's own win), signing keys and timeout.
    pub(crate) fn complete(&self, job: &mut Job) {
        let Some(c) = self.config(job.endpoint) else {
            return;
        };
        job.to_endpoint_url = job.url.is_empty();
        job.url = c.url_for(&job.url);
        let mut headers = c.headers.clone();
        for (name, value) in std::mem::take(&mut job.headers) {
            crate::message::set_header(&mut headers, &name, &value);
        }
        job.headers = headers;
        if !c.keys.is_empty() {
            job.keys = Some(Arc::clone(&c.keys));
        }
        job.timeout = c.timeout;
    }

    /// The attempt budget and lane policy of endpoint `id`: (max_attempts, dead blocks the lane).
    pub(crate) fn policy(&self, id: i64) -> (Option<u32>, bool) {
        self.config(id).map_or((None, true), |c| {
            (c.max_attempts, c.on_dead == OnDead::Block)
        })
    }

    /// Updates the health of the finished attempt's endpoint; returns what an operator should hear.
    ///
    /// `410 Gone` disables the endpoint when it came for the endpoint's own URL (a message without
    /// a path), or for `GONE_STREAK` messages in a row; each of those messages is dead-lettered
    /// (the dispatcher's business), never held or sent again.
    /// The attempt's `effect` is the verdict's (`verdict::judge`): this never looks at a status.
    pub(crate) fn finished(
        &mut self,
        endpoint: i64,
        effect: Effect,
        summary: &str,
        now: i64,
    ) -> Option<Event> {
        let rt = self.by_id.get_mut(&endpoint)?;
        rt.in_flight = rt.in_flight.saturating_sub(1);
        let c = rt.config.clone()?;
        if effect == Effect::None {
            return None;
        }
        rt.dirty = true;
        let own_url = match effect {
            Effect::Gone { own_url } => {
                rt.gone += 1;
                own_url
            }
            _ => {
                rt.gone = 0;
                false
            }
        };
        let gone = match (own_url, rt.gone) {
            (true, _) => Some("410 Gone for the endpoint's own URL".to_owned()),
            (false, n) if n >= GONE_STREAK => Some(format!("410 Gone for {n} messages in a row")),
            _ => None,
        };
        let h = &mut rt.health;
        if effect == Effect::Success {
            let down_since = h.failing_since.take();
            rt.proven = true;
            h.failures = 0;
            h.last_success_at = Some(now);
            rt.probe_interval = c.breaker_cooldown;
            if h.state == OPEN {
                rt.set_state(CLOSED, None, now);
                rt.want = true;
                return Some(Event::Recovered {
                    endpoint: rt.name.clone(),
                    down_ms: down_since.map_or(0, |s| now - s),
                });
            }
            return None;
        }
        h.failures += 1;
        let since = *h.failing_since.get_or_insert(now);
        h.last_error = Some(summary.to_owned());
        h.last_error_at = Some(now);
        if h.state == DISABLED {
            return None;
        }
        let failures = h.failures;
        let disable = if let Some(why) = gone {
            Some(format!(
                "{why}: the receiver asked to stop (last: {summary})"
            ))
        } else if now - since >= crate::time::duration_ms(c.disable_after) {
            Some(format!(
                "failing without a success for {} (disable_after {})",
                humantime::format_duration(Duration::from_secs(((now - since) / 1000) as u64)),
                humantime::format_duration(c.disable_after)
            ))
        } else {
            None
        };
        if let Some(reason) = disable {
            rt.set_state(DISABLED, Some(reason.clone()), now);
            return Some(Event::Disabled {
                endpoint: rt.name.clone(),
                reason,
            });
        }
        if rt.health.state == OPEN {
            // A failed probe (not a request that was in flight when it opened) doubles the wait.
            if now >= rt.next_probe {
                rt.probe_interval = (rt.probe_interval * 2).min(MAX_PROBE_INTERVAL);
                rt.next_probe = now + crate::time::duration_ms(rt.probe_interval);
            }
            return None;
        }
        if failures >= i64::from(c.breaker_failures) {
            rt.probe_interval = c.breaker_cooldown;
            rt.next_probe = now + crate::time::duration_ms(c.breaker_cooldown);
            rt.set_state(
                OPEN,
                Some(format!("{failures} consecutive failures, last: {summary}")),
                now,
            );
            return Some(Event::Opened {
                endpoint: rt.name.clone(),
                failures,
                error: summary.to_owned(),
            });
        }
        None
    }

    /// An operator enabled endpoint `id`: healthy, failures forgotten.
    pub(crate) fn enable(&mut self, id: i64, now: i64) -> Option<String> {
        let rt = self.by_id.get_mut(&id)?;
        rt.health.failures = 0;
        rt.health.failing_since = None;
        rt.probe_interval = rt
            .config
            .as_ref()
            .map_or(Duration::from_secs(10), |c| c.breaker_cooldown);
        rt.set_state(CLOSED, None, now);
        rt.want = true;
        Some(rt.name.clone())
    }

    /// Health to save: changed states at once, counters at most every second (all with `force`).
    /// [`Endpoints::saved`] marks them saved once the transaction committed.
    pub(crate) fn health_to_save(&self, now: i64, force: bool) -> Vec<Health> {
        self.by_id
            .values()
            .filter(|rt| rt.dirty && rt.health.id != 0)
            .filter(|rt| force || rt.state_changed || now - rt.saved_at >= SAVE_EVERY_MS)
            .map(|rt| rt.health.clone())
            .collect()
    }

    /// Whether [`Endpoints::health_to_save`] has anything (without building the list).
    pub(crate) fn health_due(&self, now: i64) -> bool {
        self.by_id.values().any(|rt| {
            rt.dirty
                && rt.health.id != 0
                && (rt.state_changed || now - rt.saved_at >= SAVE_EVERY_MS)
        })
    }

    /// The health rows `saved` are in the database.
    pub(crate) fn saved(&mut self, saved: &[Health], now: i64) {
        for h in saved {
            if let Some(rt) = self.by_id.get_mut(&h.id) {
                if rt.health == *h {
                    rt.dirty = false;
                    rt.state_changed = false;
                }
                rt.saved_at = now;
            }
        }
    }

    /// How many configured endpoints are open and how many disabled.
    pub(crate) fn unhealthy(&self) -> (usize, usize) {
        let configured = || self.by_id.values().filter(|rt| rt.config.is_some());
        (
            configured().filter(|rt| rt.health.state == OPEN).count(),
            configured()
                .filter(|rt| rt.health.state == DISABLED)
                .count(),
        )
    }

    /// The longest request timeout of any endpoint, at least `default`.
    pub(crate) fn max_timeout(&self, default: Duration) -> Duration {
        self.by_id
            .values()
            .filter_map(|rt| rt.config.as_ref()?.timeout)
            .fold(default, Duration::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Rate;

    fn endpoint(f: impl FnOnce(&mut Endpoint)) -> Arc<Endpoint> {
        let mut e = Endpoint {
            name: "e".into(),
            url: "http://127.0.0.1:1/hook".into(),
            headers: vec![("Authorization".into(), "Bearer x".into())],
            keys: Arc::default(),
            timeout: None,
            max_attempts: None,
            concurrency: Some(2),
            rate: None,
            ordered: false,
            on_dead: OnDead::Block,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(10),
            disable_after: Duration::from_secs(100),
            unreadable: Vec::new(),
        };
        f(&mut e);
        Arc::new(e)
    }

    fn setup(e: Arc<Endpoint>) -> Endpoints {
        let config = BTreeMap::from([("e".to_owned(), e)]);
        let health = Health {
            id: 1,
            ..Health::default()
        };
        let mut eps = Endpoints::new(vec![("e".into(), health)], &config, 16, 0);
        eps.claimed(&[], &[(0, None)]);
        // Proven by a first success, as a healthy receiver is within its first request.
        assert_eq!(
            limit(&mut eps, 0),
            1,
            "slow start: one request until a success"
        );
        eps.claimed(&[job()], &[]);
        eps.finished(1, finished(200), "", 0);
        eps
    }

    fn job() -> Job {
        Job {
            endpoint: 1,
            ..Job::default()
        }
    }

    /// The effect the verdict gives an attempt answered `code`.
    fn finished(code: u16) -> Effect {
        match code {
            200..=299 => Effect::Success,
            410 => Effect::Gone { own_url: false },
            _ => Effect::Failure,
        }
    }

    fn limit(eps: &mut Endpoints, now: i64) -> usize {
        eps.plan(100, now)
            .iter()
            .filter(|c| c.endpoint == 1)
            .map(|c| c.limit)
            .sum()
    }

    #[test]
    fn failing_endpoints_get_one_request_each_within_a_shared_budget() {
        let mut eps = setup(endpoint(|e| e.concurrency = Some(8)));
        eps.claimed(&[job()], &[]);
        eps.finished(1, finished(500), "HTTP 500", 1);
        assert_eq!(limit(&mut eps, 1), 1, "after a failure: one at a time");
        // Four in flight for failing endpoints (16 workers / 4) leave no room for more.
        eps.by_id.get_mut(&1).unwrap().in_flight = 4;
        assert_eq!(limit(&mut eps, 1), 0);
        assert!(!eps.ready(1));
        assert_eq!(eps.next_ready(1), None);
    }

    /// When the free slots run out, each round starts with the next endpoint: none starves.
    #[test]
    fn claim_rounds_take_turns() {
        let e = endpoint(|e| e.concurrency = Some(100));
        let config = BTreeMap::from([("a".to_owned(), e.clone()), ("b".to_owned(), e)]);
        let rows = (1..=2)
            .map(|id| {
                let name = if id == 1 { "a" } else { "b" };
                let health = Health {
                    id,
                    ..Health::default()
                };
                (name.to_owned(), health)
            })
            .collect();
        let mut eps = Endpoints::new(rows, &config, 16, 0);
        let firsts: Vec<i64> = (0..4).map(|_| eps.plan(1, 0)[0].endpoint).collect();
        assert_eq!(firsts, [1, 2, 0, 1]);
    }

    #[test]
    fn concurrency_caps_claims_until_one_finishes() {
        let mut eps = setup(endpoint(|_| {}));
        assert_eq!(limit(&mut eps, 0), 2);
        eps.claimed(&[job(), job()], &[]);
        assert_eq!(limit(&mut eps, 0), 0);
        assert!(!eps.ready(0));
        eps.finished(1, finished(200), "", 1);
        assert_eq!(limit(&mut eps, 1), 1);
    }

    #[test]
    fn rate_refills_tokens_over_time() {
        let mut eps = setup(endpoint(|e| {
            e.concurrency = Some(100);
            e.rate = Some(Rate::parse("rate", "50/s").unwrap());
        }));
        assert_eq!(
            limit(&mut eps, 0),
            4,
            "burst of 0.1 s, less the first request"
        );
        eps.claimed(&vec![job(); 4], &[]);
        assert_eq!(limit(&mut eps, 0), 0);
        assert_eq!(eps.next_ready(0), Some(20));
        assert_eq!(limit(&mut eps, 40), 2);
    }

    #[test]
    fn breaker_opens_probes_with_growing_intervals_and_closes() {
        let mut eps = setup(endpoint(|_| {}));
        for i in 0..2 {
            eps.claimed(&[job()], &[]);
            assert_eq!(eps.finished(1, finished(500), "HTTP 500", i), None);
        }
        eps.claimed(&[job()], &[]);
        assert!(matches!(
            eps.finished(1, finished(500), "HTTP 500", 1_000),
            Some(Event::Opened { failures: 3, .. })
        ));
        assert_eq!(limit(&mut eps, 1_000), 0, "open: nothing claimed");
        assert_eq!(eps.next_ready(1_000), Some(11_000));
        assert_eq!(limit(&mut eps, 11_000), 1, "one probe");
        eps.claimed(&[job()], &[]);
        assert_eq!(limit(&mut eps, 11_000), 0, "only one probe at a time");
        assert_eq!(eps.finished(1, finished(503), "HTTP 503", 12_000), None);
        assert_eq!(eps.next_ready(12_000), Some(32_000), "interval doubled");
        // A request that was in flight before (not a probe) does not double it again.
        eps.claimed(&[job()], &[]);
        assert_eq!(eps.finished(1, finished(503), "HTTP 503", 13_000), None);
        assert_eq!(eps.next_ready(13_000), Some(32_000));
        eps.claimed(&[job()], &[]);
        assert!(matches!(
            eps.finished(1, finished(204), "", 32_000),
            Some(Event::Recovered {
                down_ms: 32_000,
                ..
            })
        ));
        assert_eq!(limit(&mut eps, 32_000), 2);
        let saved = eps.health_to_save(32_000, false);
        assert_eq!(saved.len(), 1);
        assert_eq!((saved[0].state, saved[0].failures), (CLOSED, 0));
        eps.saved(&saved, 32_000);
        assert!(eps.health_to_save(40_000, false).is_empty());
    }

    /// Regression test for issue 12 (B.3): a 410 on one path must not take the endpoint down;
    /// a 410 for its own URL, or several in a row, does.
    #[test]
    fn gone_disables_only_for_the_endpoint_url_or_a_streak() {
        let mut eps = setup(endpoint(|_| {}));
        for i in 1..GONE_STREAK {
            eps.claimed(&[job()], &[]);
            assert_eq!(
                eps.finished(1, finished(410), "HTTP 410", i64::from(i)),
                None
            );
        }
        eps.claimed(&[job()], &[]);
        assert_eq!(
            eps.finished(1, finished(200), "", 10),
            None,
            "a success ends the streak"
        );
        for i in 0..GONE_STREAK {
            eps.claimed(&[job()], &[]);
            let ev = eps.finished(1, finished(410), "HTTP 410", 20 + i64::from(i));
            assert_eq!(
                matches!(ev, Some(Event::Disabled { .. })),
                i + 1 == GONE_STREAK,
                "410 number {}",
                i + 1
            );
        }
        assert_eq!(limit(&mut eps, 1_000_000), 0);
        assert_eq!(eps.next_ready(1_000_000), None);
        eps.enable(1, 10);
        assert_eq!(limit(&mut eps, 10), 2);

        let mut eps = setup(endpoint(|_| {}));
        eps.claimed(&[job()], &[]);
        let own = Effect::Gone { own_url: true };
        assert!(matches!(
            eps.finished(1, own, "HTTP 410", 5),
            Some(Event::Disabled { .. })
        ));
    }

    #[test]
    fn long_failure_disables_until_enabled() {
        let mut eps = setup(endpoint(|e| e.breaker_failures = 1000));
        eps.claimed(&[job()], &[]);
        assert_eq!(eps.finished(1, finished(500), "HTTP 500", 0), None);
        eps.claimed(&[job()], &[]);
        assert!(matches!(
            eps.finished(1, finished(500), "HTTP 500", 100_000),
            Some(Event::Disabled { .. })
        ));
    }

    #[test]
    fn complete_fills_url_headers_and_keys() {
        let eps = setup(endpoint(|e| {
            e.keys = Arc::new(vec![crate::sign::Key::parse(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            )
            .unwrap()]);
        }));
        let mut j = Job {
            url: "/v2".into(),
            headers: vec![("authorization".into(), "Bearer mine".into())],
            ..job()
        };
        eps.complete(&mut j);
        assert_eq!(j.url, "http://127.0.0.1:1/hook/v2");
        assert_eq!(
            j.headers,
            vec![("authorization".to_owned(), "Bearer mine".to_owned())]
        );
        assert_eq!(j.keys.unwrap().len(), 1);
    }
}

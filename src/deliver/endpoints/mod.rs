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
//! it again. Plain-URL messages belong to their origin (`scheme://host:port`, see
//! `message::origin`), an implicit endpoint with the defaults (half the workers, slow start, the
//! failing budget, the breaker; never disabled, nothing added to the request). Endpoint 0 holds
//! plain-URL messages stored before origins existed: no limits, no breaker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Job;
use crate::counters::EndpointState;
use crate::endpoint::{Endpoint, OnDead, OriginPolicy, MAX_PROBE_INTERVAL};
use crate::model::Circuit::{Closed as CLOSED, Disabled as DISABLED, Open as OPEN};
use crate::model::{Claim, Health};
use crate::verdict::Effect;
use round::Round;
use runtime::Runtime;

mod round;
mod runtime;

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

/// The policy of endpoint `name`: its configuration, or an origin's.
fn configured(
    config: &BTreeMap<String, Arc<Endpoint>>,
    name: &str,
    origins: &OriginPolicy,
) -> Option<Arc<Endpoint>> {
    config.get(name).cloned().or_else(|| {
        crate::message::is_origin(name).then(|| Arc::new(Endpoint::for_origin(name, origins)))
    })
}

/// Every endpoint's runtime state, by id (0: plain URLs).
pub(crate) struct Endpoints {
    by_id: BTreeMap<i64, Runtime>,
    /// Ids by name (endpoints and origins).
    by_name: std::collections::HashMap<String, i64>,
    origins: OriginPolicy,
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
        let mut eps = Endpoints {
            by_id,
            by_name: std::collections::HashMap::new(),
            origins: OriginPolicy::default(),
            workers,
            turn: 0,
        };
        eps.add(rows, config, now);
        eps
    }

    /// Adds the endpoints of `rows` it does not know yet (origins and endpoints the store made
    /// since): their policy from `config`, or an origin's defaults.
    pub(crate) fn add(
        &mut self,
        rows: Vec<(String, Health)>,
        config: &BTreeMap<String, Arc<Endpoint>>,
        now: i64,
    ) {
        for (name, health) in rows {
            if self.by_id.contains_key(&health.id) {
                continue;
            }
            let cfg = configured(config, &name, &self.origins);
            self.by_name.insert(name.clone(), health.id);
            self.by_id
                .insert(health.id, Runtime::new(name, cfg, health, now));
        }
    }

    /// Sets the policy of origins (`[origins]`), for those known and those to come.
    pub(crate) fn set_origin_policy(&mut self, p: &OriginPolicy) {
        self.origins = p.clone();
        for rt in self.by_id.values_mut() {
            if crate::message::is_origin(&rt.name) {
                rt.config = Some(Arc::new(Endpoint::for_origin(&rt.name, p)));
            }
        }
    }

    /// The highest endpoint id known (rows above it are new).
    pub(crate) fn max_id(&self) -> i64 {
        self.by_id.keys().next_back().copied().unwrap_or(0)
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
            let cfg = configured(config, &name, &self.origins);
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
                    if cfg.is_some() && !crate::message::is_origin(&name) {
                        changed.push(name.clone());
                    }
                    self.by_name.insert(name.clone(), health.id);
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

    /// Like `want`, by name (`None`: plain URLs).
    pub(crate) fn want_named(&mut self, name: Option<&str>) {
        match name {
            None => self.want(0),
            Some(n) => {
                if let Some(id) = self.by_name.get(n).copied() {
                    self.want(id);
                }
            }
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
            free,
            offers: free,
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
        if c.is_origin() {
            return; // a plain URL: nothing of an endpoint's is added
        }
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
        let disable = if c.is_origin() {
            None // an origin is never disabled: its breaker holds it, its messages dead-letter
        } else if let Some(why) = gone {
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

    /// Every configured endpoint as it is now, for the published snapshot.
    pub(crate) fn states(&self) -> Vec<EndpointState> {
        self.by_id
            .iter()
            .filter(|(_, rt)| rt.config.as_ref().is_some_and(|c| !c.is_origin()))
            .map(|(id, rt)| EndpointState {
                id: *id,
                name: rt.name.clone(),
                circuit: rt.health.state,
                failures: rt.health.failures,
                in_flight: rt.in_flight,
                rate_limited: rt.rate_limited,
            })
            .collect()
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
mod tests;

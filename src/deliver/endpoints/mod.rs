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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::Job;
use crate::counters::EndpointState;
use crate::endpoint::{Endpoint, OnDead, OriginPolicy, MAX_PROBE_INTERVAL};
use crate::model::Circuit::{Closed as CLOSED, Disabled as DISABLED, Open as OPEN};
use crate::model::Health;
use crate::verdict::Effect;
use runtime::Runtime;

mod active;
mod configure;
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
    /// Endpoints a turn looks at (see `active`): ids.
    active: BTreeSet<i64>,
    /// Endpoints whose only work is a retry due later: (due time, id).
    later: BTreeSet<(i64, i64)>,
    /// Endpoints with requests in flight (at most as many as claim slots).
    flying: BTreeSet<i64>,
    /// When idle endpoints were last taken out of `active` (ms).
    settled_at: i64,
    /// Endpoints with health not saved yet; `urgent`: a state among them changed (saved at
    /// once); the others at most every `SAVE_EVERY_MS` after `health_saved_at`.
    dirty: BTreeSet<i64>,
    urgent: bool,
    health_saved_at: i64,
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
            active: BTreeSet::from([0]),
            later: BTreeSet::new(),
            flying: BTreeSet::new(),
            settled_at: i64::MIN,
            dirty: BTreeSet::new(),
            urgent: false,
            health_saved_at: 0,
        };
        eps.add(rows, config, now);
        eps
    }

    /// The highest endpoint id known (rows above it are new).
    pub(crate) fn max_id(&self) -> i64 {
        self.by_id.keys().next_back().copied().unwrap_or(0)
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
        if *c.route != crate::egress::Route::default() {
            job.route = Some(Arc::clone(&c.route));
        }
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
        let event = self.judge(endpoint, effect, summary, now);
        self.unsaved(endpoint);
        event
    }

    /// Endpoint `id`'s health changed (or not): remember it for the next save.
    fn unsaved(&mut self, id: i64) {
        if let Some(rt) = self.by_id.get(&id).filter(|rt| rt.dirty) {
            self.urgent |= rt.state_changed;
            self.dirty.insert(id);
        }
    }

    fn judge(&mut self, endpoint: i64, effect: Effect, summary: &str, now: i64) -> Option<Event> {
        self.active.insert(endpoint);
        let rt = self.by_id.get_mut(&endpoint)?;
        rt.in_flight = rt.in_flight.saturating_sub(1);
        if rt.in_flight == 0 {
            self.flying.remove(&endpoint);
        }
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
        self.active.insert(id);
        let rt = self.by_id.get_mut(&id)?;
        rt.health.failures = 0;
        rt.health.failing_since = None;
        rt.reset_probes();
        rt.set_state(CLOSED, None, now);
        rt.want = true;
        let name = rt.name.clone();
        self.unsaved(id);
        Some(name)
    }

    /// Takes the state that other daemons of a shared queue gave endpoints (`rows`: saved
    /// health newer than this daemon's, by `gen`): opened, disabled, closed again or enabled by
    /// an operator elsewhere. A row with the state this daemon has (its own change, saved) only
    /// moves the generation on. Returns the endpoints whose state changed here, for the log.
    pub(crate) fn adopt(&mut self, rows: &[Health], now: i64) -> Vec<(String, Health)> {
        let mut changed = Vec::new();
        for h in rows {
            let Some(rt) = self.by_id.get_mut(&h.id) else {
                continue;
            };
            if h.gen <= rt.health.gen {
                continue;
            }
            rt.health.gen = h.gen;
            if h.state == rt.health.state {
                continue;
            }
            rt.health.state = h.state;
            rt.health.reason.clone_from(&h.reason);
            rt.health.changed_at = h.changed_at;
            rt.health.failures = h.failures;
            rt.health.failing_since = h.failing_since;
            rt.reset_probes();
            // The first probe of a breaker opened elsewhere after the cooldown from now; an
            // endpoint closed or enabled elsewhere has its messages looked for at once.
            rt.next_probe = now + crate::time::duration_ms(rt.probe_interval);
            rt.want |= h.state == CLOSED;
            self.active.insert(h.id);
            changed.push((rt.name.clone(), rt.health.clone()));
        }
        changed
    }

    /// The highest generation of shared health this daemon has taken (0: none).
    pub(crate) fn health_gen(&self) -> i64 {
        self.by_id
            .values()
            .map(|rt| rt.health.gen)
            .max()
            .unwrap_or(0)
    }

    /// Health to save: changed states at once, counters at most every second (all with `force`).
    /// [`Endpoints::saved`] marks them saved once the transaction committed.
    pub(crate) fn health_to_save(&self, now: i64, force: bool) -> Vec<Health> {
        let all = force || now - self.health_saved_at >= SAVE_EVERY_MS;
        if !all && !self.urgent {
            return Vec::new();
        }
        self.dirty
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .filter(|rt| rt.health.id != 0 && (all || rt.state_changed))
            .map(|rt| rt.health.clone())
            .collect()
    }

    /// Whether [`Endpoints::health_to_save`] has anything (without building the list).
    pub(crate) fn health_due(&self, now: i64) -> bool {
        !self.dirty.is_empty() && (self.urgent || now - self.health_saved_at >= SAVE_EVERY_MS)
    }

    /// The health rows `saved` are in the database.
    pub(crate) fn saved(&mut self, saved: &[Health], now: i64) {
        for h in saved {
            if let Some(rt) = self.by_id.get_mut(&h.id) {
                if rt.health == *h {
                    rt.dirty = false;
                    rt.state_changed = false;
                    self.dirty.remove(&h.id);
                }
            }
        }
        self.health_saved_at = now;
        let by_id = &self.by_id;
        // Plain URLs (id 0) have no row: never saved, never kept.
        self.dirty
            .retain(|id| *id != 0 && by_id.get(id).is_some_and(|rt| rt.dirty));
        self.urgent = self
            .dirty
            .iter()
            .any(|id| by_id.get(id).is_some_and(|rt| rt.state_changed));
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

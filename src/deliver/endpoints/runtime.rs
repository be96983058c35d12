//! One endpoint's runtime state: its configuration, health, in-flight count, token bucket and
//! what may be due; how many of its messages may be claimed now, and when next.

use std::sync::Arc;
use std::time::Duration;

use super::BURST_SECS;
use crate::endpoint::Endpoint;
use crate::model::Circuit::{Disabled as DISABLED, Open as OPEN};
use crate::model::{Circuit, Health};

pub(super) struct Runtime {
    pub(super) name: String,
    /// None: plain URLs (id 0), or an endpoint no longer in the config (held).
    pub(super) config: Option<Arc<Endpoint>>,
    pub(super) health: Health,
    pub(super) probe_interval: Duration,
    pub(super) next_probe: i64,
    pub(super) in_flight: usize,
    pub(super) tokens: f64,
    pub(super) refilled_at: i64,
    /// More may be due than were claimed (or a wake-up came): claim at the next chance.
    pub(super) want: bool,
    /// Earliest known due time of a pending message.
    pub(super) next_due: Option<i64>,
    pub(super) dirty: bool,
    pub(super) state_changed: bool,
    /// A request succeeded since start (or since its configuration changed).
    pub(super) proven: bool,
    /// Consecutive `410 Gone` answers.
    pub(super) gone: u32,
    /// Claim rounds in which due messages waited for the rate limit alone (a metric).
    pub(super) rate_limited: u64,
}

impl Runtime {
    pub(super) fn new(
        name: String,
        config: Option<Arc<Endpoint>>,
        health: Health,
        now: i64,
    ) -> Runtime {
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
            rate_limited: 0,
            tokens: 0.0,
            refilled_at: now,
            want: true,
            next_due: None,
            dirty: false,
            state_changed: false,
            proven: false,
            gone: 0,
        };
        rt.tokens = rt.burst();
        rt
    }

    /// Takes new settings (`None`: no longer configured); false if they are the same. It must
    /// prove itself again (slow start), and a new rate starts with a full bucket.
    pub(super) fn update(&mut self, config: Option<Arc<Endpoint>>) -> bool {
        if self.config == config {
            return false;
        }
        let new_rate = config.as_ref().and_then(|c| c.rate.clone());
        let old_rate = self.config.as_ref().and_then(|c| c.rate.clone());
        self.config = config;
        self.proven = false;
        if new_rate != old_rate {
            self.tokens = self.burst();
        }
        self.want = true;
        true
    }

    pub(super) fn burst(&self) -> f64 {
        self.config
            .as_ref()
            .and_then(|c| c.rate.as_ref())
            .map_or(0.0, |r| (r.per_sec * BURST_SECS).max(1.0))
    }

    /// Tokens in the bucket at `now`.
    pub(super) fn tokens_at(&self, now: i64) -> f64 {
        match self.config.as_ref().and_then(|c| c.rate.as_ref()) {
            Some(rate) => {
                let elapsed = (now - self.refilled_at).max(0) as f64 / 1000.0;
                (self.tokens + elapsed * rate.per_sec).min(self.burst())
            }
            None => 0.0,
        }
    }

    pub(super) fn refill(&mut self, now: i64) {
        self.tokens = self.tokens_at(now);
        self.refilled_at = now;
    }

    pub(super) fn has_work(&self, now: i64) -> bool {
        self.want || self.next_due.is_some_and(|d| d <= now)
    }

    /// Failing (its last attempt failed, or open): one request at a time, within the shared
    /// budget of failing endpoints.
    pub(super) fn degraded(&self) -> bool {
        self.config.is_some() && (self.health.failures > 0 || self.health.state == OPEN)
    }

    /// Not yet proven (no success since start) or failing: one request at a time.
    pub(super) fn cap(&self, c: &Endpoint, workers: usize) -> usize {
        if self.degraded() || !self.proven {
            1
        } else {
            c.concurrency_with(workers)
        }
    }

    /// How many may be claimed now (usize::MAX: no limit of its own); `room`: what the failing
    /// endpoints' budget has left.
    pub(super) fn allowed(&self, workers: usize, now: i64, room: usize) -> usize {
        let Some(c) = &self.config else {
            return if self.health.id == 0 { usize::MAX } else { 0 };
        };
        if c.paused {
            return 0;
        }
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

    /// Whether the rate limit alone holds back a claim now.
    pub(super) fn held_by_rate(&self, workers: usize, now: i64, room: usize) -> bool {
        let Some(c) = &self.config else {
            return false;
        };
        c.rate.is_some()
            && !c.paused
            && self.tokens_at(now) < 1.0
            && self.health.state != DISABLED
            && self.health.state != OPEN
            && self.cap(c, workers) > self.in_flight
            && (!self.degraded() || room > 0)
    }

    /// When this endpoint may next be claimed, if it is held back only by time.
    pub(super) fn ready_at(&self, workers: usize, now: i64, room: usize) -> Option<i64> {
        let due = if self.want { now } else { self.next_due? };
        let c = self.config.as_ref().filter(|c| !c.paused)?;
        if self.degraded() && room == 0 {
            return None; // woken when a failing endpoint's request finishes (`waits_for_flight`)
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

    /// Probes go back to the configured cooldown (a closed or enabled endpoint starts over).
    pub(super) fn reset_probes(&mut self) {
        self.probe_interval = self
            .config
            .as_ref()
            .map_or(Duration::from_secs(10), |c| c.breaker_cooldown);
    }

    pub(super) fn set_state(&mut self, state: Circuit, reason: Option<String>, now: i64) {
        self.health.state = state;
        self.health.reason = reason;
        self.health.changed_at = Some(now);
        self.state_changed = true;
        self.dirty = true;
    }
}

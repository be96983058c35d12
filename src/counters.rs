//! The daemon's counters: monotonic, never reset (a reader takes differences between two looks),
//! per endpoint and kind of result, kept by the dispatcher from the verdicts it records; and the
//! snapshot it publishes (counters, every configured endpoint's health, requests in flight) for
//! every reader: `STATUS=`, the periodic log line, and the metrics. Pure data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::model::Circuit;
use crate::verdict::{Class, DeadReason, Outcome, Verdict};

/// Totals over every endpoint, since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) attempts: u64,
    pub(crate) delivered: u64,
    pub(crate) retried: u64,
    pub(crate) dead: u64,
    /// In flight when an operator cancelled them, cancelled when their attempt ended.
    pub(crate) cancelled: u64,
}

impl Totals {
    /// What happened between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            attempts: self.attempts - earlier.attempts,
            delivered: self.delivered - earlier.delivered,
            retried: self.retried - earlier.retried,
            dead: self.dead - earlier.dead,
            cancelled: self.cancelled - earlier.cancelled,
        }
    }
}

/// Counters by endpoint id (0: plain URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) attempts: BTreeMap<(i64, Class), u64>,
    pub(crate) deliveries: BTreeMap<i64, u64>,
    pub(crate) dead_letters: BTreeMap<(i64, DeadReason), u64>,
    pub(crate) retries: BTreeMap<i64, u64>,
    pub(crate) cancelled: BTreeMap<i64, u64>,
    totals: Totals,
}

impl Counters {
    /// Counts one judged attempt of endpoint `endpoint`; `cancelled`: it ended a message an
    /// operator had cancelled meanwhile (counted as such, not as a retry or a dead letter).
    pub(crate) fn attempt(&mut self, endpoint: i64, v: &Verdict, cancelled: bool) {
        *self.attempts.entry((endpoint, v.class)).or_default() += 1;
        self.totals.attempts += 1;
        match v.outcome {
            Outcome::Delivered => {
                *self.deliveries.entry(endpoint).or_default() += 1;
                self.totals.delivered += 1;
            }
            _ if cancelled => {
                *self.cancelled.entry(endpoint).or_default() += 1;
                self.totals.cancelled += 1;
            }
            Outcome::Retry { .. } => {
                *self.retries.entry(endpoint).or_default() += 1;
                self.totals.retried += 1;
            }
            Outcome::Dead { reason } => {
                *self.dead_letters.entry((endpoint, reason)).or_default() += 1;
                self.totals.dead += 1;
            }
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }
}

/// An endpoint as the dispatcher last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointState {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) circuit: Circuit,
    pub(crate) failures: i64,
    pub(crate) in_flight: usize,
    /// Claim rounds in which its due messages waited for its rate limit alone.
    pub(crate) rate_limited: u64,
}

/// What the dispatcher publishes: its counters, every configured endpoint's state, the requests
/// in flight.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) counters: Counters,
    pub(crate) endpoints: Vec<EndpointState>,
    pub(crate) in_flight: usize,
}

impl Snapshot {
    /// How many configured endpoints are open and how many disabled.
    pub(crate) fn unhealthy(&self) -> (usize, usize) {
        let count = |c| self.endpoints.iter().filter(|e| e.circuit == c).count();
        (count(Circuit::Open), count(Circuit::Disabled))
    }
}

/// The published snapshot, shared with readers on other threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Published(Arc<Mutex<Snapshot>>);

impl Published {
    pub(crate) fn set(&self, snapshot: Snapshot) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    pub(crate) fn get(&self) -> Snapshot {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Labels of one series: name and value pairs.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// Seconds an attempt may take, as histogram buckets.
const ATTEMPT_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds from enqueue to delivery (retries make it hours).
const END_TO_END_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0, 21600.0, 86400.0,
];

fn attempt_histogram() -> Histogram {
    Histogram::new(ATTEMPT_BUCKETS)
}

/// The latency histograms the dispatcher observes and the metrics show (shared: cloning shares).
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    /// Attempt durations by endpoint name (`""`: plain URLs).
    pub(crate) attempt: Family<Labels, Histogram, fn() -> Histogram>,
    /// Due time to attempt start.
    pub(crate) lag: Histogram,
    /// Enqueue (the uuid's time) to delivery.
    pub(crate) end_to_end: Histogram,
    /// The last hour and day, for the dashboard.
    pub(crate) history: crate::history::History,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies {
            attempt: Family::new_with_constructor(attempt_histogram),
            lag: Histogram::new(END_TO_END_BUCKETS),
            end_to_end: Histogram::new(END_TO_END_BUCKETS),
            history: crate::history::History::new(crate::time::now_ms()),
        }
    }
}

impl Latencies {
    pub(crate) fn attempt(&self, endpoint: &str, seconds: f64) {
        self.attempt
            .get_or_create(&vec![("endpoint", endpoint.to_owned())])
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Effect;

    fn verdict(outcome: Outcome, class: Class) -> Verdict {
        Verdict {
            outcome,
            effect: Effect::None,
            class,
        }
    }

    #[test]
    fn counters_only_grow_and_totals_give_differences() {
        let mut c = Counters::default();
        let before = c.totals();
        c.attempt(0, &verdict(Outcome::Delivered, Class::Success), false);
        c.attempt(3, &verdict(Outcome::Retry { at: 1 }, Class::Http5xx), false);
        c.attempt(
            3,
            &verdict(
                Outcome::Dead {
                    reason: DeadReason::Exhausted,
                },
                Class::Timeout,
            ),
            false,
        );
        c.attempt(3, &verdict(Outcome::Retry { at: 1 }, Class::Http5xx), true);
        let t = c.totals().since(&before);
        assert_eq!(
            (t.attempts, t.delivered, t.retried, t.dead, t.cancelled),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(c.attempts[&(3, Class::Http5xx)], 2);
        assert_eq!(c.dead_letters[&(3, DeadReason::Exhausted)], 1);
        assert_eq!(c.deliveries[&0], 1);
        let p = Published::default();
        let state = |id, circuit| EndpointState {
            id,
            name: format!("e{id}"),
            circuit,
            failures: 0,
            in_flight: 0,
            rate_limited: 0,
        };
        p.set(Snapshot {
            counters: c.clone(),
            endpoints: vec![
                state(1, Circuit::Open),
                state(2, Circuit::Closed),
                state(3, Circuit::Disabled),
                state(4, Circuit::Open),
            ],
            ..Snapshot::default()
        });
        assert_eq!(p.get().counters, c, "readers see what was published");
        assert_eq!(p.get().unhealthy(), (2, 1));
    }
}

//! The daemon's counters: monotonic, never reset (a reader takes differences between two looks),
//! per endpoint and kind of result, kept by the dispatcher from the verdicts it records; and the
//! snapshot it publishes (counters, every configured endpoint's health, requests in flight) for
//! every reader: `STATUS=`, the periodic log line, and the metrics. Pure data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

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

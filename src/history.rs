//! The recent past the dashboard draws, kept in memory since the daemon started: deliveries,
//! failed attempts and accepted messages per 10-second interval over the last hour, and per
//! endpoint the delivered and failed attempts of each of the last 24 hours with a latency
//! histogram. Bounded: 360 intervals, and per endpoint with attempts in the last day 24 hours
//! and 15 buckets (about 300 bytes with its name). Pure data: the dispatcher and the API record,
//! the API reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The length of one interval of the hour's series.
pub(crate) const INTERVAL_MS: i64 = 10_000;
/// Intervals kept: one hour.
const SLOTS: usize = 360;
const HOUR_MS: i64 = 3_600_000;
/// Hours kept per endpoint.
pub(crate) const HOURS: usize = 24;
/// Upper bounds (ms) of the latency buckets; a last bucket takes the rest.
const LATENCY_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// One interval's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Interval {
    /// When it starts (ms).
    pub(crate) at: i64,
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) accepted: u64,
}

/// One hour's attempts of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hour {
    pub(crate) delivered: u32,
    pub(crate) failed: u32,
}

#[derive(Debug, Clone, Default)]
struct Endpoint {
    /// The latest hour (since the epoch) counted: slot `h % HOURS` holds hour `h` for the 24
    /// hours up to it.
    last: i64,
    hours: [Hour; HOURS],
    latency: [u32; LATENCY_MS.len() + 1],
}

/// An endpoint's last day, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointDay {
    pub(crate) name: String,
    /// Oldest first; the last is the hour now.
    pub(crate) hours: Vec<Hour>,
    /// Of its attempts since the daemon started, the 95th percentile's bucket bound (ms).
    pub(crate) p95_ms: Option<f64>,
}

#[derive(Debug)]
struct Inner {
    started: i64,
    /// When endpoints without attempts in the last day were last let go.
    pruned: i64,
    /// Slot `i % SLOTS` holds interval `i` when its `at` is `i * INTERVAL_MS`.
    slots: Vec<Interval>,
    endpoints: HashMap<String, Endpoint>,
}

/// The shared history (cloning shares it).
#[derive(Debug, Clone)]
pub(crate) struct History(Arc<Mutex<Inner>>);

impl History {
    pub(crate) fn new(now: i64) -> History {
        History(Arc::new(Mutex::new(Inner {
            started: now,
            pruned: now,
            slots: vec![Interval::default(); SLOTS],
            endpoints: HashMap::new(),
        })))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One attempt ended at `now`: delivered or not, of endpoint `endpoint` (None: a plain URL).
    pub(crate) fn attempt(&self, endpoint: Option<&str>, delivered: bool, ms: f64, now: i64) {
        let mut inner = self.inner();
        let slot = inner.slot(now);
        match delivered {
            true => slot.delivered += 1,
            false => slot.failed += 1,
        }
        if now - inner.pruned > HOUR_MS {
            // Endpoints removed or idle for a day are let go even if nobody reads the history.
            inner.pruned = now;
            let this = now.div_euclid(HOUR_MS);
            inner.endpoints.retain(|_, e| e.last > this - HOURS as i64);
        }
        let Some(name) = endpoint else { return };
        if !inner.endpoints.contains_key(name) {
            inner.endpoints.insert(name.to_owned(), Endpoint::default());
        }
        let e = inner.endpoints.get_mut(name).expect("inserted above");
        let hour = e.hour(now);
        match delivered {
            true => hour.delivered += 1,
            false => hour.failed += 1,
        }
        let bucket = LATENCY_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_MS.len());
        e.latency[bucket] = e.latency[bucket].saturating_add(1);
    }

    /// `n` messages were accepted at `now`.
    pub(crate) fn accepted(&self, n: u64, now: i64) {
        self.inner().slot(now).accepted += n;
    }

    /// When the history starts (the daemon's start, ms).
    pub(crate) fn started(&self) -> i64 {
        self.inner().started
    }

    /// The last hour's intervals, oldest first, the last one the interval now (partial).
    pub(crate) fn series(&self, now: i64) -> Vec<Interval> {
        let inner = self.inner();
        let last = now.div_euclid(INTERVAL_MS);
        (last - SLOTS as i64 + 1..=last)
            .map(|i| {
                let at = i * INTERVAL_MS;
                let s = inner.slots[i.rem_euclid(SLOTS as i64) as usize];
                match s.at == at {
                    true => s,
                    false => Interval {
                        at,
                        ..Interval::default()
                    },
                }
            })
            .collect()
    }

    /// Every endpoint with attempts in the last 24 hours, by name; endpoints without are
    /// forgotten (their latency histogram too).
    pub(crate) fn endpoints(&self, now: i64) -> Vec<EndpointDay> {
        let mut inner = self.inner();
        let this = now.div_euclid(HOUR_MS);
        let mut out = Vec::new();
        inner.endpoints.retain(|name, e| {
            let hours: Vec<Hour> = (this - HOURS as i64 + 1..=this)
                .map(|h| match h <= e.last && h > e.last - HOURS as i64 {
                    true => e.hours[h.rem_euclid(HOURS as i64) as usize],
                    false => Hour::default(),
                })
                .collect();
            if hours.iter().all(|h| h.delivered == 0 && h.failed == 0) {
                return false;
            }
            out.push(EndpointDay {
                name: name.clone(),
                hours,
                p95_ms: e.p95(),
            });
            true
        });
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

impl Inner {
    fn slot(&mut self, now: i64) -> &mut Interval {
        let i = now.div_euclid(INTERVAL_MS);
        let slot = &mut self.slots[i.rem_euclid(SLOTS as i64) as usize];
        if slot.at != i * INTERVAL_MS {
            *slot = Interval {
                at: i * INTERVAL_MS,
                ..Interval::default()
            };
        }
        slot
    }
}

impl Endpoint {
    /// Hour `now`'s counts; hours passed since the last one counted start from zero. (A
    /// clock set back counts in the hour it says, if within the day kept.)
    fn hour(&mut self, now: i64) -> &mut Hour {
        let h = now.div_euclid(HOUR_MS);
        if h <= self.last - HOURS as i64 {
            // The clock went back over a day: start the day again.
            self.hours = [Hour::default(); HOURS];
            self.last = h;
        } else if h > self.last {
            let from = (self.last + 1).max(h - HOURS as i64 + 1);
            for passed in from..=h {
                self.hours[passed.rem_euclid(HOURS as i64) as usize] = Hour::default();
            }
            self.last = h;
        }
        &mut self.hours[h.rem_euclid(HOURS as i64) as usize]
    }

    fn p95(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|n| u64::from(*n)).sum();
        if total == 0 {
            return None;
        }
        let rank = total - total / 20; // the smallest count that covers 95%
        let mut seen = 0u64;
        for (i, n) in self.latency.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(LATENCY_MS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_hours_roll_over_and_are_forgotten() {
        let t0 = 1_800_000_000_000i64; // on an hour boundary
        let h = History::new(t0);
        h.attempt(Some("billing"), true, 3.0, t0);
        h.attempt(Some("billing"), false, 40.0, t0 + 1);
        h.attempt(None, true, 1.0, t0 + 2);
        h.accepted(5, t0 + 9_999);
        h.accepted(2, t0 + 10_000);
        let s = h.series(t0 + 10_000);
        assert_eq!(s.len(), SLOTS);
        let before = s[SLOTS - 2];
        assert_eq!(
            (before.at, before.delivered, before.failed, before.accepted),
            (t0, 2, 1, 5)
        );
        assert_eq!(s[SLOTS - 1].accepted, 2);
        // An hour later the interval's slot is reused: the old counts are gone.
        let later = h.series(t0 + HOUR_MS);
        assert!(later.iter().all(|i| i.delivered == 0), "{later:?}");
        h.attempt(None, true, 1.0, t0 + HOUR_MS);
        assert_eq!(h.series(t0 + HOUR_MS)[SLOTS - 1].delivered, 1);

        let days = h.endpoints(t0 + 2 * HOUR_MS);
        assert_eq!(days.len(), 1);
        let d = &days[0];
        assert_eq!(d.name, "billing");
        assert_eq!(d.hours.len(), HOURS);
        assert_eq!(
            d.hours[HOURS - 3],
            Hour {
                delivered: 1,
                failed: 1
            }
        );
        assert_eq!(d.p95_ms, Some(50.0), "one of two attempts took 40 ms");
        // A day later nothing is left of it.
        assert!(h.endpoints(t0 + 25 * HOUR_MS).is_empty());
        assert!(h.endpoints(t0).is_empty(), "forgotten, not hidden");

        // Idle for a day, an endpoint is let go by the next attempt, read or not.
        let h = History::new(t0);
        h.attempt(Some("gone"), true, 1.0, t0);
        h.attempt(None, true, 1.0, t0 + 30 * 60_000);
        assert_eq!(h.inner().endpoints.len(), 1, "within the day and the hour");
        h.attempt(None, true, 1.0, t0 + 25 * HOUR_MS);
        assert!(h.inner().endpoints.is_empty());

        // Hours between two attempts start from zero; a clock set back over a day starts over.
        let h = History::new(t0);
        h.attempt(Some("a"), true, 1.0, t0);
        h.attempt(Some("a"), false, 1.0, t0 + 3 * HOUR_MS);
        let day = &h.endpoints(t0 + 3 * HOUR_MS)[0].hours;
        assert_eq!((day[HOURS - 4].delivered, day[HOURS - 1].failed), (1, 1));
        assert_eq!(day.iter().map(|x| x.delivered + x.failed).sum::<u32>(), 2);
        h.attempt(Some("a"), true, 1.0, t0 - 2 * 24 * HOUR_MS);
        let day = &h.endpoints(t0 - 2 * 24 * HOUR_MS)[0].hours;
        assert_eq!(day.iter().map(|x| x.delivered + x.failed).sum::<u32>(), 1);
    }

    #[test]
    fn p95_is_the_bucket_that_covers_95_percent() {
        let t0 = 1_800_000_000_000i64;
        let h = History::new(t0);
        for i in 0..100 {
            let ms = if i < 95 { 0.5 } else { 200.0 };
            h.attempt(Some("a"), true, ms, t0);
        }
        assert_eq!(h.endpoints(t0)[0].p95_ms, Some(1.0));
        h.attempt(Some("a"), true, 200.0, t0);
        assert_eq!(h.endpoints(t0)[0].p95_ms, Some(250.0));
    }
}

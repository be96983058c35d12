//! The dashboard's views: the last hour (`GET /v1/stats`), each endpoint's last day
//! (`GET /v1/stats/endpoints`) and an endpoint's recent attempts
//! (`GET /v1/endpoints/NAME/attempts`).

use serde::Serialize;
use uuid::Uuid;

use crate::history::{EndpointDay, Hour, Interval, INTERVAL_MS};
use crate::model::State;
use crate::store::Attempt;
use crate::time::rfc3339;

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatsJson {
    /// Since when the daemon counts (its start).
    pub(crate) started_at: String,
    pub(crate) interval_seconds: i64,
    /// When the oldest pending message was created (null: none pending).
    pub(crate) oldest_pending_at: Option<String>,
    /// The last hour, oldest first; counts per interval (the last one is still filling).
    pub(crate) series: Vec<IntervalJson>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct IntervalJson {
    pub(crate) at: String,
    /// Attempts that delivered.
    pub(crate) delivered: u64,
    /// Attempts that did not (retried, dead, cancelled meanwhile).
    pub(crate) failed: u64,
    /// Messages the API accepted.
    pub(crate) accepted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndpointDayJson {
    pub(crate) endpoint: String,
    /// Over the last 24 hours.
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    /// delivered / (delivered + failed) over the last 24 hours.
    pub(crate) success_rate: Option<f64>,
    /// The bound of the histogram bucket under which 95% of its attempts since the start took.
    pub(crate) p95_ms: Option<f64>,
    /// Delivered attempts in each of the last 24 hours, oldest first (arrays of numbers: a
    /// daemon may have 100,000 endpoints).
    pub(crate) hourly_delivered: Vec<u32>,
    /// Failed attempts in each of the last 24 hours, oldest first.
    pub(crate) hourly_failed: Vec<u32>,
}

impl StatsJson {
    pub(crate) fn new(started: i64, oldest_pending: Option<i64>, series: &[Interval]) -> StatsJson {
        StatsJson {
            started_at: rfc3339(started),
            interval_seconds: INTERVAL_MS / 1000,
            oldest_pending_at: oldest_pending.map(rfc3339),
            series: series
                .iter()
                .map(|i| IntervalJson {
                    at: rfc3339(i.at),
                    delivered: i.delivered,
                    failed: i.failed,
                    accepted: i.accepted,
                })
                .collect(),
        }
    }
}

impl EndpointDayJson {
    pub(crate) fn new(d: &EndpointDay) -> EndpointDayJson {
        let sum = |f: fn(&Hour) -> u32| d.hours.iter().map(|h| u64::from(f(h))).sum::<u64>();
        let (delivered, failed) = (sum(|h| h.delivered), sum(|h| h.failed));
        EndpointDayJson {
            endpoint: d.name.clone(),
            delivered,
            failed,
            success_rate: (delivered + failed > 0)
                .then(|| delivered as f64 / (delivered + failed) as f64),
            p95_ms: d.p95_ms.filter(|p| p.is_finite()),
            hourly_delivered: d.hours.iter().map(|h| h.delivered).collect(),
            hourly_failed: d.hours.iter().map(|h| h.failed).collect(),
        }
    }
}

/// One attempt of an endpoint, with its message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecentAttemptJson {
    pub(crate) uuid: String,
    /// The message's state now.
    pub(crate) state: &'static str,
    pub(crate) n: u32,
    pub(crate) at: String,
    pub(crate) duration_ms: f64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
}

impl RecentAttemptJson {
    pub(crate) fn new(uuid: &Uuid, state: State, a: &Attempt) -> RecentAttemptJson {
        RecentAttemptJson {
            uuid: uuid.to_string(),
            state: state.as_str(),
            n: a.n,
            at: rfc3339(a.at),
            duration_ms: a.duration_us as f64 / 1000.0,
            status: a.status,
            error: a.error.clone(),
        }
    }
}

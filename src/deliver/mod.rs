//! Delivery: the workers that make attempts (`pool`), the one HTTP client (`http`, the only user
//! of ureq), and the per-endpoint policy that decides what may be claimed (`endpoints`). What an
//! attempt means is `verdict`'s business; a delivery result is a value, never an error.

pub(crate) mod endpoints;
pub(crate) mod http;
pub(crate) mod pool;

use std::time::{Duration, SystemTime};

use uuid::Uuid;

pub(crate) use crate::model::{Job, Reply};

/// What the workers' channel carries: an attempt to make, or a worker's retirement
/// (`pool::Pool::resize`). Idle workers block on this channel alone, so an idle pool never wakes.
/// (`Job` stays unboxed: the channel carried jobs by value before, and a box would be one more
/// allocation per attempt.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Task {
    Attempt(Job),
    Retire,
}

/// One finished attempt, sent back from a worker to the dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) seq: i64,
    pub(crate) uuid: Uuid,
    pub(crate) attempts: u32,
    pub(crate) attempts_total: u32,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) endpoint: i64,
    pub(crate) lane: Option<String>,
    pub(crate) to_endpoint_url: bool,
    /// The URL attempted (moved from the job once the attempt is over; for log lines).
    pub(crate) url: String,
    pub(crate) started: SystemTime,
    pub(crate) duration: Duration,
    pub(crate) reply: Reply,
    /// When the message was due (ms).
    pub(crate) due_at: i64,
}

impl Finished {
    pub(crate) fn new(job: &Job, started: SystemTime, duration: Duration, reply: Reply) -> Self {
        Finished {
            seq: job.seq,
            uuid: job.uuid,
            attempts: job.attempts,
            attempts_total: job.attempts_total,
            max_attempts: job.max_attempts,
            endpoint: job.endpoint,
            lane: job.lane.clone(),
            due_at: job.due_at,
            to_endpoint_url: job.to_endpoint_url,
            url: String::new(),
            started,
            duration,
            reply,
        }
    }
}

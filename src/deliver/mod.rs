//! Delivery: the job a worker gets, what an attempt produced, and how that is classified.
//!
//! `pool` runs the workers, `http` makes requests (the only user of ureq), `backoff` computes
//! retry delays. A delivery result is a value (`Verdict`), never an error.

pub(crate) mod backoff;
pub(crate) mod endpoints;
pub(crate) mod http;
pub(crate) mod pool;

use std::time::{Duration, SystemTime};

use uuid::Uuid;

pub(crate) use crate::model::Job;

/// What the receiver (or the network) answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Status {
        code: u16,
        /// Parsed `Retry-After` (seconds or HTTP-date), relative to the response time.
        retry_after: Option<Duration>,
        /// `Location` of a redirect, which is recorded and not followed.
        location: Option<String>,
        /// The first bytes of the response body.
        excerpt: Vec<u8>,
    },
    /// Connection, TLS, timeout or protocol failure.
    Transport(String),
}

/// What to do with a message after an attempt, before the attempt budget is considered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    Delivered,
    Retry { after: Option<Duration> },
    Dead,
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
            to_endpoint_url: job.to_endpoint_url,
            url: String::new(),
            started,
            duration,
            reply,
        }
    }
}

/// 2xx delivers; 410 Gone dead-letters at once; 429/503 honour `Retry-After`; everything else,
/// redirects and transport failures included, is retried.
pub(crate) fn classify(reply: &Reply) -> Verdict {
    match reply {
        Reply::Status {
            code: 200..=299, ..
        } => Verdict::Delivered,
        Reply::Status { code: 410, .. } => Verdict::Dead,
        Reply::Status {
            code: 429 | 503,
            retry_after,
            ..
        } => Verdict::Retry {
            after: *retry_after,
        },
        Reply::Status { .. } | Reply::Transport(_) => Verdict::Retry { after: None },
    }
}

/// One line describing a failed attempt, stored as the message's last error and logged. What the
/// receiver sent is untrusted: control characters (terminal escape sequences) are escaped here,
/// so no log line, table or alert ever carries them raw.
pub(crate) fn summarize(reply: &Reply) -> String {
    let text = match reply {
        Reply::Status {
            code,
            location: Some(loc),
            ..
        } if (300..400).contains(code) => {
            format!("HTTP {code}: redirect to {loc} not followed")
        }
        Reply::Status { code, excerpt, .. } => {
            let text = String::from_utf8_lossy(&excerpt[..excerpt.len().min(200)]);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.is_empty() {
                format!("HTTP {code}")
            } else {
                format!("HTTP {code}: {text}")
            }
        }
        Reply::Transport(e) => e.clone(),
    };
    crate::text::escape(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> Reply {
        Reply::Status {
            code,
            retry_after: retry_after.map(Duration::from_secs),
            location: None,
            excerpt: Vec::new(),
        }
    }

    #[test]
    fn classify_table() {
        let cases = [
            (status(200, None), Verdict::Delivered),
            (status(204, None), Verdict::Delivered),
            (status(299, None), Verdict::Delivered),
            (status(301, None), Verdict::Retry { after: None }),
            (status(400, None), Verdict::Retry { after: None }),
            (status(410, None), Verdict::Dead),
            (status(500, Some(9)), Verdict::Retry { after: None }),
            (
                status(429, Some(7)),
                Verdict::Retry {
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                status(503, Some(1)),
                Verdict::Retry {
                    after: Some(Duration::from_secs(1)),
                },
            ),
            (
                Reply::Transport("refused".into()),
                Verdict::Retry { after: None },
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(classify(&reply), want, "{reply:?}");
        }
    }

    #[test]
    fn summaries_name_status_redirect_and_error() {
        let redirect = Reply::Status {
            code: 302,
            retry_after: None,
            location: Some("https://elsewhere/".into()),
            excerpt: Vec::new(),
        };
        assert_eq!(
            summarize(&redirect),
            "HTTP 302: redirect to https://elsewhere/ not followed"
        );
        let with_body = Reply::Status {
            code: 500,
            retry_after: None,
            location: None,
            excerpt: b"db\n down".to_vec(),
        };
        assert_eq!(summarize(&with_body), "HTTP 500: db down");
        assert_eq!(
            summarize(&Reply::Transport("io: refused".into())),
            "io: refused"
        );
        let hostile = Reply::Status {
            code: 500,
            retry_after: None,
            location: None,
            excerpt: b"\x1b[31mRED\x1b[0m".to_vec(),
        };
        assert_eq!(summarize(&hostile), "HTTP 500: \\e[31mRED\\e[0m");
    }
}

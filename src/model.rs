//! The domain's types, shared by the store (which keeps them), delivery (which acts on them) and
//! the commands (which show them): a message's state, an ordered lane, a claimed job, an
//! endpoint's health, a claim. No I/O; how each is written to a database is the store's business.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::sign::Key;

/// A message's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum State {
    /// Waiting for an attempt (due now, or later: "scheduled").
    Pending,
    /// Claimed by a daemon; an attempt is running.
    InFlight,
    Delivered,
    /// Out of attempts, or 410: in the dead-letter queue.
    Dead,
    /// Behind an earlier message of its ordered lane.
    Waiting,
    /// Cancelled by an operator.
    Cancelled,
}

impl State {
    pub(crate) const ALL: [State; 6] = [
        State::Pending,
        State::InFlight,
        State::Delivered,
        State::Dead,
        State::Waiting,
        State::Cancelled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in_flight",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Waiting => "waiting",
            State::Cancelled => "cancelled",
        }
    }
}

/// An ordered lane: the messages of one endpoint (its own lane, with `ordered = true`), or of one
/// ordering key within an endpoint or among plain URLs. Only the lane's head is ever pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lane {
    /// The endpoint's name; empty for plain URLs.
    pub(crate) endpoint: String,
    /// The ordering key; empty for an endpoint's own lane.
    pub(crate) key: String,
}

/// Separates the endpoint from the key in a lane's stored form (a control character no endpoint
/// name contains).
const LANE_SEPARATOR: char = '\u{1f}';

impl Lane {
    /// The lane's stored form: `endpoint US key`.
    pub(crate) fn encode(&self) -> String {
        format!("{}{LANE_SEPARATOR}{}", self.endpoint, self.key)
    }

    /// The inverse of [`Lane::encode`].
    pub(crate) fn decode(stored: &str) -> Lane {
        match stored.split_once(LANE_SEPARATOR) {
            Some((endpoint, key)) => Lane {
                endpoint: endpoint.to_owned(),
                key: key.to_owned(),
            },
            None => Lane {
                endpoint: String::new(),
                key: stored.to_owned(),
            },
        }
    }
}

/// A claimed message, handed to one worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Job {
    pub(crate) seq: i64,
    pub(crate) uuid: Uuid,
    /// The event it delivers, whose id is its webhook-id (else the message's own uuid).
    pub(crate) event: Option<Uuid>,
    /// Attempts already made in the current budget.
    pub(crate) attempts: u32,
    /// Attempts already made over the message's life.
    pub(crate) attempts_total: u32,
    /// Per-message budget; `None` means the endpoint's or the configured one.
    pub(crate) max_attempts: Option<u32>,
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Endpoint id (0: a plain URL).
    pub(crate) endpoint: i64,
    /// The ordered lane (stored form), if any.
    pub(crate) lane: Option<String>,
    /// Keys to sign with (Standard Webhooks), from the endpoint.
    pub(crate) keys: Option<Arc<Vec<Key>>>,
    /// The endpoint's own request timeout.
    pub(crate) timeout: Option<Duration>,
    /// How the endpoint's requests leave (`None`: the default route).
    pub(crate) route: Option<Arc<crate::egress::Route>>,
    /// An endpoint's message without a path: it goes to the endpoint's own URL.
    pub(crate) to_endpoint_url: bool,
    /// When it was due (ms): the delivery lag runs from here to the attempt's start.
    pub(crate) due_at: i64,
}

/// An endpoint's circuit, as its health records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Circuit {
    /// Healthy: requests go out within the endpoint's limits.
    #[default]
    Closed,
    /// Failing: one probe at growing intervals.
    Open,
    /// Gone or failing too long: nothing goes out until an operator enables it.
    Disabled,
}

impl Circuit {
    /// The name shown for this state.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "healthy",
            Circuit::Open => "open",
            Circuit::Disabled => "disabled",
        }
    }
}

/// An endpoint's health as the daemon keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Health {
    /// The endpoint's id (0: plain URLs, which have no health).
    pub(crate) id: i64,
    pub(crate) state: Circuit,
    pub(crate) failures: i64,
    pub(crate) failing_since: Option<i64>,
    pub(crate) last_success_at: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<i64>,
    pub(crate) changed_at: Option<i64>,
    pub(crate) reason: Option<String>,
    /// Which change of the state this is, where daemons share it (PostgreSQL: the
    /// `health_gen` of the endpoint's row; 0 on SQLite, whose one daemon owns it).
    pub(crate) gen: i64,
}

/// What the receiver (or the network) answered an attempt.
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
    /// No answer: the connection, TLS, a timeout or the protocol failed.
    Transport { kind: Failure, error: String },
}

/// Why an attempt got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The whole request (or the connect) took longer than its timeout.
    Timeout,
    /// The host name could not be resolved (or not within the connect timeout).
    Dns,
    /// No connection: refused, reset, unreachable.
    Connect,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// Every address of the destination is denied by the egress policy (`egress`).
    EgressDenied,
    /// Anything else: a protocol error, a worker that panicked.
    Other,
}

/// Claim up to `limit` due messages of one endpoint (0: plain URLs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Claim {
    pub(crate) endpoint: i64,
    pub(crate) limit: usize,
    /// The endpoint's limits over every daemon of the queue (a store shared by several daemons
    /// enforces them; one daemon alone keeps them in memory): `None` for plain URLs.
    pub(crate) shared: Option<SharedLimits>,
}

/// An endpoint's concurrency cap and rate, for all the daemons of a queue together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SharedLimits {
    /// Requests in flight at most.
    pub(crate) cap: usize,
    /// Requests per second and the bucket's size, if it has a rate.
    pub(crate) rate: Option<(f64, f64)>,
    /// The claim is an open breaker's probe: at most one probe per this many ms over all
    /// daemons.
    pub(crate) probe_every: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_round_trip_their_stored_form() {
        for lane in [
            Lane {
                endpoint: "billing".into(),
                key: String::new(),
            },
            Lane {
                endpoint: String::new(),
                key: "customer-7".into(),
            },
            Lane {
                endpoint: "b".into(),
                key: "k:with/odd chars".into(),
            },
        ] {
            assert_eq!(Lane::decode(&lane.encode()), lane);
        }
    }
}

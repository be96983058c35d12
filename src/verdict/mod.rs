//! What an attempt means, decided in one place: a pure function from what the receiver answered
//! (and the message's budget and policy) to the outcome for the message (delivered, retry at T,
//! dead with a reason) and the effect on its endpoint's health. The queue records the outcome,
//! the endpoint policy (`deliver::endpoints`) and the alerts follow the effect, and the metrics
//! count the class: they cannot disagree.
//!
//! There is no "held" outcome: an attempt that ran is always delivered, retried or dead. Holding
//! messages (an open breaker, a disabled endpoint) is the policy's decision not to claim them, and
//! costs them nothing from their budget.

pub(crate) mod backoff;

use crate::config::RetryPolicy;
use crate::model::{Failure, Reply};

/// What an attempt produced, with what is needed to judge it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt<'a> {
    pub(crate) reply: &'a Reply,
    /// Attempts made in the current budget, this one included.
    pub(crate) made: u32,
    /// The budget in force (the message's own, its endpoint's, or the configured one).
    pub(crate) budget: u32,
    /// The message goes to a named endpoint (plain URLs have no health).
    pub(crate) named_endpoint: bool,
    /// An endpoint's message without a path: it went to the endpoint's own URL.
    pub(crate) to_endpoint_url: bool,
    pub(crate) retry: &'a RetryPolicy,
    /// When the attempt ended (ms since the epoch).
    pub(crate) now: i64,
    /// A random number in [0, 1) for the backoff's jitter.
    pub(crate) random: f64,
}

/// What happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    /// Pending again, due at this time (ms since the epoch).
    Retry {
        at: i64,
    },
    Dead {
        reason: DeadReason,
    },
}

/// Why a message is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum DeadReason {
    /// `410 Gone`: the receiver asked for no more.
    Gone,
    /// The attempt budget is spent.
    Exhausted,
}

/// What the attempt does to its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A plain URL: no endpoint, no health.
    None,
    Success,
    Failure,
    /// `410 Gone`, a failure that may disable the endpoint: at once when it came for the
    /// endpoint's own URL, else after several in a row (the policy counts them).
    Gone {
        own_url: bool,
    },
}

/// The kind of result, for the metrics: bounded, never a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Class {
    Success,
    Http4xx,
    Http5xx,
    Timeout,
    Connect,
    Tls,
    Dns,
    EgressDenied,
    Other,
}

/// An attempt, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) effect: Effect,
    pub(crate) class: Class,
}

/// Judges an attempt. 2xx delivers; 410 dead-letters at once; a 429 or 503 with `Retry-After`
/// waits that long (capped at `max_delay`); any other status, a redirect (not followed) and every
/// transport failure are retried with backoff; a failure that spends the last attempt of the
/// budget dead-letters.
pub(crate) fn judge(a: &Attempt<'_>) -> Verdict {
    let class = class(a.reply);
    let (outcome, effect) = match a.reply {
        Reply::Status {
            code: 200..=299, ..
        } => (Outcome::Delivered, Effect::Success),
        Reply::Status { code: 410, .. } => (
            Outcome::Dead {
                reason: DeadReason::Gone,
            },
            Effect::Gone {
                own_url: a.to_endpoint_url,
            },
        ),
        _ if a.made >= a.budget => (
            Outcome::Dead {
                reason: DeadReason::Exhausted,
            },
            Effect::Failure,
        ),
        reply => {
            let after = match reply {
                Reply::Status {
                    code: 429 | 503,
                    retry_after,
                    ..
                } => *retry_after,
                _ => None,
            };
            let delay = backoff::next_delay(a.retry, a.made, after, a.random);
            (
                Outcome::Retry {
                    at: a.now.saturating_add(crate::time::duration_ms(delay)),
                },
                Effect::Failure,
            )
        }
    };
    Verdict {
        outcome,
        effect: if a.named_endpoint {
            effect
        } else {
            Effect::None
        },
        class,
    }
}

fn class(reply: &Reply) -> Class {
    match reply {
        Reply::Status {
            code: 200..=299, ..
        } => Class::Success,
        Reply::Status {
            code: 400..=499, ..
        } => Class::Http4xx,
        Reply::Status { code: 500.., .. } => Class::Http5xx,
        Reply::Status { .. } => Class::Other,
        Reply::Transport { kind, .. } => match kind {
            Failure::Timeout => Class::Timeout,
            Failure::Dns => Class::Dns,
            Failure::EgressDenied => Class::EgressDenied,
            Failure::Connect => Class::Connect,
            Failure::Tls => Class::Tls,
            Failure::Other => Class::Other,
        },
    }
}

/// One line describing a failed attempt, stored as the message's last error (and an endpoint's):
/// the status line and the start of the response, or the transport error. It is what the receiver
/// sent, untrusted: whatever shows it to a person (a table, a log line, an alert) escapes it
/// (`text::escape`); JSON carries it as it is.
pub(crate) fn summarize(reply: &Reply) -> String {
    match reply {
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
        Reply::Transport { error, .. } => error.clone(),
    }
}

#[cfg(test)]
mod tests;

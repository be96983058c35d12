//! What the daemon tells people, in log lines and alerts. What a receiver sent (an error, the
//! start of a response) is escaped here: it never reaches a terminal or the journal raw.

use crate::counters::Totals;
use crate::deliver::endpoints::Event;
use crate::store::Counts;
use crate::text::{self, escape};

/// An endpoint's change: the alert's event name and its text.
pub(super) fn event(ev: &Event) -> (&'static str, String, String) {
    match ev {
        Event::Opened {
            endpoint,
            failures,
            error,
        } => (
            "endpoint_opened",
            format!(
                "endpoint {endpoint} opened after {} (last: {}): its messages wait, one probe at growing intervals",
                text::count(*failures as u64, "consecutive failure"),
                escape(error)
            ),
            endpoint.clone(),
        ),
        Event::Disabled { endpoint, reason } => (
            "endpoint_disabled",
            format!(
                "endpoint {endpoint} disabled: {}; its messages are held until `webhookd endpoints enable {endpoint}`",
                escape(reason)
            ),
            endpoint.clone(),
        ),
        Event::Recovered { endpoint, down_ms } => (
            "endpoint_recovered",
            format!(
                "endpoint {endpoint} recovered after failing for {}",
                text::duration_ms(*down_ms - down_ms % 1000)
            ),
            endpoint.clone(),
        ),
    }
}

/// Where a message went, for log lines: its endpoint, or the host of a plain URL (never the full
/// URL, which may carry credentials or tokens in its query).
pub(super) fn target(endpoint: Option<&str>, url: &str) -> String {
    match endpoint {
        Some(name) => format!("endpoint {name}"),
        None => format!("host {}", text::host_of(url)),
    }
}

/// A message dead-lettered after `attempts` attempts.
pub(super) fn dead_letter(uuid: &str, target: &str, attempts: u32, summary: &str) -> String {
    format!(
        "dead-lettered {uuid} ({target}) after {}: {}",
        text::count(u64::from(attempts), "attempt"),
        escape(summary)
    )
}

/// A failed attempt, retried later.
pub(super) fn retry(
    uuid: &str,
    target: &str,
    (made, budget): (u32, u32),
    summary: &str,
    delay_ms: i64,
) -> String {
    format!(
        "attempt {made} of {budget} of {uuid} ({target}) failed: {}; retry in {}",
        escape(summary),
        text::duration_ms(delay_ms)
    )
}

/// A message an operator cancelled while it was in flight.
pub(super) fn cancelled(uuid: &str, target: &str, summary: &str) -> String {
    format!(
        "cancelled {uuid} ({target}) after its attempt, as an operator asked while it was in flight: {}",
        escape(summary)
    )
}

/// A delivery (debug).
pub(super) fn delivered(uuid: &str, target: &str, made: u32, duration_us: i64) -> String {
    format!(
        "delivered {uuid} ({target}) at attempt {made} in {:.1} ms",
        duration_us as f64 / 1000.0
    )
}

/// The periodic line: what happened since the last one, and the queue now (from the constant-time
/// totals, whose `pending` includes messages waiting in their lanes).
pub(super) fn stats(last: &Totals, queue: &Counts) -> String {
    format!(
        "last minute: {} delivered, {} retried, {} dead-lettered, {} cancelled in flight; queue: {} pending, {} in flight, {} dead",
        last.delivered,
        last.retried,
        last.dead,
        last.cancelled,
        queue.pending,
        queue.in_flight,
        queue.dead
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_escape_what_receivers_sent_and_count_right() {
        let t = dead_letter("u", "host h:1", 1, "HTTP 500: \u{1b}[31mRED");
        assert_eq!(
            t,
            "dead-lettered u (host h:1) after 1 attempt: HTTP 500: \\e[31mRED"
        );
        let (name, text, endpoint) = event(&Event::Disabled {
            endpoint: "b".into(),
            reason: "410 \u{7}".into(),
        });
        assert_eq!((name, endpoint.as_str()), ("endpoint_disabled", "b"));
        assert!(
            text.contains("410 \\x07") && !text.contains('\u{7}'),
            "{text}"
        );
        assert_eq!(
            retry("u", "endpoint b", (2, 5), "x", 1500),
            "attempt 2 of 5 of u (endpoint b) failed: x; retry in 1s 500ms"
        );
        assert_eq!(
            target(None, "https://a:b@h.example/p?t=1"),
            "host h.example"
        );
    }
}

//! Every kind of attempt, judged: one row each.

use std::time::Duration;

use super::*;

const NOW: i64 = 1_000_000;

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(3600),
    }
}

fn status(code: u16) -> Reply {
    Reply::Status {
        code,
        retry_after: None,
        location: None,
        excerpt: Vec::new(),
    }
}

fn retry_after(code: u16, secs: u64) -> Reply {
    Reply::Status {
        code,
        retry_after: Some(Duration::from_secs(secs)),
        location: None,
        excerpt: Vec::new(),
    }
}

fn transport(kind: Failure) -> Reply {
    Reply::Transport {
        kind,
        error: "io: failed".into(),
    }
}

/// (what happened, attempts made so far including this one, to the endpoint's own URL) ->
/// (outcome, effect, class). The jitter is fixed at its middle, so a retry after the first
/// attempt is due base_delay (10 s) later, after the second 20 s.
#[test]
fn every_kind_of_attempt() {
    let retry = |secs: i64| Outcome::Retry {
        at: NOW + secs * 1000,
    };
    let gone = Outcome::Dead {
        reason: DeadReason::Gone,
    };
    let exhausted = Outcome::Dead {
        reason: DeadReason::Exhausted,
    };
    let redirect = Reply::Status {
        code: 302,
        retry_after: None,
        location: Some("https://elsewhere/".into()),
        excerpt: Vec::new(),
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, Reply, u32, bool, Outcome, Effect, Class)> = vec![
        ("200", status(200), 1, false, Outcome::Delivered, Effect::Success, Class::Success),
        ("204 on the last attempt", status(204), 5, false, Outcome::Delivered, Effect::Success, Class::Success),
        ("299", status(299), 1, false, Outcome::Delivered, Effect::Success, Class::Success),
        ("3xx with Location: not followed", redirect, 1, false, retry(10), Effect::Failure, Class::Other),
        ("400", status(400), 1, false, retry(10), Effect::Failure, Class::Http4xx),
        ("404, second attempt", status(404), 2, false, retry(20), Effect::Failure, Class::Http4xx),
        ("410 on a path", status(410), 1, false, gone, Effect::Gone { own_url: false }, Class::Http4xx),
        ("410 on the endpoint's URL", status(410), 1, true, gone, Effect::Gone { own_url: true }, Class::Http4xx),
        ("429 without Retry-After", status(429), 1, false, retry(10), Effect::Failure, Class::Http4xx),
        ("429 Retry-After: 120", retry_after(429, 120), 1, false, retry(120), Effect::Failure, Class::Http4xx),
        ("503 Retry-After: an HTTP-date a minute away", retry_after(503, 60), 1, false, retry(60), Effect::Failure, Class::Http5xx),
        ("503 Retry-After: a date in the past", retry_after(503, 0), 1, false, retry(0), Effect::Failure, Class::Http5xx),
        ("503 Retry-After: a year (capped at max_delay)", retry_after(503, 365 * 86_400), 1, false, retry(3600), Effect::Failure, Class::Http5xx),
        ("500 Retry-After is ignored", retry_after(500, 120), 1, false, retry(10), Effect::Failure, Class::Http5xx),
        ("timeout", transport(Failure::Timeout), 1, false, retry(10), Effect::Failure, Class::Timeout),
        ("connection refused", transport(Failure::Connect), 1, false, retry(10), Effect::Failure, Class::Connect),
        ("TLS error", transport(Failure::Tls), 1, false, retry(10), Effect::Failure, Class::Tls),
        ("DNS", transport(Failure::Dns), 1, false, retry(10), Effect::Failure, Class::Dns),
        ("worker panicked", transport(Failure::Other), 1, false, retry(10), Effect::Failure, Class::Other),
        ("500, budget spent", status(500), 5, false, exhausted, Effect::Failure, Class::Http5xx),
        ("503 Retry-After, budget spent", retry_after(503, 1), 5, false, exhausted, Effect::Failure, Class::Http5xx),
        ("timeout, budget spent", transport(Failure::Timeout), 5, false, exhausted, Effect::Failure, Class::Timeout),
        ("410, budget spent: gone wins", status(410), 5, false, gone, Effect::Gone { own_url: false }, Class::Http4xx),
        // An open breaker's probe, or an attempt in flight when its endpoint was disabled, is
        // judged like any other attempt: holding messages is the policy's business, before claims.
        ("a probe of an open endpoint fails", status(502), 3, false, retry(40), Effect::Failure, Class::Http5xx),
        ("an attempt of a now disabled endpoint fails", transport(Failure::Connect), 2, false, retry(20), Effect::Failure, Class::Connect),
    ];
    let p = policy();
    for (name, reply, made, own_url, outcome, effect, class) in rows {
        let a = Attempt {
            reply: &reply,
            made,
            budget: 5,
            named_endpoint: true,
            to_endpoint_url: own_url,
            retry: &p,
            now: NOW,
            random: 0.5,
        };
        assert_eq!(
            judge(&a),
            Verdict {
                outcome,
                effect,
                class
            },
            "{name}"
        );
        // A plain URL has no endpoint: the same outcome, no effect on any health.
        let plain = judge(&Attempt {
            named_endpoint: false,
            ..a
        });
        assert_eq!(
            (plain.outcome, plain.effect),
            (outcome, Effect::None),
            "{name}, plain URL"
        );
    }
}

#[test]
fn summaries_name_status_redirect_and_error_and_keep_what_the_receiver_sent() {
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
    assert_eq!(summarize(&transport(Failure::Connect)), "io: failed");
    let hostile = Reply::Status {
        code: 500,
        retry_after: None,
        location: None,
        excerpt: b"\x1b[31mRED\x1b[0m".to_vec(),
    };
    // Kept as sent (one line); escaped where a person reads it.
    assert_eq!(summarize(&hostile), "HTTP 500: \x1b[31mRED\x1b[0m");
}

//! The endpoint policy, table by table: caps, rate, breaker, probes, disabling, lanes.

use super::*;
use crate::check::Rate;

fn endpoint(f: impl FnOnce(&mut Endpoint)) -> Arc<Endpoint> {
    let mut e = Endpoint {
        name: "e".into(),
        url: "http://127.0.0.1:1/hook".into(),
        headers: vec![("Authorization".into(), "Bearer x".into())],
        keys: Arc::default(),
        timeout: None,
        max_attempts: None,
        concurrency: Some(2),
        rate: None,
        ordered: false,
        on_dead: OnDead::Block,
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(10),
        disable_after: Duration::from_secs(100),
        unreadable: Vec::new(),
        tenant: None,
        events: Vec::new(),
        paused: false,
        managed: false,
        route: Arc::default(),
    };
    f(&mut e);
    Arc::new(e)
}

fn setup(e: Arc<Endpoint>) -> Endpoints {
    let config = BTreeMap::from([("e".to_owned(), e)]);
    let health = Health {
        id: 1,
        ..Health::default()
    };
    let mut eps = Endpoints::new(vec![("e".into(), health)], &config, 16, 0);
    eps.claimed(&[], &[(0, None)]);
    // Proven by a first success, as a healthy receiver is within its first request.
    assert_eq!(
        limit(&mut eps, 0),
        1,
        "slow start: one request until a success"
    );
    eps.claimed(&[job()], &[]);
    eps.finished(1, finished(200), "", 0);
    eps
}

fn job() -> Job {
    Job {
        endpoint: 1,
        ..Job::default()
    }
}

/// The effect the verdict gives an attempt answered `code`.
fn finished(code: u16) -> Effect {
    match code {
        200..=299 => Effect::Success,
        410 => Effect::Gone { own_url: false },
        _ => Effect::Failure,
    }
}

fn limit(eps: &mut Endpoints, now: i64) -> usize {
    eps.plan(100, now)
        .iter()
        .filter(|c| c.endpoint == 1)
        .map(|c| c.limit)
        .sum()
}

#[test]
fn failing_endpoints_get_one_request_each_within_a_shared_budget() {
    let mut eps = setup(endpoint(|e| e.concurrency = Some(8)));
    eps.claimed(&[job()], &[]);
    eps.finished(1, finished(500), "HTTP 500", 1);
    assert_eq!(limit(&mut eps, 1), 1, "after a failure: one at a time");
    // Four in flight for failing endpoints (16 workers / 4) leave no room for more.
    eps.by_id.get_mut(&1).unwrap().in_flight = 4;
    assert_eq!(limit(&mut eps, 1), 0);
    assert!(!eps.ready(1));
    assert_eq!(eps.next_ready(1), None);
}

/// When the free slots run out, each round starts with the next endpoint: none starves.
#[test]
fn claim_rounds_take_turns() {
    let e = endpoint(|e| e.concurrency = Some(100));
    let config = BTreeMap::from([("a".to_owned(), e.clone()), ("b".to_owned(), e)]);
    let rows = (1..=2)
        .map(|id| {
            let name = if id == 1 { "a" } else { "b" };
            let health = Health {
                id,
                ..Health::default()
            };
            (name.to_owned(), health)
        })
        .collect();
    let mut eps = Endpoints::new(rows, &config, 16, 0);
    let firsts: Vec<i64> = (0..4).map(|_| eps.plan(1, 0)[0].endpoint).collect();
    assert_eq!(firsts, [1, 2, 0, 1]);
}

/// A round offers at most as many endpoints as there are free slots (each offer is a statement
/// in the cycle), and each offer may take all the free slots (the store shares them in order).
#[test]
fn a_round_makes_at_most_free_offers() {
    let config: BTreeMap<String, Arc<Endpoint>> = (1..=5)
        .map(|i| (format!("e{i}"), endpoint(|e| e.concurrency = Some(100))))
        .collect();
    let rows = (1..=5)
        .map(|i| {
            (
                format!("e{i}"),
                Health {
                    id: i,
                    ..Health::default()
                },
            )
        })
        .collect();
    let mut eps = Endpoints::new(rows, &config, 16, 0);
    let claims = eps.plan(3, 0);
    assert_eq!(claims.len(), 3, "{claims:?}");
    assert!(claims.iter().all(|c| c.limit <= 3));
}

#[test]
fn concurrency_caps_claims_until_one_finishes() {
    let mut eps = setup(endpoint(|_| {}));
    assert_eq!(limit(&mut eps, 0), 2);
    eps.claimed(&[job(), job()], &[]);
    assert_eq!(limit(&mut eps, 0), 0);
    assert!(!eps.ready(0));
    eps.finished(1, finished(200), "", 1);
    assert_eq!(limit(&mut eps, 1), 1);
}

#[test]
fn a_paused_endpoint_is_not_claimed_until_resumed() {
    let rows = || {
        vec![(
            "e".to_owned(),
            Health {
                id: 1,
                ..Health::default()
            },
        )]
    };
    let paused = BTreeMap::from([("e".to_owned(), endpoint(|e| e.paused = true))]);
    let mut eps = Endpoints::new(rows(), &paused, 16, 0);
    eps.claimed(&[], &[(0, None)]);
    assert_eq!(limit(&mut eps, 0), 0);
    assert!(!eps.ready(0));
    assert_eq!(eps.next_ready(0), None, "no wake-up for a paused endpoint");
    let resumed = BTreeMap::from([("e".to_owned(), endpoint(|_| {}))]);
    assert_eq!(eps.reconfigure(rows(), &resumed, 16, 0), ["e"]);
    assert_eq!(limit(&mut eps, 0), 1, "slow start again after the pause");
}

#[test]
fn rate_refills_tokens_over_time() {
    let mut eps = setup(endpoint(|e| {
        e.concurrency = Some(100);
        e.rate = Some(Rate::parse("rate", "50/s").unwrap());
    }));
    assert_eq!(
        limit(&mut eps, 0),
        4,
        "burst of 0.1 s, less the first request"
    );
    eps.claimed(&vec![job(); 4], &[]);
    assert_eq!(limit(&mut eps, 0), 0);
    assert_eq!(eps.next_ready(0), Some(20));
    assert_eq!(limit(&mut eps, 40), 2);
}

#[test]
fn breaker_opens_probes_with_growing_intervals_and_closes() {
    let mut eps = setup(endpoint(|_| {}));
    for i in 0..2 {
        eps.claimed(&[job()], &[]);
        assert_eq!(eps.finished(1, finished(500), "HTTP 500", i), None);
    }
    eps.claimed(&[job()], &[]);
    assert!(matches!(
        eps.finished(1, finished(500), "HTTP 500", 1_000),
        Some(Event::Opened { failures: 3, .. })
    ));
    assert_eq!(limit(&mut eps, 1_000), 0, "open: nothing claimed");
    assert_eq!(eps.next_ready(1_000), Some(11_000));
    assert_eq!(limit(&mut eps, 11_000), 1, "one probe");
    eps.claimed(&[job()], &[]);
    assert_eq!(limit(&mut eps, 11_000), 0, "only one probe at a time");
    assert_eq!(eps.finished(1, finished(503), "HTTP 503", 12_000), None);
    assert_eq!(eps.next_ready(12_000), Some(32_000), "interval doubled");
    // A request that was in flight before (not a probe) does not double it again.
    eps.claimed(&[job()], &[]);
    assert_eq!(eps.finished(1, finished(503), "HTTP 503", 13_000), None);
    assert_eq!(eps.next_ready(13_000), Some(32_000));
    eps.claimed(&[job()], &[]);
    assert!(matches!(
        eps.finished(1, finished(204), "", 32_000),
        Some(Event::Recovered {
            down_ms: 32_000,
            ..
        })
    ));
    assert_eq!(limit(&mut eps, 32_000), 2);
    let saved = eps.health_to_save(32_000, false);
    assert_eq!(saved.len(), 1);
    assert_eq!((saved[0].state, saved[0].failures), (CLOSED, 0));
    eps.saved(&saved, 32_000);
    assert!(eps.health_to_save(40_000, false).is_empty());
}

/// Regression test for issue 12 (B.3): a 410 on one path must not take the endpoint down;
/// a 410 for its own URL, or several in a row, does.
#[test]
fn gone_disables_only_for_the_endpoint_url_or_a_streak() {
    let mut eps = setup(endpoint(|_| {}));
    for i in 1..GONE_STREAK {
        eps.claimed(&[job()], &[]);
        assert_eq!(
            eps.finished(1, finished(410), "HTTP 410", i64::from(i)),
            None
        );
    }
    eps.claimed(&[job()], &[]);
    assert_eq!(
        eps.finished(1, finished(200), "", 10),
        None,
        "a success ends the streak"
    );
    for i in 0..GONE_STREAK {
        eps.claimed(&[job()], &[]);
        let ev = eps.finished(1, finished(410), "HTTP 410", 20 + i64::from(i));
        assert_eq!(
            matches!(ev, Some(Event::Disabled { .. })),
            i + 1 == GONE_STREAK,
            "410 number {}",
            i + 1
        );
    }
    assert_eq!(limit(&mut eps, 1_000_000), 0);
    assert_eq!(eps.next_ready(1_000_000), None);
    eps.enable(1, 10);
    assert_eq!(limit(&mut eps, 10), 2);

    let mut eps = setup(endpoint(|_| {}));
    eps.claimed(&[job()], &[]);
    let own = Effect::Gone { own_url: true };
    assert!(matches!(
        eps.finished(1, own, "HTTP 410", 5),
        Some(Event::Disabled { .. })
    ));
}

#[test]
fn long_failure_disables_until_enabled() {
    let mut eps = setup(endpoint(|e| e.breaker_failures = 1000));
    eps.claimed(&[job()], &[]);
    assert_eq!(eps.finished(1, finished(500), "HTTP 500", 0), None);
    eps.claimed(&[job()], &[]);
    assert!(matches!(
        eps.finished(1, finished(500), "HTTP 500", 100_000),
        Some(Event::Disabled { .. })
    ));
}

#[test]
fn complete_fills_url_headers_and_keys() {
    let eps = setup(endpoint(|e| {
        e.keys = Arc::new(vec![crate::sign::Key::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap()]);
    }));
    let mut j = Job {
        url: "/v2".into(),
        headers: vec![("authorization".into(), "Bearer mine".into())],
        ..job()
    };
    eps.complete(&mut j);
    assert_eq!(j.url, "http://127.0.0.1:1/hook/v2");
    assert_eq!(
        j.headers,
        vec![("authorization".to_owned(), "Bearer mine".to_owned())]
    );
    assert_eq!(j.keys.unwrap().len(), 1);
}

/// A turn looks at the endpoints with something to do, not at every endpoint known: after a
/// look at the store, only those with messages due now are offered, one due later waits by its
/// time (and sets the dispatcher's next wake-up), and the rest are never visited.
#[test]
fn a_round_visits_only_endpoints_with_due_messages() {
    let config: BTreeMap<String, Arc<Endpoint>> = (1..=1_000)
        .map(|i| (format!("e{i}"), endpoint(|e| e.concurrency = Some(100))))
        .collect();
    let rows = (1..=1_000)
        .map(|i| {
            let health = Health {
                id: i,
                ..Health::default()
            };
            (format!("e{i}"), health)
        })
        .collect();
    let mut eps = Endpoints::new(rows, &config, 16, 0);
    eps.begin(&[(7, 0), (9, 5_000)]);
    let claims = eps.plan(100, 0);
    assert_eq!(claims.iter().map(|c| c.endpoint).collect::<Vec<_>>(), [7]);
    assert_eq!(eps.active, BTreeSet::from([7]));
    assert_eq!(eps.later, BTreeSet::from([(5_000, 9)]));
    eps.claimed(
        &[Job {
            endpoint: 7,
            ..Job::default()
        }],
        &[(7, None)],
    );
    assert_eq!(eps.next_ready(0), Some(5_000), "the retry due later wakes");
    assert!(!eps.ready(0));
    assert!(eps.ready(5_000));
    let claims = eps.plan(100, 5_000);
    assert_eq!(claims.iter().map(|c| c.endpoint).collect::<Vec<_>>(), [9]);
    // A finished request's endpoint stays looked at until its health is saved.
    eps.finished(7, finished(200), "", 5_001);
    eps.saved(&eps.health_to_save(5_001, true), 5_001);
    eps.claimed(&[], &[(9, None)]);
    eps.plan(100, 5_010);
    assert_eq!(
        eps.active.len(),
        2,
        "idle ones are let go at most every 50 ms"
    );
    eps.plan(100, 5_050);
    assert_eq!(eps.active, BTreeSet::new(), "nothing left to do anywhere");
    // A wake-up by name brings one back.
    eps.want_named(Some("e500"));
    assert_eq!(eps.plan(100, 5_051)[0].endpoint, 500);
}

/// Health is saved without a walk of every endpoint: a changed state at once, counters with
/// the next save at most a second after the last, and only endpoints whose health changed.
#[test]
fn health_is_saved_at_once_on_a_state_change_and_counters_each_second() {
    let mut eps = setup(endpoint(|e| e.breaker_failures = 2));
    eps.saved(&eps.health_to_save(0, true), 0);
    assert!(!eps.health_due(5_000), "nothing changed");
    eps.claimed(&[job()], &[]);
    eps.finished(1, finished(500), "HTTP 500", 100);
    assert!(!eps.health_due(500), "a counter waits for the second");
    assert!(eps.health_to_save(500, false).is_empty());
    assert!(eps.health_due(1_000));
    eps.claimed(&[job()], &[]);
    eps.finished(1, finished(500), "HTTP 500", 200);
    assert!(eps.health_due(200), "opened: saved at once");
    let rows = eps.health_to_save(200, false);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, OPEN);
    eps.saved(&rows, 200);
    assert!(!eps.health_due(1_100), "saved");
    assert!(eps.dirty.is_empty());
}

#[test]
fn another_daemons_state_is_taken_and_an_own_saved_change_only_moves_the_generation() {
    let mut eps = setup(endpoint(|_| {}));
    let now = 1_000;
    eps.claimed(&[], &[(1, Some(0))]);
    assert_eq!(limit(&mut eps, now), 2, "healthy: its cap");
    let opened = Health {
        id: 1,
        state: OPEN,
        failures: 3,
        reason: Some("3 consecutive failures".into()),
        gen: 7,
        ..Health::default()
    };
    let changed = eps.adopt(std::slice::from_ref(&opened), now);
    assert_eq!(changed.len(), 1, "opened elsewhere: taken, and said");
    assert_eq!(eps.health_gen(), 7);
    assert_eq!(limit(&mut eps, now), 0, "open: nothing until the probe");
    assert_eq!(
        limit(&mut eps, now + 10_000),
        1,
        "a probe after the cooldown"
    );
    let claims = eps.plan(100, now + 10_000);
    assert!(
        claims
            .iter()
            .all(|c| c.shared.and_then(|s| s.probe_every) == Some(10_000)),
        "the probe's claim asks for the shared probe slot: {claims:?}"
    );
    assert!(
        eps.adopt(std::slice::from_ref(&opened), now).is_empty(),
        "seen: nothing"
    );
    let stale = Health {
        state: CLOSED,
        gen: 5,
        ..opened.clone()
    };
    assert!(eps.adopt(&[stale], now).is_empty(), "older: ignored");
    let enabled = Health {
        id: 1,
        gen: 9,
        ..Health::default()
    };
    assert_eq!(eps.adopt(&[enabled], now).len(), 1, "enabled elsewhere");
    assert_eq!(limit(&mut eps, now), 2, "enabled: its cap again");
    let own = Health {
        id: 1,
        gen: 12,
        ..Health::default()
    };
    assert!(
        eps.adopt(&[own], now).is_empty(),
        "the state it has: nothing said"
    );
    assert_eq!(eps.health_gen(), 12, "but the generation moves on");
}

/// A finished attempt frees its slot only once recorded, so the dispatcher must hear it when
/// other work waits for that slot: the endpoint's own cap, or the failing endpoints' budget.
#[test]
fn work_held_back_by_requests_in_flight_is_seen() {
    let e = endpoint(|e| e.concurrency = Some(1));
    let config = BTreeMap::from([("a".to_owned(), e.clone()), ("b".to_owned(), e)]);
    let rows = [(1, "a"), (2, "b")]
        .map(|(id, name)| {
            (
                name.to_owned(),
                Health {
                    id,
                    ..Health::default()
                },
            )
        })
        .into();
    let mut eps = Endpoints::new(rows, &config, 4, 0);
    let job = |endpoint| Job {
        endpoint,
        ..Job::default()
    };
    // a: one request in flight (its cap of one), its next message due at 50 ms.
    eps.claimed(&[job(1)], &[(1, Some(50)), (2, None)]);
    assert!(!eps.waits_for_flight(0, 0), "nothing due yet");
    assert!(
        eps.waits_for_flight(0, 100),
        "a's next message is due within 100 ms"
    );
    eps.finished(1, finished(200), "", 1);
    assert!(!eps.waits_for_flight(1, 100), "a's slot is free");

    // Both fail: failing endpoints share one slot (4 workers / 4). a takes it, b waits.
    eps.claimed(&[job(1), job(2)], &[(1, None), (2, None)]);
    eps.finished(1, finished(500), "HTTP 500", 2);
    eps.finished(2, finished(500), "HTTP 500", 2);
    eps.claimed(&[job(1)], &[(2, Some(3))]);
    assert!(!eps.waits_for_flight(2, 2), "b is not due yet");
    assert!(
        eps.waits_for_flight(3, 3),
        "b waits for a's request to finish"
    );
    eps.finished(1, finished(500), "HTTP 500", 4);
    assert!(!eps.waits_for_flight(4, 4), "the budget has room again");
}

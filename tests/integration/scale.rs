//! Several daemons on one PostgreSQL queue (a private cluster: `util::pg`): every message
//! delivered once, a killed daemon's claims taken over after the lease, a database restart and
//! a database outage survived with nothing accepted lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::api::call;
use crate::util::pg::Cluster;
use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

/// Enqueues `n` messages to `url` in one `--jsonl` batch; their uuids.
fn enqueue_many(env: &TestEnv, url: &str, n: usize) -> Vec<String> {
    let mut jsonl = String::with_capacity(n * 80);
    for i in 0..n {
        jsonl += &format!("{{\"url\":\"{url}\",\"body\":\"message {i}\"}}\n");
    }
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], jsonl.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Enqueues `n` messages to named endpoint `endpoint` in one `--jsonl` batch.
fn enqueue_to(env: &TestEnv, endpoint: &str, n: usize) {
    let lines: String = (0..n)
        .map(|_| format!("{{\"endpoint\":\"{endpoint}\"}}\n"))
        .collect();
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], lines.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `webhookd endpoints show NAME` says `state` (which every daemon shares).
fn until_endpoint_is(env: &TestEnv, name: &str, state: &str) {
    wait_until(Duration::from_secs(10), state, || {
        env.ok(&["endpoints", "show", name, "--json"])
            .contains(&format!("\"{state}\""))
    });
}

/// A receiver that holds every request (never answers) while the flag is set, then answers 200.
fn holding_receiver() -> (Receiver, Arc<AtomicBool>) {
    let hold = Arc::new(AtomicBool::new(true));
    let held = Arc::clone(&hold);
    let rx = Receiver::start(move |_, _| {
        if held.load(Ordering::SeqCst) {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    (rx, hold)
}

/// How many times the receiver got each webhook-id.
fn deliveries(rx: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.requests() {
        *seen.entry(r.webhook_id()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn three_daemons_deliver_every_message_once_and_list_each_other() {
    let Some(a) = TestEnv::on_postgres("three-a", FAST) else {
        return;
    };
    let (b, c) = (a.sibling("three-b"), a.sibling("three-c"));
    let rx = Receiver::ok();
    let _da = a.daemon();
    let _db = b.daemon();
    let _dc = c.daemon();
    let status = a.status();
    let daemons = status["daemons"]
        .as_array()
        .expect("status lists the daemons");
    assert_eq!(daemons.len(), 3, "{status}");
    for d in daemons {
        assert!(d["pid"].as_u64().is_some() && d["host"].is_string(), "{d}");
    }
    let n = 20_000;
    let uuids = enqueue_many(&a, &rx.url("/three"), n);
    assert_eq!(uuids.len(), n);
    wait_until(Duration::from_secs(180), "every message delivered", || {
        a.queue("delivered") == n as u64
    });
    let seen = deliveries(&rx);
    assert_eq!(seen.len(), n, "every message reached the receiver");
    let twice: Vec<_> = seen.iter().filter(|(_, &k)| k > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for u in &uuids {
        assert!(seen.contains_key(u), "{u} never delivered");
    }
}

#[test]
fn a_killed_daemons_claims_are_taken_over_after_the_lease() {
    let config = format!("lease = \"3s\"\n{FAST}");
    let Some(a) = TestEnv::on_postgres("killed-a", &config) else {
        return;
    };
    let b = a.sibling("killed-b");
    // The receiver holds every request until the first daemon is dead.
    let (rx, hold) = holding_receiver();
    let mut da = a.daemon();
    let uuids = enqueue_many(&a, &rx.url("/killed"), 4);
    wait_until(Duration::from_secs(10), "a request in flight", || {
        rx.count() == 1
    });
    let taken = rx.requests()[0].webhook_id();
    assert_eq!(a.queue("in_flight"), 1, "{}", a.status());
    da.kill9();
    // As if it ran on another host: a daemon of this host that is gone is taken over at once
    // (the next test); one elsewhere only when its lease has ended.
    let moved: i64 = a.sql_one(
        "WITH u AS (UPDATE daemons SET host = 'elsewhere', node = 'elsewhere' RETURNING 1) SELECT count(*) FROM u",
    );
    assert_eq!(moved, 1);
    hold.store(false, Ordering::SeqCst);
    let killed_at = std::time::Instant::now();
    let db = b.daemon();
    wait_until(Duration::from_secs(30), "all 4 delivered", || {
        a.queue("delivered") == 4
    });
    // The others were pending: the second daemon sends them at once; the claimed one only once
    // its lease (3 s, renewed last at most a second before the kill) has ended.
    let delivered_at = rx.for_id(&taken)[1].at;
    assert!(
        delivered_at.duration_since(killed_at) >= Duration::from_secs(1),
        "taken over before the lease ended: {:?}",
        delivered_at.duration_since(killed_at)
    );
    for u in &uuids {
        assert_eq!(a.state(u), "delivered");
        let expected = if *u == taken { 2 } else { 1 };
        assert_eq!(rx.for_id(u).len(), expected, "{u}: attempts seen");
    }
    assert!(
        db.log_text()
            .contains("took over 1 message whose lease expired"),
        "{}",
        db.log_text()
    );
}

#[test]
fn a_killed_daemon_of_this_host_is_taken_over_at_once() {
    let Some(a) = TestEnv::on_postgres("dead-a", FAST) else {
        return;
    };
    let b = a.sibling("dead-b");
    let (rx, hold) = holding_receiver();
    let mut da = a.daemon();
    let uuid = a.enqueue(&[&rx.url("/dead")]);
    wait_until(Duration::from_secs(10), "the request in flight", || {
        rx.count() == 1
    });
    da.kill9();
    hold.store(false, Ordering::SeqCst);
    // The lease is 30 s: only the dead process tells the other daemon it may take over.
    let db = b.daemon();
    wait_until(Duration::from_secs(10), "taken over and delivered", || {
        a.state(&uuid) == "delivered"
    });
    assert!(
        db.log_text().contains("took over 1 message of daemon pid"),
        "{}",
        db.log_text()
    );
    let status = a.status();
    assert_eq!(status["daemons"].as_array().unwrap().len(), 1, "{status}");
}

#[test]
fn a_database_restart_is_survived_and_nothing_is_lost() {
    if !crate::util::pg::installed() {
        return;
    }
    let cluster = Cluster::private();
    let url = cluster.database("restart").1;
    let env = TestEnv::with_db("restart", FAST, url.into());
    let rx = Receiver::ok();
    let d = env.daemon();
    let first = enqueue_many(&env, &rx.url("/restart"), 500);
    cluster.stop_server();
    std::thread::sleep(Duration::from_millis(500));
    cluster.start_server();
    let second = enqueue_many(&env, &rx.url("/restart"), 500);
    wait_until(Duration::from_secs(60), "all 1000 delivered", || {
        env.queue("delivered") == 1000
    });
    let seen = deliveries(&rx);
    for u in first.iter().chain(&second) {
        assert!(seen.contains_key(u), "{u} never delivered");
    }
    assert!(d.log_text().contains("unavailable"), "{}", d.log_text());
}

#[test]
fn while_the_database_is_down_the_api_answers_503_and_accepted_messages_are_kept() {
    if !crate::util::pg::installed() {
        return;
    }
    let cluster = Cluster::private();
    let url = cluster.database("down").1;
    let env = TestEnv::with_db("down", FAST, url.into());
    let rx = Receiver::ok();
    let _d = env.daemon();
    let sock = env.api_socket();
    let post = |i: usize| {
        call(
            &sock,
            "POST",
            "/v1/messages",
            Some(&serde_json::json!({"url": rx.url("/down"), "body": format!("m{i}")})),
        )
    };
    let mut accepted = Vec::new();
    for i in 0..50 {
        let a = post(i);
        assert_eq!(a.status, 202, "{}", a.text());
        accepted.push(a.json()["uuid"].as_str().unwrap().to_owned());
    }
    cluster.stop_server();
    let down_at = std::time::Instant::now();
    let mut refused = 0;
    while down_at.elapsed() < Duration::from_secs(10) {
        let a = post(1000 + refused);
        match a.status {
            202 => accepted.push(a.json()["uuid"].as_str().unwrap().to_owned()),
            503 => {
                assert!(a.header("retry-after").is_some(), "{}", a.text());
                refused += 1;
            }
            other => panic!("while the database is down: {other} {}", a.text()),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(refused > 0, "nothing refused while the database was down");
    cluster.start_server();
    wait_until(
        Duration::from_secs(60),
        "every accepted message delivered",
        || {
            let seen = deliveries(&rx);
            accepted.iter().all(|u| seen.contains_key(u))
        },
    );
}

#[test]
fn an_endpoints_cap_holds_across_three_daemons() {
    let rx = Receiver::start(|_, _| {
        Reply::Delay(Duration::from_millis(100), Box::new(Reply::Status(200)))
    });
    let config = format!(
        "{FAST}\n[endpoints.capped]\nurl = \"{}\"\nconcurrency = 2\n",
        rx.url("/")
    );
    let Some(a) = TestEnv::on_postgres("cap-a", &config) else {
        return;
    };
    let (b, c) = (a.sibling("cap-b"), a.sibling("cap-c"));
    let d = [
        a.daemon_with(&["-v"]),
        b.daemon_with(&["-v"]),
        c.daemon_with(&["-v"]),
    ];
    enqueue_to(&a, "capped", 60);
    wait_until(Duration::from_secs(30), "60 delivered", || {
        a.queue("delivered") == 60
    });
    assert_eq!(rx.count(), 60);
    // Each daemon alone allows 2: three of them must not make it 6.
    assert!(rx.max_concurrent() <= 2, "{} at once", rx.max_concurrent());
    // ... and they share the work (the cap is not one daemon holding the endpoint).
    let busy = d
        .iter()
        .filter(|d| d.log_text().contains("delivered 0"))
        .count();
    assert!(busy >= 2, "only {busy} of the daemons delivered");
}

#[test]
fn an_endpoints_rate_holds_across_three_daemons() {
    let rx = Receiver::ok();
    let config = format!(
        "{FAST}\n[endpoints.metered]\nurl = \"{}\"\nrate = \"20/s\"\nconcurrency = 50\n",
        rx.url("/")
    );
    let Some(a) = TestEnv::on_postgres("rate-a", &config) else {
        return;
    };
    let (b, c) = (a.sibling("rate-b"), a.sibling("rate-c"));
    let _d = [a.daemon(), b.daemon(), c.daemon()];
    enqueue_to(&a, "metered", 60);
    wait_until(Duration::from_secs(15), "60 delivered", || rx.count() == 60);
    let reqs = rx.requests();
    // After the burst (0.1 s worth, 2 requests), arrivals follow the rate: 20/s in all, not
    // 20/s per daemon.
    let span = reqs[59].at - reqs[2].at;
    let rate = 57.0 / span.as_secs_f64();
    assert!((18.0..=22.0).contains(&rate), "{rate:.1}/s for rate = 20/s");
}

/// An endpoint's configuration for the shared-state tests: enough attempts that no message
/// dies while the endpoint fails.
fn failing_endpoint(name: &str, rx: &Receiver, extra: &str) -> String {
    format!(
        "{FAST}\n[endpoints.{name}]\nurl = \"{}\"\nmax_attempts = 1000\n{extra}\n",
        rx.url("/")
    )
}

#[test]
fn an_endpoint_disabled_by_one_daemon_is_disabled_and_enabled_for_all() {
    // The first request hears 410 Gone for the endpoint's own URL: that daemon disables the
    // endpoint. Every other request fails slowly, which alone never disables it (the breaker
    // is out of reach): the other daemons stop only because they take the shared state.
    let healthy = Arc::new(AtomicBool::new(false));
    let ok = Arc::clone(&healthy);
    let rx = Receiver::start(move |_, before| {
        if ok.load(Ordering::SeqCst) {
            Reply::Status(200)
        } else if before.is_empty() {
            Reply::Status(410)
        } else {
            Reply::Delay(Duration::from_millis(100), Box::new(Reply::Status(503)))
        }
    });
    let config = failing_endpoint("gone", &rx, "breaker_failures = 1000");
    let Some(a) = TestEnv::on_postgres("disabled-a", &config) else {
        return;
    };
    let (b, c) = (a.sibling("disabled-b"), a.sibling("disabled-c"));
    let d = [a.daemon(), b.daemon(), c.daemon()];
    enqueue_to(&a, "gone", 30);
    until_endpoint_is(&a, "gone", "disabled");
    // What was in flight finishes (a request at a time: the endpoint fails), then nothing.
    let mut settled = rx.count();
    wait_until(Duration::from_secs(5), "requests stop", || {
        std::thread::sleep(Duration::from_millis(400));
        let n = rx.count();
        std::mem::replace(&mut settled, n) == n
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rx.count(),
        settled,
        "a daemon kept sending to an endpoint another daemon disabled"
    );
    healthy.store(true, Ordering::SeqCst);
    a.ok(&["endpoints", "enable", "gone"]);
    wait_until(Duration::from_secs(20), "every message delivered", || {
        b.queue("delivered") == 29
    });
    // Every daemon took the enabled state (one of them logs the operator's request).
    for (i, daemon) in d.iter().enumerate() {
        wait_until(Duration::from_secs(5), "each daemon enabled", || {
            let log = daemon.log_text();
            log.contains("enabled by an operator") || log.contains("is healthy on every daemon")
        });
        assert!(
            !daemon.log_text().contains("ERROR"),
            "daemon {i}: {}",
            daemon.log_text()
        );
    }
}

#[test]
fn an_open_breaker_is_probed_once_per_cooldown_by_all_daemons() {
    let rx = Receiver::start(|_, _| Reply::Status(503));
    let config = failing_endpoint(
        "flaky",
        &rx,
        "breaker_failures = 3\nbreaker_cooldown = \"1s\"",
    );
    let Some(a) = TestEnv::on_postgres("breaker-a", &config) else {
        return;
    };
    let (b, c) = (a.sibling("breaker-b"), a.sibling("breaker-c"));
    let _d = [a.daemon(), b.daemon(), c.daemon()];
    enqueue_to(&a, "flaky", 30);
    until_endpoint_is(&a, "flaky", "open");
    let opened = rx.count();
    std::thread::sleep(Duration::from_millis(4_500));
    // After the failures that opened it (and a request or two in flight then), the probes:
    // one at a time over all daemons, a cooldown apart, not one per daemon.
    let reqs = rx.requests();
    let after: Vec<_> = reqs[opened..].iter().map(|r| r.at).collect();
    let probes: Vec<_> = after
        .windows(2)
        .map(|w| w[1] - w[0])
        .skip_while(|gap| *gap < Duration::from_millis(500))
        .collect();
    assert!(
        !probes.is_empty() && after.len() <= 8,
        "{} requests after the breaker opened, gaps {probes:?}",
        after.len()
    );
    for gap in &probes {
        assert!(
            *gap >= Duration::from_millis(900),
            "two daemons probed {gap:?} apart (cooldown 1 s): {probes:?}"
        );
    }
}

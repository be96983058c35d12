use std::time::Duration;

use crate::util::{wait_until, Receiver, Reply, TestEnv};

/// After a message is final, give the daemon time to (wrongly) send more before counting.
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn failing_receiver_gets_exactly_max_attempts_then_dead() {
    let env = TestEnv::new("exact");
    let rx = Receiver::start(|_, _| Reply::Status(500));
    let uuid = env.enqueue(&[&rx.url("/fail")]);
    let five = env.enqueue(&[&rx.url("/fail5"), "--max-attempts", "5"]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "both dead", || {
        env.state(&uuid) == "dead" && env.state(&five) == "dead"
    });
    settle();
    assert_eq!(rx.for_id(&uuid).len(), 3, "config max_attempts = 3");
    assert_eq!(rx.for_id(&five).len(), 5, "--max-attempts 5");
    let v = env.show(&uuid);
    assert_eq!(v["attempts"].as_array().unwrap().len(), 3);
    assert!(v["last_error"].as_str().unwrap().contains("HTTP 500"));
}

#[test]
fn flaky_receiver_succeeds_on_third_attempt_with_stable_webhook_id() {
    let env = TestEnv::with_config(
        "flaky",
        &crate::util::FAST.replace("max_attempts = 3", "max_attempts = 5"),
    );
    let rx = Receiver::start(|req, earlier| {
        let id = req.webhook_id();
        if earlier.iter().filter(|r| r.webhook_id() == id).count() < 2 {
            Reply::Status(502)
        } else {
            Reply::Status(200)
        }
    });
    let uuid = env.enqueue(&[&rx.url("/flaky"), "-d", "x"]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&uuid) == "delivered"
    });
    settle();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.webhook_id() == uuid));
    let statuses: Vec<i64> = env.show(&uuid)["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [502, 502, 200]);
}

#[test]
fn backoff_grows_between_attempts() {
    let env = TestEnv::with_config(
        "backoff",
        "workers = 2\n[retry]\nmax_attempts = 4\nbase_delay = \"200ms\"\nmax_delay = \"10s\"\n",
    );
    let rx = Receiver::start(|_, _| Reply::Status(500));
    let uuid = env.enqueue(&[&rx.url("/b")]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(15), "dead", || {
        env.state(&uuid) == "dead"
    });
    let at: Vec<_> = rx.requests().iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Nominal 200, 400, 800 ms with +-20% jitter: each gap within its band (a little later for
    // the time a claim and a request take), so neither too short nor doubled.
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    for (gap, nominal) in gaps.iter().zip([200u64, 400, 800]) {
        let low = Duration::from_millis(nominal * 8 / 10 - 10);
        let high = Duration::from_millis(nominal * 12 / 10 + 150);
        assert!(
            *gap >= low && *gap <= high,
            "{gaps:?}: {gap:?} not in {low:?}..{high:?}"
        );
    }
    assert!(gaps[2] > gaps[0], "{gaps:?}");
}

#[test]
fn retry_after_on_503_and_429_sets_the_delay() {
    let env = TestEnv::with_config(
        "retry-after",
        "workers = 2\n[retry]\nmax_attempts = 3\nbase_delay = \"20ms\"\nmax_delay = \"10s\"\n",
    );
    let rx = Receiver::start(|req, earlier| {
        let id = req.webhook_id();
        if earlier.iter().any(|r| r.webhook_id() == id) {
            return Reply::Status(200);
        }
        let status = if req.path == "/503" { 503 } else { 429 };
        Reply::Full {
            status,
            headers: vec![("Retry-After".into(), "2".into())],
            body: Vec::new(),
        }
    });
    let a = env.enqueue(&[&rx.url("/503")]);
    let b = env.enqueue(&[&rx.url("/429")]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "both delivered", || {
        env.state(&a) == "delivered" && env.state(&b) == "delivered"
    });
    for id in [&a, &b] {
        let reqs = rx.for_id(id);
        assert_eq!(reqs.len(), 2);
        // base_delay is 20 ms; only Retry-After explains a 2 s gap.
        assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(1900));
    }
}

#[test]
fn retry_after_is_capped_at_max_delay() {
    let env = TestEnv::new("retry-after-cap");
    let rx = Receiver::start(|req, earlier| {
        let id = req.webhook_id();
        if earlier.iter().any(|r| r.webhook_id() == id) {
            return Reply::Status(200);
        }
        Reply::Full {
            status: 503,
            headers: vec![("Retry-After".into(), "3600".into())],
            body: Vec::new(),
        }
    });
    let uuid = env.enqueue(&[&rx.url("/cap")]);
    let _d = env.daemon();
    // max_delay is 100 ms in FAST.
    wait_until(
        Duration::from_secs(5),
        "delivered despite Retry-After: 3600",
        || env.state(&uuid) == "delivered",
    );
}

#[test]
fn gone_dead_letters_at_once() {
    let env = TestEnv::new("gone");
    let rx = Receiver::start(|_, _| Reply::Status(410));
    let uuid = env.enqueue(&[&rx.url("/gone")]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    settle();
    assert_eq!(rx.count(), 1);
    assert!(env.show(&uuid)["last_error"]
        .as_str()
        .unwrap()
        .contains("410"));
}

#[test]
fn redirects_are_recorded_not_followed() {
    let env = TestEnv::new("redirect");
    let rx = Receiver::start(|req, _| {
        if req.path == "/moved" {
            Reply::Full {
                status: 302,
                headers: vec![("Location".into(), "/elsewhere".into())],
                body: Vec::new(),
            }
        } else {
            Reply::Status(200)
        }
    });
    let uuid = env.enqueue(&[&rx.url("/moved"), "--max-attempts", "1"]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    settle();
    assert!(
        rx.requests().iter().all(|r| r.path == "/moved"),
        "redirect followed"
    );
    let out = env.ok(&["dlq", "show", &uuid]);
    assert!(out.contains("redirect to /elsewhere not followed"), "{out}");
}

#[test]
fn connection_refused_is_a_failed_attempt() {
    let env = TestEnv::new("refused");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let uuid = env.enqueue(&[&format!("http://127.0.0.1:{port}/none")]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    let v = env.show(&uuid);
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts[0]["status"].is_null());
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{v}"
    );
}

#[test]
fn hanging_receiver_times_out_without_stalling_others() {
    let env = TestEnv::with_config(
        "hang",
        "workers = 2\n[retry]\nmax_attempts = 2\nbase_delay = \"20ms\"\n[http]\ntimeout = \"1s\"\n",
    );
    let rx = Receiver::start(|req, _| {
        if req.path == "/hang" {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    let hung = env.enqueue(&[&rx.url("/hang")]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(5), "hanging request", || {
        rx.count() >= 1
    });
    let others: Vec<String> = (0..20).map(|_| env.enqueue(&[&rx.url("/ok")])).collect();
    wait_until(
        Duration::from_secs(10),
        "others delivered while one hangs",
        || env.queue("delivered") == 20,
    );
    assert!(others.iter().all(|u| env.state(u) == "delivered"));
    wait_until(
        Duration::from_secs(10),
        "hung message dead after 2 timeouts",
        || env.state(&hung) == "dead",
    );
    let v = env.show(&hung);
    assert!(v["last_error"].as_str().unwrap().contains("timeout"), "{v}");
}

#[test]
fn huge_response_body_does_not_grow_memory() {
    let env = TestEnv::new("huge");
    // 4 GiB response to each attempt: the daemon must stop reading after a small cap.
    let rx = Receiver::start(|req, _| {
        if req.path == "/huge" {
            Reply::Endless(4 << 30)
        } else {
            Reply::Status(200)
        }
    });
    let huge = env.enqueue(&[&rx.url("/huge")]);
    let d = env.daemon();
    wait_until(Duration::from_secs(10), "huge one recorded", || {
        env.state(&huge) == "delivered"
    });
    for _ in 0..10 {
        env.enqueue(&[&rx.url("/small")]);
    }
    wait_until(Duration::from_secs(10), "others delivered", || {
        env.queue("delivered") == 11
    });
    let peak = d.peak_rss_kib();
    assert!(peak < 64 * 1024, "daemon peak RSS {peak} KiB");
    let v = env.show(&huge);
    assert!(v["attempts"][0]["response_excerpt"].as_str().unwrap().len() <= 1024);
}

use std::time::Duration;

use crate::util::{wait_until, Receiver, Reply, TestEnv};

/// A receiver that fails `/fail` and accepts everything else.
fn receiver() -> Receiver {
    Receiver::start(|req, _| {
        if req.path.starts_with("/fail") {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    })
}

fn dead_message(env: &TestEnv, rx: &Receiver, extra: &[&str]) -> String {
    let url = rx.url("/fail");
    let mut args = vec![url.as_str(), "--max-attempts", "1"];
    args.extend_from_slice(extra);
    let uuid = env.enqueue(&args);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    uuid
}

#[test]
fn list_and_show_dead_messages() {
    let env = TestEnv::new("dlq-list");
    let rx = receiver();
    let _d = env.daemon();
    let a = dead_message(&env, &rx, &["-d", "payload-a"]);
    let ok = env.enqueue(&[&rx.url("/fine")]);
    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&ok) == "delivered"
    });

    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["dlq", "list", "--json"])).unwrap();
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["uuid"], a.as_str());
    assert_eq!(items[0]["attempts"], 1);
    assert!(items[0]["last_error"].as_str().unwrap().contains("500"));
    assert!(items[0]["dead_at"].is_string());

    let table = env.ok(&["dlq", "list"]);
    assert!(table.contains(&a) && table.contains("HTTP 500"), "{table}");

    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["dlq", "show", &a, "--json"])).unwrap();
    assert_eq!(show["state"], "dead");
    assert_eq!(show["body"], "payload-a");
    assert_eq!(show["attempts"][0]["status"], 500);

    let (code, err) = env.fail(&["dlq", "show", &ok]);
    assert_eq!(code, 65);
    assert!(err.contains(&ok) && err.contains("delivered"), "{err}");
}

#[test]
fn retry_without_edits_resends_with_fresh_budget() {
    let env = TestEnv::new("dlq-retry");
    let flip = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = flip.clone();
    let rx = Receiver::start(move |_, _| {
        if f.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Status(503)
        }
    });
    let _d = env.daemon();
    let uuid = env.enqueue(&[&rx.url("/x")]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    assert_eq!(rx.count(), 3);
    flip.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = env.ok(&["dlq", "retry", &uuid]);
    assert_eq!(out.trim(), "retried 1 of 1 matching message");
    wait_until(Duration::from_secs(10), "delivered after retry", || {
        env.state(&uuid) == "delivered"
    });
    let v = env.show(&uuid);
    assert!(v["retried_at"].is_string());
    assert_eq!(
        v["attempts"].as_array().unwrap().len(),
        4,
        "history kept across the retry"
    );
    assert_eq!(rx.count(), 4);
}

#[test]
fn retry_with_edits_changes_url_headers_and_body() {
    let env = TestEnv::new("dlq-edit");
    let rx = receiver();
    let _d = env.daemon();
    let uuid = dead_message(
        &env,
        &rx,
        &[
            "-H",
            "X-Old: 1",
            "-H",
            "Authorization: Bearer stale",
            "-d",
            "old",
        ],
    );
    env.ok(&[
        "dlq",
        "retry",
        &uuid,
        "--url",
        &rx.url("/fixed"),
        "-H",
        "authorization: Bearer fresh",
        "-H",
        "X-New: yes",
        "--remove-header",
        "x-old",
        "-d",
        "new body",
    ]);
    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&uuid) == "delivered"
    });
    let req = rx
        .requests()
        .into_iter()
        .find(|r| r.path == "/fixed")
        .expect("request to the new URL");
    assert_eq!(req.webhook_id(), uuid);
    assert_eq!(req.body, b"new body");
    assert_eq!(req.header("authorization"), Some("Bearer fresh"));
    assert_eq!(req.header("x-new"), Some("yes"));
    assert_eq!(req.header("x-old"), None);
    assert_eq!(
        req.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .count(),
        1
    );
}

#[test]
fn retry_all_and_delete_all() {
    let env = TestEnv::new("dlq-all");
    let rx = receiver();
    let _d = env.daemon();
    let dead: Vec<String> = (0..3).map(|_| dead_message(&env, &rx, &[])).collect();
    env.ok(&["dlq", "retry", "--all", "--url", &rx.url("/ok")]);
    wait_until(Duration::from_secs(10), "all delivered", || {
        dead.iter().all(|u| env.state(u) == "delivered")
    });

    let more: Vec<String> = (0..2).map(|_| dead_message(&env, &rx, &[])).collect();
    // Not a terminal: a bulk delete needs --yes, and without it changes nothing.
    let (code, err) = env.fail(&["dlq", "delete", "--all"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--yes") && err.contains("2 messages"), "{err}");
    assert_eq!(env.queue("dead"), 2);
    let out = env.ok(&["dlq", "delete", "--all", "--yes", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["matched"].as_u64(), v["changed"].as_u64()),
        (Some(2), Some(2))
    );
    let mut deleted: Vec<&str> = v["uuids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    deleted.sort_unstable();
    let mut want: Vec<&str> = more.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(deleted, want);
    assert_eq!(env.queue("dead"), 0);
    for u in &more {
        let (code, err) = env.fail(&["show", u]);
        assert_eq!(code, 66);
        assert!(err.contains(u.as_str()));
    }
}

#[test]
fn delete_one_and_unknown_uuids_change_nothing() {
    let env = TestEnv::new("dlq-delete");
    let rx = receiver();
    let _d = env.daemon();
    let a = dead_message(&env, &rx, &[]);
    let b = dead_message(&env, &rx, &[]);
    let unknown = "01234567-89ab-7def-8123-456789abcdef";
    let before = (env.show(&a), env.show(&b));
    for args in [
        vec!["dlq", "delete", &a, unknown],
        vec!["dlq", "retry", &a, unknown],
        vec!["dlq", "retry", &a, unknown, "-d", "changed"],
        vec!["dlq", "show", unknown],
        vec!["show", unknown],
        vec!["show", "not-a-uuid"],
    ] {
        let (code, err) = env.fail(&args);
        // A malformed uuid is a usage error (64); a well-formed unknown one is not found (66).
        let (wanted, exit) = if args.contains(&"not-a-uuid") {
            ("not-a-uuid", 64)
        } else {
            (unknown, 66)
        };
        assert_eq!(code, exit, "{args:?}: {err}");
        assert!(err.contains(wanted), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // All or nothing: neither message changed in any way (state, budget, body, history).
    assert_eq!(
        (env.show(&a), env.show(&b)),
        before,
        "a named uuid was unknown: nothing changes"
    );
    assert_eq!(env.queue("dead"), 2);
    env.ok(&["dlq", "delete", &a]);
    assert_eq!(env.state(&a), "missing");
    assert_eq!(env.state(&b), "dead");
}

#[test]
fn retry_of_a_pending_message_is_refused() {
    let env = TestEnv::new("dlq-notdead");
    let uuid = env.enqueue(&["http://127.0.0.1:9/x"]);
    let (code, err) = env.fail(&["dlq", "retry", &uuid]);
    assert_eq!(code, 65);
    assert!(err.contains("pending"), "{err}");
}

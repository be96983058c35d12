//! An operator's control of the whole queue (issue 12, part A): list with filters and pages,
//! cancel, bulk DLQ actions by filter, replay, confirmation, response capture.

use std::time::Duration;

use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `list --json` with `args`: the uuids of the page and its next cursor.
#[track_caller]
fn list(env: &TestEnv, args: &[&str]) -> (Vec<String>, Option<String>) {
    let mut full = vec!["list", "--json"];
    full.extend_from_slice(args);
    let v = json(&env.ok(&full));
    let uuids = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uuid"].as_str().unwrap().to_owned())
        .collect();
    (uuids, v["next_cursor"].as_str().map(str::to_owned))
}

#[test]
fn list_shows_any_state_newest_first_with_filters_and_pages() {
    let rx = Receiver::start(|req, _| match req.path.as_str() {
        "/fail" => Reply::Full {
            status: 503,
            headers: Vec::new(),
            body: b"upstream timeout".to_vec(),
        },
        "/gone" => Reply::Status(410),
        _ => Reply::Status(200),
    });
    let env = TestEnv::with_config(
        "list",
        &format!(
            "{FAST}\n[endpoints.billing]\nurl = \"{}\"\n",
            rx.url("/billing")
        ),
    );
    let delivered = env.enqueue(&[&rx.url("/ok")]);
    let dead = env.enqueue(&[&rx.url("/fail")]);
    let gone = env.enqueue(&[&rx.url("/gone")]);
    let mut d = env.daemon();
    wait_until(Duration::from_secs(10), "settled", || {
        env.state(&delivered) == "delivered"
            && env.state(&dead) == "dead"
            && env.state(&gone) == "dead"
    });
    d.terminate();
    let scheduled = env.enqueue(&[&rx.url("/later"), "--delay", "1h", "--key", "k-later"]);
    let pending: Vec<String> = (0..5).map(|_| env.enqueue(&[&rx.url("/p")])).collect();
    let ep = env.enqueue(&["--endpoint", "billing", "--path", "/x"]);

    // Default: everything but delivered, newest first.
    let (all, cursor) = list(&env, &[]);
    let mut want: Vec<String> = vec![ep.clone()];
    want.extend(pending.iter().rev().cloned());
    want.extend([scheduled.clone(), gone.clone(), dead.clone()]);
    assert_eq!(all, want);
    assert_eq!(cursor, None);

    // Pages of 3 follow the cursor without gaps or repeats.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["--limit", "3"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let (page, next) = list(&env, &args);
        assert!(page.len() <= 3);
        paged.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, want);

    for (args, expect) in [
        (vec!["--state", "delivered"], vec![delivered.clone()]),
        (vec!["--state", "scheduled"], vec![scheduled.clone()]),
        (
            vec!["--state", "dead", "--status", "5xx"],
            vec![dead.clone()],
        ),
        (
            vec!["--state", "dead", "--status", "410"],
            vec![gone.clone()],
        ),
        (
            vec!["--state", "dead", "--error", "UPSTREAM"],
            vec![dead.clone()],
        ),
        (vec!["--endpoint", "billing"], vec![ep.clone()]),
        (vec!["--key", "k-later"], vec![scheduled.clone()]),
        (vec!["--url-prefix", &rx.url("/g")], vec![gone.clone()]),
        (
            vec![
                "--state",
                "pending",
                "--state",
                "delivered",
                "--until",
                "1h",
            ],
            vec![],
        ),
    ] {
        assert_eq!(list(&env, &args).0, expect, "{args:?}");
    }
    let (recent, _) = list(
        &env,
        &[
            "--since",
            "1h",
            "--state",
            "delivered",
            "--state",
            "pending",
        ],
    );
    assert_eq!(recent.len(), 8);
    assert_eq!(recent.last(), Some(&delivered));

    // The JSON of a listed message is show's, without the body and attempts.
    let v = json(&env.ok(&["list", "--json", "--key", "k-later"]));
    let m = &v["messages"][0];
    let shown = env.show(&scheduled);
    for k in [
        "uuid",
        "state",
        "url",
        "headers",
        "created_at",
        "next_attempt_at",
        "max_attempts",
    ] {
        assert_eq!(m[k], shown[k], "{k}");
    }
    assert!(
        m.get("body").is_none() && m.get("attempts").is_none(),
        "{m}"
    );

    // The table names the state, destination, attempts and last result.
    let table = env.ok(&["list", "--state", "dead"]);
    assert!(table.starts_with("UUID"), "{table}");
    assert!(
        table.contains(&dead) && table.contains("HTTP 503: upstream timeout"),
        "{table}"
    );

    // Bad options are command-line errors (64), an unknown endpoint is not found (66).
    for (args, needle) in [
        (vec!["list", "--state", "gone"], "unknown state"),
        (vec!["list", "--limit", "0"], "--limit"),
        (vec!["list", "--cursor", "x"], "--cursor"),
        (vec!["list", "--since", "yesterday"], "--since"),
        (vec!["list", "--status", "9xx"], "--status"),
    ] {
        let (code, err) = env.fail(&args);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains(needle), "{err}");
    }
    let (code, err) = env.fail(&["list", "--endpoint", "nosuch"]);
    assert_eq!(code, 66, "{err}");
}

#[test]
fn cancel_stops_pending_scheduled_and_waiting_and_in_flight_after_its_attempt() {
    let slow = Receiver::start(|_, _| {
        Reply::Delay(Duration::from_millis(1500), Box::new(Reply::Status(500)))
    });
    let ok = Receiver::ok();
    let env = TestEnv::new("cancel");
    let later = env.enqueue(&[&ok.url("/later"), "--delay", "400d"]);
    let lane: Vec<String> = (0..3)
        .map(|i| {
            env.enqueue(&[
                &ok.url(&format!("/lane{i}")),
                "--ordering-key",
                "k",
                "--delay",
                "1h",
            ])
        })
        .collect();
    assert_eq!(env.state(&lane[1]), "waiting");
    let out = env.ok(&["cancel", &later, "--json"]);
    let v = json(&out);
    assert_eq!(
        (v["matched"].as_u64(), v["changed"].as_u64()),
        (Some(1), Some(1))
    );
    let shown = env.show(&later);
    assert_eq!(shown["state"], "cancelled");
    assert!(shown["cancelled_at"].is_string());

    // Cancelling the head of a lane lets the next one go.
    env.ok(&["cancel", &lane[0]]);
    assert_eq!(env.state(&lane[0]), "cancelled");
    assert_eq!(env.state(&lane[1]), "pending", "promoted");
    assert_eq!(env.state(&lane[2]), "waiting");

    // In flight: cancelled when the attempt ends, and never retried.
    let _d = env.daemon();
    let busy = env.enqueue(&[&slow.url("/slow")]);
    wait_until(Duration::from_secs(5), "in flight", || slow.count() == 1);
    let out = env.ok(&["cancel", &busy]);
    assert!(out.contains("1 in flight will be cancelled"), "{out}");
    assert_eq!(env.show(&busy)["cancel_requested"], true);
    wait_until(
        Duration::from_secs(10),
        "cancelled after the attempt",
        || env.state(&busy) == "cancelled",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(slow.count(), 1, "no retry after a cancel");
    assert_eq!(env.show(&busy)["attempts_total"], 1);

    // Refused: a message that is not cancellable, all or nothing.
    let (code, err) = env.fail(&["cancel", &lane[2], &later]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("cancelled and cannot be cancelled"), "{err}");
    assert_eq!(env.state(&lane[2]), "waiting", "nothing changed");
    assert_eq!(env.status()["queue"]["cancelled"], 3);
}

#[test]
fn bulk_cancel_by_filter_counts_asks_and_runs_in_batches() {
    let env = TestEnv::new("cancel-bulk");
    let keep = env.enqueue(&["http://127.0.0.1:9/keep", "--delay", "1h"]);
    let lines: String = (0..1200)
        .map(|i| format!("{{\"url\":\"http://127.0.0.1:9/old/{i}\",\"delay\":\"1h\"}}\n"))
        .collect();
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], lines.as_bytes());
    assert!(out.status.success());
    let prefix = "http://127.0.0.1:9/old/";
    let v = json(&env.ok(&["cancel", "--url-prefix", prefix, "--dry-run", "--json"]));
    assert_eq!(
        (v["matched"].as_u64(), v["dry_run"].as_bool()),
        (Some(1200), Some(true))
    );
    assert_eq!(v["uuids"].as_array().unwrap().len(), 1200);
    assert_eq!(env.queue("cancelled"), 0, "a dry run changes nothing");
    // stdin is not a terminal: --yes is required, and nothing changes without it.
    let (code, err) = env.fail(&["cancel", "--url-prefix", prefix]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("1200 messages") && err.contains("--yes"),
        "{err}"
    );
    let out = env.ok(&["cancel", "--url-prefix", prefix, "--yes"]);
    assert_eq!(out.trim(), "cancelled 1200 of 1200 matching messages");
    assert_eq!(env.queue("cancelled"), 1200);
    assert_eq!(env.state(&keep), "pending");
}

/// A bulk action asks on a terminal: answering no changes nothing, yes goes ahead.
#[test]
fn bulk_delete_asks_for_confirmation_on_a_terminal() {
    let rx = Receiver::start(|_, _| Reply::Status(500));
    let env = TestEnv::new("confirm");
    let _d = env.daemon();
    let dead = env.enqueue(&[&rx.url("/x")]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&dead) == "dead"
    });
    let (code, shown, err) = crate::util::run_on_tty(&env, &["dlq", "delete", "--all"], "n");
    assert_eq!(code, 1, "{shown}{err}");
    assert!(err.contains("dlq delete 1 message? [y/N]"), "{err}");
    assert_eq!(env.state(&dead), "dead");
    let (code, shown, err) = crate::util::run_on_tty(&env, &["dlq", "delete", "--all"], "y");
    assert_eq!(code, 0, "{shown}{err}");
    assert!(shown.contains("deleted 1 of 1"), "{shown}");
    assert_eq!(env.state(&dead), "missing");
}

#[test]
fn dlq_retry_and_delete_by_filter() {
    let flaky = Receiver::start(|req, _| {
        if req.path.starts_with("/bad") {
            Reply::Status(502)
        } else {
            Reply::Status(422)
        }
    });
    let env = TestEnv::new("dlq-filter");
    let _d = env.daemon();
    let bad: Vec<String> = (0..3).map(|_| env.enqueue(&[&flaky.url("/bad")])).collect();
    let other = env.enqueue(&[&flaky.url("/other")]);
    wait_until(Duration::from_secs(15), "all dead", || {
        env.queue("dead") == 4
    });
    let v = json(&env.ok(&[
        "dlq",
        "retry",
        "--status",
        "5xx",
        "--since",
        "1h",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(v["matched"], 3);
    let mut want = bad.clone();
    want.reverse();
    assert_eq!(v["uuids"], serde_json::json!(want));
    let out = env.ok(&[
        "dlq",
        "retry",
        "--status",
        "5xx",
        "--url",
        &flaky.url("/fixed"),
    ]);
    assert_eq!(out.trim(), "retried 3 of 3 matching messages");
    wait_until(
        Duration::from_secs(15),
        "dead again, at the new URL",
        || {
            bad.iter()
                .all(|u| env.state(u) == "dead" && env.show(u)["url"] == flaky.url("/fixed"))
        },
    );
    assert_eq!(env.state(&other), "dead");
    let out = env.ok(&["dlq", "delete", "--status", "422", "--yes"]);
    assert_eq!(out.trim(), "deleted 4 of 4 matching messages");
    assert_eq!(env.queue("dead"), 0);
    let (code, err) = env.fail(&["dlq", "retry", "--state", "pending"]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn replay_sends_delivered_messages_again_with_the_same_uuid() {
    let rx = Receiver::ok();
    let env = TestEnv::new("replay");
    let _d = env.daemon();
    let a = env.enqueue(&[&rx.url("/a"), "--key", "order-42", "-d", "{\"n\":1}"]);
    let b = env.enqueue(&[&rx.url("/b")]);
    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&a) == "delivered" && env.state(&b) == "delivered"
    });
    let (code, err) = env.fail(&["replay"]);
    assert_eq!(code, 64);
    assert!(err.contains("at least one filter"), "{err}");
    // Receivers get the messages again: without a terminal to ask on, it needs --yes.
    let (code, err) = env.fail(&["replay", "--key", "order-42"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("replay would change 1 message: add --yes"),
        "{err}"
    );
    assert_eq!(env.show(&a)["replayed_at"], serde_json::Value::Null);
    let out = env.ok(&["replay", "--key", "order-42", "--yes"]);
    assert_eq!(out.trim(), "replayed 1 of 1 matching message");
    wait_until(Duration::from_secs(10), "delivered again", || {
        rx.for_id(&a).len() == 2
    });
    let again = rx.for_id(&a);
    assert_eq!(again[1].body, b"{\"n\":1}");
    assert_eq!(again[1].webhook_id(), a, "the same webhook-id");
    // Received is not yet recorded: the outcome rides on the daemon's next transaction.
    wait_until(
        Duration::from_secs(5),
        "recorded as delivered again",
        || env.show(&a)["attempts_total"].as_u64() == Some(2),
    );
    let v = env.show(&a);
    assert_eq!(v["state"], "delivered");
    assert!(v["replayed_at"].is_string());
    assert_eq!(
        (v["attempts_used"].as_u64(), v["attempts_total"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(rx.for_id(&b).len(), 1, "b was not selected");
    let (code, _) = env.fail(&["replay", "--state", "pending"]);
    assert_eq!(code, 64);
}

#[test]
fn failed_responses_are_kept_up_to_http_capture() {
    let big = vec![b'x'; 10_000];
    let body = big.clone();
    let rx = Receiver::start(move |req, _| Reply::Full {
        status: if req.path == "/ok" { 200 } else { 500 },
        headers: Vec::new(),
        body: body.clone(),
    });
    let env = TestEnv::new("capture");
    let _d = env.daemon();
    let failed = env.enqueue(&[&rx.url("/fail"), "--max-attempts", "1"]);
    let ok = env.enqueue(&[&rx.url("/ok")]);
    wait_until(Duration::from_secs(10), "done", || {
        env.state(&failed) == "dead" && env.state(&ok) == "delivered"
    });
    let excerpt = |u: &str| {
        env.show(u)["attempts"][0]["response_excerpt"]
            .as_str()
            .unwrap()
            .len()
    };
    assert_eq!(excerpt(&failed), 4096, "http.capture defaults to 4 KiB");
    assert_eq!(excerpt(&ok), 1024, "1 KiB of a successful one");
    let env2 = TestEnv::with_config("capture-100", &format!("{FAST}capture = \"100B\"\n"));
    let _d2 = env2.daemon();
    let failed = env2.enqueue(&[&rx.url("/fail"), "--max-attempts", "1"]);
    wait_until(Duration::from_secs(10), "dead", || {
        env2.state(&failed) == "dead"
    });
    assert_eq!(
        env2.show(&failed)["attempts"][0]["response_excerpt"]
            .as_str()
            .unwrap()
            .len(),
        100
    );
}

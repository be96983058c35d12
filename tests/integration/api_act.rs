//! The operator's actions over the API: cancel, dlq retry (with edits) and delete, replay; the
//! same selections, reports and refusals as the bulk commands.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::api::call;
use crate::util::{wait_until, Receiver, Reply, TestEnv};

#[test]
fn cancel_one_or_by_filter_with_a_dry_run_first() {
    let env = TestEnv::new("api-cancel");
    let _d = env.daemon();
    let sock = env.api_socket();
    let later =
        |key: &str| env.enqueue(&["http://127.0.0.1:9/later", "--delay", "1h", "--key", key]);
    let (a, b, c) = (later("a"), later("b"), later("c"));
    let one = call(&sock, "POST", &format!("/v1/messages/{a}/cancel"), None);
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["changed"], 1);
    assert_eq!(env.state(&a), "cancelled");
    let again = call(&sock, "POST", &format!("/v1/messages/{a}/cancel"), None);
    assert_eq!(again.status, 409, "{}", again.text());

    let dry = call(
        &sock,
        "POST",
        "/v1/messages/cancel",
        Some(&json!({"key": "b", "dry_run": true})),
    );
    assert_eq!(dry.status, 200, "{}", dry.text());
    let r = dry.json();
    assert_eq!(
        (r["dry_run"].clone(), r["matched"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(r["uuids"], json!([b]));
    assert_eq!(env.state(&b), "pending", "a dry run changes nothing");
    let done = call(
        &sock,
        "POST",
        "/v1/messages/cancel",
        Some(&json!({"state": ["pending"], "url_prefix": "http://127.0.0.1:9/"})),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json()["changed"], 2);
    assert_eq!(
        (env.state(&b), env.state(&c)),
        ("cancelled".into(), "cancelled".into())
    );

    for (body, field) in [
        (json!({}), None),
        (json!({"colour": "red"}), Some("colour")),
        (json!({"state": "delivered"}), Some("state")),
        (json!({"since": "yesterday-ish"}), Some("since")),
        (json!({"uuids": ["nope"]}), Some("uuids[0]")),
        (json!({"uuids": [a], "key": "a"}), Some("uuids")),
        (json!({"all": true}), Some("all")),
    ] {
        let r = call(&sock, "POST", "/v1/messages/cancel", Some(&body));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f, "{body}");
        }
    }
}

#[test]
fn dead_letters_are_retried_with_edits_deleted_and_replayed() {
    let rx = Receiver::start(|r, _| {
        if r.path.starts_with("/broken") {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    let env = TestEnv::new("api-dlq");
    let _d = env.daemon();
    let sock = env.api_socket();
    let dead: Vec<String> = (0..3)
        .map(|i| env.enqueue(&[&rx.url("/broken"), "-d", &format!("old{i}")]))
        .collect();
    wait_until(Duration::from_secs(10), "three dead", || {
        dead.iter().all(|u| env.state(u) == "dead")
    });
    let listed = call(&sock, "GET", "/v1/dlq?limit=10", None).json();
    assert_eq!(listed["messages"].as_array().unwrap().len(), 3);

    let bad = call(
        &sock,
        "POST",
        "/v1/dlq/retry",
        Some(&json!({"uuids": [dead[0]], "url": "not a url"})),
    );
    assert_eq!(
        (bad.status, bad.json()["field"].clone()),
        (400, json!("url"))
    );
    let retried = call(
        &sock,
        "POST",
        "/v1/dlq/retry",
        Some(&json!({
            "uuids": [dead[0]],
            "url": rx.url("/fixed"),
            "headers": {"X-Fixed": "yes"},
            "body": "new"
        })),
    );
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(retried.json()["changed"], 1);
    wait_until(Duration::from_secs(10), "the edited retry", || {
        !rx.for_id(&dead[0]).iter().all(|r| r.path != "/fixed")
    });
    let got = rx
        .for_id(&dead[0])
        .into_iter()
        .find(|r| r.path == "/fixed")
        .unwrap();
    assert_eq!(
        (got.body.as_slice(), got.header("x-fixed")),
        (&b"new"[..], Some("yes"))
    );
    // A retry of a message that is not dead: refused, nothing changes.
    let not_dead = call(
        &sock,
        "POST",
        "/v1/dlq/retry",
        Some(&json!({"uuids": [dead[0]]})),
    );
    assert!(matches!(not_dead.status, 409 | 400), "{}", not_dead.text());

    let deleted = call(&sock, "POST", "/v1/dlq/delete", Some(&json!({"all": true})));
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["changed"], 2);
    assert_eq!(
        call(&sock, "GET", &format!("/v1/messages/{}", dead[1]), None).status,
        404
    );

    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&dead[0]) == "delivered"
    });
    let r = call(
        &sock,
        "POST",
        "/v1/replay",
        Some(&json!({"uuids": [dead[0]]})),
    );
    assert_eq!(r.status, 400, "replay takes filters");
    let before = rx.for_id(&dead[0]).len();
    let replayed = call(
        &sock,
        "POST",
        "/v1/replay",
        Some(&json!({"state": "delivered", "url_prefix": rx.url("/fixed")})),
    );
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    assert_eq!(replayed.json()["changed"], 1);
    wait_until(Duration::from_secs(10), "replayed", || {
        rx.for_id(&dead[0]).len() == before + 1
    });
    let report: Value = replayed.json();
    assert_eq!(report["action"], "replay");
}

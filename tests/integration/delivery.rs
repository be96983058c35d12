use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{file, wait_until, Receiver, TestEnv};

#[test]
fn delivers_body_and_headers_byte_for_byte() {
    let env = TestEnv::new("intact");
    let rx = Receiver::ok();
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let path = file(&env, "body.bin", &body);
    let uuid = env.enqueue(&[
        &rx.url("/hooks/a?x=1"),
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "X-Custom:  spaced value ",
        "-d",
        &format!("@{path}"),
    ]);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "delivery", || rx.count() == 1);
    let req = &rx.requests()[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/hooks/a?x=1");
    assert_eq!(req.body, body);
    assert_eq!(req.header("content-type"), Some("application/octet-stream"));
    assert_eq!(req.header("x-custom"), Some("spaced value"));
    assert_eq!(req.webhook_id(), uuid);
    assert!(req.header("user-agent").unwrap().starts_with("webhookd/"));
    let ts: u64 = req.header("webhook-timestamp").unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 60, "timestamp {ts} vs now {now}");
    wait_until(Duration::from_secs(5), "delivered state", || {
        env.state(&uuid) == "delivered"
    });
    let v = env.show(&uuid);
    assert_eq!(v["body_size"], 10_000);
    assert_eq!(v["attempts"][0]["status"], 200);
    assert!(v["delivered_at"].is_string());
}

#[test]
fn body_from_stdin_and_default_method_post() {
    let env = TestEnv::new("stdin");
    let rx = Receiver::ok();
    let out = env.run_stdin(&["enqueue", &rx.url("/s"), "-d", "@-"], b"from\0stdin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "delivery", || rx.count() == 1);
    let req = &rx.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, b"from\0stdin");
}

#[test]
fn delivers_two_thousand_messages_each_once_with_their_own_body() {
    let env = TestEnv::new("many");
    let rx = Receiver::ok();
    let mut jsonl = String::new();
    for i in 0..2000 {
        jsonl += &format!(
            "{{\"url\":\"{}\",\"body\":\"message {i}\"}}\n",
            rx.url("/many")
        );
    }
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], jsonl.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uuids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(uuids.len(), 2000);
    let _d = env.daemon();
    wait_until(Duration::from_secs(30), "2000 deliveries", || {
        env.queue("delivered") == 2000
    });
    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        2000,
        "each message exactly once on a healthy receiver"
    );
    let ids: HashSet<String> = reqs.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids, uuids.iter().cloned().collect::<HashSet<_>>());
    for r in &reqs {
        let i = uuids.iter().position(|u| *u == r.webhook_id()).unwrap();
        assert_eq!(r.body, format!("message {i}").as_bytes());
    }
}

#[test]
fn delay_holds_the_first_attempt() {
    let env = TestEnv::new("delay");
    let rx = Receiver::ok();
    let _d = env.daemon();
    let t0 = std::time::Instant::now();
    let uuid = env.enqueue(&[&rx.url("/later"), "--delay", "2s"]);
    let s = env.status();
    assert_eq!(s["queue"]["pending"], 1);
    assert_eq!(s["queue"]["scheduled"], 1);
    assert!(env.show(&uuid)["next_attempt_at"].is_string());
    wait_until(Duration::from_secs(10), "delayed delivery", || {
        rx.count() == 1
    });
    assert!(rx.requests()[0].at - t0 >= Duration::from_millis(1900));
}

#[test]
fn idempotency_key_stores_one_message() {
    let env = TestEnv::new("key");
    let rx = Receiver::ok();
    let a = env.enqueue(&[&rx.url("/k"), "--key", "order-42", "-d", "first"]);
    let b = env.enqueue(&[&rx.url("/k"), "--key", "order-42", "-d", "second"]);
    assert_eq!(a, b);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["enqueue", &rx.url("/k"), "--key", "order-42", "--json"]))
            .unwrap();
    assert_eq!(json["uuid"], a.as_str());
    assert_eq!(json["created"], false);
    assert_eq!(env.queue("pending"), 1);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "delivery", || {
        env.state(&a) == "delivered"
    });
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.requests()[0].body, b"first");
}

#[test]
fn enqueue_json_prints_uuid_and_state() {
    let env = TestEnv::new("json");
    let out = env.ok(&["enqueue", "http://127.0.0.1:9/x", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["uuid"].as_str().unwrap().len(), 36);
    assert_eq!(v["state"], "pending");
}

//! Plain URLs are grouped by origin (scheme, host, port), each with an endpoint's policy: a
//! hanging or failing customer host cannot hold the workers or burn retries, the others go on.

use std::time::Duration;

use serde_json::Value;

use crate::util::{wait_until, Receiver, Reply, TestEnv};

const CONFIG: &str = r#"
workers = 4
[retry]
max_attempts = 3
base_delay = "20ms"
max_delay = "100ms"
[origins]
breaker_failures = 2
breaker_cooldown = "1h"
[http]
timeout = "3s"
connect_timeout = "1s"
"#;

#[test]
fn a_hanging_and_a_failing_origin_cannot_hold_the_workers_or_burn_retries() {
    let hanging = Receiver::start(|_, _| Reply::Hang);
    let failing = Receiver::start(|_, _| Reply::Status(500));
    let healthy = Receiver::ok();
    let env = TestEnv::with_config("origins", CONFIG);
    let _d = env.daemon();
    let mut lines = String::new();
    for i in 0..6 {
        lines.push_str(&format!(
            "{{\"url\": \"{}\"}}\n",
            hanging.url(&format!("/h{i}"))
        ));
        lines.push_str(&format!(
            "{{\"url\": \"{}\"}}\n",
            failing.url(&format!("/f{i}"))
        ));
    }
    for i in 0..20 {
        lines.push_str(&format!(
            "{{\"url\": \"{}\"}}\n",
            healthy.url(&format!("/ok{i}"))
        ));
    }
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], lines.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The healthy host gets everything, at once, while the others are held back.
    wait_until(Duration::from_secs(10), "the healthy origin's 20", || {
        healthy.count() == 20
    });
    // The failing host: two failures open its breaker (cooldown 1h); nothing more is sent, and
    // its messages keep their attempts.
    wait_until(Duration::from_secs(10), "the failing origin opened", || {
        origin(&env, &failing.url("")).is_some_and(|o| o["state"] == "open")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(failing.count(), 2, "no request after the breaker opened");
    // The hanging host: one request at a time until it answers (it never does).
    assert_eq!(hanging.max_concurrent(), 1);
    let h = origin(&env, &hanging.url("")).expect("the hanging origin is listed");
    assert_eq!(h["in_flight"], 1, "{h}");
    // Their messages wait; none is dead.
    let status = env.status();
    assert_eq!(status["queue"]["dead"], 0, "{status}");
    // Origins are no endpoints: `endpoints list` does not show them, a message's view neither.
    let eps: Value = serde_json::from_str(&env.ok(&["endpoints", "list", "--json"])).unwrap();
    assert_eq!(eps, serde_json::json!([]));
}

/// The `origins list --json` entry of the origin of `url`.
fn origin(env: &TestEnv, url: &str) -> Option<Value> {
    let list: Value = serde_json::from_str(&env.ok(&["origins", "list", "--json"])).unwrap();
    let uri: String = url.trim_end_matches('/').to_owned();
    list.as_array()?
        .iter()
        .find(|o| o["origin"].as_str() == Some(uri.as_str()))
        .cloned()
}

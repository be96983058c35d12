use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

/// The Standard Webhooks specification's test secret, and a second one for rotation.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const SECRET2: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Enqueues JSON lines, all or nothing.
fn enqueue_lines(env: &TestEnv, lines: &str) {
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], lines.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A receiver answering `failing` until the returned switch is set, then 200.
fn switchable(failing: u16) -> (Arc<AtomicBool>, Receiver) {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let rx = Receiver::start(move |_, _| {
        Reply::Status(if h.load(Ordering::SeqCst) {
            200
        } else {
            failing
        })
    });
    (healthy, rx)
}

fn endpoint_state(env: &TestEnv, name: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["endpoints", "show", name, "--json"])).unwrap()
}

/// Verifies a request's signature with Python's standard library only (hmac, hashlib, base64):
/// an implementation independent of webhookd's. Returns how many of `secrets` verify.
pub(crate) fn python_verifies(req: &crate::util::receiver::Request, secrets: &[&str]) -> usize {
    let script = r#"
import base64, hashlib, hmac, sys
msg_id, ts, sig_header, body_path = sys.argv[1:5]
body = open(body_path, 'rb').read()
ok = 0
for secret in sys.argv[5:]:
    key = base64.b64decode(secret.split('_', 1)[1])
    mac = hmac.new(key, msg_id.encode() + b'.' + ts.encode() + b'.' + body, hashlib.sha256)
    want = base64.b64encode(mac.digest()).decode()
    if any(hmac.compare_digest(s.split(',', 1)[1], want) for s in sig_header.split(' ') if s.startswith('v1,')):
        ok += 1
print(ok)
"#;
    let body = std::env::temp_dir().join(format!(
        "webhookd-sig-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&body, &req.body).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(req.header("webhook-id").unwrap())
        .arg(req.header("webhook-timestamp").unwrap())
        .arg(req.header("webhook-signature").unwrap())
        .arg(&body)
        .args(secrets)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn signed_delivery_verifies_independently_with_rotated_secrets_from_credentials() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config(
        "sign",
        &format!(
            "{FAST}\n[endpoints.billing]\nurl = \"{}\"\nsecret = \"{SECRET2}\"\nsecret_file = \"billing.secret\"\nheader_files = {{ Authorization = \"billing.auth\" }}\nheaders = {{ \"X-Team\" = \"payments\" }}\n",
            rx.url("/hooks")
        ),
    );
    // Secrets come from systemd's credentials directory (LoadCredential=), not the config.
    let creds = env.dir.join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("billing.secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(creds.join("billing.auth"), "Bearer t0ken-from-credential\n").unwrap();
    let creds_env = [("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())];
    let out = env
        .cmd(&[
            "enqueue",
            "--endpoint",
            "billing",
            "--path",
            "/v2/invoice?x=1",
            "-d",
            "{\"n\":1}",
        ])
        .envs(creds_env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uuid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let d = env.daemon_env(&[], &creds_env);
    wait_until(Duration::from_secs(10), "delivered", || rx.count() == 1);
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/hooks/v2/invoice?x=1");
    assert_eq!(
        req.header("authorization"),
        Some("Bearer t0ken-from-credential")
    );
    assert_eq!(req.header("x-team"), Some("payments"));
    assert_eq!(req.webhook_id(), uuid);
    let sig = req.header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "one signature per secret: {sig}");
    assert_eq!(python_verifies(req, &[SECRET]), 1);
    assert_eq!(python_verifies(req, &[SECRET2]), 1);
    assert_eq!(
        python_verifies(req, &["whsec_ZmFrZWZha2VmYWtlZmFrZWZha2VmYWtlZmFrZQ=="]),
        0
    );

    // `webhookd verify` agrees, and refuses a changed body.
    let ts = req.header("webhook-timestamp").unwrap().to_owned();
    let body = String::from_utf8(req.body.clone()).unwrap();
    let verify = |secret: &str, body: &str| {
        Command::new(crate::util::bin())
            .args([
                "verify",
                "--secret",
                secret,
                "--id",
                &uuid,
                "--timestamp",
                &ts,
            ])
            .args(["--signature", sig, "-d", body])
            .output()
            .unwrap()
    };
    let ok = verify(SECRET, &body);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = verify(SECRET, "{\"n\":2}");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not match"));

    // Secrets are never shown or logged.
    let shown = env
        .cmd(&["endpoints", "show", "billing", "--json"])
        .envs(creds_env)
        .output()
        .unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("\"signing_secrets\":2"), "{shown}");
    for secret in [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "AAECAwQF",
        "t0ken-from-credential",
    ] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!d.log_text().contains(secret));
    }
}

#[test]
fn the_specification_test_vector_verifies() {
    let out = Command::new(crate::util::bin())
        .args([
            "verify",
            "--secret",
            SECRET,
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
        ])
        .args(["--timestamp", "1614265330", "--tolerance", "0"])
        .args([
            "--signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ])
        .args(["-d", "{\"test\": 2432232314}"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --tolerance 0, a 2021 timestamp is refused as a replay.
    let old = Command::new(crate::util::bin())
        .args([
            "verify",
            "--secret",
            SECRET,
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
        ])
        .args(["--timestamp", "1614265330"])
        .args([
            "--signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ])
        .args(["-d", "{\"test\": 2432232314}"])
        .output()
        .unwrap();
    assert_eq!(old.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&old.stderr).contains("tolerance"));
}

#[test]
fn concurrency_cap_is_observed_at_the_receiver() {
    let rx = Receiver::start(|_, _| {
        Reply::Delay(Duration::from_millis(150), Box::new(Reply::Status(200)))
    });
    let env = TestEnv::with_config(
        "conc",
        &format!(
            "{}\n[endpoints.slow]\nurl = \"{}\"\nconcurrency = 2\n",
            FAST.replace("workers = 4", "workers = 8"),
            rx.url("/")
        ),
    );
    let lines: String = (0..12)
        .map(|i| format!("{{\"endpoint\":\"slow\",\"body\":\"{i}\"}}\n"))
        .collect();
    enqueue_lines(&env, &lines);
    let _d = env.daemon();
    wait_until(Duration::from_secs(15), "12 delivered", || rx.count() == 12);
    assert_eq!(rx.max_concurrent(), 2, "concurrency = 2 with 8 workers");
}

#[test]
fn rate_limit_holds_within_ten_percent() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config(
        "rate",
        &format!(
            "{FAST}\n[endpoints.metered]\nurl = \"{}\"\nrate = \"20/s\"\nconcurrency = 50\n",
            rx.url("/")
        ),
    );
    let lines: String = (0..60).map(|_| "{\"endpoint\":\"metered\"}\n").collect();
    enqueue_lines(&env, &lines);
    let _d = env.daemon();
    wait_until(Duration::from_secs(15), "60 delivered", || rx.count() == 60);
    let reqs = rx.requests();
    // After the burst (0.1 s worth, 2 requests), arrivals follow the rate.
    let span = reqs[59].at - reqs[2].at;
    let rate = 57.0 / span.as_secs_f64();
    assert!((18.0..=22.0).contains(&rate), "{rate:.1}/s for rate = 20/s");
}

#[test]
fn breaker_opens_waits_without_spending_attempts_probes_and_recovers_with_alerts() {
    let (healthy, rx) = switchable(503);
    let alerts = Receiver::ok();
    let env = TestEnv::with_config(
        "breaker",
        &format!(
            "alert_url = \"{}\"\n{}\n[endpoints.flaky]\nurl = \"{}\"\nbreaker_failures = 3\nbreaker_cooldown = \"400ms\"\nmax_attempts = 100\n",
            alerts.url("/alerts"),
            FAST,
            rx.url("/")
        ),
    );
    let lines: String = (0..10).map(|_| "{\"endpoint\":\"flaky\"}\n").collect();
    enqueue_lines(&env, &lines);
    let d = env.daemon();
    wait_until(Duration::from_secs(10), "open", || {
        endpoint_state(&env, "flaky")["state"] == "open"
    });
    let at_open = rx.count();
    // Open for 1.5 s: probes at 0.4, 1.2 s (doubling) at most, not 10 messages x retries.
    std::thread::sleep(Duration::from_millis(1500));
    let probes = rx.count() - at_open;
    assert!(probes <= 3, "{probes} requests while open");
    let v = endpoint_state(&env, "flaky");
    assert!(v["consecutive_failures"].as_i64().unwrap() >= 3);
    assert_eq!(
        v["pending"].as_u64().unwrap() + v["in_flight"].as_u64().unwrap(),
        10
    );
    healthy.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(10), "all delivered", || {
        env.queue("delivered") == 10
    });
    // Waiting while open spent nothing: 10 deliveries + the failures before opening + probes.
    assert!(
        rx.count() <= 10 + at_open + probes + 2,
        "{} requests",
        rx.count()
    );
    wait_until(Duration::from_secs(5), "healthy", || {
        endpoint_state(&env, "flaky")["state"] == "healthy"
    });
    wait_until(Duration::from_secs(5), "two alerts", || alerts.count() >= 2);
    let texts: Vec<String> = alerts
        .requests()
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(texts[0].contains("endpoint flaky opened"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("endpoint flaky recovered")),
        "{texts:?}"
    );
    assert!(d.log_text().contains("endpoint flaky opened"));
}

/// A 410 for the endpoint's own URL dead-letters that message and disables the endpoint: later
/// messages are held until an operator enables it.
#[test]
fn gone_for_the_endpoint_url_disables_it_and_holds_later_messages_until_enabled() {
    let (healthy, rx) = switchable(410);
    let alerts = Receiver::ok();
    let env = TestEnv::with_config(
        "gone",
        &format!(
            "alert_url = \"{}\"\nalert_format = \"json\"\n{FAST}\n[endpoints.old]\nurl = \"{}\"\n",
            alerts.url("/"),
            rx.url("/")
        ),
    );
    let first = env.enqueue(&["--endpoint", "old"]);
    let mut d = env.daemon();
    wait_until(Duration::from_secs(10), "disabled", || {
        endpoint_state(&env, "old")["state"] == "disabled"
    });
    // systemctl status shows it (STATUS= is sent every 5 s).
    let shown = (0..16).any(|_| {
        d.collect_notices(Duration::from_millis(500))
            .iter()
            .any(|(_, n)| n.contains("STATUS=") && n.contains("endpoints: 0 open, 1 disabled"))
    });
    assert!(shown, "STATUS= names the disabled endpoint");
    assert_eq!(env.status()["endpoints"]["disabled"], 1);
    let second = env.enqueue(&["--endpoint", "old"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.count(), 1, "nothing sent while disabled");
    let v = env.show(&first);
    assert_eq!(
        (v["state"].as_str(), v["attempts_total"].as_u64()),
        (Some("dead"), Some(1)),
        "410: dead at once, one attempt"
    );
    assert_eq!(env.state(&second), "pending", "held");
    // `list` says why it waits: held by its disabled endpoint.
    let v = env.show(&second);
    assert_eq!(v["endpoint_state"], "disabled");
    assert_eq!(
        v["path"],
        serde_json::Value::Null,
        "no path: null, not \"\""
    );
    let table = env.ok(&["list"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&second))
        .expect("listed");
    assert!(row.contains(" held "), "{row}");
    wait_until(Duration::from_secs(5), "alerts", || alerts.count() >= 2);
    let events: Vec<String> = alerts
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        events.contains(&"endpoint_disabled".to_owned()),
        "{events:?}"
    );
    assert!(events.contains(&"dead_letter".to_owned()), "{events:?}");
    healthy.store(true, Ordering::SeqCst);
    let out = env.ok(&["endpoints", "enable", "old"]);
    assert!(out.contains("enabled (was disabled)"), "{out}");
    wait_until(Duration::from_secs(10), "the held one delivered", || {
        env.state(&second) == "delivered"
    });
    assert_eq!(env.show(&second)["endpoint_state"], "healthy");
    env.ok(&["dlq", "retry", &first]);
    wait_until(
        Duration::from_secs(10),
        "the dead one delivered after dlq retry",
        || env.state(&first) == "delivered",
    );
}

/// Regression test for issue 12, B.3: a 410 on one path dead-letters that message after one
/// attempt (never more than its budget), and the endpoint keeps delivering its other paths; only
/// several 410s in a row (different messages) disable it.
#[test]
fn r12_a_410_on_one_path_dead_letters_that_message_only() {
    let rx = Receiver::start(|req, _| {
        if req.path.starts_with("/s410") {
            Reply::Status(410)
        } else {
            Reply::Status(200)
        }
    });
    let env = TestEnv::with_config(
        "gone-path",
        &format!(
            "{FAST}\n[endpoints.billing]\nurl = \"{}\"\nmax_attempts = 4\n",
            rx.url("")
        ),
    );
    let _d = env.daemon();
    let gone = env.enqueue(&["--endpoint", "billing", "--path", "/s410"]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&gone) == "dead"
    });
    let ok = env.enqueue(&["--endpoint", "billing", "--path", "/fine"]);
    wait_until(Duration::from_secs(10), "the other path delivered", || {
        env.state(&ok) == "delivered"
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rx.requests().iter().filter(|r| r.path == "/s410").count(),
        1,
        "one attempt, never more"
    );
    assert_eq!(env.show(&gone)["attempts_total"], 1);
    assert_eq!(endpoint_state(&env, "billing")["state"], "healthy");
    // Three different messages answered 410 in a row: now the endpoint is gone.
    let more: Vec<String> = (1..=3)
        .map(|i| env.enqueue(&["--endpoint", "billing", "--path", &format!("/s410/{i}")]))
        .collect();
    wait_until(
        Duration::from_secs(10),
        "disabled after 410s in a row",
        || endpoint_state(&env, "billing")["state"] == "disabled",
    );
    for u in &more {
        assert_eq!(env.state(u), "dead");
        assert_eq!(env.show(u)["attempts_total"], 1);
    }
}

#[test]
fn a_hanging_endpoint_does_not_slow_the_others() {
    let hang = Receiver::start(|_, _| Reply::Hang);
    let fast = Receiver::ok();
    // The hanging receiver never answers within the test (timeout 60 s): its endpoint has one
    // request at a time until a first success, which never comes.
    let env = TestEnv::with_config(
        "hang",
        &format!(
            "{FAST}\n[endpoints.hang]\nurl = \"{}\"\ntimeout = \"60s\"\n[endpoints.fast]\nurl = \"{}\"\n",
            hang.url("/"),
            fast.url("/")
        ),
    );
    let mut lines = String::new();
    for i in 0..400 {
        if i % 4 == 0 {
            lines.push_str("{\"endpoint\":\"hang\"}\n");
        }
        lines.push_str("{\"endpoint\":\"fast\"}\n");
    }
    enqueue_lines(&env, &lines);
    let _d = env.daemon();
    let started = Instant::now();
    wait_until(Duration::from_secs(20), "fast endpoint drained", || {
        fast.count() == 400
    });
    // Slow start: no success yet, so one request at a time; it never answers.
    assert_eq!(hang.count(), 1, "the hanging endpoint holds one worker");
    // 400 deliveries on loopback take well under a second with three free workers; had the
    // hanging endpoint taken the pool (or most of it), they would take far longer or never end.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "400 messages took {took:?}");
    assert_eq!(endpoint_state(&env, "hang")["in_flight"], 1);
}

#[test]
fn ordered_endpoint_delivers_in_enqueue_order_under_retries() {
    // Every message fails its first attempt: without ordering, retries would reorder them.
    let rx = Receiver::start(|req, earlier| {
        let id = req.webhook_id();
        if earlier.iter().any(|r| r.webhook_id() == id) {
            Reply::Status(200)
        } else {
            Reply::Status(500)
        }
    });
    let env = TestEnv::with_config(
        "ordered",
        &format!(
            "{FAST}\n[endpoints.ledger]\nurl = \"{}\"\nordered = true\nmax_attempts = 5\n",
            rx.url("/")
        ),
    );
    let lines: String = (0..8)
        .map(|i| format!("{{\"endpoint\":\"ledger\",\"body\":\"{i}\"}}\n"))
        .collect();
    enqueue_lines(&env, &lines);
    let _d = env.daemon();
    wait_until(Duration::from_secs(15), "8 delivered", || {
        env.queue("delivered") == 8
    });
    let bodies: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    // One at a time: each message's failed attempt and its retry, in order.
    let want: Vec<String> = (0..8)
        .flat_map(|i| [i.to_string(), i.to_string()])
        .collect();
    assert_eq!(bodies, want);
}

#[test]
fn a_dead_message_blocks_its_lane_until_deleted_or_is_skipped() {
    let rx = Receiver::start(|req, _| Reply::Status(if req.body == b"bad" { 500 } else { 200 }));
    let env = TestEnv::with_config(
        "lanes",
        &format!(
            "{FAST}\n[endpoints.block]\nurl = \"{0}\"\nordered = true\n[endpoints.skip]\nurl = \"{0}\"\nordered = true\non_dead = \"skip\"\n[endpoints.keyed]\nurl = \"{0}\"\n",
            rx.url("/")
        ),
    );
    let bad = env.enqueue(&["--endpoint", "block", "-d", "bad"]);
    let after = env.enqueue(&["--endpoint", "block", "-d", "after"]);
    env.enqueue(&["--endpoint", "skip", "-d", "bad"]);
    let skipped_to = env.enqueue(&["--endpoint", "skip", "-d", "next"]);
    // Ordering keys: lane "a" is blocked by its dead message, lane "b" is not.
    env.enqueue(&["--endpoint", "keyed", "--ordering-key", "a", "-d", "bad"]);
    let a2 = env.enqueue(&["--endpoint", "keyed", "--ordering-key", "a", "-d", "a2"]);
    let b1 = env.enqueue(&["--endpoint", "keyed", "--ordering-key", "b", "-d", "b1"]);
    let _d = env.daemon();
    wait_until(
        Duration::from_secs(10),
        "skip lane and lane b go on",
        || env.state(&skipped_to) == "delivered" && env.state(&b1) == "delivered",
    );
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&bad) == "dead"
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.state(&after), "waiting");
    assert_eq!(env.state(&a2), "waiting");
    let queue = &env.status()["queue"];
    assert_eq!(
        (queue["waiting"].as_u64(), queue["pending"].as_u64()),
        (Some(2), Some(0)),
        "waiting messages are counted apart: {queue}"
    );
    let lanes = &endpoint_state(&env, "block")["lanes"];
    assert_eq!(lanes[0]["blocked"], true, "{lanes}");
    assert_eq!(lanes[0]["head"], bad.as_str());
    // Its URL belongs to the endpoint: a DLQ edit of it is refused, and nothing changes.
    let (code, err) = env.fail(&["dlq", "retry", &bad, "--url", "http://127.0.0.1:9/"]);
    assert_eq!(code, 65);
    assert!(err.contains("goes to a named endpoint"), "{err}");
    assert_eq!(env.state(&bad), "dead");
    env.ok(&["dlq", "delete", &bad]);
    wait_until(Duration::from_secs(10), "unblocked", || {
        env.state(&after) == "delivered"
    });
}

#[test]
fn reload_applies_endpoint_changes_to_queued_messages() {
    let rx = Receiver::ok();
    let config = |url: &str| {
        format!("{}\n[endpoints.moving]\nurl = \"{url}\"\nmax_attempts = 100\nheaders = {{ \"X-Version\" = \"{}\" }}\n",
            FAST.replace("max_delay = \"100ms\"", "max_delay = \"200ms\""),
            if url.contains("127.0.0.1:9") { "1" } else { "2" })
    };
    // Port 9 (discard) refuses: the message keeps retrying.
    let env = TestEnv::with_config("reload-ep", &config("http://127.0.0.1:9/old"));
    let uuid = env.enqueue(&["--endpoint", "moving", "--path", "/p"]);
    let d = env.daemon();
    wait_until(Duration::from_secs(10), "a failed attempt", || {
        env.show(&uuid)["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    env.write_config(&config(&rx.url("/new")));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "delivered to the new URL", || {
        env.state(&uuid) == "delivered"
    });
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/new/p");
    assert_eq!(req.header("x-version"), Some("2"));
    assert!(
        d.log_text().contains("endpoints moving"),
        "{}",
        d.log_text()
    );
}

#[test]
fn endpoint_input_errors_are_clear_and_store_nothing() {
    let env = TestEnv::with_config(
        "ep-input",
        &format!("{FAST}\n[endpoints.a]\nurl = \"http://127.0.0.1:9/\"\n"),
    );
    // Issue 12, B.8: an unknown endpoint is "not found" (66) everywhere.
    let (code, err) = env.fail(&["enqueue", "--endpoint", "nope"]);
    assert_eq!(code, 66);
    assert!(err.contains("no endpoint named \"nope\""), "{err}");
    let (code, err) = env.fail(&["enqueue", "--endpoint", "a", "--path", "v2"]);
    assert_eq!(code, 64);
    assert!(err.contains("must start with '/'"), "{err}");
    // Issue 12, B.8: without a database nothing is known of any endpoint's health: say so
    // (no "healthy"), and create nothing.
    for args in [&["endpoints", "list"][..], &["endpoints", "show", "a"]] {
        let (code, err) = env.fail(args);
        assert_eq!(code, 66, "{err}");
        assert!(err.contains(env.missing_db()), "{err}");
    }
    assert!(
        !env.db_created(),
        "a read-only command created the database"
    );
    let (code, err) = env.fail(&["enqueue", "http://x/", "--path", "/v2"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("a path can only be given with an endpoint"),
        "{err}"
    );
    let lines = "{\"endpoint\":\"nope\"}\n";
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], lines.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(65),
        "a JSON line's problem is bad data"
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("line 1: unknown endpoint \"nope\" (configured: a)"));
    env.ok(&["enqueue", "--endpoint", "a", "--delay", "1h"]);
    let (code, err) = env.fail(&["endpoints", "show", "zzz"]);
    assert_eq!(code, 66, "{err}");
    assert_eq!(env.queue("pending"), 1);
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["endpoints", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[0]["state"], "healthy");
    // A bad secret in the config is a configuration error naming the key.
    env.write_config(&format!(
        "{FAST}\n[endpoints.a]\nurl = \"http://h/\"\nsecret = \"whsec_c2hvcnQ=\"\n"
    ));
    let (code, err) = env.fail(&["status"]);
    assert_eq!(code, 78);
    assert!(err.contains("endpoints.a.secret"), "{err}");
}

#[test]
fn dead_letter_alerts_are_rate_limited_and_never_hold_up_deliveries() {
    let gone = Receiver::start(|_, _| Reply::Status(410));
    // The alert receiver is slow: alerts must not slow deliveries down.
    let alerts = Receiver::start(|_, _| {
        Reply::Delay(Duration::from_millis(300), Box::new(Reply::Status(200)))
    });
    let env = TestEnv::with_config(
        "alerts",
        &format!("alert_url = \"{}\"\n{FAST}", alerts.url("/slack")),
    );
    let url = gone.url("/gone");
    let lines: String = (0..30)
        .map(|_| format!("{{\"url\":\"{url}\"}}\n"))
        .collect();
    enqueue_lines(&env, &lines);
    let d = env.daemon();
    wait_until(Duration::from_secs(10), "30 dead", || {
        env.queue("dead") == 30
    });
    // Alerts go out one at a time, 300 ms each: deliveries finished long before them.
    assert!(alerts.count() < 10, "{} alerts already", alerts.count());
    wait_until(Duration::from_secs(10), "10 alerts", || {
        alerts.count() == 10
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(alerts.count(), 10, "a burst of 10, then 10 a minute");
    let first: serde_json::Value = serde_json::from_slice(&alerts.requests()[0].body).unwrap();
    assert!(
        first["text"].as_str().unwrap().contains("dead-lettered"),
        "{first}"
    );
    assert_eq!(
        d.log_text().matches("dead-lettered").count(),
        30,
        "every one is logged"
    );
}

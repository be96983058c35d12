use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::api::{call, Client};
use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

#[test]
fn a_message_posted_is_durable_when_answered_and_delivered() {
    let env = TestEnv::new("api-post");
    let rx = Receiver::ok();
    let _d = env.daemon();
    let sock = env.api_socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");
    let a = call(
        &sock,
        "POST",
        "/v1/messages",
        Some(&json!({"url": rx.url("/a"), "body": "hello", "headers": {"X-One": "1"}})),
    );
    assert_eq!(a.status, 202, "{}", a.text());
    let v = a.json();
    let uuid = v["uuid"].as_str().unwrap().to_owned();
    assert_eq!(v["created"], true);
    assert!(v["state"].is_string());
    // Answered only after the commit: the CLI (another connection) sees it at once.
    assert_eq!(env.show(&uuid)["uuid"], uuid.as_str());
    wait_until(Duration::from_secs(10), "delivery", || rx.count() == 1);
    let req = &rx.requests()[0];
    assert_eq!(req.body, b"hello");
    assert_eq!(req.header("x-one"), Some("1"));
    assert_eq!(req.webhook_id(), uuid);

    // Idempotency-Key is --key: the same request answers the first uuid, a different one 409.
    let mut c = Client::connect(&sock);
    let body = serde_json::to_vec(&json!({"url": rx.url("/k")})).unwrap();
    let hdrs = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-7"),
    ];
    let first = c.request("POST", "/v1/messages", &hdrs, &body);
    let again = c.request("POST", "/v1/messages", &hdrs, &body);
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.json()["uuid"], again.json()["uuid"]);
    assert_eq!(again.json()["created"], false);
    let other = serde_json::to_vec(&json!({"url": rx.url("/other")})).unwrap();
    let conflict = c.request("POST", "/v1/messages", &hdrs, &other);
    assert_eq!(conflict.status, 409, "{}", conflict.text());
    assert_eq!(
        conflict.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(conflict.json()["field"], "key");
    let shown = env.show(first.json()["uuid"].as_str().unwrap());
    assert_eq!(shown["key"], "order-7");
}

#[test]
fn a_batch_is_all_or_nothing_and_names_the_message_and_field() {
    let env = TestEnv::new("api-batch");
    let rx = Receiver::ok();
    let _d = env.daemon();
    let sock = env.api_socket();
    let good = json!({"url": rx.url("/b")});
    let bad = call(
        &sock,
        "POST",
        "/v1/messages/batch",
        Some(&json!([good, good, {"url": rx.url("/b"), "method": "GE T"}, good])),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let p = bad.json();
    assert_eq!(
        (p["index"].clone(), p["field"].clone()),
        (json!(2), json!("method"))
    );
    assert_eq!(env.queue("pending"), 0, "nothing stored");

    let mut c = Client::connect(&sock);
    let lines = format!("{good}\n\n{good}\n{{\"url\": 5}}\n");
    let bad = c.request(
        "POST",
        "/v1/messages/batch",
        &[("content-type", "application/x-ndjson")],
        lines.as_bytes(),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["line"], 4);
    assert_eq!(bad.json()["field"], "url");

    let bodies: Vec<Value> = (0..50)
        .map(|i| json!({"url": rx.url("/b"), "body": format!("m{i}")}))
        .collect();
    let ok = call(
        &sock,
        "POST",
        "/v1/messages/batch",
        Some(&Value::Array(bodies)),
    );
    assert_eq!(ok.status, 202, "{}", ok.text());
    let uuids: Vec<String> = ok.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uuid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(uuids.len(), 50);
    wait_until(Duration::from_secs(10), "50 deliveries", || {
        rx.count() == 50
    });
    for (i, uuid) in uuids.iter().enumerate() {
        let got = rx.for_id(uuid);
        assert_eq!(got.len(), 1, "{uuid}");
        assert_eq!(got[0].body, format!("m{i}").as_bytes(), "in order");
    }
}

#[test]
fn every_bad_message_of_the_cli_is_refused_the_same_and_nothing_stored() {
    let env = TestEnv::with_config("api-bad", &format!("max_body_size = 100\n{FAST}"));
    let _d = env.daemon();
    let sock = env.api_socket();
    let u = "http://127.0.0.1:9/a";
    for (body, field, status) in [
        (json!({"method": "POST"}), "url", 400),
        (json!({"url": "nope"}), "url", 400),
        (json!({"url": "ftp://x/"}), "url", 400),
        (json!({"url": "http://127.0.0.1:99999/"}), "url", 400),
        (json!({"url": u, "colour": "red"}), "colour", 400),
        (
            json!({"url": u, "headers": {"X": "a\r\nB: c"}}),
            "headers",
            400,
        ),
        (
            json!({"url": u, "headers": [{"name": "X"}]}),
            "headers[0]",
            400,
        ),
        (
            json!({"url": u, "body": "x", "body_base64": "eA=="}),
            "body",
            400,
        ),
        (json!({"url": u, "body_base64": "***"}), "body_base64", 400),
        (json!({"url": u, "delay": "whenever"}), "delay", 400),
        (json!({"url": u, "max_attempts": -1}), "max_attempts", 400),
        (json!({"url": u, "max_attempts": 0}), "max_attempts", 400),
        (json!({"url": u, "method": "G E T"}), "method", 400),
        (json!({"url": u, "endpoint": "nope"}), "url", 400),
        (json!({"endpoint": "nope"}), "endpoint", 400),
        (json!({"url": u, "path": "/x"}), "path", 400),
        (json!({"url": u, "body": "x".repeat(101)}), "body", 413),
    ] {
        let a = call(&sock, "POST", "/v1/messages", Some(&body));
        assert_eq!(a.status, status, "{body}: {}", a.text());
        assert_eq!(
            a.header("content-type"),
            Some("application/problem+json"),
            "{body}"
        );
        let p = a.json();
        assert_eq!(p["field"], field, "{body}: {p}");
        assert_eq!(p["status"], status);
        assert!(
            p["detail"].as_str().unwrap().starts_with(field),
            "{body}: {p}"
        );
    }
    assert_eq!(env.status()["queue"]["pending"], 0, "nothing stored");
}

#[test]
fn protocol_errors_are_problems() {
    let env = TestEnv::with_config(
        "api-proto",
        &format!("{FAST}\n[api]\nmax_request_size = 1000\n"),
    );
    let _d = env.daemon();
    let sock = env.api_socket();
    let mut c = Client::connect(&sock);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("GET", "/nowhere", vec![], vec![], 404),
        ("DELETE", "/v1/messages", vec![], vec![], 405),
        ("POST", "/v1/status", vec![], vec![], 405),
        (
            "POST",
            "/v1/messages",
            vec![("content-type", "text/plain")],
            b"{}".to_vec(),
            415,
        ),
        ("POST", "/v1/messages", vec![], b"{}".to_vec(), 415),
        (
            "POST",
            "/v1/messages",
            vec![("content-type", "application/json")],
            b"{".to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/messages",
            vec![("content-type", "application/json")],
            b"[]".to_vec(),
            400,
        ),
        ("GET", "/v1/messages/not-a-uuid", vec![], vec![], 400),
        (
            "GET",
            "/v1/messages/01890a5d-ac96-774b-bcce-b302099a8057",
            vec![],
            vec![],
            404,
        ),
        ("GET", "/v1/messages?state=bogus", vec![], vec![], 400),
        ("GET", "/v1/messages?colour=red", vec![], vec![], 400),
        ("GET", "/v1/messages?limit=0", vec![], vec![], 400),
        ("GET", "/v1/endpoints/nope", vec![], vec![], 404),
        ("POST", "/v1/endpoints/nope/enable", vec![], vec![], 404),
    ];
    for (method, path, headers, body, status) in cases {
        let a = c.request(method, path, &headers, &body);
        assert_eq!(a.status, status, "{method} {path}: {}", a.text());
        assert_eq!(a.json()["status"], status, "{method} {path}");
        if status == 405 {
            assert!(a.header("allow").is_some(), "{method} {path}");
        }
    }
    let a = c.request(
        "POST",
        "/v1/messages",
        &[("content-type", "application/json")],
        &[b' '; 1001],
    );
    assert_eq!(a.status, 413, "{}", a.text());
    // 413 closes the connection (the body was not read).
    assert!(c.read_answer().is_none());

    // A malformed request line, too many headers: answered, then closed.
    let mut c = Client::connect(&sock);
    c.send_raw(b"NOT HTTP\r\n\r\n");
    assert_eq!(c.read_answer().unwrap().status, 400);
    let mut c = Client::connect(&sock);
    let mut raw = String::from("GET /healthz HTTP/1.1\r\n");
    for i in 0..100 {
        raw.push_str(&format!("x-h{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    c.send_raw(raw.as_bytes());
    assert_eq!(c.read_answer().unwrap().status, 431);

    // A duplicate framing header is refused (request smuggling); HEAD gets a head only, so the
    // next answer on the connection still parses; a query the CLI's parser would choke on is a
    // 400, and the server goes on.
    let mut c = Client::connect(&sock);
    c.send_raw(b"POST /v1/messages HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n{}");
    assert_eq!(c.read_answer().unwrap().status, 400);
    let head = {
        use std::io::{Read, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        raw.write_all(b"HEAD /v1/status HTTP/1.1\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        raw.read_to_end(&mut all).unwrap();
        String::from_utf8_lossy(&all).into_owned()
    };
    assert!(
        head.starts_with("HTTP/1.1 405") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(head.contains("content-length: "), "{head}");
    let euro = call(&sock, "GET", "/v1/messages?since=%E2%82%AC00000", None);
    assert_eq!(euro.status, 400, "{}", euro.text());
    assert_eq!(call(&sock, "GET", "/healthz", None).status, 200);

    // Chunked bodies and pipelined requests are served in order.
    let mut c = Client::connect(&sock);
    let msg = br#"{"url":"http://127.0.0.1:9/c"}"#;
    let mut raw = format!(
        "POST /v1/messages HTTP/1.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        10
    )
    .into_bytes();
    raw.extend_from_slice(&msg[..10]);
    raw.extend_from_slice(format!("\r\n{:x}\r\n", msg.len() - 10).as_bytes());
    raw.extend_from_slice(&msg[10..]);
    raw.extend_from_slice(b"\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    c.send_raw(&raw);
    assert_eq!(c.read_answer().unwrap().status, 202);
    assert_eq!(c.read_answer().unwrap().status, 200);
}

#[test]
fn reads_answer_what_the_cli_prints() {
    let env = TestEnv::with_config(
        "api-reads",
        &format!("{FAST}\n[endpoints.billing]\nurl = \"http://127.0.0.1:9/billing\"\n"),
    );
    let rx = Receiver::start(|r, _| {
        if r.path.starts_with("/dead") {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    let d = env.daemon();
    let sock = env.api_socket();
    let ok = env.enqueue(&[&rx.url("/ok"), "-d", "x"]);
    let dead = env.enqueue(&[&rx.url("/dead"), "--key", "k1"]);
    wait_until(Duration::from_secs(10), "settled", || {
        env.state(&ok) == "delivered" && env.state(&dead) == "dead"
    });
    let cli = |args: &[&str]| -> Value { serde_json::from_str(&env.ok(args)).unwrap() };
    assert_eq!(
        call(&sock, "GET", &format!("/v1/messages/{ok}"), None).json(),
        cli(&["show", &ok, "--json"])
    );
    assert_eq!(
        call(
            &sock,
            "GET",
            "/v1/messages?state=delivered&state=dead&limit=1",
            None
        )
        .json(),
        cli(&[
            "list",
            "--state",
            "delivered",
            "--state",
            "dead",
            "--limit",
            "1",
            "--json"
        ])
    );
    let page = call(&sock, "GET", "/v1/messages?key=k1", None).json();
    assert_eq!(page["messages"][0]["uuid"], dead.as_str());
    assert_eq!(
        call(&sock, "GET", &format!("/v1/dlq/{dead}"), None).json(),
        cli(&["dlq", "show", &dead, "--json"])
    );
    assert_eq!(
        call(&sock, "GET", &format!("/v1/dlq/{ok}"), None).status,
        404
    );
    let dlq = call(&sock, "GET", "/v1/dlq", None).json();
    assert_eq!(dlq["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        call(&sock, "GET", "/v1/endpoints", None).json(),
        cli(&["endpoints", "list", "--json"])
    );
    assert_eq!(
        call(&sock, "GET", "/v1/endpoints/billing", None).json(),
        cli(&["endpoints", "show", "billing", "--json"])
    );
    let mut status = call(&sock, "GET", "/v1/status", None).json();
    let mut cli_status = cli(&["status", "--json"]);
    assert_eq!(status["daemon"]["pid"], d.pid());
    status["daemon"]["pid"] = Value::Null;
    cli_status["daemon"]["pid"] = Value::Null;
    assert_eq!(status, cli_status);
    let e = call(&sock, "POST", "/v1/endpoints/billing/enable", None);
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(call(&sock, "GET", "/healthz", None).json()["status"], "ok");
    assert_eq!(
        call(&sock, "GET", "/readyz", None).json()["status"],
        "ready"
    );
}

#[test]
fn a_slow_client_is_cut_off_and_a_flood_is_refused_while_others_are_served() {
    let env = TestEnv::with_config(
        "api-bounded",
        &format!("{FAST}\n[api]\nmax_connections = 4\nrequest_timeout = \"1s\"\n"),
    );
    let _d = env.daemon();
    let sock = env.api_socket();
    // A client sending a byte at a time.
    let mut slow = Client::connect(&sock);
    let started = Instant::now();
    let drip = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nx-slow: yes" {
            if !slow.try_send(&[*b]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        slow.read_answer()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(call(&sock, "GET", "/healthz", None).status, 200);
    let answer = drip.join().unwrap();
    assert_eq!(answer.map(|a| a.status), Some(408));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Four idle keep-alive connections take every slot: the fifth is refused at once.
    let held: Vec<Client> = (0..4).map(|_| Client::connect(&sock)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = Client::connect(&sock);
    let refused = extra.read_answer().expect("an answer");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(held);
    // Until the held connections' threads notice, a new one may still be refused (and closed
    // before the request is written): poll without assuming the write succeeds.
    wait_until(Duration::from_secs(5), "a slot again", || {
        let mut c = Client::connect(&sock);
        c.try_send(b"GET /healthz HTTP/1.1\r\n\r\n")
            && c.read_answer().is_some_and(|a| a.status == 200)
    });
}

#[test]
fn a_full_ingest_queue_answers_429() {
    let env = TestEnv::with_config("api-429", &format!("{FAST}\n[api]\ningest_queue = 5\n"));
    let _d = env.daemon_env(&[], &[("WEBHOOKD_TEST_INGEST_DELAY", "300ms")]);
    let sock = Arc::new(env.api_socket());
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (sock, statuses) = (sock.clone(), statuses.clone());
            std::thread::spawn(move || {
                let a = call(
                    &sock,
                    "POST",
                    "/v1/messages",
                    Some(&json!({"url": "http://127.0.0.1:9/q", "delay": "1h"})),
                );
                if a.status == 429 {
                    assert_eq!(a.header("retry-after"), Some("1"));
                }
                statuses.lock().unwrap().push(a.status);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let statuses = statuses.lock().unwrap();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(accepted + refused, 20, "{statuses:?}");
    assert!(refused > 0 && accepted > 0, "{statuses:?}");
    assert_eq!(env.queue("pending") as usize, accepted);
}

#[test]
fn kill_9_during_a_burst_loses_no_accepted_message() {
    let env = TestEnv::new("api-kill");
    let rx = Receiver::ok();
    let mut d = env.daemon();
    let sock = Arc::new(env.api_socket());
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = rx.url("/k");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (sock, accepted, url) = (sock.clone(), accepted.clone(), url.clone());
            std::thread::spawn(move || {
                let Ok(s) = std::os::unix::net::UnixStream::connect(&*sock) else {
                    return;
                };
                drop(s);
                let mut c = Client::connect(&sock);
                let body = serde_json::to_vec(&json!({"url": url})).unwrap();
                loop {
                    let head = format!(
                        "POST /v1/messages HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut raw = head.into_bytes();
                    raw.extend_from_slice(&body);
                    if !c.try_send(&raw) {
                        return; // the daemon is gone
                    }
                    match c.read_answer() {
                        Some(a) if a.status == 202 => accepted
                            .lock()
                            .unwrap()
                            .push(a.json()["uuid"].as_str().unwrap().to_owned()),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "a burst under way", || {
        accepted.lock().unwrap().len() > 300
    });
    d.kill9();
    for t in threads {
        t.join().unwrap();
    }
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    let _d = env.daemon();
    wait_until(
        Duration::from_secs(30),
        "every accepted message delivered",
        || {
            let got: HashSet<String> = rx.requests().iter().map(|r| r.webhook_id()).collect();
            accepted.iter().all(|u| got.contains(u))
        },
    );
}

#[test]
fn metrics_parse_and_count_what_was_sent() {
    let rx = Receiver::start(|r, _| {
        if r.path.starts_with("/fail") {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    });
    let env = TestEnv::with_config(
        "api-metrics",
        &format!(
            "{FAST}\n[endpoints.billing]\nurl = \"http://127.0.0.1:9/nothing\"\n[endpoints.slow]\nurl = \"{}\"\nrate = \"4/s\"\n",
            rx.url("/slow")
        ),
    );
    let _d = env.daemon();
    let sock = env.api_socket();
    let mut msgs: Vec<Value> = (0..7).map(|_| json!({"url": rx.url("/ok")})).collect();
    msgs.push(json!({"url": rx.url("/fail")}));
    msgs.extend((0..6).map(|_| json!({"endpoint": "slow"})));
    msgs.push(json!({"endpoint": "billing", "delay": "1h"}));
    msgs.push(json!({"url": rx.url("/later"), "delay": "1h"}));
    assert_eq!(
        call(
            &sock,
            "POST",
            "/v1/messages/batch",
            Some(&Value::Array(msgs))
        )
        .status,
        202
    );
    let scrape = || call(&sock, "GET", "/metrics", None);
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l[series.len()..].trim().parse().ok())
    };
    wait_until(Duration::from_secs(15), "counters published", || {
        let t = scrape().text();
        value(&t, "webhookd_deliveries_total{endpoint=\"\"}") == Some(7.0)
            && value(
                &t,
                "webhookd_dead_letters_total{endpoint=\"\",reason=\"exhausted\"}",
            ) == Some(1.0)
    });
    let m = scrape();
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let t = m.text();
    assert_eq!(
        value(
            &t,
            "webhookd_attempts_total{endpoint=\"\",outcome=\"success\"}"
        ),
        Some(7.0)
    );
    assert_eq!(
        value(
            &t,
            "webhookd_attempts_total{endpoint=\"\",outcome=\"http_5xx\"}"
        ),
        Some(3.0),
        "{t}"
    );
    assert_eq!(
        value(&t, "webhookd_retries_scheduled_total{endpoint=\"\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&t, "webhookd_queue_messages{state=\"delivered\"}"),
        Some(13.0)
    );
    assert_eq!(
        value(&t, "webhookd_queue_messages{state=\"scheduled\"}"),
        Some(2.0)
    );
    assert!(
        value(&t, "webhookd_rate_limited_total{endpoint=\"slow\"}").unwrap() >= 1.0,
        "{t}"
    );
    // The two delayed messages are the oldest pending: overall and billing's.
    let overall = value(&t, "webhookd_oldest_pending_age_seconds").unwrap();
    let billing = value(
        &t,
        "webhookd_oldest_pending_age_seconds{endpoint=\"billing\"}",
    )
    .unwrap();
    assert!(
        (0.0..60.0).contains(&overall) && (0.0..60.0).contains(&billing),
        "{t}"
    );
    assert!(value(&t, "webhookd_oldest_pending_age_seconds{endpoint=\"slow\"}").is_none());
    assert_eq!(
        value(&t, "webhookd_queue_messages{state=\"dead\"}"),
        Some(1.0)
    );
    assert_eq!(value(&t, "webhookd_end_to_end_seconds_count"), Some(13.0));
    // Every attempt has a lag from its due time (7 + 3 attempts of the failing one + 6).
    assert_eq!(
        value(&t, "webhookd_delivery_lag_seconds_count"),
        Some(16.0),
        "{t}"
    );
    assert_eq!(
        value(&t, "webhookd_endpoint_state{endpoint=\"billing\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &t,
            "webhookd_api_requests_total{route=\"/v1/messages/batch\",code=\"202\"}"
        ),
        Some(1.0)
    );
    assert!(value(&t, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(&t, "process_open_fds").unwrap() > 3.0);
    // The official Python client's parser reads it all (Debian's python3-prometheus-client, so
    // the system's Python rather than whichever `python3` is first on PATH). CI installs it; a
    // developer machine without it skips this one check, and says so.
    let has_parser = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_parser && std::env::var_os("CI").is_none() {
        eprintln!("metrics: python3-prometheus-client not installed; the parser check is skipped");
        return;
    }
    let parsed = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n\
             n = sum(len(m.samples) for m in f(sys.stdin.read()))\nprint(n)",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(t.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3");
    assert!(
        parsed.status.success(),
        "parser: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let samples: usize = String::from_utf8_lossy(&parsed.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(samples > 40, "{samples} samples");
}

#[test]
fn enqueue_goes_through_a_running_daemons_socket() {
    let env = TestEnv::new("api-cli");
    let rx = Receiver::ok();
    let _d = env.daemon();
    let sock = env.api_socket();
    let requests = || {
        let t = call(&sock, "GET", "/metrics", None).text();
        t.lines()
            .find(|l| {
                l.starts_with("webhookd_api_requests_total{route=\"/v1/messages\",code=\"202\"}")
            })
            .and_then(|l| l.rsplit(' ').next().unwrap().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let body: Vec<u8> = (0..=255u8).collect();
    let path = crate::util::file(&env, "body.bin", &body);
    let uuid = env.enqueue(&[
        &rx.url("/cli"),
        "-X",
        "PUT",
        "-H",
        "X-A: 1",
        "-H",
        "X-A: 2",
        "-d",
        &format!("@{path}"),
        "--key",
        "cli-1",
    ]);
    assert_eq!(requests(), 1.0, "the CLI posted it to the API");
    wait_until(Duration::from_secs(10), "delivery", || rx.count() == 1);
    let req = &rx.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.body.as_slice()),
        ("PUT", body.as_slice())
    );
    assert_eq!(req.webhook_id(), uuid);
    // The same key: the first uuid again; a different request with it: a note, nothing stored.
    assert_eq!(
        env.enqueue(&[
            &rx.url("/cli"),
            "-X",
            "PUT",
            "-H",
            "X-A: 1",
            "-H",
            "X-A: 2",
            "-d",
            &format!("@{path}"),
            "--key",
            "cli-1"
        ]),
        uuid
    );
    let out = env.run(&["enqueue", &rx.url("/other"), "--key", "cli-1", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["uuid"].as_str(), v["created"].as_bool()),
        (Some(uuid.as_str()), Some(false))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("different request"));
    assert_eq!(requests(), 2.0, "the 409 is not a 202");
    // A bad flag is refused before anything is sent, with the usual exit code.
    let (code, _) = env.fail(&["enqueue", "http://127.0.0.1:9/x", "--delay", "soon"]);
    assert_eq!(code, 64);
}

/// A CLI given another `--db` with the same config (so the same `api.socket`) must not post into
/// this daemon's queue: the daemon answers 421 and the message goes to the named database.
#[test]
fn enqueue_for_another_database_is_not_taken_by_this_daemon() {
    let env = TestEnv::new("api-other-db");
    let sock = env.dir.join("shared.sock");
    env.write_config(&format!(
        "{FAST}\n[api]\nsocket = {:?}\n",
        sock.display().to_string()
    ));
    let _d = env.daemon();
    let other = env.dir.join("other.db");
    let other_s = other.display().to_string();
    // The other database exists (so the CLI might think a daemon serves it).
    env.ok(&[
        "--db",
        &other_s,
        "enqueue",
        "http://127.0.0.1:9/a",
        "--delay",
        "1h",
    ]);
    let uuid = env.ok(&[
        "--db",
        &other_s,
        "enqueue",
        "http://127.0.0.1:9/b",
        "--delay",
        "1h",
    ]);
    let uuid = uuid.trim();
    assert_eq!(
        call(&sock, "GET", &format!("/v1/messages/{uuid}"), None).status,
        404
    );
    let shown = env.ok(&["--db", &other_s, "show", uuid, "--json"]);
    assert!(shown.contains(uuid));
    assert_eq!(
        env.status()["queue"]["pending"],
        0,
        "nothing went to the daemon's queue"
    );
}

/// A file at `api.socket` that is not a socket is never removed: the daemon refuses to start.
#[test]
fn a_file_in_the_sockets_place_is_left_alone() {
    let env = TestEnv::new("api-not-a-socket");
    let path = env.dir.join("precious.txt");
    std::fs::write(&path, "keep me").unwrap();
    env.write_config(&format!(
        "{FAST}\n[api]\nsocket = {:?}\n",
        path.display().to_string()
    ));
    let (code, err) = env.fail(&["run"]);
    assert_eq!(code, 74, "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

/// A body of one-byte chunks (with a trailer) is read whole; HTTP/1.0 keep-alive is said back.
#[test]
fn chunked_bodies_and_http_1_0_keep_alive() {
    let env = TestEnv::new("api-chunked");
    let _d = env.daemon();
    let sock = env.api_socket();
    let body = format!(
        "{{\"url\":\"http://127.0.0.1:9/c\",\"delay\":\"1h\",\"body\":\"{}\"}}",
        "x".repeat(5000)
    );
    let mut raw = b"POST /v1/messages HTTP/1.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for b in body.bytes() {
        raw.extend_from_slice(b"1\r\n");
        raw.push(b);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\nx-trailer: yes\r\n\r\n");
    let mut c = Client::connect(&sock);
    c.send_raw(&raw);
    let a = c.read_answer().unwrap();
    assert_eq!(a.status, 202, "{}", a.text());
    let uuid = a.json()["uuid"].as_str().unwrap().to_owned();
    assert_eq!(env.show(&uuid)["body_size"], 5000);
    let mut c = Client::connect(&sock);
    c.send_raw(b"GET /healthz HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
    let a = c.read_answer().unwrap();
    assert_eq!(a.header("connection"), Some("keep-alive"));
    c.send_raw(b"GET /healthz HTTP/1.0\r\n\r\n");
    let a = c.read_answer().unwrap();
    assert_eq!((a.status, a.header("connection")), (200, Some("close")));
}

//! Regression tests for the defects a new user found (issue 12, part B); each is named after its
//! item and fails on the code before the fix.

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

/// B.2: a producer that pauses mid-input must not hold the database: other enqueues succeed at
/// once and deliveries go on; its own lines are stored when its input ends.
#[test]
fn r12_b2_a_slow_producer_holds_no_lock() {
    let rx = Receiver::ok();
    let env = TestEnv::new("slow-producer");
    let _d = env.daemon();
    let mut producer = env
        .cmd(&["enqueue", "--jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    writeln!(stdin, "{{\"url\":\"{}\"}}", rx.url("/first")).unwrap();
    stdin.flush().unwrap();
    let paused = Instant::now();
    // While it pauses for 15 s, others enqueue and their messages are delivered.
    let mut others = Vec::new();
    while paused.elapsed() < Duration::from_secs(15) {
        let started = Instant::now();
        others.push(env.enqueue(&[&rx.url("/other")]));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "an enqueue took {took:?} while a producer paused"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until(Duration::from_secs(5), "the others delivered", || {
        others.iter().all(|u| env.state(u) == "delivered")
    });
    writeln!(stdin, "{{\"url\":\"{}\"}}", rx.url("/second")).unwrap();
    drop(stdin);
    let out = producer.wait_with_output().unwrap();
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
    assert_eq!(uuids.len(), 2);
    wait_until(
        Duration::from_secs(5),
        "the producer's lines delivered",
        || uuids.iter().all(|u| env.state(u) == "delivered"),
    );
}

/// B.4: what a receiver sends never reaches a terminal or a log line raw.
#[test]
fn r12_b4_receiver_bytes_are_escaped_for_people() {
    let hostile = b"\x1b[31mRED\x1b[0m \x07bell".to_vec();
    let body = hostile.clone();
    let rx = Receiver::start(move |_, _| Reply::Full {
        status: 500,
        headers: Vec::new(),
        body: body.clone(),
    });
    let env = TestEnv::with_config("escape", &format!("log_level = \"debug\"\n{FAST}"));
    let d = env.daemon();
    let body = crate::util::file(&env, "body.bin", b"\x00\x01\x02binary\x1b[2J");
    let uuid = env.enqueue(&[&rx.url("/x"), "-d", &format!("@{body}")]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    for args in [
        vec!["dlq", "list"],
        vec!["show", &uuid],
        vec!["list", "--state", "dead"],
    ] {
        let out = env.ok(&args);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?} printed raw escapes: {out:?}"
        );
    }
    let shown = env.ok(&["show", &uuid]);
    assert!(shown.contains("\\e[31mRED\\e[0m"), "{shown}");
    assert!(!shown.contains('\u{0}'), "{shown:?}");
    let log = d.log_text();
    assert!(log.contains("\\e[31mRED"), "{log}");
    assert!(!log.contains('\u{1b}'), "raw escape in the log: {log:?}");
    // JSON escapes by itself; --body to a pipe is the exact bytes (not a terminal here).
    let v = env.show(&uuid);
    assert_eq!(
        v["attempts"][0]["response_excerpt"],
        String::from_utf8(hostile).unwrap()
    );
    let raw = env.run(&["show", &uuid, "--body"]);
    assert_eq!(raw.stdout, b"\x00\x01\x02binary\x1b[2J");
    // On a terminal, --body is escaped unless --raw.
    let (code, shown, err) = crate::util::run_on_tty(&env, &["show", &uuid, "--body"], "");
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("\\x00\\x01\\x02binary\\e[2J"), "{shown:?}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(err.contains("--raw"), "{err}");
}

/// B.5: a known key reports its message's real state, and a different request under it is said.
#[test]
fn r12_b5_a_reused_key_reports_the_real_state() {
    let rx = Receiver::ok();
    let env = TestEnv::new("key-state");
    let _d = env.daemon();
    let first = env.enqueue(&[&rx.url("/a"), "--key", "k", "-d", "one"]);
    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&first) == "delivered"
    });
    let out = env.run(&[
        "enqueue",
        &rx.url("/a"),
        "--key",
        "k",
        "-d",
        "one",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "delivered");
    assert_eq!(v["created"], false);
    assert!(out.stderr.is_empty(), "the same request: nothing to say");
    let out = env.run(&["enqueue", &rx.url("/a"), "--key", "k", "-d", "two"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), first);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different request") && err.contains("nothing was stored"),
        "{err}"
    );
    assert_eq!(env.show(&first)["body"], "one");
}

/// B.8: read-only commands never create, migrate or write a database.
#[test]
fn r12_b8_read_only_commands_write_nothing() {
    let env = TestEnv::new("read-only");
    if env.sqlite_only("an empty file and its modification time") {
        return;
    }
    std::fs::write(&env.db, b"").unwrap();
    let out = env.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["db"]["initialised"], false);
    for args in [
        vec!["list"],
        vec!["dlq", "list"],
        vec!["endpoints", "list"],
        vec!["show", "01234567-89ab-7def-8123-456789abcdef"],
    ] {
        let (code, err) = env.fail(&args);
        assert_eq!(code, 66, "{args:?}: {err}");
        assert!(err.contains("empty"), "{err}");
    }
    assert_eq!(
        std::fs::metadata(&env.db).unwrap().len(),
        0,
        "the empty file was written"
    );
    // A database of an older schema is read by no read-only command (it would need migrating).
    std::fs::remove_file(&env.db).unwrap();
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA application_id=2003331940'); c.execute('CREATE TABLE messages (x)'); c.execute('PRAGMA user_version=4'); c.commit()",
            env.db.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let before = std::fs::read(&env.db).unwrap();
    let (code, err) = env.fail(&["list"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("schema version 4"), "{err}");
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        before,
        "migrated by a read-only command"
    );
}

/// B.10: failures and dead letters of plain-URL messages name the host, never the full URL.
#[test]
fn r12_b10_log_lines_name_the_host_without_credentials_or_query() {
    let rx = Receiver::start(|_, _| Reply::Status(500));
    let env = TestEnv::with_config("log-host", &format!("log_level = \"debug\"\n{FAST}"));
    let d = env.daemon();
    let url = format!("http://user:s3cret@127.0.0.1:{}/hook?token=t0ken", rx.port);
    let uuid = env.enqueue(&[&url]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    let log = d.log_text();
    let host = format!("host 127.0.0.1:{}", rx.port);
    assert!(
        log.lines()
            .any(|l| l.contains("dead-lettered") && l.contains(&uuid) && l.contains(&host)),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("failed") && l.contains(&host)),
        "{log}"
    );
    assert!(!log.contains("s3cret") && !log.contains("t0ken"), "{log}");
}

/// B.13: shutdown is bounded by shutdown_timeout even when an endpoint's timeout is longer; the
/// abandoned request's message is pending again (not lost, no attempt spent).
#[test]
fn r12_b13_shutdown_is_bounded_and_requeues_what_it_abandons() {
    let rx = Receiver::start(|_, _| Reply::Hang);
    let env = TestEnv::with_config(
        "shutdown",
        &format!(
            "shutdown_timeout = \"2s\"\n{FAST}\n[endpoints.slow]\nurl = \"{}\"\ntimeout = \"60s\"\n",
            rx.url("/")
        ),
    );
    let mut d = env.daemon();
    let uuid = env.enqueue(&["--endpoint", "slow"]);
    wait_until(Duration::from_secs(5), "in flight", || rx.count() == 1);
    let started = Instant::now();
    let status = d.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "stopped after {took:?}"
    );
    assert!(d.log_text().contains("abandoned"), "{}", d.log_text());
    let v = env.show(&uuid);
    assert_eq!(v["state"], "pending", "requeued at shutdown");
    assert_eq!(v["attempts_total"], 0, "no attempt spent");
}

/// B.15: a host lookup that does not answer fails the attempt after http.connect_timeout.
#[test]
fn r12_b15_dns_lookups_are_bounded_by_the_connect_timeout() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config(
        "dns-timeout",
        "workers = 2\n[retry]\nmax_attempts = 1\n[http]\ntimeout = \"30s\"\nconnect_timeout = \"1s\"\n",
    );
    let _d = env.daemon_env(&[], &[("WEBHOOKD_TEST_RESOLVE_DELAY", "20s")]);
    let started = Instant::now();
    let uuid = env.enqueue(&[&format!("http://localhost:{}/x", rx.port)]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&uuid) == "dead"
    });
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let err = env.show(&uuid)["last_error"].as_str().unwrap().to_owned();
    assert!(err.contains("http.connect_timeout"), "{err}");
    assert_eq!(rx.count(), 0);
}

/// B.16: proxy variables in the environment are never used.
#[test]
fn r12_b16_proxy_variables_are_ignored() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    proxy.set_nonblocking(true).unwrap();
    let rx = Receiver::ok();
    let env = TestEnv::new("no-proxy");
    let _d = env.daemon_env(
        &[],
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
        ],
    );
    let uuid = env.enqueue(&[&rx.url("/direct")]);
    wait_until(Duration::from_secs(10), "delivered", || {
        env.state(&uuid) == "delivered"
    });
    assert_eq!(rx.for_id(&uuid).len(), 1);
    assert!(proxy.accept().is_err(), "a connection reached the proxy");
}

/// B.19: processes that open a database that does not exist yet all succeed.
#[test]
fn r12_b19_concurrent_first_use_succeeds() {
    let env = TestEnv::new("first-use");
    let failures = Arc::new(AtomicUsize::new(0));
    for trial in 0..12 {
        let db = env.dir.join(format!("race-{trial}.db"));
        let children: Vec<_> = (0..6)
            .map(|i| {
                env.cmd(&[
                    "--db",
                    db.to_str().unwrap(),
                    "enqueue",
                    &format!("http://127.0.0.1:9/{i}"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() || out.stdout.len() != 37 {
                failures.fetch_add(1, Ordering::SeqCst);
                eprintln!(
                    "trial {trial}: {} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let status = env.run(&["--db", db.to_str().unwrap(), "status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(v["queue"]["pending"], 6, "trial {trial}");
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
}

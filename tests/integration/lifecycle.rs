use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::{wait_until, Receiver, Reply, TestEnv};

#[test]
fn status_reports_running_daemon_and_exit_codes() {
    let env = TestEnv::new("status");
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(3), "no daemon: LSB 3");
    let mut d = env.daemon();
    let out = env.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["daemon"]["running"], true);
    assert_eq!(v["daemon"]["pid"], d.pid());
    for k in ["pending", "in_flight", "delivered", "dead"] {
        assert!(v["queue"][k].is_u64(), "{k} missing: {v}");
    }
    let text = env.ok(&["status"]);
    assert!(
        text.contains(&format!("running (pid {})", d.pid())),
        "{text}"
    );
    d.kill9();
    let out = env.run(&["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "SIGKILLed daemon must not look alive"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["daemon"]["running"], false);
}

#[test]
fn second_daemon_on_the_same_db_refuses() {
    let env = TestEnv::new("second");
    if env.sqlite_only("daemons share a PostgreSQL queue (tests in scale.rs)") {
        return;
    }
    let d = env.daemon();
    let (code, err) = env.fail(&["run"]);
    assert_eq!(code, 75);
    assert!(
        err.contains("already running") && err.contains(&d.pid().to_string()),
        "{err}"
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let env = TestEnv::new("drain");
    let rx = Receiver::start(|_, _| {
        Reply::Delay(Duration::from_millis(1500), Box::new(Reply::Status(200)))
    });
    let mut d = env.daemon();
    let uuid = env.enqueue(&[&rx.url("/slow")]);
    wait_until(Duration::from_secs(5), "request in flight", || {
        rx.count() == 1
    });
    let t0 = Instant::now();
    d.wait_notice("READY=1", Duration::from_secs(1));
    d.signal(Signal::SIGTERM);
    d.wait_notice("STOPPING=1", Duration::from_secs(2));
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "did not wait for the request"
    );
    assert_eq!(
        env.state(&uuid),
        "delivered",
        "outcome recorded before exit"
    );
    assert!(d.log_text().contains("SIGTERM"));
}

#[test]
fn sigint_stops_an_idle_daemon_quickly() {
    let env = TestEnv::new("sigint");
    let mut d = env.daemon();
    d.signal(Signal::SIGINT);
    let t0 = Instant::now();
    assert!(d.wait_exit(Duration::from_secs(5)).success());
    assert!(t0.elapsed() < Duration::from_secs(3));
    let mut d = env.daemon();
    assert!(d.terminate().success(), "SIGTERM on an idle daemon exits 0");
}

#[test]
fn sigkill_many_times_loses_nothing() {
    let env = TestEnv::with_config(
        "crash",
        "workers = 8\n[retry]\nmax_attempts = 50\nbase_delay = \"10ms\"\nmax_delay = \"50ms\"\n",
    );
    // A slowish, sometimes failing receiver so that kills land while requests are in flight.
    let rx = Receiver::start(|_, earlier| {
        if earlier.len() % 7 == 3 {
            Reply::Status(500)
        } else {
            Reply::Delay(Duration::from_millis(2), Box::new(Reply::Status(204)))
        }
    });
    let n = 3000;
    let jsonl: String = (0..n)
        .map(|i| format!("{{\"url\":\"{}\",\"body\":\"{i}\"}}\n", rx.url("/c")))
        .collect();
    let out = env.run_stdin(&["enqueue", "--jsonl", "-"], jsonl.as_bytes());
    assert!(out.status.success());
    let uuids: HashSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(uuids.len(), n);

    for round in 1..=5 {
        let mut d = env.daemon();
        let target = rx.count() + 300;
        wait_until(Duration::from_secs(20), "progress before the kill", || {
            rx.count() >= target
        });
        d.kill9();
        eprintln!("round {round}: killed after {} requests", rx.count());
    }
    // Messages a killed daemon left in flight: status shows them, and the next daemon requeues them.
    let _d = env.daemon();
    wait_until(Duration::from_secs(60), "queue drained", || {
        let s = env.status();
        s["queue"]["pending"] == 0 && s["queue"]["in_flight"] == 0
    });
    let s = env.status();
    assert_eq!(s["queue"]["delivered"], n as u64);
    assert_eq!(s["queue"]["dead"], 0);
    let received: HashSet<String> = rx.requests().iter().map(|r| r.webhook_id()).collect();
    let missing: Vec<_> = uuids.difference(&received).collect();
    assert!(
        missing.is_empty(),
        "{} messages never received, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[test]
fn message_in_flight_when_the_daemon_is_killed_is_attempted_again_at_restart() {
    let env = TestEnv::new("in-flight-kill");
    // The first request hangs; any later one succeeds.
    let rx = Receiver::start(|_, earlier| {
        if earlier.is_empty() {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    let mut d = env.daemon();
    let uuid = env.enqueue(&[&rx.url("/h")]);
    wait_until(Duration::from_secs(5), "in flight", || rx.count() == 1);
    assert_eq!(env.state(&uuid), "in_flight");
    d.kill9();
    assert_eq!(env.status()["queue"]["in_flight"], 1);
    let _d = env.daemon();
    wait_until(Duration::from_secs(10), "delivered after restart", || {
        env.state(&uuid) == "delivered"
    });
    assert_eq!(rx.for_id(&uuid).len(), 2);
}

#[test]
fn sd_notify_ready_and_stopping() {
    let env = TestEnv::new("notify");
    let mut d = env.daemon();
    assert!(d.notices.iter().any(|n| n.lines().any(|l| l == "READY=1")));
    d.signal(Signal::SIGTERM);
    d.wait_notice("STOPPING=1", Duration::from_secs(5));
    assert!(d.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn delivered_and_cancelled_messages_are_purged_after_retention() {
    let env = TestEnv::with_config(
        "retention",
        &format!("retention = \"1s\"\n{}", crate::util::FAST),
    );
    let rx = Receiver::start(|req, _| {
        if req.path == "/dead" {
            Reply::Status(410)
        } else {
            Reply::Status(200)
        }
    });
    let _d = env.daemon();
    let ok = env.enqueue(&[&rx.url("/ok")]);
    let dead = env.enqueue(&[&rx.url("/dead")]);
    let cancelled = env.enqueue(&[&rx.url("/later"), "--delay", "1h"]);
    env.ok(&["cancel", &cancelled]);
    assert_eq!(
        env.state(&cancelled),
        "cancelled",
        "kept, like a delivered one"
    );
    wait_until(Duration::from_secs(5), "delivered", || {
        env.state(&ok) == "delivered"
    });
    wait_until(Duration::from_secs(10), "purged", || {
        env.state(&ok) == "missing" && env.state(&cancelled) == "missing"
    });
    assert_eq!(env.state(&dead), "dead", "dead messages stay until deleted");
}

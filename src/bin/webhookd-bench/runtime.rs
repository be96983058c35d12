//! Scenario `runtime`: endpoints managed at runtime, at scale. Many endpoints across tenants are
//! added through the API; then `webhookd endpoints add` (one process per call, as an operator
//! runs it), an event fanned out to a thousand subscribers, a backlog spread over every endpoint
//! against the same backlog on one, and the daemon's memory with them all.

use std::time::{Duration, Instant};

use super::api::{socket, Client, Target};
use super::receiver::{Behaviour, Receiver};
use super::work::{pct, wait, Work};
use super::Bench;

impl Bench {
    pub(super) fn runtime(&mut self) {
        // Endpoints: `tenants` x `per` plus a tenant of `fan`; the backlog: `backlog` events to
        // each of the first `busy` tenants (so `busy` x `per` endpoints, each with a backlog).
        let (tenants, per, fan, busy, backlog) = if self.args.quick {
            (20, 10, 50, 20, 3)
        } else {
            (10_000, 10, 1_000, 1_000, 10)
        };
        let rx = Receiver::start(Behaviour::default());
        let w = Work::new(&self.args.dir, "runtime", 16);
        let mut d = w.daemon();
        let target = Target::Unix(socket(&w.db));
        let url = rx.url();
        let total = tenants * per + fan;
        let name = format!("runtime: {total} endpoints, {} tenants", tenants + 1);

        // Populate through the API, 8 clients.
        let t = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|k| {
                let (target, url) = (target.clone(), url.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(&target);
                    let mut i = k;
                    while i < total {
                        let (tenant, events) = if i < fan {
                            ("big".to_owned(), "*")
                        } else {
                            (format!("t{}", (i - fan) / per), "invoice.*")
                        };
                        let body = format!(
                            r#"{{"name":"e{i}","url":"{url}","tenant":"{tenant}","events":["{events}"]}}"#
                        );
                        let s = c.request("POST", "/v1/endpoints", "application/json", body.as_bytes());
                        assert_eq!(s, 201, "POST /v1/endpoints e{i}");
                        i += 8;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        self.row(
            &name,
            "added through the API",
            total as f64 / secs,
            "endpoints/s",
            "",
        );

        // `endpoints add`, one process each, as an operator or a script runs it.
        let n = if self.args.quick { 10 } else { 100 };
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            let out = w
                .cmd()
                .args(["endpoints", "add", &format!("cli{i}"), "--url", &url])
                .args(["--tenant", "cli", "--event", "x.*"])
                .output()
                .unwrap();
            lat.push(t.elapsed().as_micros() as u64);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lat.sort_unstable();
        self.row(
            &name,
            "endpoints add p50 (process)",
            pct(&lat, 50.0) as f64 / 1000.0,
            "ms",
            "",
        );
        self.row(
            &name,
            "endpoints add p99 (process)",
            pct(&lat, 99.0) as f64 / 1000.0,
            "ms",
            "<= 5",
        );

        // One event to the tenant with `fan` subscribers: matching, fan-out and commit.
        let mut c = Client::connect(&target);
        let mut fan_lat = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let s = c.request(
                "POST",
                "/v1/events",
                "application/json",
                br#"{"type":"invoice.paid","tenant":"big","body":"{}"}"#,
            );
            fan_lat.push(t.elapsed().as_micros() as u64);
            assert_eq!(s, 202);
        }
        fan_lat.sort_unstable();
        let fname = format!("runtime: an event to {fan} subscribers");
        self.row(
            &fname,
            "POST /v1/events p50",
            pct(&fan_lat, 50.0) as f64 / 1000.0,
            "ms",
            "<= 50",
        );
        self.row(
            &fname,
            "POST /v1/events max",
            fan_lat[4] as f64 / 1000.0,
            "ms",
            "",
        );
        // Every delivery of an event has the event's webhook-id: count requests, not ids.
        let got = |rx: &Receiver| rx.unique() + rx.duplicates() as usize;
        let want = fan * 5;
        if !wait(Duration::from_secs(120), || got(&rx) >= want) {
            self.fail(format!("{fname}: {} of {want} delivered", got(&rx)));
        }

        // A backlog on each endpoint of `busy` tenants: `backlog` messages each, enqueued in
        // turns (as the one-endpoint run below is: the same command, the same count).
        let base = got(&rx);
        let t = Instant::now();
        let lines: String = (0..backlog)
            .flat_map(|_| fan..fan + busy * per)
            .map(|i| format!("{{\"endpoint\":\"e{i}\",\"body\":\"{{}}\"}}\n"))
            .collect();
        enqueue_jsonl(&w, &lines);
        let spread = busy * per * backlog;
        let sname = format!(
            "runtime: {} endpoints with {backlog} messages each",
            busy * per
        );
        if !wait(Duration::from_secs(300), || got(&rx) >= base + spread) {
            self.fail(format!("{name}: backlog not delivered"));
        }
        let spread_rate = spread as f64 / t.elapsed().as_secs_f64();
        let (_, rss) = d.usage();
        self.row(&sname, "delivered", spread_rate, "deliv/s", "");
        self.row(
            &name,
            "daemon peak RSS",
            rss as f64 / 1024.0,
            "MiB",
            "<= 60",
        );
        d.stop();

        // The same backlog to one named endpoint, for comparison.
        let one = Work::new(&self.args.dir, "runtime-one", 16);
        one.add_endpoint("one", &url);
        let mut d = one.daemon();
        let base = got(&rx);
        let t = Instant::now();
        let lines: String = (0..spread)
            .map(|_| "{\"endpoint\":\"one\",\"body\":\"{}\"}\n")
            .collect();
        enqueue_jsonl(&one, &lines);
        if !wait(Duration::from_secs(300), || got(&rx) >= base + spread) {
            self.fail("runtime: one endpoint's backlog not delivered".into());
        }
        let one_rate = spread as f64 / t.elapsed().as_secs_f64();
        self.row(
            &sname,
            "same backlog, one endpoint",
            one_rate,
            "deliv/s",
            "",
        );
        self.row(
            &sname,
            "spread / one endpoint",
            100.0 * spread_rate / one_rate,
            "%",
            ">= 80",
        );
        d.stop();
    }
}

/// `webhookd enqueue --jsonl -` with `lines` on its input.
fn enqueue_jsonl(w: &Work, lines: &str) {
    use std::io::Write;
    let out = w
        .cmd()
        .args(["enqueue", "--jsonl", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(lines.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(out.success(), "enqueue --jsonl");
}

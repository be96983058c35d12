//! Operator scenarios: how fast `list` answers with millions of messages kept, and how long the
//! daemon stops delivering while a bulk action runs.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::receiver::{Behaviour, Receiver};
use super::work::{pct, wait, Work};
use super::Bench;

impl Bench {
    /// `list` answering with `deep` delivered messages retained in `w`'s database: each query run
    /// as an operator would (a process per call, the process start included), with a backlog of
    /// scheduled plain-URL and endpoint messages beside the delivered ones.
    pub(super) fn list_latency(&mut self, w: &Work, deep: usize) {
        let backlog = self.n(100_000, 2_000);
        w.enqueue_jsonl(backlog, "http://127.0.0.1:9/later", 16, Some("30d"));
        w.enqueue_lines(backlog, |_| {
            "{\"endpoint\":\"bench\",\"delay\":\"30d\",\"body\":\"x\"}".to_owned()
        });
        let page: serde_json::Value = serde_json::from_slice(
            &w.cmd()
                .args(["list", "--state", "pending", "--limit", "1000", "--json"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap_or_default();
        let cursor = page["next_cursor"].as_str().unwrap_or("").to_owned();
        let name = format!(
            "list with {deep} delivered retained + {} scheduled",
            2 * backlog
        );
        let queries: Vec<(&str, Vec<&str>)> = vec![
            ("status (process baseline)", vec!["status"]),
            (
                "list --state pending --limit 50",
                vec!["list", "--state", "pending", "--limit", "50"],
            ),
            (
                "list --endpoint bench --limit 50",
                vec!["list", "--endpoint", "bench", "--limit", "50"],
            ),
            (
                "list --limit 50 (default states)",
                vec!["list", "--limit", "50"],
            ),
            (
                "list --state delivered --limit 50",
                vec!["list", "--state", "delivered", "--limit", "50"],
            ),
            (
                "list pending, page after 1000",
                vec![
                    "list", "--state", "pending", "--limit", "50", "--cursor", &cursor,
                ],
            ),
            (
                "list --state dead --status 5xx",
                vec!["list", "--state", "dead", "--status", "5xx"],
            ),
        ];
        for (label, args) in queries {
            let mut lat: Vec<u64> = (0..21)
                .map(|_| {
                    let t = Instant::now();
                    let out = w.cmd().args(&args).output().unwrap();
                    let us = t.elapsed().as_micros() as u64;
                    if !out.status.success() && args[0] != "status" {
                        eprintln!("{label}: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    us
                })
                .skip(1)
                .collect();
            lat.sort_unstable();
            let target = if args[0] == "list" { "<= 20" } else { "" };
            self.row(
                &name,
                &format!("{label} p50"),
                pct(&lat, 50.0) as f64 / 1000.0,
                "ms",
                target,
            );
            self.row(
                &name,
                &format!("{label} max"),
                *lat.last().unwrap_or(&0) as f64 / 1000.0,
                "ms",
                "",
            );
        }
    }

    /// The longest pause in deliveries while `dlq retry --all --url` revives a million dead
    /// messages (sent to a working receiver this time, as an operator who fixed the URL would):
    /// every delivery's arrival is recorded, and the longest gap between two of them while the
    /// bulk action runs shows whether its transactions hold the daemon up. A steady stream of new
    /// messages (1000/s) goes on meanwhile; their latency shows them queueing behind the revived
    /// backlog (the claim order is due time), not a stall.
    pub(super) fn bulk_retry_gap(&mut self) {
        let n = self.n(1_000_000, 5_000);
        let dead_rx = Receiver::start(Behaviour {
            fail_every: 1,
            ..Behaviour::default()
        });
        let live = Receiver::start(Behaviour {
            arrivals: true,
            ..Behaviour::default()
        });
        let w = Work::new(&self.args.dir, "bulk", 16);
        let config = std::fs::read_to_string(&w.config).unwrap();
        std::fs::write(
            &w.config,
            // Every message dead at its first attempt: the failing origin's breaker must not
            // hold them back (it would open after 5 failures).
            config.replace("[retry]\n", "[retry]\nmax_attempts = 1\n")
                + "[origins]\nbreaker_failures = 1000000000\n",
        )
        .unwrap();
        let name = format!("bulk: dlq retry --all --url of {n} dead");
        w.enqueue_jsonl(n, &dead_rx.url(), 16, None);
        let requests = || dead_rx.shared.requests.load(Ordering::Relaxed) as usize;
        if self
            .run_daemon(&format!("{name}: fill"), &w, n, requests)
            .is_none()
        {
            return;
        }
        let mut d = w.daemon();
        let stop = Arc::new(AtomicBool::new(false));
        let producer = stream_at(&w, &live.url(), 1000, Arc::clone(&stop));
        std::thread::sleep(Duration::from_secs(2));
        let t0 = Instant::now();
        let out = w
            .cmd()
            .args(["dlq", "retry", "--all", "--url", &live.url()])
            .output()
            .unwrap();
        let t1 = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        let sent = producer.join().unwrap();
        let all = wait(self.patience(), || live.unique() >= n + sent);
        d.stop();
        if !out.status.success() || !all {
            self.fail(format!(
                "{name}: retry {}, {} of {} messages delivered",
                String::from_utf8_lossy(&out.stderr).trim(),
                live.unique(),
                n + sent
            ));
            return;
        }
        self.no_duplicates(&name, &live);
        let took = (t1 - t0).as_secs_f64();
        self.row(&name, "bulk retry wall time", took, "s", "");
        self.row(
            &name,
            "messages retried per second",
            n as f64 / took,
            "msg/s",
            "",
        );
        let mut arrivals: Vec<Instant> = live
            .take_arrivals()
            .into_iter()
            .filter(|a| *a >= t0 && *a <= t1)
            .collect();
        arrivals.sort_unstable();
        let mut edges = vec![t0];
        edges.extend(arrivals);
        edges.push(t1);
        let gap = edges
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        self.row(
            &name,
            "longest gap between deliveries during the retry",
            gap.as_secs_f64() * 1000.0,
            "ms",
            "< 100",
        );
        let mut lat = live.take_latencies();
        lat.sort_unstable();
        self.row(
            &name,
            "new messages' p99 enqueue->receipt",
            pct(&lat, 99.0) as f64 / 1000.0,
            "ms",
            "",
        );
    }
}

/// Streams timestamped messages to `url` at `rate` a second into `enqueue --jsonl - --stream`
/// until `stop`; returns how many it sent.
fn stream_at(w: &Work, url: &str, rate: u64, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    let mut producer = w.stream_producer();
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut stdin = producer.stdin.take().unwrap();
        let start = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            writeln!(
                stdin,
                "{{\"url\":\"{url}\",\"body\":\"{{\\\"t\\\":{t}}}\"}}"
            )
            .unwrap();
            stdin.flush().unwrap();
            i += 1;
        }
        drop(stdin);
        let _ = producer.wait();
        i as usize
    })
}

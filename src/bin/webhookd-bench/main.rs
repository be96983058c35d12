//! webhookd-bench: reproducible benchmarks of the real release binary, a real SQLite file on disk
//! and a fast keep-alive HTTP receiver on loopback that this tool starts itself.
//!
//! Usage: `cargo build --release --bins && target/release/webhookd-bench [--quick] [--only LIST]
//! [--dir DIR] [--out FILE]`. Prints a table and writes JSON. `--quick` is the CI smoke run: small
//! counts, and it fails (exit 1) only on correctness (a message not received), never on timings.

mod api;
mod dashboard;
mod delivery;
mod operator;
mod postgres;
mod receiver;
mod runtime;
mod work;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use receiver::{Behaviour, Receiver};
use work::{file_size, pct, Work};

struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    dir: PathBuf,
    out: PathBuf,
    /// Load another server's socket instead of running scenarios (see `api::api_external`).
    api_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    scenario: String,
    metric: String,
    value: f64,
    unit: String,
    target: String,
}

struct Bench {
    args: Args,
    rows: Vec<Row>,
    failures: Vec<String>,
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).expect("create bench dir");
    let mut b = Bench {
        args,
        rows: Vec::new(),
        failures: Vec::new(),
    };
    let started = Instant::now();
    b.machine();
    if let Some(socket) = b.args.api_socket.clone() {
        b.api_external(&socket);
        b.report(started.elapsed());
        return;
    }
    if b.wants("receiver") {
        b.receiver_ceiling();
    }
    if b.wants("enqueue") {
        b.enqueue_single();
        b.enqueue_bulk();
    }
    if b.wants("drain") {
        b.drain("drain 2xx", Behaviour::default(), 16);
        b.drain(
            "drain 10ms receiver, 16 workers",
            Behaviour {
                delay: Duration::from_millis(10),
                ..Behaviour::default()
            },
            16,
        );
        b.drain(
            "drain 10ms receiver, 128 workers",
            Behaviour {
                delay: Duration::from_millis(10),
                ..Behaviour::default()
            },
            128,
        );
        b.drain(
            "drain 1 in 10 fails",
            Behaviour {
                fail_every: 10,
                ..Behaviour::default()
            },
            16,
        );
    }
    if b.wants("endpoints") {
        b.endpoints("100 endpoints, all healthy", None);
        b.endpoints(
            "100 endpoints, 10 failing (500)",
            Some(Behaviour {
                fail_every: 1,
                ..Behaviour::default()
            }),
        );
        b.endpoints(
            "100 endpoints, 10 hanging (1s timeout)",
            Some(Behaviour {
                delay: Duration::from_secs(30),
                ..Behaviour::default()
            }),
        );
    }
    if b.wants("latency") {
        b.latency(1000);
        b.latency(5000);
    }
    if b.wants("scale") {
        b.scale();
    }
    if b.wants("scale") || b.wants("scale-delivered") {
        b.scale_delivered();
    }
    if b.wants("bulk") {
        b.bulk_retry_gap();
    }
    if b.wants("runtime") {
        b.runtime();
    }
    if b.wants("api") {
        b.api();
    }
    if b.wants("postgres") {
        b.postgres();
    }
    b.report(started.elapsed());
    if !b.failures.is_empty() {
        for f in &b.failures {
            eprintln!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        quick: false,
        only: None,
        dir: std::env::temp_dir().join("webhookd-bench"),
        out: PathBuf::from("bench-results.json"),
        api_socket: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--only" => args.only = it.next().map(|s| s.split(',').map(str::to_owned).collect()),
            "--dir" => args.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--out" => args.out = it.next().map(PathBuf::from).expect("--out FILE"),
            "--api-socket" => {
                args.api_socket = Some(it.next().map(PathBuf::from).expect("--api-socket PATH"))
            }
            "-h" | "--help" => {
                println!("webhookd-bench [--quick] [--only receiver,enqueue,drain,endpoints,latency,scale,scale-delivered,bulk,api,runtime,postgres] [--dir DIR] [--out FILE] [--api-socket PATH]");
                std::process::exit(0);
            }
            other => {
                eprintln!("webhookd-bench: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    args
}

impl Bench {
    fn wants(&self, s: &str) -> bool {
        self.args
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == s))
    }

    fn n(&self, full: usize, quick: usize) -> usize {
        if self.args.quick {
            quick
        } else {
            full
        }
    }

    fn row(&mut self, scenario: &str, metric: &str, value: f64, unit: &str, target: &str) {
        eprintln!("  {scenario:<38} {metric:<26} {value:>12.1} {unit:<10} {target}");
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            target: target.into(),
        });
    }

    fn fail(&mut self, what: String) {
        eprintln!("  FAIL: {what}");
        self.failures.push(what);
    }

    fn machine(&mut self) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        eprintln!("machine: {cores} cores, {cpu}; loadavg {}", load.trim());
        eprintln!("bench dir: {}", self.args.dir.display());
    }

    fn receiver_ceiling(&mut self) {
        let secs = if self.args.quick { 0.5 } else { 3.0 };
        let rate = receiver::ceiling(4, Duration::from_secs_f64(secs));
        self.row(
            "receiver ceiling (4 keep-alive clients)",
            "requests/s",
            rate,
            "req/s",
            "not the bottleneck",
        );
    }

    /// Scenario 1a: `enqueue --jsonl` of many 1 KiB messages.
    fn enqueue_bulk(&mut self) {
        let n = self.n(1_000_000, 10_000);
        let w = Work::new(&self.args.dir, "enqueue-bulk", 16);
        let t = Instant::now();
        let printed = w.enqueue_jsonl(n, "http://127.0.0.1:9/hook", 1024, None);
        let dt = t.elapsed();
        if printed != n {
            self.fail(format!(
                "enqueue --jsonl printed {printed} uuids for {n} lines"
            ));
        }
        self.row(
            "enqueue --jsonl 1 KiB bodies",
            &format!("{n} messages"),
            n as f64 / dt.as_secs_f64(),
            "msg/s",
            ">= 40000",
        );
        // Scenario 4: time to READY with this many queued (the receiver is unreachable: port 9).
        let mut d = w.daemon();
        self.row(
            "startup with queue",
            &format!("ready with {n} queued"),
            d.ready_ms,
            "ms",
            "<= 1000 (1M)",
        );
        d.stop();
        let size = file_size(&w.db);
        self.row(
            "enqueue --jsonl 1 KiB bodies",
            "DB bytes per message",
            size as f64 / n as f64,
            "bytes",
            "",
        );
    }

    /// Scenario 1b: one-message CLI calls, sequential and 8 concurrent processes.
    fn enqueue_single(&mut self) {
        // As in production: a daemon runs and delivers what is enqueued.
        let rx = Receiver::start(Behaviour::default());
        let w = Work::new(&self.args.dir, "enqueue-single", 16);
        let mut d = w.daemon();
        let url = rx.url();
        let calls = self.n(1000, 50);
        let mut lat = Vec::with_capacity(calls);
        let t = Instant::now();
        for _ in 0..calls {
            let t0 = Instant::now();
            w.enqueue_one(&url);
            lat.push(t0.elapsed().as_micros() as u64);
        }
        self.call_rows("enqueue CLI, sequential", lat, t.elapsed(), "<= 1.5");
        let per = calls / 8;
        let t = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let w = w.clone_handle();
                let url = url.clone();
                std::thread::spawn(move || {
                    (0..per)
                        .map(|_| {
                            let t0 = Instant::now();
                            w.enqueue_one(&url);
                            t0.elapsed().as_micros() as u64
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let lat: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        self.call_rows("enqueue CLI, 8 concurrent", lat, t.elapsed(), "");
        d.stop();
    }

    /// Rows for a batch of timed CLI calls: rate, p50 and p99 per call.
    fn call_rows(&mut self, name: &str, mut lat: Vec<u64>, elapsed: Duration, p50_target: &str) {
        let rate = lat.len() as f64 / elapsed.as_secs_f64();
        lat.sort_unstable();
        self.row(name, "calls/s", rate, "calls/s", "");
        let p50 = pct(&lat, 50.0) as f64 / 1000.0;
        self.row(name, "p50 per call", p50, "ms", p50_target);
        let p99 = pct(&lat, 99.0) as f64 / 1000.0;
        self.row(name, "p99 per call", p99, "ms", "");
    }

    fn report(&self, elapsed: Duration) {
        let rev = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!("| scenario | metric | value | unit | target |");
        println!("|---|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {:.1} | {} | {} |",
                r.scenario, r.metric, r.value, r.unit, r.target
            );
        }
        println!(
            "\n{} rows in {:.0} s, commit {rev}",
            self.rows.len(),
            elapsed.as_secs_f64()
        );
        let json = serde_json::json!({
            "commit": rev,
            "quick": self.args.quick,
            "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
            "rows": self.rows,
            "failures": self.failures,
        });
        std::fs::write(&self.args.out, serde_json::to_string_pretty(&json).unwrap())
            .expect("write results");
        eprintln!("results written to {}", self.args.out.display());
    }
}

//! webhookd-bench: reproducible benchmarks of the real release binary, a real SQLite file on disk
//! and a fast keep-alive HTTP receiver on loopback that this tool starts itself.
//!
//! Usage: `cargo build --release --bins && target/release/webhookd-bench [--quick] [--only LIST]
//! [--dir DIR] [--out FILE]`. Prints a table and writes JSON. `--quick` is the CI smoke run: small
//! counts, and it fails (exit 1) only on correctness (a message not received), never on timings.

mod operator;
mod receiver;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use receiver::{Behaviour, Receiver};

struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    dir: PathBuf,
    out: PathBuf,
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
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--only" => args.only = it.next().map(|s| s.split(',').map(str::to_owned).collect()),
            "--dir" => args.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--out" => args.out = it.next().map(PathBuf::from).expect("--out FILE"),
            "-h" | "--help" => {
                println!("webhookd-bench [--quick] [--only receiver,enqueue,drain,endpoints,latency,scale,scale-delivered,bulk] [--dir DIR] [--out FILE]");
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
        self.call_rows("enqueue CLI, sequential", lat, t.elapsed(), "<= 3");
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

    /// Queues `n` messages with 1 KiB bodies for `rx`, then times a daemon delivering them all.
    fn timed_drain(&mut self, name: &str, w: &Work, rx: &Receiver, n: usize) -> Option<Drained> {
        self.timed_drain_of(name, w, rx, n, 1024)
    }

    /// Enqueues `n` messages with `body`-byte bodies for `rx`, then times a daemon delivering
    /// them all.
    fn timed_drain_of(
        &mut self,
        name: &str,
        w: &Work,
        rx: &Receiver,
        n: usize,
        body: usize,
    ) -> Option<Drained> {
        let before = rx.unique();
        w.enqueue_jsonl(n, &rx.url(), body, None);
        self.run_daemon(name, w, n, || rx.unique() - before)
    }

    /// How long a scenario may take before it counts as failed: 30 minutes, 2 in the smoke run.
    fn patience(&self) -> Duration {
        Duration::from_secs(if self.args.quick { 120 } else { 1800 })
    }

    /// Times a daemon on `w`'s (already filled) database from spawn until `received()` reaches
    /// `n`; records a failure (and returns None) if it does not within `patience`.
    fn run_daemon(
        &mut self,
        name: &str,
        w: &Work,
        n: usize,
        received: impl Fn() -> usize,
    ) -> Option<Drained> {
        settle_disk();
        let t = Instant::now();
        let mut d = w.daemon();
        let ok = wait(self.patience(), || received() >= n);
        let wall = t.elapsed();
        let (cpu, rss_kib) = d.usage();
        d.stop();
        if !ok {
            self.fail(format!("{name}: {} of {n} messages received", received()));
            return None;
        }
        Some(Drained { wall, cpu, rss_kib })
    }

    /// Fails the run if a message reached `rx` twice: nothing crashes in a benchmark, so at least
    /// once must be exactly once here.
    fn no_duplicates(&mut self, name: &str, rx: &Receiver) {
        let dups = rx.duplicates();
        if dups > 0 {
            self.fail(format!("{name}: {dups} messages delivered twice"));
        }
    }

    /// The rows of a timed drain of `n` messages: deliveries/s (as `metric`, with `rate_target`),
    /// daemon CPU per delivery and peak RSS.
    fn drain_rows(&mut self, name: &str, metric: &str, n: usize, d: &Drained, rate_target: &str) {
        let rate = n as f64 / d.wall.as_secs_f64();
        self.row(name, metric, rate, "deliv/s", rate_target);
        let cpu_us = d.cpu.as_secs_f64() * 1e6 / n as f64;
        self.row(name, "daemon CPU per delivery", cpu_us, "us", "<= 100");
        let rss = d.rss_kib as f64 / 1024.0;
        self.row(name, "daemon peak RSS", rss, "MiB", "<= 40");
    }

    /// Scenario 2: drain a pre-filled queue.
    fn drain(&mut self, name: &str, behaviour: Behaviour, workers: usize) {
        let n = if behaviour.delay.is_zero() {
            self.n(200_000, 5_000)
        } else {
            self.n(20_000, 1_000)
        };
        let rx = Receiver::start(behaviour);
        let w = Work::new(&self.args.dir, "drain", workers);
        let Some(d) = self.timed_drain(name, &w, &rx, n) else {
            return;
        };
        self.no_duplicates(name, &rx);
        let target = if behaviour == Behaviour::default() {
            ">= 12000"
        } else {
            ""
        };
        self.drain_rows(name, &format!("{n} msgs, {workers} workers"), n, &d, target);
        let sent = rx
            .shared
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        self.row(name, "requests incl. retries", sent as f64, "requests", "");
    }

    /// Scenario 5: 100 named endpoints, messages spread evenly over them; with `bad`, 10 of them
    /// point at a receiver that behaves so. Measures how fast the 90 healthy ones are served.
    fn endpoints(&mut self, name: &str, bad: Option<Behaviour>) {
        const ENDPOINTS: usize = 100;
        let n = self.n(100_000, 2_000);
        let good = Receiver::start(Behaviour::default());
        let failing = bad.map(Receiver::start);
        let w = Work::new(&self.args.dir, "endpoints", 16);
        let mut config = std::fs::read_to_string(&w.config).unwrap();
        for e in 0..ENDPOINTS {
            let url = match &failing {
                Some(rx) if e % 10 == 0 => rx.url(),
                _ => good.url(),
            };
            config.push_str(&format!(
                "[endpoints.e{e}]\nurl = \"{url}\"\ntimeout = \"1s\"\nmax_attempts = 1000\n"
            ));
        }
        std::fs::write(&w.config, config).unwrap();
        let healthy = if failing.is_some() { n - n / 10 } else { n };
        w.enqueue_lines(n, |i| {
            format!(
                "{{\"endpoint\":\"e{}\",\"body\":\"{{\\\"i\\\":{i}}}\"}}",
                i % ENDPOINTS
            )
        });
        let Some(d) = self.run_daemon(name, &w, healthy, || good.unique()) else {
            return;
        };
        self.no_duplicates(name, &good);
        self.drain_rows(
            name,
            &format!("{healthy} msgs to healthy ones"),
            healthy,
            &d,
            "",
        );
        if let Some(rx) = &failing {
            let requests = rx
                .shared
                .requests
                .load(std::sync::atomic::Ordering::Relaxed);
            self.row(
                name,
                &format!("requests to the 10 bad ({} msgs)", n - healthy),
                requests as f64,
                "requests",
                "",
            );
        }
    }

    /// Scenario 3: a producer streams messages at a fixed rate into a running daemon.
    fn latency(&mut self, rate: u64) {
        let secs = if self.args.quick { 1 } else { 10 };
        let rx = Receiver::start(Behaviour::default());
        let w = Work::new(&self.args.dir, "latency", 16);
        let (t50, t99) = if rate <= 1000 {
            ("<= 2", "<= 10")
        } else {
            ("", "<= 20")
        };
        let name = format!("latency at {rate}/s ({secs} s)");
        self.latency_on(&w, &rx, rate, secs, &name, (t50, t99));
    }

    /// Streams `rate` messages a second for `secs` into a daemon on `w`'s database and reports
    /// enqueue-to-receipt percentiles (timestamps in the bodies), CPU and RSS as `name`.
    fn latency_on(
        &mut self,
        w: &Work,
        rx: &Receiver,
        rate: u64,
        secs: u64,
        name: &str,
        (t50, t99): (&str, &str),
    ) {
        let n = (rate * secs) as usize;
        let before = rx.unique();
        rx.take_latencies();
        let mut d = w.daemon();
        let mut producer = w.stream_producer();
        let stdin = producer.stdin.as_mut().unwrap();
        let start = Instant::now();
        let pad = "x".repeat(900);
        for i in 0..n {
            let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
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
                "{{\"url\":\"{}\",\"body\":\"{{\\\"t\\\":{t},\\\"pad\\\":\\\"{pad}\\\"}}\"}}",
                rx.url()
            )
            .unwrap();
            stdin.flush().unwrap();
        }
        drop(producer.stdin.take());
        let ok = wait(Duration::from_secs(60), || rx.unique() >= before + n);
        let _ = producer.wait();
        let (cpu, rss) = d.usage();
        d.stop();
        if !ok {
            self.fail(format!("{name}: {} of {n} received", rx.unique() - before));
            return;
        }
        self.no_duplicates(name, rx);
        let mut lat = rx.take_latencies();
        lat.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        self.row(name, "p50 enqueue->receipt", ms(pct(&lat, 50.0)), "ms", t50);
        self.row(name, "p95", ms(pct(&lat, 95.0)), "ms", "");
        self.row(name, "p99", ms(pct(&lat, 99.0)), "ms", t99);
        self.row(name, "max", ms(*lat.last().unwrap_or(&0)), "ms", "");
        let cpu_us = cpu.as_secs_f64() * 1e6 / n as f64;
        self.row(name, "daemon CPU per delivery", cpu_us, "us", "");
        self.row(name, "daemon peak RSS", rss as f64 / 1024.0, "MiB", "<= 40");
    }

    /// Scenario 4: the drain of scenario 2, with a deep queue of messages scheduled in the future.
    fn scale(&mut self) {
        let deep = self.n(10_000_000, 20_000);
        let n = self.n(200_000, 5_000);
        let rx = Receiver::start(Behaviour::default());
        let w = Work::new(&self.args.dir, "scale", 16);
        let t = Instant::now();
        w.enqueue_jsonl(deep, "http://127.0.0.1:9/later", 16, Some("30d"));
        let fill = deep as f64 / t.elapsed().as_secs_f64();
        self.row(
            "scale: fill",
            &format!("{deep} scheduled, 16 B bodies"),
            fill,
            "msg/s",
            "",
        );
        let mut d = w.daemon();
        let ready = d.ready_ms;
        self.row(
            "scale: startup",
            &format!("ready with {deep} queued"),
            ready,
            "ms",
            "",
        );
        d.stop();
        let per = file_size(&w.db) as f64 / deep as f64;
        self.row("scale: fill", "DB bytes per message", per, "bytes", "");
        let name = format!("scale: drain with {deep} scheduled");
        let Some(d) = self.timed_drain(&name, &w, &rx, n) else {
            return;
        };
        let metric = format!("{n} msgs, 16 workers");
        self.drain_rows(&name, &metric, n, &d, "within 20% of drain 2xx");
        let secs = if self.args.quick { 1 } else { 5 };
        let name = format!("scale: claim latency, {deep} scheduled, 1000/s ({secs} s)");
        self.latency_on(&w, &rx, 1000, secs, &name, ("<= 2", "<= 10"));
    }

    /// Scenario 4, second half: the same with the table full of delivered messages kept for their
    /// retention (the default 7 days) instead of scheduled ones. Filling it is itself a long drain.
    fn scale_delivered(&mut self) {
        let deep = self.n(10_000_000, 20_000);
        let n = self.n(200_000, 5_000);
        let rx = Receiver::start(Behaviour::default());
        let w = Work::new(&self.args.dir, "scale-delivered", 16);
        w.add_endpoint("bench", "http://127.0.0.1:9/later");
        let name = format!("scale: fill by delivering {deep}, 16 B bodies");
        let Some(d) = self.timed_drain_of(&name, &w, &rx, deep, 16) else {
            return;
        };
        self.drain_rows(
            &name,
            &format!("{deep} msgs, 16 workers"),
            deep,
            &d,
            ">= 12000",
        );
        let name = format!("scale: drain with {deep} delivered retained");
        let Some(d) = self.timed_drain(&name, &w, &rx, n) else {
            return;
        };
        let metric = format!("{n} msgs, 16 workers");
        self.drain_rows(&name, &metric, n, &d, "within 20% of drain 2xx");
        let secs = if self.args.quick { 1 } else { 5 };
        let name = format!("scale: claim latency, {deep} delivered retained, 1000/s ({secs} s)");
        self.latency_on(&w, &rx, 1000, secs, &name, ("<= 2", "<= 10"));
        self.list_latency(&w, deep);
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

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

fn file_size(db: &Path) -> u64 {
    let wal = db.with_extension("db-wal");
    std::fs::metadata(db).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Flushes what earlier scenarios wrote, and waits (up to a minute) until the kernel has no more
/// than 32 MiB dirty: background writeback of gigabytes turns each fsync into tens of milliseconds
/// and would be charged to the next scenario.
fn settle_disk() {
    let _ = Command::new("sync").status();
    let dirty_kib = || -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    wait(Duration::from_secs(60), || dirty_kib() < 32 * 1024);
}

fn wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The release binary next to this one.
fn webhookd() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.with_file_name("webhookd");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release --bins` first",
        bin.display()
    );
    bin
}

/// One scenario's directory, config and database.
struct Work {
    dir: PathBuf,
    db: PathBuf,
    config: PathBuf,
}

impl Work {
    fn new(root: &Path, name: &str, workers: usize) -> Work {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        settle_disk();
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("webhookd.db");
        let config = dir.join("webhookd.toml");
        std::fs::write(
            &config,
            format!(
                "db = {:?}\nworkers = {workers}\nlog_level = \"warn\"\nmax_body_size = \"2MiB\"\n[retry]\nbase_delay = \"10ms\"\nmax_delay = \"1s\"\n",
                db.display().to_string()
            ),
        )
        .unwrap();
        Work { dir, db, config }
    }

    fn clone_handle(&self) -> Work {
        Work {
            dir: self.dir.clone(),
            db: self.db.clone(),
            config: self.config.clone(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(webhookd());
        c.arg("--config").arg(&self.config);
        c
    }

    /// Adds `[endpoints.NAME]` to the config.
    fn add_endpoint(&self, name: &str, url: &str) {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(&format!("[endpoints.{name}]\nurl = \"{url}\"\n"));
        std::fs::write(&self.config, config).unwrap();
    }

    /// Streams `n` generated lines into `enqueue --jsonl -`; returns the number of uuids printed.
    fn enqueue_jsonl(&self, n: usize, url: &str, body: usize, delay: Option<&str>) -> usize {
        let url = url.to_owned();
        let delay = delay
            .map(|d| format!(",\"delay\":\"{d}\""))
            .unwrap_or_default();
        let pad = "x".repeat(body.saturating_sub(20));
        self.enqueue_lines(n, move |i| {
            format!("{{\"url\":\"{url}\",\"body\":\"{{\\\"i\\\":{i:>8},\\\"p\\\":\\\"{pad}\\\"}}\"{delay}}}")
        })
    }

    /// Streams `line(i)` for i in 0..n into `enqueue --jsonl -`; returns the uuids printed.
    fn enqueue_lines(&self, n: usize, line: impl Fn(usize) -> String + Send + 'static) -> usize {
        let mut child = self
            .cmd()
            .args(["enqueue", "--jsonl", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
        let writer = std::thread::spawn(move || {
            for i in 0..n {
                writeln!(stdin, "{}", line(i)).unwrap();
            }
        });
        let mut count = 0;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            count += 1;
            line.clear();
        }
        writer.join().unwrap();
        assert!(child.wait().unwrap().success(), "enqueue --jsonl failed");
        count
    }

    fn enqueue_one(&self, url: &str) {
        let out = self
            .cmd()
            .args(["enqueue", url, "-d", "{\"event\":\"bench\"}"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// A long-running `enqueue --jsonl - --stream` fed by the caller.
    fn stream_producer(&self) -> Child {
        self.cmd()
            .args(["enqueue", "--jsonl", "-", "--stream"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn daemon(&self) -> Daemon {
        let sock_path = self.dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let t = Instant::now();
        let child = self
            .cmd()
            .arg("run")
            .env("NOTIFY_SOCKET", &sock_path)
            .stderr(std::fs::File::create(self.dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            let n = sock.recv(&mut buf).expect("READY=1 within 60 s");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        let ready_ms = t.elapsed().as_secs_f64() * 1000.0;
        // Keep reading: the daemon sends STATUS= every few seconds, and a socket nobody reads
        // fills up and blocks its sender (a closed one only makes it log a warning each time).
        std::thread::spawn(move || while sock.recv(&mut buf).is_ok() {});
        Daemon { child, ready_ms }
    }
}

/// What a timed drain measured: wall time from the daemon's spawn, its CPU time, its peak RSS.
struct Drained {
    wall: Duration,
    cpu: Duration,
    rss_kib: u64,
}

struct Daemon {
    child: Child,
    ready_ms: f64,
}

impl Daemon {
    /// CPU time (user + sys) and peak RSS in KiB so far.
    fn usage(&self) -> (Duration, u64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // After "pid (comm)": field 14 utime is index 11, stime index 12 (1-based 14/15).
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        (Duration::from_millis(ticks * 10), hwm)
    }

    /// SIGTERM (the daemon checkpoints the WAL into the database as it closes), SIGKILL after 60 s.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        if !wait(Duration::from_secs(60), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

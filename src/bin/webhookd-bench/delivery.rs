//! Delivery scenarios: drain rates with healthy and failing receivers, endpoints, claim latency
//! at a steady rate, and the same with millions of messages retained.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::receiver::{Behaviour, Receiver};
use super::work::{file_size, pct, settle_disk, wait, Drained, Work};
use super::Bench;

impl Bench {
    /// Queues `n` messages with 1 KiB bodies for `rx`, then times a daemon delivering them all.
    pub(super) fn timed_drain(
        &mut self,
        name: &str,
        w: &Work,
        rx: &Receiver,
        n: usize,
    ) -> Option<Drained> {
        self.timed_drain_of(name, w, rx, n, 1024)
    }

    /// Enqueues `n` messages with `body`-byte bodies for `rx`, then times a daemon delivering
    /// them all.
    pub(super) fn timed_drain_of(
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
    pub(super) fn patience(&self) -> Duration {
        Duration::from_secs(if self.args.quick { 120 } else { 1800 })
    }

    /// Times a daemon on `w`'s (already filled) database from spawn until `received()` reaches
    /// `n`; records a failure (and returns None) if it does not within `patience`.
    pub(super) fn run_daemon(
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
    pub(super) fn no_duplicates(&mut self, name: &str, rx: &Receiver) {
        let dups = rx.duplicates();
        if dups > 0 {
            self.fail(format!("{name}: {dups} messages delivered twice"));
        }
    }

    /// The rows of a timed drain of `n` messages: deliveries/s (as `metric`, with `rate_target`),
    /// daemon CPU per delivery and peak RSS.
    pub(super) fn drain_rows(
        &mut self,
        name: &str,
        metric: &str,
        n: usize,
        d: &Drained,
        rate_target: &str,
    ) {
        let rate = n as f64 / d.wall.as_secs_f64();
        self.row(name, metric, rate, "deliv/s", rate_target);
        let cpu_us = d.cpu.as_secs_f64() * 1e6 / n as f64;
        self.row(name, "daemon CPU per delivery", cpu_us, "us", "<= 100");
        let rss = d.rss_kib as f64 / 1024.0;
        self.row(name, "daemon peak RSS", rss, "MiB", "<= 40");
    }

    /// Scenario 2: drain a pre-filled queue.
    pub(super) fn drain(&mut self, name: &str, behaviour: Behaviour, workers: usize) {
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
    pub(super) fn endpoints(&mut self, name: &str, bad: Option<Behaviour>) {
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
    pub(super) fn latency(&mut self, rate: u64) {
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
    pub(super) fn latency_on(
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
    pub(super) fn scale(&mut self) {
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
    pub(super) fn scale_delivered(&mut self) {
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
        self.dashboard_latency(&w, deep);
    }
}

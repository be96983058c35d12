//! Scenario `postgres`: the queue in PostgreSQL, on a private cluster on this machine (Debian's
//! `initdb` and `pg_ctl`, a Unix socket in the bench directory, default durability: `fsync` and
//! `synchronous_commit` on). Drains with 1, 2 and 4 daemons, ingest through the API, and the
//! latency at 1,000/s; the server's own CPU per delivery beside the daemons'.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::{batch_of_1000, closed_loop, message, Target};
use super::receiver::{Behaviour, Receiver};
use super::work::{pct, settle_disk, wait, Work};
use super::Bench;

/// A private PostgreSQL cluster, stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<&'static str>,
}

impl Cluster {
    /// In the system's temporary directory, not in `root`: run as root, the server runs as
    /// `nobody`, who may not enter a private `--dir` (`mktemp -d` makes it 0700).
    fn start() -> Option<Cluster> {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .collect();
        bins.sort();
        let dir = std::env::temp_dir().join(format!("webhookd-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root_user = std::fs::metadata("/proc/self")
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        let user = root_user.then_some("nobody");
        if let Some(u) = user {
            let _ = Command::new("chown").args([u, dir.to_str()?]).status();
        }
        let c = Cluster {
            dir,
            bin: bins.pop()?,
            user,
        };
        let data = c.dir.join("data");
        c.run(&[
            "initdb",
            "-D",
            data.to_str()?,
            "-A",
            "trust",
            "-U",
            "webhookd",
            "-E",
            "UTF8",
        ]);
        let options = format!(
            "-k {} -c listen_addresses='' -c shared_buffers=256MB -c max_connections=100",
            c.dir.display()
        );
        let log = c.dir.join("pg.log");
        c.run(&[
            "pg_ctl",
            "-D",
            data.to_str()?,
            "-l",
            log.to_str()?,
            "-o",
            &options,
            "-w",
            "start",
        ]);
        Some(c)
    }

    fn run(&self, args: &[&str]) {
        let mut cmd = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(self.bin.join(args[0]));
                c
            }
            None => Command::new(self.bin.join(args[0])),
        };
        let out = cmd.args(&args[1..]).current_dir("/").output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new database and its URL.
    fn database(&self, name: &str) -> String {
        self.psql(&[
            &format!("DROP DATABASE IF EXISTS {name}"),
            &format!("CREATE DATABASE {name}"),
        ]);
        format!("postgres://webhookd@/{name}?host={}", self.dir.display())
    }

    /// Runs `sql` (each a command) on database `postgres`; what the last one printed.
    fn psql(&self, sql: &[&str]) -> String {
        let psql = self.bin.join("psql");
        let mut cmd = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(psql);
                c
            }
            None => Command::new(psql),
        };
        let host = self.dir.display().to_string();
        cmd.args(["-h", &host, "-U", "webhookd", "-d", "postgres", "-qtA"]);
        for s in sql {
            cmd.args(["-c", s]);
        }
        let out = cmd.current_dir("/").output().unwrap();
        assert!(out.status.success(), "psql {sql:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Lets the previous scenario's work end before a timed one starts, as `settle_disk` does for
    /// the file: a checkpoint, and no autovacuum worker still busy with its rows (at most a
    /// minute).
    fn settle(&self) {
        self.psql(&["CHECKPOINT"]);
        let busy = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'";
        wait(Duration::from_secs(60), || self.psql(&[busy]) == "0");
        settle_disk();
    }

    /// CPU time of the server's processes so far: the postmaster, its live backends, and the
    /// backends that exited (in the postmaster's children's time).
    fn cpu(&self) -> Duration {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
            .unwrap_or_default();
        let mut ticks = 0u64;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let own = entry.file_name().to_string_lossy() == pid;
            // After "pid (comm)": state 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
            if own {
                ticks += n(11) + n(12) + n(13) + n(14);
            } else if f.get(1) == Some(&pid.as_str()) {
                ticks += n(11) + n(12);
            }
        }
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let mut cmd = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(self.bin.join("pg_ctl"));
                c
            }
            None => Command::new(self.bin.join("pg_ctl")),
        };
        let _ = cmd
            .args(["-D", &data, "-m", "fast", "-w", "stop"])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scenario's directory and config on database `url`, with its API socket in the directory.
fn work(root: &Path, name: &str, workers: usize, url: &str) -> Work {
    let w = Work::new(root, name, workers);
    let config = std::fs::read_to_string(&w.config).unwrap();
    let config = config.replacen(
        &format!("db = {:?}", w.db.display().to_string()),
        &format!("db = {url:?}"),
        1,
    );
    let socket = w.dir.join("api.sock").display().to_string();
    std::fs::write(&w.config, format!("{config}[api]\nsocket = {socket:?}\n")).unwrap();
    w
}

impl Bench {
    pub(super) fn postgres(&mut self) {
        let Some(cluster) = Cluster::start() else {
            self.fail("postgres: no PostgreSQL here (apt install postgresql)".into());
            return;
        };
        let n = self.n(200_000, 5_000);
        for daemons in [1, 2, 4] {
            self.postgres_drain(&cluster, n, daemons);
        }
        self.postgres_ingest(&cluster);
        let secs = if self.args.quick { 1 } else { 10 };
        let url = cluster.database("latency");
        let rx = Receiver::start(Behaviour::default());
        let w = work(&self.args.dir, "pg-latency", 16, &url);
        let name = format!("postgres: latency at 1000/s ({secs} s)");
        // Not charged for the ingest's checkpoint and vacuum (seen: p99 10.8 to 38.6 ms).
        cluster.settle();
        let server = cluster.cpu();
        self.latency_on(&w, &rx, 1000, secs, &name, ("", "<= 20"));
        let used = cluster.cpu().saturating_sub(server);
        let per = used.as_secs_f64() * 1e6 / (1000 * secs) as f64;
        self.row(&name, "PostgreSQL CPU per delivery", per, "us", "");
    }

    /// Drains `n` messages with `daemons` daemons of 16 workers each.
    fn postgres_drain(&mut self, cluster: &Cluster, n: usize, daemons: usize) {
        let name = format!("postgres: drain 2xx, {daemons} daemon(s)");
        let url = cluster.database(&format!("drain{daemons}"));
        let rx = Receiver::start(Behaviour::default());
        let ws: Vec<Work> = (0..daemons)
            .map(|i| work(&self.args.dir, &format!("pg-drain-{i}"), 16, &url))
            .collect();
        ws[0].enqueue_jsonl(n, &rx.url(), 1024, None);
        settle_disk();
        let server = cluster.cpu();
        let t = Instant::now();
        let mut ds: Vec<_> = ws.iter().map(Work::daemon).collect();
        let ok = wait(self.patience(), || rx.unique() >= n);
        let wall = t.elapsed();
        let cpu: Duration = ds.iter().map(|d| d.usage().0).sum();
        let rss = ds.iter().map(|d| d.usage().1).max().unwrap_or(0);
        let server = cluster.cpu().saturating_sub(server);
        for d in &mut ds {
            d.stop();
        }
        if !ok {
            self.fail(format!("{name}: {} of {n} received", rx.unique()));
            return;
        }
        self.no_duplicates(&name, &rx);
        let target = if daemons == 1 { ">= 5000" } else { "" };
        self.row(
            &name,
            &format!("{n} msgs, 16 workers each"),
            n as f64 / wall.as_secs_f64(),
            "deliv/s",
            target,
        );
        self.row(
            &name,
            "daemons' CPU per delivery",
            cpu.as_secs_f64() * 1e6 / n as f64,
            "us",
            "",
        );
        self.row(
            &name,
            "PostgreSQL CPU per delivery",
            server.as_secs_f64() * 1e6 / n as f64,
            "us",
            "",
        );
        self.row(
            &name,
            "daemon peak RSS",
            rss as f64 / 1024.0,
            "MiB",
            "<= 40",
        );
    }

    /// `POST /v1/messages` from 64 clients and batches of 1000 from 4, into one daemon.
    fn postgres_ingest(&mut self, cluster: &Cluster) {
        let secs = Duration::from_secs_f64(if self.args.quick { 0.5 } else { 5.0 });
        let url = cluster.database("ingest");
        let w = work(&self.args.dir, "pg-ingest", 16, &url);
        let mut d = w.daemon();
        let target = Target::Unix(w.dir.join("api.sock"));
        let later: Arc<dyn Fn() -> Vec<u8> + Send + Sync> =
            Arc::new(|| message("http://127.0.0.1:9/later", Some("1h")));
        let (n, bad, lat) = closed_loop(
            &target,
            64,
            secs,
            "/v1/messages",
            "application/json",
            202,
            later,
        );
        let name = "postgres: API POST /v1/messages, 64 clients";
        self.row(
            name,
            "accepted/s",
            n as f64 / secs.as_secs_f64(),
            "msg/s",
            "",
        );
        self.row(name, "p50", pct(&lat, 50.0) as f64 / 1000.0, "ms", "");
        self.row(name, "p99", pct(&lat, 99.0) as f64 / 1000.0, "ms", "");
        if bad > 0 {
            self.fail(format!("{name}: {bad} refused"));
        }
        let (n, bad, _) = closed_loop(
            &target,
            4,
            secs,
            "/v1/messages/batch",
            "application/json",
            202,
            Arc::new(batch_of_1000),
        );
        let name = "postgres: API POST /v1/messages/batch of 1000, 4 clients";
        self.row(
            name,
            "messages/s",
            n as f64 * 1000.0 / secs.as_secs_f64(),
            "msg/s",
            "",
        );
        if bad > 0 {
            self.fail(format!("{name}: {bad} refused"));
        }
        d.stop();
    }
}

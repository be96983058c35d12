//! One scenario's working directory, config and database, the commands run on it, and the
//! daemon started on it; small helpers (percentiles, waiting, the disk settling).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(super) fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

pub(super) fn file_size(db: &Path) -> u64 {
    let wal = db.with_extension("db-wal");
    std::fs::metadata(db).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Flushes what earlier scenarios wrote, and waits (up to a minute) until the kernel has no more
/// than 32 MiB dirty: background writeback of gigabytes turns each fsync into tens of milliseconds
/// and would be charged to the next scenario.
pub(super) fn settle_disk() {
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

pub(super) fn wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
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
pub(super) fn webhookd() -> PathBuf {
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
pub(super) struct Work {
    pub(super) dir: PathBuf,
    pub(super) db: PathBuf,
    pub(super) config: PathBuf,
}

impl Work {
    pub(super) fn new(root: &Path, name: &str, workers: usize) -> Work {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        settle_disk();
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("webhookd.db");
        let config = dir.join("webhookd.toml");
        std::fs::write(
            &config,
            format!(
                // The receivers listen on loopback, which the egress policy denies by default.
                "db = {:?}\nworkers = {workers}\nlog_level = \"warn\"\nmax_body_size = \"2MiB\"\n[egress]\nallow = [\"127.0.0.0/8\"]\n[retry]\nbase_delay = \"10ms\"\nmax_delay = \"1s\"\n",
                db.display().to_string()
            ),
        )
        .unwrap();
        Work { dir, db, config }
    }

    pub(super) fn clone_handle(&self) -> Work {
        Work {
            dir: self.dir.clone(),
            db: self.db.clone(),
            config: self.config.clone(),
        }
    }

    pub(super) fn cmd(&self) -> Command {
        let mut c = Command::new(webhookd());
        c.arg("--config").arg(&self.config);
        c
    }

    /// Appends `text` (a table) to the config.
    pub(super) fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(text);
        std::fs::write(&self.config, config).unwrap();
    }

    /// Adds `[endpoints.NAME]` to the config.
    pub(super) fn add_endpoint(&self, name: &str, url: &str) {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(&format!("[endpoints.{name}]\nurl = \"{url}\"\n"));
        std::fs::write(&self.config, config).unwrap();
    }

    /// Streams `n` generated lines into `enqueue --jsonl -`; returns the number of uuids printed.
    pub(super) fn enqueue_jsonl(
        &self,
        n: usize,
        url: &str,
        body: usize,
        delay: Option<&str>,
    ) -> usize {
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
    pub(super) fn enqueue_lines(
        &self,
        n: usize,
        line: impl Fn(usize) -> String + Send + 'static,
    ) -> usize {
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

    pub(super) fn enqueue_one(&self, url: &str) {
        let out = self
            .cmd()
            .args(["enqueue", url, "-d", "{\"event\":\"bench\"}"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// A long-running `enqueue --jsonl - --stream` fed by the caller.
    pub(super) fn stream_producer(&self) -> Child {
        self.cmd()
            .args(["enqueue", "--jsonl", "-", "--stream"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub(super) fn daemon(&self) -> Daemon {
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
pub(super) struct Drained {
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) rss_kib: u64,
}

pub(super) struct Daemon {
    pub(super) child: Child,
    pub(super) ready_ms: f64,
}

impl Daemon {
    /// CPU time (user + sys) and peak RSS in KiB so far.
    pub(super) fn usage(&self) -> (Duration, u64) {
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
    pub(super) fn stop(&mut self) {
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

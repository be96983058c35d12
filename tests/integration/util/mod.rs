//! Test helpers: a fresh directory, config and database per test (`TestEnv`), the real binary
//! (`CARGO_BIN_EXE_webhookd`), a daemon handle that waits for `READY=1` on its own notify socket,
//! and `wait_until` (poll with a deadline, never a bare sleep).

pub mod api;
pub mod pg;
pub mod receiver;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use receiver::{Receiver, Reply};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Fast retries and short timeouts so the tests run in seconds. A plain URL's origin opens its
/// breaker only after many failures here, so that tests of retries and dead letters see every
/// attempt (the origins' tests set their own).
pub const FAST: &str = r#"
workers = 4
[retry]
max_attempts = 3
base_delay = "20ms"
max_delay = "100ms"
[origins]
breaker_failures = 1000
[http]
timeout = "3s"
connect_timeout = "1s"
"#;

/// A connection `serve_tls` accepted: the TLS stream, buffered for `read_request`.
pub type TlsConn =
    std::io::BufReader<rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>>;

/// Serves TLS with `config` on 127.0.0.1 (the test HTTPS receivers): a thread per connection
/// runs `serve`. Its port.
pub fn serve_tls(
    config: rustls::ServerConfig,
    serve: impl Fn(TlsConn) + Send + Sync + 'static,
) -> u16 {
    let config = std::sync::Arc::new(config);
    let serve = std::sync::Arc::new(serve);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, serve) = (
                std::sync::Arc::clone(&config),
                std::sync::Arc::clone(&serve),
            );
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                serve(std::io::BufReader::new(rustls::StreamOwned::new(conn, tcp)));
            });
        }
    });
    port
}

/// Reads one HTTP/1.1 request (a request line, headers, a `Content-Length` body) from `r`:
/// its path and body, or `None` when the connection ends first (the test HTTPS receivers).
pub fn read_request(r: &mut impl std::io::BufRead) -> Option<(String, Vec<u8>)> {
    let mut path = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if path.is_empty() {
            path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some((path, body))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_webhookd")
}

/// Polls `cond` every 25 ms until it holds or `timeout` passes, then panics naming `what`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A test's own directory, config and database.
pub struct TestEnv {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub config: PathBuf,
}

impl TestEnv {
    /// A fresh environment with the `FAST` config.
    pub fn new(name: &str) -> TestEnv {
        TestEnv::with_config(name, FAST)
    }

    /// A fresh environment on a new PostgreSQL database (whatever the suite's backend), or
    /// `None` when PostgreSQL is not installed here (outside CI only: there it must be).
    pub fn on_postgres(name: &str, config: &str) -> Option<TestEnv> {
        if !pg::installed() {
            return None;
        }
        let url = pg::Cluster::get().database(name).1;
        Some(TestEnv::with_db(name, config, PathBuf::from(url)))
    }

    /// Another environment (directory, API socket, config file) on the same database: a second
    /// daemon of a shared PostgreSQL queue.
    pub fn sibling(&self, name: &str) -> TestEnv {
        let config = std::fs::read_to_string(&self.config).unwrap();
        let env = TestEnv::with_db(name, "", self.db.clone());
        std::fs::write(&env.config, config).unwrap();
        env
    }

    /// A fresh environment; `config` is written as the config file, with `db` set first.
    pub fn with_config(name: &str, config: &str) -> TestEnv {
        // On PostgreSQL (`WEBHOOKD_TEST_BACKEND=postgres`): a fresh database, named by its URL.
        let db = if pg::enabled() {
            PathBuf::from(pg::Cluster::get().database(name).1)
        } else {
            PathBuf::new()
        };
        TestEnv::with_db(name, config, db)
    }

    /// A fresh environment on `db` (empty: an SQLite file in the test's directory).
    pub fn with_db(name: &str, config: &str, db: PathBuf) -> TestEnv {
        let dir = std::env::temp_dir().join(format!(
            "webhookd-it-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = if db.as_os_str().is_empty() {
            dir.join("webhookd.db")
        } else {
            db
        };
        let env = TestEnv {
            db,
            config: dir.join("webhookd.toml"),
            dir,
        };
        env.write_config(config);
        env
    }

    /// Writes `config`, with `db` set first and, unless it has an `[egress]` table of its own,
    /// loopback opened: the test receivers listen there, and the egress policy denies it by
    /// default.
    pub fn write_config(&self, config: &str) {
        // `db` must come before any table, so it goes first.
        let mut text = format!("db = {:?}\n{config}", self.db.display().to_string());
        if !config.contains("[egress]") {
            text.push_str("\n[egress]\nallow = [\"127.0.0.0/8\", \"::1\"]\n");
        }
        std::fs::write(&self.config, text).unwrap();
    }

    /// The daemon's API socket: beside the SQLite file, or (PostgreSQL) in the state directory.
    pub fn api_socket(&self) -> PathBuf {
        if self.postgres() {
            self.dir.join("webhookd").join("api.sock")
        } else {
            api::socket(&self.db)
        }
    }

    /// What a read-only command says of a database not created yet: an SQLite file "does not
    /// exist"; a PostgreSQL database (the test made it) "is empty".
    pub fn missing_db(&self) -> &'static str {
        if self.postgres() {
            "is empty"
        } else {
            "does not exist"
        }
    }

    /// Whether the queue has been created (SQLite: its file; PostgreSQL: its schema).
    pub fn db_created(&self) -> bool {
        if self.postgres() {
            self.sql_one("SELECT to_regclass('webhookd_schema') IS NOT NULL")
        } else {
            self.db.exists()
        }
    }

    /// The secrets key made when none is configured: beside the SQLite file, or in the state
    /// directory.
    pub fn secrets_key(&self) -> PathBuf {
        if self.postgres() {
            self.dir.join("webhookd").join("webhookd.secrets.key")
        } else {
            let mut p = self.db.as_os_str().to_owned();
            p.push(".secrets.key");
            PathBuf::from(p)
        }
    }

    /// Whether the test checks something only an SQLite file has (its bytes, its lock, its
    /// header): on PostgreSQL it says so and the test returns.
    pub fn sqlite_only(&self, why: &str) -> bool {
        if self.postgres() {
            eprintln!("skipped on PostgreSQL: {why}");
        }
        self.postgres()
    }

    /// On PostgreSQL: a query's one value (the tests' own look into the database).
    pub fn sql_one<T: for<'a> postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        let url = self.db.to_string_lossy().into_owned();
        let name = url
            .trim_start_matches("postgres://webhookd@/")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        let mut c = pg::Cluster::connect_url(&url, &name);
        c.query_one(sql, &[]).unwrap().get(0)
    }

    /// Whether this test's queue is in PostgreSQL.
    pub fn postgres(&self) -> bool {
        self.db.to_string_lossy().starts_with("postgres://")
    }

    /// The binary with `--config` set (but for the commands that take none), run in the test
    /// directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        if !matches!(
            args.first(),
            Some(&"verify") | Some(&"completions") | Some(&"token")
        ) {
            c.arg("--config").arg(&self.config);
        }
        c.args(args);
        c.current_dir(&self.dir);
        if self.postgres() {
            // The API socket and the secrets key go to the state directory: the test's own.
            c.env("XDG_STATE_HOME", &self.dir);
        }
        c.env_remove("WEBHOOKD_DB")
            .env_remove("WEBHOOKD_CONFIG")
            .env_remove("NOTIFY_SOCKET");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs and asserts success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        expect_success(args, &out);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns (exit code, stderr).
    #[track_caller]
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "expected {args:?} to fail\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Enqueues one message and returns its uuid.
    #[track_caller]
    pub fn enqueue(&self, args: &[&str]) -> String {
        let mut full = vec!["enqueue"];
        full.extend_from_slice(args);
        let uuid = self.ok(&full).trim().to_owned();
        assert_eq!(uuid.len(), 36, "not a uuid: {uuid:?}");
        uuid
    }

    /// `status --json` parsed.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `show UUID --json` parsed.
    #[track_caller]
    pub fn show(&self, uuid: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["show", uuid, "--json"])).unwrap()
    }

    /// The message's state, or "missing" when `show` says it does not exist (exit 66). Any
    /// other failure fails the test: a crash must not pass for "missing" (issue 12, B.18).
    #[track_caller]
    pub fn state(&self, uuid: &str) -> String {
        let out = self.run(&["show", uuid, "--json"]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                (out.status.code(), err.contains("no message with uuid")),
                (Some(66), true),
                "show {uuid} failed other than by a missing message: {err}"
            );
            return "missing".into();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["state"].as_str().unwrap().to_owned()
    }

    pub fn queue(&self, field: &str) -> u64 {
        self.status()["queue"][field].as_u64().unwrap()
    }

    /// Starts `webhookd run` and waits for `READY=1`.
    #[track_caller]
    pub fn daemon(&self) -> Daemon {
        self.daemon_with(&[])
    }

    #[track_caller]
    pub fn daemon_with(&self, extra: &[&str]) -> Daemon {
        self.daemon_env(extra, &[])
    }

    /// Starts `webhookd run` with extra arguments and environment, and waits for `READY=1`.
    #[track_caller]
    pub fn daemon_env(&self, extra: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let sock_path = self.dir.join(format!("notify-{n}.sock"));
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let log = self.dir.join(format!("daemon-{n}.log"));
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        let child = self
            .cmd(&args)
            .env("NOTIFY_SOCKET", &sock_path)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            log,
            notify: sock,
            notices: Vec::new(),
            exited: None,
        };
        d.wait_notice("READY=1", Duration::from_secs(10));
        d
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[track_caller]
pub fn expect_success(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "webhookd {args:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `webhookd run`; killed on drop, printing its log if the test failed.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    notify: UnixDatagram,
    /// Every sd-notify datagram received so far.
    pub notices: Vec<String>,
    exited: Option<ExitStatus>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a notify datagram containing `needle`.
    #[track_caller]
    pub fn wait_notice(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.notices.iter().any(|n| n.lines().any(|l| l == needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "daemon exited ({status}) before {needle}\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle} from the daemon within {timeout:?}\nlog:\n{}",
                self.log_text()
            );
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.notices
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Every notify datagram that arrives within `duration`, with its arrival time.
    pub fn collect_notices(&mut self, duration: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + duration;
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                got.push((Instant::now(), text.clone()));
                self.notices.push(text);
            }
        }
        got
    }

    /// Reads and keeps whatever notify datagrams are already queued, so that a following
    /// `collect_notices` sees only what is sent after this call.
    pub fn drain_notices(&mut self) {
        self.collect_notices(Duration::from_millis(50));
    }

    /// Names of the process's threads whose name starts with `prefix` (as /proc shows them:
    /// at most 15 bytes).
    pub fn threads(&self, prefix: &str) -> usize {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.starts_with(prefix))
            .count()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits for the process to exit within `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exited = Some(s);
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {timeout:?}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then wait for exit.
    #[track_caller]
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(15))
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let s = self.child.wait().unwrap();
        self.exited = Some(s);
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log {} ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Runs the binary with `args` (and `--config`) on a pseudo-terminal, as an operator's shell
/// would (Python's `pty`): stdin and stdout are the terminal, `answer` is typed on it. Returns the
/// exit code, what the terminal showed (stdout) and stderr.
pub fn run_on_tty(env: &TestEnv, args: &[&str], answer: &str) -> (i32, String, String) {
    let script = r#"
import os, pty, select, subprocess, sys
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=slave, stderr=subprocess.PIPE)
os.close(slave)
os.write(master, (sys.argv[1] + "\n").encode())
out = b""
while True:
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    elif p.poll() is not None:
        break
err = p.stderr.read()
p.wait(timeout=20)
sys.stdout.buffer.write(out)
sys.stderr.buffer.write(err)
sys.exit(p.returncode)
"#;
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).arg(answer).arg(bin());
    c.arg("--config").arg(&env.config).args(args);
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `bytes` to a file in the test dir and returns its path.
pub fn file(env: &TestEnv, name: &str, bytes: &[u8]) -> String {
    let p: &Path = &env.dir.join(name);
    std::fs::write(p, bytes).unwrap();
    p.display().to_string()
}

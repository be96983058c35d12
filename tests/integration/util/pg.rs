//! A private PostgreSQL cluster for the tests: `initdb` into a temporary directory, `pg_ctl start`
//! listening on a Unix socket in that directory only (no TCP), one cluster per test process and
//! one database per test. Run as root, the server runs as `nobody` (PostgreSQL refuses root).
//! A watcher process stops the cluster and removes its directory when the test process ends.
//!
//! `WEBHOOKD_TEST_BACKEND=postgres` runs the whole suite on PostgreSQL (`TestEnv` then names a
//! fresh database of this cluster as its `db`); the tests of several daemons on one queue use it
//! always.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The running cluster.
pub struct Cluster {
    pub dir: PathBuf,
    bin: PathBuf,
    /// Run as this user (root runs the server as nobody).
    user: Option<&'static str>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Whether the suite runs on PostgreSQL.
pub fn enabled() -> bool {
    std::env::var("WEBHOOKD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Whether PostgreSQL's server binaries are here. Under CI they must be (`.ci/run` installs
/// them): a missing one fails the test there instead of skipping it.
pub fn installed() -> bool {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|e| e.path().join("bin/initdb").exists()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
        );
        eprintln!("skipped: PostgreSQL is not installed here (apt install postgresql)");
    }
    found
}

/// Debian's PostgreSQL binaries (`/usr/lib/postgresql/N/bin`), the newest.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt install postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb (apt install postgresql)")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Cluster {
    /// The cluster of this test process, started at the first call.
    pub fn get() -> &'static Cluster {
        CLUSTER.get_or_init(Cluster::start)
    }

    /// A cluster of the caller's own (to stop and restart), removed when it is dropped.
    pub fn private() -> Cluster {
        Cluster::start()
    }

    fn start() -> Cluster {
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "webhookd-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = is_root().then_some("nobody");
        if user.is_some() {
            let status = Command::new("chown")
                .args(["nobody", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success(), "chown nobody {}", dir.display());
        }
        let cluster = Cluster {
            dir,
            bin: bin_dir(),
            user,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "webhookd",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster.watch();
        cluster.start_server();
        cluster
    }

    /// Starts (or restarts) the server.
    pub fn start_server(&self) {
        let data = self.dir.join("data");
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c max_connections=300",
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.dir.join("pg.log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (`fast`: sessions are ended, as at a restart).
    pub fn stop_server(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Stops the cluster and removes its directory when this process ends.
    #[allow(clippy::zombie_processes)] // the watcher outlives this process: nobody waits for it
    fn watch(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = self.command_line("pg_ctl"),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }

    fn command_line(&self, tool: &str) -> String {
        let path = self.bin.join(tool).display().to_string();
        match self.user {
            Some(u) => format!("runuser -u {u} -- {path}"),
            None => path,
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.try_run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(self.bin.join(tool));
                c
            }
            None => Command::new(self.bin.join(tool)),
        };
        cmd.args(args).current_dir("/").output().unwrap()
    }

    /// A connection to database `db` (for the tests' own checks).
    pub fn connect(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(&self.dir)
            .user("webhookd")
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap()
    }

    /// A connection to database `db` of the cluster that `url` names (its `host=` socket
    /// directory), whichever cluster that is.
    pub fn connect_url(url: &str, db: &str) -> postgres::Client {
        let host = url.split("host=").nth(1).expect("a URL with host=");
        postgres::Config::new()
            .host_path(host)
            .user("webhookd")
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap()
    }

    /// A new empty database, and the URL that names it.
    pub fn database(&self, name: &str) -> (String, String) {
        let n = DATABASES.fetch_add(1, Ordering::SeqCst);
        let db: String = format!("t{n}_{name}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let mut c = self.connect("postgres");
        c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        let url = format!("postgres://webhookd@/{db}?host={}", self.dir.display());
        (db, url)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

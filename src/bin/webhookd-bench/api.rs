//! Scenario `api`: the daemon's HTTP API under real clients. The load generator is this file's
//! own small HTTP/1.1 client (keep-alive, one request in flight per connection), separate from
//! the server's code; its ceiling is measured against `/healthz`, which touches no storage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::receiver::{Behaviour, Receiver};
use super::work::{pct, wait, Work};
use super::Bench;

/// Where the clients connect.
#[derive(Clone)]
pub(super) enum Target {
    Unix(PathBuf),
    Tcp(String, String),
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A keep-alive client connection.
pub(super) struct Client {
    reader: BufReader<Box<dyn Conn>>,
    auth: String,
}

impl Client {
    pub(super) fn connect(t: &Target) -> Client {
        let (stream, auth): (Box<dyn Conn>, String) = match t {
            Target::Unix(p) => (
                Box::new(UnixStream::connect(p).expect("connect")),
                String::new(),
            ),
            Target::Tcp(addr, token) => {
                let s = TcpStream::connect(addr).expect("connect");
                s.set_nodelay(true).unwrap();
                (Box::new(s), format!("authorization: Bearer {token}\r\n"))
            }
        };
        Client {
            reader: BufReader::with_capacity(16 * 1024, stream),
            auth,
        }
    }

    /// One request; the status.
    pub(super) fn request(&mut self, method: &str, path: &str, ctype: &str, body: &[u8]) -> u16 {
        self.exchange(method, path, &format!("content-type: {ctype}\r\n"), body)
            .status
    }

    /// One request with `headers` (lines ending in CRLF); the whole answer.
    pub(super) fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Answer {
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: webhookd\r\n{}{headers}content-length: {}\r\n\r\n",
            self.auth,
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        self.reader.get_mut().write_all(&raw).expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        let mut cookie = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("set-cookie") {
                cookie = value.trim().split(';').next().map(str::to_owned);
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).expect("body");
        Answer {
            status,
            cookie,
            body,
        }
    }
}

/// One answer: its status, the cookie it sets (`name=value`), its body.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) cookie: Option<String>,
    pub(super) body: Vec<u8>,
}

/// Runs `clients` threads for `dur`, each sending `body()` requests back to back; returns the
/// accepted count (status `ok`), the other statuses, and per-request latencies (µs).
pub(super) fn closed_loop(
    target: &Target,
    clients: usize,
    dur: Duration,
    path: &'static str,
    ctype: &'static str,
    ok: u16,
    body: Arc<dyn Fn() -> Vec<u8> + Send + Sync>,
) -> (u64, u64, Vec<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (t, stop, bad, body) = (target.clone(), stop.clone(), bad.clone(), body.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&t);
                let mut lat = Vec::new();
                let method = if path == "/healthz" { "GET" } else { "POST" };
                while !stop.load(Ordering::Relaxed) {
                    let b = body();
                    let t0 = Instant::now();
                    let s = c.request(method, path, ctype, &b);
                    lat.push(t0.elapsed().as_micros() as u64);
                    if s != ok {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    lat.sort_unstable();
    let bad = bad.load(Ordering::Relaxed);
    (lat.len() as u64 - bad, bad, lat)
}

/// A `POST /v1/messages/batch` body: 1,000 messages scheduled an hour ahead.
pub(super) fn batch_of_1000() -> Vec<u8> {
    let mut b = Vec::with_capacity(1000 * 300);
    b.push(b'[');
    for i in 0..1000 {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(&message("http://127.0.0.1:9/later", Some("1h")));
    }
    b.push(b']');
    b
}

pub(super) fn message(url: &str, delay: Option<&str>) -> Vec<u8> {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let delay = delay.map_or(String::new(), |d| format!(",\"delay\":\"{d}\""));
    format!(
        "{{\"url\":\"{url}\",\"body\":\"{{\\\"t\\\":{t},\\\"pad\\\":\\\"{}\\\"}}\"{delay}}}",
        "x".repeat(200)
    )
    .into_bytes()
}

impl Bench {
    pub(super) fn api(&mut self) {
        let secs = Duration::from_secs_f64(if self.args.quick { 0.5 } else { 5.0 });
        let w = Work::new(&self.args.dir, "api", 16);
        let token = make_token(&w, "enqueue");
        let port = free_port();
        w.append_config(&format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = {:?}\n",
            token.1.display().to_string()
        ));
        let mut d = w.daemon();
        let unix = Target::Unix(socket(&w.db));
        let tcp = Target::Tcp(format!("127.0.0.1:{port}"), token.0.clone());
        // Messages scheduled an hour ahead: this measures ingest alone.
        let later: Arc<dyn Fn() -> Vec<u8> + Send + Sync> =
            Arc::new(|| message("http://127.0.0.1:9/later", Some("1h")));

        let (n, _, lat) = closed_loop(
            &unix,
            64,
            secs,
            "/healthz",
            "text/plain",
            200,
            Arc::new(Vec::new),
        );
        self.rate_rows(
            "api: load generator ceiling (GET /healthz, 64 clients, unix)",
            n,
            0,
            &lat,
            secs,
            ("", "", ""),
        );
        for (name, target, target_rate) in [
            (
                "api: POST /v1/messages, 64 clients, unix",
                &unix,
                ">= 30000",
            ),
            (
                "api: POST /v1/messages, 64 clients, tcp + token",
                &tcp,
                ">= 25000",
            ),
        ] {
            let (n, bad, lat) = closed_loop(
                target,
                64,
                secs,
                "/v1/messages",
                "application/json",
                202,
                later.clone(),
            );
            self.rate_rows(name, n, bad, &lat, secs, (target_rate, "<= 1", "<= 5"));
        }
        let (n, bad, lat) = closed_loop(
            &unix,
            4,
            secs,
            "/v1/messages/batch",
            "application/json",
            202,
            Arc::new(batch_of_1000),
        );
        let name = "api: POST /v1/messages/batch of 1000, 4 clients, unix";
        self.row(
            name,
            "messages/s",
            n as f64 * 1000.0 / secs.as_secs_f64(),
            "msg/s",
            ">= 100000",
        );
        self.row(
            name,
            "p50 per batch",
            pct(&lat, 50.0) as f64 / 1000.0,
            "ms",
            "",
        );
        if bad > 0 {
            self.fail(format!("{name}: {bad} batches refused"));
        }
        d.stop();
        let rates: &[u64] = if self.args.quick {
            &[2_000]
        } else {
            &[2_500, 5_000, 7_500, 10_000]
        };
        for rate in rates {
            self.api_mixed(*rate);
        }
    }

    /// `--api-socket PATH`: the load generator alone against a server someone else started on
    /// PATH (a running daemon, or `bench/tiny-http-probe`), so that servers can be compared
    /// with the same client: `GET /healthz` and single `POST /v1/messages`, 64 clients each.
    pub(super) fn api_external(&mut self, socket: &Path) {
        let secs = Duration::from_secs_f64(if self.args.quick { 0.5 } else { 5.0 });
        let target = Target::Unix(socket.to_owned());
        let later: Arc<dyn Fn() -> Vec<u8> + Send + Sync> =
            Arc::new(|| message("http://127.0.0.1:9/later", Some("1h")));
        for (name, path, ok, body) in [
            (
                "api-socket: GET /healthz, 64 clients",
                "/healthz",
                200,
                Arc::new(Vec::new) as Arc<dyn Fn() -> Vec<u8> + Send + Sync>,
            ),
            (
                "api-socket: POST /v1/messages, 64 clients",
                "/v1/messages",
                202,
                later,
            ),
        ] {
            let (n, bad, lat) = closed_loop(&target, 64, secs, path, "application/json", ok, body);
            self.rate_rows(name, n, bad, &lat, secs, ("", "", ""));
        }
    }

    /// `rate` messages a second through the API (64 paced clients) while the daemon delivers
    /// them to a receiver on the same machine.
    fn api_mixed(&mut self, rate: u64) {
        let secs: u64 = if self.args.quick { 1 } else { 10 };
        let rx = Receiver::start(Behaviour::default());
        let w = Work::new(&self.args.dir, "api-mixed", 16);
        let mut d = w.daemon();
        let target = Target::Unix(socket(&w.db));
        let n = rate * secs;
        let clients = 64u64;
        let start = Instant::now();
        let url = rx.url();
        let refused = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..clients)
            .map(|k| {
                let (t, url, refused) = (target.clone(), url.clone(), refused.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(&t);
                    let mut i = k;
                    while i < n {
                        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        if c.request(
                            "POST",
                            "/v1/messages",
                            "application/json",
                            &message(&url, None),
                        ) != 202
                        {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        i += clients;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let offered = n as f64 / start.elapsed().as_secs_f64();
        let name = format!("api: mixed, {rate}/s through the API while delivering ({secs} s)");
        let ok = wait(Duration::from_secs(60), || rx.unique() >= n as usize);
        let (cpu, rss) = d.usage();
        d.stop();
        let refused = refused.load(Ordering::Relaxed);
        if !ok || refused > 0 {
            self.fail(format!(
                "{name}: {} of {n} received, {refused} refused",
                rx.unique()
            ));
            return;
        }
        self.no_duplicates(&name, &rx);
        let mut lat = rx.take_latencies();
        lat.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        self.row(&name, "offered", offered, "msg/s", "");
        self.row(&name, "p50 post->receipt", ms(pct(&lat, 50.0)), "ms", "");
        self.row(
            &name,
            "p99 post->receipt",
            ms(pct(&lat, 99.0)),
            "ms",
            "<= 10",
        );
        self.row(
            &name,
            "daemon CPU per message",
            cpu.as_secs_f64() * 1e6 / n as f64,
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

    fn rate_rows(
        &mut self,
        name: &str,
        n: u64,
        bad: u64,
        lat: &[u64],
        secs: Duration,
        (rate_t, p50_t, p99_t): (&str, &str, &str),
    ) {
        self.row(
            name,
            "accepted/s",
            n as f64 / secs.as_secs_f64(),
            "req/s",
            rate_t,
        );
        self.row(name, "p50", pct(lat, 50.0) as f64 / 1000.0, "ms", p50_t);
        self.row(name, "p99", pct(lat, 99.0) as f64 / 1000.0, "ms", p99_t);
        if bad > 0 {
            self.row(name, "refused (429/503)", bad as f64, "requests", "");
        }
    }
}

pub(super) fn socket(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap().to_os_string();
    name.push(".api.sock");
    db.with_file_name(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A token with the enqueue scope, from `webhookd token`, and the tokens file holding its line.
pub(super) fn make_token(w: &Work, scope: &str) -> (String, PathBuf) {
    let out = std::process::Command::new(super::work::webhookd())
        .args(["token", "bench", "--scope", scope, "--json"])
        .output()
        .expect("webhookd token");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    let file = w.dir.join("api-tokens");
    std::fs::write(&file, format!("{}\n", v["line"].as_str().unwrap())).unwrap();
    (v["token"].as_str().unwrap().to_owned(), file)
}

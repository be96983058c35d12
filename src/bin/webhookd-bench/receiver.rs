//! The benchmark's HTTP receiver: HTTP/1.1 keep-alive on 127.0.0.1, one thread per connection,
//! minimal parsing. Records each distinct `webhook-id` and, when the body carries `"t":<unix ns>`,
//! the enqueue-to-receipt latency. Can answer after a delay or fail every n-th request with 500.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Behaviour {
    pub delay: Duration,
    /// Every n-th request (n > 0) is answered 500.
    pub fail_every: u64,
    /// Record when every request arrives (else only the timestamped ones).
    pub arrivals: bool,
}

#[derive(Default)]
pub struct Shared {
    pub requests: AtomicU64,
    pub ids: Mutex<HashSet<u128>>,
    /// Successful requests for a `webhook-id` already received: a message delivered twice.
    pub duplicates: AtomicU64,
    pub latencies_us: Mutex<Vec<u64>>,
    /// When each timestamped (`"t":`) request arrived (each request, with
    /// `Behaviour::arrivals`).
    pub arrivals: Mutex<Vec<std::time::Instant>>,
}

pub struct Receiver {
    pub port: u16,
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        thread::Builder::new()
            .name("bench-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    thread::spawn(move || serve(conn, &s, behaviour));
                }
            })
            .unwrap();
        Receiver { port, shared, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn unique(&self) -> usize {
        self.shared.ids.lock().unwrap().len()
    }

    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut *self.shared.latencies_us.lock().unwrap())
    }

    pub fn take_arrivals(&self) -> Vec<std::time::Instant> {
        std::mem::take(&mut *self.shared.arrivals.lock().unwrap())
    }

    pub fn duplicates(&self) -> u64 {
        self.shared.duplicates.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, shared: &Shared, b: Behaviour) {
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::with_capacity(64 * 1024, conn);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut len = 0usize;
        let mut id: Option<u128> = None;
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if n.eq_ignore_ascii_case("webhook-id") {
                    id = uuid::Uuid::parse_str(v.trim()).ok().map(|u| u.as_u128());
                }
            }
        }
        body.resize(len, 0);
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let n = shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let stamped = sent_at(&body);
        if let Some(t) = stamped {
            shared
                .latencies_us
                .lock()
                .unwrap()
                .push(now.saturating_sub(t) / 1000);
        }
        if stamped.is_some() || b.arrivals {
            shared
                .arrivals
                .lock()
                .unwrap()
                .push(std::time::Instant::now());
        }
        if !b.delay.is_zero() {
            thread::sleep(b.delay);
        }
        let fail = b.fail_every > 0 && n.is_multiple_of(b.fail_every);
        if !fail {
            if let Some(id) = id {
                if !shared.ids.lock().unwrap().insert(id) {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let resp: &[u8] = if fail {
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        };
        if w.write_all(resp).is_err() {
            return;
        }
    }
}

/// `"t":<digits>` in the body: the producer's send time in Unix nanoseconds.
fn sent_at(body: &[u8]) -> Option<u64> {
    let pos = body.windows(4).position(|w| w == b"\"t\":")?;
    let digits = &body[pos + 4..];
    let end = digits
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Measures the receiver's own ceiling: `threads` keep-alive clients posting 1 KiB bodies.
pub fn ceiling(threads: usize, duration: Duration) -> f64 {
    let rx = Receiver::start(Behaviour::default());
    let port = rx.port;
    let body = vec![b'x'; 1024];
    let req = {
        let mut r = format!(
            "POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\nwebhook-id: 01a2078a-a5f1-706a-94ae-cc0ff5969d81\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let deadline = std::time::Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let req = req.clone();
            thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut n = 0u64;
                let mut line = String::new();
                while std::time::Instant::now() < deadline {
                    w.write_all(&req).unwrap();
                    // "HTTP/1.1 204 No Content" + blank line
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / duration.as_secs_f64()
}

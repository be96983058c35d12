//! A real HTTP/1.1 receiver on 127.0.0.1 for the tests: std `TcpListener`, one thread per
//! connection, keep-alive, Content-Length bodies. It records every request and answers what the
//! test's responder says: a status with headers and body, after a delay, a never-ending body, or
//! nothing at all (hang).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn webhook_id(&self) -> String {
        self.header("webhook-id").unwrap_or_default().to_owned()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Answer after a delay.
    Delay(Duration, Box<Reply>),
    /// Read the request, never answer; the connection stays open until the receiver stops.
    Hang,
    /// 200 with a body of this many bytes, written until the client goes away.
    Endless(u64),
}

type Responder = dyn Fn(&Request, &[Request]) -> Reply + Send + Sync;

/// A running receiver; stops (and releases hanging connections) on drop.
pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    /// Requests being answered now, and the most there ever were at once.
    active: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Receiver {
    /// Starts a receiver that answers 200 to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| Reply::Status(200))
    }

    /// Starts a receiver; `responder` gets the request and all earlier requests.
    pub fn start(
        responder: impl Fn(&Request, &[Request]) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::start_on("127.0.0.1:0", responder)
    }

    /// Like `start`, listening on `addr` (another loopback address, a chosen port).
    pub fn start_on(
        addr: &str,
        responder: impl Fn(&Request, &[Request]) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let responder: Arc<Responder> = Arc::new(responder);
        let active = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        {
            let (requests, stop, active) = (requests.clone(), stop.clone(), active.clone());
            thread::Builder::new()
                .name(format!("receiver-{port}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(conn) = conn else { continue };
                        let (requests, stop, responder, active) = (
                            requests.clone(),
                            stop.clone(),
                            responder.clone(),
                            active.clone(),
                        );
                        thread::spawn(move || {
                            serve(conn, &requests, &stop, &*responder, &active);
                        });
                    }
                })
                .unwrap();
        }
        Receiver {
            port,
            requests,
            stop,
            active,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.active.1.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Requests carrying `webhook-id: uuid`.
    pub fn for_id(&self, uuid: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.webhook_id() == uuid)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn serve(
    conn: TcpStream,
    requests: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
    responder: &Responder,
    active: &(AtomicUsize, AtomicUsize),
) {
    let _ = conn.set_nodelay(true);
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        let reply = {
            let mut all = requests.lock().unwrap();
            let reply = responder(&req, &all);
            all.push(req);
            reply
        };
        let now = active.0.fetch_add(1, Ordering::SeqCst) + 1;
        active.1.fetch_max(now, Ordering::SeqCst);
        let more = answer(&mut writer, reply, stop);
        active.0.fetch_sub(1, Ordering::SeqCst);
        if !more {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// Writes the reply; false when the connection must close.
fn answer(w: &mut TcpStream, reply: Reply, stop: &AtomicBool) -> bool {
    match reply {
        Reply::Status(code) => answer(
            w,
            Reply::Full {
                status: code,
                headers: Vec::new(),
                body: Vec::new(),
            },
            stop,
        ),
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
            for (n, v) in headers {
                head += &format!("{n}: {v}\r\n");
            }
            head += "\r\n";
            w.write_all(head.as_bytes()).is_ok() && w.write_all(&body).is_ok()
        }
        Reply::Delay(d, inner) => {
            thread::sleep(d);
            answer(w, *inner, stop)
        }
        Reply::Hang => {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            false
        }
        Reply::Endless(n) => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
            if w.write_all(head.as_bytes()).is_err() {
                return false;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < n && !stop.load(Ordering::SeqCst) {
                if w.write_all(&chunk).is_err() {
                    return false;
                }
                sent += chunk.len() as u64;
            }
            false
        }
    }
}

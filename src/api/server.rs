//! A bounded HTTP/1.1 server on Unix and TCP sockets: what the API needs and no more.
//!
//! Bounded by design: at most `max_connections` connections are served at once, each by one
//! thread of a pool that grows to that size and is reused (a connection beyond it is answered
//! `503` and closed at once, so others are still served); a request's head must fit in
//! `MAX_HEAD` bytes and `MAX_HEADERS` headers (else `431`), its body in `max_request_size` (else
//! `413`, unread); head and body must arrive within `request_timeout` of its first byte (else
//! `408`: a client sending a byte a second is cut off); an idle keep-alive connection is closed
//! after `idle_timeout`; bodies held in memory over every connection are capped at
//! `max_buffered` (else `503`). Requests are parsed by `httparse`; bodies are `Content-Length`
//! or chunked; `Expect: 100-continue` is answered; keep-alive and pipelining are served in order.
//!
//! Stopping: the acceptors stop, idle connections are closed, a request being handled is
//! answered, and every thread is joined.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::conn::{Connection, Env};
use super::problem::Problem;
use super::stream::{Listener, Stream};
use super::wire::{encode, Handler, Limits};
use crate::error::Result;

struct Shared {
    env: Env,
    /// Workers waiting for a connection and not yet promised one.
    available: AtomicUsize,
    spawned: AtomicUsize,
    /// TCP (and TLS) connections taken: they may have all slots but `reserved_for_socket`.
    tcp: AtomicUsize,
    next_id: AtomicU64,
    /// A handle on every open connection, to close idle ones at stop.
    open: Mutex<HashMap<u64, Stream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Connections for the workers; `None` tells a worker to end.
    conns: (Sender<Option<Stream>>, Receiver<Option<Stream>>),
}

/// A running server; `stop` ends it.
pub(crate) struct Server {
    shared: Arc<Shared>,
    acceptors: Vec<(JoinHandle<()>, Wake)>,
}

/// How to wake an acceptor blocked in `accept`: connect to it.
enum Wake {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl Server {
    /// Serves `listeners` with `handler`.
    ///
    /// # Errors
    /// `Spawn`.
    pub(crate) fn start(
        listeners: Vec<Listener>,
        handler: Arc<dyn Handler>,
        limits: Limits,
    ) -> Result<Server> {
        let shared = Arc::new(Shared {
            env: Env {
                handler,
                limits,
                stopping: AtomicBool::new(false),
                buffered: AtomicUsize::new(0),
            },
            available: AtomicUsize::new(0),
            spawned: AtomicUsize::new(0),
            tcp: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            conns: unbounded(),
        });
        let mut acceptors = Vec::new();
        for listener in listeners {
            let (wake, name) = match (&listener, listener.local_addr()) {
                (Listener::Unix(_, path), _) => (Wake::Unix(path.clone()), "webhookd-api"),
                (Listener::Tcp(..), Some(addr)) => (Wake::Tcp(addr), "webhookd-api-tcp"),
                (Listener::Tcp(..), None) => continue,
            };
            let s = Arc::clone(&shared);
            let handle = crate::threads::spawn(name, move || accept_loop(&s, &listener))?;
            acceptors.push((handle, wake));
        }
        Ok(Server { shared, acceptors })
    }

    /// Stops accepting, closes idle connections, lets requests being handled be answered, and
    /// joins every thread.
    pub(crate) fn stop(self) {
        self.shared.env.stopping.store(true, Ordering::SeqCst);
        for (handle, wake) in self.acceptors {
            // Best effort: an acceptor blocked in accept() returns with this connection.
            let _ = match &wake {
                Wake::Unix(path) => UnixStream::connect(path).map(drop),
                Wake::Tcp(addr) => {
                    std::net::TcpStream::connect_timeout(addr, Duration::from_secs(1)).map(drop)
                }
            };
            let _ = handle.join();
        }
        for stream in lock(&self.shared.open).values() {
            stream.shutdown_read();
        }
        // No new workers start now: the acceptors are gone. Each ends after its connection.
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for _ in &workers {
            let _ = self.shared.conns.0.send(None);
        }
        for w in workers {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(shared: &Arc<Shared>, listener: &Listener) {
    loop {
        let accepted = listener.accept();
        if shared.env.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: try again shortly.
                log::warn!("api: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        hand_over(shared, stream);
    }
}

/// Gives the connection to a waiting worker, or a new one, or refuses it when `max_connections`
/// are being served.
fn hand_over(shared: &Arc<Shared>, stream: Stream) {
    let max = shared.env.limits.max_connections;
    if !matches!(stream, Stream::Unix(_)) {
        let tcp_max = max - reserved_for_socket(max);
        let taken = shared
            .tcp
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < tcp_max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            refuse(stream, max);
            return;
        }
    }
    let is_tcp = !matches!(stream, Stream::Unix(_));
    let give_up = |stream: Stream| {
        if is_tcp {
            shared.tcp.fetch_sub(1, Ordering::SeqCst);
        }
        refuse(stream, max);
    };
    let promised = shared
        .available
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if !promised {
        if shared.spawned.load(Ordering::SeqCst) >= max {
            give_up(stream);
            return;
        }
        let n = shared.spawned.fetch_add(1, Ordering::SeqCst);
        let s = Arc::clone(shared);
        match crate::threads::spawn(&format!("webhookd-api-{n}"), move || worker(&s)) {
            Ok(handle) => lock(&shared.workers).push(handle),
            Err(e) => {
                shared.spawned.fetch_sub(1, Ordering::SeqCst);
                log::warn!("api: {e}");
                give_up(stream);
                return;
            }
        }
    }
    let _ = shared.conns.0.send(Some(stream));
}

/// Slots TCP clients can never take: the local socket (operators, the CLI) is always served.
fn reserved_for_socket(max: usize) -> usize {
    if max <= 1 {
        0
    } else {
        (max / 8).max(1)
    }
}

fn refuse(mut stream: Stream, max: usize) {
    // A TLS answer would need the handshake first, read on this (the accepting) thread: a client
    // that sends nothing would stall every later connection. It is closed instead.
    if matches!(stream, Stream::Tls(_)) {
        return;
    }
    let r = Problem::new(503, "too many connections")
        .detail(format!(
            "{max} connections are being served (api.max_connections); try again"
        ))
        .retry_after(1)
        .response();
    stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&encode(&r, true, false));
}

fn worker(shared: &Arc<Shared>) {
    let rx = shared.conns.1.clone();
    while let Ok(Some(stream)) = rx.recv() {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(handle) = stream.try_clone() {
            lock(&shared.open).insert(id, handle);
        }
        let tcp = !matches!(stream, Stream::Unix(_));
        if !shared.env.stopping.load(Ordering::SeqCst) {
            Connection::new(&shared.env, stream).serve();
        }
        if tcp {
            shared.tcp.fetch_sub(1, Ordering::SeqCst);
        }
        lock(&shared.open).remove(&id);
        shared.available.fetch_add(1, Ordering::SeqCst);
    }
}

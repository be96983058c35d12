//! One connection: requests read within the limits (head, body, time), answered in order.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::problem::Problem;
use super::stream::Stream;
use super::wire::{encode, Handler, Limits, Request, Response};

/// The longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have.
pub(super) const MAX_HEADERS: usize = 64;

/// What every connection shares.
pub(super) struct Env {
    pub(super) handler: std::sync::Arc<dyn Handler>,
    pub(super) limits: Limits,
    pub(super) stopping: AtomicBool,
    /// Body bytes held by every connection.
    pub(super) buffered: AtomicUsize,
}

/// Why a connection ends without a normal answer.
enum Fail {
    /// The client went away, or timed out while idle: close silently.
    Gone,
    /// Answer this, then close.
    Answer(Response),
}

pub(super) struct Connection<'a> {
    shared: &'a Env,
    stream: Stream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// What each read goes into (allocated once: zeroing 16 KiB per read showed in profiles).
    chunk: Vec<u8>,
    deadline: Instant,
    /// The socket's read timeout now (set only when it must change: a system call each).
    timeout: Option<std::time::Duration>,
    /// The request being answered is HTTP/1.0 (keep-alive must then be said).
    http10: bool,
}

impl<'a> Connection<'a> {
    pub(super) fn new(shared: &'a Env, stream: Stream) -> Connection<'a> {
        stream.set_write_timeout(Some(shared.limits.request_timeout));
        Connection {
            shared,
            stream,
            buf: Vec::with_capacity(4096),
            chunk: vec![0u8; 16 * 1024],
            deadline: Instant::now(),
            timeout: None,
            http10: false,
        }
    }

    pub(super) fn serve(mut self) {
        loop {
            match self.next() {
                Ok((request, keep_alive, reserved)) => {
                    let head_only = request.method == "HEAD";
                    // A handler that panics answers 500 and leaves the connection's thread, its
                    // slot and its body reservation intact.
                    let handler = &self.shared.handler;
                    let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handler.handle(request)
                    }))
                    .unwrap_or_else(|_| {
                        log::error!("api: a request handler panicked; answered 500");
                        Problem::new(500, "internal error")
                            .detail("the request could not be handled")
                            .response()
                    });
                    self.shared.buffered.fetch_sub(reserved, Ordering::SeqCst);
                    let keep_alive = keep_alive && !self.shared.stopping.load(Ordering::SeqCst);
                    let mut response = response;
                    if keep_alive && self.http10 {
                        response.headers.push(("connection", "keep-alive".into()));
                    }
                    if !self.send(&encode(&response, !keep_alive, head_only)) || !keep_alive {
                        return;
                    }
                }
                Err(Fail::Gone) => return,
                Err(Fail::Answer(response)) => {
                    self.send(&encode(&response, true, false));
                    return;
                }
            }
        }
    }

    /// Writes an answer within `request_timeout` in all (the socket's write timeout bounds each
    /// call only: a client reading a byte at a time would hold the thread for as long as the
    /// answer is long); false when it could not.
    fn send(&mut self, bytes: &[u8]) -> bool {
        let deadline = Instant::now() + self.shared.limits.request_timeout;
        let mut rest = bytes;
        while !rest.is_empty() {
            if Instant::now() >= deadline {
                return false;
            }
            match self.stream.write(rest) {
                Ok(0) => return false,
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads more bytes before the deadline (`idle`: waiting for a request to start).
    fn fill(&mut self, idle: bool) -> std::result::Result<(), Fail> {
        let timeout = if idle {
            self.shared.limits.idle_timeout
        } else {
            self.deadline.saturating_duration_since(Instant::now())
        };
        if timeout.is_zero() {
            return Err(timed_out());
        }
        // Exactly idle_timeout while idle, exactly what is left of the request within one (a
        // request that arrives in one read never gets here, so this costs nothing per request).
        let stale = self.timeout != Some(timeout);
        if stale {
            self.stream.set_read_timeout(Some(timeout));
            self.timeout = Some(timeout);
        }
        match self.stream.read(&mut self.chunk) {
            Ok(0) => Err(Fail::Gone),
            Ok(n) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if idle {
                    Err(Fail::Gone)
                } else {
                    Err(timed_out())
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(Fail::Gone),
        }
    }

    /// The next request, whether the connection stays open after it, and the body bytes it
    /// reserved from `max_buffered`.
    fn next(&mut self) -> std::result::Result<(Request, bool, usize), Fail> {
        if self.buf.is_empty() {
            self.fill(true)?;
        }
        self.deadline = Instant::now() + self.shared.limits.request_timeout;
        let head = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Request::new(&mut headers);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => break Head::new(&r, len)?,
                Ok(httparse::Status::Partial) if self.buf.len() >= MAX_HEAD => {
                    return Err(head_too_large())
                }
                Ok(httparse::Status::Partial) => self.fill(false)?,
                Err(httparse::Error::TooManyHeaders) => return Err(head_too_large()),
                Err(e) => {
                    return Err(bad_request(format!("the request is not HTTP/1.1: {e}")));
                }
            }
        };
        if head.len > MAX_HEAD {
            return Err(head_too_large());
        }
        self.buf.drain(..head.len);
        // A client without a valid token never gets to send (and have buffered) a body.
        let path = head.target.split('?').next().unwrap_or("");
        if let Some(r) =
            self.shared
                .handler
                .admit(self.stream.peer(), path, head.get("authorization"))
        {
            return Err(Fail::Answer(r));
        }
        let keep_alive = head.keep_alive();
        self.http10 = head.minor == 0;
        let (body, reserved) = self.body(&head)?;
        let Head {
            method,
            target,
            headers,
            ..
        } = head;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (target, String::new()),
        };
        Ok((
            Request {
                method,
                path,
                query,
                headers,
                body,
                peer: self.stream.peer(),
            },
            keep_alive,
            reserved,
        ))
    }

    fn body(&mut self, head: &Head) -> std::result::Result<(Vec<u8>, usize), Fail> {
        let limits = self.shared.limits;
        // One framing header, given once: a second (even equal) one is how requests are smuggled
        // past a proxy that reads the other.
        if head.count("transfer-encoding") > 1 || head.count("content-length") > 1 {
            return Err(bad_request(
                "Transfer-Encoding or Content-Length given more than once".into(),
            ));
        }
        let te = head.get("transfer-encoding");
        let cl = head.get("content-length");
        let length = match (te, cl) {
            (Some(_), Some(_)) => {
                return Err(bad_request(
                    "both Transfer-Encoding and Content-Length".into(),
                ))
            }
            (Some(te), None) if te.eq_ignore_ascii_case("chunked") => None,
            (Some(te), None) => {
                return Err(Fail::Answer(
                    Problem::new(501, "transfer coding not supported")
                        .detail(format!(
                            "Transfer-Encoding {:?}: only chunked is",
                            crate::text::escape(te)
                        ))
                        .response(),
                ))
            }
            (None, Some(cl)) => match cl.trim().parse::<usize>() {
                Ok(n) if cl.trim().bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(bad_request("Content-Length is not a number".into())),
            },
            (None, None) => Some(0),
        };
        if length.is_some_and(|n| n > limits.max_request_size) {
            return Err(too_large(limits.max_request_size));
        }
        let reserve = length.unwrap_or(0);
        if reserve > 0 && !self.reserve(reserve) {
            return Err(Fail::Answer(busy()));
        }
        let mut reserved = reserve;
        if head
            .get("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && length != Some(0)
        {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let result = match length {
            Some(n) => self.exact(n),
            None => self.chunked(&mut reserved),
        };
        match result {
            Ok(body) => Ok((body, reserved)),
            Err(f) => {
                self.shared.buffered.fetch_sub(reserved, Ordering::SeqCst);
                Err(f)
            }
        }
    }

    fn reserve(&self, n: usize) -> bool {
        let max = self.shared.limits.max_buffered;
        self.shared
            .buffered
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b + n <= max).then_some(b + n)
            })
            .is_ok()
    }

    fn exact(&mut self, n: usize) -> std::result::Result<Vec<u8>, Fail> {
        while self.buf.len() < n {
            self.fill(false)?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// A chunked body. Consumed bytes are dropped from the buffer in bulk (every 64 KiB and at
    /// the end), not per chunk: a body of one-byte chunks would otherwise move the buffer once
    /// per byte.
    fn chunked(&mut self, reserved: &mut usize) -> std::result::Result<Vec<u8>, Fail> {
        const COMPACT: usize = 64 * 1024;
        let max = self.shared.limits.max_request_size;
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            if pos >= COMPACT {
                self.buf.drain(..pos);
                pos = 0;
            }
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.buf[pos..]) {
                    Ok(httparse::Status::Complete((start, size))) => break (start, size),
                    Ok(httparse::Status::Partial) if self.buf.len() - pos > 1024 => {
                        return Err(bad_request("a chunk size line is too long".into()))
                    }
                    Ok(httparse::Status::Partial) => self.fill(false)?,
                    Err(_) => return Err(bad_request("a chunk size is not valid".into())),
                }
            };
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if body.len().saturating_add(size) > max {
                return Err(too_large(max));
            }
            if size > 0 && !self.reserve(size) {
                return Err(Fail::Answer(busy()));
            }
            *reserved += size;
            pos += start;
            if size == 0 {
                // Trailers (ignored) end with an empty line.
                loop {
                    if let Some(i) = find_crlf(&self.buf[pos..]) {
                        pos += i + 2;
                        if i == 0 {
                            self.buf.drain(..pos);
                            return Ok(body);
                        }
                    } else if self.buf.len() - pos > MAX_HEAD {
                        return Err(head_too_large());
                    } else {
                        self.fill(false)?;
                    }
                }
            }
            while self.buf.len() - pos < size + 2 {
                self.fill(false)?;
            }
            if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err(bad_request("a chunk does not end with CRLF".into()));
            }
            body.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A parsed request head, owned.
struct Head {
    method: String,
    target: String,
    minor: u8,
    headers: Vec<(String, String)>,
    len: usize,
}

impl Head {
    fn new(r: &httparse::Request<'_, '_>, len: usize) -> std::result::Result<Head, Fail> {
        let headers = r
            .headers
            .iter()
            .map(|h| {
                let value = std::str::from_utf8(h.value)
                    .map_err(|_| bad_request(format!("header {} is not UTF-8", h.name)))?;
                Ok((h.name.to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect::<std::result::Result<Vec<_>, Fail>>()?;
        Ok(Head {
            method: r.method.unwrap_or_default().to_owned(),
            target: r.path.unwrap_or_default().to_owned(),
            minor: r.version.unwrap_or(1),
            headers,
            len,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }

    fn keep_alive(&self) -> bool {
        let connection = self.get("connection").unwrap_or("");
        let has = |t: &str| {
            connection
                .split(',')
                .any(|c| c.trim().eq_ignore_ascii_case(t))
        };
        if self.minor == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

fn timed_out() -> Fail {
    Fail::Answer(
        Problem::new(408, "request timeout")
            .detail("the request did not arrive in time (api.request_timeout)")
            .response(),
    )
}

fn head_too_large() -> Fail {
    Fail::Answer(
        Problem::new(431, "request header fields too large")
            .detail(format!(
                "a request head may have {MAX_HEADERS} headers and {MAX_HEAD} bytes"
            ))
            .response(),
    )
}

fn too_large(max: usize) -> Fail {
    Fail::Answer(
        Problem::new(413, "content too large")
            .detail(format!(
                "the request body is larger than api.max_request_size ({max} bytes)"
            ))
            .response(),
    )
}

fn bad_request(detail: String) -> Fail {
    Fail::Answer(Problem::new(400, "bad request").detail(detail).response())
}

fn busy() -> Response {
    Problem::new(503, "busy")
        .detail("too many request bodies are held in memory; try again")
        .retry_after(1)
        .response()
}

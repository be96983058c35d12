//! What the server and the routes exchange: a request read in full, a response, the handler,
//! the limits, and a response's bytes.

use std::io::Write;
use std::time::Duration;

use super::stream::Peer;

/// How much and how long a client may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_request_size: usize,
    pub(crate) max_buffered: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// One request, read in full.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query, without `?` (empty when none).
    pub(crate) query: String,
    /// Names in lower case, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) peer: Peer,
}

impl Request {
    /// The first header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

/// What answers requests.
pub(crate) trait Handler: Send + Sync {
    fn handle(&self, request: Request) -> Response;

    /// Decides from the head alone, before any body is read or buffered, whether a request is
    /// let in; `Some` answers it (and closes the connection).
    fn admit(&self, _peer: Peer, _path: &str, _authorization: Option<&str>) -> Option<Response> {
        None
    }
}

/// The bytes of a response; `head_only`: its head alone (an answer to HEAD keeps the length of
/// the body it leaves out).
pub(super) fn encode(r: &Response, close: bool, head_only: bool) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(r.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = Vec::with_capacity(r.body.len() + 160);
    let _ = write!(
        out,
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    for (name, value) in &r.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

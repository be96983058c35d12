//! `webhookd enqueue` through a running daemon's socket: one message, group-committed with every
//! other request the daemon is taking (one fsync shared), instead of opening the database.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::config::Database;
use crate::error::{Error, Result};
use crate::model::State;
use crate::store::Enqueued;

/// How long the CLI waits for the daemon's answer: the commit is durable or failed by then.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the daemon did with the message.
pub(crate) enum Sent {
    /// Stored (or found by its key); as the store would have answered.
    Stored(Enqueued),
    /// No daemon listens on the socket, or it is stopping or full: store it directly.
    NoDaemon,
}

/// Posts `request` (a JSON message for the queue `db`) to the API on `socket`. Only a daemon
/// that serves `db` takes it: another one (a CLI given another `--db`) answers 421, and the
/// message goes to `db` directly.
///
/// # Errors
/// `InvalidInput` when the daemon refuses the message (its configuration differs from this
/// one), `Write` when it does not answer.
pub(crate) fn enqueue(socket: &Path, db: &Database, request: &Value) -> Result<Sent> {
    // A database that does not exist yet has no daemon.
    let Some(db) = db.identity().filter(|d| !d.contains(['\r', '\n'])) else {
        return Ok(Sent::NoDaemon);
    };
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Ok(Sent::NoDaemon);
    };
    let io = |e: std::io::Error| Error::Write {
        what: format!(
            "the daemon's API at {} (the message may or may not be stored)",
            socket.display()
        ),
        source: e,
    };
    let body = serde_json::to_vec(request).expect("JSON serializes");
    let mut raw = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: webhookd\r\ncontent-type: application/json\r\nwebhookd-db: {db}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    if stream.write_all(&raw).is_err() {
        // Gone between connect and write: nothing was read, so nothing was stored.
        return Ok(Sent::NoDaemon);
    }
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io(std::io::Error::other("not an HTTP answer")))?;
    let mut length = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).map_err(io)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            if n.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).map_err(io)?;
        }
        None => {
            reader.read_to_end(&mut body).map_err(io)?;
        }
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let stored = |created: bool, same_request: bool| -> Result<Sent> {
        let uuid = Uuid::parse_str(field("uuid"))
            .map_err(|_| io(std::io::Error::other("an answer without a uuid")))?;
        let state = State::ALL
            .into_iter()
            .find(|s| s.as_str() == field("state"))
            .unwrap_or(State::Pending);
        Ok(Sent::Stored(Enqueued {
            uuid,
            created,
            state,
            same_request,
        }))
    };
    match status {
        202 => stored(v.get("created") != Some(&Value::Bool(false)), true),
        409 => stored(false, false),
        421 | 429 | 503 => Ok(Sent::NoDaemon),
        _ => Err(Error::input(format!(
            "the running daemon refused the message ({status}): {}",
            crate::text::escape(field("detail"))
        ))),
    }
}

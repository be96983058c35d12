//! `webhookd enqueue`: one message from flags, or many from JSON lines, stored durably.
//!
//! Uuids are printed only after the commit is durable. `--jsonl` stores every line in one
//! transaction: one bad line rolls everything back. The input is read and validated into a spool
//! file before the write lock is taken (a slow producer never holds up other writers or the
//! daemon), and the uuids wait in another one until the commit: neither grows memory.
//!
//! Exit codes: a bad argument is a usage error (64), a bad JSON line bad data (65, with its line
//! number), an endpoint neither configured nor known 66 (65 in a JSON line).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::spool::Spool;
use super::{out, read_body};
use crate::check;
use crate::cli::EnqueueArgs;
use crate::config::Config;
use crate::endpoint::OnDead;
use crate::error::{exit, Error, Result};
use crate::message::Message;
use crate::model::Lane;
use crate::store::{self, Access, Enqueued, Store};

/// Why a destination was refused.
enum TargetError {
    /// A named endpoint the config does not define.
    Unknown {
        name: String,
        known: String,
    },
    Invalid(String),
}

impl TargetError {
    fn text(self) -> String {
        match self {
            TargetError::Unknown { name, known } => {
                format!("unknown endpoint {name:?} (configured: {known})")
            }
            TargetError::Invalid(m) => m,
        }
    }
}

/// Fields a `--jsonl` line may have.
const LINE_FIELDS: &[&str] = &[
    "url",
    "method",
    "headers",
    "body",
    "body_base64",
    "key",
    "delay",
    "max_attempts",
    "endpoint",
    "path",
    "ordering_key",
];

/// Runs `enqueue`.
///
/// # Errors
/// `InvalidInput`/`InvalidLine` for bad messages (nothing is stored), `ReadInput`, store errors.
pub(crate) fn run(args: &EnqueueArgs, config: &Config) -> Result<u8> {
    match &args.jsonl {
        Some(input) if args.stream => enqueue_stream(input, args.json, config),
        Some(input) => enqueue_lines(input, args.json, config),
        None => enqueue_one(args, config),
    }
}

/// Where a message goes, resolved against the config's endpoints.
struct Target {
    /// The full URL, or the path for an endpoint.
    url: String,
    endpoint: Option<String>,
    lane: Option<String>,
    lane_dead_blocks: bool,
}

/// Resolves a URL, or an endpoint with an optional path, and the ordered lane if any.
fn target(
    config: &Config,
    url: Option<String>,
    endpoint: Option<String>,
    path: Option<String>,
    ordering_key: Option<String>,
) -> std::result::Result<Target, TargetError> {
    let invalid = |m: &str| TargetError::Invalid(m.to_owned());
    let (url, endpoint) = match (url, endpoint) {
        (Some(_), Some(_)) => return Err(invalid("give either a URL or an endpoint, not both")),
        (None, None) => return Err(invalid("missing field `url` (or `endpoint`)")),
        (Some(_), None) if path.is_some() => {
            return Err(invalid("a path can only be given with an endpoint"))
        }
        (Some(url), None) => (url, None),
        (None, Some(name)) => {
            let Some(e) = config.endpoints.get(&name) else {
                let known: Vec<&str> = config.endpoints.keys().map(String::as_str).collect();
                return Err(TargetError::Unknown {
                    name,
                    known: if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                });
            };
            let path = path.unwrap_or_default();
            if !path.is_empty() {
                check::path("path", &path).map_err(|e| TargetError::Invalid(e.reason))?;
            }
            check::url("path", &e.url_for(&path)).map_err(|e| TargetError::Invalid(e.reason))?;
            (path, Some(e))
        }
    };
    if let Some(k) = &ordering_key {
        if k.is_empty() || k.len() > 512 {
            return Err(invalid("ordering key must be 1 to 512 bytes long"));
        }
    }
    let lane = match (&ordering_key, endpoint) {
        (Some(k), e) => Some(Lane {
            endpoint: e.map_or_else(String::new, |e| e.name.clone()),
            key: k.clone(),
        }),
        (None, Some(e)) if e.ordered => Some(Lane {
            endpoint: e.name.clone(),
            key: String::new(),
        }),
        (None, _) => None,
    }
    .map(|l| l.encode());
    Ok(Target {
        url,
        lane,
        lane_dead_blocks: endpoint.is_none_or(|e| e.on_dead == OnDead::Block),
        endpoint: endpoint.map(|e| e.name.clone()),
    })
}

fn enqueue_one(args: &EnqueueArgs, config: &Config) -> Result<u8> {
    let usage = |message: String| Error::Usage { message };
    let t = target(
        config,
        args.url.clone(),
        args.endpoint.clone(),
        args.path.clone(),
        args.ordering_key.clone(),
    )
    .map_err(|e| match e {
        TargetError::Unknown { name, .. } => Error::NoSuchEndpoint { name },
        TargetError::Invalid(m) => usage(m),
    })?;
    let max_attempts = args
        .max_attempts
        .as_deref()
        .map(|n| {
            n.trim().parse::<u32>().map_err(|_| {
                usage(format!(
                    "--max-attempts: {n:?} is not a whole number in 1..=1000"
                ))
            })
        })
        .transpose()?;
    let message = Message {
        method: args.method.clone(),
        url: t.url,
        endpoint: t.endpoint,
        lane: t.lane,
        lane_dead_blocks: t.lane_dead_blocks,
        headers: args
            .headers
            .iter()
            .map(|h| check::header_arg("-H", h).map_err(|e| usage(e.to_string())))
            .collect::<Result<_>>()?,
        body: match &args.data {
            Some(d) => read_body(d, config.max_body_size)?,
            None => Vec::new(),
        },
        key: args.key.clone(),
        delay: match &args.delay {
            Some(d) => check::delay("--delay", d).map_err(|e| usage(e.to_string()))?,
            None => Duration::ZERO,
        },
        max_attempts,
    };
    message
        .check(config.max_body_size)
        .map_err(|e| usage(e.to_string()))?;
    let mut store = Store::open(&config.db, Access::Write)?;
    let mut inserter = store.inserter()?;
    let enqueued = inserter.insert(&message, crate::time::now_ms())?;
    inserter.commit()?;
    crate::daemon::wake(&config.db);
    note_reused_key(&enqueued, message.key.as_deref(), None);
    out(render(&enqueued, args.json))?;
    Ok(exit::OK)
}

/// Tells on stderr that a known key came with a different request, which was not stored.
fn note_reused_key(e: &Enqueued, key: Option<&str>, line: Option<(&str, u64)>) {
    if e.created || e.same_request {
        return;
    }
    let at = line.map_or(String::new(), |(input, n)| format!("{input}: line {n}: "));
    eprintln!(
        "webhookd: {at}key {:?} is already used by message {} with a different request; nothing was stored (its uuid is printed)",
        crate::text::escape(key.unwrap_or_default()),
        e.uuid
    );
}

fn render(e: &Enqueued, json: bool) -> String {
    if json {
        serde_json::json!({
            "uuid": e.uuid.to_string(),
            "state": e.state.as_str(),
            "created": e.created,
        })
        .to_string()
    } else {
        e.uuid.to_string()
    }
}

/// Opens `--jsonl` input: a file, or stdin for `-`.
fn open_input(input: &str) -> Result<(String, BufReader<Box<dyn Read>>)> {
    let (name, reader): (String, Box<dyn Read>) = if input == "-" {
        ("stdin".into(), Box::new(std::io::stdin().lock()))
    } else {
        let file = File::open(input).map_err(|source| Error::ReadInput {
            what: input.to_owned(),
            source,
        })?;
        (input.to_owned(), Box::new(file))
    };
    Ok((name, BufReader::with_capacity(256 * 1024, reader)))
}

/// Reads the next non-blank line into `line`; false at end of input.
fn next_line(
    reader: &mut impl BufRead,
    line: &mut String,
    line_no: &mut u64,
    name: &str,
) -> Result<bool> {
    loop {
        line.clear();
        *line_no += 1;
        let n = reader.read_line(line).map_err(|e| Error::InvalidLine {
            input: name.to_owned(),
            line: *line_no,
            message: format!("cannot read: {e}"),
        })?;
        if n == 0 {
            return Ok(false);
        }
        if !line.trim().is_empty() {
            return Ok(true);
        }
    }
}

/// Streaming mode: group commit. A group ends when no more input is buffered (the producer
/// paused), after `STREAM_GROUP` lines, or after `STREAM_LINGER`; its uuids are printed once it is
/// durable. Lines are parsed before the write lock is taken, so the lock is held only for the
/// inserts and the commit, never while waiting for input: the daemon's transactions would queue
/// behind it otherwise (measured: its turns waited 5-40 ms for this lock at 5,000 lines/s).
fn enqueue_stream(input: &str, json: bool, config: &Config) -> Result<u8> {
    const STREAM_GROUP: usize = 1000;
    const STREAM_LINGER: Duration = Duration::from_millis(5);
    let (name, mut reader) = open_input(input)?;
    let mut store = Store::open(&config.db, Access::Write)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut group: Vec<Message> = Vec::with_capacity(STREAM_GROUP);
    let mut line = String::new();
    let mut line_no = 0u64;
    loop {
        // Wait for input before starting the group's clock; an idle producer holds no lock.
        if reader.fill_buf().map(|b| b.is_empty()).unwrap_or(false) {
            return Ok(exit::OK);
        }
        let started = std::time::Instant::now();
        let mut failure = None;
        let mut more = true;
        while group.len() < STREAM_GROUP && started.elapsed() < STREAM_LINGER {
            more = next_line(&mut reader, &mut line, &mut line_no, &name)?;
            if !more {
                break;
            }
            match parse_line(&line, config) {
                Ok(message) => group.push(message),
                Err(message) => {
                    failure = Some(Error::InvalidLine {
                        input: name.clone(),
                        line: line_no,
                        message,
                    });
                    break;
                }
            }
            if reader.buffer().is_empty() {
                break; // the producer paused: make this group durable now
            }
        }
        if !group.is_empty() {
            let mut inserter = store.inserter()?;
            let now = crate::time::now_ms();
            let enqueued = group
                .drain(..)
                .map(|m| inserter.insert(&m, now))
                .collect::<Result<Vec<_>>>()?;
            inserter.commit()?;
            crate::daemon::wake(&config.db);
            for e in &enqueued {
                writeln!(out, "{}", render(e, json)).map_err(stdout_error)?;
            }
            out.flush().map_err(stdout_error)?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !more {
            return Ok(exit::OK);
        }
    }
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Write {
        what: "stdout".into(),
        source,
    }
}

fn enqueue_lines(input: &str, json: bool, config: &Config) -> Result<u8> {
    let (name, mut reader) = open_input(input)?;
    // First read and check every line, without the database: a producer that pauses holds no
    // lock, and a bad line fails before anything was written.
    let mut spool = Spool::new("enqueue");
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_no = 0u64;
    while next_line(&mut reader, &mut line, &mut line_no, &name)? {
        let message = parse_line(&line, config).map_err(|message| Error::InvalidLine {
            input: name.clone(),
            line: line_no,
            message,
        })?;
        if message.key.is_some() {
            lines.push((spool.len(), line_no));
        }
        spool.push(message)?;
    }
    let mut uuids = Spill::create()?;
    let mut store = Store::open(&config.db, Access::Write)?;
    let mut inserter = store.inserter()?;
    let now = crate::time::now_ms();
    let mut notes = Vec::new();
    for (i, message) in spool.replay()?.enumerate() {
        let message = message?;
        let enqueued = inserter.insert(&message, now)?;
        if !enqueued.created && !enqueued.same_request {
            let n = lines
                .iter()
                .find(|(at, _)| *at == i as u64)
                .map_or(0, |(_, n)| *n);
            notes.push((enqueued, message.key, n));
        }
        uuids.push(&enqueued)?;
    }
    inserter.commit()?;
    drop(store);
    crate::daemon::wake(&config.db);
    for (e, key, n) in &notes {
        note_reused_key(e, key.as_deref(), Some((&name, *n)));
    }
    uuids.print(json)?;
    Ok(exit::OK)
}

fn parse_line(text: &str, config: &Config) -> std::result::Result<Message, String> {
    let mut line: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        // serde_json's position is within this one line; the line number is ours.
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        }
    })?;
    if let Some(unknown) = line.keys().find(|k| !LINE_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}` (expected one of {})",
            LINE_FIELDS.join(", ")
        ));
    }
    let t = target(
        config,
        string(&mut line, "url")?,
        string(&mut line, "endpoint")?,
        string(&mut line, "path")?,
        string(&mut line, "ordering_key")?,
    )
    .map_err(TargetError::text)?;
    let body = match (
        string(&mut line, "body")?,
        string(&mut line, "body_base64")?,
    ) {
        (Some(_), Some(_)) => return Err("give either body or body_base64, not both".into()),
        (Some(b), None) => b.into_bytes(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| format!("body_base64: {e}"))?,
        (None, None) => Vec::new(),
    };
    let headers = headers(line.remove("headers"))?;
    let max_attempts = match line.remove("max_attempts") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("max_attempts: expected a positive integer, got {v}"))?,
        ),
    };
    let message = Message {
        method: string(&mut line, "method")?.unwrap_or_else(|| "POST".into()),
        url: t.url,
        endpoint: t.endpoint,
        lane: t.lane,
        lane_dead_blocks: t.lane_dead_blocks,
        headers,
        body,
        key: string(&mut line, "key")?,
        delay: match string(&mut line, "delay")? {
            Some(d) => check::delay("delay", &d).map_err(|e| e.to_string())?,
            None => Duration::ZERO,
        },
        max_attempts,
    };
    message
        .check(config.max_body_size)
        .map_err(|e| e.to_string())?;
    Ok(message)
}

/// The `headers` of a JSON line: an object (`{"Name": "value"}`), or, to repeat a name, a list
/// of `{"name": ..., "value": ...}` objects (the form every JSON output uses).
fn headers(v: Option<Value>) -> std::result::Result<Vec<(String, String)>, String> {
    let pair = |name: &str, value: &Value, at: String| match value {
        Value::String(value) => check::header("headers", name, value).map_err(|e| e.reason),
        _ => Err(format!("{at}: expected a string")),
    };
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in &map {
                out.push(pair(name, value, format!("headers.{name}"))?);
            }
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let fields = item
                    .as_object()
                    .filter(|o| o.len() == 2 && o.contains_key("name") && o.contains_key("value"));
                let Some(Value::String(name)) = fields.and_then(|o| o.get("name")) else {
                    return Err(format!(
                        "headers[{i}]: expected {{\"name\": \"...\", \"value\": \"...\"}}"
                    ));
                };
                let value = &fields.expect("checked above")["value"];
                out.push(pair(name, value, format!("headers[{i}].value"))?);
            }
        }
        Some(_) => {
            return Err(
                "headers: expected an object of strings or a list of {\"name\", \"value\"} objects"
                    .into(),
            )
        }
    }
    Ok(out)
}

/// Takes an optional string field out of a JSON line.
fn string(
    line: &mut Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<String>, String> {
    match line.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("{name}: expected a string, got {v}")),
    }
}

/// Uuids of a `--jsonl` batch, kept in an unlinked temporary file until the commit.
struct Spill {
    writer: BufWriter<File>,
}

impl Spill {
    fn create() -> Result<Spill> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "webhookd-enqueue-{}-{}",
            std::process::id(),
            Uuid::now_v7().simple()
        ));
        let io = |source| Error::Write {
            what: format!("temporary file {}", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        Ok(Spill {
            writer: BufWriter::with_capacity(64 * 1024, file),
        })
    }

    fn push(&mut self, e: &Enqueued) -> Result<()> {
        let mut rec = [0u8; 17];
        rec[..16].copy_from_slice(e.uuid.as_bytes());
        // Bit 0: created; the bits above: the state (a known key's message may be in any).
        let state = store::State::ALL
            .iter()
            .position(|s| *s == e.state)
            .unwrap_or(0) as u8;
        rec[16] = u8::from(e.created) | (state << 1);
        self.writer.write_all(&rec).map_err(spill_error)
    }

    fn print(self, json: bool) -> Result<()> {
        let mut file = self
            .writer
            .into_inner()
            .map_err(|e| spill_error(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let stdout = std::io::stdout();
        let mut w = BufWriter::with_capacity(64 * 1024, stdout.lock());
        let mut rec = [0u8; 17];
        let write_err = |source| Error::Write {
            what: "stdout".into(),
            source,
        };
        loop {
            match reader.read_exact(&mut rec) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(spill_error(e)),
            }
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&rec[..16]);
            let e = Enqueued {
                uuid: Uuid::from_bytes(uuid),
                created: rec[16] & 1 == 1,
                state: store::State::ALL[usize::from(rec[16] >> 1) % store::State::ALL.len()],
                same_request: true,
            };
            writeln!(w, "{}", render(&e, json)).map_err(write_err)?;
        }
        w.flush().map_err(write_err)
    }
}

fn spill_error(source: std::io::Error) -> Error {
    Error::Write {
        what: "temporary uuid file".into(),
        source,
    }
}

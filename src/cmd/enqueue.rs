//! `webhookd enqueue`: one message from flags, or many from JSON lines, stored durably.
//!
//! Uuids are printed only after the commit is durable. `--jsonl` stores every line in one
//! transaction: one bad line rolls everything back. The input is read and validated into a spool
//! file before the write lock is taken (a slow producer never holds up other writers or the
//! daemon), and the uuids wait in another one until the commit: neither grows memory.
//!
//! One message goes through a running daemon's API socket when there is one (group-committed
//! with its other requests); `--jsonl` always writes the database.
//!
//! Exit codes: a bad argument is a usage error (64), a bad JSON line bad data (65, with its line
//! number), an endpoint neither configured nor known 66 (65 in a JSON line).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::spool::Spool;
use super::{out, read_body};
use crate::api::Sent;
use crate::check::{self, Invalid};
use crate::cli::EnqueueArgs;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::ingest::{Refused, Request};
use crate::message::Message;
use crate::store::{self, Access, Enqueued};
use crate::view::EnqueuedJson;

/// Runs `enqueue`.
///
/// # Errors
/// `InvalidInput`/`InvalidLine` for bad messages (nothing is stored), `ReadInput`, store errors.
pub(crate) fn run(args: &EnqueueArgs, config: &Config) -> Result<u8> {
    if let Some(kind) = &args.event {
        return super::event::enqueue(args, config, kind);
    }
    // Endpoints managed at runtime are in the database: read them when a message may name one
    // the config file does not have.
    let stored;
    let config = if args.jsonl.is_some()
        || args
            .endpoint
            .as_ref()
            .is_some_and(|n| !config.endpoints.contains_key(n))
    {
        stored = with_stored_endpoints(config)?;
        &stored
    } else {
        config
    };
    match &args.jsonl {
        Some(input) if args.stream => enqueue_stream(input, args.json, config),
        Some(input) => enqueue_lines(input, args.json, config),
        None => enqueue_one(args, config),
    }
}

/// The config with the database's endpoints, when the database exists yet.
fn with_stored_endpoints(config: &Config) -> Result<Config> {
    match store::open_admin(&config.db, Access::Read) {
        Ok(store) => crate::ops::defined::with_defined(config, store.as_ref()),
        Err(Error::NoDatabase { .. } | Error::OldSchema { .. }) => Ok(config.clone()),
        Err(e) => Err(e),
    }
}

fn enqueue_one(args: &EnqueueArgs, config: &Config) -> Result<u8> {
    let max_attempts = args
        .max_attempts
        .as_deref()
        .map(|n| {
            n.trim().parse::<u32>().map_err(|_| Error::Usage {
                message: format!("--max-attempts: {n:?} is not a whole number in 1..=1000"),
            })
        })
        .transpose()?;
    let request = Request {
        url: args.url.clone(),
        endpoint: args.endpoint.clone(),
        path: args.path.clone(),
        method: Some(args.method.clone()),
        headers: args
            .headers
            .iter()
            .map(|h| {
                check::header_arg("-H", h).map_err(|e| Error::Usage {
                    message: e.to_string(),
                })
            })
            .collect::<Result<_>>()?,
        body: match &args.data {
            Some(d) => read_body(d, config.max_body_size)?,
            None => Vec::new(),
        },
        key: args.key.clone(),
        delay: args.delay.clone(),
        max_attempts,
        ordering_key: args.ordering_key.clone(),
    };
    let json = request.to_json();
    let message = request
        .validate(&config.endpoints, config.max_body_size, &config.egress)
        .map_err(|e| match e {
            Refused::UnknownEndpoint { name, .. } => Error::NoSuchEndpoint { name },
            Refused::Invalid(e) => Error::Usage {
                message: as_flags(&e),
            },
            Refused::Blocked(e) => Error::from(e),
        })?;
    // A running daemon takes it through its API (group commit, no database to open); without one
    // (or when it is stopping or full) it goes into the database directly.
    let socket = config.api.socket_path(&config.db);
    let enqueued = match crate::api::enqueue_through(&socket, &config.db, &json)? {
        Sent::Stored(e) => e,
        Sent::NoDaemon => {
            let mut store = store::open_admin(&config.db, Access::Write)?;
            let mut inserter = store.inserter()?;
            let enqueued = inserter.insert(&message, crate::time::now_ms())?;
            inserter.commit()?;
            store::coordination(&config.db).notify(store::Notice::Messages);
            enqueued
        }
    };
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
        "webhookd: {at}key \"{}\" is already used by message {} with a different request; nothing was stored (its uuid is printed)",
        crate::text::escape(key.unwrap_or_default()),
        e.uuid
    );
}

fn render(e: &Enqueued, json: bool) -> String {
    if json {
        serde_json::to_string(&EnqueuedJson::new(e)).expect("a view serializes")
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
    let mut store = store::open_admin(&config.db, Access::Write)?;
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
            store::coordination(&config.db).notify(store::Notice::Messages);
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
    let mut store = store::open_admin(&config.db, Access::Write)?;
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
    store::coordination(&config.db).notify(store::Notice::Messages);
    for (e, key, n) in &notes {
        note_reused_key(e, key.as_deref(), Some((&name, *n)));
    }
    uuids.print(json)?;
    Ok(exit::OK)
}

/// One `--jsonl` line: a JSON object as the API takes it.
fn parse_line(text: &str, config: &Config) -> std::result::Result<Message, String> {
    let object: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        // serde_json's position is within this one line; the line number is ours.
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        }
    })?;
    Request::from_object(object)
        .map_err(|e| e.to_string())?
        .validate(&config.endpoints, config.max_body_size, &config.egress)
        .map_err(|e| e.to_string())
}

/// A refusal as the command line names things: flags instead of JSON fields.
fn as_flags(e: &Invalid) -> String {
    let flag = match e.field.as_str() {
        "url" => return e.reason.clone(),
        "endpoint" => "--endpoint",
        "path" => "--path",
        "method" => "-X",
        "headers" => "-H",
        "body" => "-d",
        "key" => "--key",
        "delay" => "--delay",
        "max_attempts" => "--max-attempts",
        "ordering_key" => "--ordering-key",
        other => other,
    };
    format!("{flag}: {}", e.reason)
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
        let state = crate::model::State::ALL
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
                state: crate::model::State::ALL
                    [usize::from(rec[16] >> 1) % crate::model::State::ALL.len()],
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

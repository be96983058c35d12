//! Posting messages: one, or a batch all or none, validated as `enqueue` validates them and
//! handed to the group commit.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{bad, json, Answer};
use crate::api::ingest::Refusal;
use crate::api::problem::Problem;
use crate::api::wire::Request;
use crate::api::Context;
use crate::config::Config;
use crate::ingest::Refused;
use crate::message::Message;
use crate::store::Enqueued;
use crate::view::EnqueuedJson;

/// The most messages in one batch request.
const MAX_BATCH: usize = 10_000;

impl Context {
    pub(super) fn enqueue_one(&self, r: &Request) -> Answer {
        content_type(r, false)?;
        if let Some(db) = r.header("webhookd-db") {
            if self.db.as_deref() != Some(db) {
                return Err(Problem::new(421, "misdirected request").detail(
                    "this daemon serves another database than the one named in Webhookd-Db",
                ));
            }
        }
        let mut object = match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(bad("the body must be a JSON object (one message)")),
            Err(e) => return Err(bad(&format!("the body is not JSON: {e}"))),
        };
        if let Some(key) = r.header("idempotency-key") {
            match object.get("key") {
                Some(Value::String(k)) if k != key => {
                    return Err(Problem::invalid(&crate::check::Invalid::new(
                        "key",
                        "differs from the Idempotency-Key header",
                    )))
                }
                _ => {
                    object.insert("key".into(), Value::String(key.to_owned()));
                }
            }
        }
        let config = self.config();
        let message = self.message(object, &config)?;
        let e = self.store(vec![message])?.remove(0);
        if !e.created && !e.same_request {
            return Err(Problem::new(409, "idempotency key reused")
                .field("key")
                .detail(format!(
                    "key is already used by message {} with a different request; nothing was stored",
                    e.uuid
                ))
                .existing(e.uuid.to_string(), e.state.as_str()));
        }
        Ok(json(202, &EnqueuedJson::new(&e)))
    }

    pub(super) fn enqueue_batch(&self, r: &Request) -> Answer {
        let lines = content_type(r, true)?;
        let config = self.config();
        let mut messages = Vec::new();
        let too_many = || bad(&format!("a batch holds at most {MAX_BATCH} messages"));
        if lines {
            let text = std::str::from_utf8(&r.body).map_err(|_| bad("the body is not UTF-8"))?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                if messages.len() == MAX_BATCH {
                    return Err(too_many());
                }
                let n = i as u64 + 1;
                let object = match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(o)) => o,
                    Ok(_) => return Err(bad(&format!("line {n}: expected a JSON object")).line(n)),
                    Err(e) => return Err(bad(&format!("line {n}: not JSON: {e}")).line(n)),
                };
                messages.push(self.message(object, &config).map_err(|p| p.line(n))?);
            }
        } else {
            let items = match serde_json::from_slice::<Value>(&r.body) {
                Ok(Value::Array(items)) => items,
                Ok(_) => return Err(bad("the body must be a JSON array of messages")),
                Err(e) => return Err(bad(&format!("the body is not JSON: {e}"))),
            };
            if items.len() > MAX_BATCH {
                return Err(too_many());
            }
            for (i, item) in items.into_iter().enumerate() {
                let Value::Object(object) = item else {
                    return Err(bad(&format!("[{i}]: expected a JSON object")).index(i));
                };
                messages.push(self.message(object, &config).map_err(|p| p.index(i))?);
            }
        }
        if messages.is_empty() {
            return Err(bad("the batch holds no message"));
        }
        let stored = self.store(messages)?;
        let views: Vec<EnqueuedJson> = stored.iter().map(EnqueuedJson::new).collect();
        Ok(json(202, &Batch { messages: views }))
    }

    /// Hands messages to the group commit and waits until they are durable.
    fn store(&self, messages: Vec<Message>) -> Result<Vec<Enqueued>, Problem> {
        match self.submit.submit(messages) {
            Ok(Ok(e)) => {
                let created = e.iter().filter(|e| e.created).count() as u64;
                self.history.accepted(created, crate::time::now_ms());
                Ok(e)
            }
            Ok(Err(f)) if f.busy => Err(Problem::new(503, "busy").detail(f.message).retry_after(1)),
            Ok(Err(f)) => Err(Problem::new(500, "internal error").detail(f.message)),
            Err(Refusal::Full) => Err(Problem::new(429, "too many messages waiting")
                .detail("the ingest queue is full (api.ingest_queue); try again shortly")
                .retry_after(1)),
            Err(Refusal::Stopped) => Err(Problem::new(503, "stopping")
                .detail("the daemon is stopping")
                .retry_after(5)),
        }
    }
}

#[derive(Serialize)]
struct Batch {
    messages: Vec<EnqueuedJson>,
}

/// Checks the body's media type: JSON, or for a batch also JSON lines (returns true then).
pub(super) fn content_type(r: &Request, lines_allowed: bool) -> Result<bool, Problem> {
    let ct = r.header("content-type").unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(false),
        "application/x-ndjson" | "application/jsonl" if lines_allowed => Ok(true),
        _ => Err(
            Problem::new(415, "unsupported media type").detail(if lines_allowed {
                "send application/json (an array) or application/x-ndjson (JSON lines)"
            } else {
                "send application/json"
            }),
        ),
    }
}

impl Context {
    /// `POST /v1/events`: `{"type", "tenant"?, "body"|"body_base64"?, "key"?}`, fanned out to
    /// every subscribed endpoint in one transaction (a write of its own, not the group commit:
    /// matching reads the endpoints); 202 with the event's id and its deliveries.
    pub(super) fn enqueue_event(&self, r: &Request) -> Answer {
        content_type(r, false)?;
        let object = match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(bad("the body must be a JSON object (one event)")),
            Err(e) => return Err(bad(&format!("the body is not JSON: {e}"))),
        };
        let mut event = crate::ops::events::EventRequest::from_object(object)
            .map_err(|e| Problem::invalid(&e))?;
        if let Some(key) = r.header("idempotency-key") {
            event.key.get_or_insert_with(|| key.to_owned());
        }
        let config = self.config();
        let mut s = crate::store::open_admin(&config.db, crate::store::Access::Write)
            .map_err(|e| Problem::from_error(&e))?;
        let done = crate::ops::events::fan_out(s.as_mut(), &config, event)
            .map_err(|e| Problem::from_error(&e))?;
        drop(s);
        if done.created && done.deliveries > 0 {
            self.history
                .accepted(done.deliveries as u64, crate::time::now_ms());
            let _ = self.wake.send(crate::store::Notice::Messages);
        }
        Ok(json(202, &done.view()))
    }

    /// One message of a request body, validated as `enqueue --jsonl` validates a line. An
    /// endpoint added a moment ago (the dispatcher applies it at its next turn) is read from the
    /// database.
    fn message(&self, object: Map<String, Value>, config: &Config) -> Result<Message, Problem> {
        let request =
            crate::ingest::Request::from_object(object).map_err(|e| Problem::invalid(&e))?;
        let mut endpoints = &config.endpoints;
        let fresh;
        if let Some(name) = request
            .endpoint
            .as_ref()
            .filter(|n| !config.endpoints.contains_key(*n))
        {
            let one = self
                .read(config, |s| crate::ops::defined::stored(s, name))
                .map_err(|e| Problem::from_error(&e))?;
            if let Some(e) = one {
                fresh = std::collections::BTreeMap::from([(name.clone(), e)]);
                endpoints = &fresh;
            }
        }
        validate(request, endpoints, config.max_body_size, &config.egress)
    }
}

fn validate(
    request: crate::ingest::Request,
    endpoints: &std::collections::BTreeMap<String, std::sync::Arc<crate::endpoint::Endpoint>>,
    max_body_size: usize,
    egress: &crate::egress::Policy,
) -> Result<Message, Problem> {
    request
        .validate(endpoints, max_body_size, egress)
        .map_err(|e| match e {
            Refused::Invalid(e) | Refused::Blocked(e) => Problem::invalid(&e),
            Refused::UnknownEndpoint { .. } => bad(&format!("endpoint: {e}")).field("endpoint"),
        })
}

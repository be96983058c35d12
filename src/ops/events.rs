//! Events and fan-out (`enqueue --event`, `POST /v1/events`): one event is delivered to every
//! endpoint of its tenant (or, without a tenant, every endpoint without one) whose patterns match
//! its type and that is not paused. Each delivery is a message of its own (state, attempts, DLQ,
//! retry, cancel), and all of them carry the event's id as `webhook-id` (what Standard Webhooks
//! receivers deduplicate on) and its type as `webhook-event`. The event and its deliveries are
//! stored in one transaction, all or none; an event no endpoint subscribes to is stored with
//! none. A key is idempotent per tenant.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::check::{self, Invalid};
use crate::config::Config;
use crate::endpoint::{defined, Endpoint};
use crate::error::{Error, Result};
use crate::ingest::{self, Request};
use crate::message::Message;
use crate::store::{Admin, Enqueued, EventRecord};

/// The header that names an event's type on each of its deliveries.
pub(crate) const TYPE_HEADER: &str = "webhook-event";

/// The fields of an event, as JSON (and the API) names them.
pub(crate) const FIELDS: &[&str] = &["type", "tenant", "body", "body_base64", "key"];

/// An event as it is asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventRequest {
    pub(crate) kind: String,
    pub(crate) tenant: Option<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) key: Option<String>,
}

/// What an event became.
#[derive(Debug)]
pub(crate) struct FannedOut {
    pub(crate) id: Uuid,
    /// False: its key named an event stored before; nothing new was stored.
    pub(crate) created: bool,
    pub(crate) deliveries: u64,
    /// Each new delivery: its endpoint and message.
    pub(crate) messages: Vec<(String, Enqueued)>,
}

impl EventRequest {
    /// Reads an event from a JSON object, naming the field of any error.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub(crate) fn from_object(mut o: Map<String, Value>) -> std::result::Result<Self, Invalid> {
        if let Some(k) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Invalid::new(
                k.as_str(),
                format!("unknown field (expected one of {})", FIELDS.join(", ")),
            ));
        }
        let kind =
            ingest::string(&mut o, "type")?.ok_or_else(|| Invalid::new("type", "missing"))?;
        let tenant = ingest::string(&mut o, "tenant")?;
        let key = ingest::string(&mut o, "key")?;
        let body = ingest::body(&mut o)?;
        Ok(EventRequest {
            kind,
            tenant,
            body,
            key,
        })
    }
}

/// The patterns that match event type `kind`: itself, `*`, and each prefix (`a.*`, `a.b.*`).
pub(crate) fn patterns_for(kind: &str) -> Vec<String> {
    let mut out = vec![kind.to_owned(), "*".to_owned()];
    for (i, _) in kind.match_indices('.') {
        out.push(format!("{}.*", &kind[..i]));
    }
    out
}

/// Whether `pattern` (`invoice.paid`, `invoice.*`, `*`) matches event type `kind`.
pub(crate) fn matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix) && (prefix.is_empty() || prefix.ends_with('.')),
        None => pattern == kind,
    }
}

/// The endpoints event `e` reaches, by name: the config file's that match (and are not paused
/// in the database), and the database's found through the subscriptions index.
fn subscribers(
    store: &dyn Admin,
    config: &Config,
    e: &EventRequest,
) -> Result<BTreeMap<String, Arc<Endpoint>>> {
    let mut out = BTreeMap::new();
    for (name, ep) in config.endpoints.iter().filter(|(_, ep)| !ep.managed) {
        if ep.tenant == e.tenant && ep.events.iter().any(|p| matches(p, &e.kind)) {
            let paused = store.definition(name)?.is_some_and(|r| r.paused);
            if !paused {
                out.insert(name.clone(), ep.clone());
            }
        }
    }
    let tenant = e.tenant.as_deref().unwrap_or("");
    for name in store.subscribers(tenant, &patterns_for(&e.kind))? {
        let Some(def) = store.definition(&name)?.and_then(|r| r.definition) else {
            continue;
        };
        match defined::build(&name, &def, Vec::new(), false) {
            Ok(ep) => {
                out.insert(name, Arc::new(ep));
            }
            Err(err) => log::warn!("endpoint {name:?}: stored definition: {err}; not delivered to"),
        }
    }
    Ok(out)
}

impl FannedOut {
    /// As `enqueue --event --json` and the API answer it.
    pub(crate) fn view(&self) -> crate::view::EventJson {
        crate::view::EventJson {
            id: self.id.to_string(),
            created: self.created,
            kind: None,
            tenant: None,
            created_at: None,
            deliveries: self.deliveries,
            messages: self
                .messages
                .iter()
                .map(|(endpoint, e)| crate::view::DeliveryJson {
                    uuid: e.uuid.to_string(),
                    endpoint: endpoint.clone(),
                    state: e.state.as_str(),
                })
                .collect(),
        }
    }
}

/// An event and its deliveries, as `show EVENT_ID --json` shows it.
pub(crate) fn event_view(v: &crate::store::EventView) -> crate::view::EventJson {
    crate::view::EventJson {
        id: v.id.to_string(),
        created: true,
        kind: Some(v.kind.clone()),
        tenant: v.tenant.clone(),
        created_at: Some(crate::time::rfc3339(v.created_at)),
        deliveries: v.deliveries.len() as u64,
        messages: v
            .deliveries
            .iter()
            .map(|(uuid, endpoint, state)| crate::view::DeliveryJson {
                uuid: uuid.to_string(),
                endpoint: endpoint.clone(),
                state: state.as_str(),
            })
            .collect(),
    }
}

/// Stores event `e` and one message per endpoint that subscribes to it, all or none.
///
/// # Errors
/// `InvalidField` naming the field (`type`, `tenant`, `key`, `body`), the store's.
pub(crate) fn fan_out(
    store: &mut dyn Admin,
    config: &Config,
    e: EventRequest,
) -> Result<FannedOut> {
    check::event_type("type", &e.kind)?;
    if let Some(t) = &e.tenant {
        check::tenant("tenant", t)?;
    }
    if let Some(k) = &e.key {
        check::key("key", "idempotency key", k)?;
    }
    let targets = subscribers(store, config, &e)?;
    let id = Uuid::now_v7();
    let mut messages: Vec<(String, Message)> = Vec::with_capacity(targets.len());
    for (name, ep) in &targets {
        let one = BTreeMap::from([(name.clone(), ep.clone())]);
        let request = Request {
            endpoint: Some(name.clone()),
            headers: vec![(TYPE_HEADER.to_owned(), e.kind.clone())],
            body: e.body.clone(),
            ..Request::default()
        };
        let mut m = request
            .validate(&one, config.max_body_size, &config.egress)
            .map_err(|r| match r {
                crate::ingest::Refused::Invalid(i) => Error::from(i),
                other => Error::input(other.to_string()),
            })?;
        m.event = Some(id);
        messages.push((name.clone(), m));
    }
    let now = crate::time::now_ms();
    let mut inserter = store.inserter()?;
    let stored = inserter.event(
        &EventRecord {
            id,
            tenant: e.tenant.clone(),
            kind: e.kind.clone(),
            key: e.key.clone(),
            deliveries: messages.len() as u64,
        },
        now,
    )?;
    if !stored.created {
        if !stored.same_type {
            return Err(Invalid::new(
                "key",
                format!(
                    "already used by event {} of another type; nothing was stored",
                    stored.id
                ),
            )
            .into());
        }
        return Ok(FannedOut {
            id: stored.id,
            created: false,
            deliveries: stored.deliveries,
            messages: Vec::new(),
        });
    }
    let mut out = Vec::with_capacity(messages.len());
    for (name, m) in &messages {
        out.push((name.clone(), inserter.insert(m, now)?));
    }
    inserter.commit()?;
    Ok(FannedOut {
        id,
        created: true,
        deliveries: out.len() as u64,
        messages: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_by_prefix_or_all() {
        assert_eq!(
            patterns_for("invoice.paid.late"),
            ["invoice.paid.late", "*", "invoice.*", "invoice.paid.*"]
        );
        for (p, k, want) in [
            ("invoice.paid", "invoice.paid", true),
            ("invoice.paid", "invoice.paid2", false),
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.paid.late", true),
            ("invoice.*", "invoices.paid", false),
            ("invoice.*", "invoice", false),
            ("*", "anything", true),
        ] {
            assert_eq!(matches(p, k), want, "{p} ~ {k}");
            assert_eq!(patterns_for(k).iter().any(|x| x == p), want, "{p} in {k}");
        }
    }

    #[test]
    fn events_name_the_field_in_every_error() {
        let parse = |v: Value| EventRequest::from_object(v.as_object().unwrap().clone());
        for (v, field) in [
            (serde_json::json!({}), "type"),
            (serde_json::json!({"type": 1}), "type"),
            (serde_json::json!({"type": "a", "colour": 1}), "colour"),
            (
                serde_json::json!({"type": "a", "body": "x", "body_base64": "eA=="}),
                "body",
            ),
            (
                serde_json::json!({"type": "a", "body_base64": "***"}),
                "body_base64",
            ),
        ] {
            assert_eq!(parse(v.clone()).unwrap_err().field, field, "{v}");
        }
        let e = parse(
            serde_json::json!({"type": "a.b", "tenant": "t", "body_base64": "AP8=", "key": "k"}),
        )
        .unwrap();
        assert_eq!(
            (e.kind.as_str(), e.body.as_slice()),
            ("a.b", &[0u8, 255][..])
        );
    }
}

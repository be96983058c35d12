//! One way in for a message: [`Request`] is what `enqueue`'s flags, a `--jsonl` line and the
//! HTTP API all turn into, and [`Request::validate`] resolves its destination against the
//! configured endpoints and checks every field, once, into a [`Message`] ready to store.
//!
//! A request deserializes (serde) from a JSON object through [`Request::from_object`], which
//! names the field in every error (`headers[1].value: expected a string`), where serde's derived
//! errors would only give a position.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::check::{self, Invalid};
use crate::endpoint::{Endpoint, OnDead};
use crate::message::Message;
use crate::model::Lane;

/// The fields a request may have, as JSON names them.
pub(crate) const FIELDS: &[&str] = &[
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

/// The longest ordering key, in bytes.
const MAX_ORDERING_KEY: usize = 512;

/// A message as it is asked for, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub(crate) struct Request {
    /// A full URL, or none when `endpoint` is given.
    pub(crate) url: Option<String>,
    /// A configured endpoint, and the path to append to its URL.
    pub(crate) endpoint: Option<String>,
    pub(crate) path: Option<String>,
    /// POST when not given.
    pub(crate) method: Option<String>,
    /// In order; a name may repeat.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) key: Option<String>,
    /// A duration from now (`90s`, `2h`).
    pub(crate) delay: Option<String>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) ordering_key: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// A named endpoint the configuration does not define.
    #[error("unknown endpoint {name:?} (configured: {known})")]
    UnknownEndpoint { name: String, known: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A valid URL whose address the egress policy denies (data, not usage: exit 65).
    #[error(transparent)]
    Blocked(Invalid),
}

impl TryFrom<Map<String, Value>> for Request {
    type Error = Invalid;

    fn try_from(object: Map<String, Value>) -> Result<Request, Invalid> {
        Request::from_object(object)
    }
}

impl Request {
    /// Reads a request from a JSON object: unknown fields, wrong types, `body` together with
    /// `body_base64` and bad base64 are refused, naming the field.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub(crate) fn from_object(mut object: Map<String, Value>) -> Result<Request, Invalid> {
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Invalid::new(
                unknown.as_str(),
                format!("unknown field (expected one of {})", FIELDS.join(", ")),
            ));
        }
        let o = &mut object;
        let body = body(o)?;
        let max_attempts =
            match o.remove("max_attempts") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(
                    || {
                        Invalid::new(
                            "max_attempts",
                            format!("expected a positive integer, got {v}"),
                        )
                    },
                )?),
            };
        Ok(Request {
            url: string(o, "url")?,
            endpoint: string(o, "endpoint")?,
            path: string(o, "path")?,
            method: string(o, "method")?,
            headers: headers(o.remove("headers"))?,
            body,
            key: string(o, "key")?,
            delay: string(o, "delay")?,
            max_attempts,
            ordering_key: string(o, "ordering_key")?,
        })
    }

    /// The request as a JSON object that [`Request::from_object`] reads back (the body as
    /// `body_base64`, the headers as a list that keeps repeated names): what `enqueue` sends to
    /// a running daemon's API.
    pub(crate) fn to_json(&self) -> Value {
        let mut o = Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                o.insert(k.into(), Value::String(v.clone()));
            }
        };
        put("url", &self.url);
        put("endpoint", &self.endpoint);
        put("path", &self.path);
        put("method", &self.method);
        put("key", &self.key);
        put("delay", &self.delay);
        put("ordering_key", &self.ordering_key);
        if !self.headers.is_empty() {
            let list = self
                .headers
                .iter()
                .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
                .collect();
            o.insert("headers".into(), Value::Array(list));
        }
        if !self.body.is_empty() {
            o.insert(
                "body_base64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(&self.body)),
            );
        }
        if let Some(n) = self.max_attempts {
            o.insert("max_attempts".into(), Value::from(n));
        }
        Value::Object(o)
    }

    /// Resolves the destination (a URL, or a configured endpoint and a path, and the ordered lane
    /// if any) and checks every field.
    ///
    /// # Errors
    /// `UnknownEndpoint`; `Invalid` naming the field (`url`, `endpoint`, `path`, `method`,
    /// `headers`, `body`, `key`, `delay`, `max_attempts`, `ordering_key`).
    pub(crate) fn validate(
        self,
        endpoints: &BTreeMap<String, Arc<Endpoint>>,
        max_body_size: usize,
        egress: &crate::egress::Policy,
    ) -> Result<Message, Refused> {
        let invalid = |field: &str, reason: &str| Refused::Invalid(Invalid::new(field, reason));
        let (url, endpoint) = match (self.url, self.endpoint) {
            (Some(_), Some(_)) => {
                return Err(invalid("url", "give either a URL or an endpoint, not both"))
            }
            (None, None) => return Err(invalid("url", "missing (give a URL or an endpoint)")),
            (Some(_), None) if self.path.is_some() => {
                return Err(invalid("path", "a path can only be given with an endpoint"))
            }
            (Some(url), None) => {
                if let Err(d) = egress.check_url(&url, false) {
                    return Err(Refused::Blocked(Invalid::new(
                        "url",
                        format!("blocked by egress policy: {d} (open it with egress.allow)"),
                    )));
                }
                (url, None)
            }
            (None, Some(name)) => {
                let Some(e) = endpoints.get(&name) else {
                    let known: Vec<&str> = endpoints.keys().map(String::as_str).collect();
                    return Err(Refused::UnknownEndpoint {
                        name,
                        known: if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        },
                    });
                };
                let path = self.path.unwrap_or_default();
                if !path.is_empty() {
                    check::path("path", &path)?;
                }
                check::url("path", &e.url_for(&path))?;
                (path, Some(e))
            }
        };
        if let Some(k) = &self.ordering_key {
            if k.is_empty() || k.len() > MAX_ORDERING_KEY {
                return Err(invalid(
                    "ordering_key",
                    &format!("must be 1 to {MAX_ORDERING_KEY} bytes long"),
                ));
            }
        }
        let lane = match (self.ordering_key, endpoint) {
            (Some(key), e) => Some(Lane {
                endpoint: e.map_or_else(String::new, |e| e.name.clone()),
                key,
            }),
            (None, Some(e)) if e.ordered => Some(Lane {
                endpoint: e.name.clone(),
                key: String::new(),
            }),
            (None, _) => None,
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| check::header("headers", name, value))
            .collect::<Result<_, _>>()?;
        let message = Message {
            method: self.method.unwrap_or_else(|| "POST".into()),
            url,
            endpoint: endpoint.map(|e| e.name.clone()),
            lane: lane.map(|l| l.encode()),
            lane_dead_blocks: endpoint.is_none_or(|e| e.on_dead == OnDead::Block),
            headers,
            body: self.body,
            key: self.key,
            delay: match &self.delay {
                Some(d) => check::delay("delay", d)?,
                None => Duration::ZERO,
            },
            max_attempts: self.max_attempts,
            event: None,
        };
        message.check(max_body_size)?;
        Ok(message)
    }
}

/// The `headers` of a JSON request: an object (`{"Name": "value"}`), or, to repeat a name, a
/// list of `{"name": ..., "value": ...}` objects (the form every JSON output uses).
pub(crate) fn headers(v: Option<Value>) -> Result<Vec<(String, String)>, Invalid> {
    let text = |value: &Value, at: String| match value {
        Value::String(value) => Ok(value.clone()),
        _ => Err(Invalid::new(at, "expected a string")),
    };
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in &map {
                out.push((name.clone(), text(value, format!("headers.{name}"))?));
            }
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let fields = item
                    .as_object()
                    .filter(|o| o.len() == 2 && o.contains_key("name") && o.contains_key("value"));
                let (Some(Value::String(name)), Some(value)) = (
                    fields.and_then(|o| o.get("name")),
                    fields.and_then(|o| o.get("value")),
                ) else {
                    return Err(Invalid::new(
                        format!("headers[{i}]"),
                        "expected {\"name\": \"...\", \"value\": \"...\"}",
                    ));
                };
                out.push((name.clone(), text(value, format!("headers[{i}].value"))?));
            }
        }
        Some(_) => {
            return Err(Invalid::new(
                "headers",
                "expected an object of strings or a list of {\"name\", \"value\"} objects",
            ))
        }
    }
    Ok(out)
}

/// Takes `body` (text) or `body_base64` out of a JSON object (neither: empty).
///
/// # Errors
/// `Invalid` naming the field: both given, a wrong type, bad base64.
pub(crate) fn body(object: &mut Map<String, Value>) -> Result<Vec<u8>, Invalid> {
    Ok(
        match (string(object, "body")?, string(object, "body_base64")?) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "body",
                    "give either body or body_base64, not both",
                ))
            }
            (Some(b), None) => b.into_bytes(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| Invalid::new("body_base64", e.to_string()))?,
            (None, None) => Vec::new(),
        },
    )
}

/// Takes an optional string field out of a JSON object.
///
/// # Errors
/// `Invalid` naming the field when it is not a string.
pub(crate) fn string(
    object: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, Invalid> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(Invalid::new(name, format!("expected a string, got {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> BTreeMap<String, Arc<Endpoint>> {
        let e = Endpoint {
            name: "billing".into(),
            url: "http://127.0.0.1:9/hooks".into(),
            headers: Vec::new(),
            keys: Arc::default(),
            timeout: None,
            max_attempts: None,
            concurrency: None,
            rate: None,
            ordered: true,
            on_dead: OnDead::Skip,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(10),
            disable_after: Duration::from_secs(100),
            unreadable: Vec::new(),
            tenant: None,
            events: Vec::new(),
            paused: false,
            managed: false,
            route: Arc::default(),
        };
        BTreeMap::from([("billing".to_owned(), Arc::new(e))])
    }

    fn parse(json: &str) -> Result<Request, String> {
        serde_json::from_str::<Request>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn json_requests_name_the_field_in_every_error() {
        for (json, needle) in [
            (r#"{"url": 5}"#, "url: expected a string, got 5"),
            (r#"{"uri": "x"}"#, "uri: unknown field"),
            (r#"{"headers": [{"name": "A"}]}"#, "headers[0]: expected"),
            (r#"{"headers": {"A": 1}}"#, "headers.A: expected a string"),
            (r#"{"headers": 3}"#, "headers: expected an object"),
            (r#"{"body": "a", "body_base64": "YQ=="}"#, "not both"),
            (r#"{"body_base64": "***"}"#, "body_base64: "),
            (
                r#"{"max_attempts": -1}"#,
                "max_attempts: expected a positive integer",
            ),
        ] {
            let err = parse(json).expect_err(json);
            assert!(err.contains(needle), "{json}: {err}");
        }
        let r = parse(
            r#"{"url": "http://127.0.0.1:9/a", "headers": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}], "body_base64": "AP8=", "max_attempts": 3}"#,
        )
        .unwrap();
        assert_eq!(
            r.headers,
            [("A".into(), "1".into()), ("A".into(), "2".into())]
        );
        assert_eq!((r.body.clone(), r.max_attempts), (vec![0, 255], Some(3)));
        // What the CLI sends to the API reads back as the same request.
        let full = Request {
            endpoint: Some("billing".into()),
            path: Some("/p".into()),
            method: Some("PUT".into()),
            key: Some("k".into()),
            delay: Some("5s".into()),
            ordering_key: Some("o".into()),
            ..r.clone()
        };
        for req in [r, full, Request::default()] {
            let Value::Object(o) = req.to_json() else {
                panic!("an object")
            };
            assert_eq!(Request::from_object(o).unwrap(), req);
        }
    }

    #[test]
    fn validation_resolves_the_destination_and_checks_every_field() {
        let eps = endpoints();
        let open = crate::egress::Policy {
            allow: crate::egress::ranges(&["0.0.0.0/0".into(), "::/0".into()]).unwrap(),
            deny: Vec::new(),
        };
        let ok = |r: Request| r.validate(&eps, 100, &open);
        let url = |u: &str| Request {
            url: Some(u.into()),
            ..Request::default()
        };
        let m = ok(url("http://127.0.0.1:9/a")).unwrap();
        assert_eq!(
            (m.method.as_str(), m.endpoint, m.lane),
            ("POST", None, None)
        );
        // An ordered endpoint puts its messages in its default lane; dead ones do not block it.
        let m = ok(Request {
            endpoint: Some("billing".into()),
            path: Some("/x".into()),
            ..Request::default()
        })
        .unwrap();
        assert_eq!(
            (m.url.as_str(), m.endpoint.as_deref()),
            ("/x", Some("billing"))
        );
        let lane = Lane::decode(m.lane.as_deref().expect("a lane"));
        assert_eq!((lane.endpoint.as_str(), lane.key.as_str()), ("billing", ""));
        assert!(!m.lane_dead_blocks);
        let refused = |r: Request| ok(r).expect_err("refused").to_string();
        assert!(refused(Request::default()).starts_with("url: missing"));
        assert_eq!(
            refused(Request {
                endpoint: Some("nope".into()),
                ..Request::default()
            }),
            "unknown endpoint \"nope\" (configured: billing)"
        );
        for (r, needle) in [
            (
                Request {
                    path: Some("/p".into()),
                    ..url("http://127.0.0.1:9/")
                },
                "path: a path can only be given with an endpoint",
            ),
            (
                Request {
                    ordering_key: Some(String::new()),
                    ..url("http://127.0.0.1:9/")
                },
                "ordering_key: must be 1 to 512",
            ),
            (
                Request {
                    headers: vec![("Bad Name".into(), "x".into())],
                    ..url("http://127.0.0.1:9/")
                },
                "headers: invalid header name",
            ),
            (
                Request {
                    delay: Some("soon".into()),
                    ..url("http://127.0.0.1:9/")
                },
                "delay: ",
            ),
            (
                Request {
                    body: vec![b'x'; 101],
                    ..url("http://127.0.0.1:9/")
                },
                "max_body_size",
            ),
            (url("ftp://127.0.0.1/"), "url: invalid URL"),
        ] {
            let err = refused(r);
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }
}

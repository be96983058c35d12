//! The routes: each one the CLI's operation, with the CLI's JSON view.

use serde::Serialize;
use uuid::Uuid;

use super::auth::Scope;
use super::problem::Problem;
use super::stream::Peer;
use super::wire::{Request, Response};
use super::Context;
use crate::cli::FilterArgs;
use crate::error::Error;

pub(super) type Answer = Result<Response, Problem>;

mod act;
mod manage;
mod post;
mod read;

pub(super) fn json(status: u16, v: &impl Serialize) -> Response {
    Response {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: serde_json::to_vec(v).expect("a view serializes"),
    }
}

pub(super) fn not_allowed(methods: &[&str]) -> Problem {
    let allow = methods.join(", ");
    Problem::new(405, "method not allowed")
        .detail(format!("this resource answers {allow}"))
        .header("allow", allow)
}

/// Every route: its pattern and methods. The OpenAPI document (docs/openapi.json) lists exactly
/// these (a test keeps them in step).
pub(crate) const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/v1/messages", &["GET", "POST"]),
    ("/v1/messages/batch", &["POST"]),
    ("/v1/messages/cancel", &["POST"]),
    ("/v1/messages/{uuid}", &["GET"]),
    ("/v1/messages/{uuid}/cancel", &["POST"]),
    ("/v1/events", &["POST"]),
    ("/v1/dlq", &["GET"]),
    ("/v1/dlq/retry", &["POST"]),
    ("/v1/dlq/delete", &["POST"]),
    ("/v1/dlq/{uuid}", &["GET"]),
    ("/v1/replay", &["POST"]),
    ("/v1/endpoints", &["GET", "POST"]),
    ("/v1/endpoints/{name}", &["GET", "PATCH", "DELETE"]),
    ("/v1/endpoints/{name}/attempts", &["GET"]),
    ("/v1/endpoints/{name}/enable", &["POST"]),
    ("/v1/endpoints/{name}/pause", &["POST"]),
    ("/v1/endpoints/{name}/resume", &["POST"]),
    ("/v1/endpoints/{name}/rotate-secret", &["POST"]),
    ("/v1/origins", &["GET"]),
    ("/v1/status", &["GET"]),
    ("/v1/stats", &["GET"]),
    ("/v1/stats/endpoints", &["GET"]),
];

/// The filters of `list` and the bulk actions, as the API names them (query parameters, body
/// fields): the `FilterArgs` of the command line.
pub(super) const FILTERS: &[&str] = &[
    "state",
    "endpoint",
    "url_prefix",
    "key",
    "since",
    "until",
    "status",
    "error",
    "event",
    "tenant",
];

/// Sets the filter `name` (one of `FILTERS`) from `values`: `state` takes every value, the others
/// the one given. False for a name that is not a filter.
pub(super) fn set_filter(f: &mut FilterArgs, name: &str, values: Vec<String>) -> bool {
    let one = values.into_iter();
    let slot = match name {
        "state" => {
            f.states.extend(one);
            return true;
        }
        "endpoint" => &mut f.endpoint,
        "url_prefix" => &mut f.url_prefix,
        "key" => &mut f.key,
        "since" => &mut f.since,
        "until" => &mut f.until,
        "status" => &mut f.status,
        "error" => &mut f.error,
        "event" => &mut f.event,
        "tenant" => &mut f.tenant,
        _ => return false,
    };
    if let Some(v) = one.last() {
        *slot = Some(v);
    }
    true
}

/// A route's pattern, its methods and the path's parameter, if it has one.
pub(super) type Resolved<'p> = (&'static str, &'static [&'static str], Option<&'p str>);

/// The route `path` matches (a literal segment wins over a parameter) and its parameter.
pub(super) fn resolve(path: &str) -> Option<Resolved<'_>> {
    // Exactly one leading slash: `//v1/...` is no route (and so never a way around a scope).
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let mut with_param = None;
    for (pattern, methods) in ROUTES {
        let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut param = None;
        let matched = parts.iter().zip(&segments).all(|(p, s)| {
            if p.starts_with('{') {
                param = Some(*s);
                !s.is_empty()
            } else {
                p == s
            }
        });
        match (matched, param) {
            (true, None) => return Some((pattern, methods, None)),
            (true, Some(_)) if with_param.is_none() => {
                with_param = Some((*pattern, *methods, param))
            }
            _ => {}
        }
    }
    with_param
}

/// The scope a request needs (`None`: open, `/healthz` and `/readyz`): `enqueue` to post
/// messages and events, `admin` for every other change, `read` for the rest (an unknown path
/// needs `read`, so that it is not a map of the API).
pub(super) fn needed_scope(route: Option<&str>, method: &str) -> Option<Scope> {
    Some(match (route, method) {
        (Some("/healthz" | "/readyz"), _) => return None,
        (Some("/v1/messages" | "/v1/messages/batch" | "/v1/events"), "POST") => Scope::Enqueue,
        (Some(_) | None, "GET") | (None, _) => Scope::Read,
        (Some(_), _) => Scope::Admin,
    })
}

impl Context {
    /// Over TCP, a token with the scope the route needs: `enqueue` to post messages, `admin`
    /// for every other change, `read` for the rest (but `/healthz` and `/readyz`, open to load
    /// balancers; an unknown path needs `read`, so that it is not a map of the API). Decided on
    /// the resolved route, never on the raw path. Over the Unix socket the file permissions
    /// decided already.
    pub(super) fn authorize(
        &self,
        r: &Request,
        route: Option<&'static str>,
    ) -> Result<(), Problem> {
        if r.peer != Peer::Tcp {
            return Ok(());
        }
        match needed_scope(route, &r.method) {
            None => Ok(()),
            Some(needed) => self
                .config
                .tokens()
                .check(r.header("authorization"), needed),
        }
    }

    /// The route's pattern (a metrics label) and its answer.
    pub(super) fn route(
        &self,
        r: &Request,
        resolved: Option<Resolved<'_>>,
    ) -> (&'static str, Answer) {
        let Some((pattern, methods, param)) = resolved else {
            return (
                "other",
                Err(Problem::new(404, "not found")
                    .detail("no such resource (see the API reference)")),
            );
        };
        let m = r.method.as_str();
        if !methods.contains(&m) {
            return (pattern, Err(not_allowed(methods)));
        }
        if pattern.starts_with("/v1/") && self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return (
                pattern,
                Err(Problem::new(503, "stopping")
                    .detail("the daemon is stopping")
                    .retry_after(5)),
            );
        }
        // A path parameter may be percent-encoded (an endpoint name with a space).
        let decoded = param.map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy());
        let p = decoded.as_deref().unwrap_or("");
        let answer = match (pattern, m) {
            ("/healthz", _) => Ok(json(200, &Status { status: "ok" })),
            ("/readyz", _) => self.readyz(),
            ("/metrics", _) => self.metrics(),
            ("/v1/messages", "POST") => self.enqueue_one(r),
            ("/v1/messages", _) => self.list(r, false),
            ("/v1/messages/batch", _) => self.enqueue_batch(r),
            ("/v1/messages/cancel", _) => self.act(act::Kind::Cancel, &r.body),
            ("/v1/messages/{uuid}", _) => self.show(p, false),
            ("/v1/messages/{uuid}/cancel", _) => self.cancel_one(p),
            ("/v1/events", _) => self.enqueue_event(r),
            ("/v1/dlq", _) => self.list(r, true),
            ("/v1/dlq/retry", _) => self.act(act::Kind::Retry, &r.body),
            ("/v1/dlq/delete", _) => self.act(act::Kind::Delete, &r.body),
            ("/v1/dlq/{uuid}", _) => self.show(p, true),
            ("/v1/replay", _) => self.act(act::Kind::Replay, &r.body),
            ("/v1/endpoints", "POST") => self.create_endpoint(r),
            ("/v1/endpoints", _) => self.endpoints(),
            ("/v1/endpoints/{name}", "PATCH") => self.patch_endpoint(p, r),
            ("/v1/endpoints/{name}", "DELETE") => self.delete_endpoint(p, r),
            ("/v1/endpoints/{name}", _) => self.endpoint(p),
            ("/v1/endpoints/{name}/attempts", _) => self.recent_attempts(p, r),
            ("/v1/endpoints/{name}/enable", _) => self.enable(p),
            ("/v1/endpoints/{name}/pause", _) => self.pause_endpoint(p, true),
            ("/v1/endpoints/{name}/resume", _) => self.pause_endpoint(p, false),
            ("/v1/endpoints/{name}/rotate-secret", _) => self.rotate_secret(p, r),
            ("/v1/origins", _) => self.origins(r),
            ("/v1/status", _) => self.status(),
            ("/v1/stats", _) => self.stats(),
            ("/v1/stats/endpoints", _) => self.endpoint_stats(),
            _ => unreachable!("every route of ROUTES is dispatched"),
        };
        (pattern, answer)
    }
}

#[derive(Serialize)]
pub(super) struct Status {
    pub(super) status: &'static str,
}

pub(super) fn bad(detail: &str) -> Problem {
    Problem::new(400, "invalid request").detail(detail)
}

/// A command-line style refusal (`--url-prefix: ...`) as an API one (field `url_prefix`).
pub(super) fn usage(e: &Error) -> Problem {
    let text = e.to_string();
    match text.strip_prefix("--").and_then(|t| t.split_once(": ")) {
        Some((flag, reason)) => {
            let field = flag.replace('-', "_");
            bad(&format!("{field}: {reason}")).field(field)
        }
        None => Problem::from_error(e),
    }
}

/// A uuid in a path.
pub(super) fn uuid(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| {
        Problem::new(400, "invalid request")
            .field("uuid")
            .detail(format!("{:?} is not a uuid", crate::text::escape(id)))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn names(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// docs/openapi.json describes exactly the routes the server answers, the fields a message
    /// takes, the list's query parameters and the actions' bodies.
    #[test]
    fn openapi_document_is_in_step_with_the_server() {
        let doc: Value = serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let documented: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(p, ops)| {
                names(ops)
                    .into_iter()
                    .map(move |m| (p.clone(), m.to_uppercase()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(p, ms)| ms.iter().map(move |m| ((*p).to_owned(), (*m).to_owned())))
            .collect();
        assert_eq!(documented, served);
        for (pattern, methods) in ROUTES {
            let path = pattern
                .replace("{uuid}", "01890a5d-ac96-774b-bcce-b302099a8057")
                .replace("{name}", "billing");
            let (found, m, _) = resolve(&path).unwrap();
            assert_eq!((found, m), (*pattern, *methods), "{path}");
        }
        assert!(resolve("/v1/nowhere").is_none() && resolve("/v1/messages/").is_none());
        assert!(resolve("//v1/dlq/delete").is_none() && resolve("v1/status").is_none());
        let message = names(&doc["components"]["schemas"]["Message"]["properties"]);
        let fields: BTreeSet<String> = crate::ingest::FIELDS
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        assert_eq!(message, fields);
        let settings = names(&doc["components"]["schemas"]["EndpointSettings"]["properties"]);
        let defined: BTreeSet<String> = crate::endpoint::defined::FIELDS
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        assert_eq!(settings, defined);
        let event = names(&doc["components"]["schemas"]["Event"]["properties"]);
        let fields: BTreeSet<String> = crate::ops::events::FIELDS
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        assert_eq!(event, fields);
        let params: BTreeSet<String> = paths["/v1/messages"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let query: BTreeSet<String> = FILTERS
            .iter()
            .chain(read::PAGING)
            .map(|q| (*q).to_owned())
            .collect();
        assert_eq!(params, query);
        let body = |p: &str| {
            names(
                &paths[p]["post"]["requestBody"]["content"]["application/json"]["schema"]
                    ["properties"],
            )
        };
        let selection: BTreeSet<String> = FILTERS
            .iter()
            .chain(act::SELECTION)
            .map(|q| (*q).to_owned())
            .collect();
        assert_eq!(body("/v1/messages/cancel"), selection);
        assert_eq!(body("/v1/replay"), selection);
        let mut with_all = selection.clone();
        with_all.insert("all".into());
        assert_eq!(body("/v1/dlq/delete"), with_all);
        with_all.extend(act::EDITS.iter().map(|e| (*e).to_owned()));
        assert_eq!(body("/v1/dlq/retry"), with_all);
    }
}

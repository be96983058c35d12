//! The operator's actions: cancel, replay, dlq retry and delete, as the bulk commands run them
//! (`ops::bulk`), with the same selections and refusals. A body names the messages by `uuids`,
//! by `all` (dead letters), or by the filters of `list` (`state`, `endpoint`, `url_prefix`,
//! `key`, `since`, `until`, `status`, `error`); `dry_run: true` only counts, `count_only: true`
//! leaves the uuids out of the answer. No confirmation is
//! asked: the request is the confirmation. Answers the commands' `--json` report.

use base64::Engine;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{bad, json, set_filter, usage, Answer, FILTERS};
use crate::api::problem::Problem;
use crate::api::Context;
use crate::cli::FilterArgs;
use crate::filter::StateName;
use crate::ops::bulk::{self, Bulk};
use crate::store::{Action, Notice, RetryEdit};

/// Which action a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Cancel,
    Replay,
    Retry,
    Delete,
}

/// A parsed action body.
struct Body {
    uuids: Vec<Uuid>,
    all: bool,
    filter: FilterArgs,
    dry_run: bool,
    /// Answer the counts without the uuids (a million dead letters are 38 MB of uuids).
    count_only: bool,
    edit: RetryEdit,
}

/// The fields of an action's body besides the `FILTERS`.
pub(super) const SELECTION: &[&str] = &["uuids", "dry_run", "count_only"];
pub(super) const EDITS: &[&str] = &["url", "headers", "remove_headers", "body", "body_base64"];

fn string(o: &mut Map<String, Value>, name: &str) -> Result<Option<String>, Problem> {
    match o.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(&format!("{name}: expected a string, got {v}")).field(name)),
    }
}

fn strings(o: &mut Map<String, Value>, name: &str) -> Result<Vec<String>, Problem> {
    match o.remove(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                v => Err(bad(&format!("{name}[{i}]: expected a string, got {v}"))
                    .field(format!("{name}[{i}]"))),
            })
            .collect(),
        Some(v) => Err(bad(&format!("{name}: expected a list of strings, got {v}")).field(name)),
    }
}

fn flag(o: &mut Map<String, Value>, name: &str) -> Result<bool, Problem> {
    match o.remove(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(v) => Err(bad(&format!("{name}: expected true or false, got {v}")).field(name)),
    }
}

impl Body {
    fn parse(raw: &[u8], kind: Kind, max_body: usize) -> Result<Body, Problem> {
        let mut o = match raw.iter().all(u8::is_ascii_whitespace) {
            true => Map::new(),
            false => match serde_json::from_slice::<Value>(raw) {
                Ok(Value::Object(o)) => o,
                Ok(_) => return Err(bad("the body must be a JSON object")),
                Err(e) => return Err(bad(&format!("the body is not JSON: {e}"))),
            },
        };
        let known = |k: &str| {
            SELECTION.contains(&k)
                || FILTERS.contains(&k)
                || (matches!(kind, Kind::Retry | Kind::Delete) && k == "all")
                || (kind == Kind::Retry && EDITS.contains(&k))
        };
        if let Some(k) = o.keys().find(|k| !known(k)) {
            return Err(bad(&format!("{k}: unknown field")).field(k.clone()));
        }
        let uuids = strings(&mut o, "uuids")?
            .iter()
            .enumerate()
            .map(|(i, u)| {
                Uuid::parse_str(u.trim()).map_err(|_| {
                    bad(&format!(
                        "uuids[{i}]: {:?} is not a uuid",
                        crate::text::escape(u)
                    ))
                    .field(format!("uuids[{i}]"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut filter = FilterArgs::default();
        for name in FILTERS {
            // `state` may repeat (a list); every other filter is one string.
            let values = match *name {
                "state" => strings(&mut o, name)?,
                _ => string(&mut o, name)?.into_iter().collect(),
            };
            set_filter(&mut filter, name, values);
        }
        let all = flag(&mut o, "all")?;
        let dry_run = flag(&mut o, "dry_run")?;
        let count_only = flag(&mut o, "count_only")?;
        let url = string(&mut o, "url")?;
        if let Some(u) = &url {
            crate::check::url("url", u).map_err(|e| Problem::invalid(&e))?;
        }
        let set_headers = crate::ingest::headers(o.remove("headers"))
            .map_err(|e| Problem::invalid(&e))?
            .iter()
            .map(|(n, v)| crate::check::header("headers", n, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Problem::invalid(&e))?;
        let remove_headers = strings(&mut o, "remove_headers")?;
        let body = match (string(&mut o, "body")?, string(&mut o, "body_base64")?) {
            (Some(_), Some(_)) => {
                return Err(bad("body: give either body or body_base64, not both").field("body"))
            }
            (Some(b), None) => Some(b.into_bytes()),
            (None, Some(b)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|e| bad(&format!("body_base64: {e}")).field("body_base64"))?,
            ),
            (None, None) => None,
        };
        if body.as_ref().is_some_and(|b| b.len() > max_body) {
            return Err(Problem::new(413, "content too large")
                .field("body")
                .detail(format!(
                    "body: larger than max_body_size ({max_body} bytes)"
                )));
        }
        let selections =
            usize::from(!uuids.is_empty()) + usize::from(all) + usize::from(filter.is_given());
        if selections > 1 {
            return Err(
                bad("name messages by uuids, by all, or by filters: one of them").field("uuids"),
            );
        }
        Ok(Body {
            uuids,
            all,
            filter,
            dry_run,
            count_only,
            edit: RetryEdit {
                url,
                set_headers,
                remove_headers,
                body,
            },
        })
    }
}

impl Context {
    /// `POST /v1/messages/{uuid}/cancel`.
    pub(super) fn cancel_one(&self, id: &str) -> Answer {
        let uuid = super::uuid(id)?;
        let config = self.config();
        let b = Bulk {
            name: "cancel",
            action: Action::Cancel,
        };
        let wake = || {
            let _ = self.wake.send(Notice::Requeued);
        };
        let report = bulk::on_uuids(&config, &b, &[uuid], false, &wake)
            .map_err(|e| Problem::from_error(&e))?;
        Ok(json(200, &report))
    }

    /// `POST /v1/messages/cancel`, `/v1/replay`, `/v1/dlq/retry`, `/v1/dlq/delete`.
    pub(super) fn act(&self, kind: Kind, raw: &[u8]) -> Answer {
        let config = self.config();
        let body = Body::parse(raw, kind, config.max_body_size)?;
        let action = match kind {
            Kind::Cancel => Action::Cancel,
            Kind::Replay => Action::Replay,
            Kind::Retry => Action::Retry(&body.edit),
            Kind::Delete => Action::Delete,
        };
        let b = Bulk {
            name: match kind {
                Kind::Cancel => "cancel",
                Kind::Replay => "replay",
                Kind::Retry => "retry",
                Kind::Delete => "delete",
            },
            action,
        };
        let wake = || {
            let _ = self.wake.send(Notice::Requeued);
        };
        let fail = |e: crate::error::Error| Problem::from_error(&e);
        if !body.uuids.is_empty() {
            if kind == Kind::Replay {
                return Err(bad("replay selects messages by filters, not uuids").field("uuids"));
            }
            let mut report =
                bulk::on_uuids(&config, &b, &body.uuids, body.dry_run, &wake).map_err(fail)?;
            if body.count_only {
                report.uuids = Vec::new();
            }
            return Ok(json(200, &report));
        }
        if !body.all && !body.filter.is_given() {
            return Err(bad(match kind {
                Kind::Cancel => "name messages by uuids, or select them with filters",
                Kind::Replay => {
                    "replay needs at least one filter (e.g. endpoint, since, key, state)"
                }
                _ => "name dead messages by uuids, or give all: true, or select them with filters",
            }));
        }
        let f = crate::ops::filter(&body.filter, crate::time::now_ms()).map_err(|e| usage(&e))?;
        use StateName::{Cancelled, Dead, Delivered, InFlight, Pending, Scheduled, Waiting};
        let states = match kind {
            Kind::Cancel => f.states_within(
                &[Pending, Waiting, InFlight],
                &[Pending, Scheduled, Waiting, InFlight],
            ),
            Kind::Replay => f.states_within(&[Delivered, Dead], &[Delivered, Dead, Cancelled]),
            Kind::Retry | Kind::Delete => f.states_within(&[Dead], &[Dead]),
        }
        .map_err(|m| bad(&m).field("state"))?;
        let mut selected = bulk::select(&config, &b, &f, &states, body.dry_run).map_err(fail)?;
        let mut report = if body.dry_run {
            selected.count(&b, true)
        } else {
            selected.act(&b, &|_| {}, &wake)
        }
        .map_err(fail)?;
        if body.count_only {
            report.uuids = Vec::new();
        }
        Ok(json(200, &report))
    }
}

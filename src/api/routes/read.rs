//! Reading: messages, dead letters, endpoints, status, readiness and metrics, as the commands'
//! `--json` views; and enabling an endpoint.

use serde::Serialize;
use uuid::Uuid;

use super::{bad, json, set_filter, usage, uuid, Answer, FILTERS};
use crate::api::problem::Problem;
use crate::api::wire::{Request, Response};
use crate::api::Context;
use crate::cli::FilterArgs;
use crate::error::Error;
use crate::filter::StateName;
use crate::model::State;
use crate::store::{self, Access, Notice};
use crate::view::{
    EndpointDayJson, EndpointDetailJson, EndpointJson, LaneJson, MessageJson, Page, PolicyJson,
    RecentAttemptJson, StatsJson,
};

/// `GET /readyz`: ready, and the daemons of the queue.
#[derive(Serialize)]
struct Ready {
    status: &'static str,
    daemons: Vec<crate::view::DaemonEntryJson>,
}

/// A page of `list` when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// The query parameters of `GET /v1/messages` and `GET /v1/dlq` besides the `FILTERS`.
pub(super) const PAGING: &[&str] = &["limit", "cursor"];

impl Context {
    pub(super) fn readyz(&self) -> Answer {
        let stopping = self.stopping.load(std::sync::atomic::Ordering::SeqCst);
        let ready = self.ready.load(std::sync::atomic::Ordering::SeqCst);
        match (ready, stopping) {
            (true, false) => {
                // Ready means able to accept: the database answers. Its daemons are listed.
                let config = self.config();
                let daemons = self
                    .read(&config, |s| s.daemons())
                    .map_err(|e| Problem::from_error(&e))?;
                Ok(json(
                    200,
                    &Ready {
                        status: "ready",
                        daemons: daemons
                            .iter()
                            .map(crate::view::DaemonEntryJson::new)
                            .collect(),
                    },
                ))
            }
            (_, true) => Err(Problem::new(503, "stopping").detail("the daemon is stopping")),
            (false, _) => Err(Problem::new(503, "starting").detail("the daemon is starting")),
        }
    }

    pub(super) fn metrics(&self) -> Answer {
        let config = self.config();
        let now = crate::time::now_ms();
        let (counts, oldest) = self
            .read(&config, |s| Ok((s.counts(now)?, s.oldest_pending()?)))
            .map_err(|e| Problem::from_error(&e))?;
        let text = self
            .metrics
            .render(&self.published.get(), &counts, &oldest, now);
        Ok(Response {
            status: 200,
            content_type: crate::api::metrics::CONTENT_TYPE,
            headers: Vec::new(),
            body: text.into_bytes(),
        })
    }

    pub(super) fn show(&self, id: &str, dead_only: bool) -> Answer {
        let config = self.config();
        let uuid = uuid(id)?;
        let view = self
            .read(&config, |s| s.view(&uuid))
            .map_err(|e| Problem::from_error(&e))?;
        if dead_only && view.state != State::Dead {
            return Err(Problem::new(404, "not found").detail(format!(
                "message {uuid} is {}, not dead",
                view.state.as_str()
            )));
        }
        Ok(json(200, &MessageJson::new(&config, &view)))
    }

    pub(super) fn list(&self, r: &Request, dead_only: bool) -> Answer {
        let config = self.config();
        let now = crate::time::now_ms();
        let q = ListQuery::parse(&r.query)?;
        let f = crate::ops::filter(&q.filter, now).map_err(|e| usage(&e))?;
        let states = if dead_only {
            f.states_within(&[StateName::Dead], &[StateName::Dead])
        } else {
            f.states_within(&crate::ops::DEFAULT_STATES, &StateName::ALL)
        }
        .map_err(|m| bad(&m).field("state"))?;
        let (views, next) = self
            .read(&config, |s| {
                crate::ops::page(&config, s, &f, &states, q.cursor, q.limit, now)
            })
            .map_err(|e| Problem::from_error(&e))?;
        Ok(json(
            200,
            &Page {
                messages: views.iter().map(|v| MessageJson::new(&config, v)).collect(),
                next_cursor: next.map(|u| u.to_string()),
            },
        ))
    }

    pub(super) fn endpoints(&self) -> Answer {
        // The stored endpoints as they are now (the daemon's copy may be a moment behind).
        let base = self.config();
        let (config, rows) = self
            .read(&base, |s| {
                let config = crate::ops::defined::with_defined(&base, s)?;
                let rows = crate::ops::endpoint_rows(s, &config)?;
                Ok((config, rows))
            })
            .map_err(|e| Problem::from_error(&e))?;
        let all: Vec<EndpointJson> = rows
            .values()
            .map(|r| EndpointJson::new(r, config.endpoints.get(&r.name).map(AsRef::as_ref)))
            .collect();
        Ok(json(200, &all))
    }

    pub(super) fn endpoint(&self, name: &str) -> Answer {
        let config = self.config();
        let (row, lanes, cfg) = self
            .read(&config, |s| {
                let cfg = crate::ops::defined::current(s, &config, name)?;
                let rows = crate::ops::endpoint_rows(s, &config)?;
                let row = match (rows.get(name), &cfg) {
                    (Some(row), _) => row.clone(),
                    (None, Some(_)) => crate::store::EndpointRow {
                        name: name.into(),
                        ..crate::store::EndpointRow::default()
                    },
                    (None, None) => return Err(Error::NoSuchEndpoint { name: name.into() }),
                };
                let lanes = match s.find_endpoint(name)? {
                    Some(id) => s.lanes(id)?,
                    None => Vec::new(),
                };
                Ok((row, lanes, cfg))
            })
            .map_err(|e| Problem::from_error(&e))?;
        let cfg = cfg.as_ref();
        Ok(json(
            200,
            &EndpointDetailJson {
                endpoint: EndpointJson::new(&row, cfg.map(AsRef::as_ref)),
                policy: cfg.map(|e| PolicyJson::new(e, config.workers)),
                lanes: lanes.iter().map(LaneJson::new).collect(),
            },
        ))
    }

    pub(super) fn enable(&self, name: &str) -> Answer {
        let config = self.config();
        if !config.endpoints.contains_key(name) {
            return Err(Problem::new(404, "not found").detail(format!(
                "no endpoint named {:?} in the config",
                crate::text::escape(name)
            )));
        }
        let mut s =
            store::open_admin(&config.db, Access::Modify).map_err(|e| Problem::from_error(&e))?;
        s.ensure_endpoints(&[name.to_owned()])
            .and_then(|()| s.request_enable(name, crate::time::now_ms()))
            .map_err(|e| Problem::from_error(&e))?;
        let _ = self.wake.send(Notice::Endpoints);
        Ok(json(
            200,
            &Enabled {
                endpoint: name,
                enabled: true,
            },
        ))
    }

    /// `GET /v1/origins[?all=true]`: as `origins list [--all] --json`.
    pub(super) fn origins(&self, r: &crate::api::wire::Request) -> Answer {
        let all = match r.query.as_str() {
            "" | "all=false" => false,
            "all" | "all=true" => true,
            _ => return Err(super::bad("the only parameter is all=true").field("all")),
        };
        let config = self.config();
        let rows = self
            .read(&config, |s| crate::ops::origin_rows(s, all))
            .map_err(|e| Problem::from_error(&e))?;
        Ok(json(200, &rows))
    }

    pub(super) fn status(&self) -> Answer {
        let config = self.config();
        let now = crate::time::now_ms();
        let (counts, health, daemons) = self
            .read(&config, |s| {
                Ok((s.counts(now)?, s.endpoint_health()?, s.daemons()?))
            })
            .map_err(|e| Problem::from_error(&e))?;
        Ok(json(
            200,
            &crate::ops::status(
                &config,
                true,
                Some(std::process::id()),
                (true, true),
                &counts,
                &health,
                &daemons,
            ),
        ))
    }
}

impl Context {
    /// `GET /v1/stats`: the last hour (since the daemon started).
    pub(super) fn stats(&self) -> Answer {
        let config = self.config();
        let now = crate::time::now_ms();
        let overall = self
            .read(&config, |s| s.oldest_pending_overall())
            .map_err(|e| Problem::from_error(&e))?;
        let history = &self.history;
        Ok(json(
            200,
            &StatsJson::new(history.started(), overall, &history.series(now)),
        ))
    }

    /// `GET /v1/stats/endpoints`: each endpoint's last day (since the daemon started).
    pub(super) fn endpoint_stats(&self) -> Answer {
        let days = self.history.endpoints(crate::time::now_ms());
        let all: Vec<EndpointDayJson> = days.iter().map(EndpointDayJson::new).collect();
        Ok(json(200, &all))
    }

    /// `GET /v1/endpoints/NAME/attempts[?limit=N]`: its latest attempts, newest first.
    pub(super) fn recent_attempts(&self, name: &str, r: &Request) -> Answer {
        let mut limit = RECENT_ATTEMPTS;
        for pair in r.query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name != "limit" {
                return Err(bad(&format!(
                    "unknown parameter {:?} (the only one is limit)",
                    crate::text::escape(name)
                ))
                .field(name.to_owned()));
            }
            limit = match value.parse::<usize>() {
                Ok(n @ 1..=MAX_RECENT_ATTEMPTS) => n,
                _ => {
                    return Err(bad(&format!(
                        "limit: {:?} is not a number in 1..={MAX_RECENT_ATTEMPTS}",
                        crate::text::escape(value)
                    ))
                    .field("limit"))
                }
            };
        }
        let config = self.config();
        let rows = self
            .read(&config, |s| {
                // Configured but never used: no row yet, no attempts.
                let known = |s: &dyn crate::store::Admin| -> crate::error::Result<bool> {
                    Ok(config.endpoints.contains_key(name)
                        || crate::ops::defined::current(s, &config, name)?.is_some())
                };
                match s.find_endpoint(name)? {
                    Some(id) => s.recent_attempts(id, limit),
                    None if known(s)? => Ok(Vec::new()),
                    None => Err(Error::NoSuchEndpoint { name: name.into() }),
                }
            })
            .map_err(|e| Problem::from_error(&e))?;
        let all: Vec<RecentAttemptJson> = rows
            .iter()
            .map(|(u, state, a)| RecentAttemptJson::new(u, *state, a))
            .collect();
        Ok(json(200, &all))
    }
}

/// Attempts `GET /v1/endpoints/NAME/attempts` answers without `limit`, and at most.
const RECENT_ATTEMPTS: usize = 20;
const MAX_RECENT_ATTEMPTS: usize = 200;

#[derive(Serialize)]
struct Enabled<'a> {
    endpoint: &'a str,
    enabled: bool,
}

/// The query of `GET /v1/messages` and `GET /v1/dlq`: the CLI's filters, `limit` and `cursor`.
struct ListQuery {
    filter: FilterArgs,
    limit: usize,
    cursor: Option<Uuid>,
}

impl ListQuery {
    fn parse(query: &str) -> Result<ListQuery, Problem> {
        let mut q = ListQuery {
            filter: FilterArgs::default(),
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| bad(&format!("{name}: not UTF-8")).field(name.to_owned()))
            };
            let (name, value) = (decode(name)?, decode(value)?);
            if FILTERS.contains(&name.as_str()) {
                set_filter(&mut q.filter, &name, vec![value]);
                continue;
            }
            match name.as_str() {
                "limit" => {
                    q.limit = match value.trim().parse::<usize>() {
                        Ok(n @ 1..=crate::ops::MAX_LIMIT) => n,
                        _ => {
                            return Err(bad(&format!(
                                "limit: {value:?} is not a number in 1..={}",
                                crate::ops::MAX_LIMIT
                            ))
                            .field("limit"))
                        }
                    }
                }
                "cursor" => {
                    q.cursor = Some(Uuid::parse_str(value.trim()).map_err(|_| {
                        bad("cursor: not a cursor (the next_cursor of a page)").field("cursor")
                    })?)
                }
                other => {
                    return Err(bad(&format!(
                        "unknown parameter {:?} (expected {})",
                        crate::text::escape(other),
                        FILTERS
                            .iter()
                            .chain(PAGING)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .field(other.to_owned()))
                }
            }
        }
        Ok(q)
    }
}

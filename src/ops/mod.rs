//! Operations the CLI and the API share, so that both answer the same: the filters of `list`
//! and the bulk commands, a page of `list`, the status view, the bulk actions (`bulk`).

pub(crate) mod bulk;
pub(crate) mod defined;
pub(crate) mod events;

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::cli::FilterArgs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::filter::{self, Filter, StateName, StatusRange};
use crate::model::Circuit;
use crate::store::{Admin, Counts, EndpointRow, MessageView};
use crate::view::{DaemonJson, DbJson, EndpointCountsJson, QueueJson, StatusJson};

/// The states `list` shows when none is asked for: everything not delivered.
pub(crate) const DEFAULT_STATES: [StateName; 5] = [
    StateName::Pending,
    StateName::InFlight,
    StateName::Waiting,
    StateName::Dead,
    StateName::Cancelled,
];

/// The largest page of `list`.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// The filters of the command line, validated (a bad value is a usage error, exit 64). An
/// endpoint must be known to the config or the database (`check_endpoint`).
///
/// # Errors
/// `Usage` naming the option.
pub(crate) fn filter(args: &FilterArgs, now: i64) -> Result<Filter> {
    let usage = |option: &str, m: String| Error::Usage {
        message: format!("{option}: {m}"),
    };
    let states = args
        .states
        .iter()
        .map(|s| StateName::parse(s).map_err(|m| usage("--state", m)))
        .collect::<Result<Vec<_>>>()?;
    let time = |option: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| filter::parse_time(t, now).map_err(|m| usage(option, m)))
            .transpose()
    };
    let non_empty = |option: &str, v: &Option<String>| match v {
        Some(s) if s.is_empty() => Err(usage(option, "must not be empty".into())),
        v => Ok(v.clone()),
    };
    let f = Filter {
        states,
        endpoint: non_empty("--endpoint", &args.endpoint)?,
        url_prefix: non_empty("--url-prefix", &args.url_prefix)?,
        key: non_empty("--key", &args.key)?,
        since: time("--since", &args.since)?,
        until: time("--until", &args.until)?,
        status: args
            .status
            .as_deref()
            .map(|s| StatusRange::parse(s).map_err(|m| usage("--status", m)))
            .transpose()?,
        error: non_empty("--error", &args.error)?,
        event: non_empty("--event", &args.event)?,
        tenant: non_empty("--tenant", &args.tenant)?,
    };
    if let (Some(since), Some(until)) = (f.since, f.until) {
        if since >= until {
            return Err(usage("--since", "must be earlier than --until".to_owned()));
        }
    }
    if f.endpoint.is_some() && f.url_prefix.is_some() {
        return Err(usage(
            "--url-prefix",
            "selects plain-URL messages; it cannot be combined with --endpoint".into(),
        ));
    }
    Ok(f)
}

/// Refuses a `--endpoint` that neither the config nor the database knows (exit 66).
///
/// # Errors
/// `NoSuchEndpoint`.
pub(crate) fn check_endpoint(config: &Config, store: &dyn Admin, f: &Filter) -> Result<()> {
    if let Some(name) = &f.endpoint {
        if !config.endpoints.contains_key(name) && store.find_endpoint(name)?.is_none() {
            return Err(Error::NoSuchEndpoint { name: name.clone() });
        }
    }
    Ok(())
}

/// `f` over `states` as the store will read it: its endpoint checked (`check_endpoint`) and a
/// `--tenant` resolved to the tenant's endpoints, of the config file and the database.
///
/// # Errors
/// `NoSuchEndpoint`, the store's.
pub(crate) fn query<'f>(
    config: &Config,
    store: &dyn Admin,
    f: &'f Filter,
    states: &[StateName],
    now: i64,
) -> Result<crate::store::Query<'f>> {
    check_endpoint(config, store, f)?;
    let mut q = store.query(f, states, now)?;
    if let Some(tenant) = &f.tenant {
        let all = defined::with_defined(config, store)?;
        let mut names = String::from("\u{1f}");
        for e in all.endpoints.values() {
            if e.tenant.as_deref() == Some(tenant.as_str()) {
                names.push_str(&e.name);
                names.push('\u{1f}');
            }
        }
        q.tenant_endpoints = Some(names);
    }
    Ok(q)
}

/// Up to `limit` messages of `f` over `states`, newest first, older than `cursor`, and the cursor
/// of the next page, from one consistent snapshot.
///
/// # Errors
/// `NoSuchEndpoint`, store errors.
pub(crate) fn page(
    config: &Config,
    store: &dyn Admin,
    f: &Filter,
    states: &[StateName],
    cursor: Option<Uuid>,
    limit: usize,
    now: i64,
) -> Result<(Vec<MessageView>, Option<Uuid>)> {
    store.snapshot()?;
    let result = (|| {
        let q = query(config, store, f, states, now)?;
        let mut found = store.find(&q, cursor, limit + 1)?;
        let next_cursor = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|f| f.uuid)
        } else {
            None
        };
        let mut views = Vec::with_capacity(found.len());
        for f in &found {
            if let Some(v) = store.summary(f.seq)? {
                views.push(v);
            }
        }
        Ok((views, next_cursor))
    })();
    store.end_snapshot()?;
    result
}

/// `status --json`: whether a daemon runs, where the queue is, messages per state, endpoints by
/// health (configured ones only).
pub(crate) fn status(
    config: &Config,
    running: bool,
    pid: Option<u32>,
    presence: (bool, bool),
    counts: &Counts,
    health: &[(String, crate::model::Health)],
    daemons: &[crate::store::DaemonInfo],
) -> StatusJson {
    let mut by_state = [0u64; 3];
    for name in config.endpoints.keys() {
        let state = health
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Circuit::Closed, |(_, h)| h.state);
        by_state[match state {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::Disabled => 2,
        }] += 1;
    }
    StatusJson {
        daemon: DaemonJson { running, pid },
        daemons: daemons
            .iter()
            .map(crate::view::DaemonEntryJson::new)
            .collect(),
        db: DbJson {
            path: config.db.to_string(),
            exists: presence.0,
            initialised: presence.1,
        },
        queue: QueueJson {
            pending: counts.pending,
            scheduled: counts.scheduled,
            waiting: counts.waiting,
            in_flight: counts.in_flight,
            delivered: counts.delivered,
            dead: counts.dead,
            cancelled: counts.cancelled,
        },
        endpoints: EndpointCountsJson {
            healthy: by_state[0],
            open: by_state[1],
            disabled: by_state[2],
        },
    }
}

/// Every endpoint of the config and of the database, by name. The database must exist: without
/// it nothing is known about any endpoint's health.
pub(crate) fn endpoint_rows(
    store: &dyn Admin,
    config: &Config,
) -> Result<BTreeMap<String, EndpointRow>> {
    let mut rows: BTreeMap<String, EndpointRow> = store
        .endpoint_rows()?
        .into_iter()
        .filter(|r| !crate::message::is_origin(&r.name))
        .map(|r| (r.name.clone(), r))
        .collect();
    for name in config.endpoints.keys() {
        rows.entry(name.clone()).or_insert_with(|| EndpointRow {
            name: name.clone(),
            ..EndpointRow::default()
        });
    }
    Ok(rows)
}

/// The origins of plain URLs (`https://host:443`) the store knows, with their health and
/// messages: those not healthy first (open, then failing), then by name; with `all` false only
/// those (the healthy ones without messages are left out).
///
/// # Errors
/// The store's.
pub(crate) fn origin_rows(store: &dyn Admin, all: bool) -> Result<Vec<crate::view::OriginJson>> {
    let mut rows: Vec<EndpointRow> = store
        .endpoint_rows()?
        .into_iter()
        .filter(|r| crate::message::is_origin(&r.name))
        .filter(|r| {
            all || r.health.state != Circuit::Closed
                || r.health.failures > 0
                || r.pending + r.in_flight + r.waiting > 0
        })
        .collect();
    rows.sort_by_key(|r| {
        (
            r.health.state != Circuit::Open,
            r.health.failures == 0,
            r.name.clone(),
        )
    });
    Ok(rows.iter().map(crate::view::OriginJson::new).collect())
}

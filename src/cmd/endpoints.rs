//! `webhookd endpoints list|show|enable`: named endpoints as the config defines them and as the
//! daemon last saved their health (state changes at once, counters about every second).

use super::out;
use crate::config::Config;
use crate::endpoint::OnDead;
use crate::error::{exit, Error, Result};
use crate::model::Circuit;
use crate::model::State;
use crate::store::{self, Access};
use crate::view::{EndpointDetailJson, EndpointJson, LaneJson, PolicyJson};

use crate::cli::EndpointsCommand;
use crate::ops::endpoint_rows as rows;

/// `endpoints SUBCOMMAND`.
///
/// # Errors
/// What the subcommand fails with.
pub(crate) fn run(config: &Config, command: &EndpointsCommand) -> Result<u8> {
    if let Some(result) = super::defined::run(config, command) {
        return result;
    }
    match command {
        EndpointsCommand::List { json, .. } => list(config, *json),
        EndpointsCommand::Show { name, json, .. } => show(config, name, *json),
        EndpointsCommand::Enable { name, .. } => enable(config, name),
        _ => unreachable!("handled by cmd::defined"),
    }
}

/// `endpoints list`.
///
/// # Errors
/// Store errors.
fn list(config: &Config, json: bool) -> Result<u8> {
    let store = store::open_admin(&config.db, Access::Read)?;
    let config = &crate::ops::defined::with_defined(config, store.as_ref())?;
    let rows = rows(store.as_ref(), config)?;
    if json {
        let all: Vec<EndpointJson> = rows
            .values()
            .map(|r| EndpointJson::new(r, config.endpoints.get(&r.name).map(AsRef::as_ref)))
            .collect();
        out(serde_json::to_string(&all).expect("a view serializes"))?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "{:<20} {:<14} {:>8} {:>9} {:>9} {:>7}  {:<24}  LAST ERROR",
        "NAME", "STATE", "FAILURES", "PENDING", "IN FLIGHT", "DEAD", "LAST SUCCESS"
    );
    for r in rows.values() {
        let state = if config.endpoints.contains_key(&r.name) {
            r.health.state.as_str()
        } else {
            "not configured"
        };
        text.push_str(&format!(
            "\n{:<20} {:<14} {:>8} {:>9} {:>9} {:>7}  {:<24}  {}",
            r.name,
            state,
            r.health.failures,
            r.pending + r.waiting,
            r.in_flight,
            r.dead,
            r.health
                .last_success_at
                .map_or_else(|| "-".to_owned(), super::time),
            crate::text::escape(r.health.last_error.as_deref().unwrap_or("-"))
        ));
    }
    out(text)?;
    Ok(exit::OK)
}

/// `endpoints show NAME`.
///
/// # Errors
/// `NoSuchEndpoint`, store errors.
fn show(config: &Config, name: &str, json: bool) -> Result<u8> {
    let store = store::open_admin(&config.db, Access::Read)?;
    let config = &crate::ops::defined::with_defined(config, store.as_ref())?;
    let rows = rows(store.as_ref(), config)?;
    let Some(row) = rows.get(name) else {
        return Err(Error::NoSuchEndpoint { name: name.into() });
    };
    let cfg = config.endpoints.get(name);
    let lanes = match store.find_endpoint(name)? {
        Some(id) => store.lanes(id)?,
        None => Vec::new(),
    };
    if json {
        let v = EndpointDetailJson {
            endpoint: EndpointJson::new(row, cfg.map(AsRef::as_ref)),
            policy: cfg.map(|e| PolicyJson::new(e, config.workers)),
            lanes: lanes.iter().map(LaneJson::new).collect(),
        };
        out(serde_json::to_string(&v).expect("a view serializes"))?;
        return Ok(exit::OK);
    }
    let h = &row.health;
    let mut text = format!("endpoint:     {name}\n");
    let state = match (cfg, h.state) {
        (None, _) => "not configured (its messages are held)".to_owned(),
        (Some(_), s) => match &h.reason {
            Some(r) => format!("{} ({})", s.as_str(), crate::text::escape(r)),
            None => s.as_str().to_owned(),
        },
    };
    text.push_str(&format!("state:        {state}\n"));
    if let Some(at) = h.changed_at {
        text.push_str(&format!("since:        {}\n", super::time(at)));
    }
    if let Some(e) = cfg {
        text.push_str(&format!(
            "source:       {}\n",
            if e.managed {
                "database (managed at runtime)"
            } else {
                "config file"
            }
        ));
        if e.paused {
            text.push_str("paused:       yes: nothing is sent until `webhookd endpoints resume`\n");
        }
        if let Some(t) = &e.tenant {
            text.push_str(&format!("tenant:       {}\n", crate::text::escape(t)));
        }
        if !e.events.is_empty() {
            text.push_str(&format!("events:       {}\n", e.events.join(", ")));
        }
        text.push_str(&format!("url:          {}\n", e.url));
        if !e.headers.is_empty() {
            let names: Vec<&str> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
            text.push_str(&format!(
                "headers:      {} (values not shown)\n",
                names.join(", ")
            ));
        }
        for note in &e.unreadable {
            text.push_str(&format!(
                "note:         {note} (readable by the daemon only?)\n"
            ));
        }
        text.push_str(&format!(
            "signing:      {}\n",
            match e.keys.len() {
                0 => "none".to_owned(),
                1 => "Standard Webhooks, 1 secret".to_owned(),
                n => format!("Standard Webhooks, {n} secrets (rotation)"),
            }
        ));
        text.push_str(&format!(
            "policy:       concurrency {}, rate {}, timeout {}, max_attempts {}, {}\n",
            e.concurrency_with(config.workers),
            e.rate.as_ref().map_or("unlimited", |r| r.text.as_str()),
            e.timeout.map_or_else(
                || format!(
                    "{} (http.timeout)",
                    crate::text::duration(config.http.timeout)
                ),
                crate::text::duration
            ),
            e.max_attempts.map_or_else(
                || format!("{} (retry)", config.retry.max_attempts),
                |n| n.to_string()
            ),
            if e.ordered {
                format!(
                    "ordered (dead messages {} the lane)",
                    if e.on_dead == OnDead::Block {
                        "block"
                    } else {
                        "are skipped in"
                    }
                )
            } else {
                "unordered".to_owned()
            }
        ));
        let breaker = match h.state {
            Circuit::Open => format!(
                "open after {} consecutive failures (opens at {}): one probe at a time, the first after {}, doubling up to 1h",
                h.failures,
                e.breaker_failures,
                crate::text::duration(e.breaker_cooldown)
            ),
            Circuit::Disabled => {
                "disabled: nothing is sent until `webhookd endpoints enable`".to_owned()
            }
            _ => format!(
                "closed: {} of {} consecutive failures open it (first probe after {})",
                h.failures.min(i64::from(e.breaker_failures)),
                e.breaker_failures,
                crate::text::duration(e.breaker_cooldown)
            ),
        };
        text.push_str(&format!(
            "breaker:      {breaker}; disabled after failing for {} without a success\n",
            crate::text::duration(e.disable_after)
        ));
    }
    text.push_str(&format!(
        "failures:     {} consecutive{}\n",
        h.failures,
        h.failing_since.map_or(String::new(), |t| format!(
            ", failing since {}",
            super::time(t)
        ))
    ));
    text.push_str(&format!(
        "last success: {}\n",
        h.last_success_at
            .map_or_else(|| "-".to_owned(), super::time)
    ));
    text.push_str(&format!(
        "last error:   {}\n",
        match (&h.last_error, h.last_error_at) {
            (Some(e), Some(at)) => format!("{} ({})", crate::text::escape(e), super::time(at)),
            (Some(e), None) => crate::text::escape(e).into_owned(),
            _ => "-".to_owned(),
        }
    ));
    text.push_str(&format!(
        "queue:        {} pending, {} waiting in lanes, {} in flight, {} dead",
        row.pending, row.waiting, row.in_flight, row.dead
    ));
    for l in &lanes {
        text.push_str(&format!(
            "\nlane {:?}: {} messages, head {} {}",
            l.key,
            l.messages,
            l.head,
            if l.head_state == State::Dead {
                "is dead: BLOCKED (dlq retry or delete it)".to_owned()
            } else {
                l.head_state.as_str().to_owned()
            }
        ));
    }
    out(text)?;
    Ok(exit::OK)
}

/// `endpoints enable NAME`.
///
/// # Errors
/// `NoSuchEndpoint`, store errors.
fn enable(config: &Config, name: &str) -> Result<u8> {
    let mut store = store::open_admin(&config.db, Access::Modify)?;
    let config = &crate::ops::defined::with_defined(config, store.as_ref())?;
    let rows = rows(store.as_ref(), config)?;
    let Some(row) = rows.get(name) else {
        return Err(Error::NoSuchEndpoint { name: name.into() });
    };
    if !config.endpoints.contains_key(name) {
        return Err(Error::input(format!(
            "endpoint {name} is not in the config ({}); add it back to deliver its messages",
            config
                .source
                .as_ref()
                .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string())
        )));
    }
    let was = row.health.state.as_str();
    store.ensure_endpoints(&[name.to_owned()])?;
    store.request_enable(name, crate::time::now_ms())?;
    drop(store);
    store::coordination(&config.db).notify(store::Notice::Endpoints);
    out(format_args!("endpoint {name} enabled (was {was})"))?;
    Ok(exit::OK)
}

/// `origins list`.
///
/// # Errors
/// Store errors.
pub(crate) fn origins(config: &Config, all: bool, json: bool) -> Result<u8> {
    let store = store::open_admin(&config.db, Access::Read)?;
    let rows = crate::ops::origin_rows(store.as_ref(), all)?;
    if json {
        out(serde_json::to_string(&rows).expect("a view serializes"))?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "{:<40} {:<10} {:>8} {:>9} {:>9} {:>7}  LAST ERROR",
        "ORIGIN", "STATE", "FAILURES", "PENDING", "IN FLIGHT", "DEAD"
    );
    for r in &rows {
        text.push_str(&format!(
            "\n{:<40} {:<10} {:>8} {:>9} {:>9} {:>7}  {}",
            crate::text::escape(&r.origin),
            r.state,
            r.consecutive_failures,
            r.pending,
            r.in_flight,
            r.dead,
            crate::text::escape(r.last_error.as_deref().unwrap_or("-"))
        ));
    }
    out(text)?;
    Ok(exit::OK)
}

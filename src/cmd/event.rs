//! `webhookd enqueue --event TYPE`: an event, fanned out to every endpoint that subscribes to it
//! (`ops::events`), stored with its deliveries in one transaction; and `show EVENT_ID`.

use super::{out, read_body};
use crate::cli::EnqueueArgs;
use crate::config::Config;
use crate::error::{exit, Result};
use crate::ops::events::{self, EventRequest};
use crate::store::{self, Access, EventView};

/// `enqueue --event TYPE [--tenant T] [-d BODY] [--key K]`.
///
/// # Errors
/// `InvalidField` naming the option, the store's.
pub(crate) fn enqueue(args: &EnqueueArgs, config: &Config, kind: &str) -> Result<u8> {
    let request = EventRequest {
        kind: kind.to_owned(),
        tenant: args.tenant.clone(),
        body: match &args.data {
            Some(d) => read_body(d, config.max_body_size)?,
            None => Vec::new(),
        },
        key: args.key.clone(),
    };
    let mut store = store::open_admin(&config.db, Access::Write)?;
    let done = events::fan_out(store.as_mut(), config, request).map_err(|e| match e {
        crate::error::Error::InvalidField { field, reason } => crate::error::Error::InvalidField {
            field: match field.as_str() {
                "type" => "--event".to_owned(),
                "body" => "-d".to_owned(),
                f => format!("--{f}"),
            },
            reason,
        },
        e => e,
    })?;
    drop(store);
    if done.created && done.deliveries > 0 {
        store::coordination(&config.db).notify(store::Notice::Messages);
    }
    if !done.created {
        eprintln!(
            "webhookd: key {:?} is already used by event {} ({}); nothing was stored",
            crate::text::escape(args.key.as_deref().unwrap_or_default()),
            done.id,
            crate::text::count(done.deliveries, "delivery")
        );
    }
    if args.json {
        out(serde_json::to_string(&done.view()).expect("a view serializes"))?;
        return Ok(exit::OK);
    }
    let mut text = done.id.to_string();
    for (endpoint, e) in &done.messages {
        text.push_str(&format!("\n  {} {endpoint}", e.uuid));
    }
    out(text)?;
    Ok(exit::OK)
}

/// `show EVENT_ID` (an id no message has).
///
/// # Errors
/// Output errors.
pub(crate) fn show(v: &EventView, json: bool) -> Result<u8> {
    if json {
        out(serde_json::to_string(&events::event_view(v)).expect("a view serializes"))?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "event:      {}\ntype:       {}\ntenant:     {}\nkey:        {}\ncreated:    {}\ndeliveries: {}",
        v.id,
        crate::text::escape(&v.kind),
        crate::text::escape(v.tenant.as_deref().unwrap_or("-")),
        crate::text::escape(v.key.as_deref().unwrap_or("-")),
        super::time(v.created_at),
        v.deliveries.len()
    );
    for (uuid, endpoint, state) in &v.deliveries {
        text.push_str(&format!(
            "\n  {uuid} {:<20} {}",
            crate::text::escape(endpoint),
            state.as_str()
        ));
    }
    out(text)?;
    Ok(exit::OK)
}

//! `webhookd dlq list|retry|delete` (`dlq show` shares `show`).

use uuid::Uuid;

use super::{opt_time, out, read_body};
use crate::cli::Selection;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::message::parse_header;
use crate::store::{self, parse_uuid, Access, RetryEdit, Store};

/// Runs `dlq list`: a table, or with `json` a JSON array of objects.
///
/// # Errors
/// Store errors.
pub(crate) fn list(config: &Config, json: bool) -> Result<u8> {
    let store = Store::open(&config.db, Access::Read)?;
    let mut first = true;
    if json {
        out("[")?;
    } else {
        out(format_args!(
            "{:<36}  {:>8}  {:<24}  {:<40}  LAST ERROR",
            "UUID", "ATTEMPTS", "DEAD SINCE", "URL"
        ))?;
    }
    store.for_each_dead(|mut d| {
        d.url = super::target_url(config, d.endpoint.as_deref(), &d.url);
        if json {
            let item = serde_json::json!({
                "uuid": d.uuid.to_string(),
                "url": d.url,
                "endpoint": d.endpoint,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "dead_at": opt_time(d.dead_at),
            });
            out(format_args!("{}{item}", if first { "" } else { "," }))?;
        } else {
            let since = d.dead_at.map_or_else(|| "-".into(), super::time);
            out(format_args!(
                "{:<36}  {:>8}  {:<24}  {:<40}  {}",
                d.uuid,
                d.attempts,
                since,
                d.url,
                d.last_error.as_deref().unwrap_or("-")
            ))?;
        }
        first = false;
        Ok(())
    })?;
    if json {
        out("]")?;
    }
    Ok(exit::OK)
}

/// Runs `dlq retry`, applying the edits to every selected message.
///
/// # Errors
/// `InvalidInput` for a bad edit, `NoSuchMessage`/`NotDead` (nothing changes), store errors.
pub(crate) fn retry(
    config: &Config,
    select: &Selection,
    url: Option<String>,
    headers: &[String],
    remove_headers: &[String],
    data: Option<&str>,
) -> Result<u8> {
    if let Some(u) = &url {
        crate::deliver::http::check_url(u).map_err(Error::input)?;
    }
    let edit = RetryEdit {
        url,
        set_headers: headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_>>()?,
        remove_headers: remove_headers.to_vec(),
        body: data
            .map(|d| read_body(d, config.max_body_size))
            .transpose()?,
    };
    let uuids = selection(select)?;
    let mut store = Store::open(&config.db, Access::Write)?;
    let done = store.retry_dead(uuids.as_deref(), &edit, store::now_ms())?;
    drop(store);
    crate::daemon::wake(&config.db);
    report("retried", &done)
}

/// Runs `dlq delete`.
///
/// # Errors
/// `NoSuchMessage`/`NotDead` (nothing changes), store errors.
pub(crate) fn delete(config: &Config, select: &Selection) -> Result<u8> {
    let uuids = selection(select)?;
    let mut store = Store::open(&config.db, Access::Write)?;
    let done = store.delete_dead(uuids.as_deref())?;
    report("deleted", &done)
}

fn selection(select: &Selection) -> Result<Option<Vec<Uuid>>> {
    if select.all {
        return Ok(None);
    }
    if select.uuids.is_empty() {
        return Err(Error::Usage {
            message: "name dead messages by uuid, or use --all".into(),
        });
    }
    select
        .uuids
        .iter()
        .map(|u| parse_uuid(u))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn report(verb: &str, uuids: &[Uuid]) -> Result<u8> {
    for u in uuids {
        out(u)?;
    }
    log::info!("{verb} {} dead messages", uuids.len());
    Ok(exit::OK)
}

//! `webhookd dlq list`: the dead messages, newest first (the uuid order), all of them or those the
//! filters select. (`dlq show` shares `show`; retry and delete are in `bulk`.)

use super::out;
use crate::cli::FilterArgs;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::filter::StateName;
use crate::store::{self, Access};
use crate::text::escape;
use crate::view::DeadJson;

/// Messages read per query.
const PAGE: usize = 1000;

/// Runs `dlq list`: a table, or with `json` a JSON array of objects.
///
/// # Errors
/// `Usage` for bad filters, `NoSuchEndpoint`, store errors.
pub(crate) fn list(config: &Config, args: &FilterArgs, json: bool) -> Result<u8> {
    let now = crate::time::now_ms();
    let f = super::filter(args, now)?;
    let states = f
        .states_within(&[StateName::Dead], &[StateName::Dead])
        .map_err(|message| Error::Usage { message })?;
    let store = store::open_admin(&config.db, Access::Read)?;
    let q = crate::ops::query(config, store.as_ref(), &f, &states, now)?;
    if json {
        out("[")?;
    } else {
        out(format_args!(
            "{:<36}  {:>8}  {:<24}  {:<40}  LAST ERROR",
            "UUID", "ATTEMPTS", "DEAD SINCE", "URL"
        ))?;
    }
    // Streamed, one item per line: each is printed when the next one (or the end) tells whether
    // it needs a comma.
    let mut held: Option<String> = None;
    let mut cursor = None;
    loop {
        let page = store.find(&q, cursor, PAGE)?;
        for found in &page {
            let Some(v) = store.summary(found.seq)? else {
                continue;
            };
            let url = super::target_url(config, v.endpoint.as_deref(), &v.url);
            if json {
                let item = DeadJson {
                    uuid: v.uuid.to_string(),
                    url,
                    endpoint: v.endpoint.clone(),
                    attempts: v.attempts_total,
                    last_status: v.last_status,
                    last_error: v.last_error.clone(),
                    dead_at: v.dead_at.map(super::time),
                };
                let item = serde_json::to_string(&item).expect("a view serializes");
                if let Some(prev) = held.replace(item) {
                    out(format_args!("  {prev},"))?;
                }
            } else {
                out(format_args!(
                    "{:<36}  {:>8}  {:<24}  {:<40}  {}",
                    v.uuid,
                    v.attempts_total,
                    v.dead_at.map_or_else(|| "-".into(), super::time),
                    escape(&url),
                    escape(v.last_error.as_deref().unwrap_or("-"))
                ))?;
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => cursor = Some(last.uuid),
            _ => break,
        }
    }
    if json {
        if let Some(last) = held {
            out(format_args!("  {last}"))?;
        }
        out("]")?;
    }
    Ok(exit::OK)
}

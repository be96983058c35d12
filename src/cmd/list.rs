//! `webhookd list`: messages in any state, newest first, a page at a time (keyset: the cursor is
//! the last uuid shown).

use uuid::Uuid;

use super::out;
use crate::cli::ListArgs;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::filter::StateName;
use crate::ops::{DEFAULT_STATES, MAX_LIMIT};
use crate::store::{self, Access, MessageView};
use crate::text::escape;
use crate::view::{MessageJson, Page};

/// Runs `list`.
///
/// # Errors
/// `Usage` for bad options, `NoSuchEndpoint`, store errors.
pub(crate) fn run(config: &Config, args: &ListArgs) -> Result<u8> {
    let now = crate::time::now_ms();
    let f = super::filter(&args.filter, now)?;
    let limit = match args.limit.trim().parse::<usize>() {
        Ok(n @ 1..=MAX_LIMIT) => n,
        _ => {
            return Err(Error::Usage {
                message: format!(
                    "--limit: {:?} is not a number in 1..={MAX_LIMIT}",
                    args.limit
                ),
            })
        }
    };
    let cursor = args
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c.trim()).map_err(|_| Error::Usage {
                message: format!("--cursor: {c:?} is not a cursor (the next_cursor of a page)"),
            })
        })
        .transpose()?;
    let states = f
        .states_within(&DEFAULT_STATES, &StateName::ALL)
        .map_err(|message| Error::Usage { message })?;
    let store = store::open_admin(&config.db, Access::Read)?;
    let (views, next_cursor) =
        crate::ops::page(config, store.as_ref(), &f, &states, cursor, limit, now)?;
    if args.json {
        let page = Page {
            messages: views.iter().map(|v| MessageJson::new(config, v)).collect(),
            next_cursor: next_cursor.map(|u| u.to_string()),
        };
        out(serde_json::to_string(&page).expect("a page serializes"))?;
    } else {
        out(table(config, &views, now))?;
        if let Some(c) = next_cursor {
            out(format_args!("next page: --cursor {c}"))?;
        }
    }
    Ok(exit::OK)
}

/// The human table: uuid, state, destination, attempts, last result, created, next attempt.
fn table(config: &Config, views: &[MessageView], now: i64) -> String {
    let mut text = format!(
        "{:<36}  {:<10}  {:<28}  {:>8}  {:<24}  {:<24}  LAST RESULT",
        "UUID", "STATE", "ENDPOINT OR HOST", "ATTEMPTS", "CREATED", "NEXT ATTEMPT"
    );
    for v in views {
        let destination = match &v.endpoint {
            Some(e) => escape(e).into_owned(),
            None => crate::text::host_of(&v.url),
        };
        let state = match (v.state.as_str(), v.next_attempt_at) {
            _ if crate::view::held(config, v) => "held",
            ("pending", Some(at)) if at > now => "scheduled",
            (_, _) if v.cancel_requested => "cancelling",
            (s, _) => s,
        };
        let last = match (v.last_status, &v.last_error) {
            (_, Some(e)) => escape(e).into_owned(),
            (Some(code), None) => format!("HTTP {code}"),
            (None, None) => "-".into(),
        };
        text.push_str(&format!(
            "\n{:<36}  {:<10}  {:<28}  {:>8}  {:<24}  {:<24}  {}",
            v.uuid,
            state,
            truncate(&destination, 28),
            format!(
                "{}/{}",
                v.attempts_in_budget,
                crate::view::budget(config, v)
            ),
            super::time(v.created_at),
            v.next_attempt_at.map_or_else(|| "-".into(), super::time),
            truncate(&last, 80)
        ));
    }
    text
}

/// At most `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

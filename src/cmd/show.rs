//! `webhookd show UUID` and `webhookd dlq show UUID`: one message in full with its attempts.
//!
//! Everything a receiver sent (response excerpts, errors) and the body are escaped for the
//! terminal; `--body` prints the body alone, byte for byte when stdout is not a terminal (or with
//! `--raw`).

use super::{out, out_bytes, time};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::model::State;
use crate::store::{self, parse_uuid, Access, MessageView};
use crate::text::{escape, escape_bytes, escape_multiline};
use crate::view::MessageJson;

/// Bodies up to this size are shown inline in the human output.
const INLINE_BODY: usize = 4096;

/// What `show` prints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) json: bool,
    /// Only the body.
    pub(crate) body: bool,
    /// The body unescaped even on a terminal.
    pub(crate) raw: bool,
    /// `dlq show`: refuse messages that are not dead.
    pub(crate) dead_only: bool,
}

/// Runs `show`.
///
/// # Errors
/// `NoSuchMessage`, `NotDead` (dlq show), store errors.
pub(crate) fn run(config: &Config, uuid: &str, mode: Mode) -> Result<u8> {
    let id = parse_uuid(uuid)?;
    let store = store::open_admin(&config.db, Access::Read)?;
    let view = match store.view(&id) {
        // An event's id: the event and its deliveries.
        Err(Error::NoSuchMessage { .. }) if !mode.dead_only && !mode.body => {
            match store.event_view(&id)? {
                Some(event) => return super::event::show(&event, mode.json),
                None => store.view(&id)?,
            }
        }
        v => v?,
    };
    if mode.dead_only && view.state != State::Dead {
        return Err(Error::NotDead {
            uuid: uuid.to_owned(),
            state: view.state.as_str().into(),
        });
    }
    if mode.body {
        let body = view.body.as_deref().unwrap_or_default();
        if mode.raw || !super::stdout_is_terminal() {
            out_bytes(body)?;
        } else {
            eprintln!(
                "webhookd: the body is shown escaped on a terminal; redirect stdout or add --raw for its bytes"
            );
            out(escape_bytes(body))?;
        }
    } else if mode.json {
        out(serde_json::to_string(&MessageJson::new(config, &view)).expect("a view serializes"))?;
    } else {
        out(to_text(config, &view))?;
    }
    Ok(exit::OK)
}

fn to_text(config: &Config, v: &MessageView) -> String {
    let t = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), time);
    let url = super::target_url(config, v.endpoint.as_deref(), &v.url);
    let mut s = format!(
        "uuid:            {}\nstate:           {}{}\nmethod:          {}\nurl:             {}\n",
        v.uuid,
        v.state.as_str(),
        if v.cancel_requested {
            " (cancelled when its current attempt ends)"
        } else {
            ""
        },
        v.method,
        escape(&url)
    );
    if let Some(e) = &v.endpoint {
        s += &format!("endpoint:        {}\n", escape(e));
    }
    if let Some(k) = &v.ordering_key {
        s += &format!("ordering key:    {}\n", escape(k));
    }
    for (i, (n, val)) in v.headers.iter().enumerate() {
        let label = if i == 0 { "headers:" } else { "" };
        s += &format!("{label:<17}{n}: {}\n", escape(val));
    }
    s += &format!("body:            {} bytes\n", v.body_size);
    if let Some(key) = &v.key {
        s += &format!("key:             {}\n", escape(key));
    }
    s += &format!(
        "created_at:      {}\nnext_attempt_at: {}\ndelivered_at:    {}\n",
        time(v.created_at),
        t(v.next_attempt_at),
        t(v.delivered_at),
    );
    for (label, at) in [
        ("retried_at", v.retried_at),
        ("replayed_at", v.replayed_at),
        ("dead_at", v.dead_at),
        ("cancelled_at", v.cancelled_at),
    ] {
        if at.is_some() || label == "dead_at" {
            s += &format!("{:<17}{}\n", format!("{label}:"), t(at));
        }
    }
    s += &format!(
        "attempts:        {} in the current budget of {} ({} in all)\n",
        v.attempts_in_budget,
        crate::view::budget(config, v),
        v.attempts_total
    );
    if let Some(e) = &v.last_error {
        s += &format!("last_error:      {}\n", escape(e));
    }
    for a in &v.attempts {
        let result = match (a.status, &a.error) {
            (Some(code), Some(e)) => format!("HTTP {code} ({})", escape(e)),
            (Some(code), None) => format!("HTTP {code}"),
            (None, Some(e)) => escape(e).into_owned(),
            (None, None) => "-".into(),
        };
        s += &format!(
            "  #{:<3} {}  {:>9.1} ms  {result}",
            a.n,
            time(a.at),
            a.duration_us as f64 / 1000.0
        );
        if !a.response.is_empty() {
            let shown = &a.response[..a.response.len().min(200)];
            s += &format!(
                "  \"{}\"{}",
                escape_bytes(shown),
                if a.response.len() > shown.len() {
                    format!(" (+{} bytes kept)", a.response.len() - shown.len())
                } else {
                    String::new()
                }
            );
        }
        s.push('\n');
    }
    if let Some(body) = v.body.as_deref().filter(|b| !b.is_empty()) {
        match std::str::from_utf8(body) {
            Ok(text) if body.len() <= INLINE_BODY => {
                s += &format!("\n{}\n", escape_multiline(text));
            }
            Ok(_) => {
                s += &format!(
                    "\n(body of {} bytes not shown: webhookd show {} --body)\n",
                    body.len(),
                    v.uuid
                );
            }
            Err(_) => {
                s += &format!(
                    "\n(binary body of {} bytes not shown: webhookd show {} --body > body.bin)\n",
                    body.len(),
                    v.uuid
                );
            }
        }
    }
    s.trim_end().to_owned()
}

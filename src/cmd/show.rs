//! `webhookd show UUID` and `webhookd dlq show UUID`: one message in full with its attempts.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::{opt_time, out, time};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::store::{parse_uuid, Access, MessageView, State, Store};

/// Bodies up to this size are shown inline in the human output.
const INLINE_BODY: usize = 4096;

/// Runs `show` (`dead_only`: `dlq show`, which refuses messages that are not dead).
///
/// # Errors
/// `NoSuchMessage`, `NotDead` (dlq show), store errors.
pub(crate) fn run(config: &Config, uuid: &str, json: bool, dead_only: bool) -> Result<u8> {
    let id = parse_uuid(uuid)?;
    let store = Store::open(&config.db, Access::Read)?;
    let mut view = store.view(&id)?;
    let path = view.endpoint.is_some().then(|| view.url.clone());
    view.url = super::target_url(config, view.endpoint.as_deref(), &view.url);
    if dead_only && view.state != State::Dead {
        return Err(Error::NotDead {
            uuid: uuid.to_owned(),
            state: view.state.as_str().into(),
        });
    }
    if json {
        let mut v = to_json(&view);
        v["endpoint"] = view.endpoint.clone().into();
        v["path"] = path.into();
        v["ordering_key"] = view.ordering_key.clone().into();
        out(v)?;
    } else {
        out(to_text(&view))?;
    }
    Ok(exit::OK)
}

fn to_json(v: &MessageView) -> Value {
    let headers: Map<String, Value> = v
        .headers
        .iter()
        .map(|(n, val)| (n.clone(), Value::from(val.as_str())))
        .collect();
    let attempts: Vec<Value> = v
        .attempts
        .iter()
        .map(|a| {
            json!({
                "n": a.n,
                "at": time(a.at),
                "duration_ms": a.duration_us as f64 / 1000.0,
                "status": a.status,
                "error": a.error,
                "response_excerpt": String::from_utf8_lossy(&a.response),
            })
        })
        .collect();
    let mut o = json!({
        "uuid": v.uuid.to_string(),
        "state": v.state.as_str(),
        "method": v.method,
        "url": v.url,
        "headers": headers,
        "body_size": v.body.len(),
        "key": v.key,
        "created_at": time(v.created_at),
        "next_attempt_at": opt_time(v.next_attempt_at),
        "delivered_at": opt_time(v.delivered_at),
        "retried_at": opt_time(v.retried_at),
        "dead_at": opt_time(v.dead_at),
        "attempts_used": v.attempts_in_budget,
        "max_attempts": v.max_attempts,
        "last_error": v.last_error,
        "attempts": attempts,
    });
    match std::str::from_utf8(&v.body) {
        Ok(text) => o["body"] = text.into(),
        Err(_) => {
            o["body_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&v.body)
                .into();
        }
    }
    o
}

fn to_text(v: &MessageView) -> String {
    let t = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), time);
    let mut s = format!(
        "uuid:            {}\nstate:           {}\nmethod:          {}\nurl:             {}\n",
        v.uuid,
        v.state.as_str(),
        v.method,
        v.url
    );
    if let Some(e) = &v.endpoint {
        s += &format!("endpoint:        {e}\n");
    }
    if let Some(k) = &v.ordering_key {
        s += &format!("ordering key:    {k:?}\n");
    }
    for (i, (n, val)) in v.headers.iter().enumerate() {
        let label = if i == 0 { "headers:" } else { "" };
        s += &format!("{label:<17}{n}: {val}\n");
    }
    s += &format!("body:            {} bytes\n", v.body.len());
    if let Some(key) = &v.key {
        s += &format!("key:             {key}\n");
    }
    s += &format!(
        "created_at:      {}\nnext_attempt_at: {}\ndelivered_at:    {}\nretried_at:      {}\ndead_at:         {}\n",
        time(v.created_at),
        t(v.next_attempt_at),
        t(v.delivered_at),
        t(v.retried_at),
        t(v.dead_at)
    );
    let budget = v
        .max_attempts
        .map_or_else(|| "config".to_owned(), |n| n.to_string());
    s += &format!(
        "attempts:        {} ({} of {budget} in the current budget)\n",
        v.attempts.len(),
        v.attempts_in_budget
    );
    if let Some(e) = &v.last_error {
        s += &format!("last_error:      {e}\n");
    }
    for a in &v.attempts {
        let result = match (a.status, &a.error) {
            (Some(code), Some(e)) => format!("HTTP {code} ({e})"),
            (Some(code), None) => format!("HTTP {code}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "-".into(),
        };
        s += &format!(
            "  #{:<3} {}  {:>9.1} ms  {result}",
            a.n,
            time(a.at),
            a.duration_us as f64 / 1000.0
        );
        if !a.response.is_empty() {
            let text = String::from_utf8_lossy(&a.response[..a.response.len().min(120)]);
            s += &format!("  {:?}", text.as_ref());
        }
        s.push('\n');
    }
    if v.body.len() <= INLINE_BODY {
        if let Ok(text) = std::str::from_utf8(&v.body) {
            if !text.is_empty() {
                s += &format!("\n{text}\n");
            }
        }
    }
    s.trim_end().to_owned()
}

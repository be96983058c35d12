//! `webhookd endpoints add|update|remove|pause|resume|rotate-secret|secret`: endpoints managed at
//! runtime (`ops::defined` does the work, shared with the API); a running daemon is woken to
//! apply each change at once.

use serde_json::{Map, Value};

use super::out;
use crate::check;
use crate::cli::{EndpointsCommand, SettingsArgs};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::ops::defined as ops;
use crate::store::{self, Access, Notice};
use crate::view::DefinedJson;

/// Runs one of the commands above (`None` for the others).
///
/// # Errors
/// What the operation fails with.
pub(crate) fn run(config: &Config, command: &EndpointsCommand) -> Option<Result<u8>> {
    let result = match command {
        EndpointsCommand::Add {
            name,
            settings,
            secret,
            json,
            ..
        } => add(config, name, settings, secret.as_deref(), *json),
        EndpointsCommand::Update {
            name,
            settings,
            unset,
            json,
            ..
        } => update(config, name, settings, unset, *json),
        EndpointsCommand::Remove {
            name,
            cancel_pending,
            json,
            ..
        } => remove(config, name, *cancel_pending, *json),
        EndpointsCommand::Pause { name, .. } => pause(config, name, true),
        EndpointsCommand::Resume { name, .. } => pause(config, name, false),
        EndpointsCommand::RotateSecret {
            name,
            overlap,
            secret,
            json,
            ..
        } => rotate(config, name, overlap, secret.clone(), *json),
        EndpointsCommand::Secret { name, json, .. } => secret_of(config, name, *json),
        _ => return None,
    };
    Some(result.map_err(flag_names))
}

/// A refused setting named as its option (`--rate`, `--event`), as the user gave it.
fn flag_names(e: Error) -> Error {
    match e {
        Error::InvalidField { field, reason } => {
            let base = field.split('[').next().unwrap_or(&field);
            let flag = match base {
                "events" => "--event".to_owned(),
                "headers" => "--header".to_owned(),
                "name" => "NAME".to_owned(),
                f if crate::endpoint::defined::FIELDS.contains(&f) || f == "secret" => {
                    format!("--{}", f.replace('_', "-"))
                }
                f => f.to_owned(),
            };
            Error::InvalidField {
                field: flag,
                reason,
            }
        }
        e => e,
    }
}

/// The settings given on the command line, as the JSON fields of a definition.
fn fields(s: &SettingsArgs) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("url", s.url.clone().map(Value::String));
    put("tenant", s.tenant.clone().map(Value::String));
    if !s.events.is_empty() {
        put("events", Some(Value::from(s.events.clone())));
    }
    if !s.headers.is_empty() {
        let mut h = Map::new();
        for arg in &s.headers {
            let (n, v) = check::header_arg("headers", arg)?;
            h.insert(n, Value::String(v));
        }
        put("headers", Some(Value::Object(h)));
    }
    put("timeout", s.timeout.clone().map(Value::String));
    put("max_attempts", s.max_attempts.map(Value::from));
    put("concurrency", s.concurrency.map(Value::from));
    put("rate", s.rate.clone().map(Value::String));
    put("ordered", s.ordered.map(Value::from));
    put("on_dead", s.on_dead.clone().map(Value::String));
    put("breaker_failures", s.breaker_failures.map(Value::from));
    put(
        "breaker_cooldown",
        s.breaker_cooldown.clone().map(Value::String),
    );
    put("disable_after", s.disable_after.clone().map(Value::String));
    put("allow_private", s.allow_private.map(Value::from));
    put("proxy", s.proxy.clone().map(Value::String));
    Ok(m)
}

fn wake(config: &Config) {
    store::coordination(&config.db).notify(Notice::Endpoints);
}

fn add(
    config: &Config,
    name: &str,
    settings: &SettingsArgs,
    secret: Option<&str>,
    json: bool,
) -> Result<u8> {
    let mut f = fields(settings)?;
    if let Some(s) = secret {
        f.insert("secret".into(), Value::String(s.into()));
    }
    // Like enqueue, adding creates the database.
    let mut store = store::open_admin(&config.db, Access::Write)?;
    let added = ops::add(store.as_mut(), config, name, f)?;
    drop(store);
    wake(config);
    if json {
        let v = DefinedJson::new(&added.endpoint, Some(added.secret));
        out(serde_json::to_string(&v).expect("a view serializes"))?;
    } else {
        out(format_args!(
            "added endpoint {name}: {}\nsecret: {}\n(shown once; `webhookd endpoints secret {name}` shows it again)",
            added.endpoint.url, added.secret
        ))?;
    }
    Ok(exit::OK)
}

fn update(
    config: &Config,
    name: &str,
    settings: &SettingsArgs,
    unset: &[String],
    json: bool,
) -> Result<u8> {
    let mut patch = fields(settings)?;
    for u in unset {
        let field = u.replace('-', "_");
        if field == "url" || !crate::endpoint::defined::FIELDS.contains(&field.as_str()) {
            return Err(Error::Usage {
                message: format!(
                    "--unset: {u:?} is not a setting with a default (one of {})",
                    crate::endpoint::defined::FIELDS[1..].join(", ")
                ),
            });
        }
        if patch.contains_key(&field) {
            return Err(Error::Usage {
                message: format!("--unset {u}: the same setting is also given a value"),
            });
        }
        patch.insert(field, Value::Null);
    }
    if patch.is_empty() {
        return Err(Error::Usage {
            message: "nothing to change: give a setting (--url, --rate, ...) or --unset".into(),
        });
    }
    let mut store = store::open_admin(&config.db, Access::Modify)?;
    let e = ops::update(store.as_mut(), config, name, &patch)?;
    drop(store);
    wake(config);
    if json {
        out(serde_json::to_string(&DefinedJson::new(&e, None)).expect("a view serializes"))?;
    } else {
        out(format_args!("updated endpoint {name}: {}", e.url))?;
    }
    Ok(exit::OK)
}

fn remove(config: &Config, name: &str, cancel_pending: bool, json: bool) -> Result<u8> {
    let mut store = store::open_admin(&config.db, Access::Modify)?;
    let cancelled = ops::remove(store.as_mut(), config, name, cancel_pending)?;
    drop(store);
    wake(config);
    if json {
        out(serde_json::json!({"name": name, "removed": true, "cancelled": cancelled}))?;
    } else if cancelled > 0 {
        out(format_args!(
            "removed endpoint {name}; {} cancelled",
            crate::text::count(cancelled, "queued message")
        ))?;
    } else {
        out(format_args!("removed endpoint {name}"))?;
    }
    Ok(exit::OK)
}

fn pause(config: &Config, name: &str, paused: bool) -> Result<u8> {
    let mut store = store::open_admin(&config.db, Access::Modify)?;
    ops::pause(store.as_mut(), config, name, paused)?;
    drop(store);
    wake(config);
    out(format_args!(
        "endpoint {name} {}",
        if paused {
            "paused: its messages stay queued until `webhookd endpoints resume` (events that arrive meanwhile are not delivered to it)"
        } else {
            "resumed"
        }
    ))?;
    Ok(exit::OK)
}

fn rotate(
    config: &Config,
    name: &str,
    overlap: &str,
    secret: Option<String>,
    json: bool,
) -> Result<u8> {
    let overlap = check::duration("--overlap", overlap)?;
    let mut store = store::open_admin(&config.db, Access::Modify)?;
    let secret = ops::rotate_secret(store.as_mut(), config, name, secret, overlap)?;
    drop(store);
    wake(config);
    if json {
        out(
            serde_json::json!({"name": name, "secret": secret, "overlap": crate::text::duration(overlap)}),
        )?;
    } else {
        out(format_args!(
            "new secret for {name}: {secret}\nthe previous secrets sign beside it for {}",
            crate::text::duration(overlap)
        ))?;
    }
    Ok(exit::OK)
}

fn secret_of(config: &Config, name: &str, json: bool) -> Result<u8> {
    let store = store::open_admin(&config.db, Access::Read)?;
    let secrets = ops::secrets_of(store.as_ref(), config, name)?;
    if json {
        let list: Vec<Value> = secrets
            .iter()
            .map(|s| {
                serde_json::json!({
                    "secret": s.secret,
                    "until": s.until.map(crate::time::rfc3339),
                })
            })
            .collect();
        out(Value::Array(list))?;
    } else {
        let lines: Vec<String> = secrets
            .iter()
            .map(|s| match s.until {
                Some(u) => format!("{} (signs until {})", s.secret, super::time(u)),
                None => s.secret.clone(),
            })
            .collect();
        out(lines.join("\n"))?;
    }
    Ok(exit::OK)
}

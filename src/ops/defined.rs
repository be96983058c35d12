//! Endpoints managed at runtime, as the CLI (`webhookd endpoints add|update|remove|pause|resume|
//! rotate-secret|secret`) and the API (`/v1/endpoints`) both change them, and how the stored
//! definitions join the config file's endpoints (`merge`). A name lives in one place: the config
//! file's endpoints are read-only here, and a name in both is a configuration error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::check::{self, Invalid};
use crate::config::Config;
use crate::endpoint::secrets::{self, Secret, SecretsKey};
use crate::endpoint::{defined, Endpoint};
use crate::error::{Error, Result};
use crate::sign::Key;
use crate::store::{Admin, DefinedRow, Definition};

/// The endpoints of the config file and of the database, by name.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub(crate) endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// When the first secret in an overlap stops signing (ms): merge again then.
    pub(crate) next_expiry: Option<i64>,
    /// Stored definitions that could not be used (logged by the daemon; their messages wait).
    pub(crate) broken: Vec<String>,
}

/// How `merge` treats stored secrets.
#[derive(Debug)]
pub(crate) enum Keys {
    /// Not needed (commands that only read settings): endpoints get no keys.
    Ignore,
    /// Opened with this key: endpoints sign with their current secrets.
    Open(SecretsKey),
    /// As `Open`, but secrets that do not open leave the endpoint without keys instead of out
    /// (commands that show or validate, never send).
    Best(SecretsKey),
    /// Needed but the key could not be loaded (why): endpoints with secrets are left out.
    Missing(String),
}

/// The config file's endpoints (not those merged from the database).
pub(crate) fn file_endpoints(config: &Config) -> BTreeMap<String, Arc<Endpoint>> {
    config
        .endpoints
        .iter()
        .filter(|(_, e)| !e.managed)
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect()
}

/// Joins the stored `rows` to the config file's endpoints: definitions become endpoints (signing
/// with their current secrets as `keys` says), pauses apply to either.
///
/// # Errors
/// `InvalidConfig` when a name is defined in both places.
pub(crate) fn merge(
    config: &Config,
    rows: Vec<DefinedRow>,
    keys: &Keys,
    now: i64,
) -> Result<Merged> {
    let mut m = Merged {
        endpoints: file_endpoints(config),
        ..Merged::default()
    };
    for row in rows {
        let Some(def) = &row.definition else {
            if let Some(e) = m.endpoints.get_mut(&row.name) {
                Arc::make_mut(e).paused = row.paused;
            }
            continue;
        };
        if m.endpoints.contains_key(&row.name) {
            return Err(Error::InvalidConfig {
                path: config.source.clone().unwrap_or_default(),
                message: format!(
                    "endpoints.{}: also defined in the database {} (remove one: `webhookd endpoints remove {}`, or rename it in the file)",
                    row.name, config.db, row.name
                ),
            });
        }
        match build_row(&row, def, keys, now, &mut m.next_expiry) {
            Ok(e) => {
                m.endpoints.insert(row.name.clone(), Arc::new(e));
            }
            Err(broken) => m.broken.push(broken),
        }
    }
    Ok(m)
}

/// Applies the stored rows that changed (`store::Queue::definitions_since`) to `endpoints` (the
/// config file's and the database's, as `merge` made them): a definition added or changed, a
/// removed one, a pause or resume of either kind. Returns the names it changed; `m.endpoints`
/// is not used (the map is changed in place), `m.next_expiry` and `m.broken` are filled in.
pub(crate) fn apply(
    endpoints: &mut BTreeMap<String, Arc<Endpoint>>,
    rows: Vec<DefinedRow>,
    keys: &Keys,
    now: i64,
    m: &mut Merged,
) -> Vec<String> {
    let mut changed = Vec::with_capacity(rows.len());
    for row in rows {
        let in_file = endpoints.get(&row.name).filter(|e| !e.managed).cloned();
        match (&row.definition, in_file) {
            (None, Some(mut e)) => {
                Arc::make_mut(&mut e).paused = row.paused;
                endpoints.insert(row.name.clone(), e);
            }
            (None, None) => {
                endpoints.remove(&row.name);
            }
            (Some(_), Some(_)) => m.broken.push(format!(
                "endpoint {:?}: also defined in the config file (remove one); the file's is used",
                row.name
            )),
            (Some(def), None) => match build_row(&row, def, keys, now, &mut m.next_expiry) {
                Ok(e) => {
                    endpoints.insert(row.name.clone(), Arc::new(e));
                }
                Err(broken) => {
                    endpoints.remove(&row.name);
                    m.broken.push(broken);
                }
            },
        }
        changed.push(row.name);
    }
    changed
}

/// The stored definition `def` of `row` as an endpoint, signing with its current secrets as
/// `keys` says (the end of an overlap lowers `next_expiry`); why it cannot be used otherwise.
fn build_row(
    row: &DefinedRow,
    def: &str,
    keys: &Keys,
    now: i64,
    next_expiry: &mut Option<i64>,
) -> std::result::Result<Endpoint, String> {
    let mut signing = Vec::new();
    match (keys, &row.secrets) {
        (Keys::Ignore, _) | (_, None) => {}
        (Keys::Missing(why), Some(_)) => return Err(format!("endpoint {:?}: {why}", row.name)),
        (Keys::Open(key) | Keys::Best(key), Some(sealed)) => match key.open(&row.name, sealed) {
            Ok(all) => {
                for s in secrets::current(&all, now) {
                    if let Some(until) = s.until {
                        *next_expiry = Some(next_expiry.map_or(until, |e| e.min(until)));
                    }
                    if let Ok(k) = Key::parse(&s.secret) {
                        signing.push(k);
                    }
                }
            }
            Err(_) if matches!(keys, Keys::Best(_)) => {}
            Err(e) => return Err(e.to_string()),
        },
    }
    defined::build(&row.name, def, signing, row.paused)
        .map_err(|e| format!("endpoint {:?}: stored definition: {e}", row.name))
}

/// The config with the database's endpoints merged in, for commands that read endpoints (with
/// their signing keys only when this user can read the secrets key).
///
/// # Errors
/// As for [`merge`], and the store's.
pub(crate) fn with_defined(config: &Config, store: &dyn Admin) -> Result<Config> {
    let rows = store.definitions()?;
    let keys = if rows.iter().any(|r| r.secrets.is_some()) {
        SecretsKey::load(&config.secrets_key_path(), false).map_or(Keys::Ignore, Keys::Best)
    } else {
        Keys::Ignore
    };
    let merged = merge(config, rows, &keys, crate::time::now_ms())?;
    let mut c = config.clone();
    c.endpoints = merged.endpoints;
    Ok(c)
}

/// Endpoint `name` as it is now: its stored definition (signing keys opened when this user can
/// read the secrets key), or the config file's with its stored pause. One row read, whatever the
/// number of endpoints: what the API shows right after a change.
///
/// # Errors
/// The store's.
pub(crate) fn current(
    store: &dyn Admin,
    config: &Config,
    name: &str,
) -> Result<Option<Arc<Endpoint>>> {
    let in_file = config.endpoints.get(name).filter(|e| !e.managed);
    let Some(row) = store.definition(name)? else {
        return Ok(in_file.cloned());
    };
    if let (None, Some(e)) = (&row.definition, in_file) {
        let mut e = Arc::clone(e);
        Arc::make_mut(&mut e).paused = row.paused;
        return Ok(Some(e));
    }
    let keys = if row.secrets.is_some() {
        SecretsKey::load(&config.secrets_key_path(), false).map_or(Keys::Ignore, Keys::Best)
    } else {
        Keys::Ignore
    };
    let mut one = BTreeMap::new();
    if let Some(e) = in_file {
        one.insert(name.to_owned(), Arc::clone(e));
    }
    let mut m = Merged::default();
    apply(&mut one, vec![row], &keys, crate::time::now_ms(), &mut m);
    Ok(one.remove(name))
}

/// Endpoint `name` as the database defines it now, without keys (to validate a message for an
/// endpoint added a moment ago): one row read, whatever the number of endpoints.
///
/// # Errors
/// `InvalidField` for a stored definition that does not build, the store's.
pub(crate) fn stored(store: &dyn Admin, name: &str) -> Result<Option<Arc<Endpoint>>> {
    match store.definition(name)? {
        Some(DefinedRow {
            definition: Some(def),
            paused,
            ..
        }) => Ok(Some(Arc::new(defined::build(
            name,
            &def,
            Vec::new(),
            paused,
        )?))),
        _ => Ok(None),
    }
}

/// What adding an endpoint made: the endpoint and its first secret (shown once).
#[derive(Debug)]
pub(crate) struct Added {
    pub(crate) endpoint: Endpoint,
    pub(crate) secret: String,
}

/// An endpoint whose URL is an address the egress policy denies is refused (a name is checked
/// at each attempt, when it is resolved).
fn egress_allows(config: &Config, e: &Endpoint) -> Result<()> {
    config
        .egress
        .check_url(&e.url, e.route.allow_private)
        .map_err(|d| {
            Error::from(Invalid::new(
                "url",
                format!(
                    "blocked by egress policy: {d} (open it with egress.allow, or allow_private)"
                ),
            ))
        })
}

fn read_only(config: &Config, name: &str) -> Result<()> {
    match config.endpoints.get(name) {
        Some(e) if !e.managed => Err(Error::EndpointReadOnly {
            name: name.into(),
            path: config.source.clone().unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

fn stored_definition(store: &dyn Admin, name: &str) -> Result<(DefinedRow, String)> {
    match store.definition(name)? {
        Some(row) => match row.definition.clone() {
            Some(def) => Ok((row, def)),
            None => Err(Error::NoSuchEndpoint { name: name.into() }),
        },
        None => Err(Error::NoSuchEndpoint { name: name.into() }),
    }
}

/// Adds endpoint `name` with the settings in `fields` (the JSON names of `defined::FIELDS`, and
/// `secret`: generated when not given).
///
/// # Errors
/// `Invalid` naming the field, `EndpointExists`, `SecretsKey`, the store's.
pub(crate) fn add(
    store: &mut dyn Admin,
    config: &Config,
    name: &str,
    mut fields: Map<String, Value>,
) -> Result<Added> {
    check::endpoint_name("name", name)?;
    if config.endpoints.get(name).is_some_and(|e| !e.managed) {
        return Err(Error::EndpointExists {
            name: name.into(),
            place: "in the config file (a name lives in one place)",
        });
    }
    let secret = match fields.remove("secret") {
        None | Some(Value::Null) => secrets::generate()?,
        Some(Value::String(s)) => {
            Key::parse(&s).map_err(|reason| Invalid::new("secret", reason))?;
            s
        }
        Some(_) => return Err(Invalid::new("secret", "expected a string").into()),
    };
    let (text, endpoint) = defined::apply(name, None, &fields)?;
    egress_allows(config, &endpoint)?;
    let key = SecretsKey::load(&config.secrets_key_path(), true)?;
    let sealed = key.seal(
        name,
        &[Secret {
            secret: secret.clone(),
            until: None,
        }],
    )?;
    store.define(
        &Definition {
            name,
            text: &text,
            tenant: endpoint.tenant.as_deref(),
            events: &endpoint.events,
            secrets: Some(&sealed),
        },
        true,
        crate::time::now_ms(),
    )?;
    Ok(Added { endpoint, secret })
}

/// Changes endpoint `name`'s settings: `patch` holds the fields to change (`null`: back to the
/// default).
///
/// # Errors
/// `EndpointReadOnly`, `NoSuchEndpoint`, `Invalid` naming the field, the store's.
pub(crate) fn update(
    store: &mut dyn Admin,
    config: &Config,
    name: &str,
    patch: &Map<String, Value>,
) -> Result<Endpoint> {
    read_only(config, name)?;
    if patch.contains_key("secret") {
        return Err(Invalid::new(
            "secret",
            "secrets change with rotate-secret (old and new sign together during the overlap)",
        )
        .into());
    }
    let (row, def) = stored_definition(store, name)?;
    let (text, mut endpoint) = defined::apply(name, Some(&def), patch)?;
    egress_allows(config, &endpoint)?;
    endpoint.paused = row.paused;
    store.define(
        &Definition {
            name,
            text: &text,
            tenant: endpoint.tenant.as_deref(),
            events: &endpoint.events,
            secrets: None,
        },
        false,
        crate::time::now_ms(),
    )?;
    Ok(endpoint)
}

/// Removes endpoint `name`; its queued messages refuse it unless `cancel_pending`. Returns how
/// many messages were cancelled.
///
/// # Errors
/// `EndpointReadOnly`, `NoSuchEndpoint`, `EndpointBusy`, the store's.
pub(crate) fn remove(
    store: &mut dyn Admin,
    config: &Config,
    name: &str,
    cancel_pending: bool,
) -> Result<u64> {
    read_only(config, name)?;
    store.undefine(name, cancel_pending, crate::time::now_ms())
}

/// Pauses (or resumes) endpoint `name`, of the config file or the database.
///
/// # Errors
/// `NoSuchEndpoint`, the store's.
pub(crate) fn pause(
    store: &mut dyn Admin,
    config: &Config,
    name: &str,
    paused: bool,
) -> Result<()> {
    let known = config.endpoints.contains_key(name)
        || store
            .definition(name)?
            .is_some_and(|r| r.definition.is_some());
    if !known {
        return Err(Error::NoSuchEndpoint { name: name.into() });
    }
    store.set_paused(name, paused)
}

/// A new secret for endpoint `name` (given, or generated): it signs at once, and the secrets it
/// replaces sign beside it for `overlap` more. Returns the new secret.
///
/// # Errors
/// `EndpointReadOnly`, `NoSuchEndpoint`, `Invalid` (`secret`), `SecretsKey`, the store's.
pub(crate) fn rotate_secret(
    store: &mut dyn Admin,
    config: &Config,
    name: &str,
    new: Option<String>,
    overlap: Duration,
) -> Result<String> {
    read_only(config, name)?;
    let (row, _) = stored_definition(store, name)?;
    let secret = match new {
        Some(s) => {
            Key::parse(&s).map_err(|reason| Invalid::new("secret", reason))?;
            s
        }
        None => secrets::generate()?,
    };
    let key = SecretsKey::load(&config.secrets_key_path(), row.secrets.is_none())?;
    let now = crate::time::now_ms();
    let until = now.saturating_add(crate::time::duration_ms(overlap));
    let mut all = vec![Secret {
        secret: secret.clone(),
        until: None,
    }];
    if let Some(sealed) = &row.secrets {
        for old in secrets::current(&key.open(name, sealed)?, now) {
            all.push(Secret {
                secret: old.secret.clone(),
                until: Some(old.until.map_or(until, |u| u.min(until))),
            });
        }
    }
    store.set_secrets(name, &key.seal(name, &all)?, now)?;
    Ok(secret)
}

/// Endpoint `name`'s secrets that still sign, newest first (an admin's explicit request).
///
/// # Errors
/// `EndpointReadOnly`, `NoSuchEndpoint`, `SecretsKey`, the store's.
pub(crate) fn secrets_of(store: &dyn Admin, config: &Config, name: &str) -> Result<Vec<Secret>> {
    read_only(config, name)?;
    let (row, _) = stored_definition(store, name)?;
    let Some(sealed) = &row.secrets else {
        return Ok(Vec::new());
    };
    let key = SecretsKey::load(&config.secrets_key_path(), false)?;
    let now = crate::time::now_ms();
    Ok(secrets::current(&key.open(name, sealed)?, now)
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, definition: Option<&str>, paused: bool) -> DefinedRow {
        DefinedRow {
            name: name.into(),
            definition: definition.map(str::to_owned),
            secrets: None,
            paused,
        }
    }

    fn endpoint(name: &str, managed: bool) -> Arc<Endpoint> {
        let mut e =
            defined::build(name, r#"{"url":"http://127.0.0.1:1/"}"#, Vec::new(), false).unwrap();
        e.managed = managed;
        Arc::new(e)
    }

    /// The daemon applies only the rows that changed: a new definition, a changed one, a
    /// removed one, a pause of a config-file endpoint; a row that cannot be used takes its
    /// endpoint out (its messages wait) and says why; a file endpoint is never replaced.
    #[test]
    fn apply_changes_only_the_named_endpoints() {
        let mut map = BTreeMap::from([
            ("file".to_owned(), endpoint("file", false)),
            ("gone".to_owned(), endpoint("gone", true)),
            ("broken".to_owned(), endpoint("broken", true)),
            ("same".to_owned(), endpoint("same", true)),
        ]);
        let rows = vec![
            row("broken", Some("{"), false),
            row("file", None, true),
            row("gone", None, false),
            row(
                "new",
                Some(r#"{"url":"http://127.0.0.1:2/","tenant":"t"}"#),
                false,
            ),
        ];
        let mut m = Merged::default();
        let changed = apply(&mut map, rows, &Keys::Ignore, 0, &mut m);
        assert_eq!(changed, ["broken", "file", "gone", "new"]);
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["file", "new", "same"],
            "removed and broken ones are out"
        );
        assert!(map["file"].paused && !map["file"].managed);
        assert!(map["new"].managed);
        assert_eq!(map["new"].tenant.as_deref(), Some("t"));
        assert_eq!(m.broken.len(), 1, "{:?}", m.broken);
        assert!(m.broken[0].contains("\"broken\""), "{:?}", m.broken);

        // A definition for a name the config file has: the file's stays, and it is said.
        let mut m = Merged::default();
        apply(
            &mut map,
            vec![row("file", Some(r#"{"url":"http://127.0.0.1:3/"}"#), false)],
            &Keys::Ignore,
            0,
            &mut m,
        );
        assert!(!map["file"].managed);
        assert!(m.broken[0].contains("config file"), "{:?}", m.broken);
    }
}

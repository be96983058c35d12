//! Endpoints managed at runtime: their definition (the settings of `[endpoints.NAME]` as one JSON
//! object, without files and secrets, which are sealed apart), how a change is applied to it (a
//! JSON merge patch, RFC 7396: a field set to `null` goes back to its default), and the
//! [`Endpoint`] a definition makes. Pure.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{from_section, Endpoint, EndpointSection};
use crate::check::Invalid;
use crate::sign::Key;

/// The settings a definition may hold, as JSON (and the API) names them.
pub(crate) const FIELDS: &[&str] = &[
    "url",
    "headers",
    "timeout",
    "max_attempts",
    "concurrency",
    "rate",
    "ordered",
    "on_dead",
    "breaker_failures",
    "breaker_cooldown",
    "disable_after",
    "tenant",
    "events",
    "allow_private",
    "proxy",
];

/// Applies `patch` to the definition `base` (`None`: a new endpoint) and validates the result.
/// Returns the new definition's text and the endpoint it makes (no keys, not paused).
///
/// # Errors
/// `Invalid` naming the field (`url`, `rate`, `events[1]`, ...).
pub(crate) fn apply(
    name: &str,
    base: Option<&str>,
    patch: &Map<String, Value>,
) -> Result<(String, Endpoint), Invalid> {
    let mut merged: Map<String, Value> = match base {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            Invalid::new("definition", format!("stored definition unreadable: {e}"))
        })?,
        None => Map::new(),
    };
    for (k, v) in patch {
        if !FIELDS.contains(&k.as_str()) {
            return Err(Invalid::new(
                k.as_str(),
                format!("unknown field (expected one of {})", FIELDS.join(", ")),
            ));
        }
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    if !merged.contains_key("url") {
        return Err(Invalid::new("url", "missing"));
    }
    // A definition is stored as it is (only secrets are sealed): no credentials in it.
    if merged
        .get("proxy")
        .and_then(Value::as_str)
        .is_some_and(|p| p.contains('@'))
    {
        return Err(Invalid::new(
            "proxy",
            "a proxy with credentials (user:password@) belongs in the config file (http.proxy, or the endpoint's proxy there): definitions are stored unsealed",
        ));
    }
    let section = section(&merged)?;
    let text = serde_json::to_string(&section).expect("a definition serializes");
    let endpoint = build(name, &text, Vec::new(), false)?;
    Ok((text, endpoint))
}

/// The endpoint a stored definition makes, signing with `keys` (newest first).
///
/// # Errors
/// `Invalid` naming the field.
pub(crate) fn build(
    name: &str,
    definition: &str,
    keys: Vec<Key>,
    paused: bool,
) -> Result<Endpoint, Invalid> {
    let object: Map<String, Value> = serde_json::from_str(definition)
        .map_err(|e| Invalid::new("definition", format!("not a JSON object: {e}")))?;
    let section = section(&object)?;
    if section.has_secret() || !section.file_keys().is_empty() {
        return Err(Invalid::new(
            "definition",
            "secrets and files do not belong in a definition",
        ));
    }
    let prefix = format!("endpoints.{name}.");
    let mut e = from_section(name, section, Path::new("/"), true).map_err(|i| Invalid {
        field: i
            .field
            .strip_prefix(&prefix)
            .map_or(i.field.clone(), str::to_owned),
        reason: i.reason,
    })?;
    e.keys = Arc::new(keys);
    e.paused = paused;
    e.managed = true;
    if !matches!(
        e.route.via,
        crate::egress::Via::Default | crate::egress::Via::Direct
    ) {
        Arc::make_mut(&mut e.route).vet_proxy = true;
    }
    Ok(e)
}

/// Deserializes a definition, naming the field whose value has the wrong type.
fn section(object: &Map<String, Value>) -> Result<EndpointSection, Invalid> {
    serde_json::from_value(Value::Object(object.clone())).map_err(|whole| {
        for (k, v) in object {
            let mut alone = Map::new();
            alone.insert("url".into(), Value::String("http://h/".into()));
            alone.insert(k.clone(), v.clone());
            if let Err(e) = serde_json::from_value::<EndpointSection>(Value::Object(alone)) {
                return Invalid::new(k.as_str(), e.to_string());
            }
        }
        Invalid::new("definition", whole.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_patch_changes_only_its_fields_and_null_restores_the_default() {
        let (text, e) = apply(
            "acme-1",
            None,
            &object(json!({"url": "http://127.0.0.1:9/h", "tenant": "acme", "events": ["invoice.*"], "rate": "5/s", "headers": {"X-A": "1"}})),
        )
        .unwrap();
        assert!(e.managed && !e.paused);
        assert_eq!(e.tenant.as_deref(), Some("acme"));
        assert_eq!(e.events, ["invoice.*"]);
        let (text, e) = apply(
            "acme-1",
            Some(&text),
            &object(json!({"rate": null, "timeout": "3s"})),
        )
        .unwrap();
        assert!(e.rate.is_none());
        assert_eq!(e.timeout, Some(std::time::Duration::from_secs(3)));
        assert_eq!(e.headers, [("X-A".to_owned(), "1".to_owned())]);
        assert_eq!(e.tenant.as_deref(), Some("acme"));
        let again = build("acme-1", &text, Vec::new(), true).unwrap();
        assert!(again.paused);
        assert_eq!(again.url, "http://127.0.0.1:9/h");
    }

    /// A proxy on a stored endpoint: its own address is vetted (not the operator's), and no
    /// credentials go into a definition, which is stored unsealed.
    #[test]
    fn a_stored_proxy_is_vetted_and_carries_no_credentials() {
        let (_, e) = apply(
            "p",
            None,
            &object(json!({"url": "http://h.example/", "proxy": "http://proxy.example:3128", "allow_private": true})),
        )
        .unwrap();
        assert!(e.route.vet_proxy && e.route.allow_private);
        let err = apply(
            "p",
            None,
            &object(
                json!({"url": "http://h.example/", "proxy": "http://u:secret@proxy.example:3128"}),
            ),
        )
        .unwrap_err();
        assert_eq!(err.field, "proxy");
        assert!(!err.reason.contains("secret"), "{}", err.reason);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (patch, field) in [
            (json!({"tenant": "a"}), "url"),
            (json!({"url": "ftp://h/"}), "url"),
            (json!({"url": "http://h/", "rate": "fast"}), "rate"),
            (
                json!({"url": "http://h/", "concurrency": "x"}),
                "concurrency",
            ),
            (
                json!({"url": "http://h/", "events": ["in voice"]}),
                "events[0]",
            ),
            (json!({"url": "http://h/", "events": "x"}), "events"),
            (json!({"url": "http://h/", "tenant": "a b"}), "tenant"),
            (
                json!({"url": "http://h/", "secret_file": "/k"}),
                "secret_file",
            ),
            (json!({"url": "http://h/", "colour": 1}), "colour"),
        ] {
            let err = apply("e", None, &object(patch.clone())).unwrap_err();
            assert_eq!(err.field, field, "{patch}: {}", err.reason);
        }
    }
}

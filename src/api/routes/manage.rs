//! Endpoints managed at runtime through the API (admin scope over TCP): `POST /v1/endpoints`,
//! `PATCH` and `DELETE /v1/endpoints/{name}`, `pause`, `resume` and `rotate-secret`. The same
//! operations as `webhookd endpoints add|update|remove|...` (`ops::defined`); the dispatcher is
//! woken to apply each change at once.

use serde_json::{Map, Value};

use super::post::content_type;
use super::{bad, json, Answer};
use crate::api::problem::Problem;
use crate::api::wire::Request;
use crate::api::Context;
use crate::ops::defined as ops;
use crate::store::{self, Access, Admin, Notice};
use crate::view::DefinedJson;

/// A request body that must be one JSON object (an empty body: an empty object).
fn object(r: &Request) -> Result<Map<String, Value>, Problem> {
    if r.body.is_empty() {
        return Ok(Map::new());
    }
    content_type(r, false)?;
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(e) => Err(bad(&format!("the body is not JSON: {e}"))),
    }
}

impl Context {
    /// Runs `f` on a store that may change endpoints, then wakes the dispatcher.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut dyn Admin, &crate::config::Config) -> crate::error::Result<T>,
    ) -> Result<T, Problem> {
        let config = self.config();
        let mut s =
            store::open_admin(&config.db, Access::Modify).map_err(|e| Problem::from_error(&e))?;
        let out = f(s.as_mut(), &config).map_err(|e| Problem::from_error(&e))?;
        drop(s);
        let _ = self.wake.send(Notice::Endpoints);
        Ok(out)
    }

    /// `POST /v1/endpoints`: `{"name", "url", ...settings, "secret"?}`; 201 with the secret.
    pub(super) fn create_endpoint(&self, r: &Request) -> Answer {
        let mut fields = object(r)?;
        let name = crate::ingest::string(&mut fields, "name")
            .map_err(|e| Problem::invalid(&e))?
            .ok_or_else(|| bad("name: missing").field("name"))?;
        let added = self.change(|s, c| ops::add(s, c, &name, fields))?;
        Ok(json(
            201,
            &DefinedJson::new(&added.endpoint, Some(added.secret)),
        ))
    }

    /// `PATCH /v1/endpoints/{name}`: a JSON merge patch of its settings (`null`: the default).
    pub(super) fn patch_endpoint(&self, name: &str, r: &Request) -> Answer {
        let patch = object(r)?;
        if patch.is_empty() {
            return Err(bad("nothing to change: give a setting"));
        }
        let e = self.change(|s, c| ops::update(s, c, name, &patch))?;
        Ok(json(200, &DefinedJson::new(&e, None)))
    }

    /// `DELETE /v1/endpoints/{name}[?cancel_pending=true]`.
    pub(super) fn delete_endpoint(&self, name: &str, r: &Request) -> Answer {
        let mut cancel_pending = false;
        for pair in r.query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("cancel_pending", "true" | "") => cancel_pending = true,
                ("cancel_pending", "false") => cancel_pending = false,
                (k, _) => {
                    return Err(bad(&format!(
                        "{}: unknown parameter (cancel_pending=true cancels queued messages)",
                        crate::text::escape(k)
                    ))
                    .field(crate::text::escape(k).into_owned()))
                }
            }
        }
        let cancelled = self.change(|s, c| ops::remove(s, c, name, cancel_pending))?;
        Ok(json(
            200,
            &serde_json::json!({"name": name, "removed": true, "cancelled": cancelled}),
        ))
    }

    /// `POST /v1/endpoints/{name}/pause` and `.../resume`.
    pub(super) fn pause_endpoint(&self, name: &str, paused: bool) -> Answer {
        self.change(|s, c| ops::pause(s, c, name, paused))?;
        Ok(json(
            200,
            &serde_json::json!({"name": name, "paused": paused}),
        ))
    }

    /// `POST /v1/endpoints/{name}/rotate-secret`: `{"overlap"?: "24h", "secret"?}`; the new
    /// secret, once.
    pub(super) fn rotate_secret(&self, name: &str, r: &Request) -> Answer {
        let mut o = object(r)?;
        let text = |o: &mut Map<String, Value>, k: &str| {
            crate::ingest::string(o, k).map_err(|e| Problem::invalid(&e))
        };
        let overlap = text(&mut o, "overlap")?.unwrap_or_else(|| "24h".into());
        let secret = text(&mut o, "secret")?;
        if let Some(k) = o.keys().next() {
            return Err(bad(&format!(
                "{}: unknown field (expected overlap, secret)",
                crate::text::escape(k)
            ))
            .field(crate::text::escape(k).into_owned()));
        }
        let overlap =
            crate::check::duration("overlap", &overlap).map_err(|e| Problem::invalid(&e))?;
        let secret = self.change(|s, c| ops::rotate_secret(s, c, name, secret, overlap))?;
        Ok(json(
            200,
            &serde_json::json!({"name": name, "secret": secret, "overlap": crate::text::duration(overlap)}),
        ))
    }
}

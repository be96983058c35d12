//! How endpoints come and change: rows the store made, a reloaded configuration, the stored
//! endpoints that changed. Runtime state (in flight, tokens, health) stays with an endpoint
//! whose settings change.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::runtime::Runtime;
use super::{configured, Endpoints};
use crate::endpoint::{Endpoint, OriginPolicy};
use crate::model::Health;

impl Endpoints {
    /// Adds the endpoints of `rows` it does not know yet (origins and endpoints the store made
    /// since): their policy from `config`, or an origin's defaults.
    pub(crate) fn add(
        &mut self,
        rows: Vec<(String, Health)>,
        config: &BTreeMap<String, Arc<Endpoint>>,
        now: i64,
    ) {
        for (name, health) in rows {
            if self.by_id.contains_key(&health.id) {
                continue;
            }
            let cfg = configured(config, &name, &self.origins);
            self.by_name.insert(name.clone(), health.id);
            self.active.insert(health.id);
            self.by_id
                .insert(health.id, Runtime::new(name, cfg, health, now));
        }
    }

    /// Sets the policy of origins (`[origins]`), for those known and those to come.
    pub(crate) fn set_origin_policy(&mut self, p: &OriginPolicy) {
        self.origins = p.clone();
        for rt in self.by_id.values_mut() {
            if crate::message::is_origin(&rt.name) {
                rt.config = Some(Arc::new(Endpoint::for_origin(&rt.name, p)));
            }
        }
    }

    /// Applies a reloaded configuration: `rows` as for [`Endpoints::new`]; runtime state stays.
    /// Returns the names of endpoints added, changed or removed.
    pub(crate) fn reconfigure(
        &mut self,
        rows: Vec<(String, Health)>,
        config: &BTreeMap<String, Arc<Endpoint>>,
        workers: usize,
        now: i64,
    ) -> Vec<String> {
        self.workers = workers;
        let mut changed = Vec::new();
        for (name, health) in rows {
            let cfg = configured(config, &name, &self.origins);
            match self.by_id.get_mut(&health.id) {
                Some(rt) => {
                    if rt.update(cfg) {
                        changed.push(name);
                        self.active.insert(health.id);
                    }
                }
                None => {
                    if cfg.is_some() && !crate::message::is_origin(&name) {
                        changed.push(name.clone());
                    }
                    self.by_name.insert(name.clone(), health.id);
                    self.active.insert(health.id);
                    self.by_id
                        .insert(health.id, Runtime::new(name, cfg, health, now));
                }
            }
        }
        changed
    }

    /// Applies the settings of the endpoints `names` (stored endpoints that changed) from
    /// `config`; those it does not know yet come with `add`. Returns the names whose settings
    /// changed.
    pub(crate) fn reconfigure_named(
        &mut self,
        names: &[String],
        config: &BTreeMap<String, Arc<Endpoint>>,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        for name in names {
            let Some(&id) = self.by_name.get(name) else {
                continue;
            };
            let cfg = configured(config, name, &self.origins);
            if let Some(rt) = self.by_id.get_mut(&id) {
                if rt.update(cfg) {
                    self.active.insert(id);
                    changed.push(name.clone());
                }
            }
        }
        changed
    }
}

//! SIGHUP: what a re-read configuration changes, as a list (`changes`: pure, unit-tested), and
//! how the dispatcher applies each change (`Dispatcher::reload`). The configuration itself is
//! re-read by the closure `cmd` passes to `daemon::run`. A changed `db` needs a restart and is
//! kept as it was.

use std::time::Duration;

use log::LevelFilter;

use super::defined::load_defined;
use super::dispatcher::Dispatcher;
use super::{systemd, Reload};
use crate::config::Config;
use crate::deliver::http::Http;
use crate::text;

/// One change a reload brings.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    /// Not applied: needs a restart.
    Db {
        from: String,
        to: String,
    },
    Workers {
        from: usize,
        to: usize,
    },
    Http,
    Retry,
    /// Endpoints added, changed or removed (the dispatcher names them).
    Endpoints,
    Alerts,
    Retention {
        from: Duration,
        to: Duration,
    },
    ShutdownTimeout {
        from: Duration,
        to: Duration,
    },
    LogLevel {
        from: LevelFilter,
        to: LevelFilter,
    },
}

impl Change {
    /// How the reload's log line names it.
    pub(super) fn describe(&self, new: &Config) -> String {
        match self {
            Change::Db { from, to } => format!("db {from} -> {to} (needs a restart)"),
            Change::Workers { from, to } => format!("workers {from} -> {to}"),
            Change::Http => format!("http {:?}, egress {:?}", new.http, new.egress),
            Change::Retry => format!("retry {:?}", new.retry),
            Change::Endpoints => "endpoints".to_owned(),
            Change::Alerts => format!(
                "alert_url {}",
                new.alerts.as_ref().map_or("(none)", |a| a.url.as_str())
            ),
            Change::Retention { from, to } => {
                format!(
                    "retention {} -> {}",
                    text::duration(*from),
                    text::duration(*to)
                )
            }
            Change::ShutdownTimeout { from, to } => format!(
                "shutdown_timeout {} -> {}",
                text::duration(*from),
                text::duration(*to)
            ),
            Change::LogLevel { from, to } => format!("log level {from} -> {to}"),
        }
    }
}

/// What changes from `old` (with log level `level`) to `new` (with `new_level`), in the order
/// they are applied.
pub(super) fn changes(
    old: &Config,
    new: &Config,
    level: LevelFilter,
    new_level: LevelFilter,
) -> Vec<Change> {
    let mut out = Vec::new();
    if new.db != old.db {
        out.push(Change::Db {
            from: old.db.to_string(),
            to: new.db.to_string(),
        });
    }
    if new.workers != old.workers {
        out.push(Change::Workers {
            from: old.workers,
            to: new.workers,
        });
    }
    if new.http != old.http || new.egress != old.egress {
        out.push(Change::Http);
    }
    if new.retry != old.retry {
        out.push(Change::Retry);
    }
    if new.endpoints != old.endpoints || new.workers != old.workers {
        out.push(Change::Endpoints);
    }
    if new.alerts != old.alerts {
        out.push(Change::Alerts);
    }
    if new.retention != old.retention {
        out.push(Change::Retention {
            from: old.retention,
            to: new.retention,
        });
    }
    if new.shutdown_timeout != old.shutdown_timeout {
        out.push(Change::ShutdownTimeout {
            from: old.shutdown_timeout,
            to: new.shutdown_timeout,
        });
    }
    if new_level != level {
        out.push(Change::LogLevel {
            from: level,
            to: new_level,
        });
    }
    out
}

impl Dispatcher {
    /// SIGHUP: re-read the config and apply what can change while running.
    pub(super) fn reload(&mut self, reload: Reload<'_>) {
        systemd::reloading();
        let now = crate::time::now_ms();
        let loaded = reload().and_then(|(mut new, level)| {
            let (merged, generation) = load_defined(self.queue.as_ref(), &new, now)?;
            new.endpoints = merged.endpoints;
            Ok((new, level, merged.next_expiry, generation))
        });
        match loaded {
            Ok((new, level, next_expiry, generation)) => {
                self.next_expiry = next_expiry;
                self.generation = generation;
                self.apply(new, level);
            }
            Err(e) => log::error!("reload failed, the running configuration stays: {e}"),
        }
        systemd::ready();
        self.report_status();
    }

    fn apply(&mut self, mut new: Config, level: log::LevelFilter) {
        let changes = changes(&self.config, &new, log::max_level(), level);
        let mut applied = Vec::new();
        for change in &changes {
            let ok = match change {
                Change::Db { .. } => {
                    log::warn!(
                        "reload: db changed to {}; restart webhookd to use it (still using {})",
                        new.db,
                        self.config.db
                    );
                    new.db = self.config.db.clone();
                    false
                }
                Change::Workers { from, to } => match self.pool.resize(*to) {
                    Ok(()) => {
                        self.capacity = to * self.queue.claims_per_worker();
                        true
                    }
                    Err(e) => {
                        log::error!("reload: {e}; workers stay at {from}");
                        new.workers = *from;
                        false
                    }
                },
                Change::Http => match Http::new(&new.http, &new.egress, new.workers) {
                    Ok(http) => {
                        self.pool.set_http(http);
                        true
                    }
                    Err(e) => {
                        log::error!("reload: {e}; the http settings stay as they were");
                        new.http = self.config.http.clone();
                        new.egress = self.config.egress.clone();
                        false
                    }
                },
                Change::Endpoints => self.reconfigure_endpoints(&mut new, &mut applied),
                Change::Alerts => {
                    self.alerter.set_config(new.alerts.clone());
                    true
                }
                Change::LogLevel { to, .. } => {
                    log::set_max_level(*to);
                    true
                }
                Change::Retry | Change::Retention { .. } | Change::ShutdownTimeout { .. } => true,
            };
            if ok && *change != Change::Endpoints {
                applied.push(change.describe(&new));
            }
        }
        log::info!(
            "reloaded {}: {}",
            new.source
                .as_ref()
                .map_or_else(|| "(built-in defaults)".into(), |p| p.display().to_string()),
            if applied.is_empty() {
                "nothing changed".into()
            } else {
                applied.join("; ")
            }
        );
        self.endpoints.set_origin_policy(&new.origins);
        for w in new.egress_warnings() {
            log::warn!("{w}");
        }
        self.api_config.set(&new);
        self.config = new;
    }

    /// Applies reloaded endpoints; false (and the old ones stay) if the store fails.
    pub(super) fn reconfigure_endpoints(
        &mut self,
        new: &mut Config,
        applied: &mut Vec<String>,
    ) -> bool {
        let names: Vec<String> = new.endpoints.keys().cloned().collect();
        let rows = self
            .queue
            .ensure_endpoints(&names)
            .and_then(|()| self.queue.endpoint_health());
        match rows {
            Ok(rows) => {
                let names = self.endpoints.reconfigure(
                    rows,
                    &new.endpoints,
                    new.workers,
                    crate::time::now_ms(),
                );
                if !names.is_empty() {
                    applied.push(format!("endpoints {}", names.join(", ")));
                }
                super::warn_unconfigured(self.queue.as_ref(), &self.endpoints);
                true
            }
            Err(e) => {
                log::error!("reload: {e}; the endpoints stay as they were");
                new.endpoints = self.config.endpoints.clone();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Database;

    fn config(text: &str) -> Config {
        let path = std::env::temp_dir().join(format!(
            "webhookd-reload-{}-{}.toml",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, text).unwrap();
        let c = Config::from_file(&path, true).unwrap();
        std::fs::remove_file(&path).unwrap();
        c
    }

    #[test]
    fn nothing_changed_is_an_empty_list() {
        let a = config("workers = 4\n");
        assert!(changes(&a, &a.clone(), LevelFilter::Info, LevelFilter::Info).is_empty());
    }

    #[test]
    fn every_reloadable_setting_is_seen() {
        let old = config("workers = 4\n");
        let new = config(
            "workers = 8\nretention = \"1d\"\nshutdown_timeout = \"10s\"\nalert_url = \"http://alerts.invalid/\"\n\
             [retry]\nmax_attempts = 3\n[http]\ntimeout = \"5s\"\n[endpoints.b]\nurl = \"http://127.0.0.1:1/\"\nallow_private = true\n",
        );
        let got = changes(&old, &new, LevelFilter::Info, LevelFilter::Debug);
        assert_eq!(
            got,
            vec![
                Change::Workers { from: 4, to: 8 },
                Change::Http,
                Change::Retry,
                Change::Endpoints,
                Change::Alerts,
                Change::Retention {
                    from: Duration::from_secs(7 * 86_400),
                    to: Duration::from_secs(86_400)
                },
                Change::ShutdownTimeout {
                    from: Duration::from_secs(30),
                    to: Duration::from_secs(10)
                },
                Change::LogLevel {
                    from: LevelFilter::Info,
                    to: LevelFilter::Debug
                },
            ]
        );
        assert_eq!(got[0].describe(&new), "workers 4 -> 8");
    }

    #[test]
    fn a_new_db_is_reported_not_taken() {
        let old = config("workers = 4\n");
        let mut new = old.clone();
        new.db = Database::Sqlite("/elsewhere.db".into());
        let got = changes(&old, &new, LevelFilter::Info, LevelFilter::Info);
        assert!(matches!(&got[..], [Change::Db { to, .. }] if to == "/elsewhere.db"));
    }
}

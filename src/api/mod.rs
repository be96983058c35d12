//! The HTTP API of `webhookd run`: JSON under `/v1`, `/healthz`, `/readyz` and `/metrics`, on a
//! Unix socket (access: its file permissions).
//!
//! Threads: `webhookd-api` (and `webhookd-api-tcp`) accept, `webhookd-api-N` serve one
//! connection each (at most `api.max_connections`); posted messages go to the dispatcher, which
//! stores them in groups (`ingest`). Reads use
//! a small pool of read-only store connections; operator actions open their own, as the CLI does.
//! The same operations and JSON views as the CLI (`ops`, `view`, `ingest::Request`).

mod auth;
mod client;
mod conn;
mod handler;
mod ingest;
mod metrics;
mod problem;
mod routes;
mod server;
mod stream;
mod ui;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::counters::{Latencies, Published};
use crate::error::Result;
use crate::store::{self, Access, Admin, Notice};
pub(crate) use auth::{new_token, Scope};
pub(crate) use client::{enqueue as enqueue_through, Sent};
pub(crate) use ingest::{Failed, Job, GROUP_MAX};
use server::Server;
use stream::Listener;
use wire::Limits;

/// The running API; `stop` ends it.
pub(crate) struct Api {
    server: Server,
    context: Arc<Context>,
}

/// What every request handler shares.
pub(crate) struct Context {
    config: SharedConfig,
    submit: ingest::Submit,
    /// Read-only store connections, reused.
    readers: Mutex<Vec<Box<dyn Admin>>>,
    ready: AtomicBool,
    stopping: AtomicBool,
    metrics: metrics::Metrics,
    /// The last hour and day, for the dashboard.
    history: crate::history::History,
    published: Published,
    wake: Sender<Notice>,
    /// The dashboard's sessions.
    sessions: ui::Sessions,
    /// The queue's file, resolved: `webhookd enqueue` names the one it means (`Webhookd-Db`), so
    /// that a CLI given another `--db` never posts into this daemon's queue.
    db: Option<String>,
}

impl Api {
    /// Binds the socket and starts serving. `/readyz` answers 503 until `ready`. Posted messages
    /// come out of the returned receiver, for the dispatcher to store.
    ///
    /// # Errors
    /// `ApiListen`, `InvalidConfig` (tokens, TLS files), `Spawn`.
    pub(crate) fn start(
        config: &Config,
        published: Published,
        latencies: &Latencies,
        wake: Sender<Notice>,
    ) -> Result<(Api, Receiver<Job>)> {
        let path = config.api.socket_path(&config.db);
        let mut listeners = Vec::new();
        if config.api.socket.is_none() && path.as_os_str().len() > 107 {
            // Derived from a deep database path: deliver anyway; set api.socket to have an API.
            log::warn!(
                "no API socket: {} is longer than a socket path may be; set api.socket to a shorter path",
                path.display()
            );
        } else {
            listeners.push(Listener::unix(&path)?);
            log::info!("API listening on {}", path.display());
        }
        let tokens = match (&config.api.listen, &config.api.tokens_file) {
            (Some(addr), Some(file)) => {
                let tokens = auth::Tokens::load(file)?;
                listeners.push(Listener::tcp(*addr, config.api.tls.as_ref())?);
                log::info!(
                    "API listening on {addr} ({}, {} from {})",
                    if config.api.tls.is_some() {
                        "TLS"
                    } else {
                        "plain HTTP"
                    },
                    crate::text::count(tokens.len() as u64, "token"),
                    file.display()
                );
                tokens
            }
            // No TCP listener: the tokens are the dashboard's logins (over the socket).
            (None, Some(file)) => auth::Tokens::load(file).unwrap_or_else(|e| {
                log::warn!("{e}; the dashboard cannot log anyone in");
                auth::Tokens::default()
            }),
            _ => auth::Tokens::default(),
        };
        let (submit, jobs) = ingest::intake(config.api.ingest_queue);
        let context = Arc::new(Context {
            config: SharedConfig(Arc::new(RwLock::new((
                Arc::new(config.clone()),
                Arc::new(tokens),
            )))),
            submit,
            readers: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            metrics: metrics::Metrics::new(latencies),
            history: latencies.history.clone(),
            published,
            wake,
            sessions: ui::Sessions::default(),
            db: config.db.identity(),
        });
        let a = &config.api;
        let limits = Limits {
            max_connections: a.max_connections,
            max_request_size: a.max_request_size,
            max_buffered: a.max_buffered,
            request_timeout: a.request_timeout,
            idle_timeout: a.idle_timeout,
        };
        let handler: Arc<dyn wire::Handler> = context.clone();
        let server = Server::start(listeners, handler, limits)?;
        Ok((Api { server, context }, jobs))
    }

    /// The daemon is delivering: `/readyz` answers 200.
    pub(crate) fn ready(&self) {
        self.context.ready.store(true, Ordering::SeqCst);
    }

    /// Where a reload puts the new configuration for the next requests.
    pub(crate) fn config_handle(&self) -> SharedConfig {
        self.context.config.clone()
    }

    /// The daemon is stopping: `/readyz` and every `/v1` request answer 503 from now on.
    pub(crate) fn stopping(&self) {
        self.context.stopping.store(true, Ordering::SeqCst);
    }

    /// Closes the socket and idle connections, answers requests being handled, and joins every
    /// thread. The dispatcher must have answered (or dropped) every job first.
    pub(crate) fn stop(self, config: &Config) {
        self.stopping();
        self.server.stop();
        let path = config.api.socket_path(&config.db);
        let _ = std::fs::remove_file(path);
    }
}

/// The configuration the API answers with (endpoints, `max_body_size`) and the tokens, replaced
/// on reload; the listeners' own settings need a restart.
#[derive(Clone)]
pub(crate) struct SharedConfig(Arc<RwLock<(Arc<Config>, Arc<auth::Tokens>)>>);

impl SharedConfig {
    /// Takes a reloaded configuration, and re-reads the tokens file (a file that fails to load
    /// is logged and the tokens stay as they were).
    pub(crate) fn set(&self, config: &Config) {
        let tokens = match &config.api.tokens_file {
            Some(file) => match auth::Tokens::load(file) {
                Ok(t) => {
                    log::info!(
                        "reload: {} from {}",
                        crate::text::count(t.len() as u64, "API token"),
                        file.display()
                    );
                    Some(Arc::new(t))
                }
                Err(e) => {
                    log::error!("reload: {e}; the API tokens stay as they were");
                    None
                }
            },
            None => None,
        };
        let mut shared = self.0.write().unwrap_or_else(PoisonError::into_inner);
        shared.0 = Arc::new(config.clone());
        if let Some(t) = tokens {
            shared.1 = t;
        }
    }

    /// Takes the configuration with changed endpoints (the daemon's, kept in step with the
    /// database); the tokens stay.
    pub(crate) fn set_endpoints(&self, config: &Config) {
        let config = Arc::new(config.clone());
        self.0.write().unwrap_or_else(PoisonError::into_inner).0 = config;
    }

    fn get(&self) -> Arc<Config> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner).0)
    }

    fn tokens(&self) -> Arc<auth::Tokens> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner).1)
    }
}

impl Context {
    fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Runs `f` with a read-only store connection from the pool.
    fn read<T>(&self, config: &Config, f: impl FnOnce(&dyn Admin) -> Result<T>) -> Result<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let store = match pooled {
            Some(s) => s,
            None => store::open_admin(&config.db, Access::Read)?,
        };
        let result = f(store.as_ref());
        if store.end_snapshot().is_ok() {
            self.readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(store);
        }
        result
    }
}

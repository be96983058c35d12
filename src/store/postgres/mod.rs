//! The PostgreSQL store: one database shared by any number of daemons, on any number of hosts.
//!
//! Each `Store` is one connection, reopened when it is lost (the next call reconnects; a call
//! that fails on a lost connection returns `DbUnavailable`, and nothing it did is committed). The
//! rules are SQLite's (see `store::sqlite`), kept with several daemons:
//! - claims are `FOR UPDATE SKIP LOCKED` with the owner and a lease; a daemon takes over only
//!   claims whose lease expired (`queue`);
//! - every transaction is short, none spans an HTTP request;
//! - accepted messages commit with `synchronous_commit = on`; the daemon's other commits (claims,
//!   outcomes) with `off`: a crash of the server may lose the last outcomes, which makes a message
//!   be attempted again, never lost;
//! - the daemons register in `daemons` and wake each other with `LISTEN/NOTIFY` (`coord`).

mod batch;
mod bulk;
pub(crate) mod coord;
mod defined;
mod endpoints;
mod events;
mod import;
mod insert;
mod inspect;
mod limits;
mod list;
mod queue;
mod registry;
mod schema;
mod traits;

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postgres::{Client, GenericClient, Row, Statement, Transaction};
use uuid::Uuid;

use crate::config::database::Postgres;
use crate::error::{Error, Result};
use crate::model::{Circuit, State};
use crate::store::Access;

pub(crate) use registry::daemons as registry_daemons;
pub(crate) use schema::SCHEMA_VERSION;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a statement may wait for a row lock (another daemon's claim transaction): past it
/// the call fails `Busy` and is retried by its caller, instead of hanging on a stuck session.
const LOCK_TIMEOUT: &str = "10s";

/// A failure inside a store call: the database's (mapped to `Db`, `Busy` or `DbUnavailable` with
/// the call's operation), or the store's own (`NoSuchMessage`, `NotDead`, ...).
#[derive(Debug)]
pub(super) enum Fail {
    Pg(postgres::Error),
    App(Error),
    /// A value the database holds that this binary cannot read.
    Bad(String),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::App(e)
    }
}

pub(super) type R<T> = std::result::Result<T, Fail>;

/// The statements prepared on the current connection, by their text: a statement sent as text
/// costs the server a parse and a plan, and the client a round trip, each time.
#[derive(Default)]
pub(super) struct Prepared(RefCell<HashMap<&'static str, Statement>>);

impl Prepared {
    /// `sql`, prepared on `c` (once per connection).
    pub(super) fn get(&self, c: &mut impl GenericClient, sql: &'static str) -> R<Statement> {
        if let Some(s) = self.0.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql)?;
        self.0.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }
}

/// One connection to the database.
pub(crate) struct Store {
    client: RefCell<Option<Client>>,
    /// The hot statements, prepared on `client` (emptied when it is reopened).
    pub(super) prepared: Prepared,
    pg: Postgres,
    /// The URL, as errors name the database.
    name: PathBuf,
    /// The daemon's instance id, recorded with its claims (0 for commands, which claim nothing).
    owner: i64,
    /// The claims this daemon's dispatcher holds (claimed, not yet recorded or released): only
    /// these are renewed. A claim committed but not known here (the reply to a commit was lost,
    /// or the server lost the outcome's commit after a crash) lets its lease end, and is taken
    /// over like a dead daemon's.
    pub(super) held: RefCell<limits::Held>,
}

impl Store {
    /// Connects, checks that the database is webhookd's (or empty) and migrates it (`Read` never
    /// does: it refuses an empty or older one).
    ///
    /// # Errors
    /// `DbUnavailable` (cannot connect), `DbPermission`, `NotOurDb`, `NewerSchema`, `OldSchema`,
    /// `NoDatabase` (Read/Modify on an empty database), `Db`.
    pub(crate) fn open(pg: &Postgres, access: Access) -> Result<Store> {
        let store = Store {
            client: RefCell::new(None),
            prepared: Prepared::default(),
            pg: pg.clone(),
            name: PathBuf::from(&pg.url),
            owner: 0,
            held: RefCell::default(),
        };
        store.connection()?;
        schema::prepare(&store, access)?;
        Ok(store)
    }

    /// The daemon's instance id: its claims record it.
    pub(crate) fn set_owner(&mut self, owner: i64) {
        self.owner = owner;
        // As `connection` does for a daemon's connection (this one was opened before).
        if let Some(c) = self.client.get_mut().as_mut() {
            if let Err(e) = c.batch_execute("SET synchronous_commit = off") {
                log::warn!("{}", wrap(&self.name, "set synchronous_commit", e));
            }
        }
    }

    /// The connection, reopened if it was lost.
    pub(super) fn connection(&self) -> Result<RefMut<'_, Client>> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            self.prepared.0.borrow_mut().clear();
            let mut client = connect(&self.pg, &self.name)?;
            if self.owner != 0 {
                // The daemon's own commits (claims, outcomes) are not waited for: a crash of the
                // server may lose the last ones, which makes a message be attempted again, never
                // lost. A cycle that stores accepted messages commits with `on`.
                client
                    .batch_execute("SET synchronous_commit = off")
                    .map_err(|e| wrap(&self.name, "set synchronous_commit", e))?;
            }
            *slot = Some(client);
        }
        Ok(RefMut::map(slot, |c| c.as_mut().expect("connected above")))
    }

    /// Runs `f` on the connection, outside a transaction (or inside the snapshot `Admin::snapshot`
    /// began).
    pub(super) fn run<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Client) -> R<T>,
    ) -> Result<T> {
        let mut client = self.connection()?;
        f(&mut client).map_err(|e| self.fail(op, e))
    }

    /// Runs `f` in one transaction: committed if it succeeds, rolled back otherwise.
    pub(super) fn tx<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Transaction<'_>) -> R<T>,
    ) -> Result<T> {
        let mut client = self.connection()?;
        let result = (|| {
            let mut tx = client.transaction()?;
            let value = f(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.fail(op, e))
    }

    /// Maps a failure of operation `op` to the store's error.
    pub(super) fn fail(&self, op: &'static str, e: Fail) -> Error {
        match e {
            Fail::Pg(e) => wrap(&self.name, op, e),
            Fail::App(e) => e,
            Fail::Bad(reason) => Error::Db {
                path: self.name.clone(),
                op,
                source: reason.into(),
            },
        }
    }

    /// The database's name in errors (its URL).
    pub(super) fn name(&self) -> &Path {
        &self.name
    }
}

/// Opens a connection: TLS as the URL's `sslmode` asks (rustls, with the system's roots or
/// `db_ca_file`), the password from `db_password_file`.
///
/// # Errors
/// `InvalidConfig` (the password or CA file), `DbUnavailable`, `DbPermission`.
pub(super) fn connect(pg: &Postgres, name: &Path) -> Result<Client> {
    let mut config: postgres::Config = pg.url.parse().map_err(|e| Error::Db {
        path: name.to_path_buf(),
        op: "parse the URL",
        source: Box::new(e),
    })?;
    if let Some(file) = &pg.password_file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::InvalidConfig {
            path: file.clone(),
            message: format!("db_password_file: cannot read: {e}"),
        })?;
        config.password(text.trim_end_matches(['\r', '\n']));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("webhookd");
    }
    // Added to the URL's own `options` (a `search_path`, say), not instead of them.
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c lock_timeout={LOCK_TIMEOUT}"),
        _ => format!("-c lock_timeout={LOCK_TIMEOUT}"),
    };
    config.options(&options);
    let tls = tls(pg.ca_file.as_deref())?;
    config.connect(tls).map_err(|e| wrap(name, "connect", e))
}

/// The TLS connector: rustls with the system's CA certificates, or those of `ca_file` alone.
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            let bad = |message: String| Error::InvalidConfig {
                path: file.to_path_buf(),
                message: format!("db_ca_file: {message}"),
            };
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|c| c.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("holds no PEM certificate".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let system = rustls_native_certs::load_native_certs();
            for e in &system.errors {
                log::warn!("system CA certificates: {e}");
            }
            roots.add_parsable_certificates(system.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Logging {
            message: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Maps a PostgreSQL error: a lock or serialization conflict is `Busy` (try again), a lost or
/// refused connection `DbUnavailable`, a refused privilege `DbPermission`, the rest `Db`.
pub(super) fn wrap(name: &Path, op: &'static str, e: postgres::Error) -> Error {
    use postgres::error::SqlState;
    let path = name.to_path_buf();
    let code = e.code().cloned();
    let e = Described(e);
    let Some(code) = code.as_ref() else {
        // No SQLSTATE: the connection (closed, I/O, TLS), or this side's own error (a value
        // that does not convert), which no retry cures.
        let io = std::error::Error::source(&e.0).is_some_and(|s| s.is::<std::io::Error>());
        if e.0.is_closed() || io {
            return Error::DbUnavailable {
                path,
                op,
                source: Box::new(e),
            };
        }
        return Error::Db {
            path,
            op,
            source: Box::new(e),
        };
    };
    if [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::QUERY_CANCELED,
    ]
    .contains(code)
    {
        return Error::Busy { path, op };
    }
    if code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
    {
        return Error::DbUnavailable {
            path,
            op,
            source: Box::new(e),
        };
    }
    if [
        SqlState::INSUFFICIENT_PRIVILEGE,
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
    ]
    .contains(code)
    {
        return Error::DbPermission {
            path,
            source: Box::new(e),
        };
    }
    Error::Db {
        path,
        op,
        source: Box::new(e),
    }
}

/// A PostgreSQL error shown with what the server said (the crate's own text is "db error").
#[derive(Debug)]
struct Described(postgres::Error);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(
                    f,
                    "{}: {} ({})",
                    db.severity(),
                    db.message(),
                    db.code().code()
                )?;
                if let Some(detail) = db.detail() {
                    write!(f, "; {detail}")?;
                }
                Ok(())
            }
            None => match std::error::Error::source(&self.0) {
                Some(source) => write!(f, "{}: {source}", self.0),
                None => write!(f, "{}", self.0),
            },
        }
    }
}

impl std::error::Error for Described {}

/// A uuid stored as 16 bytes.
pub(super) fn uuid_at(row: &Row, i: usize) -> R<Uuid> {
    let bytes: &[u8] = row.try_get(i)?;
    Uuid::from_slice(bytes).map_err(|_| Fail::Bad(format!("column {i} is not a uuid")))
}

/// An optional uuid stored as 16 bytes.
pub(super) fn uuid_opt_at(row: &Row, i: usize) -> R<Option<Uuid>> {
    let bytes: Option<&[u8]> = row.try_get(i)?;
    bytes
        .map(|b| Uuid::from_slice(b).map_err(|_| Fail::Bad(format!("column {i} is not a uuid"))))
        .transpose()
}

/// A message state stored as its code (`sqlite::codes`, the same for every backend).
pub(super) fn state_at(row: &Row, i: usize) -> R<State> {
    let code: i64 = row.try_get(i)?;
    super::sqlite::codes::state_of(code)
        .ok_or_else(|| Fail::Bad(format!("unknown message state {code}")))
}

/// An endpoint circuit stored as its code.
pub(super) fn circuit_at(row: &Row, i: usize) -> R<Circuit> {
    let code: i64 = row.try_get(i)?;
    super::sqlite::codes::circuit_of(code)
        .ok_or_else(|| Fail::Bad(format!("unknown circuit state {code}")))
}

/// The code of `state`.
pub(super) fn state_code(state: State) -> i64 {
    super::sqlite::codes::state_code(state)
}

/// The code of a circuit.
pub(super) fn circuit_code(c: Circuit) -> i64 {
    super::sqlite::codes::circuit_code(c)
}

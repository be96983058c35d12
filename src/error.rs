//! The one error type of webhookd and its mapping to exit codes (sysexits(3)).
//!
//! Every variant carries what failed (path, uuid, line, key) so that `main` can print a single line
//! `webhookd: <Display>` and exit with `Error::exit_code()`. Delivery failures are not errors: they are
//! values (`deliver::Verdict`) recorded in the store.

use std::path::PathBuf;

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of a library the store uses, kept as the source of an `Error` (only `store` names
/// the database library).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Exit codes, documented in README.md ("Exit codes").
pub(crate) mod exit {
    pub(crate) const OK: u8 = 0;
    /// `verify`: the signature does not match (or the timestamp is out of tolerance).
    pub(crate) const UNVERIFIED: u8 = 1;
    /// `status`: no daemon runs on this database (LSB "program is not running").
    pub(crate) const NOT_RUNNING: u8 = 3;
    pub(crate) const USAGE: u8 = 64;
    pub(crate) const DATAERR: u8 = 65;
    pub(crate) const NOINPUT: u8 = 66;
    pub(crate) const SOFTWARE: u8 = 70;
    pub(crate) const OSERR: u8 = 71;
    pub(crate) const CANTCREAT: u8 = 73;
    pub(crate) const IOERR: u8 = 74;
    pub(crate) const TEMPFAIL: u8 = 75;
    pub(crate) const NOPERM: u8 = 77;
    pub(crate) const CONFIG: u8 = 78;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {}: {source}", .path.display())]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: {message}", .path.display())]
    InvalidConfig { path: PathBuf, message: String },
    #[error("http.ca_file {}: {message}", .path.display())]
    CaFile { path: PathBuf, message: String },
    #[error("http.proxy: {message}")]
    Proxy { message: String },
    #[error("{message}")]
    Usage { message: String },
    #[error("{message}")]
    InvalidInput { message: String },
    /// A value refused, with the field it was given in.
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("{}: line {line}: {message}", .input)]
    InvalidLine {
        input: String,
        line: u64,
        message: String,
    },
    #[error("cannot read {what}: {source}")]
    ReadInput {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
    #[error("database {} {} (start `webhookd run` or enqueue a message to create it)", .path.display(), if *.empty { "is empty, not yet a webhookd database" } else { "does not exist" })]
    NoDatabase { path: PathBuf, empty: bool },
    #[error("database {} has schema version {found}, older than this webhookd's ({supported}); a read-only command does not upgrade it: run `webhookd run` (or any command that writes) first", .path.display())]
    OldSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot create database directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {}: {source}", .path.display())]
    OpenDb { path: PathBuf, source: Source },
    #[error("database {}: permission denied (is this user in the daemon's group?): {source}", .path.display())]
    DbPermission { path: PathBuf, source: Source },
    #[error("database {} is not a webhookd database ({reason}); refusing to touch it", .path.display())]
    NotOurDb { path: PathBuf, reason: String },
    #[error("database {} has schema version {found}, newer than this webhookd understands ({supported}); upgrade webhookd", .path.display())]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database {}: {op}: {source}", .path.display())]
    Db {
        path: PathBuf,
        op: &'static str,
        source: Source,
    },
    #[error("database {} is busy (locked by another process for too long): {op}", .path.display())]
    Busy { path: PathBuf, op: &'static str },
    /// The database server cannot be reached (PostgreSQL: down, restarting, cut off).
    #[error("database {} is unavailable: {op}: {source}", .path.display())]
    DbUnavailable {
        path: PathBuf,
        op: &'static str,
        source: Source,
    },
    #[error("lock file {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a daemon is already running on {} (pid {pid})", .path.display())]
    AlreadyRunning { path: PathBuf, pid: String },
    #[error("no message with uuid {uuid}")]
    NoSuchMessage { uuid: String },
    #[error("no endpoint named {name:?} in the config or the database")]
    NoSuchEndpoint { name: String },
    #[error("endpoint {name:?} already exists {place}")]
    EndpointExists { name: String, place: &'static str },
    #[error("endpoint {name:?} is defined in the config file {}; change it there (endpoints managed at runtime are added with `webhookd endpoints add`)", .path.display())]
    EndpointReadOnly { name: String, path: PathBuf },
    #[error("endpoint {name:?} has {} pending, in flight or waiting; give --cancel-pending to cancel them with it (or wait until they are delivered)", crate::text::count(*.queued, "message"))]
    EndpointBusy { name: String, queued: u64 },
    #[error("secrets key {}: {reason}", .path.display())]
    SecretsKey { path: PathBuf, reason: String },
    #[error("{message}")]
    Unverified { message: String },
    #[error("{what}: not confirmed; nothing changed")]
    Aborted { what: String },
    #[error("message {uuid} is {state}, not dead")]
    NotDead { uuid: String, state: String },
    #[error("message {uuid} is {state} and cannot be {action}")]
    WrongState {
        uuid: String,
        state: String,
        action: &'static str,
    },
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot serve the API on {what}: {reason}")]
    ApiListen { what: String, reason: String },
    #[error("cannot set up signal handling: {source}")]
    Signals { source: std::io::Error },
    #[error("cannot set up logging: {message}")]
    Logging { message: String },
}

impl From<crate::check::Invalid> for Error {
    fn from(i: crate::check::Invalid) -> Error {
        Error::InvalidField {
            field: i.field,
            reason: i.reason,
        }
    }
}

impl Error {
    /// The process exit code for this error (see README.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::ReadConfig { .. }
            | Error::InvalidConfig { .. }
            | Error::CaFile { .. }
            | Error::Proxy { .. }
            | Error::SecretsKey { .. } => exit::CONFIG,
            Error::Usage { .. } => exit::USAGE,
            Error::InvalidInput { .. }
            | Error::InvalidField { .. }
            | Error::InvalidLine { .. }
            | Error::NotOurDb { .. }
            | Error::NewerSchema { .. }
            | Error::OldSchema { .. }
            | Error::NotDead { .. }
            | Error::WrongState { .. }
            | Error::EndpointExists { .. }
            | Error::EndpointReadOnly { .. }
            | Error::EndpointBusy { .. } => exit::DATAERR,
            Error::ReadInput { .. }
            | Error::NoDatabase { .. }
            | Error::NoSuchMessage { .. }
            | Error::NoSuchEndpoint { .. } => exit::NOINPUT,
            Error::Unverified { .. } | Error::Aborted { .. } => exit::UNVERIFIED,
            Error::CreateDir { .. } => exit::CANTCREAT,
            Error::DbPermission { .. } => exit::NOPERM,
            Error::OpenDb { .. }
            | Error::Db { .. }
            | Error::Write { .. }
            | Error::Lock { .. }
            | Error::ApiListen { .. } => exit::IOERR,
            Error::Busy { .. } | Error::DbUnavailable { .. } | Error::AlreadyRunning { .. } => {
                exit::TEMPFAIL
            }
            Error::Spawn { .. } | Error::Signals { .. } => exit::OSERR,
            Error::Logging { .. } => exit::SOFTWARE,
        }
    }

    pub(crate) fn input(message: impl Into<String>) -> Error {
        Error::InvalidInput {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_exit_78_so_systemd_does_not_restart_loop() {
        let e = Error::InvalidConfig {
            path: "/x".into(),
            message: "m".into(),
        };
        assert_eq!(e.exit_code(), 78);
    }

    #[test]
    fn unknown_uuid_is_noinput() {
        let e = Error::NoSuchMessage { uuid: "u".into() };
        assert_eq!(e.exit_code(), exit::NOINPUT);
        assert_eq!(e.to_string(), "no message with uuid u");
    }
}

//! Named threads: every thread webhookd starts has a name (`webhookd-...`), shown by `top -H`,
//! `ps -L` and panics, and a handle its owner joins.

use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Starts the thread `name` running `f`.
///
/// # Errors
/// `Spawn` when the system refuses a thread.
pub(crate) fn spawn<T, F>(name: &str, f: F) -> Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| Error::Spawn {
            name: name.into(),
            source,
        })
}

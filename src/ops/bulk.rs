//! The bulk actions (cancel, replay, dlq retry, dlq delete) as the CLI and the API both run them:
//! named uuids all or none; a filter in batches of `BATCH` messages, each its own short
//! transaction with a pause after it, so that the daemon keeps delivering meanwhile.

use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::filter::{Filter, StateName};
use crate::store::{self, Access, Action, Admin, Query};
use crate::view::BulkJson;

/// Messages per transaction: small enough that the daemon's next turn waits a few milliseconds
/// at most (measured in BENCHMARKS.md: the longest gap between deliveries during a bulk retry).
pub(crate) const BATCH: usize = 500;
/// The pause after each batch. SQLite's write lock is not fair: a writer that commits and begins
/// again within microseconds can keep a waiting daemon out for many batches in a row (measured:
/// 129 ms without a pause). A millisecond lets the daemon's busy handler, which retries every
/// 50 µs, take its turn.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// An action and how its reports name it.
#[derive(Clone, Copy)]
pub(crate) struct Bulk<'a> {
    /// The action's name in JSON reports.
    pub(crate) name: &'static str,
    pub(crate) action: Action<'a>,
}

fn report(b: &Bulk<'_>, dry_run: bool) -> BulkJson {
    BulkJson {
        action: b.name,
        dry_run,
        matched: 0,
        changed: 0,
        cancel_requested: 0,
        uuids: Vec::new(),
    }
}

/// Acts on named messages, all or none (`dry_run`: checks they exist). `wake` tells a running
/// daemon afterwards: messages were made due again, or a cancel or delete let a lane's next go.
///
/// # Errors
/// `NoSuchMessage`, `NotDead`/`WrongState`, `InvalidInput`: nothing changes then. Store errors.
pub(crate) fn on_uuids(
    config: &Config,
    b: &Bulk<'_>,
    uuids: &[Uuid],
    dry_run: bool,
    wake: &dyn Fn(),
) -> Result<BulkJson> {
    let mut r = report(b, dry_run);
    r.matched = uuids.len() as u64;
    if dry_run {
        let store = store::open_admin(&config.db, Access::Read)?;
        for u in uuids {
            store.view(u)?; // exists
        }
        r.changed = r.matched;
        r.uuids = uuids.iter().map(Uuid::to_string).collect();
        return Ok(r);
    }
    let mut store = store::open_admin(&config.db, Access::Modify)?;
    let done = store.act_on(b.action, uuids, crate::time::now_ms())?;
    drop(store);
    wake();
    r.changed = done.changed.len() as u64;
    r.cancel_requested = done.later.len() as u64;
    r.uuids = done
        .changed
        .iter()
        .chain(&done.later)
        .map(Uuid::to_string)
        .collect();
    Ok(r)
}

/// A filter, resolved on an open store, ready to count or act on.
pub(crate) struct Selected<'f> {
    pub(crate) store: Box<dyn Admin>,
    pub(crate) query: Query<'f>,
}

/// Opens the store and resolves `f` over `states`; refuses a URL edit for messages of named
/// endpoints (their URL is the endpoint's).
///
/// # Errors
/// `NoSuchEndpoint`, `InvalidInput`, store errors.
pub(crate) fn select<'f>(
    config: &Config,
    b: &Bulk<'_>,
    f: &'f Filter,
    states: &[StateName],
    dry_run: bool,
) -> Result<Selected<'f>> {
    let access = if dry_run {
        Access::Read
    } else {
        Access::Modify
    };
    let store = store::open_admin(&config.db, access)?;
    let query = super::query(config, store.as_ref(), f, states, crate::time::now_ms())?;
    if let Action::Retry(edit) = b.action {
        if edit.url.is_some() {
            if let Some(u) = store.selects_endpoint_messages(&query)? {
                return Err(Error::input(format!(
                    "--url: message {u} goes to a named endpoint (change the endpoint's url instead); narrow the selection, e.g. with --url-prefix"
                )));
            }
        }
    }
    Ok(Selected { store, query })
}

impl Selected<'_> {
    /// How many messages match now (and, for a dry run, which).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn count(&self, b: &Bulk<'_>, dry_run: bool) -> Result<BulkJson> {
        let mut r = report(b, dry_run);
        let mut cursor = None;
        loop {
            let page = self.store.find(&self.query, cursor, BATCH)?;
            r.matched += page.len() as u64;
            if dry_run {
                r.uuids.extend(page.iter().map(|p| p.uuid.to_string()));
            }
            match page.last() {
                Some(last) if page.len() == BATCH => cursor = Some(last.uuid),
                _ => break,
            }
        }
        if dry_run {
            r.changed = r.matched;
        }
        Ok(r)
    }

    /// Acts on every matching message, batch by batch; `progress` gets each batch's size, `wake`
    /// is called after each batch that changed messages (as for [`on_uuids`]).
    ///
    /// # Errors
    /// Store errors (the batches before stay done).
    pub(crate) fn act(
        &mut self,
        b: &Bulk<'_>,
        progress: &dyn Fn(u64),
        wake: &dyn Fn(),
    ) -> Result<BulkJson> {
        let mut r = report(b, false);
        let mut cursor = None;
        loop {
            let (found, done) = self.store.act_batch(
                b.action,
                &self.query,
                cursor,
                BATCH,
                crate::time::now_ms(),
            )?;
            r.matched += found.len() as u64;
            r.changed += done.changed.len() as u64;
            r.cancel_requested += done.later.len() as u64;
            r.uuids
                .extend(done.changed.iter().chain(&done.later).map(Uuid::to_string));
            if !done.changed.is_empty() {
                wake();
            }
            progress(found.len() as u64);
            match found.last() {
                Some(last) if found.len() == BATCH => cursor = Some(last.uuid),
                _ => break,
            }
            std::thread::sleep(BATCH_PAUSE);
        }
        Ok(r)
    }
}

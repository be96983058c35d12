//! `webhookd copy`: an SQLite queue moved into PostgreSQL, for users who outgrow their box. The
//! SQLite side reads its rows in pages (`sqlite::export`), the PostgreSQL side writes each page in
//! one transaction, skipping what it already holds (`postgres::import`): running it twice copies
//! nothing twice. Values travel as plain values (`transfer`), so that neither side names the
//! other's library.

use std::path::Path;

use super::transfer::{Copied, Value};
use crate::config::database::Postgres;
use crate::error::{Error, Result};
use crate::store::{Access, DaemonState};

/// Messages per page (and per PostgreSQL transaction).
const PAGE: usize = 500;

/// Copies the SQLite queue at `from` into the PostgreSQL database `to`. `progress` hears the
/// messages read so far. The SQLite file is only read, and must not have a daemon: its messages
/// in flight are copied as pending (no daemon owns them in PostgreSQL).
///
/// # Errors
/// `AlreadyRunning` when a daemon runs on `from`; the stores' errors.
pub(crate) fn copy(from: &Path, to: &Postgres, mut progress: impl FnMut(u64)) -> Result<Copied> {
    if let DaemonState::Running { pid } = super::sqlite::coord::probe(from) {
        return Err(Error::AlreadyRunning {
            path: from.to_path_buf(),
            pid: pid.map_or_else(|| "?".into(), |p| p.to_string()),
        });
    }
    let source = super::sqlite::Store::open(from, Access::Read)?;
    let target = super::postgres::Store::open(to, Access::Write)?;
    // A lane's waiting message copied after its head was delivered there would wait forever.
    let running = super::postgres::registry_daemons(&target)?;
    if let Some(d) = running.first() {
        return Err(Error::AlreadyRunning {
            path: std::path::PathBuf::from(&to.url),
            pid: format!(
                "{}, host {}; stop the daemons on the PostgreSQL queue while copying",
                d.pid, d.host
            ),
        });
    }
    let mut copied = Copied {
        endpoints: target.import_endpoints(&source.export_endpoints()?)?,
        ..Copied::default()
    };
    let mut after = 0;
    loop {
        let page = source.export_events(after, PAGE)?;
        let Some(last) = page.last().map(|(seq, _)| *seq) else {
            break;
        };
        after = last;
        let rows: Vec<Vec<Value>> = page.into_iter().map(|(_, v)| v).collect();
        copied.events += target.import_events(&rows)?;
    }
    let (mut after, mut read) = (0, 0);
    loop {
        let page = source.export_messages(after, PAGE)?;
        let Some(last) = page.last().map(|m| m.seq) else {
            break;
        };
        after = last;
        read += page.len() as u64;
        let (messages, attempts) = target.import_messages(&page)?;
        copied.messages += messages;
        copied.messages_skipped += page.len() as u64 - messages;
        copied.attempts += attempts;
        progress(read);
    }
    Ok(copied)
}

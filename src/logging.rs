//! fern to stderr, one line per event.
//!
//! Under systemd (stderr is the journal: `JOURNAL_STREAM` names stderr's device and inode) each line
//! starts with its syslog priority `<3>`..`<7>` and has no timestamp, since journald adds both.
//! Otherwise lines carry an RFC 3339 timestamp and the level.

use std::os::unix::fs::MetadataExt;

use log::{Level, LevelFilter};

use crate::error::{Error, Result};

/// Installs the global logger at `level`. The level is only `log`'s global maximum, so that a
/// config reload can change it with `log::set_max_level`.
///
/// # Errors
/// `Logging` if a logger was already installed.
pub(crate) fn init(level: LevelFilter) -> Result<()> {
    let journal = stderr_is_journal();
    fern::Dispatch::new()
        .level(LevelFilter::Trace)
        // Dependencies log at info about connections and TLS; keep them below our own lines.
        .level_for("ureq", LevelFilter::Warn)
        .level_for("ureq_proto", LevelFilter::Warn)
        .level_for("rustls", LevelFilter::Warn)
        // The PostgreSQL client logs each statement with its parameters (message bodies, URLs
        // with credentials) at debug: never ours to print.
        .level_for("tokio_postgres", LevelFilter::Warn)
        .level_for("postgres", LevelFilter::Warn)
        .format(move |out, message, record| {
            if journal {
                out.finish(format_args!("<{}>{}", priority(record.level()), message));
            } else {
                out.finish(format_args!(
                    "{} {:<5} {}",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                    record.level(),
                    message
                ));
            }
        })
        .chain(std::io::stderr())
        .apply()
        .map_err(|e| Error::Logging {
            message: e.to_string(),
        })?;
    log::set_max_level(level);
    Ok(())
}

/// The level for `run` from the config and `-v`/`-q` counts.
pub(crate) fn level(configured: LevelFilter, verbose: u8, quiet: u8) -> LevelFilter {
    const ORDER: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let base = ORDER.iter().position(|l| *l == configured).unwrap_or(3) as i32;
    let i = (base + i32::from(verbose) - i32::from(quiet)).clamp(0, 5);
    ORDER[i as usize]
}

/// syslog priority for a log level (sd-daemon(3)).
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_moves_from_the_configured_level() {
        assert_eq!(level(LevelFilter::Info, 0, 0), LevelFilter::Info);
        assert_eq!(level(LevelFilter::Info, 1, 0), LevelFilter::Debug);
        assert_eq!(level(LevelFilter::Info, 5, 0), LevelFilter::Trace);
        assert_eq!(level(LevelFilter::Info, 0, 1), LevelFilter::Warn);
        assert_eq!(level(LevelFilter::Warn, 0, 9), LevelFilter::Off);
    }

    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}

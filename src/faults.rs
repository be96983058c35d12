//! Fault injection for tests of the daemon's failure handling, switched on only by environment
//! variables that no deployment sets (see DEVELOPERS.md):
//!
//! - `WEBHOOKD_TEST_PANIC_URL=S`: a worker panics when it is about to attempt a URL containing `S`.
//! - `WEBHOOKD_TEST_WEDGE_FILE=P`: once the file `P` exists, the dispatcher blocks forever at its
//!   next watchdog check, as a deadlocked daemon would (the watchdog test under systemd).
//!
//! Both are read once; without them every check is a branch on a `None`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

struct Faults {
    panic_url: Option<String>,
    wedge_file: Option<PathBuf>,
}

fn faults() -> &'static Faults {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    FAULTS.get_or_init(|| Faults {
        panic_url: std::env::var("WEBHOOKD_TEST_PANIC_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        wedge_file: std::env::var_os("WEBHOOKD_TEST_WEDGE_FILE")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
    })
}

/// Called by a worker before each attempt.
///
/// # Panics
/// When `WEBHOOKD_TEST_PANIC_URL` is set and `url` contains it: that is the fault.
pub(crate) fn before_attempt(url: &str) {
    if let Some(s) = &faults().panic_url {
        assert!(!url.contains(s.as_str()), "test fault: panic on {url}");
    }
}

/// Called by the dispatcher at each watchdog check: never returns once the wedge file exists.
pub(crate) fn maybe_wedge() {
    if let Some(p) = &faults().wedge_file {
        if p.exists() {
            log::error!("test fault: {} exists; wedging the dispatcher", p.display());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

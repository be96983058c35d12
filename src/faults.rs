//! Fault injection for tests of the daemon's failure handling, switched on only by environment
//! variables that no deployment sets (see DEVELOPERS.md):
//!
//! - `WEBHOOKD_TEST_PANIC_URL=S`: a worker panics when it is about to attempt a URL containing `S`.
//! - `WEBHOOKD_TEST_HANG_URL=S`: a worker blocks forever instead of attempting such a URL, as a
//!   request that ignores every timeout would (the stuck-worker watchdog test).
//! - `WEBHOOKD_TEST_WEDGE_FILE=P`: once the file `P` exists, the dispatcher blocks forever at its
//!   next watchdog check, as a deadlocked daemon would (the watchdog test under systemd).
//! - `WEBHOOKD_TEST_RESOLVE_DELAY=D` (e.g. `5s`): every host lookup first waits D, as a resolver
//!   that does not answer would (the DNS timeout test).
//! - `WEBHOOKD_TEST_INGEST_DELAY=D`: the API's group commit waits D before each transaction, as a
//!   slow disk would (the back-pressure test).
//! - `WEBHOOKD_TEST_DNS=NAME=A|B`: the host NAME resolves to address A at its first lookup and to
//!   B at every later one, without asking any resolver and without caching, as a DNS rebinding
//!   attacker's name would (the egress tests; several entries are separated by `;`).
//!
//! All are read once; without them every check is a branch on a `None`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

struct Faults {
    panic_url: Option<String>,
    hang_url: Option<String>,
    wedge_file: Option<PathBuf>,
    resolve_delay: Option<Duration>,
    ingest_delay: Option<Duration>,
    /// Host, first answer, later answer; and how many lookups each had.
    dns: Vec<(String, IpAddr, IpAddr, AtomicUsize)>,
}

fn faults() -> &'static Faults {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    FAULTS.get_or_init(|| Faults {
        panic_url: env("WEBHOOKD_TEST_PANIC_URL"),
        hang_url: env("WEBHOOKD_TEST_HANG_URL"),
        wedge_file: std::env::var_os("WEBHOOKD_TEST_WEDGE_FILE")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        resolve_delay: env("WEBHOOKD_TEST_RESOLVE_DELAY")
            .and_then(|d| humantime::parse_duration(&d).ok()),
        ingest_delay: env("WEBHOOKD_TEST_INGEST_DELAY")
            .and_then(|d| humantime::parse_duration(&d).ok()),
        dns: env("WEBHOOKD_TEST_DNS")
            .map(|v| {
                v.split(';')
                    .filter_map(|entry| {
                        let (name, answers) = entry.split_once('=')?;
                        let (a, b) = answers.split_once('|').unwrap_or((answers, answers));
                        Some((
                            name.to_owned(),
                            a.parse().ok()?,
                            b.parse().ok()?,
                            AtomicUsize::new(0),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

fn block_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Called by a worker before each attempt.
///
/// # Panics
/// When `WEBHOOKD_TEST_PANIC_URL` is set and `url` contains it: that is the fault.
pub(crate) fn before_attempt(url: &str) {
    let f = faults();
    if let Some(s) = &f.panic_url {
        assert!(!url.contains(s.as_str()), "test fault: panic on {url}");
    }
    if f.hang_url
        .as_ref()
        .is_some_and(|s| url.contains(s.as_str()))
    {
        log::error!("test fault: hanging on {url}");
        block_forever();
    }
}

/// Called on a host lookup's thread before it asks the system resolver.
pub(crate) fn before_resolve() {
    if let Some(d) = faults().resolve_delay {
        std::thread::sleep(d);
    }
}

/// Called by the API's group commit before each transaction.
pub(crate) fn before_ingest() {
    if let Some(d) = faults().ingest_delay {
        std::thread::sleep(d);
    }
}

/// Called by the dispatcher at each watchdog check: never returns once the wedge file exists.
pub(crate) fn maybe_wedge() {
    if let Some(p) = &faults().wedge_file {
        if p.exists() {
            log::error!("test fault: {} exists; wedging the dispatcher", p.display());
            block_forever();
        }
    }
}

/// The test answer for host `name` (`WEBHOOKD_TEST_DNS`), if it has one.
pub(crate) fn dns_answer(name: &str) -> Option<IpAddr> {
    let (_, first, later, n) = faults().dns.iter().find(|(host, ..)| host == name)?;
    Some(if n.fetch_add(1, Ordering::SeqCst) == 0 {
        *first
    } else {
        *later
    })
}

//! What the daemon tells systemd (sd-notify): readiness, stopping, the `STATUS=` line, and the
//! watchdog, which is fed only while the daemon is healthy. The only module that uses sd-notify.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How many `STATUS=` periods make up "the last minute".
pub(super) const STATUS_WINDOW: usize = 12;

/// Sends `state` to systemd; a failure is logged, never fatal.
pub(super) fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        log::warn!("sd_notify failed: {e}");
    }
}

pub(super) fn ready() {
    notify(&[NotifyState::Ready]);
}

pub(super) fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

pub(super) fn status(line: &str) {
    notify(&[NotifyState::Status(line)]);
}

/// `RELOADING=1` with the monotonic time systemd wants with it.
pub(super) fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    match NotifyState::monotonic_usec_now() {
        Ok(t) => states.push(t),
        Err(e) => log::warn!("cannot read the monotonic clock for MONOTONIC_USEC: {e}"),
    }
    notify(&states);
}

/// The watchdog: pings every quarter of `WatchdogSec=` while the dispatcher loop turns and no
/// worker is stuck.
pub(super) struct Watchdog {
    every: Option<Duration>,
    last_check: Instant,
    last_ping: Instant,
    /// The last check found a stuck worker.
    unhealthy: bool,
}

impl Watchdog {
    /// From `WATCHDOG_USEC` (none: never pings).
    pub(super) fn from_env() -> Watchdog {
        let every = sd_notify::watchdog_enabled().map(|w| w / 4);
        if let Some(every) = every {
            log::info!(
                "watchdog enabled: {:?}; pinging every {every:?} while healthy",
                every * 4
            );
        }
        Watchdog {
            every,
            last_check: Instant::now(),
            last_ping: Instant::now(),
            unhealthy: false,
        }
    }

    /// How long until the next check is due (None: no watchdog).
    pub(super) fn next_check(&self) -> Option<Duration> {
        self.every
            .map(|every| every.saturating_sub(self.last_check.elapsed()))
    }

    /// Whether a check is due now.
    pub(super) fn check_due(&self) -> bool {
        self.next_check().is_some_and(|left| left.is_zero())
    }

    /// Records a check: `stuck` names a worker on one request for too long. Pings only when
    /// healthy; says so when the state changes.
    pub(super) fn checked(&mut self, stuck: Option<String>) {
        self.last_check = Instant::now();
        match stuck {
            Some(what) => {
                if !self.unhealthy {
                    log::error!(
                        "{what}: no longer feeding the watchdog, so that systemd restarts webhookd"
                    );
                }
                self.unhealthy = true;
            }
            None => {
                if self.unhealthy {
                    log::warn!("no worker is stuck any more; feeding the watchdog again");
                    self.unhealthy = false;
                }
                self.ping();
            }
        }
    }

    /// Pings now (while stopping, bounded by `TimeoutStopSec`, the loop no longer checks).
    pub(super) fn ping(&mut self) {
        if self.every.is_some() {
            notify(&[NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }

    /// Pings if the last ping is a whole interval old.
    pub(super) fn keep_alive(&mut self) {
        if self
            .every
            .is_some_and(|every| self.last_ping.elapsed() >= every)
        {
            self.ping();
        }
    }
}

/// Deliveries over the last minute, from samples of the delivered total every `STATUS_INTERVAL`.
#[derive(Debug)]
pub(super) struct Window {
    samples: VecDeque<u64>,
}

impl Window {
    /// Starts at the daemon's start: nothing delivered yet.
    pub(super) fn new() -> Window {
        Window {
            samples: VecDeque::from([0]),
        }
    }

    /// Adds a sample of the delivered total.
    pub(super) fn sample(&mut self, delivered: u64) {
        self.samples.push_back(delivered);
        if self.samples.len() > STATUS_WINDOW + 1 {
            self.samples.pop_front();
        }
    }

    /// Deliveries between the oldest sample and `delivered` now.
    pub(super) fn last_minute(&self, delivered: u64) -> u64 {
        delivered - self.samples.front().copied().unwrap_or(delivered)
    }
}

/// The `STATUS=` line `systemctl status` shows.
pub(super) fn status_line(
    in_flight: usize,
    pending: u64,
    dead: u64,
    last_minute: u64,
    (open, disabled): (usize, usize),
) -> String {
    let mut line = format!(
        "{in_flight} in flight, {pending} pending, {dead} dead; {last_minute} delivered in the last minute"
    );
    if open + disabled > 0 {
        line.push_str(&format!("; endpoints: {open} open, {disabled} disabled"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_the_last_twelve_samples() {
        let mut w = Window::new();
        assert_eq!(w.last_minute(0), 0);
        assert_eq!(w.last_minute(3), 3, "before the first sample");
        w.sample(3);
        assert_eq!(w.last_minute(3), 3, "the first sample keeps the start");
        for i in 0..=20u64 {
            w.sample(i * 10);
        }
        // Samples 80..=200 are kept: the last minute is 200 - 80.
        assert_eq!(w.last_minute(200), 120);
        assert_eq!(w.last_minute(205), 125);
    }

    #[test]
    fn status_names_unhealthy_endpoints_only_when_there_are_some() {
        assert_eq!(
            status_line(3, 120, 2, 5400, (0, 0)),
            "3 in flight, 120 pending, 2 dead; 5400 delivered in the last minute"
        );
        assert!(status_line(0, 0, 0, 0, (1, 0)).ends_with("; endpoints: 1 open, 0 disabled"));
    }
}

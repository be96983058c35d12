//! How long the dispatcher's loop may block: a pure function of what it has to do and when.

use std::time::Duration;

/// Everything `sleep_time` looks at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    /// Attempts finished and not yet recorded: until they must be (`None`: none).
    pub(super) record_in: Option<Duration>,
    /// A claim slot is free.
    pub(super) room: bool,
    /// Some endpoint can be claimed now.
    pub(super) ready: bool,
    /// When some endpoint held back by time can be claimed (ms).
    pub(super) next_ready: Option<i64>,
    pub(super) now: i64,
    /// Until the next poll of the store.
    pub(super) poll_in: Duration,
    /// Until the next batch of a retention purge that has more to do (`None`: no backlog; the
    /// next purge goes with whatever wakes the loop after its interval).
    pub(super) purge_in: Option<Duration>,
    /// Until the next watchdog check.
    pub(super) check_in: Option<Duration>,
}

/// How long the loop may block: not at all with work to do, else until the next poll, watchdog
/// check, purge batch, due message or finished attempts' recording, whichever is first.
/// Outcomes, notices and signals interrupt it.
pub(super) fn sleep_time(w: Wait) -> Duration {
    if w.record_in == Some(Duration::ZERO) || w.room && w.ready {
        return Duration::ZERO;
    }
    let mut t = w.poll_in;
    if let Some(record) = w.record_in {
        t = t.min(record);
    }
    if let Some(check) = w.check_in {
        t = t.min(check);
    }
    if let Some(purge) = w.purge_in {
        t = t.min(purge);
    }
    if let Some(at) = w.next_ready.filter(|_| w.room) {
        t = t.min(Duration::from_millis(
            u64::try_from(at - w.now).unwrap_or(0),
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Wait {
        Wait {
            record_in: None,
            room: true,
            ready: false,
            next_ready: None,
            now: 1_000,
            poll_in: Duration::from_millis(80),
            purge_in: None,
            check_in: None,
        }
    }

    #[test]
    fn the_loop_sleeps_until_the_first_thing_to_do() {
        assert_eq!(sleep_time(idle()), Duration::from_millis(80), "next poll");
        let finished = Wait {
            record_in: Some(Duration::ZERO),
            ..idle()
        };
        assert_eq!(sleep_time(finished), Duration::ZERO, "outcomes to record");
        let deferred = Wait {
            record_in: Some(Duration::from_millis(3)),
            ..idle()
        };
        assert_eq!(
            sleep_time(deferred),
            Duration::from_millis(3),
            "outcomes to record soon"
        );
        let ready = Wait {
            ready: true,
            ..idle()
        };
        assert_eq!(sleep_time(ready), Duration::ZERO, "something to claim");
        let full = Wait {
            ready: true,
            room: false,
            ..idle()
        };
        assert_eq!(sleep_time(full), Duration::from_millis(80), "no room: wait");
        let due = Wait {
            next_ready: Some(1_020),
            ..idle()
        };
        assert_eq!(sleep_time(due), Duration::from_millis(20), "a due message");
        let overdue = Wait {
            next_ready: Some(900),
            ..idle()
        };
        assert_eq!(sleep_time(overdue), Duration::ZERO);
        let due_but_full = Wait {
            next_ready: Some(1_020),
            room: false,
            ..idle()
        };
        assert_eq!(sleep_time(due_but_full), Duration::from_millis(80));
        let watchdog = Wait {
            check_in: Some(Duration::from_millis(5)),
            ..idle()
        };
        assert_eq!(
            sleep_time(watchdog),
            Duration::from_millis(5),
            "watchdog check"
        );
        let purging = Wait {
            purge_in: Some(Duration::from_millis(50)),
            poll_in: Duration::from_secs(1),
            ..idle()
        };
        assert_eq!(
            sleep_time(purging),
            Duration::from_millis(50),
            "a purge backlog's next batch"
        );
    }
}

//! What the dispatcher tells: the published snapshot (API, metrics), `STATUS=` for `systemctl
//! status`, the periodic info line, and an endpoint's change as a log line and an alert.

use super::dispatcher::Dispatcher;
use super::{systemd, texts};
use crate::alert::Alert;
use crate::counters::Snapshot;
use crate::deliver::endpoints::Event;

impl Dispatcher {
    /// Publishes the snapshot, and `STATUS=` for `systemctl status` from it.
    pub(super) fn report_status(&self) {
        self.publish();
        let snapshot = self.published.get();
        match self.queue.totals() {
            Ok(c) => systemd::status(&systemd::status_line(
                snapshot.in_flight,
                c.pending,
                c.dead,
                self.window
                    .last_minute(snapshot.counters.totals().delivered),
                snapshot.unhealthy(),
            )),
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Publishes the counters and the endpoints' state for every reader.
    pub(super) fn publish(&self) {
        self.published.set(Snapshot {
            counters: self.counters.clone(),
            endpoints: self.endpoints.states(),
            in_flight: self.in_flight,
        });
    }

    /// Logs an endpoint's change at warning and sends it as an alert.
    pub(super) fn event(&self, ev: &Event) {
        let (event, text, endpoint) = texts::event(ev);
        log::warn!("{text}");
        if crate::message::is_origin(&endpoint) {
            return; // a plain URL's host: logged, not alerted (one per customer host is noise)
        }
        self.alerter.send(Alert {
            event,
            text,
            endpoint: Some(endpoint),
            message: None,
        });
    }

    /// The periodic info line: what the last minute did (from the published counters, as the
    /// metrics see them) and the queue now.
    pub(super) fn log_stats(&mut self) {
        self.publish();
        let totals = self.published.get().counters.totals();
        let last = totals.since(&self.logged);
        self.logged = totals;
        match self.queue.totals() {
            Ok(c) => log::info!("{}", texts::stats(&last, &c)),
            Err(e) => log::warn!("{e}"),
        }
    }
}

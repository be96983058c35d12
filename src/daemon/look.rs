//! What the dispatcher learns from the store about what other processes committed: the
//! endpoints and origins they made, which endpoints now have pending messages, and (on a queue
//! several daemons share) the breaker and disabled states that other daemons or an operator
//! changed. Each look costs what it finds, not what the store holds.

use super::dispatcher::{Dispatcher, Look};

impl Dispatcher {
    /// Learns which endpoints have pending messages (`scope`), and when the first is due.
    pub(super) fn look(&mut self, scope: Look, now: i64) {
        self.discover(now);
        let after = match scope {
            Look::New => Some(self.seen_seq),
            Look::All => None,
        };
        match self.queue.pending_endpoints(after) {
            Ok(p) => {
                self.seen_seq = self.seen_seq.max(p.seen);
                self.endpoints.pending(&p.rows);
            }
            Err(e) => {
                log::warn!("{e}");
                self.endpoints.want_all();
            }
        }
    }

    /// Learns of the endpoints the store made since it last looked (the origins of new plain
    /// URLs, above all): their messages are claimed from now on.
    pub(super) fn discover(&mut self, now: i64) {
        match self.queue.endpoint_health_after(self.endpoints.max_id()) {
            Ok(rows) if !rows.is_empty() => self.endpoints.add(rows, &self.config.endpoints, now),
            Ok(_) => {}
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Takes the endpoint states that other daemons (or an operator) changed since this daemon
    /// last looked: asked for by a notice, and every few seconds in case one was lost.
    pub(super) fn shared_health(&mut self, now: i64) {
        match self.queue.health_changes(self.endpoints.health_gen()) {
            Ok(rows) => self.adopt(&rows, now),
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Takes saved health that is newer than this daemon's (`rows`), and says what changed.
    pub(super) fn adopt(&mut self, rows: &[crate::model::Health], now: i64) {
        if rows.is_empty() {
            return;
        }
        for (name, h) in self.endpoints.adopt(rows, now) {
            let why = h
                .reason
                .as_deref()
                .unwrap_or("enabled, or closed by a successful probe");
            log::info!(
                "endpoint {name} is {} on every daemon now (another daemon's or an operator's change: {why})",
                h.state.as_str()
            );
        }
    }
}

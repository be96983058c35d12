//! One claim round of [`super::Endpoints::plan`]: what each endpoint may take of the free slots.

use super::runtime::Runtime;
use crate::model::{Claim, SharedLimits};

/// One claim round.
pub(super) struct Round {
    pub(super) claims: Vec<Claim>,
    /// The free claim slots (each offer is at most that; the store keeps the total within it),
    /// and what the failing endpoints' budget has left.
    pub(super) free: usize,
    /// Offers this round may still make.
    pub(super) offers: usize,
    pub(super) room: usize,
    pub(super) workers: usize,
    pub(super) now: i64,
}

impl Round {
    /// Offers endpoint `id` up to what it may take of all the free slots: the store claims the
    /// offers in order within the free slots, so what one endpoint leaves (it had fewer due)
    /// goes to the next in the same cycle instead of waiting for another. A round makes at most
    /// as many offers as there are free slots: each costs a statement, and endpoints that were
    /// woken but have nothing due must not all be asked in one transaction.
    pub(super) fn offer(&mut self, id: i64, rt: &mut Runtime) {
        if self.offers == 0 || !rt.has_work(self.now) {
            return;
        }
        rt.refill(self.now);
        if rt.held_by_rate(self.workers, self.now, self.room) {
            rt.rate_limited += 1;
        }
        let limit = rt.allowed(self.workers, self.now, self.room).min(self.free);
        if limit > 0 {
            if rt.degraded() {
                self.room -= limit;
            }
            // Over all daemons: the configured cap, or one at a time while it fails (a daemon's
            // slow start after its own start is its own: the others may have proven it).
            let shared = rt.config.as_ref().map(|c| SharedLimits {
                cap: if rt.degraded() {
                    1
                } else {
                    c.concurrency_with(self.workers)
                },
                rate: c.rate.as_ref().map(|r| (r.per_sec, rt.burst())),
                probe_every: (rt.health.state == crate::model::Circuit::Open)
                    .then(|| crate::time::duration_ms(rt.probe_interval)),
            });
            self.claims.push(Claim {
                endpoint: id,
                limit,
                shared,
            });
            self.offers -= 1;
        }
    }
}

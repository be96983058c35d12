//! Which endpoints a turn looks at, and the claims it makes of them.
//!
//! A turn's work grows with the endpoints that have something to do, not with every endpoint
//! known: `active` holds those that may have due messages (woken, or a retry due by now), a
//! request in flight or health to save; an endpoint whose only work is a retry due later waits
//! in `later` by its due time, and one with nothing at all is in neither. Each set is kept by
//! the methods that change what an endpoint has to do, and [`Endpoints::settle`] moves
//! endpoints between them at the start of every claim round.

use super::round::Round;
use super::Endpoints;
use crate::deliver::Job;
use crate::model::Claim;

/// Idle endpoints are taken out of the active set at most this often (each time is a walk of
/// the active set).
const SETTLE_EVERY_MS: i64 = 50;

impl Endpoints {
    /// Something new may be due everywhere (a failed look: the store could not say where).
    pub(crate) fn want_all(&mut self) {
        for (id, rt) in &mut self.by_id {
            rt.want = true;
            self.active.insert(*id);
        }
    }

    /// Endpoint `id` may have a message due now (a lane's next message was promoted).
    pub(crate) fn want(&mut self, id: i64) {
        if let Some(rt) = self.by_id.get_mut(&id) {
            rt.want = true;
            self.active.insert(id);
        }
    }

    /// Like `want`, by name (`None`: plain URLs).
    pub(crate) fn want_named(&mut self, name: Option<&str>) {
        match name {
            None => self.want(0),
            Some(n) => {
                if let Some(id) = self.by_name.get(n).copied() {
                    self.want(id);
                }
            }
        }
    }

    /// A retry of endpoint `id` is due at `due_at`.
    pub(crate) fn due(&mut self, id: i64, due_at: i64) {
        if let Some(rt) = self.by_id.get_mut(&id) {
            rt.next_due = Some(rt.next_due.map_or(due_at, |d| d.min(due_at)));
            self.active.insert(id);
        }
    }

    /// The store found pending messages: endpoint id and the earliest due time of each
    /// (`store::Queue::pending_endpoints`). Endpoints it does not know are left to `discover`.
    pub(crate) fn pending(&mut self, rows: &[(i64, i64)]) {
        for &(id, due_at) in rows {
            self.due(id, due_at);
        }
    }

    /// At start: what is pending is exactly `rows` (a look at every endpoint), so nothing else
    /// is woken.
    pub(crate) fn begin(&mut self, rows: &[(i64, i64)]) {
        for rt in self.by_id.values_mut() {
            rt.want = false;
            rt.next_due = None;
        }
        self.active.clear();
        self.later.clear();
        self.pending(rows);
    }

    /// Moves the endpoints whose retry came due into `active`, and (every `SETTLE_EVERY_MS`, a
    /// walk of them all) those left with nothing to do now out of it (into `later` when a
    /// retry is due later).
    fn settle(&mut self, now: i64) {
        while let Some(&(at, id)) = self.later.first() {
            if at > now {
                break;
            }
            self.later.pop_first();
            self.active.insert(id);
        }
        if now >= self.settled_at && now.saturating_sub(self.settled_at) < SETTLE_EVERY_MS {
            return;
        }
        self.settled_at = now;
        let later = &mut self.later;
        let by_id = &self.by_id;
        self.active.retain(|id| {
            let Some(rt) = by_id.get(id) else {
                return false;
            };
            if rt.want || rt.in_flight > 0 || rt.dirty {
                return true;
            }
            match rt.next_due {
                Some(at) if at <= now => true,
                Some(at) => {
                    later.insert((at, *id));
                    false
                }
                None => false,
            }
        });
    }

    /// How many more requests failing endpoints may have in flight: together at most a quarter
    /// of the workers (at least one), so that endpoints that time out cannot take the pool.
    fn degraded_room(&self) -> usize {
        let used: usize = self
            .flying
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .filter(|rt| rt.degraded())
            .map(|rt| rt.in_flight)
            .sum();
        (self.workers / 4).max(1).saturating_sub(used)
    }

    /// The claims to make now, with `free` claim slots in all. Each round starts one endpoint
    /// further on, so that none always goes first.
    pub(crate) fn plan(&mut self, free: usize, now: i64) -> Vec<Claim> {
        self.settle(now);
        let start = self
            .active
            .range(self.turn + 1..)
            .next()
            .or_else(|| self.active.first())
            .copied()
            .unwrap_or(0);
        self.turn = start;
        let mut round = Round {
            claims: Vec::new(),
            free,
            offers: free,
            room: self.degraded_room(),
            workers: self.workers,
            now,
        };
        let ids = self.active.range(start..).chain(self.active.range(..start));
        for id in ids {
            if round.offers == 0 {
                break;
            }
            if let Some(rt) = self.by_id.get_mut(id) {
                round.offer(*id, rt);
            }
        }
        round.claims
    }

    /// Accounts for what a planned round claimed: in-flight counts, tokens, and what is due next.
    pub(crate) fn claimed(&mut self, jobs: &[Job], next_due: &[(i64, Option<i64>)]) {
        for job in jobs {
            if let Some(rt) = self.by_id.get_mut(&job.endpoint) {
                rt.in_flight += 1;
                if rt.config.as_ref().is_some_and(|c| c.rate.is_some()) {
                    rt.tokens -= 1.0;
                }
                self.active.insert(job.endpoint);
                self.flying.insert(job.endpoint);
            }
        }
        for (id, due) in next_due {
            if let Some(rt) = self.by_id.get_mut(id) {
                rt.want = false;
                rt.next_due = *due;
            }
        }
    }

    /// A claimed job went back to pending without an attempt (shutdown).
    pub(crate) fn released(&mut self, id: i64) {
        if let Some(rt) = self.by_id.get_mut(&id) {
            rt.in_flight = rt.in_flight.saturating_sub(1);
            if rt.in_flight == 0 {
                self.flying.remove(&id);
            }
        }
    }

    /// Whether any endpoint can be claimed right now.
    pub(crate) fn ready(&self, now: i64) -> bool {
        let room = self.degraded_room();
        self.candidates(now)
            .any(|rt| rt.has_work(now) && rt.allowed(self.workers, now, room) > 0)
    }

    /// Whether some endpoint has work due by `soon` (ms) that requests in flight hold back: its
    /// own (its cap, an open breaker's probe) or, for a failing endpoint, the failing endpoints'
    /// shared budget. An attempt that finished frees its slot only once recorded, so then it must
    /// not wait. Looks at the endpoints in flight and at those with work due, not at all of them.
    pub(crate) fn waits_for_flight(&self, now: i64, soon: i64) -> bool {
        let room = self.degraded_room();
        let held = |rt: &super::runtime::Runtime| {
            rt.has_work(soon) && rt.allowed(self.workers, now, room) == 0
        };
        let by_own = self
            .flying
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .any(held);
        by_own || room == 0 && self.candidates(soon).any(|rt| rt.degraded() && held(rt))
    }

    /// The earliest time (ms) at which some endpoint held back by time can be claimed.
    pub(crate) fn next_ready(&self, now: i64) -> Option<i64> {
        let room = self.degraded_room();
        let soonest = self
            .candidates(now)
            .filter_map(|rt| {
                if rt.config.is_none() && rt.health.id == 0 {
                    return if rt.want { Some(now) } else { rt.next_due };
                }
                rt.ready_at(self.workers, now, room)
            })
            .min();
        // The next retry due later wakes the dispatcher (its endpoint is judged then).
        let later = self.later.first().map(|&(at, _)| at);
        soonest.into_iter().chain(later).min()
    }

    /// The endpoints that may be claimed at `now`: the active ones and those whose retry came
    /// due since the last round.
    fn candidates(&self, now: i64) -> impl Iterator<Item = &super::runtime::Runtime> {
        let due = self.later.iter().take_while(move |&&(at, _)| at <= now);
        self.active
            .iter()
            .chain(due.map(|(_, id)| id))
            .filter_map(|id| self.by_id.get(id))
    }
}

//! An endpoint's concurrency cap and rate over every daemon of the queue.
//!
//! One daemon keeps its endpoints' limits in memory (`deliver::endpoints`); several daemons on
//! one PostgreSQL queue each keep theirs too, and the claim also checks the shared ones, in the
//! cycle's transaction, under the endpoint's row lock (`FOR UPDATE`: daemons claiming the same
//! endpoint take turns, for the length of one claim):
//! - the cap: the endpoint's messages in flight, at most the cap: this daemon's own (`Held`) plus
//!   those that the other live daemons hold, each a row of `claims_held` (endpoint, daemon,
//!   count) that its daemon writes in its cycles. Counting the in-flight rows of `messages`
//!   instead walked the index entries of every message claimed since the last vacuum (6 ms per
//!   claim during a drain of 200,000, half of the drain's time: BENCHMARKS.md);
//! - the rate: a token bucket kept in the endpoint's row (`tokens`, `refilled_at`), refilled by
//!   the time since the last claim and spent by what is claimed;
//! - an open breaker's probe: one per probe interval over all daemons (`probe_at`, when the
//!   next one may go; the state itself is shared by `endpoints::SAVE_HEALTH`).
//!
//! A claim held back by a shared limit reports the endpoint as due again a little later (when a
//! token is back, or after `HELD_RETRY_MS` for the cap), so its daemon tries again without
//! spinning.

use std::collections::{HashMap, HashSet};

use postgres::Transaction;

use super::{Prepared, R};
use crate::model::SharedLimits;

/// When a daemon tries again an endpoint whose cap other daemons fill.
const HELD_RETRY_MS: i64 = 50;

/// The endpoint's bucket, under its row lock; a row another daemon's cycle holds is skipped
/// (waiting for it, daemons locking endpoints in different orders deadlocked: a second's stall
/// and a failed cycle each time), and the claim tried again in `HELD_RETRY_MS`.
const LOCK: &str =
    "SELECT tokens, refilled_at, probe_at FROM endpoints WHERE id = $1 FOR UPDATE SKIP LOCKED";
/// Its messages in flight with the other daemons seen since $3: a statement of its own, after the
/// lock. In the lock's statement the count would read the snapshot taken before the lock was
/// granted, without the claims of the daemon that held it (seen: 5 in flight for a cap of 2).
/// A daemon gone (not seen for two leases: its claims were taken over) no longer counts.
const IN_FLIGHT: &str = "SELECT COALESCE(sum(h.n), 0)::bigint FROM claims_held h
     JOIN daemons d ON d.instance = h.owner
     WHERE h.endpoint = $1 AND h.owner <> $2 AND d.seen_at >= $3";
/// This daemon's counts that changed ($1: the daemon, $2 endpoints, $3 counts).
const PUBLISH: &str = "INSERT INTO claims_held (endpoint, owner, n)
     SELECT e, $1, n FROM unnest($2::bigint[], $3::bigint[]) AS u(e, n)
     ON CONFLICT (endpoint, owner) DO UPDATE SET n = excluded.n";
const SPEND: &str = "UPDATE endpoints SET tokens = $2, refilled_at = $3 WHERE id = $1";
const PROBED: &str = "UPDATE endpoints SET probe_at = $2 WHERE id = $1";

/// What the shared limits allow one claim.
#[derive(Debug, Default)]
pub(super) struct Allowance {
    pub(super) limit: usize,
    /// The tokens in the bucket now (rate-limited endpoints).
    tokens: Option<f64>,
    /// When the next probe may go, if this claim is an open breaker's probe.
    probe_at: Option<i64>,
    /// When to try again, if a shared limit holds the claim back entirely.
    pub(super) retry_at: Option<i64>,
}

/// Who asks, for the cap: the daemon, its own claims of the endpoint now, and since when another
/// daemon must have been seen to count.
pub(super) struct Mine {
    pub(super) owner: i64,
    pub(super) own: i64,
    pub(super) seen_since: i64,
}

/// The claims a daemon holds (claimed, not yet recorded or released) by seq, with their
/// endpoints, and the counts per endpoint it last wrote to `claims_held`.
#[derive(Debug, Default)]
pub(crate) struct Held {
    by_seq: HashMap<i64, i64>,
    published: HashMap<i64, i64>,
}

impl Held {
    pub(super) fn seqs(&self) -> Vec<i64> {
        self.by_seq.keys().copied().collect()
    }

    /// Claims per endpoint once `gone` (recorded or released in this cycle) are not held.
    pub(super) fn counts_without(&self, gone: &HashSet<i64>) -> HashMap<i64, i64> {
        let mut counts = HashMap::new();
        for (seq, endpoint) in &self.by_seq {
            if !gone.contains(seq) {
                *counts.entry(*endpoint).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Writes the counts that differ from those last written, in the cycle's transaction.
    pub(super) fn publish(
        &self,
        tx: &mut Transaction<'_>,
        p: &Prepared,
        owner: i64,
        counts: &HashMap<i64, i64>,
    ) -> R<()> {
        let (mut ids, mut ns) = (Vec::new(), Vec::new());
        let ended = self.published.keys().filter(|e| !counts.contains_key(e));
        for e in ended {
            ids.push(*e);
            ns.push(0_i64);
        }
        for (e, n) in counts {
            if self.published.get(e) != Some(n) {
                ids.push(*e);
                ns.push(*n);
            }
        }
        if !ids.is_empty() {
            let publish = p.get(tx, PUBLISH)?;
            tx.execute(&publish, &[&owner, &ids, &ns])?;
        }
        Ok(())
    }

    /// The cycle committed: `gone` left, `jobs` were claimed, `counts` are written.
    pub(super) fn committed(
        &mut self,
        gone: &HashSet<i64>,
        jobs: &[crate::model::Job],
        counts: HashMap<i64, i64>,
    ) {
        self.by_seq.retain(|seq, _| !gone.contains(seq));
        self.by_seq.extend(jobs.iter().map(|j| (j.seq, j.endpoint)));
        self.published = counts;
    }

    /// Every claim was given up (shutdown): nothing held, nothing to renew.
    pub(super) fn clear(&mut self) {
        self.by_seq.clear();
    }
}

/// Locks endpoint `id`'s row and says how many of `wanted` the shared limits allow.
pub(super) fn allow(
    tx: &mut Transaction<'_>,
    p: &Prepared,
    (id, limits): (i64, &SharedLimits),
    wanted: usize,
    mine: &Mine,
    now: i64,
) -> R<Allowance> {
    let lock = p.get(tx, LOCK)?;
    let Some(row) = tx.query_opt(&lock, &[&id])? else {
        // Another daemon is claiming this endpoint now (every endpoint that is claimed has a
        // row): after it.
        return Ok(Allowance {
            limit: 0,
            retry_at: Some(now + HELD_RETRY_MS),
            ..Allowance::default()
        });
    };
    let in_flight = p.get(tx, IN_FLIGHT)?;
    let others: i64 = tx
        .query_one(&in_flight, &[&id, &mine.owner, &mine.seen_since])?
        .try_get(0)?;
    let in_flight = others.saturating_add(mine.own);
    let room = limits
        .cap
        .saturating_sub(usize::try_from(in_flight).unwrap_or(usize::MAX));
    let mut a = Allowance {
        limit: wanted.min(room),
        tokens: None,
        probe_at: None,
        retry_at: (room == 0).then_some(now + HELD_RETRY_MS),
    };
    if let Some(every) = limits.probe_every {
        // Another daemon probed the open endpoint lately: its answer will do for all.
        match row.try_get::<_, Option<i64>>(2)? {
            Some(at) if at > now => {
                a.limit = 0;
                a.retry_at = Some(a.retry_at.unwrap_or(now).max(at));
            }
            _ => a.probe_at = Some(now.saturating_add(every)),
        }
    }
    if let Some((per_sec, burst)) = limits.rate {
        let (tokens, at): (Option<f64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let tokens = match (tokens, at) {
            (Some(t), Some(at)) => (t + (now - at).max(0) as f64 / 1000.0 * per_sec).min(burst),
            _ => burst,
        };
        let whole = tokens.floor().max(0.0) as usize;
        a.limit = a.limit.min(whole);
        if whole == 0 {
            let wait = ((1.0 - tokens) / per_sec * 1000.0).ceil() as i64;
            a.retry_at = Some(a.retry_at.unwrap_or(now).max(now + wait.max(1)));
        }
        a.tokens = Some(tokens);
    }
    Ok(a)
}

/// Spends a token per message claimed from the bucket `allow` read.
pub(super) fn spend(
    tx: &mut Transaction<'_>,
    p: &Prepared,
    id: i64,
    a: &Allowance,
    claimed: usize,
    now: i64,
) -> R<()> {
    if let Some(tokens) = a.tokens {
        let left = (tokens - claimed as f64).max(0.0);
        let spend = p.get(tx, SPEND)?;
        tx.execute(&spend, &[&id, &left, &now])?;
    }
    if let Some(at) = a.probe_at.filter(|_| claimed > 0) {
        let probed = p.get(tx, PROBED)?;
        tx.execute(&probed, &[&id, &at])?;
    }
    Ok(())
}

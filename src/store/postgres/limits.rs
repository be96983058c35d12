//! An endpoint's concurrency cap and rate over every daemon of the queue.
//!
//! One daemon keeps its endpoints' limits in memory (`deliver::endpoints`); several daemons on
//! one PostgreSQL queue each keep theirs too, and the claim also checks the shared ones, in the
//! cycle's transaction, under the endpoint's row lock (`FOR UPDATE`: daemons claiming the same
//! endpoint take turns, for the length of one claim):
//! - the cap: the endpoint's messages in flight, counted on the state index (at most the cap);
//! - the rate: a token bucket kept in the endpoint's row (`tokens`, `refilled_at`), refilled by
//!   the time since the last claim and spent by what is claimed;
//! - an open breaker's probe: one per probe interval over all daemons (`probe_at`, when the
//!   next one may go; the state itself is shared by `queue::SAVE_HEALTH`).
//!
//! A claim held back by a shared limit reports the endpoint as due again a little later (when a
//! token is back, or after `HELD_RETRY_MS` for the cap), so its daemon tries again without
//! spinning.

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
/// Its messages in flight: a statement of its own, after the lock. In the lock's statement the
/// count would read the snapshot taken before the lock was granted, without the claims of the
/// daemon that held it (seen: 5 in flight for a cap of 2).
const IN_FLIGHT: &str = "SELECT count(*) FROM messages WHERE state = 1 AND endpoint = $1";
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

/// Locks endpoint `id`'s row and says how many of `wanted` the shared limits allow.
pub(super) fn allow(
    tx: &mut Transaction<'_>,
    p: &Prepared,
    id: i64,
    limits: &SharedLimits,
    wanted: usize,
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
    let in_flight: i64 = tx.query_one(&in_flight, &[&id])?.try_get(0)?;
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

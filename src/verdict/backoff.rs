//! Pure retry-delay arithmetic: exponential from `base_delay`, capped at `max_delay`, with jitter.
//!
//! No I/O and no clock: the caller passes the random unit so the table tests are exact.

use std::time::Duration;

use crate::config::RetryPolicy;

/// Jitter spreads each delay over [80%, 120%] of its nominal value, so that a burst of failures
/// does not come back as a burst of retries.
const JITTER_LOW: f64 = 0.8;
const JITTER_SPAN: f64 = 0.4;

/// The delay before the next attempt, after `attempts_made` (>= 1) failed attempts.
///
/// `retry_after` (from a 429/503 `Retry-After`) replaces the computed delay; both are capped at
/// `max_delay`. `unit` is a random number in [0, 1).
pub(crate) fn next_delay(
    policy: &RetryPolicy,
    attempts_made: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(policy.max_delay);
    }
    let nominal = 2u32
        .checked_pow(attempts_made.saturating_sub(1))
        .and_then(|m| policy.base_delay.checked_mul(m))
        .map_or(policy.max_delay, |d| d.min(policy.max_delay));
    nominal
        .mul_f64(JITTER_LOW + JITTER_SPAN * unit.clamp(0.0, 1.0))
        .min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 15,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(6 * 3600),
        }
    }

    #[test]
    fn doubles_from_base_at_mid_jitter() {
        let p = policy();
        for (n, secs) in [(1, 5), (2, 10), (3, 20), (4, 40), (10, 2560)] {
            assert_eq!(
                next_delay(&p, n, None, 0.5),
                Duration::from_secs(secs),
                "attempt {n}"
            );
        }
    }

    #[test]
    fn capped_at_max_delay_even_with_upward_jitter() {
        let p = policy();
        for n in [14, 15, 32, 40, 1000, u32::MAX] {
            assert_eq!(next_delay(&p, n, None, 0.999), p.max_delay, "attempt {n}");
        }
    }

    #[test]
    fn jitter_stays_within_20_percent() {
        let p = policy();
        assert_eq!(next_delay(&p, 2, None, 0.0), Duration::from_secs(8));
        assert_eq!(next_delay(&p, 2, None, 1.0), Duration::from_secs(12));
    }

    #[test]
    fn retry_after_overrides_backoff_but_is_capped() {
        let p = policy();
        assert_eq!(
            next_delay(&p, 1, Some(Duration::from_secs(120)), 0.3),
            Duration::from_secs(120)
        );
        assert_eq!(
            next_delay(&p, 1, Some(Duration::from_secs(86400)), 0.3),
            p.max_delay
        );
        assert_eq!(next_delay(&p, 3, Some(Duration::ZERO), 0.3), Duration::ZERO);
    }
}

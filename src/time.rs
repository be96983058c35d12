//! Time as webhookd stores and shows it: milliseconds since the Unix epoch (every stored
//! timestamp), RFC 3339 UTC text (every time shown). A leaf. Durations inside are
//! `std::time::Duration`; text like "500ms" is parsed in `check`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch of `t` (0 before the epoch).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration in milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An RFC 3339 UTC time with milliseconds, from stored Unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_round_trip_to_text() {
        assert_eq!(rfc3339(1_800_000_000_000), "2027-01-15T08:00:00.000Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(duration_ms(Duration::from_secs(2)), 2000);
        assert_eq!(to_ms(UNIX_EPOCH + Duration::from_millis(7)), 7);
    }
}

//! Which messages an operator means: the filters that `list`, `cancel`, `dlq retry|delete` and
//! `replay` share. Parsed and validated here (pure: the current time is passed in); the store
//! turns a [`Filter`] into index range scans (see `store::list`).

use std::time::Duration;

use uuid::Uuid;

/// A state as an operator names it. `Scheduled` is the part of `Pending` due later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StateName {
    Pending,
    Scheduled,
    InFlight,
    Waiting,
    Delivered,
    Dead,
    Cancelled,
}

impl StateName {
    pub(crate) const ALL: [StateName; 7] = [
        StateName::Pending,
        StateName::Scheduled,
        StateName::InFlight,
        StateName::Waiting,
        StateName::Delivered,
        StateName::Dead,
        StateName::Cancelled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StateName::Pending => "pending",
            StateName::Scheduled => "scheduled",
            StateName::InFlight => "in_flight",
            StateName::Waiting => "waiting",
            StateName::Delivered => "delivered",
            StateName::Dead => "dead",
            StateName::Cancelled => "cancelled",
        }
    }

    /// Parses a state name (`in-flight` is accepted for `in_flight`).
    ///
    /// # Errors
    /// A message listing the valid names.
    pub(crate) fn parse(s: &str) -> Result<StateName, String> {
        let s = s.trim().replace('-', "_");
        StateName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?} (expected one of {})",
                    StateName::ALL.map(StateName::as_str).join(", ")
                )
            })
    }
}

/// The last attempt's HTTP status: one code, or a class (`4xx`, `5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusRange {
    pub(crate) low: u16,
    pub(crate) high: u16,
}

impl StatusRange {
    /// Parses `404`, `4xx` or `5xx` (any class 1xx..5xx).
    ///
    /// # Errors
    /// A message naming the value.
    pub(crate) fn parse(s: &str) -> Result<StatusRange, String> {
        let t = s.trim().to_ascii_lowercase();
        if let Some(class) = t.strip_suffix("xx") {
            if let Ok(c @ 1..=5) = class.parse::<u16>() {
                return Ok(StatusRange {
                    low: c * 100,
                    high: c * 100 + 99,
                });
            }
        } else if let Ok(code @ 100..=599) = t.parse::<u16>() {
            return Ok(StatusRange {
                low: code,
                high: code,
            });
        }
        Err(format!(
            "invalid status {s:?}: expected an HTTP status code (e.g. 503) or a class (4xx, 5xx)"
        ))
    }
}

/// The messages a command applies to. Every field narrows the selection; `states` empty means
/// the command's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Filter {
    pub(crate) states: Vec<StateName>,
    pub(crate) endpoint: Option<String>,
    /// Plain-URL messages whose URL starts with this.
    pub(crate) url_prefix: Option<String>,
    pub(crate) key: Option<String>,
    /// Created at or after this time (ms since the epoch).
    pub(crate) since: Option<i64>,
    /// Created before this time (ms since the epoch).
    pub(crate) until: Option<i64>,
    /// The last attempt's HTTP status.
    pub(crate) status: Option<StatusRange>,
    /// Text in the last attempt's error (HTTP status line and response excerpt, or transport
    /// error), case-insensitive.
    pub(crate) error: Option<String>,
    /// Deliveries of events of this type.
    pub(crate) event: Option<String>,
    /// Messages of the endpoints of this tenant.
    pub(crate) tenant: Option<String>,
}

impl Filter {
    /// The states to look at: those given, else `default`; each must be in `allowed`.
    ///
    /// # Errors
    /// A message naming a state the command cannot act on.
    pub(crate) fn states_within(
        &self,
        default: &[StateName],
        allowed: &[StateName],
    ) -> Result<Vec<StateName>, String> {
        if self.states.is_empty() {
            return Ok(default.to_vec());
        }
        if let Some(bad) = self.states.iter().find(|s| !allowed.contains(s)) {
            return Err(format!(
                "--state {}: this command acts only on {}",
                bad.as_str(),
                allowed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut states = self.states.clone();
        states.sort();
        states.dedup();
        Ok(states)
    }
}

/// Parses a point in time: RFC 3339 (`2026-12-01T10:00:00Z`, a date and time without zone is
/// UTC) or a duration ago (`2h`, `90m`, `7d`). `now` in ms since the epoch.
///
/// # Errors
/// A message naming the value.
pub(crate) fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    let bad = || {
        format!("invalid time {s:?}: expected RFC 3339 (2026-12-01T10:00:00Z, 2026-12-01T11:00:00+01:00) or a duration ago (2h, 7d)")
    };
    // humantime reads UTC (or no zone); an offset is applied here.
    let (local, offset_ms) = match split_offset(t) {
        Some((local, offset)) => (local, offset),
        None => (t, 0),
    };
    let at = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    Ok(i64::try_from(ms).unwrap_or(i64::MAX) - offset_ms)
}

/// Splits `2026-12-01T11:00:00+01:00` into the local time and the offset (ms east of UTC).
fn split_offset(t: &str) -> Option<(&str, i64)> {
    let at = t.len().checked_sub(6)?;
    if !t.is_char_boundary(at) {
        return None;
    }
    let (local, offset) = t.split_at(at);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = offset[1..].split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if !local.contains('T') && !local.contains(' ') || h > 23 || m > 59 {
        return None;
    }
    Some((local, sign * (h * 3600 + m * 60) * 1000))
}

/// The smallest UUIDv7 of a message created at `ms`: uuids at or above it were created then or
/// later (a UUIDv7 starts with its creation time in ms).
pub(crate) fn uuid_at(ms: i64) -> Uuid {
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The creation time (ms) carried by a UUIDv7.
pub(crate) fn uuid_ms(uuid: &Uuid) -> i64 {
    let b = uuid.as_bytes();
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&b[..6]);
    i64::try_from(u64::from_be_bytes(ms)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_are_listed_when_unknown() {
        assert_eq!(StateName::parse("in-flight"), Ok(StateName::InFlight));
        assert_eq!(StateName::parse("dead"), Ok(StateName::Dead));
        let e = StateName::parse("gone").unwrap_err();
        assert!(e.contains("pending") && e.contains("cancelled"), "{e}");
    }

    #[test]
    fn status_codes_and_classes() {
        assert_eq!(
            StatusRange::parse("5xx"),
            Ok(StatusRange {
                low: 500,
                high: 599
            })
        );
        assert_eq!(
            StatusRange::parse("404"),
            Ok(StatusRange {
                low: 404,
                high: 404
            })
        );
        for bad in ["6xx", "0", "99", "600", "xx", "4x", "abc"] {
            assert!(StatusRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("2027-01-15T08:00:00Z", now), Ok(now));
        assert_eq!(parse_time("2027-01-15T08:00:00", now), Ok(now));
        assert_eq!(parse_time("2027-01-15T07:00:00Z", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("2027-01-15T09:00:00+01:00", now), Ok(now));
        assert_eq!(parse_time("2027-01-15T02:30:00-05:30", now), Ok(now));
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn uuid_bounds_follow_creation_time() {
        let u = Uuid::now_v7();
        let ms = uuid_ms(&u);
        assert!(uuid_at(ms) <= u && u < uuid_at(ms + 1));
        assert_eq!(uuid_ms(&uuid_at(ms)), ms);
    }

    #[test]
    fn states_within_the_command() {
        let f = Filter {
            states: vec![StateName::Delivered],
            ..Filter::default()
        };
        assert!(f
            .states_within(&[StateName::Dead], &[StateName::Dead])
            .is_err());
        assert_eq!(
            Filter::default().states_within(&[StateName::Dead], &[StateName::Dead]),
            Ok(vec![StateName::Dead])
        );
    }
}

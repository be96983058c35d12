//! Validation of every value an operator or an application gives: URLs, paths, names, methods,
//! headers, keys, durations, rates, attempt budgets. A leaf: pure functions, no I/O, nothing of
//! webhookd's own but this file.
//!
//! Each check returns the value (normalised where it must be, e.g. a trimmed header) or an
//! [`Invalid`] that carries the field it was about and the reason, so that a command line, a JSON
//! line and (later) an API answer can each name the field their own way.

use std::time::Duration;

use http::Uri;

/// Headers webhookd sets itself or that would break HTTP framing; a message may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];
/// Idempotency and ordering keys longer than this are refused (they are stored and indexed).
pub(crate) const MAX_KEY_LEN: usize = 512;
/// URLs longer than this are refused.
const MAX_URL_LEN: usize = 8192;
/// Endpoint names are at most this long.
const MAX_NAME_LEN: usize = 64;
/// Attempt budgets: 1 to this.
pub(crate) const MAX_ATTEMPTS_LIMIT: u32 = 1000;

/// A value that was refused: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub(crate) struct Invalid {
    /// The field as the caller names it (`url`, `headers.X-A`, `--delay`, `endpoints.b.rate`).
    pub(crate) field: String,
    pub(crate) reason: String,
}

impl Invalid {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

type Check<T = ()> = Result<T, Invalid>;

/// An absolute http:// or https:// URL that can be requested: a host, and a port in 1..=65535
/// if one is given.
///
/// # Errors
/// `Invalid` naming the URL and the problem.
pub(crate) fn url(field: &str, url: &str) -> Check {
    let bad = |why: &str| Err(Invalid::new(field, format!("invalid URL {url:?}: {why}")));
    if url.is_empty() {
        return bad("empty");
    }
    if url.len() > MAX_URL_LEN {
        return bad(&format!("longer than {MAX_URL_LEN} bytes"));
    }
    if let Some(c) = url
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == ' ')
    {
        return bad(&format!("{c:?} is not allowed in a URL: percent-encode it"));
    }
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(_) if url.ends_with("://") => return bad("no host"),
        Err(e) => return bad(&e.to_string()),
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return bad("scheme must be http or https"),
        None => return bad("must be absolute (http://host/... or https://host/...)"),
    }
    match uri.host() {
        None | Some("") => return bad("no host"),
        Some(_) => {}
    }
    // `http::Uri` takes any digits as a port: 0 and values above 65535 are refused here, not at
    // delivery.
    if let Some(authority) = uri.authority() {
        let after_host = &authority.as_str()[authority.as_str().rfind(']').unwrap_or(0)..];
        if let Some((_, port)) = after_host.rsplit_once(':') {
            match port.parse::<u16>() {
                Ok(1..) => {}
                _ if port.is_empty() => return bad("empty port after ':'"),
                _ => return bad(&format!("port {port} is not in 1..=65535")),
            }
        }
    }
    if !url.contains("://") {
        return bad("must be absolute (http://host/... or https://host/...)");
    }
    Ok(())
}

/// An endpoint name: 1 to 64 letters, digits, `-`, `_` or `.`.
///
/// # Errors
/// `Invalid` naming the problem.
pub(crate) fn endpoint_name(field: &str, name: &str) -> Check {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Invalid::new(
            field,
            format!(
                "invalid endpoint name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            ),
        ));
    }
    Ok(())
}

/// Tenants and event types are at most this long.
pub(crate) const MAX_TAG_LEN: usize = 128;

/// A tenant id (a customer, an application): 1 to 128 bytes of printable ASCII, no spaces.
///
/// # Errors
/// `Invalid` naming the problem.
pub(crate) fn tenant(field: &str, tenant: &str) -> Check {
    if tenant.is_empty()
        || tenant.len() > MAX_TAG_LEN
        || !tenant.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Invalid::new(
            field,
            format!("invalid tenant {tenant:?}: use 1 to {MAX_TAG_LEN} printable ASCII characters without spaces"),
        ));
    }
    Ok(())
}

/// An event type (`invoice.paid`): 1 to 128 letters, digits, `.`, `_`, `-` or `:`.
///
/// # Errors
/// `Invalid` naming the problem.
pub(crate) fn event_type(field: &str, event: &str) -> Check {
    if event.is_empty()
        || event.len() > MAX_TAG_LEN
        || !event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
    {
        return Err(Invalid::new(
            field,
            format!("invalid event type {event:?}: use 1 to {MAX_TAG_LEN} letters, digits, '.', '_', '-' or ':'"),
        ));
    }
    Ok(())
}

/// A subscription pattern: an event type (`invoice.paid`), a prefix ending in `.*`
/// (`invoice.*`: every type that starts with `invoice.`), or `*` (every type).
///
/// # Errors
/// `Invalid` naming the problem.
pub(crate) fn event_pattern(field: &str, pattern: &str) -> Check {
    if pattern == "*" {
        return Ok(());
    }
    let exact = pattern.strip_suffix(".*").unwrap_or(pattern);
    event_type(field, exact).map_err(|_| {
        Invalid::new(
            field,
            format!("invalid event pattern {pattern:?}: an event type (invoice.paid), a prefix (invoice.*) or *"),
        )
    })
}

/// A path to append to an endpoint's URL: it starts with `/` (a query may follow).
///
/// # Errors
/// `Invalid` naming the problem.
pub(crate) fn path(field: &str, path: &str) -> Check {
    if !path.starts_with('/') {
        return Err(Invalid::new(
            field,
            format!("invalid path {path:?}: must start with '/'"),
        ));
    }
    Ok(())
}

/// An HTTP method webhookd can send: a token (RFC 9110 5.6.2), not CONNECT.
///
/// # Errors
/// `Invalid` naming the method.
pub(crate) fn method(field: &str, method: &str) -> Check {
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Invalid::new(
            field,
            format!("invalid HTTP method {method:?}: must be a token such as POST or PUT"),
        ));
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Invalid::new(
            field,
            "method CONNECT cannot be used for a webhook",
        ));
    }
    Ok(())
}

/// A `Name: value` header argument, split and checked as [`header`] does.
///
/// # Errors
/// `Invalid` when there is no colon, or as for [`header`].
pub(crate) fn header_arg(field: &str, arg: &str) -> Check<(String, String)> {
    let Some((name, value)) = arg.split_once(':') else {
        return Err(Invalid::new(
            field,
            format!("invalid header {:?}: expected 'Name: value'", shorten(arg)),
        ));
    };
    header(field, name, value)
}

/// A header a message may carry, given as a name and a value; both are trimmed.
///
/// # Errors
/// `Invalid` when the name is not a token, the value has CR, LF, NUL or another control
/// character, or the header is one webhookd sets itself or that belongs to HTTP framing.
pub(crate) fn header(field: &str, name: &str, value: &str) -> Check<(String, String)> {
    let (name, value) = (name.trim(), value.trim());
    let bad = |reason: String| Err(Invalid::new(field, reason));
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return bad(format!(
            "invalid header name {:?}: must be a token (letters, digits, !#$%&'*+-.^_`|~)",
            shorten(name)
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return bad(format!(
            "invalid value for header {name}: CR, LF and NUL are not allowed"
        ));
    }
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return bad(format!(
            "invalid value for header {name}: control characters are not allowed"
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
    {
        return bad(format!(
            "header {name} is set by webhookd or by HTTP itself and cannot be given"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// An idempotency or ordering key: 1 to 512 bytes.
///
/// # Errors
/// `Invalid` naming the limit.
pub(crate) fn key(field: &str, what: &str, key: &str) -> Check {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Invalid::new(
            field,
            format!("{what} must be 1 to {MAX_KEY_LEN} bytes long"),
        ));
    }
    Ok(())
}

/// A duration: `100ms`, `5s`, `10m`, `6h`, `7d`, or combined (`1h 30m`).
///
/// # Errors
/// `Invalid` naming the value.
pub(crate) fn duration(field: &str, s: &str) -> Check<Duration> {
    humantime::parse_duration(s.trim())
        .map_err(|e| Invalid::new(field, format!("invalid duration {s:?}: {e}")))
}

/// A delay from now: a duration, never negative.
///
/// # Errors
/// `Invalid` naming the value.
pub(crate) fn delay(field: &str, s: &str) -> Check<Duration> {
    if s.trim().starts_with('-') {
        return Err(Invalid::new(
            field,
            format!("{s:?} is negative; a delay is a duration from now, e.g. 90s"),
        ));
    }
    duration(field, s)
}

/// An attempt budget: 1 to 1000.
///
/// # Errors
/// `Invalid` naming the value.
pub(crate) fn max_attempts(field: &str, n: u32) -> Check<u32> {
    if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(Invalid::new(
            field,
            format!("{n} is out of range 1..={MAX_ATTEMPTS_LIMIT}"),
        ))
    }
}

/// A token-bucket rate: `per_sec` requests a second on average.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rate {
    pub(crate) per_sec: f64,
    pub(crate) text: String,
}

impl Rate {
    /// Parses `N/s`, `N/m` or `N/h` (N may have a fraction).
    ///
    /// # Errors
    /// `Invalid` naming the problem.
    pub(crate) fn parse(field: &str, s: &str) -> Check<Rate> {
        let bad = || {
            Invalid::new(
                field,
                format!("invalid rate {s:?}: expected N/s, N/m or N/h, e.g. \"50/s\""),
            )
        };
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let n: f64 = n.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(bad()),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(Invalid::new(
                field,
                format!("invalid rate {s:?}: must be more than 0"),
            ));
        }
        Ok(Rate {
            per_sec: n / secs,
            text: s.trim().to_owned(),
        })
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:8080/hook",
            "https://example.com",
            "https://example.com/a?b=c#d",
            "http://[::1]:9/x",
        ] {
            assert!(url("url", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("example.com/hook", ""),
            ("/hook", "absolute"),
            ("ftp://example.com/", "scheme"),
            ("http://", "no host"),
            ("http:///path", ""),
            ("http://exa mple.com/", ""),
            ("https://example.com/\r\nX: y", ""),
            ("mailto:a@b", ""),
            ("http://127.0.0.1:99999/x", "port 99999"),
            ("http://127.0.0.1:0/x", "port 0"),
            ("http://127.0.0.1:/x", "empty port"),
            ("http://h/\u{202e}gpj.exe", "percent-encode"),
            ("http://h/caf\u{e9}", "percent-encode"),
        ] {
            let e = url("url", bad).unwrap_err();
            assert_eq!(e.field, "url");
            assert!(e.reason.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn headers_parse_and_reject() {
        assert_eq!(
            header_arg("-H", "Content-Type:  application/json ").unwrap(),
            ("Content-Type".into(), "application/json".into())
        );
        assert_eq!(header_arg("-H", "X-Empty:").unwrap().1, "");
        for bad in [
            "NoColon",
            "Bad Name: x",
            ": x",
            "X-Inject: a\r\nEvil: 1",
            "X-Lf: a\nb",
            "X-Nul: a\0b",
            "Content-Length: 5",
            "webhook-id: x",
        ] {
            let e = header_arg("-H", bad).unwrap_err();
            assert_eq!(e.field, "-H", "{bad:?}");
        }
    }

    #[test]
    fn tenants_event_types_and_patterns() {
        assert!(tenant("t", "acme-42:eu").is_ok());
        for bad in ["", "a b", "a\tb", "é", &"x".repeat(129)] {
            assert!(tenant("t", bad).is_err(), "{bad:?}");
        }
        for ok in ["invoice.paid", "invoice.*", "*", "a:b_c-d"] {
            assert!(event_pattern("e", ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "in voice",
            "invoice*",
            "*.paid",
            "invoice.**",
            ".*",
            "a/b",
        ] {
            let e = event_pattern("events[0]", bad).unwrap_err();
            assert_eq!(e.field, "events[0]", "{bad:?}");
        }
        assert!(
            event_type("e", "invoice.*").is_err(),
            "a type is not a pattern"
        );
    }

    #[test]
    fn methods() {
        for ok in ["POST", "PUT", "PATCH", "DELETE", "GET", "PURGE"] {
            assert!(method("method", ok).is_ok(), "{ok}");
        }
        for bad in ["", "PO ST", "POST\r\n", "GET/", "CONNECT"] {
            assert!(method("method", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("rate", "50/s").unwrap().per_sec, 50.0);
        assert_eq!(Rate::parse("rate", "120/m").unwrap().per_sec, 2.0);
        assert_eq!(Rate::parse("rate", " 36 / h ").unwrap().per_sec, 0.01);
        for bad in ["50", "0/s", "-1/s", "x/s", "5/d", "inf/s"] {
            assert!(Rate::parse("rate", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_delays_and_budgets() {
        for (s, d) in [
            ("100ms", Duration::from_millis(100)),
            ("5s", Duration::from_secs(5)),
            ("10m", Duration::from_secs(600)),
            ("6h", Duration::from_secs(21600)),
            ("7d", Duration::from_secs(7 * 86400)),
        ] {
            assert_eq!(duration("d", s).unwrap(), d, "{s}");
        }
        assert!(delay("--delay", "-5s")
            .unwrap_err()
            .reason
            .contains("negative"));
        assert!(duration("--delay", "5").is_err());
        assert_eq!(max_attempts("n", 1000), Ok(1000));
        assert!(max_attempts("n", 0).is_err());
        assert!(endpoint_name("name", "bad name").is_err());
        assert!(path("path", "v2").is_err());
        assert!(key("--key", "key", &"k".repeat(513)).is_err());
    }
}

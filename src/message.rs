//! A message as an operator gives it, validated before anything is stored: method, URL, headers,
//! body, idempotency key, delay and attempt budget. Pure checks, no I/O.
//!
//! Headers are kept in order as `(name, value)` pairs; values never contain CR, LF or NUL, so the
//! stored form is simply one `Name: value` per line.

use std::time::Duration;

use crate::error::{Error, Result};

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
/// Idempotency keys longer than this are refused (they are stored and indexed).
const MAX_KEY_LEN: usize = 512;

/// A message ready to be stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Message {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) key: Option<String>,
    pub(crate) delay: Duration,
    pub(crate) max_attempts: Option<u32>,
    /// A named endpoint; `url` is then the path appended to the endpoint's URL (maybe empty).
    pub(crate) endpoint: Option<String>,
    /// Ordered lane: delivered one at a time, in enqueue order, with the lane's other messages.
    pub(crate) lane: Option<String>,
    /// Whether a dead message stops its lane (else the next one goes).
    pub(crate) lane_dead_blocks: bool,
}

impl Message {
    /// Validates every field of a message.
    ///
    /// # Errors
    /// `InvalidInput` naming the field and the problem.
    pub(crate) fn check(&self, max_body_size: usize) -> Result<()> {
        check_method(&self.method)?;
        match &self.endpoint {
            None => crate::deliver::http::check_url(&self.url).map_err(Error::input)?,
            Some(_) if self.url.is_empty() => {}
            Some(_) => crate::endpoint::check_path(&self.url).map_err(Error::input)?,
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        if self.body.len() > max_body_size {
            return Err(Error::input(format!(
                "body is {} bytes, above max_body_size ({max_body_size} bytes)",
                self.body.len()
            )));
        }
        if !self.body.is_empty() && self.method.eq_ignore_ascii_case("HEAD") {
            return Err(Error::input("a HEAD request cannot carry a body"));
        }
        if let Some(key) = &self.key {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(Error::input(format!(
                    "idempotency key must be 1 to {MAX_KEY_LEN} bytes long"
                )));
            }
        }
        if let Some(n) = self.max_attempts {
            crate::config::check_max_attempts(n)
                .map_err(|m| Error::input(format!("max attempts: {m}")))?;
        }
        Ok(())
    }
}

/// Checks that `method` is an HTTP token (RFC 9110 5.6.2) that webhookd can send.
///
/// # Errors
/// `InvalidInput` naming the method.
pub(crate) fn check_method(method: &str) -> Result<()> {
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Error::input(format!(
            "invalid HTTP method {method:?}: must be a token such as POST or PUT"
        )));
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Error::input("method CONNECT cannot be used for a webhook"));
    }
    Ok(())
}

/// Parses a `Name: value` header argument; surrounding whitespace of the value is trimmed.
///
/// # Errors
/// `InvalidInput` when there is no colon, the name is not a token, or the value has CR/LF/NUL.
pub(crate) fn parse_header(arg: &str) -> Result<(String, String)> {
    let Some((name, value)) = arg.split_once(':') else {
        return Err(Error::input(format!(
            "invalid header {:?}: expected 'Name: value'",
            shorten(arg)
        )));
    };
    header(name, value)
}

/// Validates a header given as a name and a value (e.g. from a JSON object); the value is trimmed.
///
/// # Errors
/// As for [`parse_header`].
pub(crate) fn header(name: &str, value: &str) -> Result<(String, String)> {
    let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
    check_header(&name, &value)?;
    Ok((name, value))
}

fn check_header(name: &str, value: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(Error::input(format!(
            "invalid header name {:?}: must be a token (letters, digits, !#$%&'*+-.^_`|~)",
            shorten(name)
        )));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Error::input(format!(
            "invalid value for header {name}: CR, LF and NUL are not allowed"
        )));
    }
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(Error::input(format!(
            "invalid value for header {name}: control characters are not allowed"
        )));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
    {
        return Err(Error::input(format!(
            "header {name} is set by webhookd or by HTTP itself and cannot be given"
        )));
    }
    Ok(())
}

/// Adds or replaces (case-insensitively, all occurrences) header `name`.
pub(crate) fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    remove_header(headers, name);
    headers.push((name.to_owned(), value.to_owned()));
}

/// Removes every header called `name` (case-insensitive).
pub(crate) fn remove_header(headers: &mut Vec<(String, String)>, name: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

/// Stored form of headers: `Name: value` lines.
pub(crate) fn encode_headers(headers: &[(String, String)]) -> String {
    let mut out = String::new();
    for (n, v) in headers {
        out.push_str(n);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Inverse of [`encode_headers`].
pub(crate) fn decode_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
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
    fn headers_parse_and_reject() {
        assert_eq!(
            parse_header("Content-Type:  application/json ").unwrap(),
            ("Content-Type".into(), "application/json".into())
        );
        assert_eq!(parse_header("X-Empty:").unwrap().1, "");
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
            assert!(parse_header(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn methods() {
        for ok in ["POST", "PUT", "PATCH", "DELETE", "GET", "PURGE"] {
            assert!(check_method(ok).is_ok(), "{ok}");
        }
        for bad in ["", "PO ST", "POST\r\n", "GET/", "CONNECT"] {
            assert!(check_method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_storage_round_trips_in_order() {
        let h = vec![
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "x: y".to_owned()),
            ("A".to_owned(), "".to_owned()),
        ];
        assert_eq!(decode_headers(&encode_headers(&h)), h);
    }

    #[test]
    fn set_and_remove_are_case_insensitive() {
        let mut h = vec![
            ("x-a".to_owned(), "1".to_owned()),
            ("X-B".to_owned(), "2".to_owned()),
        ];
        set_header(&mut h, "X-A", "3");
        remove_header(&mut h, "x-b");
        assert_eq!(h, vec![("X-A".to_owned(), "3".to_owned())]);
    }
}

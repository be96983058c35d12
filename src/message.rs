//! A message as an operator or an application gives it, validated before anything is stored:
//! method, URL (or an endpoint and a path), headers, body, idempotency key, delay, attempt budget,
//! lane. Pure: the checks are `check`'s.
//!
//! Headers are kept in order as `(name, value)` pairs (a name may repeat); values never contain
//! CR, LF or NUL, so the stored form is simply one `Name: value` per line.

use std::time::Duration;

use crate::check::{self, Invalid};

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
    /// Ordered lane (stored form, `model::Lane`): delivered one at a time, in enqueue order, with
    /// the lane's other messages.
    pub(crate) lane: Option<String>,
    /// Whether a dead message stops its lane (else the next one goes).
    pub(crate) lane_dead_blocks: bool,
    /// The event it delivers (its id is the message's webhook-id), if it came from a fan-out.
    pub(crate) event: Option<uuid::Uuid>,
}

impl Message {
    /// Validates every field of a message.
    ///
    /// # Errors
    /// `Invalid` naming the field (`method`, `url`, `path`, `headers`, `body`, `key`,
    /// `max_attempts`) and the problem.
    pub(crate) fn check(&self, max_body_size: usize) -> Result<(), Invalid> {
        check::method("method", &self.method)?;
        match &self.endpoint {
            None => check::url("url", &self.url)?,
            Some(_) if self.url.is_empty() => {}
            Some(_) => check::path("path", &self.url)?,
        }
        for (name, value) in &self.headers {
            check::header("headers", name, value)?;
        }
        if self.body.len() > max_body_size {
            return Err(Invalid::new(
                "body",
                format!(
                    "body is {} bytes, above max_body_size ({max_body_size} bytes)",
                    self.body.len()
                ),
            ));
        }
        if !self.body.is_empty() && self.method.eq_ignore_ascii_case("HEAD") {
            return Err(Invalid::new("body", "a HEAD request cannot carry a body"));
        }
        if let Some(key) = &self.key {
            check::key("key", "idempotency key", key)?;
        }
        if let Some(n) = self.max_attempts {
            check::max_attempts("max_attempts", n)
                .map_err(|e| Invalid::new(e.field, format!("max attempts: {}", e.reason)))?;
        }
        Ok(())
    }
}

/// The origin of a plain URL (`scheme://host:port`, the port always written): plain-URL messages
/// of one origin share a delivery policy, as an implicit endpoint of that name (which no
/// endpoint name can be: names have no `:` or `/`). `None` for a URL without a host.
pub(crate) fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{host}:{port}"))
}

/// Whether an endpoint name is an origin's (see [`origin`]).
pub(crate) fn is_origin(name: &str) -> bool {
    name.contains("://")
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Errors as `application/problem+json` (RFC 9457), naming the field and the reason.

use serde::Serialize;

use super::wire::Response;
use crate::error::Error;

/// A problem document (boxed: it travels in `Err`s).
#[derive(Debug, Clone)]
pub(crate) struct Problem(Box<Body>);

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Debug, Clone, Serialize)]
struct Body {
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// The request field at fault (`headers[1].value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// In a batch: the message at fault (from 0 in an array, from 1 as a line number).
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    /// For a reused idempotency key: the message that has it, and its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    /// Headers of the response (`Retry-After`, `Allow`, `WWW-Authenticate`).
    #[serde(skip)]
    headers: Vec<(&'static str, String)>,
}

impl Problem {
    pub(crate) fn new(status: u16, title: impl Into<String>) -> Problem {
        Problem(Box::new(Body {
            kind: "about:blank",
            title: title.into(),
            status,
            detail: None,
            field: None,
            index: None,
            line: None,
            uuid: None,
            state: None,
            headers: Vec::new(),
        }))
    }

    /// Its HTTP status.
    pub(crate) fn status(&self) -> u16 {
        self.0.status
    }

    pub(crate) fn detail(mut self, d: impl Into<String>) -> Problem {
        self.0.detail = Some(d.into());
        self
    }

    pub(crate) fn field(mut self, f: impl Into<String>) -> Problem {
        self.0.field = Some(f.into());
        self
    }

    pub(crate) fn index(mut self, i: usize) -> Problem {
        self.0.index = Some(i);
        self
    }

    pub(crate) fn line(mut self, l: u64) -> Problem {
        self.0.line = Some(l);
        self
    }

    pub(crate) fn existing(mut self, uuid: String, state: &'static str) -> Problem {
        self.0.uuid = Some(uuid);
        self.0.state = Some(state);
        self
    }

    pub(crate) fn retry_after(self, seconds: u64) -> Problem {
        self.header("retry-after", seconds.to_string())
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Problem {
        self.0.headers.push((name, value.into()));
        self
    }

    pub(crate) fn response(&self) -> Response {
        let headers = self.0.headers.clone();
        Response {
            status: self.0.status,
            content_type: "application/problem+json",
            headers,
            body: serde_json::to_vec(self).expect("a problem serializes"),
        }
    }

    /// A refused field: 400, or 413 for a body over `max_body_size`.
    pub(crate) fn invalid(e: &crate::check::Invalid) -> Problem {
        let status = if e.field == "body" && e.reason.contains("max_body_size") {
            413
        } else {
            400
        };
        let title = if status == 413 {
            "content too large"
        } else {
            "invalid request"
        };
        Problem::new(status, title)
            .field(e.field.clone())
            .detail(format!("{}: {}", e.field, e.reason))
    }

    /// The store's and the commands' errors, as HTTP says them.
    pub(crate) fn from_error(e: &Error) -> Problem {
        if let Error::InvalidField { field, reason } = e {
            return Problem::invalid(&crate::check::Invalid::new(field.as_str(), reason.as_str()));
        }
        let (status, title) = match e {
            Error::NoSuchMessage { .. } | Error::NoSuchEndpoint { .. } => (404, "not found"),
            Error::Usage { .. } | Error::InvalidInput { .. } | Error::InvalidLine { .. } => {
                (400, "invalid request")
            }
            Error::NotDead { .. }
            | Error::WrongState { .. }
            | Error::EndpointExists { .. }
            | Error::EndpointReadOnly { .. }
            | Error::EndpointBusy { .. } => (409, "conflict"),
            Error::Busy { .. } => (503, "busy"),
            Error::DbUnavailable { .. } => (503, "database unavailable"),
            _ => (500, "internal error"),
        };
        let p = Problem::new(status, title).detail(e.to_string());
        if status == 503 {
            p.retry_after(1)
        } else {
            p
        }
    }
}

//! The HTTP client: the only module that uses ureq (with `agents`, one agent per route, and
//! `resolve`, the DNS cache and the egress guard).
//!
//! One shared `Agent` with keep-alive for all workers (and one per endpoint with a route of its
//! own: proxy, CA certificates, client identity, private ranges). Statuses are values
//! (`http_status_as_error(false)`), redirects are not followed, and the whole request is bounded by
//! `http.timeout`. Host names are resolved through a small cache (`DNS_TTL`): ureq resolves on
//! every request, and with a timeout set its default resolver does so on a freshly spawned
//! thread, which costs about 4x the CPU of the request itself on loopback. A lookup that is not
//! cached runs on its own thread and is bounded by `http.connect_timeout` (the system resolver
//! has no timeout of its own that we control).
//!
//! Egress: every address a destination resolves to passes the egress policy (`egress`) before it
//! is dialed; a destination left with none fails the attempt with class `egress_denied`.
//!
//! Proxies: never taken from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, which
//! ureq would read by default): a variable in the service's environment must not silently route
//! every webhook through another host. `http.proxy` and an endpoint's `proxy` are explicit; the
//! destination is resolved and every address checked before the request, then an HTTP proxy
//! resolves the name again (a SOCKS proxy is sent the checked address).
//!
//! TLS (rustls): receivers are checked against the system's CA certificates (rustls' platform
//! verifier, which reads /etc/ssl/certs on Linux), so CA updates arrive with the ca-certificates
//! package. With `http.ca_file` the roots are the system's plus that file's.
//!
//! At most `READ_CAP` bytes of a response body are read (the first `EXCERPT_CAP` are kept for the
//! record); a larger body closes the connection instead of being read, so a receiver that answers
//! with gigabytes cannot grow memory or hold a worker beyond the timeout.

use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::Request;

use super::{Finished, Job, Reply};
use crate::config::HttpConfig;
use crate::egress::Policy;
use crate::error::Result;
use crate::model::Failure;
use agents::Agents;
use resolve::{DnsError, EgressError};

mod agents;
mod resolve;

/// Response bytes kept for the record of a successful attempt (a failed one: `http.capture`).
pub(crate) const EXCERPT_CAP: usize = 1024;
/// Response bytes read at most; past this the connection is dropped rather than drained.
const READ_CAP: u64 = crate::config::MAX_CAPTURE as u64;
/// Per-connection read and write buffer (also the cap on response headers).
const BUFFER_SIZE: usize = 32 * 1024;
const USER_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));

/// A shareable HTTP client for the delivery workers.
#[derive(Debug)]
pub(crate) struct Http {
    agents: Agents,
    /// Bytes of a failed attempt's response to keep.
    capture: usize,
}

impl Http {
    /// Builds the shared agent. `pool_size` bounds idle keep-alive connections (use the worker
    /// count); `egress`: the addresses requests may go to.
    ///
    /// # Errors
    /// `CaFile` when `http.ca_file` cannot be read or holds no certificate.
    pub(crate) fn new(config: &HttpConfig, egress: &Policy, pool_size: usize) -> Result<Http> {
        Ok(Http {
            agents: Agents::new(config, egress, pool_size)?,
            capture: config.capture,
        })
    }

    /// Makes one attempt to deliver `job`. Never fails: transport errors are part of the result.
    pub(crate) fn attempt(&self, job: &Job) -> Finished {
        let started = SystemTime::now();
        let clock = Instant::now();
        let reply = self.send(job, started);
        Finished::new(job, started, clock.elapsed(), reply)
    }

    fn send(&self, job: &Job, now: SystemTime) -> Reply {
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut builder = Request::builder()
            .method(job.method.as_str())
            .uri(job.url.as_str())
            .header("webhook-timestamp", timestamp.to_string());
        // Every delivery of one event carries the event's id: what receivers deduplicate on.
        let id = job.event.unwrap_or(job.uuid).to_string();
        for (name, value) in &job.headers {
            if job.keys.is_some() && name.eq_ignore_ascii_case("webhook-signature") {
                continue; // ours replaces it
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(keys) = job.keys.as_deref().filter(|k| !k.is_empty()) {
            builder = builder.header(
                "webhook-signature",
                crate::sign::signature(keys, &id, timestamp, &job.body),
            );
        }
        let mut request = match builder.header("webhook-id", id).body(job.body.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                return Reply::Transport {
                    kind: Failure::Other,
                    error: format!("invalid request: {e}"),
                }
            }
        };
        let agent = match self.agents.get(job.route.as_deref()) {
            Ok(a) => a,
            Err(error) => {
                return Reply::Transport {
                    kind: Failure::Tls,
                    error,
                }
            }
        };
        if let Err(e) = agent.check(request.uri()) {
            return Reply::Transport {
                kind: failure(&e),
                error: error_text(&e),
            };
        }
        if let Some(t) = job.timeout {
            request = agent
                .ureq
                .configure_request(request)
                .timeout_global(Some(t))
                .build();
        }
        let response = match agent.ureq.run(request) {
            Ok(r) => r,
            Err(e) => {
                return Reply::Transport {
                    kind: failure(&e),
                    error: error_text(&e),
                }
            }
        };
        let code = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after =
            header("retry-after").and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let location = header("location");
        let keep = if (200..300).contains(&code) {
            EXCERPT_CAP.min(self.capture.max(EXCERPT_CAP))
        } else {
            self.capture
        };
        let mut excerpt = Vec::new();
        let mut reader = response.into_body().into_reader().take(READ_CAP);
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = keep.saturating_sub(excerpt.len());
                    excerpt.extend_from_slice(&buf[..n.min(room)]);
                }
                // The status is what counts; a body cut short only shortens the excerpt.
                Err(_) => break,
            }
        }
        Reply::Status {
            code,
            retry_after,
            location,
            excerpt,
        }
    }
}

impl Http {
    /// Posts an alert (a JSON body) once; the status on an answer, else the transport error.
    ///
    /// # Errors
    /// The transport error, as text.
    pub(crate) fn post_json(&self, url: &str, body: &[u8]) -> Result<u16, String> {
        if let Ok(uri) = url.parse::<ureq::http::Uri>() {
            self.agents
                .default
                .check(&uri)
                .map_err(|e| error_text(&e))?;
        }
        let response = self
            .agents
            .default
            .ureq
            .post(url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }
}

/// The text of a transport error (our own errors without ureq's "other: " in front).
fn error_text(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Other(inner) => inner.to_string(),
        e => e.to_string(),
    }
}

/// Why a request got no answer, for the verdict's class (timeouts, DNS, connection, TLS).
fn failure(e: &ureq::Error) -> Failure {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) | ureq::Error::BodyStalled => Failure::Timeout,
        ureq::Error::HostNotFound => Failure::Dns,
        ureq::Error::Other(inner) if inner.is::<DnsError>() => Failure::Dns,
        ureq::Error::Other(inner) if inner.is::<EgressError>() => Failure::EgressDenied,
        ureq::Error::ConnectionFailed => Failure::Connect,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Timeout,
            ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Failure::Connect,
            _ => Failure::Other,
        },
        ureq::Error::Tls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::TlsRequired => Failure::Tls,
        _ => Failure::Other,
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

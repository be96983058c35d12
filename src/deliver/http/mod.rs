//! The HTTP client: the only module that uses ureq.
//!
//! One shared `Agent` with keep-alive for all workers. Statuses are values
//! (`http_status_as_error(false)`), redirects are not followed, and the whole request is bounded by
//! `http.timeout`. Host names are resolved through a small cache (`DNS_TTL`): ureq resolves on
//! every request, and with a timeout set its default resolver does so on a freshly spawned
//! thread, which costs about 4x the CPU of the request itself on loopback. A lookup that is not
//! cached runs on its own thread and is bounded by `http.connect_timeout` (the system resolver
//! has no timeout of its own that we control).
//!
//! Proxies: never taken from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, which
//! ureq would read by default): a variable in the service's environment must not silently route
//! every webhook through another host.
//!
//! TLS (rustls): receivers are checked against the system's CA certificates (rustls' platform
//! verifier, which reads /etc/ssl/certs on Linux), so CA updates arrive with the ca-certificates
//! package. With `http.ca_file` the roots are the system's plus that file's.
//!
//! At most `READ_CAP` bytes of a response body are read (the first `EXCERPT_CAP` are kept for the
//! record); a larger body closes the connection instead of being read, so a receiver that answers
//! with gigabytes cannot grow memory or hold a worker beyond the timeout.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ureq::http::{Request, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::{Finished, Job, Reply};
use crate::config::HttpConfig;
use crate::error::{Error, Result};
use crate::model::Failure;

/// Response bytes kept for the record of a successful attempt (a failed one: `http.capture`).
pub(crate) const EXCERPT_CAP: usize = 1024;
/// Response bytes read at most; past this the connection is dropped rather than drained.
const READ_CAP: u64 = crate::config::MAX_CAPTURE as u64;
/// Host lookups running at once at most; more fail at once (a resolver that hangs must not
/// pile up threads).
const MAX_LOOKUPS: usize = 64;
/// Per-connection read and write buffer (also the cap on response headers).
const BUFFER_SIZE: usize = 32 * 1024;
/// How long a resolved address is reused.
const DNS_TTL: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));

/// A shareable HTTP client for the delivery workers.
#[derive(Debug)]
pub(crate) struct Http {
    agent: ureq::Agent,
    /// Bytes of a failed attempt's response to keep.
    capture: usize,
}

impl Http {
    /// Builds the shared agent. `pool_size` bounds idle keep-alive connections (use the worker
    /// count).
    ///
    /// # Errors
    /// `CaFile` when `http.ca_file` cannot be read or holds no certificate.
    pub(crate) fn new(config: &HttpConfig, pool_size: usize) -> Result<Http> {
        let roots = match &config.ca_file {
            None => RootCerts::PlatformVerifier,
            Some(path) => RootCerts::Specific(std::sync::Arc::new(roots_with(path)?)),
        };
        let agent_config = ureq::Agent::config_builder()
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .max_redirects_will_error(false)
            .allow_non_standard_methods(true)
            .user_agent(USER_AGENT)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            .max_idle_connections(pool_size.max(1) * 2)
            .max_idle_connections_per_host(pool_size.max(1))
            // 128 KiB each by default: with 128 workers that alone is 32 MiB of RSS. Bodies are
            // streamed, so the buffers only need to hold headers and a chunk.
            .input_buffer_size(BUFFER_SIZE)
            .output_buffer_size(BUFFER_SIZE)
            .build();
        Ok(Http {
            agent: ureq::Agent::with_parts(
                agent_config,
                DefaultConnector::new(),
                CachingResolver::new(config.connect_timeout),
            ),
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
        if let Some(t) = job.timeout {
            request = self
                .agent
                .configure_request(request)
                .timeout_global(Some(t))
                .build();
        }
        let response = match self.agent.run(request) {
            Ok(r) => r,
            Err(e) => {
                return Reply::Transport {
                    kind: failure(&e),
                    error: e.to_string(),
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
        let response = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }
}

/// Why a request got no answer, for the verdict's class (timeouts, DNS, connection, TLS).
fn failure(e: &ureq::Error) -> Failure {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) | ureq::Error::BodyStalled => Failure::Timeout,
        ureq::Error::HostNotFound => Failure::Dns,
        ureq::Error::Other(inner) if inner.is::<DnsError>() => Failure::Dns,
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

/// A host lookup that failed or got no answer in time.
#[derive(Debug)]
struct DnsError(String);

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DnsError {}

fn dns_error(text: String) -> ureq::Error {
    ureq::Error::Other(Box::new(DnsError(text)))
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

/// The system's CA certificates plus those in the PEM file `ca_file`.
fn roots_with(ca_file: &Path) -> Result<Vec<Certificate<'static>>> {
    let bad = |message: String| Error::CaFile {
        path: ca_file.to_path_buf(),
        message,
    };
    let pem = std::fs::read(ca_file).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut extra = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        // Keys and other blocks are not roots: skipped.
        if let PemItem::Certificate(c) = item.map_err(|e| bad(format!("not PEM: {e}")))? {
            extra.push(c);
        }
    }
    if extra.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        log::warn!("system CA certificates: {e}");
    }
    let mut roots: Vec<Certificate<'static>> = system
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    log::debug!(
        "trusting {} system CA certificates and {} from {}",
        roots.len(),
        extra.len(),
        ca_file.display()
    );
    roots.extend(extra);
    Ok(roots)
}

/// Resolves host:port with the system resolver, bounded by the connect timeout, and reuses the
/// answer for `DNS_TTL`. An IP literal needs no lookup.
#[derive(Debug)]
struct CachingResolver {
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    timeout: Duration,
    lookups: Arc<AtomicUsize>,
}

impl CachingResolver {
    fn new(timeout: Duration) -> CachingResolver {
        CachingResolver {
            cache: Mutex::default(),
            timeout,
            lookups: Arc::default(),
        }
    }

    /// Looks `key` (host:port) up on its own thread, waiting at most the connect timeout.
    fn lookup(&self, key: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        if self.lookups.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS {
            self.lookups.fetch_sub(1, Ordering::SeqCst);
            return Err(dns_error(format!(
                "resolve {key}: {MAX_LOOKUPS} host lookups are already waiting for the resolver"
            )));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (name, lookups) = (key.to_owned(), Arc::clone(&self.lookups));
        let spawned = std::thread::Builder::new()
            .name("webhookd-dns".into())
            .spawn(move || {
                crate::faults::before_resolve();
                let r = name
                    .to_socket_addrs()
                    .map(|addrs| addrs.take(16).collect::<Vec<_>>());
                lookups.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.lookups.fetch_sub(1, Ordering::SeqCst);
            return Err(ureq::Error::Io(e));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r.map_err(|e| dns_error(format!("resolve {key}: {e}"))),
            Err(_) => Err(dns_error(format!(
                "resolve {key}: no answer from the resolver within http.connect_timeout ({})",
                crate::text::duration(self.timeout)
            ))),
        }
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(ureq::Error::HostNotFound);
        };
        let key =
            DefaultResolver::host_and_port(scheme, authority).ok_or(ureq::Error::HostNotFound)?;
        let mut addrs = self.empty();
        if let Ok(literal) = key.parse::<SocketAddr>() {
            addrs.push(literal);
            return Ok(addrs);
        }
        if let Some((at, cached)) = self.cache.lock().unwrap().get(&key) {
            if at.elapsed() < DNS_TTL {
                return Ok(cached.clone());
            }
        }
        for addr in self.lookup(&key)? {
            addrs.push(addr);
        }
        if addrs.is_empty() {
            return Err(dns_error(format!("resolve {key}: no address")));
        }
        let mut cache = self.cache.lock().unwrap();
        if cache.len() > 10_000 {
            cache.clear(); // bounded: thousands of distinct hosts are not a steady state
        }
        cache.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
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

//! Name resolution for the agents: a cache shared by all of them (`CachingResolver`), and the
//! egress guard in front of it (`Vetting`): every address a destination resolves to is checked
//! against the egress policy, and only those that pass are returned, so the connector dials
//! exactly the vetted addresses (ureq's `DefaultConnector` connects to what the resolver
//! returns; IP-literal URLs come through here too). The address of a proxy from the config file
//! is the operator's choice and is not vetted (a proxy set on an endpoint managed at runtime is);
//! a destination reached through a proxy is resolved and every address checked before the
//! request (`Vetting::check`), and the proxy resolves it again.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use crate::egress::{Denied, Policy};

/// Host lookups running at once at most; more fail at once (a resolver that hangs must not
/// pile up threads).
const MAX_LOOKUPS: usize = 64;
/// How long a resolved address is reused.
pub(super) const DNS_TTL: Duration = Duration::from_secs(30);

/// A host lookup that failed or got no answer in time.
#[derive(Debug)]
pub(super) struct DnsError(String);

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DnsError {}

fn dns_error(text: String) -> ureq::Error {
    ureq::Error::Other(Box::new(DnsError(text)))
}

/// Every resolved address was denied by the egress policy (the first reason given).
#[derive(Debug)]
pub(super) struct EgressError(pub(super) Denied);

impl std::fmt::Display for EgressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blocked by egress policy: {}", self.0)
    }
}

impl std::error::Error for EgressError {}

/// The guard: resolves through the shared cache and returns only the addresses the policy
/// allows (`allow_private`: the endpoint's setting). `proxy`: the operator's proxy (from the
/// config file), whose own address is resolved without a check; it is recognised by identity
/// (ureq resolves the very `Uri` of its proxy), never by comparing text a URL could imitate.
#[derive(Debug, Clone)]
pub(super) struct Vetting {
    pub(super) cache: Arc<CachingResolver>,
    pub(super) policy: Arc<Policy>,
    pub(super) allow_private: bool,
    pub(super) proxy: Option<ureq::Proxy>,
}

impl Vetting {
    /// Resolves `uri`'s host and checks it, for a request through a proxy, which resolves the
    /// name again itself and may pick any of its addresses: every address must pass (the gap
    /// left: a name that changes its answer between the two lookups).
    ///
    /// # Errors
    /// As for a resolution: a DNS error, or `EgressError` for the first denied address.
    pub(super) fn check(&self, uri: &Uri) -> Result<(), ureq::Error> {
        self.require_all(&self.cache.addrs(uri)?)
    }

    /// Every address of `addrs` must pass.
    ///
    /// # Errors
    /// `EgressError` for the first denied address.
    fn require_all(&self, addrs: &ResolvedSocketAddrs) -> Result<(), ureq::Error> {
        for addr in addrs.iter() {
            if let Err(d) = self.policy.check(addr.ip(), self.allow_private) {
                return Err(ureq::Error::Other(Box::new(EgressError(d))));
            }
        }
        Ok(())
    }

    /// Keeps the addresses `addrs` that the policy allows.
    ///
    /// # Errors
    /// `EgressError` with the first denial when none is allowed.
    pub(super) fn vet(
        &self,
        addrs: &ResolvedSocketAddrs,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut kept = self.cache.empty();
        let mut first = None;
        for addr in addrs.iter() {
            match self.policy.check(addr.ip(), self.allow_private) {
                Ok(()) => kept.push(*addr),
                Err(d) => {
                    first.get_or_insert(d);
                }
            }
        }
        match first {
            Some(d) if kept.is_empty() => Err(ureq::Error::Other(Box::new(EgressError(d)))),
            _ => Ok(kept),
        }
    }
}

impl Resolver for Vetting {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.cache.resolve(uri, config, timeout)?;
        // The operator's proxy: its own address is the operator's choice, not checked.
        if self
            .proxy
            .as_ref()
            .is_some_and(|p| std::ptr::eq(uri, p.uri()))
        {
            return Ok(addrs);
        }
        self.vet(&addrs)
    }
}

/// Resolves host:port with the system resolver, bounded by the connect timeout, and reuses the
/// answer for `DNS_TTL`. An IP literal needs no lookup.
#[derive(Debug)]
pub(super) struct CachingResolver {
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    timeout: Duration,
    lookups: Arc<AtomicUsize>,
}

impl CachingResolver {
    pub(super) fn new(timeout: Duration) -> CachingResolver {
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
        self.addrs(uri)
    }
}

impl CachingResolver {
    /// The addresses of `uri`'s host and port (cached for `DNS_TTL`; a literal as it is).
    fn addrs(&self, uri: &Uri) -> Result<ResolvedSocketAddrs, ureq::Error> {
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
        let (host, port) = key.rsplit_once(':').unwrap_or((&key, ""));
        if let Some(ip) = crate::faults::dns_answer(host) {
            addrs.push(SocketAddr::new(ip, port.parse().unwrap_or(80)));
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

    fn guard(allow_private: bool) -> Vetting {
        Vetting {
            cache: Arc::new(CachingResolver::new(Duration::from_secs(1))),
            policy: Arc::new(Policy::default()),
            allow_private,
            proxy: None,
        }
    }

    fn addrs(g: &Vetting, list: &[&str]) -> ResolvedSocketAddrs {
        let mut a = g.cache.empty();
        for s in list {
            a.push(s.parse().unwrap());
        }
        a
    }

    /// Chosen answers, no network: denied addresses are dropped from a mixed answer (the
    /// connector dials only what is left), and an answer with nothing left is `egress_denied`.
    #[test]
    fn the_guard_keeps_only_allowed_addresses() {
        let g = guard(false);
        let kept = g
            .vet(&addrs(&g, &["10.0.0.5:80", "93.184.216.34:80", "[::1]:80"]))
            .unwrap();
        assert_eq!(
            kept.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["93.184.216.34:80"]
        );
        let err = g
            .vet(&addrs(&g, &["169.254.169.254:80", "127.0.0.1:80"]))
            .unwrap_err();
        assert_eq!(
            error_class(&err),
            "blocked by egress policy: 169.254.169.254 is link-local (cloud metadata) (169.254.0.0/16)"
        );
        // Through a proxy, which picks among the addresses itself, every one must pass.
        let mixed = addrs(&g, &["93.184.216.34:80", "10.0.0.5:80"]);
        assert!(g.vet(&mixed).is_ok());
        assert_eq!(
            error_class(&g.require_all(&mixed).unwrap_err()),
            "blocked by egress policy: 10.0.0.5 is private (10.0.0.0/8)"
        );
        let g = guard(true);
        assert_eq!(g.vet(&addrs(&g, &["127.0.0.1:80"])).unwrap().len(), 1);
        assert!(g.vet(&addrs(&g, &["169.254.169.254:80"])).is_err());
    }

    fn error_class(e: &ureq::Error) -> String {
        match e {
            ureq::Error::Other(inner) if inner.is::<EgressError>() => inner.to_string(),
            other => panic!("not an egress error: {other}"),
        }
    }
}

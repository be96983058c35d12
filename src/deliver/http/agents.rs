//! One agent per route (`egress::Route`): the default route's is built at start; an endpoint
//! with its own proxy, CA certificates, client identity or `allow_private` gets an agent of its
//! own when its first request goes out. Each agent has its own connection pool, so requests of
//! one client identity never reuse a connection another identity opened (ureq's pool key does
//! not include the client certificate).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::unversioned::transport::DefaultConnector;
use ureq::{Proxy, ProxyProtocol};

use super::resolve::{CachingResolver, Vetting};
use super::{BUFFER_SIZE, USER_AGENT};
use crate::config::HttpConfig;
use crate::egress::{Policy, ProxyUrl, Route, Via};
use crate::error::{Error, Result};

/// The default route's agent, and the others as they are first used.
#[derive(Debug)]
pub(super) struct Agents {
    base: Base,
    pub(super) default: Agent,
    others: Mutex<HashMap<Route, Agent>>,
}

/// What every agent is built from.
#[derive(Debug)]
struct Base {
    config: HttpConfig,
    policy: Arc<Policy>,
    pool_size: usize,
    /// `http.ca_file`'s certificates (with the system's), if set.
    roots: Option<Arc<Vec<Certificate<'static>>>>,
    cache: Arc<CachingResolver>,
}

/// A ureq agent, and for one that sends through a proxy, the proxy (its `no_proxy`) and the
/// guard that checks a destination before the request.
#[derive(Debug, Clone)]
pub(super) struct Agent {
    pub(super) ureq: ureq::Agent,
    proxied: Option<(Proxy, Arc<Vetting>)>,
}

impl Agent {
    /// Checks the destination `uri` of a request that goes through the proxy: the proxy
    /// resolves the name itself, so it is resolved and checked here first.
    ///
    /// # Errors
    /// A DNS error, or `EgressError`.
    pub(super) fn check(&self, uri: &ureq::http::Uri) -> Result<(), ureq::Error> {
        match &self.proxied {
            Some((proxy, guard)) if !proxy.is_no_proxy(uri) => guard.check(uri),
            _ => Ok(()),
        }
    }
}

impl Agents {
    /// # Errors
    /// `CaFile` when `http.ca_file` cannot be read or holds no certificate, `Proxy` when ureq
    /// refuses `http.proxy`.
    pub(super) fn new(config: &HttpConfig, policy: &Policy, pool_size: usize) -> Result<Agents> {
        let roots = match &config.ca_file {
            None => None,
            Some(path) => Some(Arc::new(roots_with(path)?)),
        };
        let base = Base {
            config: config.clone(),
            policy: Arc::new(policy.clone()),
            pool_size,
            roots,
            cache: Arc::new(CachingResolver::new(config.connect_timeout)),
        };
        // The default route has no files of its own: only the proxy can fail here.
        let default = base
            .build(&Route::default())
            .map_err(|message| Error::Proxy { message })?;
        Ok(Agents {
            base,
            default,
            others: Mutex::default(),
        })
    }

    /// The agent of `route` (`None`: the default), built at its first use.
    ///
    /// # Errors
    /// Why it cannot be built (a client certificate or CA file that does not parse).
    pub(super) fn get(&self, route: Option<&Route>) -> Result<Agent, String> {
        let Some(route) = route.filter(|r| **r != Route::default()) else {
            return Ok(self.default.clone());
        };
        let mut others = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(a) = others.get(route) {
            return Ok(a.clone());
        }
        let agent = self.base.build(route)?;
        others.insert(route.clone(), agent.clone());
        Ok(agent)
    }
}

impl Base {
    fn build(&self, route: &Route) -> Result<Agent, String> {
        let mut roots: Option<Vec<Certificate<'static>>> = self.roots.as_ref().map(|r| r.to_vec());
        if let Some(pem) = &route.ca_pem {
            let extra = certificates(pem)?;
            if extra.is_empty() {
                return Err("ca_file holds no PEM certificate".into());
            }
            roots.get_or_insert_with(system_roots).extend(extra);
        }
        let roots = match roots {
            None => RootCerts::PlatformVerifier,
            Some(r) => RootCerts::Specific(Arc::new(r)),
        };
        let client_cert = match &route.identity {
            None => None,
            Some(id) => Some(
                identity(&id.cert_pem, &id.key_pem).map_err(|e| format!("{}: {e}", id.source))?,
            ),
        };
        // rustls speaks TLS 1.2 and 1.3 only: nothing older is ever negotiated.
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .client_cert(client_cert)
            .build();
        let proxy = match (&route.via, &self.config.proxy) {
            (Via::Proxy(url), _) => Some(proxy(url, &[])?),
            (Via::Default, Some(p)) => Some(proxy(&p.url, &p.no_proxy)?),
            (Via::Default, None) | (Via::Direct, _) => None,
        };
        // The config file's proxies are the operator's; one set through the API is checked too.
        let trusted = proxy.clone().filter(|_| !route.vet_proxy);
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .max_redirects_will_error(false)
            .allow_non_standard_methods(true)
            .user_agent(USER_AGENT)
            .timeout_global(Some(self.config.timeout))
            .timeout_connect(Some(self.config.connect_timeout))
            .max_idle_connections(self.pool_size.max(1) * 2)
            .max_idle_connections_per_host(self.pool_size.max(1))
            // 128 KiB each by default: with 128 workers that alone is 32 MiB of RSS. Bodies are
            // streamed, so the buffers only need to hold headers and a chunk.
            .input_buffer_size(BUFFER_SIZE)
            .output_buffer_size(BUFFER_SIZE)
            .build();
        let guard = Vetting {
            cache: Arc::clone(&self.cache),
            policy: Arc::clone(&self.policy),
            allow_private: route.allow_private,
            proxy: trusted,
        };
        let proxied = config
            .proxy()
            .cloned()
            .map(|p| (p, Arc::new(guard.clone())));
        Ok(Agent {
            ureq: ureq::Agent::with_parts(config, DefaultConnector::new(), guard),
            proxied,
        })
    }
}

/// A ureq proxy for `url`. An HTTP(S) CONNECT proxy resolves the destination itself (ureq
/// 3.5's `resolve_target` would send `CONNECT ip:port:port`); `Agent::check` resolves it first
/// and requires every address to pass. A SOCKS proxy is sent the checked address.
fn proxy(url: &ProxyUrl, no_proxy: &[String]) -> Result<Proxy, String> {
    let protocol = match url.scheme.as_str() {
        "http" => ProxyProtocol::Http,
        "https" => ProxyProtocol::Https,
        "socks5" => ProxyProtocol::Socks5,
        _ => ProxyProtocol::Socks5h,
    };
    // SOCKS: ureq resolves the destination through the guard and sends the checked address.
    let pin = matches!(protocol, ProxyProtocol::Socks5 | ProxyProtocol::Socks5h);
    let mut b = Proxy::builder(protocol)
        .host(&url.host)
        .port(url.port)
        .resolve_target(pin);
    if let Some(u) = &url.user {
        b = b
            .username(u)
            .password(url.password.as_deref().unwrap_or(""));
    }
    for entry in no_proxy {
        b = b.no_proxy(entry);
    }
    b.build().map_err(|e| format!("proxy {url}: {e}"))
}

/// The certificates of a PEM text (keys and other blocks skipped).
fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("not PEM: {e}"))? {
            certs.push(c);
        }
    }
    Ok(certs)
}

/// A client certificate chain and its private key.
fn identity(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientCert, String> {
    let chain = certificates(cert_pem)?;
    if chain.is_empty() {
        return Err("client_cert holds no PEM certificate".into());
    }
    let key: PrivateKey<'static> = ureq::tls::parse_pem(key_pem)
        .find_map(|item| match item {
            Ok(PemItem::PrivateKey(k)) => Some(k),
            _ => None,
        })
        .ok_or("client_key holds no PEM private key")?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// The system's CA certificates.
fn system_roots() -> Vec<Certificate<'static>> {
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        log::warn!("system CA certificates: {e}");
    }
    system
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy on an IPv6 address keeps its brackets (without them ureq refuses the URL).
    #[test]
    fn proxies_of_every_scheme_and_address_family_build() {
        for url in [
            "http://proxy.internal:3128",
            "https://user:pw@10.0.0.9:3129",
            "socks5://[::1]:1080",
            "socks5h://[fd00::5]:1080",
            "http://[::1]:3128",
        ] {
            let p = proxy(&ProxyUrl::parse(url).unwrap(), &["internal.example".into()]);
            assert!(p.is_ok(), "{url}: {p:?}");
        }
    }
}

//! Mutual TLS per endpoint: an HTTPS receiver that requires a client certificate from its own
//! CA, and keeps connections alive (so a pooled connection could be reused by another identity
//! if agents were shared); endpoints with their own `ca_file`, `client_cert` and `client_key`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};

use crate::util::{read_request, serve_tls, wait_until, TestEnv, FAST};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A client identity signed by `issuer`: (certificate PEM, key PEM, certificate DER).
fn client(issuer: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Each request's path and the client certificate (DER) it came with.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The HTTPS receiver: which client certificate each request came with.
struct MtlsReceiver {
    port: u16,
    ca_pem: String,
    seen: Seen,
}

impl MtlsReceiver {
    fn start(client_ca: &CertifiedIssuer<'static, KeyPair>) -> MtlsReceiver {
        let server_ca = ca("receiver CA");
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &server_ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let port = serve_tls(config, move |mut tls| {
            // Keep-alive: every request of the connection, until the client closes it.
            while let Some((path, _)) = read_request(&mut tls) {
                let stream = tls.get_mut();
                let peer = stream
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec())
                    .unwrap_or_default();
                log.lock().unwrap().push((path, peer));
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
        MtlsReceiver {
            port,
            ca_pem: server_ca.pem(),
            seen,
        }
    }
}

#[test]
fn each_endpoint_presents_its_own_client_certificate_and_none_is_refused() {
    let client_ca = ca("client CA");
    let rx = MtlsReceiver::start(&client_ca);
    let (a_cert, a_key, a_der) = client(&client_ca, "endpoint a");
    let (b_cert, b_key, b_der) = client(&client_ca, "endpoint b");
    let env = TestEnv::new("mtls");
    for (file, text) in [
        ("receiver-ca.pem", &rx.ca_pem),
        ("a.crt", &a_cert),
        ("a.key", &a_key),
        ("b.crt", &b_cert),
        ("b.key", &b_key),
    ] {
        std::fs::write(env.dir.join(file), text).unwrap();
    }
    let url = format!("https://127.0.0.1:{}", rx.port);
    // Each endpoint trusts the receiver's CA through its own ca_file (not http.ca_file).
    env.write_config(&format!(
        "{FAST}[endpoints.a]\nurl = \"{url}/a\"\nca_file = \"receiver-ca.pem\"\nclient_cert = \"a.crt\"\nclient_key = \"a.key\"\n\
         [endpoints.b]\nurl = \"{url}/b\"\nca_file = \"receiver-ca.pem\"\nclient_cert = \"b.crt\"\nclient_key = \"b.key\"\n\
         [endpoints.none]\nurl = \"{url}/none\"\nca_file = \"receiver-ca.pem\"\nmax_attempts = 1\n"
    ));
    let _d = env.daemon();
    let mut uuids = Vec::new();
    for i in 0..6 {
        let name = if i % 2 == 0 { "a" } else { "b" };
        uuids.push(env.enqueue(&["--endpoint", name, "-d", &i.to_string()]));
    }
    let refused = env.enqueue(&["--endpoint", "none", "-d", "x"]);
    for uuid in &uuids {
        wait_until(
            Duration::from_secs(10),
            "delivered with a client certificate",
            || env.state(uuid) == "delivered",
        );
    }
    wait_until(
        Duration::from_secs(10),
        "the endpoint without one dead",
        || env.state(&refused) == "dead",
    );
    let seen = rx.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6, "only the endpoints with an identity got in");
    for (path, der) in &seen {
        let expected = if path == "/a" { &a_der } else { &b_der };
        assert_eq!(der, expected, "{path} came with its own certificate");
    }
    let shown = env.show(&refused);
    assert!(
        !shown["last_error"].as_str().unwrap_or("").is_empty(),
        "the handshake failure is recorded: {shown}"
    );
}

#[test]
fn a_client_certificate_without_its_key_is_a_config_error() {
    let env = TestEnv::new("mtls-half");
    std::fs::write(env.dir.join("a.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    env.write_config(&format!(
        "{FAST}[endpoints.a]\nurl = \"https://127.0.0.1:1/\"\nclient_cert = \"a.crt\"\n"
    ));
    let (code, err) = env.fail(&["run"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("endpoints.a.client_key"), "{err}");
}

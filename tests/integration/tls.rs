//! HTTPS receivers: the system's CA certificates by default, `http.ca_file` for more.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::util::{read_request, serve_tls, wait_until, TestEnv, FAST};

/// An HTTPS receiver on 127.0.0.1 with a certificate from its own, freshly made CA.
struct TlsReceiver {
    port: u16,
    ca_pem: String,
    received: Arc<AtomicUsize>,
}

impl TlsReceiver {
    fn start() -> TlsReceiver {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let port = serve_tls(config, move |mut tls| {
            // A client that rejects the certificate fails the handshake here.
            if read_request(&mut tls).is_none() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let stream = tls.get_mut();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.flush();
        });
        TlsReceiver {
            port,
            ca_pem: ca.pem(),
            received,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.port)
    }
}

#[test]
fn an_unknown_ca_fails_the_attempt_and_ca_file_makes_it_trusted() {
    let rx = TlsReceiver::start();
    let env = TestEnv::with_config("tls", FAST);
    let ca = env.dir.join("ca.pem");
    std::fs::write(&ca, &rx.ca_pem).unwrap();
    let mut d = env.daemon();

    let refused = env.enqueue(&[&rx.url(), "-d", "x"]);
    wait_until(Duration::from_secs(10), "dead-lettered", || {
        env.state(&refused) == "dead"
    });
    let view = env.show(&refused);
    let error = view["last_error"].as_str().unwrap_or("").to_owned();
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"),
        "a certificate error: {view}"
    );
    assert_eq!(rx.received.load(Ordering::SeqCst), 0);

    // Trust the test CA by config reload (FAST ends in its [http] section).
    env.write_config(&format!("{FAST}ca_file = \"{}\"\n", ca.display()));
    d.notices.clear();
    d.signal(Signal::SIGHUP);
    d.wait_notice("READY=1", Duration::from_secs(5));
    let trusted = env.enqueue(&[&rx.url(), "-d", "y"]);
    wait_until(Duration::from_secs(10), "delivered over HTTPS", || {
        env.state(&trusted) == "delivered"
    });
    assert_eq!(rx.received.load(Ordering::SeqCst), 1);
    assert!(d.terminate().success());
}

#[test]
fn a_ca_file_without_certificates_is_a_config_error() {
    let env = TestEnv::new("tls-bad-ca");
    let bad = env.dir.join("empty.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    env.write_config(&format!("[http]\nca_file = \"{}\"\n", bad.display()));
    let (code, err) = env.fail(&["run"]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("http.ca_file")
            && err.contains("empty.pem")
            && err.contains("no PEM certificate"),
        "{err}"
    );
    assert!(!env.dir.join("webhookd.db").exists(), "nothing opened");
}

/// Without `ca_file` the roots are the system's: rustls-native-certs reads the platform store,
/// which `SSL_CERT_FILE` replaces here (on Debian it is /etc/ssl/certs/ca-certificates.crt).
#[test]
fn the_system_store_is_what_decides_without_ca_file() {
    let rx = TlsReceiver::start();
    let env = TestEnv::with_config("tls-system", FAST);
    let ca = env.dir.join("system-ca.pem");
    std::fs::write(&ca, &rx.ca_pem).unwrap();
    let _d = env.daemon_env(&[], &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let uuid = env.enqueue(&[&rx.url(), "-d", "x"]);
    wait_until(Duration::from_secs(10), "delivered over HTTPS", || {
        env.state(&uuid) == "delivered"
    });
    assert_eq!(rx.received.load(Ordering::SeqCst), 1);
}

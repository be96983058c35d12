//! The API over TCP: tokens (hashed, with scopes), TLS, and what a listener refuses to start with.

use std::net::TcpListener;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use serde_json::{json, Value};

use crate::util::{wait_until, Receiver, TestEnv, FAST};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `webhookd token NAME --scope ...`: the token and its line.
fn token(env: &TestEnv, name: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["token", name];
    for s in scopes {
        args.extend_from_slice(&["--scope", s]);
    }
    args.push("--json");
    let v: Value = serde_json::from_str(&env.ok(&args)).unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["line"].as_str().unwrap().to_owned(),
    )
}

/// The tokens file holding `lines`.
fn tokens_file(env: &TestEnv, lines: &[&str]) -> std::path::PathBuf {
    let path = env.dir.join("api-tokens");
    std::fs::write(&path, format!("{}\n", lines.join("\n"))).unwrap();
    path
}

/// A self-signed certificate for 127.0.0.1 in `api.crt` and its key in `api.key`: the PEM and
/// both paths.
fn tls_files(env: &TestEnv) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (env.dir.join("api.crt"), env.dir.join("api.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert.pem(), cert_path, key_path)
}

/// A client that trusts only the certificate `pem`.
fn https_agent(pem: &str) -> ureq::Agent {
    let ca = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
            ca,
        ])))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// (status, body as JSON or null, www-authenticate).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut r = match (method, body) {
        ("GET", _) => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            req.call().unwrap()
        }
        (_, body) => {
            let mut req = agent.post(url);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            match body {
                Some(b) => req
                    .header("content-type", "application/json")
                    .send(serde_json::to_vec(&b).unwrap())
                    .unwrap(),
                None => req.send_empty().unwrap(),
            }
        }
    };
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        www,
    )
}

#[test]
fn tcp_requests_need_a_token_with_the_scope() {
    let env = TestEnv::new("api-tokens");
    let rx = Receiver::ok();
    let (producer, producer_line) = token(&env, "producer", &["enqueue"]);
    let (reader, reader_line) = token(&env, "grafana", &["read"]);
    let (admin, admin_line) = token(&env, "ops", &["admin"]);
    let tokens = env.dir.join("api-tokens");
    std::fs::write(
        &tokens,
        format!("# name scopes hash\n{producer_line}\n{reader_line}\n{admin_line}\n"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&tokens).unwrap();
    assert!(!text.contains(&producer[4..]), "the file holds hashes only");
    let port = free_port();
    env.write_config(&format!(
        "{FAST}\n[api]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = {:?}\n",
        tokens.display().to_string()
    ));
    let _d = env.daemon();
    let base = format!("http://127.0.0.1:{port}");
    let a = agent();
    let msg = json!({"url": rx.url("/t")});

    let (s, p, www) = send(
        &a,
        "POST",
        &format!("{base}/v1/messages"),
        None,
        Some(msg.clone()),
    );
    assert_eq!((s, www.as_deref()), (401, Some("Bearer")), "{p}");
    let (s, _, _) = send(
        &a,
        "POST",
        &format!("{base}/v1/messages"),
        Some("whk_wrong"),
        Some(msg.clone()),
    );
    assert_eq!(s, 401);
    let (s, p, _) = send(
        &a,
        "POST",
        &format!("{base}/v1/messages"),
        Some(&reader),
        Some(msg.clone()),
    );
    assert_eq!(s, 403, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("enqueue"), "{p}");
    let (s, p, _) = send(
        &a,
        "POST",
        &format!("{base}/v1/messages"),
        Some(&producer),
        Some(msg.clone()),
    );
    assert_eq!(s, 202, "{p}");
    let uuid = p["uuid"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(10), "delivery", || rx.count() == 1);

    let (s, _, _) = send(
        &a,
        "GET",
        &format!("{base}/v1/messages/{uuid}"),
        Some(&producer),
        None,
    );
    assert_eq!(s, 403, "enqueue does not read");
    let (s, p, _) = send(
        &a,
        "GET",
        &format!("{base}/v1/messages/{uuid}"),
        Some(&reader),
        None,
    );
    assert_eq!((s, p["uuid"].as_str()), (200, Some(uuid.as_str())));
    let (s, _, _) = send(&a, "GET", &format!("{base}/metrics"), None, None);
    assert_eq!(s, 401);
    let (s, _, _) = send(&a, "GET", &format!("{base}/metrics"), Some(&reader), None);
    assert_eq!(s, 200);
    let (s, _, _) = send(&a, "GET", &format!("{base}/healthz"), None, None);
    assert_eq!(s, 200, "health checks need no token");
    let (s, _, _) = send(&a, "GET", &format!("{base}/v1/status"), Some(&admin), None);
    assert_eq!(s, 200, "admin reads");
    let (s, _, _) = send(&a, "GET", &format!("{base}/nowhere"), None, None);
    assert_eq!(s, 401, "no token, no map of the API");
    // The scope follows the route, not the raw path: a doubled slash is no way around it.
    let dead = json!({"all": true});
    for path in ["//v1/dlq/delete", "//v1/messages/cancel", "/v1//dlq/delete"] {
        let (s, _, _) = send(
            &a,
            "POST",
            &format!("{base}{path}"),
            Some(&reader),
            Some(dead.clone()),
        );
        assert!(s == 404 || s == 403, "{path}: {s}");
    }
    let (s, _, _) = send(
        &a,
        "POST",
        &format!("{base}/v1/dlq/delete"),
        Some(&reader),
        Some(dead),
    );
    assert_eq!(s, 403);
    // Without a known token the body is never read: a 16 MB promise is answered 401 at once.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(b"POST /v1/messages HTTP/1.1\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 16000000\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
    }
}

#[test]
fn tls_listener_serves_https_and_bad_listeners_are_refused() {
    let env = TestEnv::new("api-tls");
    let (producer, line) = token(&env, "producer", &["enqueue"]);
    let tokens = tokens_file(&env, &[&line]);
    let (pem, cert_path, key_path) = tls_files(&env);
    let port = free_port();
    let tokens_s = tokens.display().to_string();
    let api = |listen: &str, extra: &str| {
        format!("{FAST}\n[api]\nlisten = \"{listen}\"\ntokens_file = {tokens_s:?}\n{extra}")
    };
    // Refused before anything is bound: a public address without TLS, TCP without tokens.
    env.write_config(&api("0.0.0.0:1", ""));
    let (code, err) = env.fail(&["run"]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("api.listen") && err.contains("tls_cert"),
        "{err}"
    );
    env.write_config(&format!("{FAST}\n[api]\nlisten = \"127.0.0.1:{port}\"\n"));
    let (code, err) = env.fail(&["run"]);
    assert!(code == 78 && err.contains("api.tokens_file"), "{err}");
    std::fs::write(&tokens, "producer write sha256:00\n").unwrap();
    env.write_config(&api(&format!("127.0.0.1:{port}"), ""));
    let (code, err) = env.fail(&["run"]);
    assert!(
        code == 78 && err.contains("line 1") && err.contains("unknown scope"),
        "{err}"
    );
    std::fs::write(&tokens, format!("{line}\n")).unwrap();

    env.write_config(&api(
        &format!("127.0.0.1:{port}"),
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert_path.display().to_string(),
            key_path.display().to_string()
        ),
    ));
    let _d = env.daemon();
    let a = https_agent(&pem);
    let (s, p, _) = send(
        &a,
        "POST",
        &format!("https://127.0.0.1:{port}/v1/messages"),
        Some(&producer),
        Some(json!({"url": "http://127.0.0.1:9/x", "delay": "1h"})),
    );
    assert_eq!(s, 202, "{p}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = agent()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .call();
    assert!(plain.is_err() || plain.unwrap().status().as_u16() != 200);
}

/// Beyond `api.max_connections` a TLS connection is closed at once, without a handshake on the
/// accepting thread: a client that sends nothing cannot stall the connections after it.
#[test]
fn a_full_tls_listener_closes_extra_connections_without_stalling() {
    use std::io::Read;
    let env = TestEnv::new("api-tls-full");
    let (producer, line) = token(&env, "producer", &["enqueue"]);
    let tokens = tokens_file(&env, &[&line]);
    let (pem, cert_path, key_path) = tls_files(&env);
    let port = free_port();
    env.write_config(&format!(
        "{FAST}\n[api]\nmax_connections = 2\nlisten = \"127.0.0.1:{port}\"\ntokens_file = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
        tokens.display().to_string(),
        cert_path.display().to_string(),
        key_path.display().to_string()
    ));
    let _d = env.daemon();
    let addr = format!("127.0.0.1:{port}");
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        let mut extra = std::net::TcpStream::connect(&addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(extra.read(&mut buf).unwrap(), 0, "closed at once");
    }
    drop(held);
    let a = https_agent(&pem);
    let body = serde_json::to_vec(&json!({"url": "http://127.0.0.1:9/x", "delay": "1h"})).unwrap();
    wait_until(Duration::from_secs(5), "a slot again", || {
        a.post(format!("https://{addr}/v1/messages"))
            .header("authorization", &format!("Bearer {producer}"))
            .header("content-type", "application/json")
            .send(&body[..])
            .is_ok_and(|r| r.status().as_u16() == 202)
    });
}

/// TCP clients can take every slot but an eighth (at least one): the local socket is still
/// served when they hold all theirs.
#[test]
fn tcp_clients_cannot_take_the_sockets_last_slots() {
    use std::io::Read;
    let env = TestEnv::new("api-tcp-slots");
    let (_, line) = token(&env, "reader", &["read"]);
    let tokens = tokens_file(&env, &[&line]);
    let port = free_port();
    env.write_config(&format!(
        "{FAST}\n[api]\nmax_connections = 4\nlisten = \"127.0.0.1:{port}\"\ntokens_file = {:?}\n",
        tokens.display().to_string()
    ));
    let _d = env.daemon();
    let addr = format!("127.0.0.1:{port}");
    let held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = std::net::TcpStream::connect(&addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut answer = String::new();
    let _ = fourth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let sock = env.api_socket();
    assert_eq!(
        crate::util::api::call(&sock, "GET", "/healthz", None).status,
        200
    );
    drop(held);
}

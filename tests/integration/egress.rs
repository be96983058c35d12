//! The egress guard end to end, on loopback only: the default policy denies loopback, so a
//! receiver on 127.0.0.1 stands for a private address; a denied attempt must never reach it.
//! Names resolve through `/etc/hosts` (`localhost`) or the test resolver (`WEBHOOKD_TEST_DNS`),
//! never a real DNS server, and nothing is ever sent outside 127.0.0.0/8.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::api::call;
use crate::util::receiver::{Receiver, Reply};
use crate::util::{wait_until, TestEnv};

/// Waits for the first attempt of message `uuid` and returns its error text.
#[track_caller]
fn first_error(env: &TestEnv, uuid: &str) -> String {
    wait_until(Duration::from_secs(10), "a first attempt", || {
        env.show(uuid)["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    env.show(uuid)["attempts"][0]["error"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Fast retries, and an `[egress]` table so that loopback stays denied.
fn config(egress: &str) -> String {
    config_with(egress, "")
}

/// As `config`, with more `[http]` keys.
fn config_with(egress: &str, http: &str) -> String {
    format!(
        "workers = 2\n[retry]\nmax_attempts = 50\nbase_delay = \"20ms\"\nmax_delay = \"50ms\"\n\
         [origins]\nbreaker_failures = 1000\n[http]\ntimeout = \"3s\"\nconnect_timeout = \"1s\"\n\
         {http}\n[egress]\n{egress}\n"
    )
}

#[test]
fn loopback_is_denied_by_default_at_enqueue_and_at_connect_and_opened_by_egress_allow() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config("egress-default", &config("deny = []"));

    // An address literal is refused at enqueue, naming the range; nothing is stored.
    let (code, err) = env.fail(&["enqueue", &rx.url("/literal"), "-d", "x"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("127.0.0.1 is loopback (127.0.0.0/8)"), "{err}");
    assert_eq!(env.queue("pending"), 0);
    // So is an endpoint that points there (and with allow_private it is accepted).
    let (code, err) = env.fail(&["endpoints", "add", "internal", "--url", &rx.url("/")]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("egress"), "{err}");

    // A name is checked when it is resolved: localhost is 127.0.0.1 (and ::1).
    let named = format!("http://localhost:{}/named", rx.port);
    let uuid = env.enqueue(&[&named, "-d", "x"]);
    let daemon = env.daemon();
    // The API refuses the literal as enqueue does: 400, naming the field.
    let posted = call(
        &env.api_socket(),
        "POST",
        "/v1/messages",
        Some(&serde_json::json!({"url": rx.url("/api"), "body": "x"})),
    );
    assert_eq!(posted.status, 400, "{}", posted.text());
    assert_eq!(posted.json()["field"], "url", "{}", posted.text());
    assert!(posted.text().contains("127.0.0.0/8"), "{}", posted.text());
    let error = first_error(&env, &uuid);
    assert!(
        error.starts_with("blocked by egress policy:") && error.contains("is loopback"),
        "{error}"
    );
    assert_eq!(rx.count(), 0, "no connection reached the receiver");

    // Opening loopback (a reload) lets the same message through at its next attempt.
    env.write_config(&config("allow = [\"127.0.0.0/8\", \"::1\"]"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "delivered after the reload",
        || env.state(&uuid) == "delivered",
    );
    assert_eq!(rx.count(), 1);
}

#[test]
fn allow_private_opens_loopback_for_one_endpoint_only() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config("egress-private", &config("deny = []"));
    env.ok(&[
        "endpoints",
        "add",
        "internal",
        "--url",
        &rx.url("/internal"),
        "--allow-private",
    ]);
    let _d = env.daemon();
    let to_endpoint = env.enqueue(&["--endpoint", "internal", "-d", "a"]);
    let plain = env.enqueue(&[&format!("http://localhost:{}/plain", rx.port), "-d", "b"]);
    wait_until(Duration::from_secs(10), "the endpoint's message", || {
        env.state(&to_endpoint) == "delivered"
    });
    first_error(&env, &plain);
    let paths: Vec<String> = rx.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/internal"], "the plain URL never got through");
}

/// DNS rebinding: the name first resolves to an allowed address, then to a denied one. Each
/// connection is vetted on the address it dials, so the second never reaches the denied one.
#[test]
fn a_name_that_rebinds_to_a_denied_address_is_not_followed() {
    // The allowed address answers and closes each connection, so every attempt resolves anew.
    let allowed = Receiver::start_on("127.0.0.2:0", |_, _| Reply::Full {
        status: 200,
        headers: vec![("connection".into(), "close".into())],
        body: Vec::new(),
    });
    let port = allowed.port;
    // The denied address, same port: counts every connection it gets.
    let denied = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1 on the same port");
    denied.set_nonblocking(true).unwrap();
    let env = TestEnv::with_config("egress-rebind", &config("allow = [\"127.0.0.2\"]"));
    let url = format!("http://rebind.test:{port}/hook");
    let first = env.enqueue(&[&url, "-d", "1"]);
    let _d = env.daemon_env(
        &[],
        &[("WEBHOOKD_TEST_DNS", "rebind.test=127.0.0.2|127.0.0.1")],
    );
    wait_until(Duration::from_secs(10), "the first message", || {
        env.state(&first) == "delivered"
    });
    let second = env.enqueue(&[&url, "-d", "2"]);
    wait_until(
        Duration::from_secs(10),
        "the second message's attempts",
        || {
            env.show(&second)["attempts"]
                .as_array()
                .is_some_and(|a| a.len() >= 2)
        },
    );
    let shown = env.show(&second);
    assert!(
        shown["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1 is loopback"),
        "{shown}"
    );
    assert_eq!(allowed.count(), 1);
    assert!(
        denied.accept().is_err(),
        "a connection reached the denied address"
    );
}

/// A forward proxy on loopback (CONNECT): it records each target and relays the bytes.
struct Proxy {
    port: u16,
    targets: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(addr: &str) -> Proxy {
        let listener = TcpListener::bind(addr).unwrap();
        let port = listener.local_addr().unwrap().port();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (t, c) = (targets.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let t = t.clone();
                std::thread::spawn(move || relay(conn, &t));
            }
        });
        Proxy {
            port,
            targets,
            connections,
        }
    }
}

fn relay(client: TcpStream, targets: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    targets.lock().unwrap().push(target.clone());
    // Only loopback targets, whatever the request says.
    if !target.starts_with("127.") && !target.starts_with("localhost:") {
        return;
    }
    let Ok(upstream) = TcpStream::connect(&target) else {
        return;
    };
    let mut out = client.try_clone().unwrap();
    out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .unwrap();
    let mut up_w = upstream.try_clone().unwrap();
    let mut up_r = upstream;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut out);
    });
    let mut buf = reader.buffer().to_vec();
    let _ = up_w.write_all(&buf);
    buf.clear();
    let mut rest = reader.into_inner();
    let _ = std::io::copy(&mut rest, &mut up_w);
    let _ = rest.read(&mut [0]);
}

#[test]
fn http_proxy_carries_requests_after_the_destination_is_checked_and_the_environment_is_ignored() {
    let rx = Receiver::ok();
    // The proxy is on 127.0.0.3, which the policy does not open: its own address is the
    // operator's choice and not checked; the destination (127.0.0.1) is.
    let proxy = Proxy::start("127.0.0.3:0");
    let proxy_url = format!("http://127.0.0.3:{}", proxy.port);

    // Without http.proxy, proxy variables in the environment are never used.
    let env = TestEnv::with_config("egress-noproxy", &config("allow = [\"127.0.0.1\"]"));
    let direct = env.enqueue(&[&format!("http://localhost:{}/direct", rx.port), "-d", "x"]);
    let d = env.daemon_env(
        &[],
        &[
            ("HTTP_PROXY", &proxy_url),
            ("HTTPS_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
        ],
    );
    wait_until(Duration::from_secs(10), "delivered directly", || {
        env.state(&direct) == "delivered"
    });
    drop(d);
    assert_eq!(proxy.connections.load(Ordering::SeqCst), 0);

    // With http.proxy, requests go through it, and the proxy is asked for the vetted address.
    let with_proxy = config_with(
        "allow = [\"127.0.0.1\"]",
        &format!("proxy = \"{proxy_url}\""),
    );
    let env = TestEnv::with_config("egress-proxy", &with_proxy);
    let via = env.enqueue(&[&format!("http://localhost:{}/via", rx.port), "-d", "y"]);
    // A name that resolves only to a denied address is checked before the proxy is asked.
    let denied = env.enqueue(&[&format!("http://denied.test:{}/no", rx.port), "-d", "z"]);
    let _d = env.daemon_env(&[], &[("WEBHOOKD_TEST_DNS", "denied.test=127.0.0.5")]);
    wait_until(
        Duration::from_secs(10),
        "delivered through the proxy",
        || env.state(&via) == "delivered",
    );
    let error = first_error(&env, &denied);
    assert!(error.contains("127.0.0.5 is loopback"), "{error}");
    // The proxy resolves the name itself (after webhookd checked it): it was asked for the
    // allowed destination only.
    let targets = proxy.targets.lock().unwrap().clone();
    assert_eq!(targets, [format!("localhost:{}", rx.port)]);
    assert!(rx.requests().iter().any(|r| r.path == "/via"));

    // A proxy set on an endpoint managed at runtime is not the operator's: its own address
    // passes the policy too, so it cannot be used to reach the network.
    env.ok(&[
        "endpoints",
        "add",
        "managed",
        "--url",
        &format!("http://localhost:{}/managed", rx.port),
        "--proxy",
        &proxy_url,
    ]);
    let managed = env.enqueue(&["--endpoint", "managed", "-d", "m"]);
    let error = first_error(&env, &managed);
    assert!(error.contains("127.0.0.3 is loopback"), "{error}");
    assert_eq!(
        proxy.targets.lock().unwrap().len(),
        1,
        "the proxy was not reached"
    );
}

/// A config-file endpoint (or alert_url) at a denied address is not a configuration error (an
/// upgrade must not stop every command and delivery): the daemon says so at start, and its
/// attempts fail with egress_denied without reaching the receiver.
#[test]
fn a_config_endpoint_at_a_denied_address_is_logged_and_its_attempts_fail() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config(
        "egress-config",
        &format!(
            "{}[endpoints.internal]\nurl = \"{}\"\n",
            config("deny = []"),
            rx.url("/in")
        ),
    );
    let status = env.run(&["status"]);
    assert_ne!(status.status.code(), Some(78), "not a configuration error");
    let uuid = env.enqueue(&["--endpoint", "internal", "-d", "x"]);
    let d = env.daemon();
    first_error(&env, &uuid);
    assert!(
        d.log_text()
            .contains("endpoints.internal.url: blocked by egress policy: 127.0.0.1 is loopback"),
        "{}",
        d.log_text()
    );
    assert_eq!(rx.count(), 0);
}

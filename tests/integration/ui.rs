//! The dashboard's server side over the API socket: assets and their headers, the token login and
//! its cookie, CSRF and site checks, scopes, sessions ended by a token's removal; and the two
//! routes it draws from (`/v1/stats`, `/v1/endpoints/NAME/attempts`). The pages themselves run
//! in a real browser: tests/browser/run.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::util::api::{call, Answer, Client};
use crate::util::{wait_until, Receiver, TestEnv, FAST};

/// `webhookd token NAME --scope SCOPE --json`: the token and its line.
fn token(env: &TestEnv, name: &str, scope: &str) -> (String, String) {
    let v: Value =
        serde_json::from_str(&env.ok(&["token", name, "--scope", scope, "--json"])).unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["line"].as_str().unwrap().to_owned(),
    )
}

/// Logs in with `token`: the answer.
fn login(c: &mut Client, token: &str) -> Answer {
    let body = serde_json::to_vec(&json!({ "token": token })).unwrap();
    c.request(
        "POST",
        "/ui/login",
        &[("content-type", "application/json")],
        &body,
    )
}

/// The session cookie (`name=value`) of a login's answer, and its CSRF token.
fn session(a: &Answer) -> (String, String) {
    assert_eq!(a.status, 200, "{}", a.text());
    let cookie = a.header("set-cookie").expect("a cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, a.json()["csrf"].as_str().unwrap().to_owned())
}

fn paused(env: &TestEnv, name: &str) -> bool {
    let v: Value = serde_json::from_str(&env.ok(&["endpoints", "show", name, "--json"])).unwrap();
    v["paused"].as_bool().unwrap()
}

#[test]
fn dashboard_logins_sessions_and_csrf() {
    let env = TestEnv::new("ui-session");
    let rx = Receiver::ok();
    let (admin, admin_line) = token(&env, "ops", "admin");
    let (viewer, viewer_line) = token(&env, "viewer", "read");
    let (producer, producer_line) = token(&env, "producer", "enqueue");
    let tokens = env.dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("{admin_line}\n{viewer_line}\n{producer_line}\n"),
    )
    .unwrap();
    // No TCP listener: the dashboard is reached through the socket (ssh -L), its logins still
    // need a token.
    env.write_config(&format!(
        "{FAST}\n[api]\ntokens_file = {:?}\n[endpoints.hold]\nurl = {:?}\n",
        tokens.display().to_string(),
        rx.url("/hold")
    ));
    let d = env.daemon();
    let sock = env.api_socket();
    let mut c = Client::connect(&sock);

    // The pages: embedded, with a strict policy; no inline script.
    let index = c.request("GET", "/ui/", &[], b"");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = index.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let html = index.text();
    assert!(html.contains("<script type=\"module\" src=\"/ui/app.js\">"));
    assert_eq!(html.matches("<script").count(), 1, "one script, by URL");
    let js = c.request("GET", "/ui/app.js", &[], b"");
    assert_eq!(
        (js.status, js.header("content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
    assert_eq!(c.request("GET", "/ui/nothing.js", &[], b"").status, 404);
    let moved = c.request("GET", "/ui", &[], b"");
    assert_eq!(
        (moved.status, moved.header("location")),
        (308, Some("/ui/"))
    );

    // Data needs a session: tokens alone (or nothing) do not do.
    assert_eq!(c.request("GET", "/ui/api/status", &[], b"").status, 401);
    let bearer = format!("Bearer {admin}");
    let with_bearer = c.request("GET", "/ui/api/status", &[("authorization", &bearer)], b"");
    assert_eq!(with_bearer.status, 401);
    let wrong = login(&mut c, "whk_wrong");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let enqueue_only = login(&mut c, &producer);
    assert_eq!(enqueue_only.status, 403, "{}", enqueue_only.text());
    assert!(enqueue_only.text().contains("scope"));

    let ok = login(&mut c, &admin);
    let set = ok.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "not under TLS: {set}");
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let v = ok.json();
    assert_eq!(
        (v["name"].as_str(), v["scopes"][0].as_str()),
        (Some("ops"), Some("admin"))
    );
    let (cookie, csrf) = session(&ok);
    let status = c.request("GET", "/ui/api/status", &[("cookie", &cookie)], b"");
    assert_eq!(status.status, 200, "{}", status.text());
    assert_eq!(
        status.json()["queue"],
        call(&sock, "GET", "/v1/status", None).json()["queue"]
    );

    // A change needs the CSRF token, and a browser's word that it comes from this site.
    let pause = "/ui/api/endpoints/hold/pause";
    let refused = c.request("POST", pause, &[("cookie", &cookie)], b"");
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("CSRF"), "{}", refused.text());
    let wrong_token = [("cookie", cookie.as_str()), ("x-csrf-token", "nope")];
    assert_eq!(c.request("POST", pause, &wrong_token, b"").status, 403);
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let h = [
            ("cookie", cookie.as_str()),
            ("x-csrf-token", csrf.as_str()),
            (name, value),
        ];
        let a = c.request("POST", pause, &h, b"");
        assert_eq!(a.status, 403, "{name}: {value}: {}", a.text());
    }
    assert!(!paused(&env, "hold"), "nothing refused was done");
    let h = [
        ("cookie", cookie.as_str()),
        ("x-csrf-token", csrf.as_str()),
        ("origin", "http://webhookd"),
        ("sec-fetch-site", "same-origin"),
    ];
    let done = c.request("POST", pause, &h, b"");
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(paused(&env, "hold"));
    // Who did it is in the log.
    let line = "dashboard: token ops POST /v1/endpoints/hold/pause: 200";
    wait_until(Duration::from_secs(5), "the audit line", || {
        d.log_text().contains(line)
    });
    // Without Sec-Fetch-Site (an older browser), an Origin of this host or of the host a proxy
    // in front was asked for passes; any other is refused.
    let resume = "/ui/api/endpoints/hold/resume";
    let with_origin = |origin: &'static str, forwarded: Option<&'static str>| {
        let mut h = vec![
            ("cookie", cookie.as_str()),
            ("x-csrf-token", csrf.as_str()),
            ("origin", origin),
        ];
        if let Some(f) = forwarded {
            h.push(("x-forwarded-host", f));
        }
        h
    };
    let mut c2 = Client::connect(&sock);
    let evil = with_origin("https://evil.example", Some("dash.example"));
    assert_eq!(c2.request("POST", resume, &evil, b"").status, 403);
    let proxied = with_origin("https://dash.example", Some("dash.example"));
    assert_eq!(c2.request("POST", resume, &proxied, b"").status, 200);
    // A session does what its token may over TCP, no more: admin does not enqueue.
    let post = c.request(
        "POST",
        "/ui/api/messages",
        &[
            ("cookie", cookie.as_str()),
            ("x-csrf-token", csrf.as_str()),
            ("content-type", "application/json"),
        ],
        serde_json::to_vec(&json!({"url": rx.url("/x")}))
            .unwrap()
            .as_slice(),
    );
    assert_eq!(post.status, 403, "{}", post.text());
    assert!(post.text().contains("enqueue scope"), "{}", post.text());
    let refused = "dashboard: token ops POST /v1/messages: refused, 403 (no enqueue scope)";
    wait_until(Duration::from_secs(5), "the refusal's line", || {
        d.log_text().contains(refused)
    });
    c.request("POST", pause, &h, b"");
    // Only /v1 routes are behind /ui/api.
    let metrics = c.request("GET", "/ui/api/../metrics", &[("cookie", &cookie)], b"");
    assert_eq!(metrics.status, 404, "{}", metrics.text());

    // A read token views and cannot act.
    let (view_cookie, view_csrf) = session(&login(&mut c, &viewer));
    let h = [
        ("cookie", view_cookie.as_str()),
        ("x-csrf-token", view_csrf.as_str()),
    ];
    let a = c.request("POST", "/ui/api/endpoints/hold/resume", &h, b"");
    assert_eq!(a.status, 403);
    assert!(a.text().contains("admin scope"), "{}", a.text());
    assert_eq!(c.request("GET", "/ui/api/endpoints", &h, b"").status, 200);

    // A token removed from the file (and the daemon reloaded) ends its sessions.
    std::fs::write(&tokens, format!("{viewer_line}\n")).unwrap();
    d.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the admin session to end", || {
        c.request("GET", "/ui/session", &[("cookie", &cookie)], b"")
            .status
            == 401
    });
    // Logging out ends a session.
    let out = c.request("POST", "/ui/logout", &h, b"");
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(c.request("GET", "/ui/session", &h, b"").status, 401);
}

/// The socket trusts its clients; forwarded to a browser's machine it would trust every page
/// the browser opens. So it refuses what a web page sends (Origin, Sec-Fetch-Site), and serves
/// programs (curl, the CLI) as before.
#[test]
fn the_socket_refuses_requests_a_web_page_sent() {
    let env = TestEnv::new("ui-socket-pages");
    let failing = Receiver::start(|_, _| crate::util::Reply::Status(500));
    let _d = env.daemon();
    let sock = env.api_socket();
    let dead = env.enqueue(&[&failing.url("/x"), "--max-attempts", "1"]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&dead) == "dead"
    });
    let mut c = Client::connect(&sock);
    let body = br#"{"all": true}"#;
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-origin"), // a page of a rebound name, on the forwarded port
    ] {
        let a = c.request("POST", "/v1/dlq/delete", &[(name, value)], body);
        assert_eq!(a.status, 403, "{name}: {value}: {}", a.text());
        let read = c.request("GET", "/v1/dlq", &[(name, value)], b"");
        assert_eq!(read.status, 403, "{name}: {value}");
    }
    assert_eq!(env.state(&dead), "dead", "nothing refused was done");
    // An address typed by the user, and programs, are served.
    let typed = c.request("GET", "/v1/status", &[("sec-fetch-site", "none")], b"");
    assert_eq!(typed.status, 200);
    // count_only: the counts without the uuids.
    let counted = call(
        &sock,
        "POST",
        "/v1/dlq/delete",
        Some(&json!({"all": true, "dry_run": true, "count_only": true})),
    )
    .json();
    assert_eq!(
        (counted["changed"].as_u64(), counted["uuids"].clone()),
        (Some(1), json!([]))
    );
    let deleted = c.request("POST", "/v1/dlq/delete", &[], body);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["changed"], 1);
}

#[test]
fn without_a_tokens_file_the_dashboard_says_what_it_needs() {
    let env = TestEnv::new("ui-no-tokens");
    let _d = env.daemon();
    let a = call(
        &env.api_socket(),
        "POST",
        "/ui/login",
        Some(&json!({"token": "whk_x"})),
    );
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(a.text().contains("api.tokens_file"), "{}", a.text());
}

#[test]
fn stats_and_recent_attempts_count_what_happened() {
    let env = TestEnv::new("ui-stats");
    let rx = Receiver::ok();
    env.write_config(&format!(
        "{FAST}\n[endpoints.hook]\nurl = {:?}\n[endpoints.quiet]\nurl = {:?}\n",
        rx.url("/hook"),
        rx.url("/quiet")
    ));
    let _d = env.daemon();
    let sock = env.api_socket();
    let uuids: Vec<String> = (0..3)
        .map(|i| env.enqueue(&["--endpoint", "hook", "-d", &i.to_string()]))
        .collect();
    let posted = call(
        &sock,
        "POST",
        "/v1/messages",
        Some(&json!({"endpoint": "hook", "body": "api"})),
    );
    assert_eq!(posted.status, 202, "{}", posted.text());
    wait_until(Duration::from_secs(10), "4 deliveries", || rx.count() == 4);
    // Accepted, not yet delivered: counted as accepted, and the oldest pending message.
    env.enqueue(&["--endpoint", "quiet", "--delay", "1h"]);
    // A plain URL that fails: a failed attempt, on no endpoint's day.
    let failing = Receiver::start(|_, _| crate::util::Reply::Status(500));
    let dead = env.enqueue(&[&failing.url("/x"), "--max-attempts", "1"]);
    wait_until(Duration::from_secs(10), "dead", || {
        env.state(&dead) == "dead"
    });

    let stats = call(&sock, "GET", "/v1/stats", None).json();
    assert_eq!(stats["interval_seconds"], 10);
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 360, "an hour of 10-s intervals");
    let sum = |field: &str| {
        series
            .iter()
            .map(|i| i[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("delivered"), 4);
    assert_eq!(sum("failed"), 1);
    // A running daemon takes the CLI's messages through its socket too.
    assert_eq!(sum("accepted"), 6);
    assert!(stats["oldest_pending_at"].is_string(), "{stats}");
    let days = call(&sock, "GET", "/v1/stats/endpoints", None).json();
    let endpoints = days.as_array().unwrap();
    assert_eq!(
        endpoints.len(),
        1,
        "only endpoints with attempts: {endpoints:?}"
    );
    let hook = &endpoints[0];
    assert_eq!(hook["endpoint"], "hook");
    assert_eq!(
        (hook["delivered"].as_u64(), hook["failed"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(hook["success_rate"], 1.0);
    assert!(hook["p95_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(hook["hourly_delivered"].as_array().unwrap().len(), 24);
    assert_eq!(hook["hourly_delivered"][23], 4);
    assert_eq!(hook["hourly_failed"][23], 0);

    let attempts = call(&sock, "GET", "/v1/endpoints/hook/attempts", None).json();
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    for a in attempts {
        assert_eq!(
            (a["state"].as_str(), a["status"].as_u64()),
            (Some("delivered"), Some(200))
        );
    }
    let times: Vec<&str> = attempts.iter().map(|a| a["at"].as_str().unwrap()).collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);
    assert!(uuids
        .iter()
        .all(|u| attempts.iter().any(|a| a["uuid"] == u.as_str())));
    let two = call(&sock, "GET", "/v1/endpoints/hook/attempts?limit=2", None).json();
    assert_eq!(two.as_array().unwrap().len(), 2);
    let none = call(&sock, "GET", "/v1/endpoints/quiet/attempts", None);
    assert_eq!((none.status, none.json()), (200, json!([])));
    let bad = call(&sock, "GET", "/v1/endpoints/hook/attempts?limit=0", None);
    assert_eq!(
        (bad.status, bad.json()["field"].as_str()),
        (400, Some("limit"))
    );
    let unknown = call(&sock, "GET", "/v1/endpoints/nowhere/attempts", None);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
}

/// Over TCP the cookie is `Secure` when the browser speaks HTTPS: here, behind a TLS proxy that
/// says so (`X-Forwarded-Proto`); on plain loopback HTTP it is not (a browser would drop it).
#[test]
fn the_cookie_is_secure_when_the_browser_speaks_https() {
    let env = TestEnv::new("ui-secure");
    let (admin, line) = token(&env, "ops", "admin");
    let tokens = env.dir.join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&format!(
        "{FAST}\n[api]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = {:?}\n",
        tokens.display().to_string()
    ));
    let _d = env.daemon();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let cookie = |proto: Option<&str>| {
        let mut req = agent
            .post(format!("http://127.0.0.1:{port}/ui/login"))
            .header("content-type", "application/json");
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        let r = req
            .send(serde_json::to_vec(&json!({ "token": admin })).unwrap())
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.headers()["set-cookie"].to_str().unwrap().to_owned()
    };
    assert!(!cookie(None).contains("Secure"));
    assert!(!cookie(Some("http")).contains("Secure"));
    assert!(cookie(Some("https")).contains("; Secure"));
}

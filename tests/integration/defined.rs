//! Endpoints managed at runtime: added, changed, paused and removed with the CLI and the API
//! while the daemon runs (no restart, no reload), signed with sealed secrets, rotated with an
//! overlap, and one name in one place.

use std::time::Duration;

use serde_json::{json, Value};

use crate::endpoints::{python_verifies, SECRET, SECRET2};
use crate::util::api::call;
use crate::util::{wait_until, Receiver, TestEnv, FAST};

const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every file of the database (main, WAL), concatenated.
fn database_bytes(env: &TestEnv) -> Vec<u8> {
    if env.postgres() {
        // Every stored value of every endpoint and message, as text.
        let text: String = env.sql_one(
            "SELECT coalesce((SELECT string_agg(e::text, ' ') FROM endpoints e), '') || \
             coalesce((SELECT string_agg(p::text, ' ') FROM payloads p), '')",
        );
        return text.into_bytes();
    }
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let mut p = env.db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn endpoints_added_at_runtime_deliver_signed_change_and_pause_without_a_restart() {
    let rx = Receiver::ok();
    let env = TestEnv::new("defined-cli");
    let _d = env.daemon();
    let added = json_of(&env.ok(&[
        "endpoints",
        "add",
        "acme-billing",
        "--url",
        &rx.url("/a"),
        "--tenant",
        "acme",
        "--event",
        "invoice.*",
        "-H",
        "X-Team: billing",
        "--json",
    ]));
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{added}");
    assert_eq!(added["tenant"], "acme");
    assert_eq!(added["events"], json!(["invoice.*"]));

    // The daemon uses it at once: no restart, no reload.
    let uuid = env.enqueue(&[
        "--endpoint",
        "acme-billing",
        "--path",
        "/x",
        "-d",
        "{\"n\":1}",
    ]);
    wait_until(WAIT, "delivered to the new endpoint", || rx.count() == 1);
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/a/x");
    assert_eq!(req.header("x-team"), Some("billing"));
    assert_eq!(req.webhook_id(), uuid);
    assert_eq!(
        python_verifies(req, &[&secret]),
        1,
        "signed with its secret"
    );

    // The secret is sealed at rest: the database does not contain it; the key file is private.
    assert!(!contains(&database_bytes(&env), secret.as_bytes()));
    let key = env.secrets_key();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "no access for others: {mode:o}");
    // ... and shown again only when asked for explicitly.
    let shown = json_of(&env.ok(&["endpoints", "secret", "acme-billing", "--json"]));
    assert_eq!(shown[0]["secret"], secret.as_str());
    let listed = env.ok(&["endpoints", "show", "acme-billing", "--json"]);
    assert!(!listed.contains(&secret), "{listed}");
    assert_eq!(json_of(&listed)["source"], "database");

    // A change applies to the next attempt.
    env.ok(&[
        "endpoints",
        "update",
        "acme-billing",
        "--url",
        &rx.url("/b"),
    ]);
    env.enqueue(&["--endpoint", "acme-billing", "-d", "2"]);
    wait_until(WAIT, "delivered to the changed URL", || rx.count() == 2);
    assert_eq!(rx.requests()[1].path, "/b");

    // Paused: messages stay queued; resumed: they go.
    env.ok(&["endpoints", "pause", "acme-billing"]);
    let held = env.enqueue(&["--endpoint", "acme-billing", "-d", "3"]);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(env.state(&held), "pending");
    assert_eq!(rx.count(), 2);
    let show = json_of(&env.ok(&["endpoints", "show", "acme-billing", "--json"]));
    assert_eq!(show["paused"], true);
    env.ok(&["endpoints", "resume", "acme-billing"]);
    wait_until(WAIT, "delivered after resume", || rx.count() == 3);
    wait_until(WAIT, "recorded", || env.state(&held) == "delivered");
}

#[test]
fn a_rotated_secret_signs_beside_the_old_one_during_the_overlap() {
    let rx = Receiver::ok();
    let env = TestEnv::new("defined-rotate");
    let _d = env.daemon();
    env.ok(&[
        "endpoints",
        "add",
        "r",
        "--url",
        &rx.url("/"),
        "--secret",
        SECRET,
    ]);
    env.ok(&[
        "endpoints",
        "rotate-secret",
        "r",
        "--secret",
        SECRET2,
        "--overlap",
        "1h",
    ]);
    env.enqueue(&["--endpoint", "r", "-d", "{\"a\":1}"]);
    wait_until(WAIT, "delivered", || rx.count() == 1);
    let req = &rx.requests()[0];
    let sig = req.header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    assert_eq!(python_verifies(req, &[SECRET]), 1);
    assert_eq!(python_verifies(req, &[SECRET2]), 1);
    // `webhookd verify`, as a receiver with only the new secret would check.
    let body = String::from_utf8(req.body.clone()).unwrap();
    let verify = env.run(&[
        "verify",
        "--secret",
        SECRET2,
        "--id",
        req.header("webhook-id").unwrap(),
        "--timestamp",
        req.header("webhook-timestamp").unwrap(),
        "--signature",
        sig,
        "-d",
        &body,
    ]);
    assert!(verify.status.success(), "{verify:?}");

    // No overlap: only the newest signs from the next attempt on.
    let third = json_of(&env.ok(&[
        "endpoints",
        "rotate-secret",
        "r",
        "--overlap",
        "0s",
        "--json",
    ]));
    let third = third["secret"].as_str().unwrap().to_owned();
    env.enqueue(&["--endpoint", "r", "-d", "{\"a\":2}"]);
    wait_until(WAIT, "delivered", || rx.count() == 2);
    let req = &rx.requests()[1];
    assert_eq!(python_verifies(req, &[&third]), 1);
    assert_eq!(python_verifies(req, &[SECRET, SECRET2]), 0);
}

#[test]
fn removing_an_endpoint_with_queued_messages_needs_cancel_pending() {
    let env = TestEnv::new("defined-remove");
    env.ok(&["endpoints", "add", "gone", "--url", "http://127.0.0.1:9/"]);
    let uuid = env.enqueue(&["--endpoint", "gone", "--delay", "1h", "-d", "x"]);
    let (code, err) = env.fail(&["endpoints", "remove", "gone"]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("1 message") && err.contains("--cancel-pending"),
        "{err}"
    );
    assert_eq!(env.state(&uuid), "pending");
    let out = json_of(&env.ok(&["endpoints", "remove", "gone", "--cancel-pending", "--json"]));
    assert_eq!(out["cancelled"], 1);
    assert_eq!(env.state(&uuid), "cancelled");
    let (code, err) = env.fail(&["enqueue", "--endpoint", "gone", "-d", "x"]);
    assert_eq!(code, 66, "{err}");
    let (code, _) = env.fail(&["endpoints", "remove", "gone"]);
    assert_eq!(code, 66);
    // A name added again starts afresh: not paused as the removed one was.
    env.ok(&["endpoints", "add", "again", "--url", "http://127.0.0.1:9/"]);
    env.ok(&["endpoints", "pause", "again"]);
    env.ok(&["endpoints", "remove", "again"]);
    env.ok(&["endpoints", "add", "again", "--url", "http://127.0.0.1:9/"]);
    let shown = json_of(&env.ok(&["endpoints", "show", "again", "--json"]));
    assert_eq!(shown["paused"], false, "{shown}");
}

#[test]
fn a_name_lives_in_the_config_file_or_the_database_not_both() {
    let env = TestEnv::with_config(
        "defined-conflict",
        &format!("{FAST}\n[endpoints.cfg]\nurl = \"http://127.0.0.1:9/\"\n"),
    );
    let (code, err) = env.fail(&["endpoints", "add", "cfg", "--url", "http://127.0.0.1:9/"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("config file"), "{err}");
    let (code, err) = env.fail(&["endpoints", "update", "cfg", "--rate", "1/s"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("defined in the config file"), "{err}");
    // Bad settings name their option; nothing is stored.
    for (args, flag) in [
        (vec!["--url", "ftp://x/"], "--url"),
        (
            vec!["--url", "http://127.0.0.1:9/", "--rate", "fast"],
            "--rate",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/", "--event", "a b"],
            "--event",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/", "--tenant", "a b"],
            "--tenant",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/", "--secret", "whsec_c2hvcnQ="],
            "--secret",
        ),
    ] {
        let mut full = vec!["endpoints", "add", "bad"];
        full.extend(args);
        let (code, err) = env.fail(&full);
        assert_eq!(code, 65, "{err}");
        assert!(err.contains(flag), "{flag}: {err}");
    }
    let list = json_of(&env.ok(&["endpoints", "list", "--json"]));
    assert!(
        list.as_array().unwrap().iter().all(|e| e["name"] != "bad"),
        "{list}"
    );
    // A file that later defines a stored name: the daemon refuses to start, naming both.
    env.ok(&["endpoints", "add", "dup", "--url", "http://127.0.0.1:9/"]);
    env.write_config(&format!(
        "{FAST}\n[endpoints.dup]\nurl = \"http://127.0.0.1:9/\"\n"
    ));
    let out = env.run(&["run"]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("endpoints.dup: also defined in the database"),
        "{err}"
    );
}

#[test]
fn the_api_manages_endpoints_and_a_new_one_takes_messages_at_once() {
    let rx = Receiver::ok();
    let env = TestEnv::new("defined-api");
    let _d = env.daemon();
    let sock = env.api_socket();
    let created = call(
        &sock,
        "POST",
        "/v1/endpoints",
        Some(&json!({"name": "t1", "url": rx.url("/t1"), "tenant": "t", "events": ["*"]})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let secret = created.json()["secret"].as_str().unwrap().to_owned();
    // At once, before the dispatcher's next look at the database.
    let posted = call(
        &sock,
        "POST",
        "/v1/messages",
        Some(&json!({"endpoint": "t1", "body": "hi"})),
    );
    assert_eq!(posted.status, 202, "{}", posted.text());
    wait_until(WAIT, "delivered", || rx.count() == 1);
    assert_eq!(python_verifies(&rx.requests()[0], &[&secret]), 1);

    for (method, path, body, status, field) in [
        (
            "POST",
            "/v1/endpoints",
            json!({"name": "t1", "url": rx.url("/")}),
            409,
            None,
        ),
        (
            "POST",
            "/v1/endpoints",
            json!({"url": rx.url("/")}),
            400,
            Some("name"),
        ),
        (
            "POST",
            "/v1/endpoints",
            json!({"name": "t2", "url": rx.url("/"), "rate": 5}),
            400,
            Some("rate"),
        ),
        (
            "POST",
            "/v1/endpoints",
            json!({"name": "t2", "url": rx.url("/"), "events": ["a b"]}),
            400,
            Some("events[0]"),
        ),
        (
            "PATCH",
            "/v1/endpoints/nope",
            json!({"rate": "1/s"}),
            404,
            None,
        ),
        (
            "PATCH",
            "/v1/endpoints/t1",
            json!({"secret": SECRET}),
            400,
            Some("secret"),
        ),
        ("POST", "/v1/endpoints/nope/pause", json!({}), 404, None),
    ] {
        let a = call(&sock, method, path, Some(&body));
        assert_eq!(a.status, status, "{method} {path} {body}: {}", a.text());
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        if let Some(f) = field {
            assert_eq!(a.json()["field"], f, "{}", a.text());
        }
    }

    let patched = call(
        &sock,
        "PATCH",
        "/v1/endpoints/t1",
        Some(&json!({"url": rx.url("/t1b"), "tenant": null})),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["tenant"], Value::Null);
    let paused = call(&sock, "POST", "/v1/endpoints/t1/pause", None);
    assert_eq!(paused.status, 200, "{}", paused.text());
    let held = call(
        &sock,
        "POST",
        "/v1/messages",
        Some(&json!({"endpoint": "t1", "body": "2"})),
    );
    assert_eq!(held.status, 202);
    let uuid = held.json()["uuid"].as_str().unwrap().to_owned();
    let got = call(&sock, "GET", "/v1/endpoints/t1", None).json();
    assert_eq!(
        (got["paused"].clone(), got["source"].clone()),
        (json!(true), json!("database"))
    );
    let deleted = call(&sock, "DELETE", "/v1/endpoints/t1", None);
    assert_eq!(deleted.status, 409, "queued message: {}", deleted.text());
    let deleted = call(
        &sock,
        "DELETE",
        "/v1/endpoints/t1?cancel_pending=true",
        None,
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["cancelled"], 1);
    assert_eq!(env.state(&uuid), "cancelled");
    assert_eq!(rx.count(), 1, "nothing sent while paused");
}

#[test]
fn an_event_reaches_exactly_its_tenants_subscribers_once_each_with_one_webhook_id() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config(
        "events",
        &format!(
            "{FAST}\n[endpoints.cfg-acme]\nurl = \"{}\"\ntenant = \"acme\"\nevents = [\"invoice.paid\"]\nsecret = \"{SECRET}\"\n",
            rx.url("/cfg-acme")
        ),
    );
    let _d = env.daemon();
    let add = |name: &str, tenant: Option<&str>, events: &[&str]| -> String {
        let url = rx.url(&format!("/{name}"));
        let mut args = vec!["endpoints", "add", name, "--url", url.as_str(), "--json"];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        for e in events {
            args.extend(["--event", e]);
        }
        let out = json_of(&env.ok(&args));
        out["secret"].as_str().unwrap().to_owned()
    };
    let exact = add("acme-exact", Some("acme"), &["invoice.paid"]);
    let prefix = add("acme-prefix", Some("acme"), &["invoice.*"]);
    let all = add("acme-all", Some("acme"), &["*"]);
    add("acme-other", Some("acme"), &["customer.*"]);
    add("acme-none", Some("acme"), &[]);
    add("acme-paused", Some("acme"), &["*"]);
    env.ok(&["endpoints", "pause", "acme-paused"]);
    add("globex-all", Some("globex"), &["*"]);
    add("untenanted", None, &["invoice.*"]);

    let out = json_of(&env.ok(&[
        "enqueue",
        "--event",
        "invoice.paid",
        "--tenant",
        "acme",
        "-d",
        "{\"invoice\":42}",
        "--key",
        "inv-42",
        "--json",
    ]));
    assert_eq!(out["created"], true, "{out}");
    assert_eq!(out["deliveries"], 4, "{out}");
    let id = out["id"].as_str().unwrap().to_owned();
    wait_until(WAIT, "four deliveries", || rx.count() == 4);
    std::thread::sleep(Duration::from_millis(300));
    let reqs = rx.requests();
    let mut paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["/acme-all", "/acme-exact", "/acme-prefix", "/cfg-acme"]
    );
    for r in &reqs {
        assert_eq!(r.webhook_id(), id, "every delivery carries the event's id");
        assert_eq!(r.header("webhook-event"), Some("invoice.paid"));
        assert_eq!(r.body, b"{\"invoice\":42}");
        let secret = match r.path.as_str() {
            "/acme-exact" => exact.as_str(),
            "/acme-prefix" => prefix.as_str(),
            "/acme-all" => all.as_str(),
            _ => SECRET,
        };
        assert_eq!(
            python_verifies(r, &[secret]),
            1,
            "{} signs with its own secret",
            r.path
        );
    }

    // The same key again (per tenant): nothing new.
    let again = json_of(&env.ok(&[
        "enqueue",
        "--event",
        "invoice.paid",
        "--tenant",
        "acme",
        "-d",
        "{}",
        "--key",
        "inv-42",
        "--json",
    ]));
    assert_eq!(
        (again["id"].as_str(), again["created"].clone()),
        (Some(id.as_str()), json!(false))
    );
    // ... but another tenant's event with that key is its own.
    let globex = json_of(&env.ok(&[
        "enqueue",
        "--event",
        "invoice.paid",
        "--tenant",
        "globex",
        "--key",
        "inv-42",
        "--json",
    ]));
    assert_eq!(globex["deliveries"], 1);
    // No subscriber: stored and reported, not an error.
    let none = json_of(&env.ok(&[
        "enqueue",
        "--event",
        "shipment.sent",
        "--tenant",
        "initech",
        "--json",
    ]));
    assert_eq!(
        (none["created"].clone(), none["deliveries"].clone()),
        (json!(true), json!(0))
    );
    wait_until(WAIT, "globex delivered", || rx.count() == 5);

    // `show EVENT_ID` lists its deliveries and their states.
    wait_until(WAIT, "all delivered", || {
        let v = json_of(&env.ok(&["show", &id, "--json"]));
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "delivered")
    });
    let shown = json_of(&env.ok(&["show", &id, "--json"]));
    assert_eq!(
        (shown["type"].clone(), shown["tenant"].clone()),
        (json!("invoice.paid"), json!("acme"))
    );
    let mut endpoints: Vec<String> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["endpoint"].as_str().unwrap().to_owned())
        .collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        ["acme-all", "acme-exact", "acme-prefix", "cfg-acme"]
    );
    // Lists by event type and by tenant (the config file's endpoint included).
    let listed = |args: &[&str]| -> usize {
        let mut full = vec!["list", "--state", "delivered", "--json"];
        full.extend(args);
        json_of(&env.ok(&full))["messages"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listed(&["--event", "invoice.paid"]), 5);
    assert_eq!(listed(&["--event", "invoice.sent"]), 0);
    assert_eq!(listed(&["--tenant", "acme"]), 4);
    assert_eq!(listed(&["--tenant", "globex"]), 1);
    assert_eq!(listed(&["--tenant", "nobody"]), 0);
    let one = shown["messages"][0]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(
        json_of(&env.ok(&["show", &one, "--json"]))["event"],
        id.as_str()
    );

    // Bad input names the option; nothing is stored.
    for (args, flag) in [
        (vec!["--event", "in voice"], "--event"),
        (vec!["--event", "a", "--tenant", "a b"], "--tenant"),
    ] {
        let mut full = vec!["enqueue"];
        full.extend(args);
        let (code, err) = env.fail(&full);
        assert_eq!(code, 65, "{err}");
        assert!(err.contains(flag), "{err}");
    }
}

#[test]
fn the_api_takes_events() {
    let rx = Receiver::ok();
    let env = TestEnv::new("events-api");
    let _d = env.daemon();
    let sock = env.api_socket();
    for name in ["a", "b"] {
        let r = call(
            &sock,
            "POST",
            "/v1/endpoints",
            Some(
                &json!({"name": name, "url": rx.url(&format!("/{name}")), "tenant": "t", "events": ["order.*"]}),
            ),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let posted = call(
        &sock,
        "POST",
        "/v1/events",
        Some(
            &json!({"type": "order.created", "tenant": "t", "body": "{\"order\":1}", "key": "o1"}),
        ),
    );
    assert_eq!(posted.status, 202, "{}", posted.text());
    let v = posted.json();
    assert_eq!(v["deliveries"], 2);
    wait_until(WAIT, "delivered to both", || rx.count() == 2);
    let id = v["id"].as_str().unwrap();
    assert!(rx.requests().iter().all(|r| r.webhook_id() == id));
    let by_tenant = call(
        &sock,
        "GET",
        "/v1/messages?state=delivered&tenant=t&event=order.created",
        None,
    );
    let found = by_tenant.json()["messages"].as_array().unwrap().len();
    assert_eq!(found, 2, "{}", by_tenant.text());
    let again = call(
        &sock,
        "POST",
        "/v1/events",
        Some(&json!({"type": "order.created", "tenant": "t", "key": "o1"})),
    );
    assert_eq!(again.json()["created"], false);
    for (body, field) in [
        (json!({"tenant": "t"}), "type"),
        (json!({"type": "a b"}), "type"),
        (json!({"type": "a", "colour": 1}), "colour"),
        (
            json!({"type": "order.x", "tenant": "t", "key": "o1"}),
            "key",
        ),
    ] {
        let a = call(&sock, "POST", "/v1/events", Some(&body));
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert_eq!(a.json()["field"], field, "{}", a.text());
    }
}

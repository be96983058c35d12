//! `webhookd copy`: an SQLite queue (delivered, dead, scheduled messages with their attempts, an
//! endpoint managed at runtime with its sealed secret, an event) copied into PostgreSQL, twice.

use std::time::Duration;

use crate::defined::json_of;
use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

#[test]
fn an_sqlite_queue_is_copied_into_postgres_once_whatever_the_runs() {
    let Some(pg) = TestEnv::on_postgres("copy-to", FAST) else {
        return;
    };
    let sqlite = TestEnv::with_db("copy-from", FAST, Default::default());
    let ok = Receiver::ok();
    let failing = Receiver::start(|_, _| Reply::Status(500));
    let d = sqlite.daemon();
    let added = json_of(&sqlite.ok(&[
        "endpoints",
        "add",
        "billing",
        "--url",
        &ok.url("/b"),
        "--tenant",
        "acme",
        "--event",
        "invoice.*",
        "--json",
    ]));
    let secret = added["secret"].as_str().unwrap().to_owned();
    let delivered: Vec<String> = (0..3).map(|_| sqlite.enqueue(&[&ok.url("/ok")])).collect();
    let dead = sqlite.enqueue(&[&failing.url("/fail"), "--max-attempts", "2"]);
    let event = json_of(&sqlite.ok(&[
        "enqueue",
        "--event",
        "invoice.paid",
        "--tenant",
        "acme",
        "-d",
        "{}",
        "--json",
    ]));
    wait_until(Duration::from_secs(20), "delivered and dead", || {
        sqlite.state(&dead) == "dead" && sqlite.queue("delivered") == 4
    });
    let scheduled = sqlite.enqueue(&[&ok.url("/later"), "--delay", "1h"]);
    drop(d);
    let before = sqlite.status()["queue"].clone();

    // The secrets key goes with the queue (the daemons on PostgreSQL need the same one).
    std::fs::create_dir_all(pg.secrets_key().parent().unwrap()).unwrap();
    std::fs::copy(sqlite.secrets_key(), pg.secrets_key()).unwrap();
    let to = pg.db.to_str().unwrap().to_owned();
    let from = sqlite.db.to_str().unwrap().to_owned();
    let first = json_of(&pg.ok(&["copy", "--from", &from, "--to", &to, "--json"]));
    assert_eq!(first["messages"], 6, "{first}");
    assert_eq!(first["messages_skipped"], 0, "{first}");
    assert_eq!(first["attempts"], 6, "4 deliveries and 2 failures: {first}");
    assert_eq!(first["events"], 1, "{first}");
    let again = json_of(&pg.ok(&["copy", "--from", &from, "--json"]));
    assert_eq!(again["messages"], 0, "nothing twice: {again}");
    assert_eq!(again["messages_skipped"], 6, "{again}");
    assert_eq!(again["endpoints"], 0, "{again}");

    // The same queue: counts, states, attempts, the event, the endpoint and its secret.
    assert_eq!(pg.status()["queue"], before);
    for u in &delivered {
        assert_eq!(pg.state(u), "delivered");
    }
    assert_eq!(pg.state(&scheduled), "pending");
    let shown = pg.show(&dead);
    assert_eq!(shown["state"], "dead");
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2, "{shown}");
    let ev = json_of(&pg.ok(&["show", event["id"].as_str().unwrap(), "--json"]));
    assert_eq!(ev["type"], "invoice.paid", "{ev}");
    let secrets = json_of(&pg.ok(&["endpoints", "secret", "billing", "--json"]));
    assert_eq!(secrets[0]["secret"], secret.as_str());

    // A daemon on PostgreSQL carries on: a dead letter sent again is delivered.
    let _d = pg.daemon();
    pg.ok(&["dlq", "retry", &dead, "--url", &ok.url("/again")]);
    wait_until(Duration::from_secs(20), "the dead letter delivered", || {
        pg.state(&dead) == "delivered"
    });

    // Daemons running on the PostgreSQL queue are refused: a lane's message copied after its
    // head was delivered there would wait forever.
    let (code, err) = pg.fail(&["copy", "--from", &from]);
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("stop the daemons on the PostgreSQL queue"),
        "{err}"
    );
    // A running daemon on the SQLite file is refused: its claims would be copied half-done.
    let _d = sqlite.daemon();
    let (code, err) = pg.fail(&["copy", "--from", &from]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("already running"), "{err}");
}

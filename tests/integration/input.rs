use crate::util::{file, TestEnv};

/// Asserts a refused command: non-zero exit, one stderr line containing `needle`, nothing stored.
#[track_caller]
fn refused(env: &TestEnv, args: &[&str], needle: &str) -> i32 {
    let (code, err) = env.fail(args);
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    if env.db_created() {
        assert_eq!(env.queue("pending"), 0, "{args:?} stored something");
    }
    code
}

/// A bad argument is a command-line error (64), whatever it describes; a body file too large is
/// bad data (65); a file that does not exist is 66 (README, "Exit codes").
#[test]
fn bad_enqueue_arguments_are_refused_and_store_nothing() {
    let env = TestEnv::with_config("bad-input", "max_body_size = 100\n");
    let ok = "http://127.0.0.1:9/hook";
    for (args, needle, want) in [
        (vec!["enqueue", "example.com/hook"], "invalid URL", 64),
        (vec!["enqueue", "ftp://example.com/"], "scheme", 64),
        (vec!["enqueue", "/relative"], "invalid URL", 64),
        (vec!["enqueue", "http://exa mple.com/"], "invalid URL", 64),
        // Issue 12, B.9: refused at enqueue, not at delivery.
        (
            vec!["enqueue", "http://127.0.0.1:99999/x"],
            "port 99999",
            64,
        ),
        (vec!["enqueue", "http://127.0.0.1:0/x"], "port 0", 64),
        (vec!["enqueue", "http://"], "no host", 64),
        (vec!["enqueue", ok, "-H", "NoColon"], "Name: value", 64),
        (
            vec!["enqueue", ok, "-H", "Bad Name: x"],
            "invalid header name",
            64,
        ),
        (
            vec!["enqueue", ok, "-H", "X-Evil: a\r\nInjected: 1"],
            "CR, LF",
            64,
        ),
        (vec!["enqueue", ok, "-H", "X-Evil: a\nb"], "CR, LF", 64),
        (
            vec!["enqueue", ok, "-H", "Content-Length: 3"],
            "Content-Length",
            64,
        ),
        (
            vec!["enqueue", ok, "-X", "PO ST"],
            "invalid HTTP method",
            64,
        ),
        (vec!["enqueue", ok, "-X", ""], "invalid HTTP method", 64),
        (vec!["enqueue", ok, "--delay", "soon"], "--delay", 64),
        (vec!["enqueue", ok, "--delay", "5"], "--delay", 64),
        // Issue 12, B.8: our own message, not the parser's "use '-- -5'".
        (vec!["enqueue", ok, "--delay", "-5s"], "negative", 64),
        (
            vec!["enqueue", ok, "--max-attempts", "0"],
            "max attempts",
            64,
        ),
        (
            vec!["enqueue", ok, "--max-attempts", "many"],
            "--max-attempts",
            64,
        ),
        (
            vec!["enqueue", ok, "-d", "@/nonexistent/file"],
            "/nonexistent/file",
            66,
        ),
        (vec!["enqueue", "--endpoint", "nosuch"], "nosuch", 66),
    ] {
        let code = refused(&env, &args, needle);
        assert_eq!(code, want, "{args:?}");
    }
    let big = "x".repeat(101);
    assert_eq!(
        refused(&env, &["enqueue", ok, "-d", &big], "max_body_size"),
        64
    );
    let path = file(&env, "big", &[b'x'; 101]);
    assert_eq!(
        refused(
            &env,
            &["enqueue", ok, "-d", &format!("@{path}")],
            "max_body_size"
        ),
        65
    );
    // The parser's own refusals are command-line errors too: one code for them all.
    let (code, err) = env.fail(&["enqueue", ok, "--bogus"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--bogus"), "{err}");
    env.enqueue(&[ok, "-d", &"x".repeat(100)]);
}

#[test]
fn jsonl_stores_all_in_order() {
    let env = TestEnv::new("jsonl");
    let lines = [
        r#"{"url":"http://127.0.0.1:9/a","body":"one"}"#,
        r#"{"url":"http://127.0.0.1:9/b","method":"PUT","headers":{"X-A":"1"},"body_base64":"AAEC/w=="}"#,
        "",
        r#"{"url":"http://127.0.0.1:9/c","key":"k","delay":"10m","max_attempts":2}"#,
        r#"{"url":"http://127.0.0.1:9/c","key":"k"}"#,
        r#"{"url":"http://127.0.0.1:9/d","headers":[{"name":"X-A","value":"1"},{"name":"X-A","value":"2"}]}"#,
    ];
    let path = file(&env, "in.jsonl", lines.join("\n").as_bytes());
    let out = env.ok(&["enqueue", "--jsonl", &path]);
    let uuids: Vec<&str> = out.lines().collect();
    assert_eq!(uuids.len(), 5);
    assert_eq!(uuids[2], uuids[3], "same key, same uuid");
    assert_eq!(env.show(uuids[0])["url"], "http://127.0.0.1:9/a");
    let b = env.show(uuids[1]);
    assert_eq!(b["method"], "PUT");
    assert_eq!(
        b["headers"],
        serde_json::json!([{"name": "X-A", "value": "1"}])
    );
    // Issue 12, B.6: a repeated header survives the JSON round trip, in order.
    let d = env.show(uuids[4]);
    assert_eq!(
        d["headers"],
        serde_json::json!([{"name": "X-A", "value": "1"}, {"name": "X-A", "value": "2"}])
    );
    assert_eq!(b["body_base64"], "AAEC/w==");
    let c = env.show(uuids[2]);
    assert_eq!(c["max_attempts"], 2);
    assert!(c["next_attempt_at"].is_string());
    assert_eq!(env.queue("pending"), 4);
    assert_eq!(env.queue("scheduled"), 1);
}

#[test]
fn jsonl_one_bad_line_stores_nothing_and_names_the_line() {
    let env = TestEnv::new("jsonl-bad");
    let good = r#"{"url":"http://127.0.0.1:9/a"}"#;
    for (bad, needle) in [
        (r#"{"url":"http://127.0.0.1:9/a""#, "EOF"),
        (r#"{"method":"POST"}"#, "url: missing"),
        (r#"{"url":"nope"}"#, "invalid URL"),
        (
            r#"{"url":"http://127.0.0.1:9/a","colour":"red"}"#,
            "colour: unknown field",
        ),
        (
            r#"{"url":"http://127.0.0.1:9/a","headers":{"X":"a\r\nB: c"}}"#,
            "CR, LF",
        ),
        (
            r#"{"url":"http://127.0.0.1:9/a","body":"x","body_base64":"eA=="}"#,
            "not both",
        ),
        (
            r#"{"url":"http://127.0.0.1:9/a","body_base64":"***"}"#,
            "body_base64",
        ),
        (
            r#"{"url":"http://127.0.0.1:9/a","delay":"whenever"}"#,
            "delay",
        ),
        (
            r#"{"url":"http://127.0.0.1:9/a","max_attempts":-1}"#,
            "max_attempts",
        ),
    ] {
        let input = format!("{good}\n{good}\n{bad}\n{good}\n");
        let path = file(&env, "in.jsonl", input.as_bytes());
        let (code, err) = env.fail(&["enqueue", "--jsonl", &path]);
        assert_eq!(code, 65, "{err}");
        assert!(err.contains("line 3"), "{bad}: {err}");
        assert!(err.contains(needle), "{bad}: {err} lacks {needle}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(env.queue("pending"), 0, "{bad}: something was stored");
    }
    let out = env.run_stdin(
        &["enqueue", "--jsonl", "-"],
        format!("{good}\nnot json\n").as_bytes(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin: line 2"));
    assert!(
        out.stdout.is_empty(),
        "no uuid printed for a rolled-back batch"
    );
}

#[test]
fn foreign_files_are_refused_and_left_untouched() {
    let env = TestEnv::new("foreign");
    let random: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let path = env.dir.join("random.db");
    std::fs::write(&path, &random).unwrap();
    let p = path.display().to_string();
    for args in [
        vec!["enqueue", "http://127.0.0.1:9/", "--db", &p],
        vec!["status", "--db", &p],
        vec!["dlq", "list", "--db", &p],
    ] {
        let (code, err) = env.fail(&args);
        assert_eq!(code, 65, "{err}");
        assert!(err.contains("not a webhookd database"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), random);

    let other = env.dir.join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE notes(t TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let before = std::fs::read(&other).unwrap();
    let (code, err) = env.fail(&[
        "enqueue",
        "http://127.0.0.1:9/",
        "--db",
        &other.display().to_string(),
    ]);
    assert_eq!(code, 65);
    assert!(err.contains("not a webhookd database"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before);
    assert!(!env.dir.join("other.db-wal").exists());
}

#[test]
fn newer_schema_is_refused() {
    let env = TestEnv::new("newer");
    env.enqueue(&["http://127.0.0.1:9/"]);
    if env.postgres() {
        let _: i64 =
            env.sql_one("WITH u AS (UPDATE webhookd_schema SET version = 99 RETURNING 1) SELECT count(*) FROM u");
    } else {
        let c = rusqlite::Connection::open(&env.db).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let (code, err) = env.fail(&["status"]);
    assert_eq!(code, 65);
    assert!(err.contains("schema version 99"), "{err}");
}

#[test]
fn config_errors_name_file_and_key_and_exit_78() {
    let env = TestEnv::with_config("config", "wokers = 4\n");
    let (code, err) = env.fail(&["status"]);
    assert_eq!(code, 78);
    assert!(
        err.contains("wokers") && err.contains(&env.config.display().to_string()),
        "{err}"
    );

    env.write_config("[retry]\nmax_attempts = \"many\"\n");
    let (code, err) = env.fail(&["status"]);
    assert_eq!(code, 78);
    assert!(err.contains("max_attempts"), "{err}");

    env.write_config("[http]\ntimeout = \"30 parsecs\"\n");
    let (code, err) = env.fail(&["run"]);
    assert_eq!(code, 78);
    assert!(err.contains("http.timeout"), "{err}");

    let missing = env.dir.join("missing.toml").display().to_string();
    let out = std::process::Command::new(crate::util::bin())
        .args(["--config", &missing, "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing));
}

#[test]
fn default_db_goes_to_the_state_directory_without_setup() {
    let env = TestEnv::new("default-db");
    // No db key (and loopback opened, as the receivers of these tests need).
    std::fs::write(
        &env.config,
        "workers = 2\n[egress]\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let state = env.dir.join("xdg-state");
    let out = env
        .cmd(&["enqueue", "http://127.0.0.1:9/"])
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(state.join("webhookd/webhookd.db").exists());

    let sd = env.dir.join("systemd-state");
    std::fs::create_dir_all(&sd).unwrap();
    let out = env
        .cmd(&["enqueue", "http://127.0.0.1:9/"])
        .env("STATE_DIRECTORY", &sd)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(sd.join("webhookd.db").exists());
}

#[test]
fn read_commands_on_a_missing_db_say_so() {
    let env = TestEnv::new("nodb");
    let (code, err) = env.fail(&["dlq", "list"]);
    assert_eq!(code, 66);
    assert!(err.contains(env.missing_db()), "{err}");
    let out = env.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["queue"]["pending"], 0);
    // A PostgreSQL database exists (the test made it), but is not initialised.
    assert_eq!(v["db"]["exists"], env.postgres());
    assert_eq!(v["db"]["initialised"], false);
    assert!(!env.db_created(), "status must not create the database");
}

#[test]
fn jsonl_stream_commits_as_it_goes_and_stops_at_a_bad_line() {
    let env = TestEnv::new("stream");
    let good = r#"{"url":"http://127.0.0.1:9/a"}"#;
    let out = env.run_stdin(
        &["enqueue", "--jsonl", "-", "--stream"],
        format!("{good}\n{good}\n{{\"url\":\"bad\"}}\n{good}\n").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdin: line 3") && err.contains("invalid URL"),
        "{err}"
    );
    let uuids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        uuids.len(),
        2,
        "the lines before the bad one are stored and printed"
    );
    for u in &uuids {
        assert_eq!(env.state(u), "pending");
    }
    assert_eq!(env.queue("pending"), 2);

    let ok = env.run_stdin(
        &["enqueue", "--jsonl", "-", "--stream", "--json"],
        format!("{good}\n").as_bytes(),
    );
    assert!(ok.status.success());
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["state"], "pending");

    // As it goes (issue 12, B.18): a line's uuid is printed, and the message is stored, while the
    // producer has not finished (its stdin is still open).
    use std::io::{BufRead, Write};
    let mut child = env
        .cmd(&["enqueue", "--jsonl", "-", "--stream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{good}").unwrap();
    stdin.flush().unwrap();
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(
        env.state(first.trim()),
        "pending",
        "stored before the input ended"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the producer is still open"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn completions_need_no_config() {
    let env = TestEnv::new("completions");
    env.write_config("this is not toml");
    let bash = env.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_webhookd()") && bash.contains("enqueue"),
        "{bash}"
    );
    let fish = env.ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c webhookd"), "{fish}");
    let (code, err) = env.fail(&["completions", "tcsh"]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn version_names_the_release() {
    let env = TestEnv::new("version");
    let v = env.ok(&["--version"]);
    assert!(
        v.starts_with(&format!("webhookd {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
}

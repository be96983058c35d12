use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::{wait_until, Receiver, Reply, TestEnv, FAST};

fn pings(notices: &[(Instant, String)]) -> Vec<Instant> {
    notices
        .iter()
        .filter(|(_, n)| n.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn watchdog_pings_at_least_every_half_interval_and_stop_when_the_dispatcher_wedges() {
    let env = TestEnv::with_config("watchdog", FAST);
    let wedge = env.dir.join("wedge");
    let wedge_str = wedge.to_str().unwrap().to_owned();
    let rx = Receiver::ok();
    let mut d = env.daemon_env(
        &[],
        &[
            ("WATCHDOG_USEC", "1000000"),
            ("WEBHOOKD_TEST_WEDGE_FILE", &wedge_str),
        ],
    );
    for i in 0..20 {
        env.enqueue(&[&rx.url(&format!("/{i}")), "-d", "x"]);
    }
    let healthy = d.collect_notices(Duration::from_millis(2500));
    let times = pings(&healthy);
    assert!(times.len() >= 4, "pings in 2.5 s: {}", times.len());
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        max_gap <= Duration::from_millis(500),
        "WATCHDOG=1 must come at least every WATCHDOG_USEC/2 (500 ms); gaps: {gaps:?}"
    );

    std::fs::write(&wedge, b"").unwrap();
    wait_until(Duration::from_secs(5), "the wedge to take hold", || {
        d.log_text().contains("wedging the dispatcher")
    });
    d.drain_notices(); // pings sent before the wedge
    let wedged = d.collect_notices(Duration::from_millis(2000));
    assert!(
        pings(&wedged).is_empty(),
        "a wedged dispatcher must not feed the watchdog: {wedged:?}"
    );
    d.kill9();
}

#[test]
fn watchdog_pings_stop_while_a_worker_is_stuck_past_the_http_timeout() {
    // http.timeout 1 s: a worker on one request for more than 2 s is stuck.
    let env = TestEnv::with_config(
        "watchdog-stuck",
        &FAST.replace("timeout = \"3s\"", "timeout = \"1s\""),
    );
    let rx = Receiver::ok();
    let mut d = env.daemon_env(
        &[],
        &[
            ("WATCHDOG_USEC", "1000000"),
            ("WEBHOOKD_TEST_HANG_URL", "/hang"),
        ],
    );
    let healthy = d.collect_notices(Duration::from_millis(800));
    assert!(
        !pings(&healthy).is_empty(),
        "pings while healthy: {healthy:?}"
    );
    env.enqueue(&[&rx.url("/hang")]);
    wait_until(Duration::from_secs(10), "the stuck worker reported", || {
        d.log_text().contains("no longer feeding the watchdog")
    });
    d.drain_notices(); // pings sent before the stuck check
    let stuck = d.collect_notices(Duration::from_millis(1500));
    assert!(
        pings(&stuck).is_empty(),
        "a stuck worker must stop the pings: {stuck:?}"
    );
    // The other workers still deliver (to another origin: the stuck one's holds its slot).
    let rx2 = Receiver::ok();
    let other = env.enqueue(&[&rx2.url("/fine")]);
    wait_until(Duration::from_secs(5), "others delivered", || {
        env.state(&other) == "delivered"
    });
    d.kill9();
}

#[test]
fn no_watchdog_pings_without_watchdog_usec() {
    let env = TestEnv::with_config("no-watchdog", FAST);
    let mut d = env.daemon();
    let got = d.collect_notices(Duration::from_millis(700));
    assert!(pings(&got).is_empty(), "{got:?}");
}

#[test]
fn status_line_shows_queue_and_deliveries_of_the_last_minute() {
    let env = TestEnv::with_config("status-line", FAST);
    let rx = Receiver::start(|req, _| {
        if req.path == "/dead" {
            Reply::Status(410)
        } else {
            Reply::Status(200)
        }
    });
    let mut d = env.daemon();
    for i in 0..3 {
        env.enqueue(&[&rx.url(&format!("/{i}"))]);
    }
    env.enqueue(&[&rx.url("/dead")]);
    let want = "STATUS=0 in flight, 0 pending, 1 dead; 3 delivered in the last minute";
    d.wait_notice(want, Duration::from_secs(15));
}

#[test]
fn sighup_applies_workers_retry_policy_and_log_level() {
    let env = TestEnv::with_config("reload", FAST);
    let rx = Receiver::start(|req, _| {
        if req.path.starts_with("/ok") {
            Reply::Status(200)
        } else {
            Reply::Status(500)
        }
    });
    let mut d = env.daemon();
    // At info, a delivery is not logged.
    let quiet = env.enqueue(&[&rx.url("/ok-info")]);
    wait_until(Duration::from_secs(5), "delivered", || {
        env.state(&quiet) == "delivered"
    });
    wait_until(Duration::from_secs(5), "4 workers", || {
        d.threads("webhookd-worke") == 4
    });
    let before = env.enqueue(&[&rx.url("/a")]);
    wait_until(Duration::from_secs(10), "dead after 3 attempts", || {
        env.state(&before) == "dead"
    });
    assert_eq!(rx.for_id(&before).len(), 3);

    env.write_config(
        &FAST
            .replace("workers = 4", "workers = 7\nlog_level = \"debug\"")
            .replace("max_attempts = 3", "max_attempts = 1"),
    );
    d.notices.clear();
    d.signal(Signal::SIGHUP);
    d.wait_notice("READY=1", Duration::from_secs(5));
    let reloading = d
        .notices
        .iter()
        .find(|n| n.lines().any(|l| l == "RELOADING=1"))
        .expect("RELOADING=1 before READY=1");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 needs MONOTONIC_USEC: {reloading:?}"
    );
    wait_until(Duration::from_secs(5), "7 workers", || {
        d.threads("webhookd-worke") == 7
    });
    let log = d.log_text();
    assert!(log.contains("workers 4 -> 7"), "{log}");
    assert!(log.contains("log level INFO -> DEBUG"), "{log}");

    let after = env.enqueue(&[&rx.url("/b")]);
    wait_until(Duration::from_secs(10), "dead after 1 attempt", || {
        env.state(&after) == "dead"
    });
    assert_eq!(rx.for_id(&after).len(), 1, "new max_attempts applies");
    assert!(!d.log_text().contains(&format!("delivered {quiet}")));
    let loud = env.enqueue(&[&rx.url("/ok-debug")]);
    wait_until(
        Duration::from_secs(5),
        "the debug line of a delivery",
        || d.log_text().contains(&format!("delivered {loud}")),
    );

    // Shrinking: idle workers retire.
    env.write_config(&FAST.replace("workers = 4", "workers = 2"));
    d.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(5), "2 workers", || {
        d.threads("webhookd-worke") == 2
    });
    assert!(d.terminate().success());
}

#[test]
fn a_config_that_fails_on_reload_is_logged_and_the_old_one_stays() {
    let env = TestEnv::with_config("reload-bad", FAST);
    let rx = Receiver::ok();
    let mut d = env.daemon();
    env.write_config("workers = \"many\"\n");
    d.notices.clear();
    d.signal(Signal::SIGHUP);
    d.wait_notice("READY=1", Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the error line", || {
        d.log_text()
            .contains("reload failed, the running configuration stays")
    });
    assert!(
        d.log_text().contains("workers"),
        "names the key: {}",
        d.log_text()
    );
    // A new thread names itself, so poll rather than read once.
    wait_until(Duration::from_secs(5), "4 workers still", || {
        d.threads("webhookd-worke") == 4
    });
    // The CLI reads the same file: mend it (no SIGHUP) to enqueue.
    env.write_config(FAST);
    let uuid = env.enqueue(&[&rx.url("/still")]);
    wait_until(Duration::from_secs(5), "delivered", || {
        env.state(&uuid) == "delivered"
    });
    assert!(d.terminate().success());
}

#[test]
fn a_panicking_worker_is_logged_with_the_uuid_and_the_message_is_retried() {
    let env = TestEnv::with_config("panic", FAST);
    let rx = Receiver::ok();
    let d = env.daemon_env(&[], &[("WEBHOOKD_TEST_PANIC_URL", "/boom")]);
    let bad = env.enqueue(&[&rx.url("/boom")]);
    let good: Vec<String> = (0..10)
        .map(|i| env.enqueue(&[&rx.url(&format!("/ok{i}"))]))
        .collect();
    wait_until(Duration::from_secs(10), "the panicking one dead", || {
        env.state(&bad) == "dead"
    });
    for g in &good {
        wait_until(Duration::from_secs(5), "others delivered", || {
            env.state(g) == "delivered"
        });
    }
    let view = env.show(&bad);
    assert_eq!(view["attempts"].as_array().unwrap().len(), 3, "{view}");
    assert!(
        view["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("worker panicked"),
        "{view}"
    );
    assert!(d
        .log_text()
        .contains(&format!("worker panicked on message {bad}")));
    wait_until(Duration::from_secs(5), "the pool whole", || {
        d.threads("webhookd-worke") == 4
    });
}

/// Daemon CPU time (user + system) in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) start after its ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// When the wake-up socket cannot be bound (here: its path is longer than a socket path may
/// be), the daemon finds new messages by polling and idles without spinning.
#[test]
fn without_a_wake_up_socket_the_daemon_polls_and_stays_idle() {
    let rx = Receiver::ok();
    let mut env = TestEnv::new("no-wake-socket");
    let deep = env.dir.join("d".repeat(120));
    std::fs::create_dir_all(&deep).unwrap();
    env.db = deep.join("webhookd.db");
    env.write_config(FAST);
    let d = env.daemon();
    assert!(
        d.log_text().contains("cannot bind wake-up socket"),
        "{}",
        d.log_text()
    );
    let uuid = env.enqueue(&[&rx.url("/polled")]);
    wait_until(Duration::from_secs(5), "delivered by polling", || {
        env.state(&uuid) == "delivered"
    });
    // Idle: a loop selecting on a closed channel would burn a whole core (about 100 ticks a
    // second); an idle daemon uses a few. Its poll, the only way it finds new messages here,
    // does not back off (about 20 wake-ups in 2 s; backing off, about 5).
    let is_loop = |c: &str| c == "webhookd";
    let (before, polls) = (cpu_ticks(d.pid()), wakeups(d.pid(), is_loop));
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = cpu_ticks(d.pid()) - before;
    let polls = wakeups(d.pid(), is_loop) - polls;
    assert!(used < 50, "{used} ticks of CPU in 2 s while idle");
    assert!(
        polls >= 12,
        "the loop woke {polls} times in 2 s: the poll backed off"
    );
}

/// Context switches (voluntary and not) of the daemon's threads whose name `thread` accepts,
/// from /proc: each is the thread waking up.
fn wakeups(pid: u32, thread: impl Fn(&str) -> bool) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|t| {
        let t = t.ok()?.path();
        let comm = std::fs::read_to_string(t.join("comm")).ok()?;
        thread(comm.trim_end()).then_some(())?;
        let status = std::fs::read_to_string(t.join("status")).ok()?;
        Some(
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>(),
        )
    })
    .sum()
}

/// An idle daemon's workers block on their channel: they do not wake at all until there is
/// work (they used to wake about 17 times a second each to check for retirement); its delivery
/// loop (the main thread) backs its poll off to once a second (it used to wake 10 times a
/// second); and the daemon as a whole wakes a few times a second, not hundreds.
#[test]
fn an_idle_daemon_does_not_wake_its_workers() {
    let rx = Receiver::ok();
    let env = TestEnv::with_config("idle-wakeups", FAST);
    let d = env.daemon();
    let uuid = env.enqueue(&[&rx.url("/once")]);
    wait_until(Duration::from_secs(5), "delivered", || {
        env.state(&uuid) == "delivered"
    });
    // The poll backs off from 100 ms over about 1.5 s (100 + 200 + 400 + 800 ms).
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(1_600) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let is_worker = |c: &str| c.starts_with("webhookd-worke");
    let is_loop = |c: &str| c == "webhookd";
    let (workers, main, all) = (
        wakeups(d.pid(), is_worker),
        wakeups(d.pid(), is_loop),
        wakeups(d.pid(), |_| true),
    );
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let workers = wakeups(d.pid(), is_worker) - workers;
    let main = wakeups(d.pid(), is_loop) - main;
    let all = wakeups(d.pid(), |_| true) - all;
    assert!(workers <= 2, "4 idle workers woke {workers} times in 3 s");
    // On PostgreSQL each query is a round trip the thread sleeps in (the 5 s look at the
    // endpoints is several): wake-ups of the loop, not of a poll.
    let bound = if env.postgres() { 24 } else { 8 };
    assert!(
        main <= bound,
        "the idle delivery loop woke {main} times in 3 s"
    );
    assert!(all < 150, "the idle daemon woke {all} times in 3 s");
}

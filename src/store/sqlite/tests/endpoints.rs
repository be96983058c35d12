//! What the daemon reads about endpoints: which have pending messages, which definitions changed.
use std::time::Duration;

use super::super::Store;
use super::{msg, test_store};
use crate::error::Result;
use crate::model::Claim;
use crate::store::Cycle;

/// The dispatcher's looks: every endpoint with pending messages and its earliest due time (a
/// seek per such endpoint, no scan of the table), or only among the messages committed since.
#[test]
fn pending_endpoints_names_each_endpoint_with_pending_messages_once() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut later = msg("http://127.0.0.1:2/");
    later.delay = Duration::from_secs(60);
    let mut ins = s.inserter()?;
    ins.insert(&msg("http://127.0.0.1:1/a"), 1_000)?;
    ins.insert(&msg("http://127.0.0.1:1/b"), 2_000)?;
    ins.insert(&later, 1_000)?;
    ins.insert(&msg("http://127.0.0.1:3/"), 1_000)?;
    ins.commit()?;
    let id = |s: &Store, o: &str| s.find_endpoint(o).unwrap().expect("origin row");
    let (one, two, three) = (
        id(&s, "http://127.0.0.1:1"),
        id(&s, "http://127.0.0.1:2"),
        id(&s, "http://127.0.0.1:3"),
    );
    // The third origin's message is claimed: nothing pending there any more.
    let claimed = s.cycle(
        &Cycle {
            claims: &[Claim {
                endpoint: three,
                limit: 10,
                shared: None,
            }],
            outcomes: &[],
            released: &[],
            health: &[],
            take_enables: false,
            inserts: &[],
            claim_budget: None,
        },
        5_000,
    )?;
    assert_eq!(claimed.jobs.len(), 1);
    let all = s.pending_endpoints(None)?;
    assert_eq!(all.rows, vec![(one, 1_000), (two, 61_000)]);
    let mut ins = s.inserter()?;
    ins.insert(&msg("http://127.0.0.1:3/again"), 7_000)?;
    ins.commit()?;
    let new = s.pending_endpoints(Some(all.seen))?;
    assert_eq!(new.rows, vec![(three, 7_000)]);
    assert!(s.pending_endpoints(Some(new.seen))?.rows.is_empty());

    let plan = s
        .conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::super::endpoints::PENDING_ALL
        ))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
        .join(" | ");
    assert!(!plan.contains("SCAN messages"), "{plan}");
    assert!(plan.contains("messages_due"), "{plan}");
    Ok(())
}

/// A daemon follows stored endpoints by generation: each change tags its row, and only the rows
/// changed after the generation it holds are read again (a removal as a row without definition).
#[test]
fn definitions_since_reads_only_rows_changed_after_a_generation() -> Result<()> {
    let (_d, mut s) = test_store();
    let def = |name: &'static str| crate::store::Definition {
        name,
        text: r#"{"url":"http://127.0.0.1:1/"}"#,
        tenant: None,
        events: &[],
        secrets: None,
    };
    s.define(&def("a"), true, 1)?;
    s.define(&def("b"), true, 1)?;
    let g = s.generation()?;
    assert!(s.definitions_since(g)?.is_empty());
    s.set_paused("a", true)?;
    let rows = s.definitions_since(g)?;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].name == "a" && rows[0].paused && rows[0].definition.is_some());
    let g = s.generation()?;
    s.undefine("b", false, 2)?;
    s.define(&def("c"), true, 2)?;
    let rows = s.definitions_since(g)?;
    let names: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.definition.is_some()))
        .collect();
    assert_eq!(names, [("b", false), ("c", true)]);
    Ok(())
}

/// An endpoint's latest attempts, newest first, each with its message's state: read by index
/// ranges (the last messages of each state by due time), never a scan of messages or attempts.
#[test]
fn recent_attempts_are_the_latest_of_an_endpoint_by_index() -> Result<()> {
    use crate::model::State;
    use crate::store::OutcomeKind;
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    for (url, at) in [
        ("http://127.0.0.1:1/a", 1_000),
        ("http://127.0.0.1:1/b", 2_000),
        ("http://127.0.0.1:2/other", 1_000),
    ] {
        ins.insert(&msg(url), at)?;
    }
    ins.commit()?;
    let one = s.find_endpoint("http://127.0.0.1:1")?.expect("origin row");
    let jobs = super::cyc(&mut s, &[], &[], 10, 3_000)?;
    assert_eq!(jobs.len(), 3);
    let outcomes: Vec<_> = jobs
        .iter()
        .map(|j| {
            let mut o = super::outcome(j, OutcomeKind::Delivered);
            o.at = 3_000 + j.seq;
            o.status = Some(200);
            o
        })
        .collect();
    super::cyc(&mut s, &outcomes, &[], 0, 4_000)?;
    let recent = s.recent_attempts(one, 10)?;
    let seen: Vec<(State, i64, Option<u16>)> = recent
        .iter()
        .map(|(_, state, a)| (*state, a.at, a.status))
        .collect();
    let (a, b) = (jobs[0].seq, jobs[1].seq);
    assert_eq!(
        seen,
        [
            (State::Delivered, 3_000 + b, Some(200)),
            (State::Delivered, 3_000 + a, Some(200))
        ]
    );
    assert_eq!(s.recent_attempts(one, 1)?.len(), 1);

    // A retry's failure is found behind many scheduled messages that were never attempted.
    let mut ins = s.inserter()?;
    ins.insert(&msg("http://127.0.0.1:1/retried"), 5_000)?;
    let mut later = msg("http://127.0.0.1:1/later");
    later.delay = Duration::from_secs(86_400);
    for _ in 0..20 {
        ins.insert(&later, 5_000)?;
    }
    ins.commit()?;
    let jobs = super::cyc(&mut s, &[], &[], 10, 6_000)?;
    assert_eq!(jobs.len(), 1, "only the one due");
    let mut failed = super::outcome(&jobs[0], OutcomeKind::Retry { due_at: 9_000 });
    failed.at = 7_000;
    super::cyc(&mut s, &[failed], &[], 0, 7_000)?;
    let recent = s.recent_attempts(one, 2)?;
    assert_eq!(
        recent
            .iter()
            .map(|(_, st, a)| (*st, a.at, a.status))
            .collect::<Vec<_>>(),
        [
            (State::Pending, 7_000, Some(500)),
            (State::Delivered, 3_000 + b, Some(200))
        ]
    );

    let plan = s
        .conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::super::endpoints::RECENT_ATTEMPTS
        ))
        .unwrap()
        .query_map([one, 10], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
        .join(" | ");
    for table in ["SCAN messages", "SCAN m ", "SCAN a ", "SCAN attempts"] {
        assert!(!plan.contains(table), "{table}: {plan}");
    }
    assert!(plan.contains("messages_due"), "{plan}");
    Ok(())
}

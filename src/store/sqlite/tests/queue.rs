//! Claims, outcomes, take-overs, purges, lanes, upgrades.
use std::time::Duration;

use super::super::insert::{INSERT_MESSAGE, INSERT_PAYLOAD, LANE_BUSY};
use super::super::queue::{
    CLAIM, INSERT_ATTEMPT, MARK_DEAD, MARK_DELIVERED, MARK_RETRY, NEXT_DUE, PROMOTE,
    PROMOTE_IF_FREE, PURGE_DELIVERED, SELECT_PAYLOAD,
};
use super::super::Store;
use super::{cyc, msg, outcome, tempdir, test_store};
use crate::error::Result;
use crate::message::Message;
use crate::model::Claim;
use crate::store::Cycle;
use crate::store::{Access, Outcome, OutcomeKind};

#[test]
fn claim_returns_payload_and_marks_in_flight() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    let a = ins.insert(&msg("http://127.0.0.1:1/a"), 100)?;
    ins.insert(&msg("http://127.0.0.1:1/b"), 100)?;
    ins.commit()?;
    let jobs = cyc(&mut s, &[], &[], 1, 100)?;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].uuid, a.uuid);
    assert_eq!(jobs[0].url, "http://127.0.0.1:1/a");
    assert_eq!(jobs[0].body, b"\x00\xffbody");
    assert_eq!(jobs[0].headers, vec![("X-A".to_owned(), "1".to_owned())]);
    // The claimed one is not claimed again.
    let more = cyc(&mut s, &[], &[], 10, 100)?;
    assert_eq!(more.len(), 1);
    assert_ne!(more[0].uuid, a.uuid);
    assert!(cyc(&mut s, &[], &[], 10, 100)?.is_empty());
    Ok(())
}

#[test]
fn delayed_messages_are_not_claimed_early() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut m = msg("http://127.0.0.1:1/");
    m.delay = Duration::from_secs(90);
    let mut ins = s.inserter()?;
    ins.insert(&m, 1_000)?;
    ins.commit()?;
    assert!(cyc(&mut s, &[], &[], 10, 1_000 + 89_999)?.is_empty());
    // A plain URL's messages are its origin's.
    let origin = s
        .find_endpoint("http://127.0.0.1:1")?
        .expect("the origin's row");
    assert_eq!(s.next_due(0)?, None);
    assert_eq!(s.next_due(origin)?, Some(91_000));
    assert_eq!(cyc(&mut s, &[], &[], 10, 91_000)?.len(), 1);
    Ok(())
}

#[test]
fn idempotency_key_returns_first_uuid_and_stores_nothing() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut m = msg("http://127.0.0.1:1/");
    m.key = Some("k1".into());
    let mut ins = s.inserter()?;
    let first = ins.insert(&m, 1)?;
    let second = ins.insert(&m, 2)?;
    ins.commit()?;
    assert!(first.created && !second.created);
    assert_eq!(first.uuid, second.uuid);
    assert_eq!(s.counts(0)?.pending, 1);
    Ok(())
}

#[test]
fn retry_outcome_reschedules_and_counts_the_attempt() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
    ins.commit()?;
    let job = cyc(&mut s, &[], &[], 1, 0)?.remove(0);
    let o = outcome(&job, OutcomeKind::Retry { due_at: 500 });
    assert!(cyc(&mut s, &[o], &[], 10, 10)?.is_empty());
    let again = cyc(&mut s, &[], &[], 10, 500)?.remove(0);
    assert_eq!((again.attempts, again.attempts_total), (1, 1));
    Ok(())
}

#[test]
fn requeue_makes_in_flight_due_without_spending_an_attempt() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
    ins.commit()?;
    assert_eq!(cyc(&mut s, &[], &[], 1, 0)?.len(), 1);
    assert_eq!(s.take_over_all(7)?, 0, "its own claim");
    s.set_owner(2); // the next daemon
    assert_eq!(s.take_over_all(7)?, 1);
    let job = cyc(&mut s, &[], &[], 1, 7)?.remove(0);
    assert_eq!(job.attempts, 0);
    Ok(())
}

#[test]
fn purge_removes_only_old_delivered() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    for _ in 0..3 {
        ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
    }
    ins.commit()?;
    let jobs = cyc(&mut s, &[], &[], 3, 0)?;
    let outs = [
        outcome(&jobs[0], OutcomeKind::Delivered),
        outcome(&jobs[1], OutcomeKind::Dead),
    ];
    cyc(&mut s, &outs, &[jobs[2].seq], 0, 100)?;
    assert_eq!(s.purge_delivered(100, 10)?, 0);
    assert_eq!(s.purge_delivered(101, 10)?, 1);
    let c = s.counts(0)?;
    assert_eq!((c.pending, c.delivered, c.dead), (1, 0, 1));
    Ok(())
}

/// Claims share the cycle's budget in order: what one endpoint leaves goes to the next.
#[test]
fn claims_share_one_budget_in_order() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    ins.insert(&msg("http://127.0.0.1:1/a"), 0)?;
    for _ in 0..5 {
        ins.insert(&msg("http://127.0.0.1:2/b"), 0)?;
    }
    ins.commit()?;
    let a = s.find_endpoint("http://127.0.0.1:1")?.unwrap();
    let b = s.find_endpoint("http://127.0.0.1:2")?.unwrap();
    let claims = [
        Claim {
            endpoint: a,
            limit: 3,
            shared: None,
        },
        Claim {
            endpoint: b,
            limit: 3,
            shared: None,
        },
    ];
    let c = Cycle {
        claims: &claims,
        claim_budget: Some(3),
        ..Cycle::default()
    };
    let jobs = s.cycle(&c, 10)?.jobs;
    let from = |e: i64| jobs.iter().filter(|j| j.endpoint == e).count();
    assert_eq!(
        (from(a), from(b)),
        (1, 2),
        "a had one; b took the rest of the budget"
    );
    Ok(())
}

#[test]
fn events_past_retention_are_purged_and_their_keys_freed() -> Result<()> {
    let (_d, mut s) = test_store();
    let event = |key: &str| crate::store::EventRecord {
        id: uuid::Uuid::now_v7(),
        tenant: Some("t".into()),
        kind: "a.b".into(),
        key: Some(key.into()),
        deliveries: 0,
    };
    let mut ins = s.inserter()?;
    assert!(ins.event(&event("old"), 50)?.created);
    assert!(ins.event(&event("new"), 500)?.created);
    assert!(
        !ins.event(&event("old"), 60)?.created,
        "a key is idempotent per tenant"
    );
    // An old event whose delivery is still pending stays, and so does its key.
    let kept = event("kept");
    assert!(ins.event(&kept, 50)?.created);
    let mut delivery = msg("http://127.0.0.1:1/");
    delivery.event = Some(kept.id);
    ins.insert(&delivery, 50)?;
    ins.commit()?;
    assert_eq!(s.purge_delivered(40, 10)?, 0, "nothing that old");
    assert_eq!(s.purge_delivered(100, 10)?, 1);
    let mut ins = s.inserter()?;
    assert!(
        !ins.event(&event("kept"), 700)?.created,
        "its delivery is pending"
    );
    assert!(
        ins.event(&event("old"), 700)?.created,
        "its key is free again"
    );
    assert!(!ins.event(&event("new"), 700)?.created);
    Ok(())
}

/// The trigger-kept counts equal a real count after every kind of transition.
#[test]
fn trigger_counts_match_a_scan() -> Result<()> {
    let (_d, mut s) = test_store();
    let scan = |s: &Store| -> Result<Vec<i64>> {
        (0..4)
            .map(|state| {
                s.conn
                    .query_row(
                        "SELECT count(*) FROM messages WHERE state = ?1",
                        [state],
                        |r| r.get(0),
                    )
                    .map_err(|e| s.err("scan", e))
            })
            .collect()
    };
    let check = |s: &Store| -> Result<()> {
        let c = s.totals()?;
        let want = scan(s)?;
        let got = [c.pending, c.in_flight, c.delivered, c.dead].map(|n| n as i64);
        assert_eq!(got.to_vec(), want);
        Ok(())
    };
    let mut ins = s.inserter()?;
    for _ in 0..6 {
        ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
    }
    ins.commit()?;
    check(&s)?;
    let jobs = cyc(&mut s, &[], &[], 5, 0)?;
    check(&s)?;
    let outs = [
        outcome(&jobs[0], OutcomeKind::Delivered),
        outcome(&jobs[1], OutcomeKind::Dead),
        outcome(&jobs[2], OutcomeKind::Retry { due_at: 50 }),
    ];
    cyc(&mut s, &outs, &[jobs[3].seq], 0, 10)?;
    check(&s)?;
    assert_eq!(s.abandon(20)?, 1);
    check(&s)?;
    assert_eq!(s.purge_delivered(100, 10)?, 1);
    check(&s)?;
    let c = s.totals()?;
    assert_eq!((c.pending, c.in_flight, c.delivered, c.dead), (4, 0, 0, 1));
    Ok(())
}

/// A version-3 database (before endpoints) upgrades in place: its messages keep their states
/// and counts, become plain-URL messages, and are claimed as before.
#[test]
fn version_3_database_upgrades_with_its_messages() -> Result<()> {
    let d = tempdir::Dir::new();
    let path = d.path.join("q.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &super::super::schema::MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3; PRAGMA application_id = 2003331940;
             INSERT INTO messages (uuid, state, due_at, created_at) VALUES
               (x'00000000000000000000000000000001', 0, 0, 0), (x'00000000000000000000000000000002', 1, 0, 0), (x'00000000000000000000000000000003', 2, 0, 0), (x'00000000000000000000000000000004', 3, 0, 0);
             INSERT INTO payloads (seq, method, url, headers, body)
               SELECT seq, 'POST', 'http://127.0.0.1:1/', '', x'' FROM messages;",
        )
        .unwrap();
    }
    let mut s = Store::open(&path, Access::Daemon)?;
    let c = s.totals()?;
    assert_eq!((c.pending, c.in_flight, c.delivered, c.dead), (1, 1, 1, 1));
    assert_eq!(s.take_over_all(0)?, 1);
    let jobs = cyc(&mut s, &[], &[], 10, 0)?;
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.endpoint == 0 && j.lane.is_none()));
    Ok(())
}

/// Leases: a take-over by expiry takes only other owners' claims whose lease ran out, a
/// renewal keeps them, and `abandon` gives up only the caller's own claims.
#[test]
fn only_expired_or_abandoned_claims_are_taken_over() -> Result<()> {
    let (d, mut a) = test_store();
    a.set_owner(1);
    let mut b = Store::open(&d.path.join("q.db"), Access::Daemon)?;
    b.set_owner(2);
    let mut ins = a.inserter()?;
    for _ in 0..4 {
        ins.insert(&msg("http://127.0.0.1:1/"), 0)?;
    }
    ins.commit()?;
    let lease = crate::time::duration_ms(crate::store::LEASE);
    let a_jobs = cyc(&mut a, &[], &[], 2, 0)?;
    assert_eq!(a_jobs.len(), 2);
    assert_eq!(cyc(&mut b, &[], &[], 1, 0)?.len(), 1);
    assert_eq!(b.take_over_expired(lease - 1)?, 0, "a's lease still runs");
    assert_eq!(a.renew(lease * 2)?, 2);
    assert_eq!(b.take_over_expired(lease + 1)?, 0, "renewed");
    assert_eq!(b.take_over_expired(lease * 2 + 1)?, 2, "a stopped renewing");
    assert_eq!(b.totals()?.in_flight, 1, "b's own claim stays");
    // b claims a's old messages again; a's late answers change nothing of b's claims.
    let b_jobs = cyc(&mut b, &[], &[], 2, lease * 2 + 1)?;
    assert_eq!(b_jobs.len(), 2);
    let late = [
        outcome(&a_jobs[0], OutcomeKind::Delivered),
        outcome(&a_jobs[1], OutcomeKind::Dead),
    ];
    cyc(&mut a, &late, &[a_jobs[0].seq], 0, lease * 2 + 2)?;
    let c = b.totals()?;
    assert_eq!((c.in_flight, c.delivered, c.dead), (3, 0, 0), "still b's");
    assert_eq!(a.abandon(lease * 2 + 2)?, 0, "a has nothing left");
    let done: Vec<Outcome> = b_jobs
        .iter()
        .map(|j| outcome(j, OutcomeKind::Delivered))
        .collect();
    cyc(&mut b, &done, &[], 0, lease * 2 + 3)?;
    assert_eq!(b.abandon(lease * 2 + 3)?, 1);
    let c = b.totals()?;
    assert_eq!((c.pending, c.in_flight, c.delivered), (2, 0, 2));
    Ok(())
}

/// Version-4 (before operator control) and version-5 (before leases) databases upgrade in
/// place: a claim left in flight has no owner or lease, so any take-over takes it.
#[test]
fn version_4_and_5_claims_without_a_lease_are_taken_over() -> Result<()> {
    for version in [4, 5] {
        claims_without_a_lease_are_taken_over(version)?;
    }
    Ok(())
}

fn claims_without_a_lease_are_taken_over(version: usize) -> Result<()> {
    let d = tempdir::Dir::new();
    let path = d.path.join("q.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &super::super::schema::MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = {version}; PRAGMA application_id = 2003331940;
             INSERT INTO messages (uuid, state, due_at, created_at) VALUES
               (x'00000000000000000000000000000001', 1, 0, 0), (x'00000000000000000000000000000002', 0, 0, 0);
             INSERT INTO payloads (seq, method, url, headers, body)
               SELECT seq, 'POST', 'http://127.0.0.1:1/', '', x'' FROM messages;"
        ))
        .unwrap();
    }
    let mut s = Store::open(&path, Access::Daemon)?;
    s.set_owner(9);
    let c = s.totals()?;
    assert_eq!((c.pending, c.in_flight), (1, 1), "version {version}");
    assert_eq!(s.take_over_expired(1)?, 1);
    assert_eq!(cyc(&mut s, &[], &[], 10, 1)?.len(), 2);
    Ok(())
}

/// Ordered lanes: only the head is pending; delivering it promotes the next; a dead head
/// blocks (or, when skipped, promotes); counts include waiting messages as pending.
#[test]
fn lanes_deliver_one_at_a_time_in_order() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    let mut uuids = Vec::new();
    for _ in 0..3 {
        let m = Message {
            lane: Some("k".into()),
            lane_dead_blocks: true,
            ..msg("http://127.0.0.1:1/")
        };
        uuids.push(ins.insert(&m, 0)?.uuid);
    }
    ins.commit()?;
    assert_eq!(s.totals()?.pending, 3);
    let first = cyc(&mut s, &[], &[], 10, 0)?;
    assert_eq!(
        first.iter().map(|j| j.uuid).collect::<Vec<_>>(),
        vec![uuids[0]]
    );
    let mut done = outcome(&first[0], OutcomeKind::Delivered);
    done.lane = Some("k".into());
    done.promote = true;
    let second = cyc(&mut s, &[done], &[], 10, 1)?;
    assert_eq!(
        second.iter().map(|j| j.uuid).collect::<Vec<_>>(),
        vec![uuids[1]]
    );
    // Dead without promotion: the lane stops.
    let dead = outcome(&second[0], OutcomeKind::Dead);
    assert!(cyc(&mut s, &[dead], &[], 10, 2)?.is_empty());
    // A new message of the lane waits behind the dead one.
    let mut ins = s.inserter()?;
    let m = Message {
        lane: Some("k".into()),
        lane_dead_blocks: true,
        ..msg("http://127.0.0.1:1/")
    };
    ins.insert(&m, 3)?;
    ins.commit()?;
    assert!(cyc(&mut s, &[], &[], 10, 3)?.is_empty());
    // Deleting the dead head lets the lane go on.
    s.act_on(crate::store::Action::Delete, &[uuids[1]], 4)?;
    let third = cyc(&mut s, &[], &[], 10, 4)?;
    assert_eq!(
        third.iter().map(|j| j.uuid).collect::<Vec<_>>(),
        vec![uuids[2]]
    );
    Ok(())
}

/// Claims of different sizes, and every statement of an enqueue and a cycle, reuse their
/// compiled statements (no SQLITE_STMTSTATUS_REPREPARE): a recompile per execution is
/// planner work on the hot path (and, in the static build, allocator churn).
#[test]
fn claims_of_any_size_are_not_recompiled() -> Result<()> {
    let (_d, mut s) = test_store();
    let mut ins = s.inserter()?;
    for i in 0..20 {
        let m = Message {
            lane: (i % 2 == 0).then(|| format!("lane{}", i % 4)),
            key: Some(format!("k{i}")),
            ..msg("http://127.0.0.1:1/")
        };
        ins.insert(&m, 0)?;
    }
    ins.commit()?;
    let mut total = 0;
    for (i, n) in [1, 3, 2, 5, 4].into_iter().enumerate() {
        let jobs = cyc(&mut s, &[], &[], n, 0)?;
        total += jobs.len();
        let outs: Vec<Outcome> = jobs
            .iter()
            .enumerate()
            .map(|(j, job)| {
                let kind = match (i + j) % 3 {
                    0 => OutcomeKind::Delivered,
                    1 => OutcomeKind::Retry { due_at: 1_000 },
                    _ => OutcomeKind::Dead,
                };
                let mut o = outcome(job, kind);
                o.lane = job.lane.clone();
                o.promote = o.lane.is_some();
                o
            })
            .collect();
        cyc(&mut s, &outs, &[], 0, 1)?;
    }
    assert!(total > 0);
    assert_eq!(s.purge_delivered(1, 7)?, 0);
    assert_eq!(s.purge_delivered(1, 9)?, 0);
    for sql in [
        CLAIM,
        PURGE_DELIVERED,
        SELECT_PAYLOAD,
        INSERT_MESSAGE,
        INSERT_PAYLOAD,
        LANE_BUSY,
        INSERT_ATTEMPT,
        MARK_DELIVERED,
        MARK_RETRY,
        MARK_DEAD,
        PROMOTE,
        PROMOTE_IF_FREE,
        NEXT_DUE,
    ] {
        let stmt = s
            .conn
            .prepare_cached(sql)
            .map_err(|e| s.err("prepare", e))?;
        let reprepared = stmt.get_status(rusqlite::StatementStatus::RePrepare);
        assert_eq!(reprepared, 0, "{sql}");
    }
    Ok(())
}

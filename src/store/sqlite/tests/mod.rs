//! Helpers for the store's unit tests: a store in its own temporary directory, messages, cycles.

use super::Store;
use crate::error::Result;
use crate::message::Message;
use crate::model::{Claim, Job};
use crate::store::{Access, Cycle, Outcome, OutcomeKind};

mod endpoints;
mod queue;

pub(crate) fn test_store() -> (tempdir::Dir, Store) {
    let dir = tempdir::Dir::new();
    let store = Store::open(&dir.path.join("q.db"), Access::Daemon).unwrap();
    (dir, store)
}

pub(crate) mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    pub(crate) struct Dir {
        pub(crate) path: PathBuf,
    }
    impl Dir {
        pub(crate) fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "webhookd-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(crate) fn msg(url: &str) -> Message {
    Message {
        method: "POST".into(),
        url: url.into(),
        headers: vec![("X-A".into(), "1".into())],
        body: b"\x00\xffbody".to_vec(),
        key: None,
        ..Message::default()
    }
}

pub(crate) fn cyc(
    s: &mut Store,
    outcomes: &[Outcome],
    released: &[i64],
    claim: usize,
    now: i64,
) -> Result<Vec<Job>> {
    // Plain URLs (endpoint 0 before origins, their origin's now) and every endpoint, each up to
    // `claim`: the tests put their messages in one of them.
    let ids: Vec<i64> = s
        .conn
        .prepare("SELECT 0 UNION ALL SELECT id FROM endpoints")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let claims: Vec<Claim> = ids
        .into_iter()
        .map(|endpoint| Claim {
            endpoint,
            limit: claim,
            shared: None,
        })
        .collect();
    let c = Cycle {
        inserts: &[],
        outcomes,
        released,
        claims: &claims,
        ..Cycle::default()
    };
    Ok(s.cycle(&c, now)?.jobs)
}

pub(crate) fn outcome(job: &Job, kind: OutcomeKind) -> Outcome {
    Outcome {
        seq: job.seq,
        n: job.attempts_total + 1,
        at: 1,
        duration_us: 5,
        status: Some(500),
        error: None,
        response: b"oops".to_vec(),
        summary: "HTTP 500".into(),
        kind,
        lane: None,
        promote: false,
    }
}

//! A finished attempt turned into what the store records: the verdict (`verdict::judge`) with the
//! budget in force, the attempt's record (status or error, the start of the response), and whether
//! the message's ordered lane moves on.

use crate::config::RetryPolicy;
use crate::deliver::endpoints::Endpoints;
use crate::deliver::{Finished, Reply};
use crate::store::{Outcome, OutcomeKind};
use crate::verdict::{self, Verdict};

/// The attempt budget in force for `f`: the message's own, else its endpoint's, else
/// `retry.max_attempts`.
pub(super) fn budget(f: &Finished, retry: &RetryPolicy, endpoints: &Endpoints) -> u32 {
    f.max_attempts
        .or(endpoints.policy(f.endpoint).0)
        .unwrap_or(retry.max_attempts)
}

/// The outcome to record for `f`, and the verdict it came from. The budget is the message's own,
/// else its endpoint's, else `retry.max_attempts`; a lane's next message is promoted when this one
/// is delivered, or dead and its endpoint skips dead ones.
pub(super) fn decide(
    f: &Finished,
    retry: &RetryPolicy,
    endpoints: &Endpoints,
    now: i64,
    random: f64,
) -> (Outcome, Verdict) {
    let (_, dead_blocks) = endpoints.policy(f.endpoint);
    let budget = budget(f, retry, endpoints);
    let v = verdict::judge(&verdict::Attempt {
        reply: &f.reply,
        made: f.attempts + 1,
        budget,
        named_endpoint: f.endpoint != 0,
        to_endpoint_url: f.to_endpoint_url,
        retry,
        now,
        random,
    });
    let kind = match v.outcome {
        verdict::Outcome::Delivered => OutcomeKind::Delivered,
        verdict::Outcome::Retry { at } => OutcomeKind::Retry { due_at: at },
        verdict::Outcome::Dead { .. } => OutcomeKind::Dead,
    };
    let (status, error, response) = match &f.reply {
        Reply::Status { code, excerpt, .. } => (Some(*code), None, excerpt.clone()),
        Reply::Transport { error, .. } => (None, Some(error.clone()), Vec::new()),
    };
    // A redirect's record says where it pointed.
    let error = error.or_else(|| {
        matches!(&f.reply, Reply::Status { location: Some(_), code, .. } if (300..400).contains(code))
            .then(|| verdict::summarize(&f.reply))
    });
    let outcome = Outcome {
        seq: f.seq,
        n: f.attempts_total + 1,
        at: crate::time::to_ms(f.started),
        duration_us: i64::try_from(f.duration.as_micros()).unwrap_or(i64::MAX),
        status,
        error,
        response,
        summary: verdict::summarize(&f.reply),
        lane: f.lane.clone(),
        promote: match kind {
            OutcomeKind::Delivered => true,
            OutcomeKind::Dead => !dead_blocks,
            OutcomeKind::Retry { .. } => false,
        },
        kind,
    };
    (outcome, v)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::model::Job;

    fn finished(code: u16, attempts: u32, lane: bool) -> Finished {
        let job = Job {
            seq: 7,
            attempts,
            attempts_total: attempts + 2,
            lane: lane.then(|| "\u{1f}k".to_owned()),
            ..Job::default()
        };
        let reply = Reply::Status {
            code,
            retry_after: None,
            location: (code == 302).then(|| "https://elsewhere/".to_owned()),
            excerpt: b"body".to_vec(),
        };
        Finished::new(&job, SystemTime::now(), Duration::from_millis(3), reply)
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }

    #[test]
    fn records_follow_the_verdict_and_the_budget() {
        let eps = Endpoints::new(Vec::new(), &BTreeMap::new(), 4, 0);
        let (o, v) = decide(&finished(200, 0, true), &retry(), &eps, 1_000, 0.5);
        assert_eq!(
            (o.kind.clone(), o.promote, o.n),
            (OutcomeKind::Delivered, true, 3)
        );
        assert_eq!(v.outcome, verdict::Outcome::Delivered);
        let (o, _) = decide(&finished(500, 0, true), &retry(), &eps, 1_000, 0.5);
        assert_eq!(o.kind, OutcomeKind::Retry { due_at: 2_000 });
        assert!(!o.promote);
        assert_eq!((o.status, o.response.as_slice()), (Some(500), &b"body"[..]));
        // The third attempt of a budget of three: dead, and a dead message blocks its lane.
        let (o, _) = decide(&finished(500, 2, true), &retry(), &eps, 1_000, 0.5);
        assert_eq!((o.kind, o.promote), (OutcomeKind::Dead, false));
        let (o, _) = decide(&finished(302, 0, false), &retry(), &eps, 1_000, 0.5);
        assert_eq!(
            o.error.as_deref(),
            Some("HTTP 302: redirect to https://elsewhere/ not followed")
        );
    }
}

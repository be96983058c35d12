//! Messages posted to the API, taken by the dispatcher for its next cycle transaction (which
//! stores them, commits durably and answers the posters).

use crossbeam_channel::Receiver;

use super::dispatcher::Dispatcher;

impl Dispatcher {
    /// Takes `job` and every other posted message waiting (up to `GROUP_MAX`) for the next cycle,
    /// and wants their endpoints claimed: a message due now may be claimed in the same cycle.
    pub(super) fn take_posts(&mut self, job: crate::api::Job, ingest: &Receiver<crate::api::Job>) {
        let mut count: usize = self.intake.iter().map(crate::api::Job::len).sum();
        let mut next = Some(job);
        while let Some(job) = next.take() {
            count += job.len();
            // A job's messages usually share one destination: look each name up once. A plain
            // URL's is its origin's (one the dispatcher does not know yet is found after the
            // cycle that stores it: `discover`).
            let mut names: Vec<String> = Vec::new();
            for m in job.messages() {
                let name = match &m.endpoint {
                    Some(e) => Some(e.clone()),
                    None => crate::message::origin(&m.url),
                };
                if let Some(n) = name.filter(|n| !names.contains(n)) {
                    names.push(n);
                }
            }
            for name in &names {
                self.endpoints.want_named(Some(name));
            }
            self.intake.push(job);
            if count < crate::api::GROUP_MAX {
                next = ingest.try_recv().ok();
            }
        }
    }
}

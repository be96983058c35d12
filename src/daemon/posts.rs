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
            // A job's messages usually share one destination: look each name up once.
            let mut names: Vec<Option<&str>> = Vec::new();
            for m in job.messages() {
                if !names.contains(&m.endpoint.as_deref()) {
                    names.push(m.endpoint.as_deref());
                }
            }
            for name in names {
                self.endpoints.want_named(name);
            }
            self.intake.push(job);
            if count < crate::api::GROUP_MAX {
                next = ingest.try_recv().ok();
            }
        }
    }
}

//! Shutdown: the dispatcher's last loop, which lets requests in flight finish and records them.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::dispatcher::{Dispatcher, STORE_RETRY};
use crate::deliver::{Finished, Task};

impl Dispatcher {
    /// Shutdown: release unstarted jobs, let running requests finish until `deadline`, record
    /// them (renewing the leases meanwhile); abandon what still runs then (its messages pending
    /// again).
    pub(super) fn drain(
        &mut self,
        jobs_tx: Sender<Task>,
        jobs_rx: &Receiver<Task>,
        done: &Receiver<Finished>,
        deadline: Instant,
    ) -> Drained {
        let mut released = Vec::new();
        for task in jobs_rx.try_iter() {
            if let Task::Attempt(job) = task {
                self.endpoints.released(job.endpoint);
                released.push(job.seq);
            }
        }
        drop(jobs_tx);
        self.pool.close();
        self.in_flight -= released.len();
        let mut last_renew = None::<Instant>;
        loop {
            self.finished.extend(done.try_iter());
            if !self.finished.is_empty() || !released.is_empty() || !self.intake.is_empty() {
                match self.record(&released, &[], true, crate::time::now_ms()) {
                    Ok(_) => released.clear(),
                    Err(e) => {
                        log::error!("{e}");
                        if Instant::now() >= deadline {
                            // Still claimed: the next start takes them over.
                            return Drained {
                                abandoned: self.in_flight + released.len(),
                                requeued: false,
                            };
                        }
                        thread::sleep(STORE_RETRY);
                        continue;
                    }
                }
            }
            if self.in_flight == 0 || self.pool.is_finished() && done.is_empty() {
                return Drained {
                    abandoned: 0,
                    requeued: true,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Abandoned: their messages go back to pending now, so that nothing depends on
                // the next start to find them (an answer that still comes is not recorded: the
                // receiver may see the message twice, it is never lost).
                let requeued = match self.queue.abandon(crate::time::now_ms()) {
                    Ok(_) => true,
                    Err(e) => {
                        log::error!("{e}");
                        false
                    }
                };
                return Drained {
                    abandoned: self.in_flight,
                    requeued,
                };
            }
            if last_renew.is_none_or(|t| t.elapsed() >= self.config.lease / 3) {
                last_renew = Some(Instant::now());
                let until = crate::time::now_ms() + crate::time::duration_ms(self.config.lease);
                if let Err(e) = self.queue.renew(until) {
                    log::warn!("{e}");
                }
            }
            if let Ok(f) = done.recv_timeout(left.min(Duration::from_millis(100))) {
                self.finished.push(f);
            }
            // Stopping is bounded by TimeoutStopSec; keep feeding the watchdog meanwhile.
            self.watchdog.keep_alive();
        }
    }
}

/// How a shutdown's drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Drained {
    /// Requests still running at the deadline.
    pub(super) abandoned: usize,
    /// Their messages are pending again (else the next start takes them over).
    pub(super) requeued: bool,
}

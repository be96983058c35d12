//! The delivery workers: N named threads that take jobs from a bounded channel, make one attempt
//! each, and send the result back. They never touch the database.
//!
//! A panic while attempting a job is caught, logged with the job's uuid, and reported as a failed
//! attempt, so the message is retried and the worker goes on. Workers end when the job channel is
//! closed and empty; `join` reports any thread that died anyway.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::http::Http;
use super::{Finished, Job, Reply};
use crate::error::{Error, Result};

/// Running worker threads.
pub(crate) struct Pool {
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `n` workers named `webhookd-worker-<i>`.
    ///
    /// # Errors
    /// `Spawn` when a thread cannot be created (already started ones end when `jobs` closes).
    pub(crate) fn start(
        n: usize,
        http: &Arc<Http>,
        jobs: &Receiver<Job>,
        done: &Sender<Finished>,
    ) -> Result<Pool> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("webhookd-worker-{i}");
            let (http, jobs, done) = (Arc::clone(http), jobs.clone(), done.clone());
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || work(&http, &jobs, &done))
                .map_err(|source| Error::Spawn { name, source })?;
            handles.push(handle);
        }
        Ok(Pool { handles })
    }

    /// Whether every worker has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Waits up to `grace` for the workers to return, then joins those that did; logs the ones still stuck (they are abandoned to the
    /// process exit, and their messages stay in flight until the next start requeues them).
    pub(crate) fn join(self, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        while !self.is_finished() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        for handle in self.handles {
            let name = handle.thread().name().unwrap_or("worker").to_owned();
            if !handle.is_finished() {
                log::error!(
                    "{name} is still busy at exit; its message will be retried on the next start"
                );
                continue;
            }
            if handle.join().is_err() {
                log::error!("{name} died from a panic");
            }
        }
    }
}

fn work(http: &Http, jobs: &Receiver<Job>, done: &Sender<Finished>) {
    for job in jobs {
        let finished = match catch_unwind(AssertUnwindSafe(|| http.attempt(&job))) {
            Ok(f) => f,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                log::error!(
                    "worker panicked on message {}: {what}; it will be retried",
                    job.uuid
                );
                Finished::new(
                    &job,
                    SystemTime::now(),
                    Duration::ZERO,
                    Reply::Transport(format!("webhookd worker panicked: {what}")),
                )
            }
        };
        if done.send(finished).is_err() {
            return; // dispatcher gone: the process is exiting
        }
    }
}

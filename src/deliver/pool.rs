//! The delivery workers: named threads that take jobs from a channel, make one attempt each, and
//! send the result back. They never touch the database.
//!
//! A panic while attempting a job is caught, logged with the job's uuid, and reported as a failed
//! attempt, so the message is retried and the worker goes on (a replacement costs nothing: the
//! thread itself survives). Each worker publishes when it started its current attempt, so the
//! daemon can tell a stuck worker from a busy one and stop feeding the watchdog.
//!
//! The pool can grow and shrink while running (config reload): new workers are spawned at once;
//! surplus workers retire after their current attempt, or, when idle, as soon as they take one of
//! the `Task::Retire` tokens the pool sends down the job channel. (A worker waits on the job
//! channel alone: a `select!` over jobs and a retire channel cost 20% of the drain rate, and a
//! timed wait woke every idle worker about 17 times a second.) The HTTP client can be replaced
//! too; attempts already running finish with the old one. Workers end when the job channel is
//! closed (`Pool::close` and the dispatcher's sender dropped) and empty.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::http::Http;
use super::{Finished, Reply, Task};
use crate::error::{Error, Result};

/// Running worker threads.
pub(crate) struct Pool {
    workers: Vec<Worker>,
    /// How many workers should run; more are retired as they become idle.
    size: usize,
    next_id: usize,
    http: Arc<RwLock<Arc<Http>>>,
    jobs: Receiver<Task>,
    /// Sends the retire tokens; `None` once closed.
    tokens: Option<Sender<Task>>,
    done: Sender<Finished>,
    /// How many workers still have to retire; each retiring worker takes one (a token whose
    /// retirement was cancelled meanwhile is passed over).
    retire: Arc<AtomicUsize>,
    /// The monotonic clock's origin for `busy_since` (an NTP step of the wall clock must neither
    /// hide a stuck worker nor make a busy one look stuck).
    epoch: Instant,
}

struct Worker {
    handle: JoinHandle<()>,
    /// Start of the current attempt in µs since the pool's epoch, plus one; 0 while idle.
    busy_since: Arc<AtomicU64>,
}

/// Reported by [`Pool::stuck`].
pub(crate) struct Stuck {
    pub(crate) name: String,
    pub(crate) busy: Duration,
}

impl Pool {
    /// Starts `n` workers named `webhookd-worker-<i>`.
    ///
    /// # Errors
    /// `Spawn` when a thread cannot be created (already started ones end when `jobs` closes).
    pub(crate) fn start(
        n: usize,
        http: Http,
        (tokens, jobs): (&Sender<Task>, &Receiver<Task>),
        done: &Sender<Finished>,
    ) -> Result<Pool> {
        let mut pool = Pool {
            workers: Vec::with_capacity(n),
            size: 0,
            next_id: 0,
            http: Arc::new(RwLock::new(Arc::new(http))),
            jobs: jobs.clone(),
            tokens: Some(tokens.clone()),
            done: done.clone(),
            retire: Arc::new(AtomicUsize::new(0)),
            epoch: Instant::now(),
        };
        pool.resize(n)?;
        Ok(pool)
    }

    /// Grows the pool to `n` workers at once, or retires the surplus as they become idle.
    ///
    /// # Errors
    /// `Spawn` when a thread cannot be created; the pool keeps the workers it has.
    pub(crate) fn resize(&mut self, n: usize) -> Result<()> {
        self.workers.retain(|w| !w.handle.is_finished());
        while self.size > n {
            self.retire.fetch_add(1, Ordering::SeqCst);
            if let Some(tokens) = &self.tokens {
                let _ = tokens.send(Task::Retire); // wakes an idle worker
            }
            self.size -= 1;
        }
        while self.size < n {
            // Cancel pending retirements before spawning.
            if take_one(&self.retire) {
                self.size += 1;
                continue;
            }
            let name = format!("webhookd-worker-{}", self.next_id);
            let busy_since = Arc::new(AtomicU64::new(0));
            let (http, jobs, done, retire, busy, epoch) = (
                Arc::clone(&self.http),
                self.jobs.clone(),
                self.done.clone(),
                Arc::clone(&self.retire),
                Arc::clone(&busy_since),
                self.epoch,
            );
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || work(&http, &jobs, &retire, &done, &busy, epoch))
                .map_err(|source| Error::Spawn { name, source })?;
            self.workers.push(Worker { handle, busy_since });
            self.next_id += 1;
            self.size += 1;
        }
        Ok(())
    }

    /// Replaces the HTTP client for the attempts that start from now on.
    pub(crate) fn set_http(&self, http: Http) {
        *self.http.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(http);
    }

    /// The worker that has been on one attempt the longest, if that is longer than `limit`.
    pub(crate) fn stuck(&self, limit: Duration) -> Option<Stuck> {
        let now = micros_since(self.epoch);
        self.workers
            .iter()
            .filter(|w| !w.handle.is_finished())
            .filter_map(|w| {
                let since = w.busy_since.load(Ordering::Relaxed);
                let busy = now.checked_sub(since.checked_sub(1)?)?;
                Some((w, Duration::from_micros(busy)))
            })
            .filter(|(_, busy)| *busy > limit)
            .max_by_key(|(_, busy)| *busy)
            .map(|(w, busy)| Stuck {
                name: w.handle.thread().name().unwrap_or("worker").to_owned(),
                busy,
            })
    }

    /// Drops the pool's sender of the job channel: the workers return once the dispatcher's is
    /// dropped too and the channel is empty.
    pub(crate) fn close(&mut self) {
        self.tokens = None;
    }

    /// Whether every worker has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.workers.iter().all(|w| w.handle.is_finished())
    }

    /// Waits up to `grace` for the workers to return, then joins those that did. Returns how
    /// many are still on a request: they are left to the process exit (the caller says so once).
    pub(crate) fn join(self, grace: Duration) -> usize {
        let deadline = std::time::Instant::now() + grace;
        while !self.is_finished() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        let mut busy = 0;
        for worker in self.workers {
            let handle = worker.handle;
            if !handle.is_finished() {
                busy += 1;
                continue;
            }
            let name = handle.thread().name().unwrap_or("worker").to_owned();
            if handle.join().is_err() {
                log::error!("{name} died from a panic");
            }
        }
        busy
    }
}

/// Takes one unit from `n` if it is not 0.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

/// Microseconds on the monotonic clock since `epoch`.
fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn work(
    http: &RwLock<Arc<Http>>,
    jobs: &Receiver<Task>,
    retire: &AtomicUsize,
    done: &Sender<Finished>,
    busy_since: &AtomicU64,
    epoch: Instant,
) {
    loop {
        if retire.load(Ordering::Relaxed) > 0 && take_one(retire) {
            return;
        }
        let job = match jobs.recv() {
            Ok(Task::Attempt(job)) => job,
            Ok(Task::Retire) => continue, // retires above, unless cancelled meanwhile
            Err(_) => return,             // closed and empty: shutting down
        };
        busy_since.store(micros_since(epoch) + 1, Ordering::Relaxed);
        let client = Arc::clone(&http.read().unwrap_or_else(PoisonError::into_inner));
        let mut finished = match catch_unwind(AssertUnwindSafe(|| {
            crate::faults::before_attempt(&job.url);
            client.attempt(&job)
        })) {
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
                    Reply::Transport {
                        kind: crate::model::Failure::Other,
                        error: format!("webhookd worker panicked: {what}"),
                    },
                )
            }
        };
        busy_since.store(0, Ordering::Relaxed);
        finished.url = job.url;
        if done.send(finished).is_err() {
            return; // dispatcher gone: the process is exiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpConfig;

    fn live(pool: &Pool) -> usize {
        pool.workers
            .iter()
            .filter(|w| !w.handle.is_finished())
            .count()
    }

    /// Polls `f` until it holds, for at most 3 s.
    fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_pool_grows_at_once_and_shrinks_as_workers_idle() -> Result<()> {
        let config = HttpConfig {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            ca_file: None,
            capture: 1024,
            proxy: None,
        };
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Task>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Finished>();
        let mut pool = Pool::start(
            2,
            Http::new(&config, &crate::egress::Policy::default(), 4)?,
            (&jobs_tx, &jobs_rx),
            &done_tx,
        )?;
        assert_eq!(live(&pool), 2);
        pool.resize(5)?;
        assert_eq!(live(&pool), 5, "growing is immediate");
        pool.resize(1)?;
        eventually("four idle workers retire", || live(&pool) == 1);
        // Shrinking then growing at once: a retirement not taken yet is cancelled (no new
        // thread), or the idle worker was quicker and one new thread replaces it; never more.
        pool.resize(3)?;
        let spawned = pool.next_id;
        pool.resize(2)?;
        pool.resize(3)?;
        assert!(pool.next_id <= spawned + 1, "one retirement, one thread");
        eventually("three workers run", || live(&pool) == 3);
        // The workers still work: a connection refused on loopback port 1 is an attempt too.
        for seq in 0..6 {
            let job = crate::model::Job {
                seq,
                method: "POST".into(),
                url: "http://127.0.0.1:1/".into(),
                ..crate::model::Job::default()
            };
            jobs_tx
                .send(Task::Attempt(job))
                .expect("workers are running");
        }
        let mut seqs: Vec<i64> = (0..6)
            .map(|_| {
                done_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("an outcome")
                    .seq
            })
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..6).collect::<Vec<_>>());
        drop(jobs_tx);
        pool.close();
        assert_eq!(
            pool.join(Duration::from_secs(5)),
            0,
            "every worker returned"
        );
        Ok(())
    }
}

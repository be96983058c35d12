//! Group commit: the API's one writer of new messages.
//!
//! Connection threads validate their requests and hand the messages to `webhookd-ingest`, then
//! wait. The writer takes everything waiting, stores it in one transaction with one fsync
//! (`synchronous=FULL`), answers every waiter, and wakes the dispatcher in-process. So a `202`
//! is only ever sent for a message on disk, and the fsync is shared by every concurrent request.
//! Messages waiting for the writer are bounded by `api.ingest_queue`: beyond it a request is
//! refused at once (429), so memory never grows with a flood.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::config::Database;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::store::{self, Access, Enqueued, Notice};

/// The most messages in one transaction (a batch request is never split).
const GROUP_MAX: usize = 10_000;

/// What the writer answers.
pub(crate) type Answer = std::result::Result<Vec<Enqueued>, Failed>;

/// Why a group was not stored (none of it was).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    /// Another writer held the store too long: worth retrying.
    pub(crate) busy: bool,
    pub(crate) message: String,
}

struct Job {
    messages: Vec<Message>,
    reply: Sender<Answer>,
}

/// Why a submission was refused before it reached the writer.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// `api.ingest_queue` messages are waiting already.
    Full,
    /// The writer is gone (stopping).
    Stopped,
}

/// The writer's handle; dropping every clone of the sender and `stop` end it.
pub(crate) struct Writer {
    tx: Sender<Job>,
    waiting: Arc<AtomicUsize>,
    limit: usize,
    handle: Option<JoinHandle<()>>,
}

/// What connection threads submit through.
#[derive(Clone)]
pub(crate) struct Submit {
    tx: Sender<Job>,
    waiting: Arc<AtomicUsize>,
    limit: usize,
}

impl Writer {
    /// Opens its own connection to the store and starts `webhookd-ingest`.
    ///
    /// # Errors
    /// The store's open errors, `Spawn`.
    pub(crate) fn start(db: &Database, limit: usize, wake: Sender<Notice>) -> Result<Writer> {
        let mut store = store::open_admin(db, Access::Write)?;
        let (tx, rx) = unbounded::<Job>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&waiting);
        let handle = crate::threads::spawn("webhookd-ingest", move || {
            run(store.as_mut(), &rx, &w, &wake);
        })?;
        Ok(Writer {
            tx,
            waiting,
            limit,
            handle: Some(handle),
        })
    }

    pub(crate) fn submitter(&self) -> Submit {
        Submit {
            tx: self.tx.clone(),
            waiting: Arc::clone(&self.waiting),
            limit: self.limit,
        }
    }

    /// Commits what is waiting, then ends (every submitter must be gone: the server stopped).
    pub(crate) fn stop(mut self) {
        let Writer { tx, handle, .. } = &mut self;
        drop(std::mem::replace(tx, unbounded().0));
        if let Some(h) = handle.take() {
            let _ = h.join();
        }
    }
}

impl Submit {
    /// Stores `messages` (all or none) and waits until they are durable.
    ///
    /// # Errors
    /// `Refusal` before anything was queued; the store's error (nothing stored) inside.
    pub(crate) fn submit(&self, messages: Vec<Message>) -> std::result::Result<Answer, Refusal> {
        let n = messages.len();
        let queued = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w == 0 || w + n <= self.limit).then_some(w + n)
            })
            .is_ok();
        if !queued {
            return Err(Refusal::Full);
        }
        let (reply, answer) = bounded(1);
        if self.tx.send(Job { messages, reply }).is_err() {
            self.waiting.fetch_sub(n, Ordering::SeqCst);
            return Err(Refusal::Stopped);
        }
        answer.recv().map_err(|_| Refusal::Stopped)
    }
}

fn run(
    store: &mut dyn store::Admin,
    rx: &Receiver<Job>,
    waiting: &AtomicUsize,
    wake: &Sender<Notice>,
) {
    while let Ok(first) = rx.recv() {
        let mut n = first.messages.len();
        let mut group = vec![first];
        while n < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.messages.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        crate::faults::before_ingest();
        let result = commit(store, &group);
        waiting.fetch_sub(n, Ordering::SeqCst);
        match result {
            Ok(answers) => {
                let _ = wake.send(Notice::Messages);
                for (job, answer) in group.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                log::warn!("api: storing {n} messages failed, none stored: {e}");
                let failed = Failed {
                    busy: matches!(e, Error::Busy { .. }),
                    message: e.to_string(),
                };
                for job in group {
                    let _ = job.reply.send(Err(failed.clone()));
                }
            }
        }
    }
}

fn commit(store: &mut dyn store::Admin, group: &[Job]) -> Result<Vec<Vec<Enqueued>>> {
    let now = crate::time::now_ms();
    let mut inserter = store.inserter()?;
    let mut answers = Vec::with_capacity(group.len());
    for job in group {
        let mut out = Vec::with_capacity(job.messages.len());
        for m in &job.messages {
            out.push(inserter.insert(m, now)?);
        }
        answers.push(out);
    }
    inserter.commit()?;
    Ok(answers)
}

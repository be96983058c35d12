//! Group commit: how posted messages reach the queue.
//!
//! Connection threads validate their requests and hand the messages over as a [`Job`], then
//! wait. The daemon's dispatcher, the one writer of the queue, takes every job waiting and stores
//! them in its next cycle transaction, which commits with a sync of the log (`synchronous=FULL`)
//! and may claim them in the same breath; then it answers each job. So a `202` is only ever sent
//! for a message on disk, one fsync serves every concurrent request, and posting never contends
//! with delivery for the database's write lock. Messages waiting for a cycle are bounded by
//! `api.ingest_queue`: beyond it a request is refused at once (429), so memory never grows with a
//! flood. A job dropped unanswered (the daemon is stopping) answers "stopping" by itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::message::Message;
use crate::store::Enqueued;

/// The most messages the dispatcher takes into one cycle (a batch request is never split).
pub(crate) const GROUP_MAX: usize = 10_000;

/// What a job is answered.
pub(crate) type Answer = std::result::Result<Vec<Enqueued>, Failed>;

/// Why a job was not stored (none of it was).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    /// Worth retrying: the store was busy, or the daemon is stopping.
    pub(crate) busy: bool,
    pub(crate) message: String,
}

/// Why a submission was refused before it was queued.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// `api.ingest_queue` messages are waiting already.
    Full,
    /// The daemon no longer takes messages (stopping).
    Stopped,
}

/// Where a job's answer goes. A mutex and a condition variable rather than a channel: a
/// channel's receiver spins and yields before it sleeps, and with one waiter per connection (64
/// or more, for a millisecond each) that spinning took a third of the CPU.
#[derive(Default)]
struct Reply {
    answer: Mutex<Option<Answer>>,
    ready: Condvar,
}

impl Reply {
    fn send(&self, a: Answer) {
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(a);
        self.ready.notify_one();
    }

    fn wait(&self) -> Answer {
        let mut slot = self.answer.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(a) = slot.take() {
                return a;
            }
            slot = self
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Messages of one request, waiting for a cycle; answered exactly once.
pub(crate) struct Job {
    messages: Vec<Message>,
    count: usize,
    reply: Arc<Reply>,
    waiting: Arc<AtomicUsize>,
    answered: bool,
}

impl Job {
    /// The messages, moved out for the cycle (the job keeps their count).
    pub(crate) fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Peeks at the messages not yet taken.
    pub(crate) fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Answers the waiting request.
    pub(crate) fn answer(mut self, a: Answer) {
        self.finish(a);
    }

    fn finish(&mut self, a: Answer) {
        if !self.answered {
            self.answered = true;
            self.waiting.fetch_sub(self.count, Ordering::SeqCst);
            self.reply.send(a);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.finish(Err(Failed {
            busy: true,
            message: "the daemon is stopping; nothing was stored".into(),
        }));
    }
}

/// What connection threads submit through.
#[derive(Clone)]
pub(crate) struct Submit {
    tx: Sender<Job>,
    waiting: Arc<AtomicUsize>,
    limit: usize,
}

/// A new intake: the connection threads' end and the dispatcher's.
pub(crate) fn intake(limit: usize) -> (Submit, Receiver<Job>) {
    let (tx, rx) = unbounded();
    let submit = Submit {
        tx,
        waiting: Arc::new(AtomicUsize::new(0)),
        limit,
    };
    (submit, rx)
}

impl Submit {
    /// Stores `messages` (all or none) and waits until they are durable.
    ///
    /// # Errors
    /// `Refusal` before anything was queued; the store's failure (nothing stored) inside.
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
        let reply = Arc::new(Reply::default());
        let job = Job {
            messages,
            count: n,
            reply: Arc::clone(&reply),
            waiting: Arc::clone(&self.waiting),
            answered: false,
        };
        if let Err(unsent) = self.tx.send(job) {
            // The dispatcher is gone: answered (stopping) as the job drops; say it plainly.
            drop(unsent);
            return Err(Refusal::Stopped);
        }
        Ok(reply.wait())
    }
}

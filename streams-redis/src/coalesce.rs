//! Concurrent single commands share round trips.
//!
//! At most [`MAX_IN_FLIGHT`] round trip of single commands is out on the
//! command connection at a time. A command that finds the connection idle
//! (nothing out, nothing queued) goes at once, from its caller's task,
//! alone: a lone caller waits for nothing and pays no hop through another
//! task. A command sent while a round trip is out is queued; when the
//! round trip ends, everything queued by then (up to [`MAX_PIPELINE`]
//! commands) leaves as one pipeline, and its replies go back one by one to
//! the callers that queued the commands. Nothing ever waits on a timer, so
//! what a caller may wait beyond its own round trip is bounded by the one
//! already out.
//!
//! Each caller gets its own reply: a command the server refuses fails only
//! its caller (the server answers every command of a pipeline on its own),
//! and a connection that fails while a pipeline is out fails every caller
//! of that pipeline with the same connection error (retryable), since
//! nothing says which of their commands ran. Nothing is retried here.
//!
//! The redis crate's multiplexed connection pipelines concurrent commands
//! on the wire as well; what this saves is its per-command work (a channel
//! message, a response timer and a reply channel for each command, and the
//! connection manager's bookkeeping), and many small writes: with one
//! round trip out, the commands of concurrent callers leave in few, large
//! writes whether or not `TCP_NODELAY` is set (see `docs/architecture.md`).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, RedisError, RedisResult, Value};
use tokio::sync::oneshot;

/// Most commands sent in one pipeline.
pub(crate) const MAX_PIPELINE: usize = 512;

/// Most round trips of single commands out at once. Measured with 64
/// concurrent senders: one gave the largest pipelines and the steadiest
/// throughput; two to eight split the callers into smaller pipelines.
pub(crate) const MAX_IN_FLIGHT: usize = 1;

/// One queued command and where its reply goes.
struct Job {
    cmd: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// Shares round trips between the concurrent callers of one connection.
/// Cheap to clone: clones share the queue.
#[derive(Clone)]
pub(crate) struct Coalescer {
    shared: Arc<Shared>,
}

struct Shared {
    conn: ConnectionManager,
    queue: Mutex<Vec<Job>>,
    in_flight: AtomicUsize,
}

impl Coalescer {
    pub(crate) fn new(conn: ConnectionManager) -> Self {
        Self {
            shared: Arc::new(Shared {
                conn,
                queue: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Sends `cmd`, alone or with whatever else is queued; its reply, as
    /// the server sent it (a refusal is a [`Value::ServerError`], not an
    /// `Err`). Must be called within a tokio runtime.
    pub(crate) async fn send(&self, cmd: Cmd) -> RedisResult<Value> {
        let shared = &self.shared;
        if shared.lock().is_empty() && shared.try_acquire_idle() {
            // Released (and the queue handed on) even if this future is
            // dropped midway.
            let _slot = Slot(Arc::clone(shared));
            let mut conn = shared.conn.clone();
            return conn.req_packed_command(&cmd).await;
        }
        let (reply, answer) = oneshot::channel();
        shared.lock().push(Job { cmd, reply });
        Shared::dispatch(shared);
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a round-trip slot if none is taken: the connection is idle.
    fn try_acquire_idle(&self) -> bool {
        self.in_flight
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Takes a round-trip slot if one is free.
    fn try_acquire(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .is_ok()
    }

    /// Sends what is queued while slots are free. Called after every push
    /// and every release, so a queued command always finds a sender: either
    /// its own push sees a free slot, or the release that frees one sees it.
    fn dispatch(this: &Arc<Self>) {
        loop {
            if this.lock().is_empty() || !this.try_acquire() {
                return;
            }
            let slot = Slot(Arc::clone(this));
            let jobs = {
                let mut queue = this.lock();
                if queue.len() <= MAX_PIPELINE {
                    std::mem::take(&mut *queue)
                } else {
                    queue.drain(..MAX_PIPELINE).collect()
                }
            };
            if jobs.is_empty() {
                // Another dispatcher took them; the slot goes back.
                continue;
            }
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(flight(slot, jobs));
                }
                Err(_) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(gone()));
                    }
                }
            }
        }
    }
}

/// A taken round-trip slot: dropping it frees the slot and sends what was
/// queued meanwhile.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        Shared::dispatch(&self.0);
    }
}

/// No runtime left to send on (it is shutting down): a connection error.
fn gone() -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the command connection's runtime has stopped",
    ))
}

/// Sends queued commands as one pipeline and hands each reply to its
/// caller; the slot is freed once the replies are in.
async fn flight(slot: Slot, mut jobs: Vec<Job>) {
    // A caller that gave up (timed out, cancelled) no longer waits: its
    // command is not sent.
    jobs.retain(|job| !job.reply.is_closed());
    let mut conn = slot.0.conn.clone();
    if jobs.len() <= 1 {
        if let Some(job) = jobs.pop() {
            let reply = conn.req_packed_command(&job.cmd).await;
            drop(slot);
            let _ = job.reply.send(reply);
        }
        return;
    }
    let count = jobs.len();
    let mut pipe = redis::Pipeline::with_capacity(count);
    let mut replies = Vec::with_capacity(count);
    for job in jobs {
        pipe.add_command(job.cmd);
        replies.push(job.reply);
    }
    let result = conn.req_packed_commands(&pipe, 0, count).await;
    drop(slot);
    match result {
        Ok(values) if values.len() == count => {
            for (value, reply) in values.into_iter().zip(replies) {
                let _ = reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let e = RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a pipeline's replies do not match its commands",
                format!("{} replies to {count} commands", values.len()),
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

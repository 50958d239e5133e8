//! The consume runner: the spec's processing loop as one call.
//!
//! [`StreamManagerExt::consume`](crate::StreamManagerExt::consume) runs an
//! async handler over a group's messages with bounded concurrency. The
//! handler returns an [`Outcome`] (or an error, which means retry with
//! backoff and, past the limit, the dead-letter queue); the runner settles
//! every message, coalesces acks, renews the leases of messages being
//! worked on, claims work abandoned by dead consumers, promotes due
//! retries, prunes stale consumers, and on shutdown drains in-flight
//! handlers and hands back what it fetched but did not start.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
//! use std::time::Duration;
//! use serde::Deserialize;
//! use streams_core::runner::{Job, Outcome};
//! use streams_core::{ConsumerGroupConfig, Manager, StreamManager, StreamManagerExt};
//! use streams_core::runner::CancellationToken;
//!
//! #[derive(Deserialize)]
//! struct Task { task_id: String }
//!
//! let manager = Manager::new(streams_memory::MemoryBackend::new(), Default::default())?;
//! manager.create_consumer_group(&ConsumerGroupConfig::new("workers", ["tasks"])).await?;
//! manager.send_message("tasks", serde_json::json!({"task_id": "R1"}), None).await?;
//!
//! let stop = CancellationToken::new();
//! let stopper = stop.clone();
//! let summary = manager
//!     .consume("workers", move |job: Job<Task>| {
//!         let stopper = stopper.clone();
//!         async move {
//!             println!("working on {}", job.data.task_id);
//!             stopper.cancel(); // one task is enough for this example
//!             Ok::<_, std::io::Error>(Outcome::Ack)
//!         }
//!     })
//!     .concurrency(4)
//!     .shutdown_on(stop)
//!     .await?;
//! assert_eq!(summary.acked, 1);
//! # Ok(()) }
//! ```

mod acks;
mod engine;
mod handle;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
pub use tokio_util::sync::CancellationToken;

use crate::api::StreamManager;
use crate::error::Result;
use crate::message::StreamMessage;

/// What a handler decided for its message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done: acknowledge it.
    Ack,
    /// Try again later: after `delay`, or the group's backoff when `None`.
    /// Past the retry limit the message goes to the dead-letter queue with
    /// `reason`.
    Retry {
        /// When to try again; `None`: the group's backoff.
        delay: Option<Duration>,
        /// Recorded as the message's error.
        reason: Option<String>,
    },
    /// Give up: dead-letter it with `reason`.
    DeadLetter {
        /// Why, as the dead letter records it.
        reason: String,
    },
}

impl Outcome {
    /// Retry after the group's backoff.
    pub fn retry() -> Self {
        Self::Retry {
            delay: None,
            reason: None,
        }
    }

    /// Retry after `delay`.
    pub fn retry_after(delay: Duration) -> Self {
        Self::Retry {
            delay: Some(delay),
            reason: None,
        }
    }

    /// Dead-letter with `reason`.
    pub fn dead_letter(reason: impl Into<String>) -> Self {
        Self::DeadLetter {
            reason: reason.into(),
        }
    }
}

/// `Ok(())` from a handler acknowledges the message.
impl From<()> for Outcome {
    fn from((): ()) -> Self {
        Self::Ack
    }
}

/// A message handed to a handler, with its payload decoded as `T`.
///
/// `T` is any `serde` type; `serde_json::Value` takes every payload as it
/// is. A payload that does not fit `T` never reaches the handler: it goes to
/// the dead-letter queue with the decoding error as the reason, and is never
/// retried (it would fail the same way every time).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job<T> {
    /// The payload.
    pub data: T,
    /// The message, with its id, stream, delivery and history.
    pub message: StreamMessage,
}

impl<T> Job<T> {
    /// The message id.
    pub fn id(&self) -> &str {
        &self.message.id
    }

    /// The stream the message belongs to.
    pub fn stream(&self) -> &str {
        &self.message.stream
    }

    /// Failed attempts that were retried before this one.
    pub fn retry_count(&self) -> u32 {
        self.message.retry_count
    }

    /// Times the message has been handed to a consumer, this time included.
    pub fn deliveries(&self) -> u64 {
        self.message.delivery.as_ref().map_or(1, |d| d.deliveries)
    }
}

/// How the runner works. Every default is stated on its field; times that
/// default to `None` derive from the group's `claim_idle`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumeOptions {
    /// Most handlers running at once. Default 1.
    pub concurrency: usize,
    /// Longest one read waits for new messages; shutdown is noticed at
    /// least this often. Default 1 s (at least 10 ms).
    pub poll: Duration,
    /// Most acknowledgements sent in one call. Default 100.
    pub ack_batch: usize,
    /// Longest an acknowledgement waits to be sent with others. Default 10 ms.
    pub ack_delay: Duration,
    /// How often the leases of messages being worked on are renewed.
    /// Default: a third of the group's `claim_idle`.
    pub lease_interval: Option<Duration>,
    /// A handler running longer is stopped and its message treated as
    /// failed (retried, then dead-lettered). Default 15 minutes; `None`
    /// lets handlers run as long as they like (their leases are renewed).
    pub hard_timeout: Option<Duration>,
    /// How often work abandoned by dead consumers is claimed. Default: half
    /// the group's `claim_idle`.
    pub claim_interval: Option<Duration>,
    /// How often due retries are promoted, for readers in other languages
    /// as well. Default 1 s.
    pub promote_interval: Duration,
    /// How often stale consumers (idle at least `prune_idle`, holding
    /// nothing) are removed. Default 5 minutes.
    pub prune_interval: Duration,
    /// Idle time after which a consumer holding nothing is stale. Default
    /// 1 hour.
    pub prune_idle: Duration,
    /// How often the group's gauges (lag, pending, ...) are refreshed.
    /// Default 15 s.
    pub gauge_interval: Duration,
    /// How long running handlers may finish after shutdown is asked for;
    /// the ones still running then are stopped and their messages stay
    /// pending (claimed later). Default 30 s.
    pub grace: Duration,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            concurrency: 1,
            poll: Duration::from_secs(1),
            ack_batch: 100,
            ack_delay: Duration::from_millis(10),
            lease_interval: None,
            hard_timeout: Some(Duration::from_secs(15 * 60)),
            claim_interval: None,
            promote_interval: Duration::from_secs(1),
            prune_interval: Duration::from_secs(5 * 60),
            prune_idle: Duration::from_secs(3600),
            gauge_interval: Duration::from_secs(15),
            grace: Duration::from_secs(30),
        }
    }
}

macro_rules! option_setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl ConsumeOptions {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

option_setters! {
    /// Sets [`concurrency`](Self::concurrency) (at least 1).
    concurrency: usize,
    /// Sets [`poll`](Self::poll).
    poll: Duration,
    /// Sets [`ack_batch`](Self::ack_batch).
    ack_batch: usize,
    /// Sets [`ack_delay`](Self::ack_delay).
    ack_delay: Duration,
    /// Sets [`lease_interval`](Self::lease_interval).
    lease_interval: Option<Duration>,
    /// Sets [`hard_timeout`](Self::hard_timeout).
    hard_timeout: Option<Duration>,
    /// Sets [`claim_interval`](Self::claim_interval).
    claim_interval: Option<Duration>,
    /// Sets [`promote_interval`](Self::promote_interval).
    promote_interval: Duration,
    /// Sets [`prune_interval`](Self::prune_interval).
    prune_interval: Duration,
    /// Sets [`prune_idle`](Self::prune_idle).
    prune_idle: Duration,
    /// Sets [`gauge_interval`](Self::gauge_interval).
    gauge_interval: Duration,
    /// Sets [`grace`](Self::grace).
    grace: Duration,
}

/// What a [`consume`](crate::StreamManagerExt::consume) run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumeSummary {
    /// Messages whose handler ran to an outcome (or failed, or timed out).
    pub processed: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Messages dead-lettered: by the handler, past the retry limit, or
    /// because their payload did not fit the handler's type.
    pub dead_lettered: u64,
    /// Messages taken over from dead consumers by the claim ticker.
    pub claimed: u64,
    /// Messages fetched but not started, handed back at shutdown (not
    /// counted as deliveries).
    pub handed_back: u64,
    /// Handlers stopped by the hard timeout.
    pub timed_out: u64,
    /// Messages this consumer lost to another while working on them (its
    /// settlement was refused; the other consumer settles them).
    pub lost: u64,
    /// Errors from the backend that the runner rode out (a read, an ack, a
    /// ticker); each is logged.
    pub errors: u64,
    /// Pending entries found trimmed (or deleted) from their stream before
    /// they were handled, by the run's reads and claims: they never reach
    /// the handler (there is nothing left to hand it); each is
    /// acknowledged, logged and counted here and in
    /// [`Stats::pending_deleted`](crate::Stats::pending_deleted). Read from
    /// the manager's counters, so a manager shared by several runs (or
    /// other callers) counts what all of them found meanwhile.
    pub trimmed: u64,
    /// `stream/id` of the messages whose handlers were still running when
    /// the grace period ended: they stay pending for this consumer and are
    /// claimed after `claim_idle`.
    pub overran: Vec<String>,
}

/// One line: `processed 20, acked 18, retried 2, ...`, then the messages
/// whose handlers overran the grace period, if any.
impl fmt::Display for ConsumeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "processed {}, acked {}, retried {}, dead-lettered {}, claimed {}, handed back {}, \
             timed out {}, lost {}, errors {}, trimmed {}",
            self.processed,
            self.acked,
            self.retried,
            self.dead_lettered,
            self.claimed,
            self.handed_back,
            self.timed_out,
            self.lost,
            self.errors,
            self.trimmed
        )?;
        if !self.overran.is_empty() {
            write!(
                f,
                "; still running at the end of the grace period: {}",
                self.overran.join(", ")
            )?;
        }
        Ok(())
    }
}

/// How the runner finished with one message, as told to an observer set
/// with [`Consume::on_settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settled {
    /// Acknowledged, and the server confirmed the whole batch it went in.
    Acked,
    /// Acknowledged in a batch the server confirmed only in part: this one
    /// may have been settled first by a consumer that took it over.
    AckUnconfirmed,
    /// A retry was scheduled (the original was acknowledged with it).
    Retried,
    /// Moved to the dead-letter queue.
    DeadLettered,
    /// Its retry or dead-letter move was refused: another consumer took the
    /// message meanwhile and settles it.
    Taken,
    /// The acknowledgement failed after its attempts (a connection error,
    /// a timeout): it may have reached the server before the reply was
    /// lost. If it did not, the message stays pending and is delivered
    /// again.
    AckFailed,
    /// A retry or dead-letter move, or the handing back, failed: the
    /// message stays pending and is delivered again.
    Failed,
    /// Fetched but never started: handed back at shutdown.
    HandedBack,
    /// Its handler was still running when the grace period ended: it stays
    /// pending and is claimed later.
    Overran,
}

/// One message the runner is done with, and how.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Settlement<'a> {
    /// The message as it was delivered.
    pub message: &'a StreamMessage,
    /// The group it was delivered to.
    pub group: &'a str,
    /// How it ended.
    pub how: Settled,
}

/// The callback behind [`Consume::on_settled`].
pub(crate) type Observer = Arc<dyn Fn(&Settlement<'_>) + Send + Sync>;

/// The handler behind a runner: any `Fn(Job<T>) -> impl Future<Output =
/// Result<O, E>>` where `O` converts into an [`Outcome`] (`()` acks) and `E`
/// displays (its text becomes the retry's error, or the dead letter's
/// reason past the limit).
pub trait Handler<T>: Send + Sync + 'static {
    /// Handles one job.
    fn call(&self, job: Job<T>) -> BoxedOutcome;
}

/// The future a [`Handler`] returns: the outcome, or the error's text.
pub type BoxedOutcome = Pin<Box<dyn Future<Output = std::result::Result<Outcome, String>> + Send>>;

impl<T, F, Fut, O, E> Handler<T> for F
where
    F: Fn(Job<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<O, E>> + Send + 'static,
    O: Into<Outcome>,
    E: fmt::Display,
{
    fn call(&self, job: Job<T>) -> BoxedOutcome {
        let fut = (self)(job);
        Box::pin(async move { fut.await.map(Into::into).map_err(|e| e.to_string()) })
    }
}

/// A runner being configured; `.await` it to run until shutdown.
///
/// Made by [`StreamManagerExt::consume`](crate::StreamManagerExt::consume).
#[must_use = "a runner does nothing until awaited"]
pub struct Consume<M, T, H> {
    manager: M,
    group: String,
    handler: H,
    options: ConsumeOptions,
    shutdown: CancellationToken,
    signals: bool,
    observer: Option<Observer>,
    _payload: PhantomData<fn() -> T>,
}

impl<M, T, H> fmt::Debug for Consume<M, T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consume")
            .field("group", &self.group)
            .field("options", &self.options)
            .field("signals", &self.signals)
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl<M, T, H> Consume<M, T, H>
where
    M: StreamManager + Clone + 'static,
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    pub(crate) fn new(manager: M, group: &str, handler: H) -> Self {
        Self {
            manager,
            group: group.to_owned(),
            handler,
            options: ConsumeOptions::default(),
            shutdown: CancellationToken::new(),
            signals: false,
            observer: None,
            _payload: PhantomData,
        }
    }

    /// Most handlers running at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = n;
        self
    }

    /// Replaces every option.
    pub fn options(mut self, options: ConsumeOptions) -> Self {
        self.options = options;
        self
    }

    /// Stops handlers running longer than `timeout` (their messages are
    /// treated as failed).
    pub fn hard_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.hard_timeout = timeout;
        self
    }

    /// How long running handlers may finish after shutdown is asked for.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.options.grace = grace;
        self
    }

    /// Shuts down when `token` is cancelled.
    pub fn shutdown_on(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Calls `observer` once for every message the runner is done with,
    /// with how it ended ([`Settled`]): for audit logs, and for checking
    /// what a run did message by message. It runs on the runner's tasks, so
    /// it should be quick.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// use std::sync::{Arc, Mutex};
    /// use streams_core::runner::{CancellationToken, Job, Settled};
    /// use streams_core::{ConsumerGroupConfig, Manager, StreamManager, StreamManagerExt};
    ///
    /// let manager = Manager::new(streams_memory::MemoryBackend::new(), Default::default())?;
    /// manager.create_consumer_group(&ConsumerGroupConfig::new("g", ["s"])).await?;
    /// manager.send_message("s", serde_json::json!({"n": 1}), None).await?;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let stop = CancellationToken::new();
    /// let stopper = stop.clone();
    /// manager
    ///     .consume("g", move |_job: Job<serde_json::Value>| {
    ///         stopper.cancel();
    ///         async { Ok::<_, std::io::Error>(()) }
    ///     })
    ///     .on_settled(move |s| log.lock().unwrap().push(s.how))
    ///     .shutdown_on(stop)
    ///     .await?;
    /// assert_eq!(*seen.lock().unwrap(), [Settled::Acked]);
    /// # Ok(()) }
    /// ```
    pub fn on_settled<F>(mut self, observer: F) -> Self
    where
        F: Fn(&Settlement<'_>) + Send + Sync + 'static,
    {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Also shuts down on Ctrl-C (SIGINT) and, on Unix, SIGTERM (what
    /// Kubernetes sends). Needs the `signal` feature.
    #[cfg(feature = "signal")]
    pub fn until_signal(mut self) -> Self {
        self.signals = true;
        self
    }
}

impl<M, T, H> IntoFuture for Consume<M, T, H>
where
    M: StreamManager + Clone + 'static,
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    type Output = Result<ConsumeSummary>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ConsumeSummary>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        if self.signals {
            watch_signals(self.shutdown.clone());
        }
        let run = engine::Run::new(
            self.manager,
            self.group,
            Arc::new(self.handler),
            self.options,
            self.shutdown,
            self.observer,
        );
        Box::pin(run.run())
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
#[cfg(feature = "signal")]
fn watch_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
            () = term => tracing::info!("SIGTERM: shutting down"),
            () = token.cancelled() => return,
        }
        token.cancel();
    });
}

#[cfg(not(feature = "signal"))]
fn watch_signals(_token: CancellationToken) {}

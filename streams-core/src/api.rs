//! The spec's API as a trait, so `dyn StreamManager` works, and the
//! conveniences every manager gets from [`StreamManagerExt`].

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;

#[cfg(doc)]
use crate::Manager;
use crate::config::ConsumerGroupConfig;
use crate::error::{Result, StreamError};
use crate::manager::{
    DlqFilter, DlqPage, DlqPurge, DlqQuery, DlqReplay, DlqStats, EntryState, GroupHealth,
    HealthReport, PeekQuery, PendingFilter, PendingInfo, PruneReport, PurgeReport, Readiness,
    ReplayReport, Stats, StreamInfo,
};
use crate::message::{RetryOptions, StreamMessage};

/// The stream manager API (the spec's `RedisStreamManager` methods), complete:
/// everything the README teaches works through `Arc<dyn StreamManager>`.
///
/// [`Manager`](crate::Manager) implements it once for every backend; backends
/// never implement it. Method names follow the spec so its readers find them;
/// the spec's keyword defaults become `Option` arguments (`None` takes the
/// group's configured value). Generic conveniences (`send` of any
/// `Serialize`, `scoped`) are in [`StreamManagerExt`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
/// use std::sync::Arc;
/// use serde_json::json;
/// use streams_core::{ConsumerGroupConfig, StreamManager};
/// # use streams_core::{Manager, ManagerConfig};
/// # use streams_memory::MemoryBackend;
/// let manager: Arc<dyn StreamManager> =
///     Arc::new(Manager::new(MemoryBackend::new(), ManagerConfig::default())?);
/// manager.create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"])).await?;
/// manager.send_message("jobs", json!({"n": 1}), None).await?;
/// let batch = manager.read_messages("workers", None, None).await?;
/// assert_eq!(batch.len(), 1);
/// assert!(manager.acknowledge(&batch[0], "workers").await?);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StreamManager: Send + Sync + Debug {
    /// This manager's consumer id (the spec's `consumer_id`).
    fn consumer_id(&self) -> &str;

    /// Connects, checks the server, and marks the manager initialized.
    /// Idempotent; other methods call it on first use.
    ///
    /// # Errors
    /// [`StreamError::Unsupported`] for a server the backend cannot use,
    /// connection errors, [`StreamError::Closed`].
    async fn initialize(&self) -> Result<()>;

    /// Creates the group on each of its streams (creating missing streams) and
    /// records its configuration in the group registry, so any manager on the
    /// same backend can read it by name. Idempotent; creating a group again
    /// with another configuration replaces the registered one.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Config`], backend errors.
    async fn create_consumer_group(&self, config: &ConsumerGroupConfig) -> Result<()>;

    /// Removes a group: from every stream it reads (with its pending
    /// entries), its retry schedules and ready streams, and the registry,
    /// where it leaves a mark (`{"deleted_at": ...}`) so that a worker still
    /// reading the group gets `GroupNotFound` instead of recreating it.
    /// Creating the group again replaces the mark. Returns whether it was
    /// registered.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    async fn delete_consumer_group(&self, group_name: &str) -> Result<bool>;

    /// The group's configuration, from this manager or the registry.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    async fn group_config(&self, group_name: &str) -> Result<ConsumerGroupConfig>;

    /// Every group in the registry, by name.
    ///
    /// # Errors
    /// Connection errors, [`StreamError::Decode`] for an unreadable entry.
    async fn registered_groups(&self) -> Result<Vec<ConsumerGroupConfig>>;

    /// Reads the next messages for this consumer from every stream of the
    /// group and from the group's due retries.
    ///
    /// `count` (default: the group's `batch_size`) is the most messages one
    /// call returns, in total, shared fairly over the streams and the
    /// retries. `block` (default: the group's `block`) waits for new entries
    /// when none are ready (`Duration::ZERO` does not wait).
    ///
    /// After a start, this consumer's own unfinished work comes first, one
    /// message per call: a message that may have crashed the consumer is
    /// handed out alone, so a crash loop is pinned on its culprit (see
    /// `docs/architecture.md`, "Poison messages").
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`] for an unknown group, connection errors.
    async fn read_messages(
        &self,
        group_name: &str,
        count: Option<usize>,
        block: Option<Duration>,
    ) -> Result<Vec<StreamMessage>>;

    /// Sends `data` (a JSON object) to `stream`; returns the new entry id.
    /// `max_len` trims the stream approximately; `None` uses
    /// [`ManagerConfig::default_max_len`](crate::ManagerConfig::default_max_len).
    /// The send is never retried on its own: after a connection error it may or
    /// may not have happened. With
    /// [`ManagerConfig::durability`](crate::ManagerConfig::durability) set,
    /// it returns once that is confirmed.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`] (also for the reserved names of the
    /// registry and the dead-letter queue),
    /// [`StreamError::PayloadNotObject`], [`StreamError::PayloadTooLarge`],
    /// [`StreamError::PayloadTooDeep`],
    /// [`StreamError::DurabilityNotConfirmed`] (written, with its id, but
    /// not confirmed in time), [`StreamError::Unsupported`] (durability the
    /// backend cannot give; nothing written), connection errors.
    async fn send_message(&self, stream: &str, data: Value, max_len: Option<u64>)
    -> Result<String>;

    /// Sends several messages to one stream in one round trip; returns their
    /// ids in order. Every payload is checked before anything is sent.
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message); on a connection error some of
    /// the messages may have been sent.
    async fn send_batch(
        &self,
        stream: &str,
        items: Vec<Value>,
        max_len: Option<u64>,
    ) -> Result<Vec<String>>;

    /// Sends to the partition of `key` of a partitioned stream; returns the
    /// entry id. The same key always goes to the same partition
    /// (`crc32(key) % partitions`), so the messages of one key keep their
    /// order; a stream never partitioned is its own single partition. The
    /// partition count is read from the backend and remembered for
    /// [`ManagerConfig::refresh_interval`](crate::ManagerConfig::refresh_interval).
    /// See [`PartitionedStream`](crate::PartitionedStream) and
    /// `docs/scaling.md`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// use serde_json::json;
    /// use streams_core::{Manager, ManagerConfig, StreamManager};
    /// use streams_memory::MemoryBackend;
    ///
    /// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default())?;
    /// manager.declare_partitions("orders", 4).await?;
    /// let first = manager.send_keyed("orders", "customer-42", json!({"n": 1}), None).await?;
    /// let second = manager.send_keyed("orders", "customer-42", json!({"n": 2}), None).await?;
    /// # let _ = (first, second);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message); [`StreamError::Decode`] for
    /// a partition count another client wrote badly.
    async fn send_keyed(
        &self,
        stream: &str,
        key: &str,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String>;

    /// Sends to the partitions of a partitioned stream in turn (per
    /// manager); returns the entry id. For messages whose order does not
    /// matter.
    ///
    /// # Errors
    /// As [`send_keyed`](Self::send_keyed).
    async fn send_round_robin(
        &self,
        stream: &str,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String>;

    /// Sends `(key, data)` pairs, each to its key's partition: one batch per
    /// partition, keeping the order given within each key; returns the ids
    /// in the order given.
    ///
    /// # Errors
    /// As [`send_batch`](Self::send_batch). The partitions' batches are sent
    /// one after another: when one fails, those before it were sent.
    async fn send_batch_keyed(
        &self,
        stream: &str,
        items: Vec<(String, Value)>,
        max_len: Option<u64>,
    ) -> Result<Vec<String>>;

    /// Gives `stream` `partitions` partitions (partition 0 is the stream
    /// itself, partition `i` the stream `<stream>#<i>`). Every registered
    /// group that reads the stream is created on the new partitions first,
    /// then the count is recorded, so nothing sent to a new partition goes
    /// unread. Running consumers read the new partitions within
    /// [`ManagerConfig::refresh_interval`](crate::ManagerConfig::refresh_interval)
    /// (10 s), and producers route to them as soon. Partitions are only ever added: see
    /// `docs/scaling.md` for what happens to order while the count changes.
    ///
    /// # Errors
    /// [`StreamError::Config`] for fewer partitions than the stream has, or
    /// more than [`MAX_PARTITIONS`](crate::MAX_PARTITIONS);
    /// [`StreamError::InvalidName`]; backend errors.
    async fn declare_partitions(
        &self,
        stream: &str,
        partitions: u32,
    ) -> Result<crate::PartitionedStream>;

    /// The stream as partitioned: its declared partition count, or one
    /// partition when it was never partitioned.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Decode`], backend errors.
    async fn partitioned_stream(&self, stream: &str) -> Result<crate::PartitionedStream>;

    /// Every stream declared with partitions, sorted by name.
    ///
    /// # Errors
    /// [`StreamError::Decode`], backend errors.
    async fn partitioned_streams(&self) -> Result<Vec<crate::PartitionedStream>>;

    /// Acknowledges a message in `group_name`; returns whether it was pending.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::WrongGroup`] for a
    /// message another group delivered, connection errors.
    async fn acknowledge(&self, message: &StreamMessage, group_name: &str) -> Result<bool>;

    /// Acknowledges many messages, one round trip per stream; returns how
    /// many were pending.
    ///
    /// # Errors
    /// As [`acknowledge`](Self::acknowledge).
    async fn acknowledge_many(&self, messages: &[StreamMessage], group_name: &str) -> Result<u64>;

    /// Writes the message to the dead-letter queue with its provenance and
    /// `reason`; returns the dead-letter entry id. With a group, the original
    /// is acknowledged in the same atomic step, and only if it is still pending
    /// for this consumer.
    ///
    /// # Errors
    /// [`StreamError::DlqDisabled`],
    /// [`StreamError::NotOwner`] when the entry was acknowledged or claimed
    /// by another consumer meanwhile, [`StreamError::WrongGroup`] for a
    /// message another group delivered, [`StreamError::GroupNotFound`].
    async fn send_to_dlq(
        &self,
        message: &StreamMessage,
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<String>;

    /// Schedules a retry of a failed message after exponential backoff and
    /// acknowledges the original, atomically. The retry reaches only the group
    /// the message was read through. Returns `false`, leaving the message
    /// pending, when its `retry_count` has reached the retry limit.
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`] for a message not read through a group,
    /// [`StreamError::NotOwner`] when it is no longer pending for this
    /// consumer, [`StreamError::Decode`] for a malformed entry (dead-letter
    /// it instead: the DLQ keeps its raw fields).
    async fn retry_message(&self, message: &StreamMessage) -> Result<bool>;

    /// [`retry_message`](Self::retry_message), recording `error` as the
    /// message's last error in the retry copy.
    ///
    /// # Errors
    /// As [`retry_message`](Self::retry_message).
    async fn retry_with_error(&self, message: &StreamMessage, error: &str) -> Result<bool>;

    /// [`retry_message`](Self::retry_message) with options: the error to
    /// record, and a delay of the caller's choosing instead of the backoff
    /// (a rate limit that says when to come back, say). The retry limit
    /// applies all the same.
    ///
    /// # Errors
    /// As [`retry_message`](Self::retry_message).
    async fn retry_with(&self, message: &StreamMessage, options: RetryOptions) -> Result<bool>;

    /// [`retry_message`](Self::retry_message) for each message, in one
    /// round trip where the backend can: the outcome of each, in order
    /// (`Ok(false)` past the retry limit, an error for one refused). One
    /// refused does not stop the others. The default retries them one
    /// after another.
    ///
    /// # Errors
    /// Connection errors that leave every outcome unknown (some retries
    /// may have been scheduled), [`StreamError::Closed`],
    /// [`StreamError::Unsupported`].
    async fn retry_many(&self, messages: &[StreamMessage]) -> Result<Vec<Result<bool>>> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.push(self.retry_message(message).await);
        }
        Ok(outcomes)
    }

    /// [`send_to_dlq`](Self::send_to_dlq) for each message, with one
    /// reason, in one round trip where the backend can: the dead-letter
    /// entry id of each, in order, or the error that refused it (one
    /// refused does not stop the others). The default sends them one after
    /// another.
    ///
    /// # Errors
    /// [`StreamError::DlqDisabled`], [`StreamError::GroupNotFound`],
    /// connection errors that leave every outcome unknown (some messages
    /// may have been dead-lettered).
    async fn dead_letter_many(
        &self,
        messages: &[StreamMessage],
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<Vec<Result<String>>> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.push(self.send_to_dlq(message, reason, group_name).await);
        }
        Ok(outcomes)
    }

    /// Claims entries of the group idle for at least `idle` (default: the
    /// group's `claim_idle`), on all its streams, and returns them: every
    /// idle entry that was handed back unhandled, and at most one whose last
    /// delivery ended unsettled (its consumer crashed or stalled holding it:
    /// it may be the cause, so it comes alone, and a crash on it counts
    /// against it only). The other idle entries stay claimable, for the next
    /// call or another consumer: call again until it returns nothing.
    /// Messages that crashed their consumers too often are dead-lettered
    /// instead ("max deliveries exceeded"); entries deleted while pending
    /// are acknowledged and counted.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::Unsupported`] when the
    /// backend redelivers abandoned work by itself, connection errors.
    async fn claim_pending_messages(
        &self,
        group_name: &str,
        idle: Option<Duration>,
    ) -> Result<Vec<StreamMessage>>;

    /// Renews the lease on a message being worked on: resets its idle time so
    /// it is not claimed, without counting a delivery. Returns `false` if it is
    /// no longer pending for this consumer.
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    async fn touch(&self, message: &StreamMessage) -> Result<bool>;

    /// [`touch`](Self::touch) for many messages, one round trip per stream;
    /// returns how many were still pending for their consumer.
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    async fn touch_many(&self, messages: &[StreamMessage]) -> Result<u64>;

    /// Hands messages back unhandled: they stay pending, become claimable
    /// by any consumer at once, and this delivery does not count towards
    /// their poison limit. Returns how many were handed back.
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    async fn release(&self, messages: &[StreamMessage]) -> Result<u64>;

    /// Moves the due retries of a group (or, with `None`, of every group in
    /// the registry) into their ready streams now; returns how many moved.
    /// Reads do this themselves; consumers written in other languages rely
    /// on it (or on the script in `docs/wire-format.md`). A schedule that
    /// cannot be promoted is reported in [`get_stats`](Self::get_stats) and
    /// [`health`](Self::health) and does not stop the others.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    async fn promote_due_retries(&self, group_name: Option<&str>) -> Result<u64>;

    /// Removes the group's consumers that have been idle for at least `idle`
    /// and hold no pending entries (checked atomically, per stream). Never
    /// removes this manager's own consumer.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    async fn prune_consumers(&self, group_name: &str, idle: Duration) -> Result<PruneReport>;

    /// Trims a stream to its newest `max_len` entries, exactly; returns how
    /// many were removed. Entries pending in a group stay pending and are
    /// acknowledged and counted when next met.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Config`] for 0, connection errors.
    async fn trim_stream(&self, stream: &str, max_len: u64) -> Result<u64>;

    /// The oldest `count` entries of the dead-letter queue, decoded, with
    /// their provenance in [`StreamMessage::dead_letter`]. With a per-stream
    /// layout, the dead-letter streams of the streams of every registered group.
    ///
    /// # Errors
    /// Connection errors, [`StreamError::Closed`].
    async fn dead_letters(&self, count: usize) -> Result<Vec<StreamMessage>>;

    /// A page of the dead-letter queue, oldest first, with the entries that
    /// pass the query's filter (origin stream, group, reason text, when
    /// they failed) and a cursor for the next page. Each entry is decoded
    /// with its provenance in [`StreamMessage::dead_letter`]; its `id` is
    /// the dead-letter entry's id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// # let manager = streams_core::Manager::new(streams_memory::MemoryBackend::new(), Default::default())?;
    /// use streams_core::{DlqFilter, DlqQuery, StreamManager};
    ///
    /// let mut query = DlqQuery::new().with_filter(DlqFilter::new().with_reason("timeout"));
    /// loop {
    ///     let page = manager.dlq_list(&query).await?;
    ///     for entry in &page.entries {
    ///         println!("{} {:?}", entry.id, entry.dead_letter);
    ///     }
    ///     let Some(next) = page.next else { break };
    ///     query = query.after(next);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StreamError::Config`] for a limit of 0, [`StreamError::InvalidId`]
    /// for a cursor the backend cannot read, connection errors.
    async fn dlq_list(&self, query: &DlqQuery) -> Result<DlqPage>;

    /// The dead-letter entry `id`, decoded, if there is one. With the
    /// per-stream layout, `stream` names the origin stream whose
    /// dead-letter stream holds it; without, the first dead-letter stream
    /// holding the id.
    ///
    /// # Errors
    /// [`StreamError::InvalidId`], connection errors.
    async fn dlq_show(&self, id: &str, stream: Option<&str>) -> Result<Option<StreamMessage>>;

    /// The dead letters that pass `filter`, counted in total, by reason, by
    /// origin stream and by group.
    ///
    /// # Errors
    /// Connection errors.
    async fn dlq_stats(&self, filter: &DlqFilter) -> Result<DlqStats>;

    /// Replays dead letters, each to the group that dead-lettered it (or the
    /// request's target group, for entries dead-lettered without one): into
    /// that group's ready stream for the origin stream, never onto the
    /// stream itself, so no other group sees it again. The copy keeps its
    /// payload bytes and `mid`, starts a fresh retry budget (`retry_count`
    /// 0), and records `replayed_from` (the dead-letter id) and
    /// `replay_count` (one more than before).
    ///
    /// Each entry is moved in one atomic step that copies it and deletes
    /// the dead letter only if it still exists, so running a replay twice
    /// replays nothing twice. Entries that share a `mid` and a target are
    /// replayed once (the newest); the others, and entries whose message is
    /// still waiting in the ready stream from an earlier replay, are
    /// reported as duplicates and left in the queue. Entries that cannot be
    /// replayed (no group, a group not registered, a group that does not
    /// read the stream, a malformed message) are reported as skipped; the
    /// call goes on. A dry run reports and changes nothing; a rate limit
    /// spaces the moves.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// # let manager = streams_core::Manager::new(streams_memory::MemoryBackend::new(), Default::default())?;
    /// use streams_core::{DlqFilter, DlqReplay, DlqSelection, StreamManager};
    ///
    /// let timeouts = DlqSelection::matching(DlqFilter::new().with_reason("timeout"));
    /// let plan = manager.dlq_replay(&DlqReplay::new(timeouts.clone()).dry_run(true)).await?;
    /// println!("would replay {}", plan.would_replay.len());
    /// let done = manager.dlq_replay(&DlqReplay::new(timeouts).with_rate_limit(100)).await?;
    /// assert_eq!(done.replayed.len(), plan.would_replay.len());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StreamError::Config`] for a rate limit of 0,
    /// [`StreamError::InvalidName`] for a bad target group,
    /// [`StreamError::InvalidId`], connection errors (what was replayed
    /// before stays replayed).
    async fn dlq_replay(&self, request: &DlqReplay) -> Result<ReplayReport>;

    /// Removes dead letters: by id, by filter, or by age
    /// ([`DlqFilter::older_than`](crate::DlqFilter::older_than)); reports
    /// what it removed (or, in a dry run, would remove).
    ///
    /// # Errors
    /// [`StreamError::InvalidId`], connection errors (what was removed
    /// before stays removed).
    async fn dlq_purge(&self, request: &DlqPurge) -> Result<PurgeReport>;

    /// The streams in this manager's namespace (every stream of the server
    /// without one), with their lengths and groups. The keys this library
    /// keeps for itself (retry schedules and ready streams, dead-letter
    /// streams, the registry) are left out.
    ///
    /// # Errors
    /// Connection errors.
    async fn list_streams(&self) -> Result<Vec<StreamInfo>>;

    /// A group's pending entries, over its streams and then its retries,
    /// with the consumer holding each, its idle time and deliveries.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::Config`] for a limit
    /// of 0 or a stream the group does not read, connection errors.
    async fn list_pending(&self, filter: &PendingFilter) -> Result<Vec<PendingInfo>>;

    /// Entries of a stream read without any group: nothing is delivered,
    /// nobody's work is taken. For following a stream (`after` the last id
    /// seen) and looking at its newest entries.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::InvalidId`] for an
    /// `after` the backend cannot read, [`StreamError::Config`] for a count
    /// of 0, connection errors.
    async fn peek_messages(&self, query: &PeekQuery) -> Result<Vec<StreamMessage>>;

    /// What a group has done with entries of one of its streams: new (not
    /// yet delivered), pending (with the consumer holding it), or done.
    /// `ids` are entries of `stream` in the stream's order, as
    /// [`peek_messages`](Self::peek_messages) returns them; one state per id.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::Config`] for a stream
    /// the group does not read, [`StreamError::NoGroup`] when the group is
    /// missing on the stream, [`StreamError::InvalidId`], connection errors.
    async fn group_view(
        &self,
        group_name: &str,
        stream: &str,
        ids: &[String],
    ) -> Result<Vec<EntryState>>;

    /// Counters of this manager plus the dead-letter queue's length. The
    /// counters count what this manager did since it was created, not what
    /// other consumers did ([`health`](Self::health) reads the server's view
    /// of every group). Does not initialize the manager: `initialized` says
    /// whether it is.
    ///
    /// # Errors
    /// Connection errors (while reading the dead-letter length).
    async fn get_stats(&self) -> Result<Stats>;

    /// This manager's counters as they are now, without a round trip:
    /// [`get_stats`](Self::get_stats) without reading the dead-letter
    /// queue, whose `dlq_entries` is the length last read (0 before any).
    /// For code that watches counters move, such as the consume runner,
    /// which reports the entries it found trimmed while pending.
    fn counters(&self) -> Stats;

    /// Whether the backend can take work now, for readiness probes: one
    /// small write of a short-lived key (one round trip, nothing scanned),
    /// so a server that answers but refuses writes (out of memory, a
    /// read-only replica) is not ready. Does not initialize the manager.
    ///
    /// # Errors
    /// [`StreamError::Closed`]; a backend that cannot be reached or
    /// refuses the write gives a report that is not ready, not an error.
    async fn readiness(&self) -> Result<Readiness>;

    /// Everything an operator wants to see, with a verdict: reachability,
    /// write acceptance, latency, and the state of every known group
    /// (lengths, pending entries and the age of the oldest, lag, claimable
    /// entries, consumers, scheduled retries), the dead-letter queue and its
    /// growth, problems found, and a [`HealthStatus`](crate::HealthStatus)
    /// judged by the manager's
    /// [`HealthThresholds`](crate::HealthThresholds). Costs several round
    /// trips per group and stream; probes want [`readiness`](Self::readiness).
    /// A backend that cannot be reached gives an unhealthy report, not an
    /// error.
    ///
    /// # Errors
    /// [`StreamError::Closed`].
    async fn health(&self) -> Result<HealthReport>;

    /// One group's part of [`health`](Self::health): its state on each of
    /// its streams. What a runner's metrics ticker reads
    /// ([`observe::record_group_gauges`](crate::observe::record_group_gauges)).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    async fn group_health(&self, group_name: &str) -> Result<GroupHealth>;

    /// The messages of a group as an endless stream (the spec's
    /// `async for message in read_messages(...)`). Each item must still be
    /// acknowledged. Temporary errors are yielded and reading goes on after a
    /// pause; other errors end the stream after being yielded. It ends when the
    /// manager is closed. Dropping it hands back fetched, unyielded messages.
    fn subscribe(&self, group_name: &str) -> BoxStream<'static, Result<StreamMessage>>;

    /// Closes the manager. Idempotent; later calls fail with
    /// [`StreamError::Closed`].
    ///
    /// # Errors
    /// Errors from the backend while releasing connections.
    async fn close(&self) -> Result<()>;
}

/// Conveniences for every [`StreamManager`], `dyn` ones included.
#[async_trait]
pub trait StreamManagerExt: StreamManager {
    /// Sends any serializable value that serializes to a JSON object.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// # let manager = streams_core::Manager::new(streams_memory::MemoryBackend::new(), Default::default())?;
    /// use streams_core::StreamManagerExt;
    ///
    /// #[derive(serde::Serialize)]
    /// struct TaskUpdate<'a> { agent_id: &'a str, progress: u8 }
    ///
    /// manager.send("xnai:task_updates", &TaskUpdate { agent_id: "cline-1", progress: 50 }, None).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`StreamManager::send_message`], and [`StreamError::Encode`] if the
    /// value cannot be serialized.
    async fn send<T: Serialize + Sync + ?Sized>(
        &self,
        stream: &str,
        data: &T,
        max_len: Option<u64>,
    ) -> Result<String> {
        let value = serde_json::to_value(data).map_err(|e| StreamError::Encode {
            what: "payload".to_owned(),
            message: e.to_string(),
        })?;
        self.send_message(stream, value, max_len).await
    }

    /// Initializes, runs `f` with a clone of this manager, then closes it,
    /// whether `f` succeeded or not: the Rust form of the spec's
    /// `async with RedisStreamManager(...) as manager:`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// use std::sync::Arc;
    /// use streams_core::{Manager, ManagerConfig, StreamManager, StreamManagerExt};
    /// use streams_memory::MemoryBackend;
    ///
    /// let manager: Arc<dyn StreamManager> = Arc::new(Manager::new(MemoryBackend::new(), ManagerConfig::default())?);
    /// let sent = manager
    ///     .scoped(|m| async move { m.send_message("jobs", serde_json::json!({"n": 1}), None).await })
    ///     .await?;
    /// assert!(!sent.is_empty());
    /// assert!(!manager.get_stats().await?.initialized); // closed
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The error of `f`, else that of initializing or closing.
    async fn scoped<T, F, Fut>(&self, f: F) -> Result<T>
    where
        Self: Clone + Sized,
        T: Send,
        F: FnOnce(Self) -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        if let Err(e) = self.initialize().await {
            let _ = self.close().await;
            return Err(e);
        }
        let result = f(self.clone()).await;
        let closed = self.close().await;
        let value = result?;
        closed.map(|()| value)
    }

    /// Runs `handler` over the group's messages until shutdown: the spec's
    /// processing loop as one call. Configure the returned
    /// [`Consume`](crate::runner::Consume), then `.await` it; it returns a
    /// [`ConsumeSummary`](crate::runner::ConsumeSummary). See
    /// [`runner`](crate::runner) for what the runner does.
    ///
    /// The handler takes a [`Job<T>`](crate::runner::Job) (the payload
    /// decoded as `T`, and the message) and returns `Ok(outcome)` (`Ok(())`
    /// acks) or an error, which retries with backoff and dead-letters past
    /// the limit.
    fn consume<T, H>(&self, group: &str, handler: H) -> crate::runner::Consume<Self, T, H>
    where
        Self: Clone + Sized + 'static,
        T: serde::de::DeserializeOwned + Send + 'static,
        H: crate::runner::Handler<T>,
    {
        crate::runner::Consume::new(self.clone(), group, handler)
    }
}

impl<M: StreamManager + ?Sized> StreamManagerExt for M {}

/// Implements [`StreamManager`] for a type by calling the methods of the
/// same names on `$target` (with `$this` bound to `self`): the forwarding
/// impls below, and [`Manager`](crate::Manager)'s own, whose inherent methods
/// take precedence over the trait's.
macro_rules! delegate_manager {
    (impl [$($generics:tt)*] for $ty:ty, |$this:ident| $target:expr) => {
        #[async_trait::async_trait]
        impl<$($generics)*> $crate::api::StreamManager for $ty {
            fn consumer_id(&self) -> &str {
                let $this = self;
                $target.consumer_id()
            }
            async fn initialize(&self) -> $crate::Result<()> {
                let $this = self;
                $target.initialize().await
            }
            async fn create_consumer_group(
                &self,
                config: &$crate::ConsumerGroupConfig,
            ) -> $crate::Result<()> {
                let $this = self;
                $target.create_consumer_group(config).await
            }
            async fn delete_consumer_group(&self, group_name: &str) -> $crate::Result<bool> {
                let $this = self;
                $target.delete_consumer_group(group_name).await
            }
            async fn group_config(
                &self,
                group_name: &str,
            ) -> $crate::Result<$crate::ConsumerGroupConfig> {
                let $this = self;
                $target.group_config(group_name).await
            }
            async fn registered_groups(&self) -> $crate::Result<Vec<$crate::ConsumerGroupConfig>> {
                let $this = self;
                $target.registered_groups().await
            }
            async fn read_messages(
                &self,
                group_name: &str,
                count: Option<usize>,
                block: Option<std::time::Duration>,
            ) -> $crate::Result<Vec<$crate::StreamMessage>> {
                let $this = self;
                $target.read_messages(group_name, count, block).await
            }
            async fn send_message(
                &self,
                stream: &str,
                data: serde_json::Value,
                max_len: Option<u64>,
            ) -> $crate::Result<String> {
                let $this = self;
                $target.send_message(stream, data, max_len).await
            }
            async fn send_batch(
                &self,
                stream: &str,
                items: Vec<serde_json::Value>,
                max_len: Option<u64>,
            ) -> $crate::Result<Vec<String>> {
                let $this = self;
                $target.send_batch(stream, items, max_len).await
            }
            async fn send_keyed(
                &self,
                stream: &str,
                key: &str,
                data: serde_json::Value,
                max_len: Option<u64>,
            ) -> $crate::Result<String> {
                let $this = self;
                $target.send_keyed(stream, key, data, max_len).await
            }
            async fn send_round_robin(
                &self,
                stream: &str,
                data: serde_json::Value,
                max_len: Option<u64>,
            ) -> $crate::Result<String> {
                let $this = self;
                $target.send_round_robin(stream, data, max_len).await
            }
            async fn send_batch_keyed(
                &self,
                stream: &str,
                items: Vec<(String, serde_json::Value)>,
                max_len: Option<u64>,
            ) -> $crate::Result<Vec<String>> {
                let $this = self;
                $target.send_batch_keyed(stream, items, max_len).await
            }
            async fn declare_partitions(
                &self,
                stream: &str,
                partitions: u32,
            ) -> $crate::Result<$crate::PartitionedStream> {
                let $this = self;
                $target.declare_partitions(stream, partitions).await
            }
            async fn partitioned_stream(
                &self,
                stream: &str,
            ) -> $crate::Result<$crate::PartitionedStream> {
                let $this = self;
                $target.partitioned_stream(stream).await
            }
            async fn partitioned_streams(
                &self,
            ) -> $crate::Result<Vec<$crate::PartitionedStream>> {
                let $this = self;
                $target.partitioned_streams().await
            }
            async fn acknowledge(
                &self,
                message: &$crate::StreamMessage,
                group_name: &str,
            ) -> $crate::Result<bool> {
                let $this = self;
                $target.acknowledge(message, group_name).await
            }
            async fn acknowledge_many(
                &self,
                messages: &[$crate::StreamMessage],
                group_name: &str,
            ) -> $crate::Result<u64> {
                let $this = self;
                $target.acknowledge_many(messages, group_name).await
            }
            async fn send_to_dlq(
                &self,
                message: &$crate::StreamMessage,
                reason: &str,
                group_name: Option<&str>,
            ) -> $crate::Result<String> {
                let $this = self;
                $target.send_to_dlq(message, reason, group_name).await
            }
            async fn retry_message(&self, message: &$crate::StreamMessage) -> $crate::Result<bool> {
                let $this = self;
                $target.retry_message(message).await
            }
            async fn retry_with_error(
                &self,
                message: &$crate::StreamMessage,
                error: &str,
            ) -> $crate::Result<bool> {
                let $this = self;
                $target.retry_with_error(message, error).await
            }
            async fn retry_with(
                &self,
                message: &$crate::StreamMessage,
                options: $crate::RetryOptions,
            ) -> $crate::Result<bool> {
                let $this = self;
                $target.retry_with(message, options).await
            }
            async fn retry_many(
                &self,
                messages: &[$crate::StreamMessage],
            ) -> $crate::Result<Vec<$crate::Result<bool>>> {
                let $this = self;
                $target.retry_many(messages).await
            }
            async fn dead_letter_many(
                &self,
                messages: &[$crate::StreamMessage],
                reason: &str,
                group_name: Option<&str>,
            ) -> $crate::Result<Vec<$crate::Result<String>>> {
                let $this = self;
                $target.dead_letter_many(messages, reason, group_name).await
            }
            async fn claim_pending_messages(
                &self,
                group_name: &str,
                idle: Option<std::time::Duration>,
            ) -> $crate::Result<Vec<$crate::StreamMessage>> {
                let $this = self;
                $target.claim_pending_messages(group_name, idle).await
            }
            async fn touch(&self, message: &$crate::StreamMessage) -> $crate::Result<bool> {
                let $this = self;
                $target.touch(message).await
            }
            async fn touch_many(&self, messages: &[$crate::StreamMessage]) -> $crate::Result<u64> {
                let $this = self;
                $target.touch_many(messages).await
            }
            async fn release(&self, messages: &[$crate::StreamMessage]) -> $crate::Result<u64> {
                let $this = self;
                $target.release(messages).await
            }
            async fn promote_due_retries(&self, group_name: Option<&str>) -> $crate::Result<u64> {
                let $this = self;
                $target.promote_due_retries(group_name).await
            }
            async fn prune_consumers(
                &self,
                group_name: &str,
                idle: std::time::Duration,
            ) -> $crate::Result<$crate::PruneReport> {
                let $this = self;
                $target.prune_consumers(group_name, idle).await
            }
            async fn trim_stream(&self, stream: &str, max_len: u64) -> $crate::Result<u64> {
                let $this = self;
                $target.trim_stream(stream, max_len).await
            }
            async fn dead_letters(&self, count: usize) -> $crate::Result<Vec<$crate::StreamMessage>> {
                let $this = self;
                $target.dead_letters(count).await
            }
            async fn dlq_list(&self, query: &$crate::DlqQuery) -> $crate::Result<$crate::DlqPage> {
                let $this = self;
                $target.dlq_list(query).await
            }
            async fn dlq_show(
                &self,
                id: &str,
                stream: Option<&str>,
            ) -> $crate::Result<Option<$crate::StreamMessage>> {
                let $this = self;
                $target.dlq_show(id, stream).await
            }
            async fn dlq_stats(&self, filter: &$crate::DlqFilter) -> $crate::Result<$crate::DlqStats> {
                let $this = self;
                $target.dlq_stats(filter).await
            }
            async fn dlq_replay(
                &self,
                request: &$crate::DlqReplay,
            ) -> $crate::Result<$crate::ReplayReport> {
                let $this = self;
                $target.dlq_replay(request).await
            }
            async fn dlq_purge(&self, request: &$crate::DlqPurge) -> $crate::Result<$crate::PurgeReport> {
                let $this = self;
                $target.dlq_purge(request).await
            }
            async fn list_streams(&self) -> $crate::Result<Vec<$crate::StreamInfo>> {
                let $this = self;
                $target.list_streams().await
            }
            async fn list_pending(
                &self,
                filter: &$crate::PendingFilter,
            ) -> $crate::Result<Vec<$crate::PendingInfo>> {
                let $this = self;
                $target.list_pending(filter).await
            }
            async fn peek_messages(
                &self,
                query: &$crate::PeekQuery,
            ) -> $crate::Result<Vec<$crate::StreamMessage>> {
                let $this = self;
                $target.peek_messages(query).await
            }
            async fn group_view(
                &self,
                group_name: &str,
                stream: &str,
                ids: &[String],
            ) -> $crate::Result<Vec<$crate::EntryState>> {
                let $this = self;
                $target.group_view(group_name, stream, ids).await
            }
            async fn get_stats(&self) -> $crate::Result<$crate::Stats> {
                let $this = self;
                $target.get_stats().await
            }
            fn counters(&self) -> $crate::Stats {
                let $this = self;
                $target.counters()
            }
            async fn readiness(&self) -> $crate::Result<$crate::Readiness> {
                let $this = self;
                $target.readiness().await
            }
            async fn health(&self) -> $crate::Result<$crate::HealthReport> {
                let $this = self;
                $target.health().await
            }
            async fn group_health(&self, group_name: &str) -> $crate::Result<$crate::GroupHealth> {
                let $this = self;
                $target.group_health(group_name).await
            }
            fn subscribe(
                &self,
                group_name: &str,
            ) -> futures::stream::BoxStream<'static, $crate::Result<$crate::StreamMessage>> {
                let $this = self;
                $target.subscribe(group_name)
            }
            async fn close(&self) -> $crate::Result<()> {
                let $this = self;
                $target.close().await
            }
        }
    };
}

pub(crate) use delegate_manager;

delegate_manager!(impl [T: StreamManager + ?Sized] for Arc<T>, |this| (**this));
delegate_manager!(impl [T: StreamManager + ?Sized] for Box<T>, |this| (**this));

#[cfg(test)]
mod tests {
    use super::*;

    // Compile-time check: the trait stays object safe.
    #[allow(dead_code)]
    fn object_safe(_: &dyn StreamManager, _: Arc<dyn StreamManager>, _: Box<dyn StreamManager>) {}
}

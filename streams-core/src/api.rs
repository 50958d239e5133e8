//! The spec's API as a trait, so `dyn StreamManager` works.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::config::ConsumerGroupConfig;
use crate::error::Result;
use crate::manager::{HealthReport, Stats};
use crate::message::StreamMessage;

/// The stream manager API (the spec's `RedisStreamManager` methods).
///
/// [`Manager`](crate::Manager) implements it once for every backend; backends
/// never implement it. Method names follow the spec so its readers find them;
/// the spec's keyword defaults become `Option` arguments (`None` takes the
/// group's configured value).
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

    /// Connects, checks the server version, and marks the manager initialized.
    /// Idempotent; other methods call it on first use.
    ///
    /// # Errors
    /// [`StreamError::Unsupported`](crate::StreamError::Unsupported) for a server
    /// too old, connection errors, [`StreamError::Closed`](crate::StreamError::Closed).
    async fn initialize(&self) -> Result<()>;

    /// Creates the group on each of its streams (creating missing streams) and
    /// records its configuration in the group registry, so any manager on the
    /// same backend can read it by name. Idempotent; creating a group again
    /// with another configuration replaces the registered one.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`](crate::StreamError::InvalidName),
    /// [`StreamError::Config`](crate::StreamError::Config), backend errors.
    async fn create_consumer_group(&self, config: &ConsumerGroupConfig) -> Result<()>;

    /// Reads the next messages for this consumer from every stream of the
    /// group, and from the group's due retries. The first read after start
    /// returns this consumer's own pending entries before new ones. `count`
    /// applies per stream (Redis `COUNT`); `block` waits for new entries when
    /// none are ready (`Duration::ZERO` does not wait).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`](crate::StreamError::GroupNotFound) for an
    /// unknown group, connection errors.
    async fn read_messages(
        &self,
        group_name: &str,
        count: Option<usize>,
        block: Option<Duration>,
    ) -> Result<Vec<StreamMessage>>;

    /// Sends `data` (a JSON object) to `stream`; returns the new entry id.
    /// `max_len` trims the stream approximately (`MAXLEN ~`); `None` uses
    /// [`ManagerConfig::default_max_len`](crate::ManagerConfig::default_max_len).
    /// The send is never retried on its own: after a connection error it may or
    /// may not have happened.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`](crate::StreamError::InvalidName),
    /// [`StreamError::PayloadNotObject`](crate::StreamError::PayloadNotObject),
    /// [`StreamError::PayloadTooLarge`](crate::StreamError::PayloadTooLarge),
    /// connection errors.
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

    /// Acknowledges a message in `group_name`; returns whether it was pending.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`](crate::StreamError::GroupNotFound), connection errors.
    async fn acknowledge(&self, message: &StreamMessage, group_name: &str) -> Result<bool>;

    /// Acknowledges many messages with one `XACK` per stream; returns how many
    /// were pending.
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
    /// [`StreamError::DlqDisabled`](crate::StreamError::DlqDisabled),
    /// [`StreamError::NotOwner`](crate::StreamError::NotOwner) when the entry
    /// was acknowledged or claimed by another consumer meanwhile,
    /// [`StreamError::GroupNotFound`](crate::StreamError::GroupNotFound).
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
    /// [`StreamError::NotDelivered`](crate::StreamError::NotDelivered) for a
    /// message not read through a group, [`StreamError::NotOwner`](crate::StreamError::NotOwner)
    /// when it is no longer pending for this consumer,
    /// [`StreamError::Decode`](crate::StreamError::Decode) for a malformed
    /// entry (dead-letter it instead: the DLQ keeps its raw fields).
    async fn retry_message(&self, message: &StreamMessage) -> Result<bool>;

    /// Claims every entry of the group idle for at least `idle` (default: the
    /// group's `claim_idle`), on all its streams, all pages. Entries delivered
    /// more than `retry_limit + 1` times go to the dead-letter queue instead
    /// ("max deliveries exceeded"); entries deleted while pending are
    /// acknowledged and counted.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`](crate::StreamError::GroupNotFound), connection errors.
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
    /// [`StreamError::NotDelivered`](crate::StreamError::NotDelivered), connection errors.
    async fn touch(&self, message: &StreamMessage) -> Result<bool>;

    /// Hands messages back unhandled: they stay pending but become claimable
    /// by any consumer at once. Returns how many were handed back.
    ///
    /// # Errors
    /// Connection errors.
    async fn release(&self, messages: &[StreamMessage]) -> Result<u64>;

    /// Counters of this manager plus the dead-letter queue's length.
    ///
    /// # Errors
    /// Connection errors (while reading the dead-letter length).
    async fn get_stats(&self) -> Result<Stats>;

    /// Reachability, latency, and the state of every known group: lengths,
    /// pending entries, lag, consumers, scheduled retries, and problems found.
    /// A backend that cannot be reached gives an unhealthy report, not an error.
    ///
    /// # Errors
    /// [`StreamError::Closed`](crate::StreamError::Closed).
    async fn health(&self) -> Result<HealthReport>;

    /// The messages of a group as an endless stream (the spec's
    /// `async for message in read_messages(...)`). Each item must still be
    /// acknowledged. Temporary errors are yielded and reading goes on after a
    /// pause; other errors end the stream after being yielded. It ends when the
    /// manager is closed. Dropping it hands back fetched, unyielded messages.
    fn subscribe(&self, group_name: &str) -> BoxStream<'static, Result<StreamMessage>>;

    /// Closes the manager. Idempotent; later calls fail with
    /// [`StreamError::Closed`](crate::StreamError::Closed).
    ///
    /// # Errors
    /// Errors from the backend while releasing connections.
    async fn close(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    // Compile-time check: the trait stays object safe.
    #[allow(dead_code)]
    fn object_safe(_: &dyn StreamManager, _: Arc<dyn StreamManager>, _: Box<dyn StreamManager>) {}
}

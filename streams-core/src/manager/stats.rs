//! Statistics (the spec's `get_stats`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::Manager;
use crate::backend::StreamBackend;
use crate::error::Result;
use crate::observe::{self, Count, Labels};

/// What a manager has done, plus the dead-letter queue's length.
///
/// Serializes to the spec's keys first (`messages_read`,
/// `messages_acknowledged`, `messages_failed`, `dlq_entries`, `consumer_id`,
/// `consumer_groups`, `initialized`), then the extra counters.
///
/// ```
/// let stats = streams_core::Stats::default();
/// let json = serde_json::to_value(&stats).unwrap();
/// assert_eq!(json["messages_read"], 0);
/// assert_eq!(json["initialized"], false);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Messages returned by reads and claims.
    pub messages_read: u64,
    /// Messages acknowledged (that were pending).
    pub messages_acknowledged: u64,
    /// Messages given up on: retried or dead-lettered.
    pub messages_failed: u64,
    /// Entries now in the dead-letter stream(s): the shared one, or with a
    /// per-stream layout, those of the streams of the registered groups.
    /// Once the manager is closed, the last length read.
    pub dlq_entries: u64,
    /// This manager's consumer id.
    pub consumer_id: String,
    /// Groups this manager knows, sorted.
    pub consumer_groups: Vec<String>,
    /// Whether the manager is initialized and not closed (`get_stats` does
    /// not initialize it).
    pub initialized: bool,
    /// Messages sent.
    pub messages_sent: u64,
    /// Retries scheduled.
    pub messages_retried: u64,
    /// Messages taken over from other consumers by claims.
    pub messages_claimed: u64,
    /// Messages this manager wrote to the dead-letter queue.
    pub messages_dead_lettered: u64,
    /// Poison messages (crashed their consumers too often) dead-lettered by
    /// reads and claims; included in `messages_dead_lettered`.
    pub poison_messages: u64,
    /// Messages handed back unhandled (`release`, a dropped subscription).
    pub messages_handed_back: u64,
    /// Pending entries found deleted (trimmed while pending), acknowledged and
    /// counted here.
    pub pending_deleted: u64,
    /// Due retries moved into ready streams by this manager.
    pub retries_promoted: u64,
    /// Times a missing group was recreated (`NOGROUP`).
    pub groups_recreated: u64,
    /// Entries that could not be decoded, delivered as failed messages.
    pub malformed_messages: u64,
    /// Promotions of due retries that failed (a foreign value at a schedule
    /// key, say); live messages are delivered regardless.
    pub promote_failures: u64,
    /// Stale consumers removed by `prune_consumers`.
    pub consumers_pruned: u64,
    /// Poison messages that could not be written to the dead-letter queue
    /// (a full or read-only server, say). They stay pending, are not handed
    /// to a handler, and are tried again when next claimed.
    pub poison_dlq_failures: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) read: AtomicU64,
    pub(crate) acknowledged: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) claimed: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) poison: AtomicU64,
    pub(crate) pending_deleted: AtomicU64,
    pub(crate) promoted: AtomicU64,
    pub(crate) groups_recreated: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) handed_back: AtomicU64,
    pub(crate) promote_failures: AtomicU64,
    pub(crate) consumers_pruned: AtomicU64,
    pub(crate) poison_dlq_failures: AtomicU64,
}

impl Counters {
    /// The counter of `count`.
    fn of(&self, count: Count) -> &AtomicU64 {
        match count {
            Count::Sent => &self.sent,
            Count::Read => &self.read,
            Count::Acked => &self.acknowledged,
            Count::Retried => &self.retried,
            Count::DeadLettered => &self.dead_lettered,
            Count::Claimed => &self.claimed,
            Count::HandedBack => &self.handed_back,
            Count::Poison => &self.poison,
            Count::PoisonDlqFailed => &self.poison_dlq_failures,
            Count::Malformed => &self.malformed,
            Count::PendingDeleted => &self.pending_deleted,
            Count::GroupRecreated => &self.groups_recreated,
            Count::Promoted => &self.promoted,
            Count::PromoteFailed => &self.promote_failures,
            Count::ConsumersPruned => &self.consumers_pruned,
        }
    }
}

impl<B: StreamBackend> Manager<B> {
    /// Counts `n` events of kind `count`: in this manager's [`Stats`], and
    /// as a metric with `labels` (see [`observe`](crate::observe)).
    pub(crate) fn count(&self, count: Count, labels: Labels<'_>, n: u64) {
        if n == 0 {
            return;
        }
        let c = &self.inner.counters;
        c.of(count).fetch_add(n, Ordering::Relaxed);
        if matches!(count, Count::Retried | Count::DeadLettered) {
            c.failed.fetch_add(n, Ordering::Relaxed);
        }
        observe::emit(count, labels, n);
    }
}

impl<B: StreamBackend> Manager<B> {
    /// This manager's counters and the dead-letter queue's length.
    /// See [`StreamManager::get_stats`](crate::StreamManager::get_stats).
    ///
    /// # Errors
    /// Connection errors while reading the dead-letter length.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn get_stats(&self) -> Result<Stats> {
        if self.is_closed() {
            return Ok(self.counters());
        }
        let mut dlq_entries = 0;
        for key in self.dlq_keys().await? {
            dlq_entries += self.backend().len(&key).await?;
        }
        self.inner
            .last_dlq_len
            .store(dlq_entries, Ordering::Relaxed);
        Ok(self.snapshot(dlq_entries))
    }

    /// The counters now, without a backend call; `dlq_entries` is the
    /// length last read.
    /// See [`StreamManager::counters`](crate::StreamManager::counters).
    pub fn counters(&self) -> Stats {
        self.snapshot(self.inner.last_dlq_len.load(Ordering::Relaxed))
    }

    /// The counters without any backend call; `dlq_entries` is given.
    pub(crate) fn snapshot(&self, dlq_entries: u64) -> Stats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            messages_read: get(&c.read),
            messages_acknowledged: get(&c.acknowledged),
            messages_failed: get(&c.failed),
            dlq_entries,
            consumer_id: self.consumer_id().to_owned(),
            consumer_groups: self.consumer_groups(),
            initialized: self.is_initialized() && !self.is_closed(),
            messages_sent: get(&c.sent),
            messages_retried: get(&c.retried),
            messages_claimed: get(&c.claimed),
            messages_dead_lettered: get(&c.dead_lettered),
            poison_messages: get(&c.poison),
            pending_deleted: get(&c.pending_deleted),
            retries_promoted: get(&c.promoted),
            groups_recreated: get(&c.groups_recreated),
            malformed_messages: get(&c.malformed),
            messages_handed_back: get(&c.handed_back),
            promote_failures: get(&c.promote_failures),
            consumers_pruned: get(&c.consumers_pruned),
            poison_dlq_failures: get(&c.poison_dlq_failures),
        }
    }
}

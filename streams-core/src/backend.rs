//! The primitives a transport provides. No policy lives here: retry limits,
//! backoff, dead-letter provenance, statistics and error mapping are written
//! once in [`Manager`](crate::Manager).
//!
//! Backends deal in keys (already namespaced) and raw entries. Every method
//! names, under `# Contract`, the conformance cases that check it
//! (`streams-conformance`).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// The fields of one entry, in order, binary-safe.
pub type Fields = Vec<(Bytes, Bytes)>;

/// One stream entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry id, `<ms>-<seq>`.
    pub id: String,
    /// Its fields.
    pub fields: Fields,
}

/// Which entries a group read asks for on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadCursor {
    /// Entries never delivered to the group (Redis `>`).
    New,
    /// This consumer's own pending entries with ids greater than the given one
    /// (Redis history read; `"0"` starts at the beginning).
    Pending(String),
}

/// A group read over several keys (Redis `XREADGROUP`).
#[derive(Debug, Clone)]
pub struct ReadGroup<'a> {
    /// The group.
    pub group: &'a str,
    /// The reading consumer (created when it is first served an entry, as in
    /// Redis 7.0: an empty `>` read creates no consumer).
    pub consumer: &'a str,
    /// The keys and what to read from each.
    pub keys: &'a [(String, ReadCursor)],
    /// Most entries per key; at least 1 (the manager never asks for 0).
    pub count: usize,
    /// How long to wait when no key has [`ReadCursor::New`] entries ready.
    /// `None` returns at once; the manager never passes `Some(Duration::ZERO)`
    /// (Redis `BLOCK 0` would wait forever). Ignored when any key reads
    /// pending entries.
    pub block: Option<Duration>,
}

/// The entries one key yielded in a group read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEntries {
    /// The key.
    pub key: String,
    /// The entries, in id order.
    pub entries: Vec<Entry>,
    /// Pending ids whose entries no longer exist (trimmed or deleted while
    /// pending). Only history reads report them; they stay pending until acked.
    pub deleted: Vec<String>,
}

/// How to trim a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// Keep the newest `len` entries (`MAXLEN`). With `approx`, the backend may
    /// keep more (Redis `~` removes whole nodes only), never fewer.
    MaxLen {
        /// Entries to keep.
        len: u64,
        /// Allow keeping more than `len`.
        approx: bool,
    },
    /// Drop entries older than `age` by the backend's clock (`MINID` of
    /// now − age). With `approx`, the backend may keep some older ones.
    MaxAge {
        /// Oldest age kept.
        age: Duration,
        /// Allow keeping older entries.
        approx: bool,
    },
}

/// One entry to add.
#[derive(Debug, Clone)]
pub struct Add {
    /// The stream key (created if missing).
    pub key: String,
    /// The fields.
    pub fields: Fields,
    /// Trims applied after adding, in order.
    pub trim: Vec<Trim>,
}

/// An entry taken over by `auto_claim`, with its delivery count after the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEntry {
    /// The entry.
    pub entry: Entry,
    /// Times delivered, including this claim.
    pub deliveries: u64,
}

/// One page of `auto_claim`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoClaimPage {
    /// Where the next page starts; `"0-0"` when the scan is complete.
    pub next: String,
    /// The claimed entries.
    pub entries: Vec<ClaimedEntry>,
    /// Pending ids whose entries no longer exist; they were removed from the
    /// pending list by the claim (Redis 7 semantics).
    pub deleted: Vec<String>,
}

/// One pending entry of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry id.
    pub id: String,
    /// The consumer that holds it.
    pub consumer: String,
    /// Time since it was last delivered.
    pub idle: Duration,
    /// Times delivered.
    pub deliveries: u64,
}

/// A range query over a group's pending entries (extended `XPENDING`).
#[derive(Debug, Clone)]
pub struct PendingQuery<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// Smallest id, inclusive (`"-"` for the first).
    pub start: &'a str,
    /// Largest id, inclusive (`"+"` for the last).
    pub end: &'a str,
    /// Most entries returned.
    pub count: usize,
    /// Only this consumer's entries.
    pub consumer: Option<&'a str>,
    /// Only entries idle at least this long.
    pub min_idle: Option<Duration>,
}

/// Where an atomic move puts the new copy.
#[derive(Debug, Clone)]
pub enum MoveTarget {
    /// Add to a stream (a dead-letter stream, a group's retry stream), then trim it.
    Stream {
        /// The target stream key.
        key: String,
        /// The new entry's fields.
        fields: Fields,
        /// Trims applied to the target after adding.
        trim: Vec<Trim>,
    },
    /// Schedule on a group's retry schedule, due after `delay` by the backend's
    /// clock; [`StreamBackend::promote_due`] later adds it to the ready stream.
    Schedule {
        /// The schedule key (a sorted set in Redis).
        key: String,
        /// The fields of the entry to add when due.
        fields: Fields,
        /// Delay before it is due.
        delay: Duration,
    },
}

/// An atomic "write the new copy, then acknowledge the old one".
#[derive(Debug, Clone)]
pub struct Move {
    /// The stream key the entry was read from.
    pub source: String,
    /// The group it is pending in.
    pub group: String,
    /// The entry id.
    pub id: String,
    /// Fencing: when set, the move happens only if the entry is still pending
    /// for this consumer. When `None`, it happens if the entry is pending at all.
    pub consumer: Option<String>,
    /// Also delete the source entry after acknowledging it (for private retry
    /// streams, whose entries nobody else needs).
    pub delete_source: bool,
    /// The new copy.
    pub target: MoveTarget,
}

/// What an atomic move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    /// Written and acknowledged. `new_id` is the id of the added entry for a
    /// [`MoveTarget::Stream`], `None` for a schedule.
    Moved {
        /// Id of the new entry, if one was added to a stream.
        new_id: Option<String>,
    },
    /// Nothing was written: the entry is not pending in the group (already
    /// acknowledged or moved, or the group does not exist).
    NotPending,
    /// Nothing was written: the entry is pending for another consumer.
    OwnedBy(String),
}

/// What promoting due retries did on one schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Promotion {
    /// Entries moved to the ready stream.
    pub promoted: u64,
    /// Time until the next scheduled entry is due, if any remain.
    pub next_due_in: Option<Duration>,
}

/// What `delete_consumer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRemoval {
    /// The consumer was removed.
    Deleted,
    /// The consumer still holds this many pending entries; it was kept.
    HasPending(u64),
    /// No such consumer (or group, or key).
    Missing,
}

/// A group's state on one stream (`XINFO GROUPS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group name.
    pub name: String,
    /// Number of consumers.
    pub consumers: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// The last id delivered to the group.
    pub last_delivered_id: String,
    /// Entries not yet delivered to the group, when the backend knows.
    pub lag: Option<u64>,
}

/// A consumer's state in a group (`XINFO CONSUMERS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The consumer name.
    pub name: String,
    /// Entries it holds.
    pub pending: u64,
    /// Time since its last attempted interaction.
    pub idle: Duration,
}

/// What the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Backend name, `"redis"` or `"memory"`.
    pub backend: &'static str,
    /// Server version as `(major, minor, patch)`.
    pub version: (u32, u32, u32),
}

impl ServerInfo {
    /// The version as `major.minor.patch`.
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }
}

/// The primitives of a stream transport.
///
/// Implementations must be usable from many tasks at once, must never hold
/// a lock across an `.await`, and report `NOGROUP` conditions as
/// [`StreamError::NoGroup`](crate::StreamError::NoGroup). The trait is object
/// safe: `Arc<dyn StreamBackend>` is a backend too.
#[async_trait]
pub trait StreamBackend: Send + Sync + Debug + 'static {
    /// The backend's name, `"redis"` or `"memory"`, used in errors.
    fn name(&self) -> &'static str;

    /// Server name and version.
    ///
    /// # Contract
    /// `backend_reports_version`.
    async fn server_info(&self) -> Result<ServerInfo>;

    /// A round trip to the server.
    ///
    /// # Contract
    /// `health_reports_groups`.
    async fn ping(&self) -> Result<()>;

    /// Creates `group` on `key` starting after `start` (`"0"` or `"$"`),
    /// creating the stream if it is missing. Returns `false` if the group
    /// already existed (not an error).
    ///
    /// # Contract
    /// `create_group_is_idempotent`.
    async fn create_group(&self, key: &str, group: &str, start: &str) -> Result<bool>;

    /// Adds one entry and applies its trims; returns the new id.
    ///
    /// # Contract
    /// `ids_strictly_increase`, `send_trims_to_max_len`.
    async fn add(&self, add: Add) -> Result<String>;

    /// Adds many entries in one round trip; returns their ids in order. On
    /// error, some of them may have been added.
    ///
    /// # Contract
    /// `send_batch_preserves_order`.
    async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<String>>;

    /// Reads through a group over several keys at once. Keys with nothing to
    /// return are left out of the reply. A blocking read returns as soon as any
    /// key has new entries, or empty after `block`.
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) if a key or the
    /// group on it does not exist (at once, even when blocking).
    ///
    /// # Contract
    /// `blocking_read_wakes_on_send`, `consumers_share_new_messages`,
    /// `restarted_consumer_gets_own_pending_first`, `read_missing_group_is_nogroup`,
    /// `history_read_returns_own_pending`.
    async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>>;

    /// Acknowledges `ids` in `group`; with `delete`, also deletes the entries.
    /// Returns how many were pending. Unknown keys, groups and ids count 0.
    ///
    /// # Contract
    /// `ack_removes_from_pending`, `ack_twice_returns_false`,
    /// `ack_with_delete_removes_entries`.
    async fn ack(&self, key: &str, group: &str, ids: &[String], delete: bool) -> Result<u64>;

    /// One page of claiming: entries pending at least `min_idle`, from `start`,
    /// at most `count` (at least 1; deleted ids count towards it, as in Redis),
    /// become `consumer`'s, and their delivery counts grow by one.
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) for a missing key or group.
    ///
    /// # Contract
    /// `claim_respects_idle_time`, `claim_increments_delivery_count`,
    /// `claim_reports_deleted_entries`, `claim_pages_through_everything`,
    /// `auto_claim_pages_with_cursor`, `read_missing_group_is_nogroup`.
    async fn auto_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: &str,
        count: usize,
    ) -> Result<AutoClaimPage>;

    /// Details of pending entries, in id order.
    ///
    /// # Contract
    /// `pending_details_report_owner_and_count`.
    async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>>;

    /// Sets the idle time of entries that are pending for `consumer`, without
    /// counting a delivery (Redis `XCLAIM ... IDLE ms JUSTID`). Entries pending
    /// for another consumer are left alone. Returns the ids that were updated.
    /// `Duration::ZERO` renews a lease; a large value hands entries back so
    /// they can be claimed at once. As `XCLAIM` does, an owned id whose entry
    /// no longer exists is dropped from the pending list and not returned. A
    /// missing key or group updates nothing.
    ///
    /// # Contract
    /// `touch_keeps_entry_from_claims`, `release_makes_entry_claimable`,
    /// `set_idle_leaves_other_consumers_alone`.
    async fn set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
        idle: Duration,
    ) -> Result<Vec<String>>;

    /// Atomically writes a new copy of an entry and acknowledges the old one,
    /// after checking it is still pending (for the fencing consumer, if given).
    ///
    /// # Contract
    /// `dlq_move_acks_original`, `retry_moves_are_fenced`, `move_of_acked_entry_is_refused`.
    async fn move_entry(&self, mv: Move) -> Result<MoveOutcome>;

    /// Moves due entries of each schedule `(schedule, ready)` into its ready
    /// stream, at most `limit` per schedule, atomically per schedule.
    ///
    /// # Contract
    /// `retry_not_due_before_backoff`, `retry_due_after_backoff`,
    /// `promote_due_moves_only_due_entries`.
    async fn promote_due(&self, pairs: &[(String, String)], limit: usize)
    -> Result<Vec<Promotion>>;

    /// Number of entries scheduled on a schedule key.
    ///
    /// # Contract
    /// `stats_match_operations`.
    async fn schedule_len(&self, key: &str) -> Result<u64>;

    /// Trims a stream; returns how many entries were removed.
    ///
    /// # Contract
    /// `dlq_trims_by_age`, `trim_by_max_len`.
    async fn trim(&self, key: &str, trim: Trim) -> Result<u64>;

    /// Number of entries in a stream (0 if it does not exist).
    ///
    /// # Contract
    /// `stream_len_counts_entries`.
    async fn len(&self, key: &str) -> Result<u64>;

    /// Entries of a stream with ids in `[start, end]` (`"-"`, `"+"` for the
    /// ends), at most `count`, in id order, without any group.
    ///
    /// # Contract
    /// `range_reads_without_group`.
    async fn range(&self, key: &str, start: &str, end: &str, count: usize) -> Result<Vec<Entry>>;

    /// The groups of a stream (empty if it does not exist).
    ///
    /// # Contract
    /// `health_reports_groups`.
    async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>>;

    /// The consumers of a group.
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) for a missing key or group.
    ///
    /// # Contract
    /// `health_reports_groups`, `delete_consumer_keeps_pending_work`.
    async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>>;

    /// Removes a consumer from a group if, checked atomically, it holds no
    /// pending entries.
    ///
    /// # Contract
    /// `delete_consumer_keeps_pending_work`.
    async fn delete_consumer(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
    ) -> Result<ConsumerRemoval>;

    /// Stores `value` under `field` of the hash `key` (the group registry).
    ///
    /// # Contract
    /// `group_found_by_name_from_second_manager`.
    async fn registry_put(&self, key: &str, field: &str, value: &str) -> Result<()>;

    /// Reads `field` of the hash `key`.
    ///
    /// # Contract
    /// `group_found_by_name_from_second_manager`.
    async fn registry_get(&self, key: &str, field: &str) -> Result<Option<String>>;

    /// Every `(field, value)` of the hash `key`.
    ///
    /// # Contract
    /// `registry_lists_groups`.
    async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>>;

    /// Releases connections. Later calls may fail. The default does nothing.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

macro_rules! forward_backend {
    ($ty:ty) => {
        #[async_trait]
        impl<T: StreamBackend + ?Sized> StreamBackend for $ty {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn server_info(&self) -> Result<ServerInfo> {
                (**self).server_info().await
            }
            async fn ping(&self) -> Result<()> {
                (**self).ping().await
            }
            async fn create_group(&self, key: &str, group: &str, start: &str) -> Result<bool> {
                (**self).create_group(key, group, start).await
            }
            async fn add(&self, add: Add) -> Result<String> {
                (**self).add(add).await
            }
            async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<String>> {
                (**self).add_batch(adds).await
            }
            async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
                (**self).read_group(read).await
            }
            async fn ack(
                &self,
                key: &str,
                group: &str,
                ids: &[String],
                delete: bool,
            ) -> Result<u64> {
                (**self).ack(key, group, ids, delete).await
            }
            async fn auto_claim(
                &self,
                key: &str,
                group: &str,
                consumer: &str,
                min_idle: Duration,
                start: &str,
                count: usize,
            ) -> Result<AutoClaimPage> {
                (**self)
                    .auto_claim(key, group, consumer, min_idle, start, count)
                    .await
            }
            async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>> {
                (**self).pending(query).await
            }
            async fn set_idle(
                &self,
                key: &str,
                group: &str,
                consumer: &str,
                ids: &[String],
                idle: Duration,
            ) -> Result<Vec<String>> {
                (**self).set_idle(key, group, consumer, ids, idle).await
            }
            async fn move_entry(&self, mv: Move) -> Result<MoveOutcome> {
                (**self).move_entry(mv).await
            }
            async fn promote_due(
                &self,
                pairs: &[(String, String)],
                limit: usize,
            ) -> Result<Vec<Promotion>> {
                (**self).promote_due(pairs, limit).await
            }
            async fn schedule_len(&self, key: &str) -> Result<u64> {
                (**self).schedule_len(key).await
            }
            async fn trim(&self, key: &str, trim: Trim) -> Result<u64> {
                (**self).trim(key, trim).await
            }
            async fn len(&self, key: &str) -> Result<u64> {
                (**self).len(key).await
            }
            async fn range(
                &self,
                key: &str,
                start: &str,
                end: &str,
                count: usize,
            ) -> Result<Vec<Entry>> {
                (**self).range(key, start, end, count).await
            }
            async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>> {
                (**self).groups(key).await
            }
            async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
                (**self).consumers(key, group).await
            }
            async fn delete_consumer(
                &self,
                key: &str,
                group: &str,
                consumer: &str,
            ) -> Result<ConsumerRemoval> {
                (**self).delete_consumer(key, group, consumer).await
            }
            async fn registry_put(&self, key: &str, field: &str, value: &str) -> Result<()> {
                (**self).registry_put(key, field, value).await
            }
            async fn registry_get(&self, key: &str, field: &str) -> Result<Option<String>> {
                (**self).registry_get(key, field).await
            }
            async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>> {
                (**self).registry_list(key).await
            }
            async fn close(&self) -> Result<()> {
                (**self).close().await
            }
        }
    };
}

forward_backend!(Arc<T>);
forward_backend!(Box<T>);

#[cfg(test)]
mod tests {
    use super::*;

    // Compile-time check: the trait stays object safe.
    #[allow(dead_code)]
    fn object_safe(_: &dyn StreamBackend, _: Arc<dyn StreamBackend>, _: Box<dyn StreamBackend>) {}

    #[test]
    fn version_string() {
        let info = ServerInfo {
            backend: "redis",
            version: (7, 0, 15),
        };
        assert_eq!(info.version_string(), "7.0.15");
    }
}

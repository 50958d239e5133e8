//! The requests and replies of [`StreamBackend`](super::StreamBackend).
//!
//! Requests are built by the manager (and by tests) with `new` and `with_*`;
//! replies are built by backends with `new`. All of them may grow, so they
//! are `#[non_exhaustive]`.

use std::ops::Bound;
use std::time::Duration;

use bytes::Bytes;

use super::ids::{Cursor, EntryId};

/// The fields of one entry, in order, binary-safe.
pub type Fields = Vec<(Bytes, Bytes)>;

/// One stream entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The entry id.
    pub id: EntryId,
    /// Its fields.
    pub fields: Fields,
}

impl Entry {
    /// An entry.
    pub fn new(id: impl Into<EntryId>, fields: Fields) -> Self {
        Self {
            id: id.into(),
            fields,
        }
    }
}

/// An entry handed to a consumer, with the number of times the backend has
/// handed it out (including this time).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveredEntry {
    /// The entry.
    pub entry: Entry,
    /// Times delivered, including this delivery; hand-backs are not counted
    /// (see [`StreamBackend::hand_back`](super::StreamBackend::hand_back)).
    pub deliveries: u64,
}

impl DeliveredEntry {
    /// An entry delivered `deliveries` times.
    pub fn new(entry: Entry, deliveries: u64) -> Self {
        Self { entry, deliveries }
    }
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// Before the first entry: everything in the stream is delivered.
    Beginning,
    /// After the last entry: only entries added later are delivered.
    End,
    /// After this entry, if the stream's history reaches it; from the
    /// beginning if it does not (the stream was deleted and written anew
    /// since), so nothing written after the loss is skipped.
    After(EntryId),
}

/// Creating a consumer group on one stream (created if missing).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreateGroup<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// Where it starts.
    pub start: StartAt,
}

impl<'a> CreateGroup<'a> {
    /// Creates `group` on `key`, starting at `start`.
    pub fn new(key: &'a str, group: &'a str, start: StartAt) -> Self {
        Self { key, group, start }
    }
}

/// How to trim a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trim {
    /// Keep the newest `len` entries. With `approx`, the backend may keep
    /// more (Redis `~` removes whole nodes only), never fewer.
    MaxLen {
        /// Entries to keep.
        len: u64,
        /// Allow keeping more than `len`.
        approx: bool,
    },
    /// Drop entries older than `age` by the backend's clock. With `approx`,
    /// the backend may keep some older ones.
    MaxAge {
        /// Oldest age kept.
        age: Duration,
        /// Allow keeping older entries.
        approx: bool,
    },
}

/// One entry to add.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Add {
    /// The stream key (created if missing).
    pub key: String,
    /// The fields.
    pub fields: Fields,
    /// Trims applied after adding, in order.
    pub trim: Vec<Trim>,
}

impl Add {
    /// Adds `fields` to `key`, without trimming.
    pub fn new(key: impl Into<String>, fields: Fields) -> Self {
        Self {
            key: key.into(),
            fields,
            trim: Vec::new(),
        }
    }

    /// Adds a trim, applied after the entry is added.
    #[must_use]
    pub fn with_trim(mut self, trim: Trim) -> Self {
        self.trim.push(trim);
        self
    }
}

/// Entries added to one stream, each with the same trims.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AddMany<'a> {
    /// The stream key (created if missing).
    pub key: &'a str,
    /// The fields of each entry, in the order they are added.
    pub entries: Vec<Fields>,
    /// Trims applied after each entry is added, in order.
    pub trim: &'a [Trim],
}

impl<'a> AddMany<'a> {
    /// Adds `entries` to `key`, without trimming.
    pub fn new(key: &'a str, entries: Vec<Fields>) -> Self {
        Self {
            key,
            entries,
            trim: &[],
        }
    }

    /// Trims applied after each entry is added.
    #[must_use]
    pub fn with_trim(mut self, trim: &'a [Trim]) -> Self {
        self.trim = trim;
        self
    }
}

/// What a durable add got: the ids of the entries written, and the
/// confirmations the server gave within the timeout
/// ([`StreamBackend::add_durable`](super::StreamBackend::add_durable)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableWrite {
    /// The entries' ids, in order.
    pub ids: Vec<EntryId>,
    /// Replicas that acknowledged them (with fsync asked for: that fsynced
    /// them).
    pub replicas: u32,
    /// Whether the server itself fsynced them (`false` when not asked).
    pub fsynced_locally: bool,
}

impl DurableWrite {
    /// The ids, with `replicas` confirmations and no local fsync.
    pub fn new(ids: Vec<EntryId>, replicas: u32) -> Self {
        Self {
            ids,
            replicas,
            fsynced_locally: false,
        }
    }

    /// Sets [`fsynced_locally`](Self::fsynced_locally).
    #[must_use]
    pub fn with_fsynced_locally(mut self, fsynced: bool) -> Self {
        self.fsynced_locally = fsynced;
        self
    }
}

/// A group read over several keys: entries never delivered to the group.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadGroup<'a> {
    /// The group.
    pub group: &'a str,
    /// The reading consumer.
    pub consumer: &'a str,
    /// The keys, in the order their shares are given out.
    pub keys: &'a [String],
    /// Most entries returned in total, over all keys; at least 1. Shared
    /// fairly: see [`StreamBackend::read_group`](super::StreamBackend::read_group).
    pub count: usize,
    /// How long to wait when no key has entries ready. `None` returns at once.
    pub block: Option<Duration>,
}

impl<'a> ReadGroup<'a> {
    /// A read of at most `count` entries, not blocking.
    pub fn new(group: &'a str, consumer: &'a str, keys: &'a [String], count: usize) -> Self {
        Self {
            group,
            consumer,
            keys,
            count,
            block: None,
        }
    }

    /// Waits up to `block` for new entries (`None` or zero: do not wait).
    #[must_use]
    pub fn with_block(mut self, block: Option<Duration>) -> Self {
        self.block = block.filter(|d| !d.is_zero());
        self
    }
}

/// The entries one key yielded to a group read or a redelivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyEntries {
    /// The key.
    pub key: String,
    /// The entries, with their delivery counts: 1 for new entries, the count
    /// after this delivery for redelivered ones.
    pub entries: Vec<DeliveredEntry>,
    /// Pending ids whose entries no longer exist (trimmed or deleted while
    /// pending). Only redeliveries report them; they stay pending until acked.
    pub deleted: Vec<EntryId>,
}

impl KeyEntries {
    /// The reply of one key.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }
}

/// Acknowledging entries of a group on one key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ack<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// The entries.
    pub ids: &'a [EntryId],
    /// Also delete the entries (private retry streams, whose entries nobody
    /// else needs).
    pub delete: bool,
}

impl<'a> Ack<'a> {
    /// Acknowledges `ids` of `group` on `key`.
    pub fn new(key: &'a str, group: &'a str, ids: &'a [EntryId]) -> Self {
        Self {
            key,
            group,
            ids,
            delete: false,
        }
    }

    /// Also deletes the entries.
    #[must_use]
    pub fn deleting(mut self, delete: bool) -> Self {
        self.delete = delete;
        self
    }
}

/// One page of taking over idle pending entries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AutoClaim<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// The consumer taking the entries.
    pub consumer: &'a str,
    /// Only entries pending at least this long.
    pub min_idle: Duration,
    /// Where the scan goes on (`None`: from the start).
    pub start: Option<Cursor>,
    /// Most entries claimed plus deleted ids reported; at least 1.
    pub count: usize,
    /// End the page right after the first claimed entry that had been
    /// delivered before and not handed back (its delivery count after the
    /// claim is 2 or more): such an entry may have crashed its last
    /// consumer, so it is taken alone.
    pub until_redelivered: bool,
}

impl<'a> AutoClaim<'a> {
    /// The first page of claims of entries idle at least `min_idle`.
    pub fn new(
        key: &'a str,
        group: &'a str,
        consumer: &'a str,
        min_idle: Duration,
        count: usize,
    ) -> Self {
        Self {
            key,
            group,
            consumer,
            min_idle,
            start: None,
            count,
            until_redelivered: false,
        }
    }

    /// Ends the page right after the first redelivered entry claimed.
    #[must_use]
    pub fn until_redelivered(mut self) -> Self {
        self.until_redelivered = true;
        self
    }

    /// Goes on from `cursor`.
    #[must_use]
    pub fn from_cursor(mut self, cursor: Option<Cursor>) -> Self {
        self.start = cursor;
        self
    }
}

/// One page of [`AutoClaim`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AutoClaimPage {
    /// Where the next page starts; `None` when the scan is complete.
    pub next: Option<Cursor>,
    /// The claimed entries with their delivery counts after the claim.
    pub entries: Vec<DeliveredEntry>,
    /// Pending ids whose entries no longer exist; the claim removed them
    /// from the pending list.
    pub deleted: Vec<EntryId>,
}

impl AutoClaimPage {
    /// A page.
    pub fn new(next: Option<Cursor>, entries: Vec<DeliveredEntry>, deleted: Vec<EntryId>) -> Self {
        Self {
            next,
            entries,
            deleted,
        }
    }
}

/// One pending entry of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingEntry {
    /// The entry id.
    pub id: EntryId,
    /// The consumer that holds it.
    pub consumer: String,
    /// Time since it was last delivered (or its lease renewed).
    pub idle: Duration,
    /// Times delivered.
    pub deliveries: u64,
}

impl PendingEntry {
    /// A pending entry.
    pub fn new(
        id: impl Into<EntryId>,
        consumer: impl Into<String>,
        idle: Duration,
        deliveries: u64,
    ) -> Self {
        Self {
            id: id.into(),
            consumer: consumer.into(),
            idle,
            deliveries,
        }
    }
}

/// A query over a group's pending entries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PendingQuery<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// Lower bound of the ids.
    pub start: Bound<EntryId>,
    /// Upper bound of the ids.
    pub end: Bound<EntryId>,
    /// Most entries returned.
    pub count: usize,
    /// Only this consumer's entries.
    pub consumer: Option<&'a str>,
    /// Only entries idle at least this long.
    pub min_idle: Option<Duration>,
}

impl<'a> PendingQuery<'a> {
    /// The first `count` pending entries of `group` on `key`, of any consumer.
    pub fn new(key: &'a str, group: &'a str, count: usize) -> Self {
        Self {
            key,
            group,
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            count,
            consumer: None,
            min_idle: None,
        }
    }

    /// Only ids within the bounds.
    #[must_use]
    pub fn within(mut self, start: Bound<EntryId>, end: Bound<EntryId>) -> Self {
        self.start = start;
        self.end = end;
        self
    }

    /// Only `consumer`'s entries.
    #[must_use]
    pub fn of_consumer(mut self, consumer: &'a str) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// Only entries idle at least `idle`.
    #[must_use]
    pub fn idle_at_least(mut self, idle: Duration) -> Self {
        self.min_idle = Some(idle);
        self
    }
}

/// Entries a consumer holds, for renewing or handing back its lease.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Lease<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// The consumer holding them; entries held by others are left alone.
    pub consumer: &'a str,
    /// The entries.
    pub ids: &'a [EntryId],
    /// The delivery count of each entry as the consumer knows it, one per
    /// id; empty when not known. A hand-back or redelivery leaves an entry
    /// whose count differs alone.
    pub deliveries: &'a [u64],
}

impl<'a> Lease<'a> {
    /// `consumer`'s lease on `ids` of `group` on `key`.
    pub fn new(key: &'a str, group: &'a str, consumer: &'a str, ids: &'a [EntryId]) -> Self {
        Self {
            key,
            group,
            consumer,
            ids,
            deliveries: &[],
        }
    }

    /// The delivery count of each entry as the consumer knows it, one per id
    /// (see [`StreamBackend::hand_back`](super::StreamBackend::hand_back) and
    /// [`StreamBackend::redeliver`](super::StreamBackend::redeliver)).
    #[must_use]
    pub fn with_deliveries(mut self, deliveries: &'a [u64]) -> Self {
        self.deliveries = deliveries;
        self
    }

    /// The delivery count expected for the `i`th id, if known.
    pub fn expected_deliveries(&self, i: usize) -> Option<u64> {
        self.deliveries.get(i).copied()
    }
}

/// A range of a stream, read without any group.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RangeQuery<'a> {
    /// The stream key.
    pub key: &'a str,
    /// Lower bound of the ids.
    pub start: Bound<EntryId>,
    /// Upper bound of the ids.
    pub end: Bound<EntryId>,
    /// Most entries returned.
    pub count: usize,
    /// Newest first: the last `count` entries within the bounds, from the
    /// newest down (Redis `XREVRANGE`). Default: oldest first.
    pub newest_first: bool,
}

impl<'a> RangeQuery<'a> {
    /// The first `count` entries of `key`.
    pub fn new(key: &'a str, count: usize) -> Self {
        Self {
            key,
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            count,
            newest_first: false,
        }
    }

    /// Returns the newest entries within the bounds first.
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// Only ids within the bounds.
    #[must_use]
    pub fn within(mut self, start: Bound<EntryId>, end: Bound<EntryId>) -> Self {
        self.start = start;
        self.end = end;
        self
    }
}

/// Where an atomic move puts the new copy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MoveTarget {
    /// Add to a stream (a dead-letter stream), then trim it.
    Stream {
        /// The target stream key.
        key: String,
        /// The new entry's fields.
        fields: Fields,
        /// Trims applied to the target after adding.
        trim: Vec<Trim>,
    },
    /// Schedule on a group's retry schedule, due after `delay` by the backend's
    /// clock; [`StreamBackend::promote_due`](super::StreamBackend::promote_due)
    /// later adds it to the ready stream. Needs [`Feature::RetrySchedule`](super::Feature::RetrySchedule).
    Schedule {
        /// The schedule key.
        key: String,
        /// The fields of the entry to add when due.
        fields: Fields,
        /// Delay before it is due.
        delay: Duration,
    },
}

/// An atomic "write the new copy, then acknowledge the old one".
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Move {
    /// The stream key the entry was read from.
    pub source: String,
    /// The group it is pending in.
    pub group: String,
    /// The entry id.
    pub id: EntryId,
    /// Fencing: when set, the move happens only if the entry is still pending
    /// for this consumer. When `None`, it happens if the entry is pending at all.
    pub consumer: Option<String>,
    /// Also delete the source entry after acknowledging it.
    pub delete_source: bool,
    /// The new copy.
    pub target: MoveTarget,
}

impl Move {
    /// Moves entry `id` of `group` on `source` to `target`, unfenced and
    /// keeping the source entry.
    pub fn new(
        source: impl Into<String>,
        group: impl Into<String>,
        id: EntryId,
        target: MoveTarget,
    ) -> Self {
        Self {
            source: source.into(),
            group: group.into(),
            id,
            consumer: None,
            delete_source: false,
            target,
        }
    }

    /// Moves only if the entry is pending for `consumer`.
    #[must_use]
    pub fn fenced(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// Also deletes the source entry.
    #[must_use]
    pub fn deleting_source(mut self, delete: bool) -> Self {
        self.delete_source = delete;
        self
    }
}

/// What an atomic move did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveOutcome {
    /// Written and acknowledged. `new_id` is the id of the added entry for a
    /// [`MoveTarget::Stream`], `None` for a schedule.
    Moved {
        /// Id of the new entry, if one was added to a stream.
        new_id: Option<EntryId>,
    },
    /// Nothing was written: the entry is not pending in the group (already
    /// acknowledged or moved, or the group does not exist).
    NotPending,
    /// Nothing was written: the entry is pending for another consumer.
    OwnedBy(String),
}

/// An atomic "add a copy of an entry to another stream, then delete the
/// entry", done only if the entry still exists. Nothing about groups: the
/// source is read as a plain stream (a dead-letter stream, say).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Transfer {
    /// The stream key the entry is taken from.
    pub source: String,
    /// The entry id on `source`.
    pub id: EntryId,
    /// The stream key the copy is added to (created if missing).
    pub target: String,
    /// The copy's fields.
    pub fields: Fields,
}

impl Transfer {
    /// Moves entry `id` of `source` to `target` as a new entry with `fields`.
    pub fn new(
        source: impl Into<String>,
        id: EntryId,
        target: impl Into<String>,
        fields: Fields,
    ) -> Self {
        Self {
            source: source.into(),
            id,
            target: target.into(),
            fields,
        }
    }
}

/// What a [`Transfer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferOutcome {
    /// The copy was added and the source entry deleted, in one step.
    Transferred {
        /// The id of the copy on the target stream.
        new_id: EntryId,
    },
    /// Nothing was written: the source entry does not exist (any more).
    Missing,
}

/// A group's retry schedule and the ready stream its due entries go to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleKeys {
    /// The schedule key.
    pub schedule: String,
    /// The ready stream key.
    pub ready: String,
}

impl ScheduleKeys {
    /// A schedule and its ready stream.
    pub fn new(schedule: impl Into<String>, ready: impl Into<String>) -> Self {
        Self {
            schedule: schedule.into(),
            ready: ready.into(),
        }
    }
}

/// What promoting due retries did on one schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Promotion {
    /// Entries moved to the ready stream.
    pub promoted: u64,
    /// Time until the next scheduled entry is due, if any remain.
    pub next_due_in: Option<Duration>,
    /// Why this schedule could not be promoted (a foreign value at its key,
    /// say); the other schedules of the same call are promoted regardless.
    pub error: Option<String>,
}

impl Promotion {
    /// A successful promotion.
    pub fn new(promoted: u64, next_due_in: Option<Duration>) -> Self {
        Self {
            promoted,
            next_due_in,
            error: None,
        }
    }

    /// A schedule that could not be promoted.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

/// A probe write: a short-lived value that shows the server accepts writes.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Probe<'a> {
    /// The key written (the layout's [`probe`](crate::KeyLayout::probe) key).
    pub key: &'a str,
    /// The value written; readers of the key see who probed.
    pub value: &'a str,
    /// How long the value lives; at least 1 ms is used.
    pub ttl: Duration,
}

impl<'a> Probe<'a> {
    /// Writes `value` at `key` for `ttl`.
    pub fn new(key: &'a str, value: &'a str, ttl: Duration) -> Self {
        Self { key, value, ttl }
    }
}

/// One consumer of a group on one stream.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ConsumerRef<'a> {
    /// The stream key.
    pub key: &'a str,
    /// The group.
    pub group: &'a str,
    /// The consumer.
    pub consumer: &'a str,
}

impl<'a> ConsumerRef<'a> {
    /// `consumer` of `group` on `key`.
    pub fn new(key: &'a str, group: &'a str, consumer: &'a str) -> Self {
        Self {
            key,
            group,
            consumer,
        }
    }
}

/// What `delete_consumer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerRemoval {
    /// The consumer was removed.
    Deleted,
    /// The consumer still holds this many pending entries; it was kept.
    HasPending(u64),
    /// No such consumer (or group, or key).
    Missing,
}

/// A group's state on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group name.
    pub name: String,
    /// Number of consumers.
    pub consumers: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// The last entry delivered to the group, if any.
    pub last_delivered: Option<EntryId>,
    /// Entries not yet delivered to the group, when the backend knows.
    pub lag: Option<u64>,
    /// How many entries of the stream the group has read (first deliveries:
    /// redeliveries and claims do not count), when the backend knows
    /// (Redis 7 reports `entries-read`; the memory backend does not). It
    /// only grows, so the difference between two readings is what the group
    /// was handed in between; with [`lag`](Self::lag), it also tells how many
    /// entries the stream was ever given (`entries_read + lag`).
    pub entries_read: Option<u64>,
}

impl GroupInfo {
    /// A group's state.
    pub fn new(name: impl Into<String>, consumers: u64, pending: u64) -> Self {
        Self {
            name: name.into(),
            consumers,
            pending,
            last_delivered: None,
            lag: None,
            entries_read: None,
        }
    }
}

/// A consumer's state in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The consumer name.
    pub name: String,
    /// Entries it holds.
    pub pending: u64,
    /// Time since its last attempted interaction.
    pub idle: Duration,
}

impl ConsumerInfo {
    /// A consumer's state.
    pub fn new(name: impl Into<String>, pending: u64, idle: Duration) -> Self {
        Self {
            name: name.into(),
            pending,
            idle,
        }
    }
}

/// What the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// Backend name, `"redis"` or `"memory"`.
    pub backend: &'static str,
    /// The server's version, as the server states it.
    pub version: String,
}

impl ServerInfo {
    /// A server of `backend` at `version`.
    pub fn new(backend: &'static str, version: impl Into<String>) -> Self {
        Self {
            backend,
            version: version.into(),
        }
    }
}

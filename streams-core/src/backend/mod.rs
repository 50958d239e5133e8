//! The primitives a transport provides. No policy lives here: retry limits,
//! backoff, dead-letter provenance, poison detection, statistics and error
//! mapping are written once in [`Manager`](crate::Manager).
//!
//! Backends deal in keys (already namespaced), raw entries, and ids and
//! cursors whose meaning they define. Every method names, under
//! `# Contract`, the conformance cases that check it (`streams-conformance`).
//! A backend states what it does natively in [`Capabilities`]; the manager
//! and the suite use them.
//!
//! To wrap a backend (metrics, tracing, throttling, fault injection) without
//! forwarding every method by hand, implement [`BackendLayer`] and use
//! [`Layered`].

mod capabilities;
mod ids;
mod layer;
mod registry;
mod types;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::config::Durability;
use crate::error::Result;

pub use capabilities::{Capabilities, Feature};
pub use ids::{Cursor, EntryId};
pub use layer::{BackendLayer, Call, Layered};
pub use registry::GroupRegistry;
pub use types::{
    Ack, Add, AddMany, AutoClaim, AutoClaimPage, ConsumerInfo, ConsumerRef, ConsumerRemoval,
    CreateGroup, DeliveredEntry, DurableWrite, Entry, Fields, GroupInfo, KeyEntries, Lease, Move,
    MoveOutcome, MoveTarget, PendingEntry, PendingQuery, Probe, Promotion, RangeQuery, ReadGroup,
    ScheduleKeys, ServerInfo, StartAt, Transfer, TransferOutcome, Trim,
};

/// The primitives of a stream transport.
///
/// Implementations must be usable from many tasks at once, must never hold
/// a lock across an `.await`, and report a missing stream or group as
/// [`StreamError::NoGroup`](crate::StreamError::NoGroup) where a method says
/// so. The trait is object safe: `Arc<dyn StreamBackend>` is a backend too.
///
/// Delivery counts are what the poison rule of the manager rests on: a
/// backend counts a delivery each time it hands an entry to a consumer
/// (a new read, a redelivery, a claim), and gives the count back when the
/// consumer hands the entry back unhandled ([`hand_back`](Self::hand_back)).
#[async_trait]
pub trait StreamBackend: GroupRegistry + Send + Sync + Debug + 'static {
    /// The backend's name, `"redis"` or `"memory"`, used in errors.
    fn name(&self) -> &'static str;

    /// What this backend does natively.
    ///
    /// # Contract
    /// `backend_reports_version`; the suite skips the cases whose features
    /// are missing.
    fn capabilities(&self) -> Capabilities;

    /// When the entry `id` was added, if the id tells (time-based ids do):
    /// the stand-in for the `ts` of entries written by other producers.
    /// The default knows nothing.
    fn entry_time(&self, id: &EntryId) -> Option<SystemTime> {
        let _ = id;
        None
    }

    /// Server name and version. Fails with
    /// [`StreamError::Unsupported`](crate::StreamError::Unsupported) when
    /// the server is too old for this backend.
    ///
    /// # Contract
    /// `backend_reports_version`.
    async fn server_info(&self) -> Result<ServerInfo>;

    /// A round trip to the server.
    ///
    /// # Contract
    /// `health_reports_groups`.
    async fn ping(&self) -> Result<()>;

    /// Writes `probe.value` at `probe.key`, replacing whatever the key held,
    /// to expire after `probe.ttl` (at least 1 ms): one round trip that
    /// fails when the server refuses writes (out of memory with
    /// `noeviction`, a read-only replica), which a ping would not notice.
    /// Until it expires the key holds a value of its own kind, which other
    /// primitives refuse as a wrong type; then it is gone. Readiness checks
    /// use it.
    ///
    /// # Contract
    /// `write_probe_expires`, `readiness_is_one_write`.
    async fn write_probe(&self, probe: Probe<'_>) -> Result<()>;

    /// Creates a group on a stream (creating the stream if it is missing).
    /// Returns `false` if the group already existed (not an error).
    ///
    /// # Contract
    /// `create_group_is_idempotent`, `create_group_after_id`.
    async fn create_group(&self, create: CreateGroup<'_>) -> Result<bool>;

    /// Removes a group from a stream, with its pending entries list.
    /// Returns whether it existed.
    ///
    /// # Contract
    /// `destroyed_group_resumes_after_last_delivered`.
    async fn destroy_group(&self, key: &str, group: &str) -> Result<bool>;

    /// Deletes keys (streams with their groups, schedules) that belong to
    /// one group alone; returns how many existed.
    ///
    /// # Contract
    /// `delete_group_removes_it_everywhere`.
    async fn delete_keys(&self, keys: &[String]) -> Result<u64>;

    /// Adds one entry and applies its trims; returns the new id.
    ///
    /// # Contract
    /// `ids_strictly_increase`, `send_trims_to_max_len`.
    async fn add(&self, add: Add) -> Result<EntryId>;

    /// Adds many entries in one round trip; returns their ids in order. On
    /// error, some of them may have been added.
    ///
    /// # Contract
    /// `send_batch_preserves_order`.
    async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<EntryId>>;

    /// Adds many entries to one stream, each followed by the same trims,
    /// in one round trip; returns their ids in order. On error, some of
    /// them may have been added. The default makes an [`Add`] of each
    /// entry and calls [`add_batch`](Self::add_batch); a backend overrides
    /// it to skip the copies of the key and trims per entry.
    ///
    /// # Contract
    /// `send_batch_preserves_order`, `send_trims_to_max_len`.
    async fn add_many(&self, many: AddMany<'_>) -> Result<Vec<EntryId>> {
        let adds = many
            .entries
            .into_iter()
            .map(|fields| {
                let mut add = Add::new(many.key, fields);
                add.trim = many.trim.to_vec();
                add
            })
            .collect();
        self.add_batch(adds).await
    }

    /// [`add_many`](Self::add_many), then waits until the entries are as
    /// durable as `durability` asks, or its timeout passes; returns the
    /// ids with the confirmations the server gave. Falling short is not an
    /// error here (the manager decides); the entries are written either
    /// way. The default refuses with
    /// [`StreamError::Unsupported`](crate::StreamError::Unsupported)
    /// before writing anything: a backend with no replicas cannot confirm.
    ///
    /// # Contract
    /// `durable_sends_are_confirmed_or_refused`.
    async fn add_durable(&self, many: AddMany<'_>, durability: Durability) -> Result<DurableWrite> {
        let _ = (many, durability);
        Err(crate::StreamError::Unsupported {
            feature: "durable send".to_owned(),
            reason: format!(
                "the {} backend has no replicas or append-only file to wait for",
                self.name()
            ),
        })
    }

    /// Reads entries never delivered to the group, over several keys at
    /// once; each counts as its first delivery.
    ///
    /// At most `count` entries in total come back. When the keys hold more,
    /// each key gets a fair share: with `k` keys, a key that has enough gets at least
    /// `count / k`, what a key cannot fill goes to the others, and a
    /// remainder goes to the keys that have had the least, the first listed
    /// first. A missing group is reported as soon as the read touches its
    /// key, and before anything is delivered or a read waits. Keys with
    /// nothing to return are left out of the reply. A blocking read returns as soon as any key has new
    /// entries, or empty after `block`; it delivers nothing it does not
    /// return.
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) if a key or the
    /// group on it does not exist (at once, even when blocking).
    ///
    /// # Contract
    /// `blocking_read_wakes_on_send`, `consumers_share_new_messages`,
    /// `read_count_caps_the_total`, `read_count_is_shared_fairly`,
    /// `read_missing_group_is_nogroup`.
    async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>>;

    /// Delivers again entries the consumer still holds, in the lease's order:
    /// each counts a delivery and its idle time starts again. Entries no
    /// longer pending for the consumer (acknowledged, claimed by another)
    /// are left alone and not returned, and so is, with
    /// [`Lease::deliveries`], an entry whose delivery count is no longer the
    /// one given (it was delivered since, by a claim say); ids whose
    /// entries are gone are reported in `deleted` and stay pending. Needs
    /// [`Feature::Redelivery`].
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) for a missing
    /// key or group.
    ///
    /// # Contract
    /// `redeliver_serves_only_what_the_consumer_holds`,
    /// `restarted_consumer_gets_own_pending_first`,
    /// `backlog_never_serves_work_delivered_since`.
    async fn redeliver(&self, lease: Lease<'_>) -> Result<KeyEntries> {
        let _ = lease;
        Err(unsupported(self.name(), Feature::Redelivery))
    }

    /// Acknowledges entries of a group; with `delete`, also deletes them.
    /// Returns how many were pending. Unknown keys, groups and ids count 0.
    ///
    /// # Contract
    /// `ack_removes_from_pending`, `ack_twice_returns_false`,
    /// `ack_with_delete_removes_entries`.
    async fn ack(&self, ack: Ack<'_>) -> Result<u64>;

    /// One page of claiming: entries pending at least `min_idle`, from
    /// `start`, at most `count` (deleted ids count towards it), become
    /// `consumer`'s, and their delivery counts grow by one. With
    /// `until_redelivered`, the page ends right after the first claimed
    /// entry whose count is then 2 or more.
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) for a missing key or group.
    ///
    /// # Contract
    /// `claim_respects_idle_time`, `claim_increments_delivery_count`,
    /// `claim_reports_deleted_entries`, `claim_pages_through_everything`,
    /// `auto_claim_pages_with_cursor`, `claims_take_redelivered_entries_alone`.
    async fn auto_claim(&self, claim: AutoClaim<'_>) -> Result<AutoClaimPage> {
        let _ = claim;
        Err(unsupported(self.name(), Feature::ExplicitClaims))
    }

    /// Details of pending entries, in the stream's order.
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) for a missing key or group.
    ///
    /// # Contract
    /// `pending_details_report_owner_and_count`.
    async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>>;

    /// Renews the consumer's lease on entries it holds: their idle time
    /// starts again, without counting a delivery. Entries held by another
    /// consumer are left alone. Returns the ids renewed. An owned id whose
    /// entry no longer exists leaves the pending list and is not returned. A
    /// missing key or group renews nothing.
    ///
    /// # Contract
    /// `touch_keeps_entry_from_claims`, `set_idle_leaves_other_consumers_alone`.
    async fn renew(&self, lease: Lease<'_>) -> Result<Vec<EntryId>>;

    /// Hands entries the consumer holds back unhandled: they stay pending,
    /// become claimable at once, and the delivery that brought them is not
    /// counted (their delivery count goes down by one, not below zero).
    /// Entries held by another consumer are left alone. With
    /// [`Lease::deliveries`], an entry whose delivery count is no longer the
    /// one given (it was handed back already, or delivered again) is left
    /// alone too, so handing back twice gives back one delivery. Returns the
    /// ids handed back.
    ///
    /// # Contract
    /// `release_makes_entry_claimable`, `released_messages_are_never_poison`.
    async fn hand_back(&self, lease: Lease<'_>) -> Result<Vec<EntryId>>;

    /// Atomically writes a new copy of an entry and acknowledges the old one,
    /// after checking it is still pending (for the fencing consumer, if given).
    ///
    /// # Contract
    /// `dlq_move_acks_original`, `retry_moves_are_fenced`, `move_of_acked_entry_is_refused`.
    async fn move_entry(&self, mv: Move) -> Result<MoveOutcome>;

    /// Many [`move_entry`](Self::move_entry) calls, in one round trip where
    /// the backend can: each move is atomic on its own and has its own
    /// outcome, in the order given; one that fails does not stop the
    /// others. The outer error is for a failure that leaves every outcome
    /// unknown (the connection broke, say): some moves may have happened
    /// then. The default makes the moves one after another.
    ///
    /// # Contract
    /// `move_entries_report_each_outcome`, `retry_many_schedules_each`,
    /// `dead_letter_many_moves_each`.
    async fn move_entries(&self, moves: Vec<Move>) -> Result<Vec<Result<MoveOutcome>>> {
        let mut outcomes = Vec::with_capacity(moves.len());
        for mv in moves {
            outcomes.push(self.move_entry(mv).await);
        }
        Ok(outcomes)
    }

    /// Moves due entries of each schedule into its ready stream, at most
    /// `limit` per schedule, atomically per schedule. A schedule that cannot
    /// be promoted reports its error in its [`Promotion`] and does not stop
    /// the others. Needs [`Feature::RetrySchedule`].
    ///
    /// # Contract
    /// `retry_not_due_before_backoff`, `retry_due_after_backoff`,
    /// `promote_due_moves_only_due_entries`, `foreign_schedule_value_does_not_stop_reads`.
    async fn promote_due(
        &self,
        schedules: &[ScheduleKeys],
        limit: usize,
    ) -> Result<Vec<Promotion>> {
        let _ = (schedules, limit);
        Err(unsupported(self.name(), Feature::RetrySchedule))
    }

    /// Number of entries scheduled on a schedule key. Needs
    /// [`Feature::RetrySchedule`].
    ///
    /// # Contract
    /// `stats_match_operations`.
    async fn schedule_len(&self, key: &str) -> Result<u64> {
        let _ = key;
        Err(unsupported(self.name(), Feature::RetrySchedule))
    }

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

    /// Entries of a stream within bounds, at most `count`, in the stream's
    /// order (newest first with [`RangeQuery::newest_first`]), without any
    /// group. A missing stream has none.
    ///
    /// # Errors
    /// [`StreamError::InvalidId`](crate::StreamError::InvalidId) for a
    /// bound the backend cannot read.
    ///
    /// # Contract
    /// `range_reads_without_group`, `range_reads_newest_first`.
    async fn range(&self, query: RangeQuery<'_>) -> Result<Vec<Entry>>;

    /// Atomically adds an entry with the transfer's fields to its target
    /// stream and deletes the source entry, only if the source entry
    /// exists: run twice, the second does nothing and reports
    /// [`TransferOutcome::Missing`]. The source is a plain stream (no group
    /// is involved); a missing source stream means a missing entry.
    ///
    /// # Errors
    /// [`StreamError::InvalidId`](crate::StreamError::InvalidId) for an id
    /// the backend cannot read; a target key holding another type fails and
    /// changes nothing.
    ///
    /// # Contract
    /// `transfer_moves_only_existing_entries`.
    async fn transfer(&self, transfer: Transfer) -> Result<TransferOutcome>;

    /// Deletes entries of a stream by id (Redis `XDEL`), without touching
    /// any group's pending list; returns the ids that existed and were
    /// deleted, in the order given. A missing stream deletes nothing.
    ///
    /// # Errors
    /// [`StreamError::InvalidId`](crate::StreamError::InvalidId) for an id
    /// the backend cannot read (nothing is deleted then).
    ///
    /// # Contract
    /// `delete_entries_removes_only_given_ids`.
    async fn delete_entries(&self, key: &str, ids: &[EntryId]) -> Result<Vec<EntryId>>;

    /// The keys that hold streams and start with `prefix` (all streams for
    /// an empty prefix), sorted. Keys of other types are left out.
    ///
    /// # Contract
    /// `stream_keys_lists_streams_under_prefix`.
    async fn stream_keys(&self, prefix: &str) -> Result<Vec<String>>;

    /// The groups of a stream (empty if it does not exist).
    ///
    /// # Contract
    /// `health_reports_groups`.
    async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>>;

    /// The consumers of a group. Needs [`Feature::ConsumerListing`].
    ///
    /// # Errors
    /// [`StreamError::NoGroup`](crate::StreamError::NoGroup) for a missing key or group.
    ///
    /// # Contract
    /// `health_reports_groups`, `delete_consumer_keeps_pending_work`.
    async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        let _ = (key, group);
        Err(unsupported(self.name(), Feature::ConsumerListing))
    }

    /// Removes a consumer from a group if, checked atomically, it holds no
    /// pending entries. Needs [`Feature::ConsumerListing`].
    ///
    /// # Contract
    /// `delete_consumer_keeps_pending_work`, `prune_removes_only_idle_empty_consumers`.
    async fn delete_consumer(&self, consumer: ConsumerRef<'_>) -> Result<ConsumerRemoval> {
        let _ = consumer;
        Err(unsupported(self.name(), Feature::ConsumerListing))
    }

    /// Releases connections. Later calls may fail. The default does nothing.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// What the default of a method a backend does not provide answers.
fn unsupported(backend: &str, feature: Feature) -> crate::StreamError {
    crate::StreamError::Unsupported {
        feature: feature.describe().to_owned(),
        reason: format!("the {backend} backend does not provide it"),
    }
}

macro_rules! forward_backend {
    ($ty:ty) => {
        #[async_trait]
        impl<T: StreamBackend + ?Sized> GroupRegistry for $ty {
            async fn registry_put(&self, key: &str, group: &str, config: &str) -> Result<()> {
                (**self).registry_put(key, group, config).await
            }
            async fn registry_get(&self, key: &str, group: &str) -> Result<Option<String>> {
                (**self).registry_get(key, group).await
            }
            async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>> {
                (**self).registry_list(key).await
            }
        }

        #[async_trait]
        impl<T: StreamBackend + ?Sized> StreamBackend for $ty {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn entry_time(&self, id: &EntryId) -> Option<SystemTime> {
                (**self).entry_time(id)
            }
            async fn server_info(&self) -> Result<ServerInfo> {
                (**self).server_info().await
            }
            async fn ping(&self) -> Result<()> {
                (**self).ping().await
            }
            async fn write_probe(&self, probe: Probe<'_>) -> Result<()> {
                (**self).write_probe(probe).await
            }
            async fn create_group(&self, create: CreateGroup<'_>) -> Result<bool> {
                (**self).create_group(create).await
            }
            async fn destroy_group(&self, key: &str, group: &str) -> Result<bool> {
                (**self).destroy_group(key, group).await
            }
            async fn delete_keys(&self, keys: &[String]) -> Result<u64> {
                (**self).delete_keys(keys).await
            }
            async fn add(&self, add: Add) -> Result<EntryId> {
                (**self).add(add).await
            }
            async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<EntryId>> {
                (**self).add_batch(adds).await
            }
            async fn add_many(&self, many: AddMany<'_>) -> Result<Vec<EntryId>> {
                (**self).add_many(many).await
            }
            async fn add_durable(
                &self,
                many: AddMany<'_>,
                durability: Durability,
            ) -> Result<DurableWrite> {
                (**self).add_durable(many, durability).await
            }
            async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
                (**self).read_group(read).await
            }
            async fn ack(&self, ack: Ack<'_>) -> Result<u64> {
                (**self).ack(ack).await
            }
            async fn auto_claim(&self, claim: AutoClaim<'_>) -> Result<AutoClaimPage> {
                (**self).auto_claim(claim).await
            }
            async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>> {
                (**self).pending(query).await
            }
            async fn renew(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
                (**self).renew(lease).await
            }
            async fn redeliver(&self, lease: Lease<'_>) -> Result<KeyEntries> {
                (**self).redeliver(lease).await
            }
            async fn hand_back(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
                (**self).hand_back(lease).await
            }
            async fn move_entry(&self, mv: Move) -> Result<MoveOutcome> {
                (**self).move_entry(mv).await
            }
            async fn move_entries(&self, moves: Vec<Move>) -> Result<Vec<Result<MoveOutcome>>> {
                (**self).move_entries(moves).await
            }
            async fn promote_due(
                &self,
                schedules: &[ScheduleKeys],
                limit: usize,
            ) -> Result<Vec<Promotion>> {
                (**self).promote_due(schedules, limit).await
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
            async fn range(&self, query: RangeQuery<'_>) -> Result<Vec<Entry>> {
                (**self).range(query).await
            }
            async fn transfer(&self, transfer: Transfer) -> Result<TransferOutcome> {
                (**self).transfer(transfer).await
            }
            async fn delete_entries(&self, key: &str, ids: &[EntryId]) -> Result<Vec<EntryId>> {
                (**self).delete_entries(key, ids).await
            }
            async fn stream_keys(&self, prefix: &str) -> Result<Vec<String>> {
                (**self).stream_keys(prefix).await
            }
            async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>> {
                (**self).groups(key).await
            }
            async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
                (**self).consumers(key, group).await
            }
            async fn delete_consumer(&self, consumer: ConsumerRef<'_>) -> Result<ConsumerRemoval> {
                (**self).delete_consumer(consumer).await
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

    // Compile-time check: the traits stay object safe.
    #[allow(dead_code)]
    fn object_safe(
        _: &dyn StreamBackend,
        _: Arc<dyn StreamBackend>,
        _: Box<dyn StreamBackend>,
        _: &dyn GroupRegistry,
    ) {
    }
}

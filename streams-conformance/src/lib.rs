//! The conformance suite of xnai-streams: one `async fn` per behaviour, run
//! against every backend, so a backend that passes gets the whole
//! [`StreamManager`](streams_core::StreamManager) API for free.
//!
//! A backend's `tests/conformance.rs` is a harness and one line; this is the
//! memory backend's:
//!
//! ```
//! use async_trait::async_trait;
//! use streams_conformance::{DynBackend, TestBackend};
//! use streams_memory::MemoryBackend;
//!
//! /// One backend per case; every connection of the case shares its data.
//! #[derive(Debug, Default)]
//! struct MemoryHarness {
//!     backend: MemoryBackend,
//! }
//!
//! #[async_trait]
//! impl TestBackend for MemoryHarness {
//!     fn name(&self) -> &'static str {
//!         "memory"
//!     }
//!     async fn connect(&self) -> DynBackend {
//!         std::sync::Arc::new(self.backend.clone())
//!     }
//!     async fn cleanup(&self, _namespace: &str) {}
//! }
//!
//! streams_conformance::conformance_suite!(MemoryHarness::default());
//! # fn main() {}
//! ```
//!
//! The expression builds a [`TestBackend`] for each case. Each case runs in
//! its own namespace with a timeout, so cases run in parallel on one server
//! and a hang is a failure, and the namespace is cleaned up afterwards, pass
//! or fail. Tests are named `<area>::<case>` and can be filtered.
//!
//! # Cases
//!
//! 155 cases in 22 areas, plus `capabilities::skipped_cases_are_declared`.
//! A case may need backend features (see [`Feature`]); on a backend without
//! them it is skipped, with the reason printed, and counted. Run one with `cargo test -p <backend> --test conformance <area>::<case>`.
//!
//! | area | case | checks |
//! |---|---|---|
//! | basics | `send_returns_id` | `send_message` returns the new entry's id; the entry holds the JSON payload and a `mid` |
//! | basics | `send_round_trips_payload` | a read message has the sent payload (nested values), stream, timestamp, retry count 0, status pending |
//! | basics | `send_batch_preserves_order` | `send_batch` keeps order, ids strictly increase, every message has its own `mid` |
//! | basics | `durable_sends_are_confirmed_or_refused` | without `DurableSends` a durable manager is refused when built; with it, a durable send is confirmed or fails with exactly the ids it wrote |
//! | basics | `initialize_is_idempotent` | `initialize` twice is fine; consumer id and `initialized` are reported |
//! | basics | `dyn_manager_runs_the_whole_api` | every method works through `Arc<dyn StreamManager>` |
//! | groups | `create_group_is_idempotent` | creating a group twice is not an error; `create_group` reports true then false |
//! | groups | `create_group_replaces_config` | creating a group again with another config replaces it everywhere |
//! | groups | `group_start_controls_old_entries` | `GroupStart::Beginning` delivers older entries, `GroupStart::New` only later ones |
//! | groups | `group_over_several_streams` | a group over several streams delivers each with the right `stream`; `count` is the total |
//! | groups | `group_names_never_reach_each_others_keys` | groups `g`, `g:ready`, `g:schedule`, `ready:g` on one stream each keep their own retries |
//! | groups | `delete_group_removes_it_everywhere` | deleting a group removes it from its streams, its retry keys and the registry |
//! | groups | `deleted_group_stays_deleted` | a group deleted while another manager reads it stays deleted, even the only one: `GroupNotFound`, nothing recreated |
//! | groups | `delete_racing_a_reader_stays_deleted` | a reader finding the group missing mid-deletion does not bring it back |
//! | groups | `every_lost_group_comes_back` | after the server lost everything, every group comes back when read, and nothing sent since is skipped |
//! | groups | `prune_removes_only_idle_empty_consumers` | pruning removes idle consumers holding nothing; busy ones are reported |
//! | groups | `invalid_group_config_is_refused` | bad group configs give `Config` / `InvalidName` and create nothing |
//! | read | `blocking_read_wakes_on_send` | a blocked read returns within 50 ms of a send (five rounds, two streams) |
//! | read | `consumers_share_new_messages` | two consumers reading 200 messages concurrently get disjoint, complete sets |
//! | read | `restarted_consumer_gets_own_pending_first` | a restarted consumer gets its own pending entries first, one per read, as redeliveries, then new ones |
//! | read | `backlog_skips_what_a_claim_took_since` | a backlog entry claimed again by its own consumer since the listing is not served twice |
//! | read | `cancelled_backlog_read_keeps_its_entry` | a backlog read cancelled mid-delivery loses nothing |
//! | read | `backlog_never_serves_work_delivered_since` | a restarted consumer's backlog is what it held at start; work delivered since is never served twice |
//! | read | `read_uses_group_defaults` | reads default to the group's `batch_size` and `block` |
//! | read | `empty_read_waits_for_block` | an empty read waits for `block`; `Duration::ZERO` does not wait |
//! | read | `restart_loop_dead_letters_poison` | a message that crashes its consumer at every restart is dead-lettered past `retry_limit + 1` deliveries |
//! | read | `read_count_caps_the_total` | `count` caps a read over all streams and retries, shared fairly, none starved |
//! | poison | `released_messages_are_never_poison` | messages handed back unhandled are never dead-lettered, however often |
//! | poison | `crash_loop_isolates_the_culprit` | a crash loop dead-letters its culprit only; batch-mates come back one at a time and are handled |
//! | poison | `one_crash_never_dead_letters` | one crash of a copy never dead-letters it, even with retry limit 0 |
//! | poison | `poison_that_cannot_be_dead_lettered_stays_pending` | a poison message the DLQ cannot take stays pending, unhandled, counted; the others go on |
//! | ack | `ack_removes_from_pending` | a read entry is pending for its consumer until acknowledged |
//! | ack | `ack_twice_returns_false` | a second acknowledgement returns false; unknown ids, keys and groups count 0 |
//! | ack | `acknowledge_many_counts` | `acknowledge_many` over several streams counts only entries that were pending |
//! | claim | `claim_respects_idle_time` | an unacked entry is claimable after its idle time and not before |
//! | claim | `claim_increments_delivery_count` | each claim adds a delivery; `retry_count` counts retries only |
//! | claim | `claim_pages_through_everything` | claims take every idle entry of every stream, across pages; redelivered ones one per claim |
//! | claim | `claim_acks_deleted_pending_entries` | entries trimmed while pending are acked and counted by a claim |
//! | claim | `restart_acks_deleted_pending_entries` | entries trimmed while pending are acked and counted when a consumer resumes |
//! | claim | `poison_message_goes_to_dlq` | an entry delivered more than `retry_limit + 1` times goes to the DLQ ("max deliveries exceeded") |
//! | claim | `claimed_retry_copy_is_acked_where_read` | a claimed retry copy keeps its stream and is acked (and removed) on the retry stream |
//! | claim | `claims_take_redelivered_entries_alone` | claimers of a crash loop get the culprit alone until it is dead-lettered; batch-mates are handled |
//! | claim | `claims_go_on_where_the_last_one_stopped` | draining crash suspects behind busy entries costs about one pass, not one per suspect |
//! | lease | `touch_keeps_entry_from_claims` | `touch` resets the idle time without counting a delivery |
//! | lease | `release_makes_entry_claimable` | `release` makes entries claimable at once; others are untouched |
//! | lease | `release_twice_gives_back_one_delivery` | releasing the same delivery twice gives back one delivery |
//! | lease | `touch_many_renews_every_lease` | `touch_many` renews every lease still held and counts them |
//! | retry | `retry_not_due_before_backoff` | a retry is not due before `base * 2^n` (200 ms, 400 ms), for any consumer of the group |
//! | retry | `retry_due_after_backoff` | a blocked read wakes for a due retry soon after its backoff; the copy's fields are right |
//! | retry | `retry_limit_returns_false` | at the retry limit `retry_message` returns false and the message stays pending |
//! | retry | `retried_message_reaches_only_its_group` | a retry reaches only the group that retried it, not another group on the stream |
//! | retry | `retry_moves_are_fenced` | after B claimed A's message, A's retry and dead-letter fail with `NotOwner` and write nothing |
//! | retry | `retry_of_acked_message_is_refused` | an acknowledged message cannot be retried or dead-lettered through its group |
//! | retry | `retry_backoff_doubles_up_to_cap` | the delay doubles up to the cap; jitter only lengthens it |
//! | retry | `retry_keeps_extra_fields` | a retry copy keeps fields another producer added beyond the envelope |
//! | retry | `copies_keep_the_stored_payload` | retry and DLQ copies carry the stored payload bytes (numbers beyond 64 bits) |
//! | retry | `foreign_schedule_value_does_not_stop_reads` | a foreign value at a schedule key does not stop reads; it is counted and reported |
//! | retry | `promote_due_retries_without_a_reader` | `promote_due_retries` moves due retries without any reader of the group |
//! | retry | `group_retry_policy_applies` | a group's own retry policy applies whichever manager retries |
//! | retry | `retry_with_sets_error_and_delay` | `retry_with` records the error and is due after the given delay; the limit holds |
//! | retry | `retry_many_schedules_each` | `retry_many` reports each outcome in order: scheduled, past the limit (left pending), refused; one refused does not stop the others |
//! | retry | `ready_retries_are_read_while_the_stream_is_busy` | a retry another process promoted is read within about the promote interval while the stream is busy; one this manager promoted, by its next read |
//! | dlq | `dlq_move_acks_original` | a DLQ entry carries payload and provenance; the original is acknowledged |
//! | dlq | `dlq_without_group_keeps_original_pending` | without a group, the DLQ entry is written and the original stays pending |
//! | dlq | `dlq_disabled_keeps_message_pending` | a disabled DLQ gives `DlqDisabled`, writes nothing, dead-letters no poison |
//! | dlq | `dlq_trims_by_max_len` | the DLQ stays between `max_len` and `max_len + 100` entries |
//! | dlq | `dlq_trims_by_age` | DLQ entries older than `max_retention` are trimmed |
//! | dlq | `dlq_per_stream_layout` | the per-stream layout writes `<prefix>:{<stream>}`; `dlq_entries` counts all |
//! | dlq | `dlq_of_retry_copy_cleans_ready_stream` | dead-lettering a retry copy removes it from the retry stream |
//! | dlq | `dead_letter_many_moves_each` | `dead_letter_many` writes each dead letter with its provenance and reports each outcome; a refused one writes nothing; without a group the originals stay pending |
//! | dlq_ops | `dlq_list_filters_and_pages` | `dlq_list` filters by stream, group, reason text and failure time, oldest first, in pages whose cursor ends |
//! | dlq_ops | `dlq_show_finds_one_entry` | `dlq_show` finds a dead letter by id with payload and provenance; `None` for an unknown id, `InvalidId` for an unreadable one |
//! | dlq_ops | `dlq_stats_count_by_reason` | `dlq_stats` counts in total, by reason, stream and group, with the oldest and newest failure; filters apply |
//! | dlq_ops | `dlq_replay_returns_to_the_original_group` | a replay reaches the original group only (its ready stream), with the stored payload, `mid`, a fresh retry budget, `replayed_from` and `replay_count` |
//! | dlq_ops | `dlq_replay_is_idempotent` | a second run and concurrent runs replay nothing twice; entries sharing a `mid` are replayed once, the rest reported as duplicates |
//! | dlq_ops | `dlq_replay_dry_run_writes_nothing` | a dry run lists what would be replayed and changes nothing |
//! | dlq_ops | `dlq_replay_respects_rate_limit` | a rate limit spaces the moves (six at 10/s take half a second); progress is reported; 0 is `Config` |
//! | dlq_ops | `dlq_purge_reports_what_it_removed` | purges by id, filter and age report each entry removed and ids not found; a dry run removes nothing |
//! | dlq_ops | `dlq_entries_without_group` | an entry without a group replays only to a named, registered target group that reads its stream; else it is skipped with the reason |
//! | dlq_ops | `dlq_ops_per_stream_layout` | with per-stream dead-letter streams, listing, paging, counting, replaying and purging cover them all, or one |
//! | partitions | `keyed_sends_keep_order_per_key` | keyed sends land on `crc32(key) % n`; a group on the stream's name reads every partition; each key's messages come out in order, once |
//! | partitions | `round_robin_and_keyed_batches` | round-robin sends take the partitions in turn; a keyed batch returns ids in order, each on its key's partition; an unpartitioned stream is one partition |
//! | partitions | `partitions_grow_and_groups_follow` | growing a stream creates its groups on the new partitions first; another manager reads them; shrinking, bad counts and reserved names are refused |
//! | partitions | `running_consumers_follow_grown_partitions` | a consumer already reading the group takes in partitions another process added, within `refresh_interval`, keeping what it holds |
//! | inspect | `list_streams_hides_internal_keys` | `list_streams` lists the namespace's streams with lengths and groups, and no retry, dead-letter or registry key |
//! | inspect | `list_pending_shows_holders` | `list_pending` lists pending entries with holder, deliveries, retries, by consumer, stream, idle time and limit |
//! | inspect | `peek_reads_without_consuming` | `peek_messages` reads oldest or newest first and after an id, and delivers nothing |
//! | inspect | `group_view_tells_new_pending_done` | `group_view` tells new, pending (with holder) and done entries, also for groups that start late |
//! | stats | `stats_match_operations` | every counter of `get_stats` matches the operations done |
//! | stats | `get_stats_lists_consumer_groups` | `consumer_groups` lists the groups a manager knows, sorted |
//! | registry | `group_found_by_name_from_second_manager` | a second manager finds a group by name, with its config, and reads it |
//! | registry | `registry_lists_groups` | the registry lists every group with its configuration |
//! | registry | `lost_group_is_recreated_from_registry` | on `NOGROUP` a registered group is recreated from the beginning and counted |
//! | registry | `destroyed_group_resumes_after_last_delivered` | a group destroyed on a surviving stream resumes after the last delivered entry |
//! | errors | `invalid_stream_name_is_refused` | invalid stream names give `InvalidName` and write nothing |
//! | errors | `oversized_payload_is_refused` | payloads over `max_message_bytes` give `PayloadTooLarge { size, limit }` |
//! | errors | `non_object_payload_is_refused` | arrays, strings, numbers, booleans, null give `PayloadNotObject` |
//! | errors | `too_deep_payload_is_refused` | payloads nested deeper than readers decode give `PayloadTooDeep` |
//! | errors | `reserved_names_are_refused` | the registry's and the shared DLQ's names, and namespaces with `:`, are refused |
//! | errors | `unknown_group_is_group_not_found` | every method taking a group gives `GroupNotFound` for an unknown one |
//! | errors | `undelivered_message_is_refused` | retry, touch, release of a message not read through a group give `NotDelivered` |
//! | errors | `settling_through_another_group_is_refused` | ack and dead-letter through a group that did not deliver the message give `WrongGroup` and change nothing |
//! | errors | `extreme_counts_and_durations_are_accepted` | `usize::MAX` counts, `Duration::MAX` blocks and backoffs neither panic nor fail |
//! | errors | `zero_counts_are_config_errors` | a read count of 0 and a `max_len` of 0 give `Config` |
//! | errors | `closed_manager_refuses_calls` | after `close` every call gives `Closed` but `get_stats`; close is idempotent |
//! | errors | `scoped_closes_the_manager` | `scoped` closes the manager after success and after failure |
//! | errors | `old_server_is_unsupported` | a server the backend refuses gives `Unsupported` before anything is written |
//! | decode | `foreign_entries_decode_as_strings` | entries of other producers (no `data`) arrive with every field as a string |
//! | decode | `malformed_entries_arrive_failed` | malformed entries (repeated fields, bad names, deep JSON, ...) arrive failed with their raw fields |
//! | decode | `malformed_entry_dead_letters_with_raw_fields` | a malformed entry is dead-lettered with its raw fields intact |
//! | decode | `malformed_entry_is_not_retried` | retrying a malformed entry fails with `Decode`; it stays pending and can be dead-lettered |
//! | decode | `traceparent_is_kept_through_copies` | a valid `traceparent` is read and kept by retry and dead-letter copies; an invalid one is ignored; sends without a trace write none |
//! | decode | `hostile_entries_reach_the_dlq_and_consume_goes_on` | entries written straight to the stream with `data` not UTF-8, JSON cut short, fields repeated, a 10 MB body, JSON nested 100 000 deep: the runner dead-letters each with its raw fields byte for byte and handles the next message |
//! | trim | `send_trims_to_max_len` | sending with `max_len` keeps the stream between `max_len` and `max_len + 100` |
//! | trim | `trim_by_max_len` | exact `MaxLen` trims keep exactly the newest entries |
//! | trim | `stream_len_counts_entries` | `len` counts entries; 0 for a missing stream |
//! | health | `health_reports_groups` | health reports length, pending and the oldest's age, lag, claimable, scheduled retries, consumers; `group_health` agrees |
//! | health | `health_reports_missing_group` | a registered group missing on its stream makes the report unhealthy |
//! | health | `readiness_is_one_write` | `readiness` is one probe write; a refused write or an unreachable backend makes it not ready and `health` unhealthy |
//! | health | `health_status_follows_thresholds` | the verdict is healthy, degraded (each threshold, with its reason) or unhealthy; DLQ growth is measured between checks |
//! | subscribe | `subscribe_yields_messages_and_ends_on_close` | a subscription yields messages in order and ends after `close` |
//! | subscribe | `subscribe_hands_back_unyielded_messages_on_drop` | dropping a subscription makes its unyielded messages claimable at once |
//! | subscribe | `subscribe_to_unknown_group_ends_with_error` | a subscription to an unknown group yields `GroupNotFound` and ends |
//! | runner | `consume_handles_and_acks_everything` | every message is handled once and acked; nothing left pending |
//! | runner | `outcomes_settle_as_asked` | retry with a delay, dead-letter with a reason, errors retry then dead-letter past the limit; `on_settled` hears each |
//! | runner | `typed_payloads_that_do_not_fit_are_dead_lettered` | a payload not fitting the handler's type goes to the DLQ, never retried |
//! | runner | `concurrency_never_exceeds_the_limit` | no more handlers run at once than the limit, and the limit is reached |
//! | runner | `long_handlers_keep_their_lease_until_their_process_dies` | a live long handler's message is not claimed; it is once the process dies |
//! | runner | `a_dropped_runner_lets_go_of_its_messages` | a runner whose future is dropped stops renewing leases: its handler's message is claimed after `claim_idle` |
//! | runner | `shutdown_loses_nothing` | shutdown finishes handlers, flushes acks, leaves nothing pending; every message handled once |
//! | runner | `handlers_overrunning_the_grace_period_are_reported` | handlers past the grace period are stopped, left pending and named |
//! | runner | `timeouts_and_panics_are_failures` | the hard timeout and panics retry the message with the reason |
//! | runner | `runner_applies_each_groups_policy` | each group's own retry policy applies |
//! | runner | `claimed_work_not_started_is_handed_back` | claimed but unstarted work is handed back at shutdown, not counted |
//! | backend | `backend_reports_version` | the backend names itself, reports its version and capabilities, answers pings |
//! | backend | `ids_strictly_increase` | ids are unique, kept in add order, never reused |
//! | backend | `range_reads_without_group` | `range` is inclusive, ordered, bounded by `count`, and delivers nothing |
//! | backend | `read_missing_group_is_nogroup` | a read of a missing stream or group fails with `NoGroup` at once, even blocking |
//! | backend | `redeliver_serves_only_what_the_consumer_holds` | `redeliver` serves, by id, only entries the consumer holds; reports deleted ones; `NoGroup` for a missing group |
//! | backend | `read_count_is_shared_fairly` | a group read's count is a total shared fairly over its keys |
//! | backend | `create_group_after_id` | a group created after an id starts after it, or at the beginning if the history does not reach it |
//! | backend | `pending_details_report_owner_and_count` | pending details give owner and delivery count and filter by consumer, range, idle |
//! | backend | `claim_reports_deleted_entries` | a claim page reports deleted entries and drops them from the pending list |
//! | backend | `auto_claim_pages_with_cursor` | claim pages hold at most `count` entries and chain by cursor to `0-0` |
//! | backend | `set_idle_leaves_other_consumers_alone` | `renew` and `hand_back` change only the consumer's own entries; a hand-back gives its delivery back |
//! | backend | `move_of_acked_entry_is_refused` | moves of acked or foreign entries are refused and write nothing |
//! | backend | `promote_due_moves_only_due_entries` | `promote_due` moves only due retries and says when the next is due |
//! | backend | `delete_consumer_keeps_pending_work` | a consumer with pending entries is never deleted |
//! | backend | `ack_with_delete_removes_entries` | `ack` with `delete` acknowledges and deletes the entries |
//! | backend | `write_probe_expires` | a probe write replaces its key with a short-lived value of another type, gone after its time to live |
//! | backend | `move_entries_report_each_outcome` | `move_entries` makes each move on its own and reports each outcome in order; refused moves write nothing |
//! | entries | `range_reads_newest_first` | `range` newest first returns the last entries within bounds; unreadable bounds are `InvalidId` |
//! | entries | `transfer_moves_only_existing_entries` | `transfer` copies and deletes in one step only an entry that exists; a second run writes nothing |
//! | entries | `delete_entries_removes_only_given_ids` | `delete_entries` deletes the given ids, reports those that existed, leaves pending lists, refuses unreadable ids whole |
//! | entries | `stream_keys_lists_streams_under_prefix` | `stream_keys` lists stream keys under a literal prefix, sorted, without other types |

pub mod cases;
pub mod checker;
pub mod support;

pub use streams_core::backend::Feature;
pub use support::{
    CaseFn, DynBackend, SuiteCase, TestBackend, TestContext, TestManager, check_skips, run_all,
    run_case,
};

/// Expands the whole suite into `#[tokio::test]`s, one module per area.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::__for_each_case!($crate::__conformance_tests, $harness);
    };
}

/// Defines `fn suite_cases() -> Vec<SuiteCase>`: the whole suite, for
/// [`run_all`], so that one test runs every case on a harness started once.
///
/// ```ignore
/// streams_conformance::suite_cases!();
///
/// #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn whole_suite() {
///     let harness = std::sync::Arc::new(MyHarness::start());
///     streams_conformance::run_all(harness, suite_cases(), 4).await;
/// }
/// ```
#[macro_export]
macro_rules! suite_cases {
    () => {
        $crate::__for_each_case!($crate::__suite_cases, ());
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_cases {
    ($harness:expr; $( $area:ident { $( $case:ident $([ $($feature:ident),* ])? ),* $(,)? } )*) => {
        /// Every case of the conformance suite.
        fn suite_cases() -> ::std::vec::Vec<$crate::SuiteCase> {
        vec![
            $($(
                (
                    concat!(stringify!($area), "::", stringify!($case)),
                    &[$($($crate::Feature::$feature),*)?] as &'static [$crate::Feature],
                    (|ctx: ::std::sync::Arc<$crate::TestContext>| {
                        ::std::boxed::Box::pin(async move { $crate::cases::$area::$case(&ctx).await })
                            as ::std::pin::Pin<::std::boxed::Box<dyn ::std::future::Future<Output = ()>>>
                    }) as $crate::CaseFn,
                ),
            )*)*
        ]
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($harness:expr; $( $area:ident { $( $case:ident $([ $($feature:ident),* ])? ),* $(,)? } )*) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        $crate::run_case(
                            concat!(stringify!($area), "::", stringify!($case)),
                            &[$($($crate::Feature::$feature),*)?],
                            $harness,
                            |ctx| async move { $crate::cases::$area::$case(&ctx).await },
                        )
                        .await;
                    }
                )*
            }
        )*

        mod capabilities {
            #[allow(unused_imports)]
            use super::*;

            /// Counts the cases this backend skips, and checks them against
            /// what its harness declares.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn skipped_cases_are_declared() {
                let cases: &[(&str, &[$crate::Feature])] = &[
                    $($(
                        (
                            concat!(stringify!($area), "::", stringify!($case)),
                            &[$($($crate::Feature::$feature),*)?],
                        ),
                    )*)*
                ];
                $crate::check_skips($harness, cases).await;
            }
        }
    };
}

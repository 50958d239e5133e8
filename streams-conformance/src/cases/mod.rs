//! The cases, one module per area. Each case is a `pub async fn(&TestContext)`
//! that checks one behaviour on a fresh namespace.

// Cases are tests: a panic with the failed call's error is the report.
#![allow(clippy::unwrap_used)]

pub mod ack;
pub mod backend;
pub mod basics;
pub mod claim;
pub mod decode;
pub mod dlq;
pub mod dlq_ops;
pub mod entries;
pub mod errors;
pub mod groups;
pub mod health;
pub mod inspect;
pub mod lease;
pub mod partitions;
pub mod poison;
pub mod read;
pub mod registry;
pub mod retry;
pub mod runner;
pub mod stats;
pub mod subscribe;
pub mod trim;

/// The list of every case, by area. Adding a case means adding its name here
/// and to the table in the crate docs.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    ($m:path, $harness:expr) => {
        $m!($harness;
            basics {
                send_returns_id,
                send_round_trips_payload,
                send_batch_preserves_order,
                durable_sends_are_confirmed_or_refused,
                initialize_is_idempotent,
                dyn_manager_runs_the_whole_api [ExplicitClaims, RetrySchedule, ConsumerListing],
            }
            groups {
                create_group_is_idempotent,
                create_group_replaces_config,
                group_start_controls_old_entries,
                group_over_several_streams,
                invalid_group_config_is_refused,
                group_names_never_reach_each_others_keys [RetrySchedule],
                delete_group_removes_it_everywhere [RetrySchedule],
                deleted_group_stays_deleted,
                delete_racing_a_reader_stays_deleted,
                every_lost_group_comes_back,
                prune_removes_only_idle_empty_consumers [ConsumerListing],
            }
            read {
                blocking_read_wakes_on_send,
                consumers_share_new_messages,
                restarted_consumer_gets_own_pending_first [Redelivery],
                backlog_never_serves_work_delivered_since [Redelivery],
                backlog_skips_what_a_claim_took_since [Redelivery, ExplicitClaims],
                cancelled_backlog_read_keeps_its_entry [Redelivery],
                read_uses_group_defaults,
                empty_read_waits_for_block,
                restart_loop_dead_letters_poison [Redelivery],
                read_count_caps_the_total [ExplicitClaims, RetrySchedule],
            }
            poison {
                released_messages_are_never_poison [ExplicitClaims],
                crash_loop_isolates_the_culprit [Redelivery],
                one_crash_never_dead_letters [ExplicitClaims],
                poison_that_cannot_be_dead_lettered_stays_pending [ExplicitClaims],
            }
            ack {
                ack_removes_from_pending,
                ack_twice_returns_false,
                acknowledge_many_counts,
            }
            claim {
                claim_respects_idle_time [ExplicitClaims],
                claim_increments_delivery_count [ExplicitClaims],
                claim_pages_through_everything [ExplicitClaims],
                claim_acks_deleted_pending_entries [ExplicitClaims],
                restart_acks_deleted_pending_entries [Redelivery],
                poison_message_goes_to_dlq [ExplicitClaims],
                claimed_retry_copy_is_acked_where_read [ExplicitClaims, RetrySchedule],
                claims_take_redelivered_entries_alone [ExplicitClaims],
                claims_go_on_where_the_last_one_stopped [ExplicitClaims],
            }
            lease {
                touch_keeps_entry_from_claims [ExplicitClaims],
                release_makes_entry_claimable [ExplicitClaims],
                release_twice_gives_back_one_delivery [ExplicitClaims],
                touch_many_renews_every_lease [ExplicitClaims],
            }
            retry {
                retry_not_due_before_backoff [RetrySchedule],
                retry_due_after_backoff [RetrySchedule],
                retry_limit_returns_false [RetrySchedule],
                retried_message_reaches_only_its_group [RetrySchedule],
                retry_moves_are_fenced [ExplicitClaims, RetrySchedule],
                retry_of_acked_message_is_refused [RetrySchedule],
                retry_backoff_doubles_up_to_cap [RetrySchedule],
                retry_keeps_extra_fields [RetrySchedule],
                copies_keep_the_stored_payload [RetrySchedule],
                foreign_schedule_value_does_not_stop_reads [RetrySchedule],
                promote_due_retries_without_a_reader [RetrySchedule],
                group_retry_policy_applies [RetrySchedule],
                retry_with_sets_error_and_delay [RetrySchedule],
                retry_many_schedules_each [RetrySchedule],
                ready_retries_are_read_while_the_stream_is_busy [RetrySchedule],
            }
            dlq {
                dlq_move_acks_original,
                dlq_without_group_keeps_original_pending,
                dlq_disabled_keeps_message_pending [ExplicitClaims],
                dlq_trims_by_max_len,
                dlq_trims_by_age,
                dlq_per_stream_layout,
                dlq_of_retry_copy_cleans_ready_stream [RetrySchedule],
                dead_letter_many_moves_each,
            }
            dlq_ops {
                dlq_list_filters_and_pages,
                dlq_show_finds_one_entry,
                dlq_stats_count_by_reason,
                dlq_replay_returns_to_the_original_group [RetrySchedule],
                dlq_replay_is_idempotent [RetrySchedule],
                dlq_replay_dry_run_writes_nothing,
                dlq_replay_respects_rate_limit,
                dlq_purge_reports_what_it_removed,
                dlq_entries_without_group,
                dlq_ops_per_stream_layout,
            }
            partitions {
                keyed_sends_keep_order_per_key,
                round_robin_and_keyed_batches,
                partitions_grow_and_groups_follow,
                running_consumers_follow_grown_partitions,
            }
            inspect {
                list_streams_hides_internal_keys [RetrySchedule],
                list_pending_shows_holders [RetrySchedule],
                peek_reads_without_consuming,
                group_view_tells_new_pending_done,
            }
            stats {
                stats_match_operations [ExplicitClaims, RetrySchedule],
                get_stats_lists_consumer_groups,
            }
            registry {
                group_found_by_name_from_second_manager,
                registry_lists_groups,
                lost_group_is_recreated_from_registry,
                destroyed_group_resumes_after_last_delivered,
            }
            errors {
                invalid_stream_name_is_refused,
                oversized_payload_is_refused,
                non_object_payload_is_refused,
                too_deep_payload_is_refused [RetrySchedule],
                reserved_names_are_refused,
                unknown_group_is_group_not_found [ExplicitClaims],
                undelivered_message_is_refused,
                settling_through_another_group_is_refused,
                extreme_counts_and_durations_are_accepted [RetrySchedule],
                zero_counts_are_config_errors,
                closed_manager_refuses_calls,
                scoped_closes_the_manager,
                old_server_is_unsupported,
            }
            decode {
                foreign_entries_decode_as_strings,
                malformed_entries_arrive_failed,
                malformed_entry_dead_letters_with_raw_fields,
                malformed_entry_is_not_retried,
                traceparent_is_kept_through_copies [RetrySchedule],
                hostile_entries_reach_the_dlq_and_consume_goes_on,
            }
            trim {
                send_trims_to_max_len,
                trim_by_max_len,
                stream_len_counts_entries,
            }
            health {
                health_reports_groups [GroupLag, ConsumerListing, RetrySchedule],
                health_reports_missing_group,
                readiness_is_one_write,
                health_status_follows_thresholds [GroupLag],
            }
            subscribe {
                subscribe_yields_messages_and_ends_on_close,
                subscribe_hands_back_unyielded_messages_on_drop [ExplicitClaims],
                subscribe_to_unknown_group_ends_with_error,
            }
            runner {
                consume_handles_and_acks_everything,
                outcomes_settle_as_asked [RetrySchedule],
                typed_payloads_that_do_not_fit_are_dead_lettered,
                concurrency_never_exceeds_the_limit,
                long_handlers_keep_their_lease_until_their_process_dies [ExplicitClaims],
                a_dropped_runner_lets_go_of_its_messages [ExplicitClaims],
                shutdown_loses_nothing,
                handlers_overrunning_the_grace_period_are_reported,
                timeouts_and_panics_are_failures [RetrySchedule],
                runner_applies_each_groups_policy [RetrySchedule],
                claimed_work_not_started_is_handed_back [ExplicitClaims],
            }
            backend {
                backend_reports_version,
                ids_strictly_increase,
                range_reads_without_group,
                read_missing_group_is_nogroup [ExplicitClaims, ConsumerListing],
                redeliver_serves_only_what_the_consumer_holds [Redelivery, ExplicitClaims],
                read_count_is_shared_fairly,
                create_group_after_id,
                pending_details_report_owner_and_count,
                claim_reports_deleted_entries [ExplicitClaims],
                auto_claim_pages_with_cursor [ExplicitClaims],
                set_idle_leaves_other_consumers_alone [ExplicitClaims],
                move_of_acked_entry_is_refused [RetrySchedule],
                promote_due_moves_only_due_entries [RetrySchedule],
                delete_consumer_keeps_pending_work [ConsumerListing],
                ack_with_delete_removes_entries,
                write_probe_expires,
                move_entries_report_each_outcome [RetrySchedule],
            }
            entries {
                range_reads_newest_first,
                transfer_moves_only_existing_entries,
                delete_entries_removes_only_given_ids,
                stream_keys_lists_streams_under_prefix,
            }
        );
    };
}

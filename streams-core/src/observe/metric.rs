//! The names of every metric and label this library emits, in one place.
//!
//! Counters end in `_total`; durations are in seconds. Labels are `stream`
//! (the logical stream name, without namespace), `group`, `consumer` and,
//! for handler durations, `outcome`; a label that does not apply to one
//! event (a dead letter written without a group, say) is empty. No metric
//! is labelled with a message id.

/// Label: the logical stream name.
pub const STREAM: &str = "stream";
/// Label: the consumer group.
pub const GROUP: &str = "group";
/// Label: the consumer.
pub const CONSUMER: &str = "consumer";
/// Label: how a handler ended (the runner's words: `ack`, `retry`, `dlq`, ...).
pub const OUTCOME: &str = "outcome";

/// Counter `{stream}`: messages sent.
pub const MESSAGES_SENT: &str = "xnai_streams_messages_sent_total";
/// Counter `{stream, group, consumer}`: messages returned by reads and claims.
pub const MESSAGES_READ: &str = "xnai_streams_messages_read_total";
/// Counter `{stream, group, consumer}`: messages acknowledged (that were pending).
pub const MESSAGES_ACKED: &str = "xnai_streams_messages_acked_total";
/// Counter `{stream, group, consumer}`: retries scheduled.
pub const MESSAGES_RETRIED: &str = "xnai_streams_messages_retried_total";
/// Counter `{stream, group, consumer}`: messages written to the dead-letter
/// queue (poison messages included).
pub const MESSAGES_DEAD_LETTERED: &str = "xnai_streams_messages_dead_lettered_total";
/// Counter `{stream, group, consumer}`: messages taken over by claims.
pub const MESSAGES_CLAIMED: &str = "xnai_streams_messages_claimed_total";
/// Counter `{stream, group, consumer}`: messages handed back unhandled.
pub const MESSAGES_HANDED_BACK: &str = "xnai_streams_messages_handed_back_total";
/// Counter `{stream, group, consumer}`: poison messages dead-lettered by
/// reads and claims (also counted in [`MESSAGES_DEAD_LETTERED`]).
pub const POISON_MESSAGES: &str = "xnai_streams_poison_messages_total";
/// Counter `{stream, group, consumer}`: poison messages the dead-letter
/// queue refused; they stay pending.
pub const POISON_DLQ_FAILURES: &str = "xnai_streams_poison_dlq_failures_total";
/// Counter `{stream, group}`: entries that could not be decoded, delivered
/// as failed messages.
pub const MALFORMED_MESSAGES: &str = "xnai_streams_malformed_messages_total";
/// Counter `{stream, group}`: pending entries found deleted (trimmed while
/// pending) and acknowledged.
pub const PENDING_DELETED: &str = "xnai_streams_pending_deleted_total";
/// Counter `{group}`: times a lost group was recreated (`NOGROUP`).
pub const GROUPS_RECREATED: &str = "xnai_streams_groups_recreated_total";
/// Counter `{group}`: due retries moved into ready streams.
pub const RETRIES_PROMOTED: &str = "xnai_streams_retries_promoted_total";
/// Counter `{group}`: promotions of due retries that failed.
pub const PROMOTE_FAILURES: &str = "xnai_streams_promote_failures_total";
/// Counter `{group}`: stale consumers removed by `prune_consumers`.
pub const CONSUMERS_PRUNED: &str = "xnai_streams_consumers_pruned_total";

/// Gauge `{stream, group}`: entries not yet delivered to the group, when
/// the backend knows.
pub const GROUP_LAG: &str = "xnai_streams_group_lag";
/// Gauge `{stream, group}`: entries delivered to the group and not yet
/// acknowledged.
pub const GROUP_PENDING: &str = "xnai_streams_group_pending";
/// Gauge `{stream, group}`: age of the group's oldest pending entry, in
/// seconds (0 when nothing is pending).
pub const OLDEST_PENDING_SECONDS: &str = "xnai_streams_oldest_pending_seconds";
/// Gauge `{stream, group}`: pending entries idle longer than the group's
/// claim threshold (counted up to 1000).
pub const GROUP_CLAIMABLE: &str = "xnai_streams_group_claimable";
/// Gauge `{stream, group}`: retries scheduled and not yet due.
pub const SCHEDULED_RETRIES: &str = "xnai_streams_scheduled_retries";
/// Gauge `{stream, group}`: due retries waiting in the group's ready stream.
pub const READY_RETRIES: &str = "xnai_streams_ready_retries";
/// Gauge: entries in the dead-letter stream(s).
pub const DLQ_LENGTH: &str = "xnai_streams_dlq_length";

/// Histogram `{stream, group, consumer, outcome}`: how long handlers ran,
/// in seconds.
pub const HANDLER_DURATION_SECONDS: &str = "xnai_streams_handler_duration_seconds";
/// Histogram `{stream, group, consumer}`: seconds from a message's first
/// send (its `ts`) to its handling.
pub const END_TO_END_SECONDS: &str = "xnai_streams_end_to_end_seconds";

//! Observability: metrics through the [`metrics`] facade, spans through
//! [`tracing`], trace context across processes, and the helpers a consume
//! loop calls.
//!
//! Every [`Manager`](crate::Manager) operation counts what it did (the
//! counters of [`metric`], with `stream`, `group` and `consumer` labels)
//! and runs in a `tracing` span at debug level. Nothing is recorded
//! anywhere until the application installs a recorder (a Prometheus
//! exporter, say) and a subscriber; without them both cost next to
//! nothing.
//!
//! A consume loop adds what only it knows:
//!
//! - [`record_group_gauges`] on a ticker: lag, pending entries and the
//!   oldest one's age, claimable entries, retries, the dead-letter length;
//! - [`record_handler`] and [`record_end_to_end`] around each handler call;
//! - [`set_remote_parent`] before entering a handler's span, so the trace a
//!   sender started goes on in the handler (feature `otel`: sends write the
//!   current span's W3C `traceparent` into the envelope, see
//!   [`StreamMessage::traceparent`]).
//!
//! ```
//! use std::time::Duration;
//! use streams_core::observe;
//!
//! // What a consume loop does around each handler call.
//! observe::record_handler("jobs", "workers", "worker-1", "ack", Duration::from_millis(42));
//! ```

mod event;
pub mod metric;
mod trace;

use std::time::{Duration, SystemTime};

use metrics::{Label, Unit};

use crate::api::StreamManager;
use crate::error::Result;
use crate::manager::{GroupHealth, HealthReport};
use crate::message::StreamMessage;

pub(crate) use event::{Count, Labels, emit};
pub use trace::set_remote_parent;
pub(crate) use trace::{current as current_traceparent, is_valid as valid_traceparent};

/// Registers the unit and a description of every metric with the installed
/// recorder, for exporters that show them (`# HELP` lines in Prometheus).
/// Call it once, after installing the recorder; metrics are recorded
/// whether it is called or not.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for (name, help) in [
        (metric::MESSAGES_SENT, "Messages sent."),
        (
            metric::MESSAGES_READ,
            "Messages returned by reads and claims.",
        ),
        (metric::MESSAGES_ACKED, "Messages acknowledged."),
        (metric::MESSAGES_RETRIED, "Retries scheduled."),
        (
            metric::MESSAGES_DEAD_LETTERED,
            "Messages written to the dead-letter queue.",
        ),
        (metric::MESSAGES_CLAIMED, "Messages taken over by claims."),
        (
            metric::MESSAGES_HANDED_BACK,
            "Messages handed back unhandled.",
        ),
        (metric::POISON_MESSAGES, "Poison messages dead-lettered."),
        (
            metric::POISON_DLQ_FAILURES,
            "Poison messages the dead-letter queue refused.",
        ),
        (
            metric::MALFORMED_MESSAGES,
            "Entries that could not be decoded.",
        ),
        (
            metric::PENDING_DELETED,
            "Pending entries found deleted and acknowledged.",
        ),
        (metric::GROUPS_RECREATED, "Lost consumer groups recreated."),
        (
            metric::RETRIES_PROMOTED,
            "Due retries moved into ready streams.",
        ),
        (
            metric::PROMOTE_FAILURES,
            "Promotions of due retries that failed.",
        ),
        (metric::CONSUMERS_PRUNED, "Stale consumers removed."),
    ] {
        describe_counter!(name, Unit::Count, help);
    }
    for (name, unit, help) in [
        (
            metric::GROUP_LAG,
            Unit::Count,
            "Entries not yet delivered to the group.",
        ),
        (
            metric::GROUP_PENDING,
            Unit::Count,
            "Entries delivered to the group and not acknowledged.",
        ),
        (
            metric::OLDEST_PENDING_SECONDS,
            Unit::Seconds,
            "Age of the group's oldest pending entry.",
        ),
        (
            metric::GROUP_CLAIMABLE,
            Unit::Count,
            "Pending entries idle past the group's claim threshold.",
        ),
        (
            metric::SCHEDULED_RETRIES,
            Unit::Count,
            "Retries scheduled and not yet due.",
        ),
        (
            metric::READY_RETRIES,
            Unit::Count,
            "Due retries in the group's ready stream.",
        ),
        (
            metric::DLQ_LENGTH,
            Unit::Count,
            "Entries in the dead-letter stream(s).",
        ),
    ] {
        describe_gauge!(name, unit, help);
    }
    describe_histogram!(
        metric::HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "How long message handlers ran."
    );
    describe_histogram!(
        metric::END_TO_END_SECONDS,
        Unit::Seconds,
        "Time from a message's first send to its handling."
    );
}

/// Sets the gauges of one group from its
/// [`group_health`](StreamManager::group_health), for each of its streams:
/// [`metric::GROUP_LAG`] (when the backend knows it),
/// [`metric::GROUP_PENDING`], [`metric::OLDEST_PENDING_SECONDS`] (0 when
/// nothing is pending), [`metric::GROUP_CLAIMABLE`],
/// [`metric::SCHEDULED_RETRIES`] and [`metric::READY_RETRIES`], labelled
/// `{stream, group}`; and [`metric::DLQ_LENGTH`] from
/// [`get_stats`](StreamManager::get_stats). A consume loop calls it on a
/// ticker (every 15 s, say): it costs a few round trips per stream.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
/// use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, observe};
/// use streams_memory::MemoryBackend;
///
/// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default())?;
/// manager.create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"])).await?;
/// observe::record_group_gauges(&manager, "workers").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`StreamError::GroupNotFound`](crate::StreamError::GroupNotFound),
/// connection errors; no gauge is set then.
pub async fn record_group_gauges<M: StreamManager + ?Sized>(
    manager: &M,
    group: &str,
) -> Result<()> {
    let health = manager.group_health(group).await?;
    let dlq = manager.get_stats().await?.dlq_entries;
    set_group_gauges(&health);
    metrics::gauge!(metric::DLQ_LENGTH).set(dlq as f64);
    Ok(())
}

/// Sets the gauges [`record_group_gauges`] sets, for every group of a
/// [`health`](StreamManager::health) report, and [`metric::DLQ_LENGTH`]
/// from it: for a process that checks health anyway (a dashboard, a
/// monitoring sidecar) and exports what it saw without reading it again.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
/// use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, observe};
/// use streams_memory::MemoryBackend;
///
/// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default())?;
/// manager.create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"])).await?;
/// observe::record_health_gauges(&manager.health().await?);
/// # Ok(()) }
/// ```
pub fn record_health_gauges(report: &HealthReport) {
    for group in &report.groups {
        set_group_gauges(group);
    }
    metrics::gauge!(metric::DLQ_LENGTH).set(report.dlq_entries as f64);
}

/// The gauges of one group, for each of its streams.
fn set_group_gauges(health: &GroupHealth) {
    for s in &health.streams {
        let labels = || {
            vec![
                Label::new(metric::STREAM, s.stream.clone()),
                Label::new(metric::GROUP, health.group.clone()),
            ]
        };
        if let Some(lag) = s.lag {
            metrics::gauge!(metric::GROUP_LAG, labels()).set(lag as f64);
        }
        metrics::gauge!(metric::GROUP_PENDING, labels()).set(s.pending as f64);
        let oldest = s.oldest_pending_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        metrics::gauge!(metric::OLDEST_PENDING_SECONDS, labels()).set(oldest);
        metrics::gauge!(metric::GROUP_CLAIMABLE, labels()).set(s.claimable as f64);
        metrics::gauge!(metric::SCHEDULED_RETRIES, labels()).set(s.scheduled_retries as f64);
        metrics::gauge!(metric::READY_RETRIES, labels()).set(s.ready_retries as f64);
    }
}

/// Records how long a handler ran and how it ended, in
/// [`metric::HANDLER_DURATION_SECONDS`] `{stream, group, consumer, outcome}`.
/// `outcome` is a short word of the caller's (`ack`, `retry`, `dlq`,
/// `error`, ...); keep the set of words small, as each makes a series.
pub fn record_handler(
    stream: &str,
    group: &str,
    consumer: &str,
    outcome: &str,
    duration: Duration,
) {
    let labels = vec![
        Label::new(metric::STREAM, stream.to_owned()),
        Label::new(metric::GROUP, group.to_owned()),
        Label::new(metric::CONSUMER, consumer.to_owned()),
        Label::new(metric::OUTCOME, outcome.to_owned()),
    ];
    metrics::histogram!(metric::HANDLER_DURATION_SECONDS, labels).record(duration.as_secs_f64());
}

/// Records the time from the message's first send (its `ts`, kept through
/// retries, so a retried message counts its waits too) to now, in
/// [`metric::END_TO_END_SECONDS`] `{stream, group, consumer}`. A message
/// whose timestamp cannot be read is not recorded; one stamped in the
/// future by a skewed clock counts as 0.
pub fn record_end_to_end(message: &StreamMessage, group: &str, consumer: &str) {
    let Some(age) = age_of(&message.timestamp, SystemTime::now()) else {
        return;
    };
    let labels = vec![
        Label::new(metric::STREAM, message.stream.clone()),
        Label::new(metric::GROUP, group.to_owned()),
        Label::new(metric::CONSUMER, consumer.to_owned()),
    ];
    metrics::histogram!(metric::END_TO_END_SECONDS, labels).record(age.as_secs_f64());
}

/// How long before `now` the RFC 3339 time `ts` was, if it can be read.
fn age_of(ts: &str, now: SystemTime) -> Option<Duration> {
    let sent = humantime::parse_rfc3339_weak(ts).ok()?;
    Some(now.duration_since(sent).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_come_from_rfc3339_timestamps() {
        let now = humantime::parse_rfc3339("2026-01-01T00:00:10.500Z").unwrap();
        assert_eq!(
            age_of("2026-01-01T00:00:00.000Z", now),
            Some(Duration::from_millis(10_500))
        );
        assert_eq!(
            age_of("2026-01-01T00:00:20Z", now),
            Some(Duration::ZERO),
            "a future time counts as 0"
        );
        assert_eq!(age_of("", now), None);
        assert_eq!(age_of("yesterday", now), None);
    }
}

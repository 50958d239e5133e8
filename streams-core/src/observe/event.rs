//! What the manager counts, and how each count becomes a metric.

use metrics::Label;

use super::metric;

/// One kind of thing the manager counts: a field of
/// [`Stats`](crate::Stats) and a counter of [`metric`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    Sent,
    Read,
    Acked,
    Retried,
    DeadLettered,
    Claimed,
    HandedBack,
    Poison,
    PoisonDlqFailed,
    Malformed,
    PendingDeleted,
    GroupRecreated,
    Promoted,
    PromoteFailed,
    ConsumersPruned,
}

/// Which labels a counter has.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Stream,
    StreamGroup,
    StreamGroupConsumer,
    Group,
}

impl Count {
    /// The counter's name.
    pub(crate) const fn metric(self) -> &'static str {
        match self {
            Self::Sent => metric::MESSAGES_SENT,
            Self::Read => metric::MESSAGES_READ,
            Self::Acked => metric::MESSAGES_ACKED,
            Self::Retried => metric::MESSAGES_RETRIED,
            Self::DeadLettered => metric::MESSAGES_DEAD_LETTERED,
            Self::Claimed => metric::MESSAGES_CLAIMED,
            Self::HandedBack => metric::MESSAGES_HANDED_BACK,
            Self::Poison => metric::POISON_MESSAGES,
            Self::PoisonDlqFailed => metric::POISON_DLQ_FAILURES,
            Self::Malformed => metric::MALFORMED_MESSAGES,
            Self::PendingDeleted => metric::PENDING_DELETED,
            Self::GroupRecreated => metric::GROUPS_RECREATED,
            Self::Promoted => metric::RETRIES_PROMOTED,
            Self::PromoteFailed => metric::PROMOTE_FAILURES,
            Self::ConsumersPruned => metric::CONSUMERS_PRUNED,
        }
    }

    const fn shape(self) -> Shape {
        match self {
            Self::Sent => Shape::Stream,
            Self::Malformed | Self::PendingDeleted => Shape::StreamGroup,
            Self::GroupRecreated | Self::Promoted | Self::PromoteFailed | Self::ConsumersPruned => {
                Shape::Group
            }
            Self::Read
            | Self::Acked
            | Self::Retried
            | Self::DeadLettered
            | Self::Claimed
            | Self::HandedBack
            | Self::Poison
            | Self::PoisonDlqFailed => Shape::StreamGroupConsumer,
        }
    }
}

/// The label values of one event. A counter takes the labels of its shape
/// and no others, so every series of a counter has the same label names; a
/// value not given is empty.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Labels<'a> {
    pub(crate) stream: Option<&'a str>,
    pub(crate) group: Option<&'a str>,
    pub(crate) consumer: Option<&'a str>,
}

impl<'a> Labels<'a> {
    /// An event on a stream.
    pub(crate) fn stream(stream: &'a str) -> Self {
        Self {
            stream: Some(stream),
            ..Self::default()
        }
    }

    /// An event of a group.
    pub(crate) fn group(group: &'a str) -> Self {
        Self {
            group: Some(group),
            ..Self::default()
        }
    }

    /// An event of a group's consumer on a stream.
    pub(crate) fn delivery(stream: &'a str, group: &'a str, consumer: &'a str) -> Self {
        Self {
            stream: Some(stream),
            group: Some(group),
            consumer: Some(consumer),
        }
    }

    /// An event of a group on a stream.
    pub(crate) fn stream_group(stream: &'a str, group: &'a str) -> Self {
        Self {
            stream: Some(stream),
            group: Some(group),
            consumer: None,
        }
    }

    fn to_labels(self, shape: Shape) -> Vec<Label> {
        let value = |v: Option<&str>| v.unwrap_or_default().to_owned();
        let stream = || Label::new(metric::STREAM, value(self.stream));
        let group = || Label::new(metric::GROUP, value(self.group));
        let consumer = || Label::new(metric::CONSUMER, value(self.consumer));
        match shape {
            Shape::Stream => vec![stream()],
            Shape::StreamGroup => vec![stream(), group()],
            Shape::StreamGroupConsumer => vec![stream(), group(), consumer()],
            Shape::Group => vec![group()],
        }
    }
}

/// Adds `n` to the counter of `count` with `labels`, through the `metrics`
/// facade (a no-op without a recorder).
pub(crate) fn emit(count: Count, labels: Labels<'_>, n: u64) {
    metrics::counter!(count.metric(), labels.to_labels(count.shape())).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_one_label_shape() {
        let labels = Labels::delivery("s", "g", "c");
        let names = |count: Count| -> Vec<String> {
            labels
                .to_labels(count.shape())
                .iter()
                .map(|l| l.key().to_owned())
                .collect()
        };
        assert_eq!(names(Count::Sent), ["stream"]);
        assert_eq!(names(Count::Acked), ["stream", "group", "consumer"]);
        assert_eq!(names(Count::Malformed), ["stream", "group"]);
        assert_eq!(names(Count::GroupRecreated), ["group"]);
        // A value not given is empty, never left out.
        let partial = Labels::stream("s").to_labels(Shape::StreamGroupConsumer);
        assert_eq!(partial.len(), 3);
        assert_eq!(partial[2].value(), "");
    }
}

//! Messages as users see them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::Fields;
use crate::codec;
use crate::error::{Result, StreamError};

/// The life-cycle states of a message (the spec's `MessageStatus`).
///
/// Serialized in lowercase, as in the spec.
///
/// ```
/// use streams_core::MessageStatus;
/// assert_eq!(serde_json::to_string(&MessageStatus::Dlq).unwrap(), "\"dlq\"");
/// assert_eq!(MessageStatus::Processing.to_string(), "processing");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MessageStatus {
    /// Delivered (or waiting to be) and not yet acknowledged.
    #[default]
    Pending,
    /// Being handled.
    Processing,
    /// Handled and acknowledged.
    Completed,
    /// Handling failed, or the entry could not be decoded (see `error`).
    Failed,
    /// A retry copy of a message that failed before.
    Retry,
    /// In the dead-letter queue.
    Dlq,
}

impl MessageStatus {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retry => "retry",
            Self::Dlq => "dlq",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a message reached this consumer: set on messages returned by
/// `read_messages`, `claim_pending_messages` and `subscribe`.
///
/// The names are shared: every message of a read holds the same two
/// strings, not copies (`&*delivery.group` is the name as a `&str`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The consumer group it was read through.
    pub group: Arc<str>,
    /// The consumer that holds it.
    pub consumer: Arc<str>,
    /// Whether it was read from the group's private retry stream rather than
    /// from the source stream itself. Acknowledgements go where it was read.
    pub from_retry: bool,
    /// How many times this copy has been handed to a consumer, this time
    /// included: 1 on the first delivery. More than 1 means an earlier
    /// delivery ended without an ack or a move (its consumer crashed or
    /// stalled, or the message was claimed from it). Deliveries handed back
    /// unhandled (`release`) are not counted.
    pub deliveries: u64,
}

impl Delivery {
    /// A delivery through `group` to `consumer`, the `deliveries`th of its
    /// copy, read from the source stream ([`from_retry`](Self::from_retry)
    /// for the group's retry stream). For messages an operator acts on
    /// without having read them (handing back a stuck consumer's entries
    /// with [`release`](crate::StreamManager::release), say), built from a
    /// [`PendingInfo`](crate::PendingInfo).
    ///
    /// ```
    /// use serde_json::Map;
    /// use streams_core::{Delivery, StreamMessage};
    ///
    /// let mut held = StreamMessage::new("xnai:agent_bus", Map::new());
    /// held.id = "1795645134783-0".to_owned();
    /// held.delivery = Some(Delivery::new("agent_wavefront", "agent-2", 1));
    /// assert_eq!(held.group(), Some("agent_wavefront"));
    /// ```
    pub fn new(group: impl Into<Arc<str>>, consumer: impl Into<Arc<str>>, deliveries: u64) -> Self {
        Self {
            group: group.into(),
            consumer: consumer.into(),
            from_retry: false,
            deliveries,
        }
    }

    /// The same delivery, read from the group's private retry stream.
    #[must_use]
    pub fn from_retry(mut self, from_retry: bool) -> Self {
        self.from_retry = from_retry;
        self
    }

    /// Whether an earlier delivery of this copy ended without being settled:
    /// the message may have crashed its last consumer. The runner handles
    /// such messages alone.
    pub fn is_redelivery(&self) -> bool {
        self.deliveries > 1
    }
}

/// Where a dead-letter entry came from and why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The stream the message was read from.
    pub origin_stream: String,
    /// Its entry id there.
    pub origin_id: String,
    /// The group that gave up on it, if one did.
    pub group: Option<String>,
    /// The consumer that gave up on it, if known.
    pub consumer: Option<String>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When (RFC 3339, UTC).
    pub failed_at: String,
    /// How many times it had been delivered, when known.
    pub deliveries: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The fields of an entry exactly as stored, kept for entries that do not
/// follow the envelope format, so a dead-letter move can carry them verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawFields(pub Fields);

impl RawFields {
    /// The fields as `(name, value)` byte strings.
    pub fn fields(&self) -> &[(Bytes, Bytes)] {
        &self.0
    }
}

/// One message of a stream (the spec's `StreamMessage`).
///
/// `data` is a JSON object, the spec's `Dict[str, Any]`. Messages that came
/// through a consumer group carry [`Delivery`] details, which
/// `acknowledge`, `retry_message` and `send_to_dlq` use. A message keeps
/// the bytes its `data` was stored as, so retry and dead-letter copies carry
/// them unchanged (numbers beyond 64 bits written by other languages, say)
/// unless `data` was changed.
///
/// ```
/// use bytes::Bytes;
/// use streams_core::{MessageStatus, StreamMessage};
///
/// let fields = vec![
///     (Bytes::from_static(b"data"), Bytes::from_static(br#"{"task_id":"R003-1"}"#)),
///     (Bytes::from_static(b"ts"), Bytes::from_static(b"2026-02-22T10:00:00.000Z")),
/// ];
/// let msg = StreamMessage::from_entry("xnai:agent_bus", "1700000000000-0", &fields);
/// assert_eq!(msg.data["task_id"], "R003-1");
/// assert_eq!(msg.status, MessageStatus::Pending);
/// assert_eq!(msg.to_json()["stream"], "xnai:agent_bus");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamMessage {
    /// The entry id, as the backend gave it (`<ms>-<seq>` on Redis).
    pub id: String,
    /// The stream name (the logical one, also for retry copies).
    pub stream: String,
    /// The payload.
    pub data: Map<String, Value>,
    /// When the message was first sent (RFC 3339, UTC); kept through retries.
    pub timestamp: String,
    /// How many of its attempts failed and were retried (`retry_message`):
    /// 0 on the first attempt. Deliveries cut short by a crash are counted
    /// in [`Delivery::deliveries`], not here.
    pub retry_count: u32,
    /// Its state.
    pub status: MessageStatus,
    /// The last error, for failed, retried and dead-lettered messages.
    pub error: Option<String>,
    /// The producer's message id: unique per send, kept through retries and
    /// dead-letter moves, so consumers can deduplicate. `None` for entries
    /// written by other producers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// The sender's W3C Trace Context `traceparent`
    /// (`00-<trace id>-<span id>-<flags>`), kept through retries and
    /// dead-letter moves. Sends write it with the `otel` feature when the
    /// current span has an OpenTelemetry context; a runner continues the
    /// trace with [`observe::set_remote_parent`](crate::observe::set_remote_parent).
    /// Only valid values are kept: an invalid one is read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Provenance, for entries of a dead-letter stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// For a message replayed from the dead-letter queue: the id of the
    /// dead-letter entry it was last replayed from. Kept through retries
    /// and dead-letter moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_from: Option<String>,
    /// How many times the message has been replayed from the dead-letter
    /// queue (0: never). Each replay starts a fresh retry budget
    /// (`retry_count` 0), so this is what tells a message that keeps coming
    /// back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replay_count: u32,
    /// How the message was delivered, if it came through a consumer group.
    #[serde(skip)]
    pub delivery: Option<Delivery>,
    /// The stored fields, for entries that do not follow the envelope format.
    #[serde(skip)]
    pub raw: Option<RawFields>,
    /// The bytes `data` was decoded from.
    #[serde(skip)]
    pub(crate) payload: Option<Bytes>,
}

impl StreamMessage {
    /// A new message for `stream`, not yet sent: no id, timestamp now.
    pub fn new(stream: impl Into<String>, data: Map<String, Value>) -> Self {
        Self {
            stream: stream.into(),
            data,
            timestamp: codec::now_rfc3339(),
            ..Self::blank("", String::new())
        }
    }

    /// A message of `stream` with id `id` and nothing else, for decoding:
    /// no timestamp, empty `data`.
    pub(crate) fn blank(stream: &str, id: String) -> Self {
        Self {
            id,
            stream: stream.to_owned(),
            data: Map::new(),
            timestamp: String::new(),
            retry_count: 0,
            status: MessageStatus::Pending,
            error: None,
            mid: None,
            traceparent: None,
            dead_letter: None,
            replayed_from: None,
            replay_count: 0,
            delivery: None,
            raw: None,
            payload: None,
        }
    }

    /// Decodes a stored entry (the spec's `from_redis`).
    ///
    /// Never fails and never panics: an entry that cannot be decoded becomes a
    /// message whose `status` is [`MessageStatus::Failed`], with `error` saying
    /// why and `raw` holding the stored fields, so it can be dead-lettered as it is.
    /// Entries of other producers (no `data` field) are read too: each field
    /// becomes a string in `data`. See `docs/wire-format.md`. Without a `ts`
    /// field the timestamp stays empty here; messages read through a
    /// manager take the time the backend stored the entry.
    pub fn from_entry(stream: &str, id: &str, fields: &[(Bytes, Bytes)]) -> Self {
        codec::decode(stream, id, fields)
    }

    /// The message as a JSON object (the spec's `to_dict`), with the keys
    /// `id`, `stream`, `data`, `timestamp`, `retry_count`, `status`, `error`,
    /// plus `mid`, `traceparent`, `dead_letter`, `replayed_from` and
    /// `replay_count` when set.
    pub fn to_json(&self) -> Value {
        // A struct of strings, integers and JSON values always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Parses a message from the JSON form of [`to_json`](Self::to_json).
    ///
    /// # Errors
    /// [`StreamError::Decode`] if the JSON does not describe a message.
    pub fn from_json(value: Value) -> Result<Self> {
        serde_json::from_value(value).map_err(|e| StreamError::Decode {
            what: "stream message json".to_owned(),
            message: e.to_string(),
        })
    }

    /// Whether the entry could not be decoded (its `data` is a best-effort view).
    pub fn is_malformed(&self) -> bool {
        self.status == MessageStatus::Failed && self.raw.is_some()
    }

    /// The group this message was read through, if any.
    pub fn group(&self) -> Option<&str> {
        self.delivery.as_ref().map(|d| &*d.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn to_json_has_the_spec_keys() {
        let mut data = Map::new();
        data.insert("k".into(), json!(1));
        let mut m = StreamMessage::new("s", data);
        m.id = "1-0".into();
        let v = m.to_json();
        for key in [
            "id",
            "stream",
            "data",
            "timestamp",
            "retry_count",
            "status",
            "error",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "pending");
        assert_eq!(v["error"], Value::Null);
        assert!(v.get("mid").is_none());
        let back = StreamMessage::from_json(v).unwrap();
        assert_eq!(back.id, "1-0");
        assert_eq!(back.data["k"], 1);
    }

    #[test]
    fn from_json_rejects_garbage() {
        assert!(matches!(
            StreamMessage::from_json(json!([1])),
            Err(StreamError::Decode { .. })
        ));
    }
}

/// How to retry a message ([`StreamManager::retry_with`](crate::StreamManager::retry_with)).
///
/// ```
/// use std::time::Duration;
/// use streams_core::RetryOptions;
///
/// let later = RetryOptions::new()
///     .with_error("rate limited")
///     .with_delay(Duration::from_secs(30));
/// assert_eq!(later.delay, Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryOptions {
    /// The error to record in the retry copy. Default: the message's own.
    pub error: Option<String>,
    /// When the retry falls due. Default: the group's backoff for the
    /// message's `retry_count`, with jitter.
    pub delay: Option<Duration>,
}

impl RetryOptions {
    /// The group's backoff, the message's error.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `error` as the message's last error.
    #[must_use]
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Retries after `delay` instead of the backoff.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

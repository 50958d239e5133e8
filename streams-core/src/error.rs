//! The one error type of the library.

use std::error::Error as StdError;
use std::time::Duration;

/// A duration as people read it in an error: whole milliseconds
/// (`2s 999ms`), never nanoseconds.
pub(crate) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return "<1ms".to_owned();
    }
    let rounded = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
    humantime::format_duration(rounded).to_string()
}

/// A boxed error from a lower layer (the Redis client, an I/O error, ...).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`StreamError`] as the default error.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to streams.
///
/// Messages are lowercase and name the stream, group or id involved. Use
/// [`StreamError::is_retryable`] to decide whether trying again later can help.
///
/// ```
/// use streams_core::StreamError;
///
/// let err = StreamError::GroupNotFound { group: "agent_wavefront".into() };
/// assert_eq!(err.to_string(), "consumer group `agent_wavefront` is not known: create it with create_consumer_group first");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The backend could not be reached, or the connection broke mid-command.
    ///
    /// When this interrupts a write, the write may or may not have been applied.
    #[error("{backend} connection error: {message}")]
    Connection {
        /// Which backend (`"redis"`, `"memory"`).
        backend: &'static str,
        /// What happened.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// An operation took longer than allowed.
    #[error("{operation} timed out after {}", crate::error::show_duration(*.after))]
    Timeout {
        /// The operation that timed out, e.g. `XREADGROUP`.
        operation: String,
        /// How long it was given.
        after: Duration,
    },

    /// The group name is neither created by this manager nor in the group registry.
    #[error("consumer group `{group}` is not known: create it with create_consumer_group first")]
    GroupNotFound {
        /// The group asked for.
        group: String,
    },

    /// The server reports that a group does not exist on a stream (`NOGROUP`):
    /// the stream was deleted, or the server restarted without persistence.
    ///
    /// The manager handles this itself by recreating the group; it reaches users
    /// only when recreating did not help.
    #[error("consumer group `{group}` does not exist on stream `{stream}`")]
    NoGroup {
        /// The stream key.
        stream: String,
        /// The group.
        group: String,
    },

    /// A stream, group, consumer or namespace name that cannot be used.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for: `"stream"`, `"group"`, `"consumer"` or `"namespace"`.
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// An entry id or cursor given by a caller that the backend cannot read.
    #[error("invalid entry id {id:?}: {reason}")]
    InvalidId {
        /// The id as given.
        id: String,
        /// What the backend expects instead.
        reason: String,
    },

    /// The encoded payload is larger than `ManagerConfig::max_message_bytes`.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the encoded `data` field.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The payload nests JSON arrays and objects deeper than readers can
    /// decode ([`MAX_PAYLOAD_DEPTH`](crate::MAX_PAYLOAD_DEPTH) levels).
    #[error("payload nests {depth} levels deep; readers decode at most {limit}")]
    PayloadTooDeep {
        /// Levels of nesting found (the payload object itself is level 1).
        depth: usize,
        /// The most a reader decodes.
        limit: usize,
    },

    /// The payload is not a JSON object (the spec's `Dict[str, Any]`).
    #[error("payload must be a JSON object, found {found}")]
    PayloadNotObject {
        /// The JSON type that was given: `"array"`, `"string"`, ...
        found: &'static str,
    },

    /// A value could not be encoded (serialized) for storage.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why it failed.
        message: String,
    },

    /// A message or value could not be decoded.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was being decoded (names the stream and id where known).
        what: String,
        /// Why it failed.
        message: String,
    },

    /// A move (retry, dead-letter) was refused because the entry is no longer
    /// pending for this consumer: it was acknowledged already, or claimed by
    /// another consumer while this one worked on it.
    #[error("message `{id}` on `{stream}` is no longer pending for consumer `{consumer}` in group `{group}`{}",
        .owner.as_ref().map(|o| format!(" (now owned by `{o}`)")).unwrap_or_default())]
    NotOwner {
        /// The stream the message belongs to.
        stream: String,
        /// The group.
        group: String,
        /// The entry id.
        id: String,
        /// The consumer that tried to move it.
        consumer: String,
        /// The consumer that owns it now, if any does.
        owner: Option<String>,
    },

    /// The message was delivered to another group than the one named: only
    /// the group that delivered it can settle it.
    #[error("message `{id}` was delivered to group `{delivered_to}`, not `{given}`")]
    WrongGroup {
        /// The message id.
        id: String,
        /// The group that delivered the message.
        delivered_to: String,
        /// The group named in the call.
        given: String,
    },

    /// The operation needs a message that was read through a consumer group.
    #[error("message `{id}` was not read through a consumer group, so it cannot be {operation}")]
    NotDelivered {
        /// The message id.
        id: String,
        /// What was attempted, e.g. `"retried"`.
        operation: &'static str,
    },

    /// The dead-letter queue is disabled in [`DlqConfig`](crate::DlqConfig).
    #[error("the dead-letter queue is disabled; message `{id}` stays pending")]
    DlqDisabled {
        /// The message that could not be dead-lettered.
        id: String,
    },

    /// Something the backend or its server cannot do: a server too old for
    /// a command the backend needs, or a feature the transport lacks.
    #[error("{feature} is not supported: {reason}")]
    Unsupported {
        /// What was asked for, e.g. `XAUTOCLAIM` or `claim_pending_messages`.
        feature: String,
        /// Why it cannot be done, e.g. `it needs Redis 7.0.0 or newer; the server is 6.2.14`.
        reason: String,
    },

    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },

    /// The server refused a command for the credentials in use (a Redis
    /// ACL answering `NOPERM`): the user may not run the command, or not on
    /// one of its keys. Not retryable: the user's permissions must change
    /// (`docs/security.md` lists what the library needs).
    #[error("{backend} refused `{command}`: permission denied: {message}")]
    PermissionDenied {
        /// Which backend (`"redis"`).
        backend: &'static str,
        /// The command refused, as the server names it (`XACK`,
        /// `XGROUP CREATE`); when the server does not say, the command or
        /// script that was sent.
        command: String,
        /// The server's words, and what the library knows besides (the
        /// commands a refused script runs).
        message: String,
    },

    /// The server answered and refused to write: it is out of memory (Redis
    /// over `maxmemory` under the `noeviction` policy) or read-only (a
    /// replica). Nothing was written.
    ///
    /// Not [retryable](Self::is_retryable): the refusal lasts until an
    /// operator frees memory, raises the limit or points clients at a
    /// primary, and a send retried in a loop would only hide it. What is
    /// already stored stays readable, and acknowledgements free nothing
    /// but are still accepted (see `docs/architecture.md`, "Out of memory is
    /// a refusal").
    #[error("{backend} refused {operation}: {reason} ({message})")]
    WriteRefused {
        /// Which backend (`"redis"`).
        backend: &'static str,
        /// The command or script refused, e.g. `XADD`.
        operation: String,
        /// Why.
        reason: Refusal,
        /// What the server said, e.g. `OOM command not allowed when used
        /// memory > 'maxmemory'.`
        message: String,
    },

    /// The entries were written, but the [`Durability`](crate::Durability)
    /// asked for was not confirmed in time: too few replicas acknowledged
    /// them (or fsynced them). They are on the server and will be
    /// delivered, unless a failover before they reach a replica loses
    /// them.
    ///
    /// Not [retryable](Self::is_retryable): sending again would duplicate
    /// entries that survive. The ids say which entries to look for.
    #[error(
        "{} message(s) sent to `{stream}` are not confirmed durable: {replicas} of {wanted_replicas} replica(s) confirmed them within {} ms{}; a failover may lose them",
        .ids.len(), .timeout.as_millis(), fsync_note(*.fsync, *.fsynced_locally)
    )]
    DurabilityNotConfirmed {
        /// The stream written to.
        stream: String,
        /// The ids of the entries written, in order.
        ids: Vec<String>,
        /// Replicas asked for.
        wanted_replicas: u32,
        /// Replicas that confirmed (had them, or with `fsync`, had fsynced them).
        replicas: u32,
        /// Whether fsync was asked for.
        fsync: bool,
        /// Whether the server itself fsynced them (always `false` without `fsync`).
        fsynced_locally: bool,
        /// How long the confirmations were waited for.
        timeout: std::time::Duration,
    },

    /// The manager was closed.
    #[error("the stream manager is closed")]
    Closed,

    /// Any other error reported by the backend.
    #[error("{backend} error: {source}")]
    Backend {
        /// Which backend (`"redis"`, `"memory"`).
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// The fsync part of a [`StreamError::DurabilityNotConfirmed`] message.
fn fsync_note(fsync: bool, fsynced_locally: bool) -> &'static str {
    match (fsync, fsynced_locally) {
        (false, _) => "",
        (true, true) => " (fsynced on the server)",
        (true, false) => " (not fsynced on the server)",
    }
}

/// Why a server refused a write ([`StreamError::WriteRefused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The server is out of memory (Redis: `OOM`, over `maxmemory` with
    /// the `noeviction` policy).
    #[error("the server is out of memory")]
    OutOfMemory,
    /// The server only serves reads (Redis: `READONLY`, a replica).
    #[error("the server is read-only")]
    ReadOnly,
}

impl StreamError {
    /// Whether trying the same operation again later may succeed.
    ///
    /// Connection failures and timeouts are temporary; bad input, unknown groups
    /// and a closed manager are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connection { .. } | Self::Timeout { .. } | Self::NoGroup { .. }
        )
    }

    /// Builds a [`StreamError::Backend`] from any error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Builds a [`StreamError::Connection`] without an underlying error.
    pub fn connection(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Connection {
            backend,
            message: message.into(),
            source: None,
        }
    }

    /// Builds a [`StreamError::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed() {
        let e = StreamError::PayloadTooLarge {
            size: 2_000_000,
            limit: 1_048_576,
        };
        assert_eq!(
            e.to_string(),
            "payload of 2000000 bytes exceeds the limit of 1048576 bytes"
        );
        let e = StreamError::NotOwner {
            stream: "s".into(),
            group: "g".into(),
            id: "1-0".into(),
            consumer: "a".into(),
            owner: Some("b".into()),
        };
        assert!(e.to_string().contains("now owned by `b`"));
        let e = StreamError::DurabilityNotConfirmed {
            stream: "jobs".into(),
            ids: vec!["1-0".into(), "1-1".into()],
            wanted_replicas: 2,
            replicas: 1,
            fsync: true,
            fsynced_locally: true,
            timeout: std::time::Duration::from_millis(250),
        };
        assert_eq!(
            e.to_string(),
            "2 message(s) sent to `jobs` are not confirmed durable: 1 of 2 replica(s) \
             confirmed them within 250 ms (fsynced on the server); a failover may lose them"
        );
        assert!(!e.is_retryable());
        let e = StreamError::WriteRefused {
            backend: "redis",
            operation: "XADD".into(),
            reason: Refusal::OutOfMemory,
            message: "OOM command not allowed when used memory > 'maxmemory'.".into(),
        };
        assert_eq!(
            e.to_string(),
            "redis refused XADD: the server is out of memory \
             (OOM command not allowed when used memory > 'maxmemory'.)"
        );
        assert!(!e.is_retryable());
        let e = StreamError::Timeout {
            operation: "XREADGROUP".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(e.to_string(), "XREADGROUP timed out after 1s 500ms");
        let e = StreamError::Timeout {
            operation: "XADD".into(),
            after: Duration::from_nanos(2_999_680_930),
        };
        assert_eq!(e.to_string(), "XADD timed out after 2s 999ms");
        assert_eq!(show_duration(Duration::from_micros(3)), "<1ms");
        assert_eq!(show_duration(Duration::ZERO), "0s");
        let e = StreamError::PermissionDenied {
            backend: "redis",
            command: "XACK".into(),
            message: "this user has no permissions to run the 'xack' command".into(),
        };
        assert_eq!(
            e.to_string(),
            "redis refused `XACK`: permission denied: this user has no permissions to run the 'xack' command"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn retryable_classification() {
        assert!(StreamError::connection("redis", "reset").is_retryable());
        assert!(!StreamError::Closed.is_retryable());
        assert!(!StreamError::PayloadNotObject { found: "array" }.is_retryable());
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<StreamError>();
    }
}

//! What can go wrong inside the model, mapped into [`StreamError`] in one place.

use streams_core::StreamError;

/// The backend's name in errors.
pub(crate) const BACKEND: &str = "memory";

/// The errors Redis would answer with for the same commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// Redis `WRONGTYPE`.
    #[error("key `{key}` holds a {found}, not a {wanted} (WRONGTYPE)")]
    WrongType {
        key: String,
        found: &'static str,
        wanted: &'static str,
    },

    /// Redis `NOGROUP`.
    #[error("consumer group `{group}` does not exist on stream `{stream}`")]
    NoGroup { stream: String, group: String },

    #[error("invalid stream id `{id}`")]
    InvalidId { id: String },

    /// Redis refuses `XADD` without fields.
    #[error("cannot add an entry without fields to stream `{key}`")]
    NoFields { key: String },

    #[error("stream `{key}` has used its last possible id")]
    IdsExhausted { key: String },

    /// A move target of a kind this backend does not know.
    #[error("unknown move target")]
    UnknownTarget,

    /// A trim of a kind this backend does not know.
    #[error("unknown trim")]
    UnknownTrim,

    /// A key inserted by the command itself was not found again (cannot
    /// happen; reported rather than assumed).
    #[error("key `{key}` vanished within one command")]
    Vanished { key: String },

    /// Redis refuses `XAUTOCLAIM ... COUNT 0`.
    #[error("{command} count must be at least 1")]
    ZeroCount { command: &'static str },
}

impl From<Error> for StreamError {
    fn from(e: Error) -> Self {
        match e {
            Error::NoGroup { stream, group } => Self::NoGroup { stream, group },
            Error::InvalidId { id } => Self::InvalidId {
                id,
                reason: "a stream entry id is `<ms>-<seq>` or `<ms>`, in decimal".to_owned(),
            },
            other => Self::backend(BACKEND, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_into_stream_error() {
        let e: StreamError = Error::NoGroup {
            stream: "s".into(),
            group: "g".into(),
        }
        .into();
        assert!(
            matches!(e, StreamError::NoGroup { ref stream, ref group } if stream == "s" && group == "g")
        );

        let e: StreamError = Error::WrongType {
            key: "k".into(),
            found: "hash",
            wanted: "stream",
        }
        .into();
        assert!(matches!(
            e,
            StreamError::Backend {
                backend: "memory",
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "memory error: key `k` holds a hash, not a stream (WRONGTYPE)"
        );
    }
}

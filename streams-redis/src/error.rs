//! The one place where Redis errors become [`StreamError`]s.

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use streams_core::StreamError;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "redis";

/// What a failed call was doing, for the error it becomes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    /// The command or script, e.g. `XREADGROUP`.
    pub(crate) name: &'static str,
    /// The response timeout that applied, reported on timeouts.
    pub(crate) after: Duration,
    /// The stream and group, reported on `NOGROUP`.
    pub(crate) group: Option<(&'a str, &'a str)>,
}

impl<'a> Op<'a> {
    pub(crate) fn new(name: &'static str, after: Duration) -> Self {
        Self {
            name,
            after,
            group: None,
        }
    }

    /// Names the stream and group, so `NOGROUP` maps to [`StreamError::NoGroup`].
    pub(crate) fn on(mut self, key: &'a str, group: &'a str) -> Self {
        self.group = Some((key, group));
        self
    }
}

/// Maps a Redis error. Timeouts, dropped or refused connections, and
/// servers that are not ready yet are retryable; `NOGROUP` names the stream
/// and group; everything else is [`StreamError::Backend`].
pub(crate) fn map(err: RedisError, op: Op<'_>) -> StreamError {
    if err.is_timeout() {
        return StreamError::Timeout {
            operation: op.name.to_owned(),
            after: op.after,
        };
    }
    if err.code() == Some("NOGROUP") {
        let parsed = err.detail().and_then(parse_nogroup);
        // A multi-key read names its first key; the server names the key it
        // failed on, which is better when the parse is plausible.
        let found = match (parsed, op.group) {
            (Some((key, group)), Some((_, named))) if group == named => Some((key, group)),
            (_, Some((key, group))) => Some((key.to_owned(), group.to_owned())),
            (parsed, None) => parsed,
        };
        if let Some((stream, group)) = found {
            return StreamError::NoGroup { stream, group };
        }
    }
    match err.kind() {
        ErrorKind::Io => StreamError::Connection {
            backend: BACKEND,
            message: format!("{} failed: {err}", op.name),
            source: Some(Box::new(err)),
        },
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown,
        ) => StreamError::Connection {
            backend: BACKEND,
            message: format!("server not ready for {}: {err}", op.name),
            source: Some(Box::new(err)),
        },
        ErrorKind::InvalidClientConfig => StreamError::config(format!("redis client: {err}")),
        _ => StreamError::backend(BACKEND, err),
    }
}

/// Whether the server answered `BUSYGROUP` (the group exists already).
pub(crate) fn is_busy_group(err: &RedisError) -> bool {
    err.code() == Some("BUSYGROUP")
}

/// Whether the server answered that the key is missing: `ERR no such key`
/// (`XINFO` on a missing stream) or `ERR The XGROUP subcommand requires the
/// key to exist` (`XGROUP DESTROY`).
pub(crate) fn is_no_such_key(err: &RedisError) -> bool {
    err.code() == Some("ERR")
        && err.detail().is_some_and(|d| {
            d.starts_with("no such key") || d.contains("requires the key to exist")
        })
}

/// The stream and group of a `NOGROUP` detail such as
/// `No such key 'k' or consumer group 'g' in XREADGROUP with GROUP option`.
fn parse_nogroup(detail: &str) -> Option<(String, String)> {
    let rest = detail.strip_prefix("No such key '")?;
    let (key, rest) = rest.split_once("' or consumer group '")?;
    let (group, _) = rest.rsplit_once('\'')?;
    Some((key.to_owned(), group.to_owned()))
}

/// A reply whose shape is not what the command returns.
#[derive(Debug)]
pub(crate) struct ReplyError {
    what: &'static str,
    detail: String,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply to {}: {}", self.what, self.detail)
    }
}

impl std::error::Error for ReplyError {}

/// A [`StreamError::Backend`] for a malformed reply to `what`.
pub(crate) fn bad_reply(what: &'static str, detail: impl Into<String>) -> StreamError {
    StreamError::backend(
        BACKEND,
        ReplyError {
            what,
            detail: detail.into(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> RedisError {
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    #[test]
    fn nogroup_names_stream_and_group() {
        let e = server_error(
            "NOGROUP",
            "No such key 'ns:s' or consumer group 'g' in XREADGROUP with GROUP option",
        );
        let op = Op::new("XREADGROUP", Duration::from_secs(1)).on("other", "g");
        match map(e, op) {
            StreamError::NoGroup { stream, group } => {
                assert_eq!(stream, "ns:s");
                assert_eq!(group, "g");
            }
            other => panic!("{other:?}"),
        }
        let e = server_error("NOGROUP", "No such consumer group 'g' for key name 'k'");
        match map(e, Op::new("XPENDING", Duration::ZERO).on("k", "g")) {
            StreamError::NoGroup { stream, group } => {
                assert_eq!((stream, group), ("k".into(), "g".into()))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classification() {
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(matches!(
            map(timeout, Op::new("XADD", Duration::from_millis(5))),
            StreamError::Timeout { after, .. } if after == Duration::from_millis(5)
        ));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let e = map(reset, Op::new("XADD", Duration::ZERO));
        assert!(matches!(e, StreamError::Connection { .. }) && e.is_retryable());
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            map(refused, Op::new("PING", Duration::ZERO)),
            StreamError::Connection { .. }
        ));
        let other = server_error(
            "WRONGTYPE",
            "Operation against a key holding the wrong kind of value",
        );
        let e = map(other, Op::new("XADD", Duration::ZERO));
        assert!(matches!(
            e,
            StreamError::Backend {
                backend: "redis",
                ..
            }
        ));
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn nogroup_detail_parsing_is_total() {
        assert_eq!(parse_nogroup("garbage"), None);
        assert_eq!(parse_nogroup("No such key 'k'"), None);
        assert_eq!(
            parse_nogroup("No such key 'a'b' or consumer group 'g' in X"),
            Some(("a'b".into(), "g".into()))
        );
    }
}

//! The one place where Redis errors become [`StreamError`]s.

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use streams_core::{Refusal, StreamError};

use crate::scripts::Lua;

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
    /// The script run, if it is one: a refusal inside it lists the
    /// commands it runs.
    pub(crate) script: Option<&'static Lua>,
}

impl<'a> Op<'a> {
    pub(crate) fn new(name: &'static str, after: Duration) -> Self {
        Self {
            name,
            after,
            group: None,
            script: None,
        }
    }

    /// Names the script the call runs.
    pub(crate) fn script(mut self, script: &'static Lua) -> Self {
        self.script = Some(script);
        self
    }

    /// Names the stream and group, so `NOGROUP` maps to [`StreamError::NoGroup`].
    pub(crate) fn on(mut self, key: &'a str, group: &'a str) -> Self {
        self.group = Some((key, group));
        self
    }
}

/// Maps a Redis error. Timeouts, dropped or refused connections, and
/// servers that are not ready yet are retryable; `NOGROUP` names the stream
/// and group; ACL refusals are [`StreamError::PermissionDenied`]; `OOM`
/// and `READONLY` (also from a script or in a pipeline) are
/// [`StreamError::WriteRefused`]; everything else is
/// [`StreamError::Backend`].
pub(crate) fn map(err: RedisError, op: Op<'_>) -> StreamError {
    if err.is_timeout() {
        return StreamError::Timeout {
            operation: op.name.to_owned(),
            after: op.after,
        };
    }
    if let Some(denied) = permission_denied(&err, op) {
        return denied;
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
    if let Some((reason, message)) = refusal(&err) {
        return StreamError::WriteRefused {
            backend: BACKEND,
            operation: op.name.to_owned(),
            reason,
            message,
        };
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
            | ServerErrorKind::ClusterDown
            // A cluster slot moving (a failover, a resharding): the command
            // did not run, and the client is refreshing its slot map.
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => StreamError::Connection {
            backend: BACKEND,
            message: format!("server not ready for {}: {err}", op.name),
            source: Some(Box::new(err)),
        },
        ErrorKind::InvalidClientConfig => StreamError::config(format!("redis client: {err}")),
        ErrorKind::AuthenticationFailed => StreamError::PermissionDenied {
            backend: BACKEND,
            command: "AUTH".to_owned(),
            message: "the server refused the user name and password (wrong, or the user is off)"
                .to_owned(),
        },
        _ => StreamError::backend(BACKEND, err),
    }
}

/// An ACL refusal: `NOPERM` (the user may not run the command, or not on
/// one of its keys), or, inside a script on Redis 7.0, `ERR The user
/// executing the script can't ...`, which names neither the command nor the
/// key. The command is the one the server names, else the one sent; for a
/// script the message lists the commands it runs.
fn permission_denied(err: &RedisError, op: Op<'_>) -> Option<StreamError> {
    let detail = err.detail().unwrap_or_default();
    let in_script = err.code() == Some("ERR") && detail.contains("executing the script can't");
    if err.code() != Some("NOPERM") && !in_script {
        return None;
    }
    // "... no permissions to run the 'xgroup|create' command"
    let named = detail
        .split_once("run the '")
        .and_then(|(_, rest)| rest.split_once("' command"))
        .map(|(command, _)| acl_to_command(command));
    // Redis appends where in the script it failed: the script's hash and line.
    let words = detail.split(" script: ").next().unwrap_or(detail).trim();
    let mut message = words.to_owned();
    if let Some(script) = op.script {
        let runs: Vec<String> = script
            .commands()
            .iter()
            .map(|c| acl_to_command(c))
            .collect();
        message.push_str(&format!(
            " (in the script `{}`, which runs {})",
            script.name,
            runs.join(", ")
        ));
    }
    Some(StreamError::PermissionDenied {
        backend: BACKEND,
        command: named.unwrap_or_else(|| op.name.to_owned()),
        message,
    })
}

/// `xgroup|create` as people write it: `XGROUP CREATE`.
pub(crate) fn acl_to_command(acl: &str) -> String {
    acl.replace('|', " ").to_ascii_uppercase()
}

/// Whether the server refused to write, why, and what it said: `OOM` (over
/// `maxmemory` with `noeviction`) or `READONLY` (a replica), as the reply
/// to a command or a script, or to one command of a pipeline.
fn refusal(err: &RedisError) -> Option<(Refusal, String)> {
    fn reason(code: &str) -> Option<Refusal> {
        match code {
            "OOM" => Some(Refusal::OutOfMemory),
            "READONLY" => Some(Refusal::ReadOnly),
            _ => None,
        }
    }
    fn said(code: &str, detail: Option<&str>) -> String {
        match detail {
            Some(detail) => format!("{code} {detail}"),
            None => code.to_owned(),
        }
    }
    if let Some(code) = err.code() {
        return reason(code).map(|r| (r, said(code, err.detail())));
    }
    err.clone()
        .into_server_errors()?
        .iter()
        .find_map(|(_, e)| reason(e.code()).map(|r| (r, said(e.code(), e.details()))))
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

        let oom = server_error(
            "OOM",
            "command not allowed when used memory > 'maxmemory'. script: 3f2a, on @user_script:12.",
        );
        let e = map(oom, Op::new("move_entry", Duration::ZERO));
        match &e {
            StreamError::WriteRefused {
                reason: Refusal::OutOfMemory,
                operation,
                message,
                ..
            } => {
                assert_eq!(operation, "move_entry");
                assert!(message.starts_with("OOM command not allowed"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("out of memory"), "{e}");
        let readonly = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(matches!(
            map(readonly, Op::new("XADD", Duration::ZERO)),
            StreamError::WriteRefused {
                reason: Refusal::ReadOnly,
                ..
            }
        ));
    }

    #[test]
    fn acl_refusals_name_the_command() {
        let e = server_error(
            "NOPERM",
            "this user has no permissions to run the 'xgroup|create' command",
        );
        let e = map(e, Op::new("XGROUP CREATE", Duration::ZERO));
        match &e {
            StreamError::PermissionDenied { command, .. } => assert_eq!(command, "XGROUP CREATE"),
            other => panic!("{other:?}"),
        }
        assert!(!e.is_retryable());
        // Redis 7.2 words it differently.
        let e = server_error(
            "NOPERM",
            "User w has no permissions to run the 'xack' command",
        );
        assert!(matches!(
            map(e, Op::new("XACK", Duration::ZERO)),
            StreamError::PermissionDenied { ref command, .. } if command == "XACK"
        ));
        // A key refusal does not name the command: the one sent stands in.
        let e = server_error(
            "NOPERM",
            "this user has no permissions to access one of the keys used as arguments",
        );
        let e = map(e, Op::new("XADD", Duration::ZERO));
        assert!(
            e.to_string()
                == "redis refused `XADD`: permission denied: this user has no permissions \
                    to access one of the keys used as arguments",
            "{e}"
        );
        // Inside a script, Redis 7.0 names neither: the script's commands are listed.
        let e = server_error(
            "ERR",
            "The user executing the script can't run this command or subcommand script: \
             0ee52ba57d0a87eee2bde3f08233569cf987e34a, on @user_script:33.",
        );
        let op = Op::new("EVALSHA set_idle", Duration::ZERO).script(&crate::scripts::SET_IDLE);
        let e = map(e, op);
        let text = e.to_string();
        assert!(
            matches!(&e, StreamError::PermissionDenied { command, .. } if command == "EVALSHA set_idle"),
            "{e:?}"
        );
        assert!(text.contains("the script `set_idle`, which runs"), "{text}");
        assert!(
            text.contains("XCLAIM") && text.contains("XPENDING"),
            "{text}"
        );
        assert!(!text.contains("0ee52ba"), "{text}");
        // A wrong password is refused authentication.
        let e = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert!(matches!(
            map(e, Op::new("connect", Duration::ZERO)),
            StreamError::PermissionDenied { ref command, .. } if command == "AUTH"
        ));
        // Other errors inside scripts are not refusals.
        let e = server_error("ERR", "Error running script, bad argument");
        assert!(matches!(
            map(e, Op::new("EVALSHA x", Duration::ZERO)),
            StreamError::Backend { .. }
        ));
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

//! Decoding raw replies. Reading `redis::Value` directly is markedly faster
//! than the crate's typed stream replies. Every function is total: an
//! unexpected shape is an error, never a panic.
//!
//! Replies are taken apart, not copied: the buffers the parser allocated
//! for bulk strings become the entries' ids (`String`) and field values
//! (`Bytes`) as they are.

use bytes::Bytes;
use redis::Value;
use std::time::Duration;

use streams_core::backend::{ConsumerInfo, Entry, EntryId, Fields, GroupInfo};
use streams_core::{Result, StreamError};

use crate::error::bad_reply;

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a bulk string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a simple string",
        Value::Okay => "OK",
        Value::Map(_) => "a map",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::ServerError(_) => "an error",
        _ => "an unsupported value",
    }
}

fn unexpected(what: &'static str, expected: &str, v: &Value) -> StreamError {
    bad_reply(what, format!("expected {expected}, got {}", describe(v)))
}

/// A binary-safe string.
pub(crate) fn bytes(what: &'static str, v: Value) -> Result<Bytes> {
    match v {
        Value::BulkString(b) => Ok(Bytes::from(b)),
        Value::SimpleString(s) => Ok(Bytes::from(s.into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Bytes::from(text.into_bytes())),
        Value::Okay => Ok(Bytes::from_static(b"OK")),
        Value::Int(n) => Ok(Bytes::from(n.to_string())),
        other => Err(unexpected(what, "a string", &other)),
    }
}

/// A UTF-8 string.
pub(crate) fn string(what: &'static str, v: Value) -> Result<String> {
    let not_utf8 = |_| bad_reply(what, "a string is not valid UTF-8");
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(not_utf8),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        Value::Okay => Ok("OK".to_owned()),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(unexpected(what, "a string", &other)),
    }
}

/// An integer, sent as an integer or as its decimal text.
pub(crate) fn int(what: &'static str, v: Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(n),
        Value::BulkString(ref b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(what, "an integer", &v)),
        Value::SimpleString(ref s) => s.parse().map_err(|_| unexpected(what, "an integer", &v)),
        other => Err(unexpected(what, "an integer", &other)),
    }
}

/// A non-negative integer.
pub(crate) fn count(what: &'static str, v: Value) -> Result<u64> {
    let n = int(what, v)?;
    u64::try_from(n).map_err(|_| bad_reply(what, format!("negative count {n}")))
}

/// The elements of an array (a set counts; nil is empty).
pub(crate) fn array(what: &'static str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(what, "an array", &other)),
    }
}

/// Name/value pairs sent as a flat array (RESP2) or a map (RESP3).
pub(crate) fn pairs(what: &'static str, v: Value) -> Result<Vec<(Value, Value)>> {
    match v {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(bad_reply(what, "odd number of elements in a field list"));
            }
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Ok(out)
        }
        other => Err(unexpected(what, "a field list", &other)),
    }
}

/// Pairs with UTF-8 names, as `XINFO` sends them.
pub(crate) fn named(what: &'static str, v: Value) -> Result<Vec<(String, Value)>> {
    pairs(what, v)?
        .into_iter()
        .map(|(k, v)| Ok((string(what, k)?, v)))
        .collect()
}

/// The fields of an entry, binary-safe, straight from the reply's list.
pub(crate) fn fields(what: &'static str, v: Value) -> Result<Fields> {
    match v {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(bad_reply(what, "odd number of elements in a field list"));
            }
            let mut out = Fields::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((bytes(what, k)?, bytes(what, v)?));
            }
            Ok(out)
        }
        Value::Map(pairs) => {
            let mut out = Fields::with_capacity(pairs.len());
            for (k, v) in pairs {
                out.push((bytes(what, k)?, bytes(what, v)?));
            }
            Ok(out)
        }
        other => Err(unexpected(what, "a field list", &other)),
    }
}

/// One entry `[id, fields]`. `None` fields mean the entry was deleted while
/// pending (as `XREADGROUP` reports it for pending entries).
pub(crate) fn entry(what: &'static str, v: Value) -> Result<(String, Option<Fields>)> {
    let mut parts = array(what, v)?.into_iter();
    let (Some(id), Some(f), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_reply(what, "an entry is not [id, fields]"));
    };
    let id = string(what, id)?;
    match f {
        Value::Nil => Ok((id, None)),
        f => Ok((id, Some(fields(what, f)?))),
    }
}

/// A list of entries, as `XRANGE` sends it (no deleted entries there).
pub(crate) fn entries(what: &'static str, v: Value) -> Result<Vec<Entry>> {
    let items = array(what, v)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let (id, Some(fields)) = entry(what, item)? {
            out.push(Entry::new(id, fields));
        }
    }
    Ok(out)
}

/// One group of `XINFO GROUPS`. `lag` and `entries-read` are nil when the
/// server cannot tell (and absent before Redis 7).
pub(crate) fn group_info(v: Value) -> Result<GroupInfo> {
    const WHAT: &str = "XINFO GROUPS";
    let mut name = None;
    let (mut consumers, mut pending, mut last, mut lag) = (0, 0, None, None);
    let mut entries_read = None;
    for (k, v) in named(WHAT, v)? {
        match k.as_str() {
            "name" => name = Some(string(WHAT, v)?),
            "consumers" => consumers = count(WHAT, v)?,
            "pending" => pending = count(WHAT, v)?,
            "last-delivered-id" => last = Some(string(WHAT, v)?),
            "lag" if v != Value::Nil => lag = Some(count(WHAT, v)?),
            "entries-read" if v != Value::Nil => entries_read = Some(count(WHAT, v)?),
            _ => {}
        }
    }
    let Some(name) = name else {
        return Err(bad_reply(WHAT, "a group without a name"));
    };
    let mut info = GroupInfo::new(name, consumers, pending);
    info.last_delivered = last.filter(|id| id != "0-0").map(EntryId::from);
    info.lag = lag;
    info.entries_read = entries_read;
    Ok(info)
}

/// One consumer of `XINFO CONSUMERS`.
pub(crate) fn consumer_info(v: Value) -> Result<ConsumerInfo> {
    const WHAT: &str = "XINFO CONSUMERS";
    let mut name = None;
    let mut pending = 0;
    let mut idle = Duration::ZERO;
    for (k, v) in named(WHAT, v)? {
        match k.as_str() {
            "name" => name = Some(string(WHAT, v)?),
            "pending" => pending = count(WHAT, v)?,
            "idle" => idle = Duration::from_millis(count(WHAT, v)?),
            _ => {}
        }
    }
    let name = name.ok_or_else(|| bad_reply(WHAT, "a consumer without a name"))?;
    Ok(ConsumerInfo::new(name, pending, idle))
}

/// The value of `name` in an `INFO` reply (`name:value` lines), trimmed.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `redis_version` of an `INFO server` reply, as `(major, minor, patch)`.
pub(crate) fn redis_version(info: &str) -> Option<(u32, u32, u32)> {
    let line = info_field(info, "redis_version")?;
    let mut parts = line.trim().split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry_value(id: &str, fields: Option<&[(&[u8], &[u8])]>) -> Value {
        let f = match fields {
            None => Value::Nil,
            Some(f) => Value::Array(f.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect()),
        };
        Value::Array(vec![bulk(id.as_bytes()), f])
    }

    #[test]
    fn entries_with_deleted_and_binary_fields() {
        let v = Value::Array(vec![
            entry_value("1-0", Some(&[(b"data", b"{}"), (b"x", b"\xff")])),
            entry_value("2-0", None),
        ]);
        let out = entries("XRANGE", v).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, "1-0");
        assert_eq!(out[0].fields[1].1.as_ref(), b"\xff");
        let (id, fields) = entry("X", entry_value("2-0", None)).unwrap();
        assert_eq!((id.as_str(), fields), ("2-0", None));
        let resp3 = Value::Map(vec![(bulk(b"a"), bulk(b"b"))]);
        assert_eq!(fields_of(resp3).unwrap()[0].0.as_ref(), b"a");
    }

    fn fields_of(v: Value) -> Result<Fields> {
        fields("X", v)
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for v in [
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![bulk(b"k")])]),
            Value::Array(vec![Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![bulk(b"odd")]),
            ])]),
            Value::Array(vec![Value::Array(vec![bulk(b"\xff"), Value::Nil])]),
        ] {
            assert!(entries("XRANGE", v).is_err());
        }
        assert!(int("t", bulk(b"x")).is_err());
        assert_eq!(int("t", bulk(b"42")).unwrap(), 42);
        assert!(count("t", Value::Int(-1)).is_err());
    }

    #[test]
    fn version_parsing() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n";
        assert_eq!(redis_version(info), Some((7, 0, 15)));
        assert_eq!(redis_version("redis_version:7.2\r\n"), Some((7, 2, 0)));
        assert_eq!(
            redis_version("redis_version:255.255.255-rc1"),
            Some((255, 255, 255))
        );
        assert_eq!(redis_version("nothing"), None);
        assert_eq!(redis_version("redis_version:x"), None);
    }

    #[test]
    fn group_info_reads_lag_and_entries_read() {
        let int = Value::Int;
        let v = Value::Array(vec![
            bulk(b"name"),
            bulk(b"g"),
            bulk(b"consumers"),
            int(2),
            bulk(b"pending"),
            int(3),
            bulk(b"last-delivered-id"),
            bulk(b"5-0"),
            bulk(b"entries-read"),
            int(5),
            bulk(b"lag"),
            int(1),
        ]);
        let info = group_info(v).unwrap();
        assert_eq!((info.consumers, info.pending), (2, 3));
        assert_eq!((info.entries_read, info.lag), (Some(5), Some(1)));
        let unknown = Value::Array(vec![
            bulk(b"name"),
            bulk(b"g"),
            bulk(b"entries-read"),
            Value::Nil,
            bulk(b"lag"),
            Value::Nil,
        ]);
        let info = group_info(unknown).unwrap();
        assert_eq!((info.entries_read, info.lag), (None, None));
    }

    #[test]
    fn named_pairs() {
        let v = Value::Array(vec![bulk(b"name"), bulk(b"g"), bulk(b"lag"), Value::Nil]);
        let p = named("XINFO", v).unwrap();
        assert_eq!(p[0].0, "name");
        assert_eq!(p[1].1, Value::Nil);
        assert!(named("XINFO", Value::Array(vec![bulk(b"odd")])).is_err());
    }
}

//! The operations that are plain Redis commands (or pipelines of them).

use std::time::Duration;

use redis::{Cmd, Value};
use streams_core::backend::{
    Add, ConsumerInfo, Fields, GroupInfo, KeyEntries, PendingEntry, PendingQuery, ReadCursor,
    ReadGroup, ServerInfo, Trim,
};
use streams_core::{Result, StreamError};

use crate::backend::RedisBackend;
use crate::error::{self, BACKEND, Op, bad_reply};
use crate::reply;
use crate::scripts::{self, ms};

/// `XADD` with at most one length trim inline; `None` when the trims need
/// the server's clock or several passes (the `add` script then does it).
fn xadd(add: &Add) -> Option<Cmd> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&add.key);
    match add.trim.as_slice() {
        [] => {}
        [Trim::MaxLen { len, approx }] => {
            cmd.arg("MAXLEN")
                .arg(if *approx { "~" } else { "=" })
                .arg(*len);
        }
        _ => return None,
    }
    cmd.arg("*");
    push_fields(&mut cmd, &add.fields);
    Some(cmd)
}

/// Appends an entry's fields as name, value arguments, binary-safe.
pub(crate) fn push_fields(cmd: &mut Cmd, fields: &Fields) {
    for (k, v) in fields {
        cmd.arg(&k[..]).arg(&v[..]);
    }
}

/// `XREADGROUP` over every key of a read, with `BLOCK` when given.
fn xreadgroup(read: &ReadGroup<'_>, block: Option<Duration>) -> Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(read.group)
        .arg(read.consumer)
        .arg("COUNT")
        .arg(read.count.max(1));
    if let Some(block) = block {
        // BLOCK 0 would wait forever.
        cmd.arg("BLOCK").arg(ms(block).max(1));
    }
    cmd.arg("STREAMS");
    for (key, _) in read.keys {
        cmd.arg(key);
    }
    for (_, cursor) in read.keys {
        match cursor {
            ReadCursor::New => cmd.arg(">"),
            ReadCursor::Pending(after) => cmd.arg(after),
        };
    }
    cmd
}

/// `INFO server`, for the version.
pub(crate) async fn server_info(b: &RedisBackend) -> Result<ServerInfo> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("server");
    let text = reply::string("INFO", b.raw(&cmd, b.op("INFO")).await?)?;
    let version = reply::redis_version(&text)
        .ok_or_else(|| bad_reply("INFO", "no readable redis_version line"))?;
    Ok(ServerInfo {
        backend: BACKEND,
        version,
    })
}

/// `XGROUP CREATE ... MKSTREAM`; `false` when the group exists (`BUSYGROUP`).
pub(crate) async fn create_group(
    b: &RedisBackend,
    key: &str,
    group: &str,
    start: &str,
) -> Result<bool> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(key)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM");
    let mut conn = b.inner.conns.commands();
    match cmd.query_async::<Value>(&mut conn).await {
        Ok(_) => Ok(true),
        Err(e) if error::is_busy_group(&e) => Ok(false),
        Err(e) => Err(error::map(e, b.op("XGROUP CREATE"))),
    }
}

/// Every add in one pipelined round trip, in order.
pub(crate) async fn add_batch(b: &RedisBackend, adds: Vec<Add>) -> Result<Vec<String>> {
    if adds.is_empty() {
        return Ok(Vec::new());
    }
    let plain: Option<Vec<Cmd>> = adds.iter().map(xadd).collect();
    let mut pipe = redis::pipe();
    match plain {
        Some(cmds) => {
            for cmd in cmds {
                pipe.add_command(cmd);
            }
        }
        None => {
            // All through the script, so a NOSCRIPT could not split the
            // batch; the SCRIPT LOAD in front makes NOSCRIPT impossible.
            pipe.add_command(scripts::load(scripts::ADD_SOURCE))
                .ignore();
            for add in &adds {
                pipe.add_command(scripts::add_cmd(add));
            }
        }
    }
    let ids = b.pipeline(&pipe, b.op("XADD")).await?;
    if ids.len() != adds.len() {
        return Err(bad_reply(
            "XADD",
            format!("{} ids for {} entries", ids.len(), adds.len()),
        ));
    }
    ids.into_iter().map(|v| reply::string("XADD", v)).collect()
}

/// One `XREADGROUP`: blocking reads on a connection of their own, the
/// others on the command connection.
pub(crate) async fn read_group(b: &RedisBackend, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
    let Some((first, _)) = read.keys.first() else {
        return Ok(Vec::new());
    };
    let history = read
        .keys
        .iter()
        .any(|(_, c)| matches!(c, ReadCursor::Pending(_)));
    let value = match read.block {
        Some(block) if !history => {
            let after = b.inner.conns.blocking_timeout(block, b.timeout());
            let op = Op::new("XREADGROUP", after).on(first, read.group);
            b.inner
                .conns
                .blocking(block, |slice| xreadgroup(&read, Some(slice)))
                .await
                .map_err(|e| error::map(e, op))?
        }
        _ => {
            let op = b.op("XREADGROUP").on(first, read.group);
            b.raw(&xreadgroup(&read, None), op).await?
        }
    };
    reply::read_group(value)
}

/// `XACK`, with `XDEL` in the same transaction when asked.
pub(crate) async fn ack(
    b: &RedisBackend,
    key: &str,
    group: &str,
    ids: &[String],
    delete: bool,
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut xack = redis::cmd("XACK");
    xack.arg(key).arg(group).arg(ids);
    if !delete {
        return reply::count("XACK", b.raw(&xack, b.op("XACK")).await?);
    }
    let mut xdel = redis::cmd("XDEL");
    xdel.arg(key).arg(ids);
    let mut pipe = redis::pipe();
    pipe.atomic().add_command(xack).add_command(xdel).ignore();
    let mut replies = b.pipeline(&pipe, b.op("XACK")).await?.into_iter();
    match replies.next() {
        Some(n) => reply::count("XACK", n),
        None => Err(bad_reply("XACK", "empty transaction reply")),
    }
}

/// Extended `XPENDING`.
pub(crate) async fn pending(
    b: &RedisBackend,
    query: PendingQuery<'_>,
) -> Result<Vec<PendingEntry>> {
    if query.count == 0 {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(query.key).arg(query.group);
    if let Some(idle) = query.min_idle {
        cmd.arg("IDLE").arg(ms(idle));
    }
    cmd.arg(query.start).arg(query.end).arg(query.count);
    if let Some(consumer) = query.consumer {
        cmd.arg(consumer);
    }
    let op = b.op("XPENDING").on(query.key, query.group);
    let rows = reply::array("XPENDING", b.raw(&cmd, op).await?)?;
    rows.into_iter()
        .map(|row| {
            let mut it = reply::array("XPENDING", row)?.into_iter();
            let (Some(id), Some(consumer), Some(idle), Some(n)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad_reply(
                    "XPENDING",
                    "a row is not [id, consumer, idle, count]",
                ));
            };
            Ok(PendingEntry {
                id: reply::string("XPENDING", id)?,
                consumer: reply::string("XPENDING", consumer)?,
                idle: Duration::from_millis(reply::count("XPENDING", idle)?),
                deliveries: reply::count("XPENDING", n)?,
            })
        })
        .collect()
}

/// `XINFO GROUPS`; a missing stream has none.
pub(crate) async fn groups(b: &RedisBackend, key: &str) -> Result<Vec<GroupInfo>> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("GROUPS").arg(key);
    let mut conn = b.inner.conns.commands();
    let rows = match cmd.query_async::<Value>(&mut conn).await {
        Ok(v) => reply::array("XINFO GROUPS", v)?,
        Err(e) if error::is_no_such_key(&e) => return Ok(Vec::new()),
        Err(e) => return Err(error::map(e, b.op("XINFO GROUPS"))),
    };
    rows.into_iter().map(reply::group_info).collect()
}

/// `XINFO CONSUMERS`; a missing stream or group is `NoGroup`.
pub(crate) async fn consumers(
    b: &RedisBackend,
    key: &str,
    group: &str,
) -> Result<Vec<ConsumerInfo>> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("CONSUMERS").arg(key).arg(group);
    let mut conn = b.inner.conns.commands();
    let rows = match cmd.query_async::<Value>(&mut conn).await {
        Ok(v) => reply::array("XINFO CONSUMERS", v)?,
        Err(e) if error::is_no_such_key(&e) => {
            return Err(StreamError::NoGroup {
                stream: key.to_owned(),
                group: group.to_owned(),
            });
        }
        Err(e) => return Err(error::map(e, b.op("XINFO CONSUMERS").on(key, group))),
    };
    rows.into_iter().map(reply::consumer_info).collect()
}

/// One `XADD`, or the `add` script when the trims need it.
pub(crate) async fn add(b: &RedisBackend, add: &Add) -> Result<String> {
    let id = match xadd(add) {
        Some(cmd) => b.raw(&cmd, b.op("XADD")).await?,
        None => scripts::add(b, add).await?,
    };
    reply::string("XADD", id)
}

/// Deletes every key under `namespace` (`<namespace>:*`) with `SCAN` and
/// `UNLINK`; returns how many were deleted.
pub(crate) async fn delete_namespace(b: &RedisBackend, namespace: &str) -> Result<u64> {
    let pattern = format!("{}:*", glob_escape(namespace));
    let mut cursor = "0".to_owned();
    let mut deleted = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(&cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (String, Vec<Vec<u8>>) =
            redis::from_redis_value(b.raw(&scan, b.op("SCAN")).await?)
                .map_err(|e| bad_reply("SCAN", e.to_string()))?;
        if !keys.is_empty() {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&keys);
            let n = reply::int("UNLINK", b.raw(&unlink, b.op("UNLINK")).await?)?;
            deleted += u64::try_from(n).unwrap_or(0);
        }
        if next == "0" {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Escapes the glob characters of `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("xt-1-a::b"), "xt-1-a::b");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}

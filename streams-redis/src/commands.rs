//! The operations that are plain Redis commands (or pipelines of them).

use std::ops::Bound;
use std::time::Duration;

use redis::{Cmd, Value};
use streams_core::backend::{
    Ack, Add, AddMany, ConsumerInfo, CreateGroup, DurableWrite, Entry, EntryId, Fields, GroupInfo,
    PendingEntry, PendingQuery, RangeQuery, ServerInfo, StartAt, Trim,
};
use streams_core::{Durability, Result, StreamError};

use crate::backend::RedisBackend;
use crate::conn::Commands;
use crate::error::{self, BACKEND, Op, bad_reply};
use crate::reply;
use crate::scripts::{self, ms};

/// The oldest server this backend works with. `XAUTOCLAIM` arrived in 6.2,
/// but 7.0 is what the scripts rely on: errors raised inside a script keep
/// their code (`NOGROUP`, which recovers a lost group), and `XCLAIM` skips
/// and drops pending entries whose entries were deleted.
pub(crate) const MIN_VERSION: (u32, u32, u32) = (7, 0, 0);

/// The trim an `XADD` can apply inline: none, or one by length (`Some`
/// of `(approx, len)`); `None` when the trims need the server's clock or
/// several passes (the `add` script then does it).
fn inline_trim(trims: &[Trim]) -> Option<Option<(bool, u64)>> {
    match trims {
        [] => Some(None),
        [Trim::MaxLen { len, approx }] => Some(Some((*approx, *len))),
        _ => None,
    }
}

/// `XADD key [MAXLEN ~|= len] * fields...`, with its buffers sized once.
fn xadd(key: &str, trim: Option<(bool, u64)>, fields: &Fields) -> Cmd {
    let data = 4 + key.len() + 24 + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut cmd = Cmd::with_capacity(6 + 2 * fields.len(), data);
    cmd.arg("XADD").arg(key);
    if let Some((approx, len)) = trim {
        cmd.arg("MAXLEN")
            .arg(if approx { "~" } else { "=" })
            .arg(len);
    }
    cmd.arg("*");
    push_fields(&mut cmd, fields);
    cmd
}

/// Appends an entry's fields as name, value arguments, binary-safe.
pub(crate) fn push_fields(cmd: &mut Cmd, fields: &Fields) {
    for (k, v) in fields {
        cmd.arg(&k[..]).arg(&v[..]);
    }
}

/// An entry id given by a caller, checked as the server reads ids
/// (`<ms>-<seq>`, or `<ms>` alone, in decimal), so that nothing else (`-`,
/// `+`, `$`) reaches a command as an id; returns the id in full
/// (`<ms>-<seq>`, the sequence 0 when it was left out).
pub(crate) fn check_id(id: &EntryId) -> Result<String> {
    let text = id.as_str();
    let decimal = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let parsed = match text.split_once('-') {
        Some((ms, seq)) => decimal(ms).zip(decimal(seq)),
        None => decimal(text).map(|ms| (ms, 0)),
    };
    match parsed {
        Some((ms, seq)) => Ok(format!("{ms}-{seq}")),
        None => Err(StreamError::InvalidId {
            id: text.to_owned(),
            reason: "a stream entry id is `<ms>-<seq>` or `<ms>`, in decimal".to_owned(),
        }),
    }
}

/// A range bound as `XRANGE` and `XPENDING` take it (an id alone stays as
/// given: `<ms>` means the whole millisecond at either end).
fn bound(b: &Bound<EntryId>, unbounded: &str) -> Result<String> {
    Ok(match b {
        Bound::Unbounded => unbounded.to_owned(),
        Bound::Included(id) => {
            check_id(id)?;
            id.as_str().to_owned()
        }
        Bound::Excluded(id) => {
            check_id(id)?;
            format!("({id}")
        }
    })
}

/// Refuses a server older than [`MIN_VERSION`].
pub(crate) fn check_version(version: (u32, u32, u32)) -> Result<()> {
    require_version("the redis backend", MIN_VERSION, version)
}

/// Refuses `feature` on a server older than `needed`.
fn require_version(feature: &str, needed: (u32, u32, u32), version: (u32, u32, u32)) -> Result<()> {
    if version < needed {
        let (a, b, c) = version;
        let (x, y, z) = needed;
        return Err(StreamError::Unsupported {
            feature: feature.to_owned(),
            reason: format!("it needs Redis {x}.{y}.{z} or newer; the server is {a}.{b}.{c}"),
        });
    }
    Ok(())
}

/// `INFO server`, for the version; refuses servers older than
/// [`MIN_VERSION`]. Then `INFO cluster`: refuses a Redis Cluster node,
/// which would answer `MOVED` for the keys of every other node's slots.
pub(crate) async fn server_info(b: &RedisBackend) -> Result<ServerInfo> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("server");
    let text = reply::string("INFO", b.raw(cmd, b.op("INFO")).await?)?;
    let version = reply::redis_version(&text)
        .ok_or_else(|| bad_reply("INFO", "no readable redis_version line"))?;
    check_version(version)?;
    let mut cmd = redis::cmd("INFO");
    cmd.arg("cluster");
    let cluster = reply::string("INFO", b.raw(cmd, b.op("INFO")).await?)?;
    if !b.is_cluster() && reply::info_field(&cluster, "cluster_enabled") == Some("1") {
        return Err(StreamError::Unsupported {
            feature: "Redis Cluster through a single-server connection".to_owned(),
            reason: "this server is a cluster node, and the backend was configured for one \
                     server: keys in other nodes' slots would be refused (MOVED); list the \
                     seed nodes in the URL (`redis://a:7000,redis://b:7000`) or set \
                     RedisConfig::with_cluster(true); see docs/scaling.md"
                .to_owned(),
        });
    }
    let (x, y, z) = version;
    Ok(ServerInfo::new(BACKEND, format!("{x}.{y}.{z}")))
}

/// `XGROUP CREATE ... MKSTREAM`; `false` when the group exists (`BUSYGROUP`).
pub(crate) async fn create_group(b: &RedisBackend, create: &CreateGroup<'_>) -> Result<bool> {
    let start = match &create.start {
        StartAt::Beginning => "0",
        StartAt::End => "$",
        StartAt::After(id) => {
            return scripts::create_group_after(b, create.key, create.group, id).await;
        }
        _ => return Err(scripts::unknown("group start")),
    };
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(create.key)
        .arg(create.group)
        .arg(start)
        .arg("MKSTREAM");
    match b.call(cmd).await {
        Ok(_) => Ok(true),
        Err(e) if error::is_busy_group(&e) => Ok(false),
        Err(e) => Err(error::map(e, b.op("XGROUP CREATE"))),
    }
}

/// `XGROUP DESTROY`; a missing stream has no group to destroy.
pub(crate) async fn destroy_group(b: &RedisBackend, key: &str, group: &str) -> Result<bool> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("DESTROY").arg(key).arg(group);
    match b.call(cmd).await {
        Ok(v) => Ok(reply::int("XGROUP DESTROY", v)? > 0),
        Err(e) if error::is_no_such_key(&e) => Ok(false),
        Err(e) => Err(error::map(e, b.op("XGROUP DESTROY"))),
    }
}

/// `UNLINK` of keys.
pub(crate) async fn delete_keys(b: &RedisBackend, keys: &[String]) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    unlink(b, keys).await
}

/// Every add in one pipelined round trip, in order.
pub(crate) async fn add_batch(b: &RedisBackend, adds: Vec<Add>) -> Result<Vec<EntryId>> {
    if adds.is_empty() {
        return Ok(Vec::new());
    }
    let inline: Option<Vec<Option<(bool, u64)>>> =
        adds.iter().map(|add| inline_trim(&add.trim)).collect();
    let mut pipe = redis::Pipeline::with_capacity(adds.len() + 1);
    let skip = match inline {
        Some(trims) => {
            for (add, trim) in adds.iter().zip(trims) {
                pipe.add_command(xadd(&add.key, trim, &add.fields));
            }
            0
        }
        None => {
            // All through the script, so a NOSCRIPT could not split the
            // batch; the SCRIPT LOAD in front makes NOSCRIPT impossible.
            pipe.add_command(scripts::load(scripts::ADD.source));
            for add in &adds {
                pipe.add_command(scripts::add_cmd(&add.key, &add.trim, &add.fields)?);
            }
            1
        }
    };
    ids_of(b.pipeline(&pipe, skip, b.op("XADD")).await?, adds.len())
}

/// Entries added to one stream with the same trims, in one pipelined
/// round trip, in order; each command is built once, straight from the
/// entry's fields.
pub(crate) async fn add_many(b: &RedisBackend, many: AddMany<'_>) -> Result<Vec<EntryId>> {
    let count = many.entries.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let (pipe, skip) = add_pipeline(&many, 0)?;
    ids_of(b.pipeline(&pipe, skip, b.op("XADD")).await?, count)
}

/// The commands of [`add_many`], with room for `extra` more: the entries'
/// `XADD`s, or a `SCRIPT LOAD` and the `add` script per entry when the
/// trims need it; with how many replies come before the entries'.
fn add_pipeline(many: &AddMany<'_>, extra: usize) -> Result<(redis::Pipeline, usize)> {
    let mut pipe = redis::Pipeline::with_capacity(many.entries.len() + 1 + extra);
    let skip = match inline_trim(many.trim) {
        Some(trim) => {
            for fields in &many.entries {
                pipe.add_command(xadd(many.key, trim, fields));
            }
            0
        }
        None => {
            pipe.add_command(scripts::load(scripts::ADD.source));
            for fields in &many.entries {
                pipe.add_command(scripts::add_cmd(many.key, many.trim, fields)?);
            }
            1
        }
    };
    Ok((pipe, skip))
}

/// The oldest server with `WAITAOF`.
const WAITAOF_VERSION: (u32, u32, u32) = (7, 2, 0);

/// [`add_many`], then `WAIT` (or `WAITAOF` with fsync) in the same
/// pipeline, on a connection of its own: `WAIT` holds its connection until
/// the replicas answer or the timeout passes, and counts the writes made
/// on that connection. With fsync, the server is asked first whether it
/// can (Redis 7.2 or newer, append-only file on), and nothing is written
/// if it cannot.
pub(crate) async fn add_durable(
    b: &RedisBackend,
    many: AddMany<'_>,
    durability: Durability,
) -> Result<DurableWrite> {
    if !b.inner.conns.has_dedicated() {
        // `WAIT` would hold the caller's connection, and every command
        // queued behind it, for up to the timeout, and a response timeout
        // shorter than the wait would report a written entry as a
        // retryable timeout.
        return Err(StreamError::Unsupported {
            feature: "durable send".to_owned(),
            reason: "it waits on a connection of its own, and this backend was built on \
                     the caller's connection (from_connection_manager); connect with a URL \
                     or a client instead"
                .to_owned(),
        });
    }
    if durability.fsync {
        check_fsync(b).await?;
    }
    let count = many.entries.len();
    if count == 0 {
        // Nothing written, nothing to lose.
        return Ok(DurableWrite::new(Vec::new(), durability.replicas)
            .with_fsynced_locally(durability.fsync));
    }
    let (mut pipe, skip) = add_pipeline(&many, 1)?;
    let timeout = durability.timeout_ms();
    let (what, wait_cmd) = if durability.fsync {
        let mut cmd = redis::cmd("WAITAOF");
        cmd.arg(1).arg(durability.replicas).arg(timeout);
        ("WAITAOF", cmd)
    } else {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(durability.replicas).arg(timeout);
        ("WAIT", cmd)
    };
    pipe.add_command(wait_cmd);
    let wait = Duration::from_millis(timeout);
    let op = Op::new("XADD", b.inner.conns.dedicated_timeout(wait, b.timeout()));
    let mut replies = b
        .inner
        .conns
        .dedicated_pipe(&pipe, wait)
        .await
        .map_err(|e| error::map(e, op))?;
    if replies.len() != skip + count + 1 {
        return Err(bad_reply(
            "XADD",
            format!("{} replies to {} commands", replies.len(), pipe.len()),
        ));
    }
    let confirmation = replies.pop().unwrap_or(Value::Nil);
    // A refused `SCRIPT LOAD` or entry fails the call, as in `add_many`.
    if let Some(Value::ServerError(e)) = replies
        .iter()
        .find(|v| matches!(v, Value::ServerError(_)))
        .cloned()
    {
        return Err(error::map(e.into(), op));
    }
    let ids = ids_of(replies.split_off(skip), count)?;
    Ok(confirmed(what, confirmation, durability.fsync, ids))
}

/// The confirmations of a `WAIT` (a count) or `WAITAOF` (`[local,
/// replicas]`) reply. A refusal or a reply that cannot be read confirms
/// nothing; the ids are kept either way: the entries are written.
fn confirmed(
    what: &'static str,
    confirmation: Value,
    fsync: bool,
    ids: Vec<EntryId>,
) -> DurableWrite {
    let count = |v: Value| reply::int(what, v).ok().and_then(|n| u32::try_from(n).ok());
    match confirmation {
        Value::ServerError(e) => {
            // Written, but the server would not wait (an ACL without
            // `wait`, say): nothing is confirmed, and the ids are kept.
            tracing::error!(
                command = what,
                code = e.code(),
                error = e.details().unwrap_or_default(),
                "the server refused to wait for durability; the entries are written but not confirmed"
            );
            DurableWrite::new(ids, 0)
        }
        Value::Array(parts) if fsync => {
            let mut parts = parts.into_iter();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(local), Some(replicas), None) => {
                    let local = count(local);
                    let replicas = count(replicas);
                    if local.is_none() || replicas.is_none() {
                        unreadable(what);
                    }
                    DurableWrite::new(ids, replicas.unwrap_or(0))
                        .with_fsynced_locally(local.unwrap_or(0) >= 1)
                }
                _ => {
                    unreadable(what);
                    DurableWrite::new(ids, 0)
                }
            }
        }
        v => {
            let replicas = count(v);
            if replicas.is_none() {
                unreadable(what);
            }
            DurableWrite::new(ids, replicas.unwrap_or(0))
        }
    }
}

fn unreadable(what: &'static str) {
    tracing::error!(
        command = what,
        "unreadable reply to the durability wait; the entries are written but not confirmed"
    );
}

/// Refuses fsync confirmations the server cannot give, before anything is
/// written: `WAITAOF` needs Redis 7.2, and an append-only file to wait for.
async fn check_fsync(b: &RedisBackend) -> Result<()> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("server").arg("persistence");
    let text = reply::string("INFO", b.raw(cmd, b.op("INFO")).await?)?;
    let version = reply::redis_version(&text)
        .ok_or_else(|| bad_reply("INFO", "no readable redis_version line"))?;
    const FEATURE: &str = "durable send with fsync (WAITAOF)";
    require_version(FEATURE, WAITAOF_VERSION, version)?;
    if reply::info_field(&text, "aof_enabled") != Some("1") {
        return Err(StreamError::Unsupported {
            feature: FEATURE.to_owned(),
            reason: "the server has no append-only file to fsync (appendonly is off)".to_owned(),
        });
    }
    Ok(())
}

/// The ids `XADD` replied, one per entry.
fn ids_of(replies: Vec<Value>, expected: usize) -> Result<Vec<EntryId>> {
    if replies.len() != expected {
        return Err(bad_reply(
            "XADD",
            format!("{} ids for {expected} entries", replies.len()),
        ));
    }
    replies
        .into_iter()
        .map(|v| reply::string("XADD", v).map(EntryId::from))
        .collect()
}

/// `XACK`; with `delete`, `XDEL` too, in one script.
pub(crate) async fn ack(b: &RedisBackend, ack: &Ack<'_>) -> Result<u64> {
    if ack.ids.is_empty() {
        return Ok(0);
    }
    if ack.delete {
        return scripts::ack_delete(b, ack.key, ack.group, ack.ids).await;
    }
    let mut xack = redis::cmd("XACK");
    xack.arg(ack.key).arg(ack.group);
    for id in ack.ids {
        xack.arg(id.as_str());
    }
    reply::count("XACK", b.raw(xack, b.op("XACK")).await?)
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
    cmd.arg(bound(&query.start, "-")?)
        .arg(bound(&query.end, "+")?)
        .arg(scripts::count_arg(query.count));
    if let Some(consumer) = query.consumer {
        cmd.arg(consumer);
    }
    let op = b.op("XPENDING").on(query.key, query.group);
    let rows = reply::array("XPENDING", b.raw(cmd, op).await?)?;
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
            Ok(PendingEntry::new(
                reply::string("XPENDING", id)?,
                reply::string("XPENDING", consumer)?,
                Duration::from_millis(reply::count("XPENDING", idle)?),
                reply::count("XPENDING", n)?,
            ))
        })
        .collect()
}

/// `XRANGE`, or `XREVRANGE` for the newest first.
pub(crate) async fn range(b: &RedisBackend, query: RangeQuery<'_>) -> Result<Vec<Entry>> {
    let start = bound(&query.start, "-")?;
    let end = bound(&query.end, "+")?;
    if query.count == 0 {
        return Ok(Vec::new());
    }
    let (mut cmd, name, first, last) = if query.newest_first {
        (redis::cmd("XREVRANGE"), "XREVRANGE", end, start)
    } else {
        (redis::cmd("XRANGE"), "XRANGE", start, end)
    };
    cmd.arg(query.key)
        .arg(first)
        .arg(last)
        .arg("COUNT")
        .arg(scripts::count_arg(query.count));
    reply::entries(name, b.raw(cmd, b.op(name)).await?)
}

/// `XDEL` of each id, pipelined: the ids that existed.
pub(crate) async fn delete_entries(
    b: &RedisBackend,
    key: &str,
    ids: &[EntryId],
) -> Result<Vec<EntryId>> {
    let full = ids.iter().map(check_id).collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &full {
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(key).arg(id);
        pipe.add_command(cmd);
    }
    let replies = b.pipeline(&pipe, 0, b.op("XDEL")).await?;
    if replies.len() != ids.len() {
        return Err(bad_reply("XDEL", "one reply per id expected"));
    }
    let mut deleted = Vec::new();
    for (id, v) in ids.iter().zip(replies) {
        if reply::int("XDEL", v)? > 0 {
            deleted.push(id.clone());
        }
    }
    Ok(deleted)
}

/// `SCAN ... MATCH <prefix>* TYPE stream`, every page, sorted.
pub(crate) async fn stream_keys(b: &RedisBackend, prefix: &str) -> Result<Vec<String>> {
    let pattern = format!("{}*", glob_escape(prefix));
    let keys: std::collections::BTreeSet<String> = scan(b, &pattern, Some("stream"))
        .await?
        .into_iter()
        // Keys this library writes are UTF-8; another program's binary
        // key cannot be a stream name here.
        .filter_map(|key| String::from_utf8(key).ok())
        .collect();
    Ok(keys.into_iter().collect())
}

/// Every key matching `pattern` (of type `kind`, when given), by `SCAN`;
/// on a cluster, on every master. Keys written while it runs may be
/// missed, and one may come twice.
async fn scan(b: &RedisBackend, pattern: &str, kind: Option<&str>) -> Result<Vec<Vec<u8>>> {
    let page = |cursor: &str| {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        if let Some(kind) = kind {
            scan.arg("TYPE").arg(kind);
        }
        scan
    };
    let decode = |v: Value| -> Result<(String, Vec<Vec<u8>>)> {
        redis::from_redis_value(v).map_err(|e| bad_reply("SCAN", e.to_string()))
    };
    let mut keys = Vec::new();
    match b.inner.conns.commands() {
        Commands::Cluster(conn) => {
            let op = b.op("SCAN");
            let masters = crate::cluster::masters(&conn)
                .await
                .map_err(|e| error::map(e, op))?;
            for (host, port) in masters {
                let mut cursor = "0".to_owned();
                loop {
                    let reply = crate::cluster::on_node(&conn, &host, port, page(&cursor))
                        .await
                        .map_err(|e| error::map(e, op))?;
                    let (next, found) = decode(reply)?;
                    keys.extend(found);
                    if next == "0" {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Commands::Single(_) => {
            let mut cursor = "0".to_owned();
            loop {
                let (next, found) = decode(b.raw(page(&cursor), b.op("SCAN")).await?)?;
                keys.extend(found);
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
    }
    Ok(keys)
}

/// `XINFO GROUPS`; a missing stream has none.
pub(crate) async fn groups(b: &RedisBackend, key: &str) -> Result<Vec<GroupInfo>> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("GROUPS").arg(key);
    let rows = match b.call(cmd).await {
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
    let rows = match b.call(cmd).await {
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
pub(crate) async fn add(b: &RedisBackend, add: &Add) -> Result<EntryId> {
    let id = match inline_trim(&add.trim) {
        Some(trim) => {
            b.raw(xadd(&add.key, trim, &add.fields), b.op("XADD"))
                .await?
        }
        None => scripts::add(b, add).await?,
    };
    reply::string("XADD", id).map(EntryId::from)
}

/// Deletes every key under `namespace` (`<namespace>:*`) with `SCAN` and
/// `UNLINK`; returns how many were deleted.
pub(crate) async fn delete_namespace(b: &RedisBackend, namespace: &str) -> Result<u64> {
    let pattern = format!("{}:*", glob_escape(namespace));
    let mut keys = scan(b, &pattern, None).await?;
    keys.sort_unstable();
    keys.dedup();
    let mut deleted = 0;
    for page in keys.chunks(1000) {
        deleted += unlink(b, page).await?;
    }
    Ok(deleted)
}

/// `UNLINK` of `keys`: one command on one server; on a cluster, one per
/// key, in one pipeline split by slot. How many existed.
async fn unlink<K: redis::ToRedisArgs>(b: &RedisBackend, keys: &[K]) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    if !b.is_cluster() {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        return reply::count("UNLINK", b.raw(cmd, b.op("UNLINK")).await?);
    }
    let mut pipe = redis::Pipeline::with_capacity(keys.len());
    for key in keys {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(key);
        pipe.add_command(cmd);
    }
    let mut deleted = 0;
    for reply in b.pipeline(&pipe, 0, b.op("UNLINK")).await? {
        deleted += reply::count("UNLINK", reply)?;
    }
    Ok(deleted)
}

/// How many replicas are connected to the master serving `key`
/// (`connected_slaves` of `INFO replication`, asked of that master on a
/// cluster).
pub(crate) async fn replicas_of(b: &RedisBackend, key: &str) -> Result<u64> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("replication");
    let op = b.op("INFO");
    let reply = match b.inner.conns.commands() {
        Commands::Cluster(conn) => crate::cluster::on_master_of(&conn, key, cmd)
            .await
            .map_err(|e| error::map(e, op))?,
        Commands::Single(_) => b.raw(cmd, op).await?,
    };
    let text = reply::string("INFO", reply)?;
    Ok(reply::info_field(&text, "connected_slaves")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Escapes the glob characters of `SCAN MATCH` and ACL key patterns.
pub(crate) fn glob_escape(s: &str) -> String {
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
    fn old_servers_are_refused() {
        assert!(check_version((7, 0, 0)).is_ok());
        assert!(check_version((7, 2, 4)).is_ok());
        let e = check_version((6, 2, 14)).unwrap_err();
        assert!(
            matches!(&e, StreamError::Unsupported { reason, .. } if reason.contains("6.2.14") && reason.contains("7.0.0")),
            "{e}"
        );
        assert_eq!(
            bound(&Bound::Excluded(EntryId::from("1-0")), "-").unwrap(),
            "(1-0"
        );
        assert_eq!(bound(&Bound::Unbounded, "+").unwrap(), "+");
        assert_eq!(
            bound(&Bound::Included(EntryId::from("17")), "-").unwrap(),
            "17"
        );
    }

    #[test]
    fn ids_are_checked_as_the_server_reads_them() {
        assert_eq!(check_id(&EntryId::from("1700-3")).unwrap(), "1700-3");
        assert_eq!(check_id(&EntryId::from("1700")).unwrap(), "1700-0");
        for bad in [
            "",
            "-",
            "+",
            "$",
            "1-",
            "-1",
            "1-x",
            "a-1",
            "1-2-3",
            " 1",
            "99999999999999999999",
        ] {
            assert!(
                matches!(
                    check_id(&EntryId::from(bad)),
                    Err(StreamError::InvalidId { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("xt-1-a::b"), "xt-1-a::b");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}

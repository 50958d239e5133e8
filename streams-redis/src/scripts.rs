//! The Lua scripts, loaded once per server and called by `EVALSHA`.
//!
//! Each script is atomic on the server. Keys are passed only through `KEYS`
//! and values only through `ARGV`. `redis::Script` reloads a script when the
//! server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`); pipelines
//! put a `SCRIPT LOAD` in front instead, because retrying a pipeline could
//! repeat the writes that did succeed.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Cmd, Script, ScriptInvocation, Value};
use streams_core::backend::{
    Add, AutoClaim, AutoClaimPage, ConsumerRef, ConsumerRemoval, Cursor, DeliveredEntry, Entry,
    EntryId, Fields, KeyEntries, Lease, Move, MoveOutcome, MoveTarget, Promotion, ReadGroup,
    ScheduleKeys, Transfer, TransferOutcome, Trim,
};
use streams_core::{Result, StreamError};

use crate::backend::RedisBackend;
use crate::commands::push_fields;
use crate::error::bad_reply;
use crate::reply;

/// Prepends the shared helpers (`now_ms`, `apply_trims`, `rest`, `field_of`)
/// to a script.
macro_rules! with_lib {
    ($file:literal) => {
        concat!(include_str!("scripts/lib.lua"), include_str!($file))
    };
}

/// Adds an entry with trims by age (server clock) and/or length.
pub(crate) static ADD: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lib!("scripts/add.lua")));

/// Trims a stream by age (server clock) and/or length.
pub(crate) static TRIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lib!("scripts/trim.lua")));

/// The fenced "write the new copy, then acknowledge" move.
pub(crate) static MOVE_ENTRY: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lib!("scripts/move_entry.lua")));

/// Moves due retries into a ready stream.
pub(crate) static PROMOTE_DUE: LazyLock<Script> = LazyLock::new(|| Script::new(PROMOTE_DUE_SOURCE));

/// `XAUTOCLAIM` plus the delivery counts of the claimed entries.
pub(crate) static AUTO_CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/auto_claim.lua")));

/// Fenced `XCLAIM ... IDLE ms JUSTID`.
pub(crate) static SET_IDLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/set_idle.lua")));

/// Delivers again entries a consumer still holds.
pub(crate) static REDELIVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/redeliver.lua")));

/// A group read with a total count shared fairly over its keys.
pub(crate) static READ_GROUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lib!("scripts/read_group.lua")));

/// Creates a group after an id, when the stream's history reaches it.
pub(crate) static CREATE_GROUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lib!("scripts/create_group.lua")));

/// `XACK` then `XDEL`, atomically.
pub(crate) static ACK_DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/ack_delete.lua")));

/// Adds a copy of an entry to another stream and deletes it, if it exists.
pub(crate) static TRANSFER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/transfer.lua")));

/// Deletes a consumer unless it holds pending entries.
pub(crate) static DELETE_CONSUMER: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lib!("scripts/delete_consumer.lua")));

/// The source of [`ADD`], for `SCRIPT LOAD` in front of a pipeline.
pub(crate) const ADD_SOURCE: &str = with_lib!("scripts/add.lua");

/// The source of [`PROMOTE_DUE`], for `SCRIPT LOAD` in front of a pipeline.
/// Self-contained: other languages `EVAL` this text to promote their retries.
pub(crate) const PROMOTE_DUE_SOURCE: &str = include_str!("scripts/promote_due.lua");

/// The largest `COUNT` sent to the server: counts are integers there, and
/// the scripts do arithmetic on them as doubles. No reply comes near it.
const MAX_COUNT: usize = (1 << 31) - 1;

/// A count as sent to the server: at least 1, at most [`MAX_COUNT`].
pub(crate) fn count_arg(n: usize) -> usize {
    n.clamp(1, MAX_COUNT)
}

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `ARGV` form of trims read by the scripts' `apply_trims`: their
/// number, then a triple per trim.
pub(crate) fn trim_args(trims: &[Trim]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(1 + 3 * trims.len());
    out.push(trims.len().to_string());
    for t in trims {
        let (kind, approx, value) = match *t {
            Trim::MaxLen { len, approx } => ("MAXLEN", approx, len),
            Trim::MaxAge { age, approx } => ("MAXAGE", approx, ms(age)),
            _ => return Err(unknown("trim")),
        };
        out.push(kind.to_owned());
        out.push(if approx { "~" } else { "=" }.to_owned());
        out.push(value.to_string());
    }
    Ok(out)
}

/// A request of a kind this backend does not know yet.
pub(crate) fn unknown(what: &str) -> StreamError {
    StreamError::Unsupported {
        feature: what.to_owned(),
        reason: "this kind is not known to the redis backend".to_owned(),
    }
}

/// An `EVALSHA` of `script` as a plain command, for pipelines.
pub(crate) fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// `SCRIPT LOAD` of a script source.
pub(crate) fn load(source: &str) -> Cmd {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(source);
    cmd
}

fn push_invocation_fields(inv: &mut ScriptInvocation<'_>, fields: &Fields) {
    for (k, v) in fields {
        inv.arg(&k[..]).arg(&v[..]);
    }
}

/// Adds an entry through the `add` script (trims by age or several trims).
pub(crate) async fn add(b: &RedisBackend, add: &Add) -> Result<Value> {
    let mut inv = ADD.prepare_invoke();
    inv.key(&add.key).arg(trim_args(&add.trim)?);
    push_invocation_fields(&mut inv, &add.fields);
    b.script(&inv, b.op("XADD (add script)")).await
}

/// The `add` script as an `EVALSHA` command, for a pipeline that loads it first.
pub(crate) fn add_cmd(add: &Add) -> Result<Cmd> {
    let mut cmd = evalsha(&ADD, &[&add.key]);
    cmd.arg(trim_args(&add.trim)?);
    push_fields(&mut cmd, &add.fields);
    Ok(cmd)
}

/// Trims by age (or anything else) on the server's clock; returns entries removed.
pub(crate) async fn trim(b: &RedisBackend, key: &str, trim: Trim) -> Result<u64> {
    let mut inv = TRIM.prepare_invoke();
    inv.key(key).arg(trim_args(&[trim])?);
    reply::count("XTRIM", b.script(&inv, b.op("XTRIM (trim script)")).await?)
}

/// The fenced move; see `scripts/move_entry.lua`.
pub(crate) async fn move_entry(b: &RedisBackend, mv: &Move) -> Result<MoveOutcome> {
    const WHAT: &str = "move_entry";
    let mut inv = MOVE_ENTRY.prepare_invoke();
    let (target, is_stream) = match &mv.target {
        MoveTarget::Stream { key, .. } => (key, true),
        MoveTarget::Schedule { key, .. } => (key, false),
        _ => return Err(unknown("move target")),
    };
    inv.key(&mv.source)
        .key(target)
        .arg(&mv.group)
        .arg(mv.id.as_str())
        .arg(mv.consumer.as_deref().unwrap_or(""))
        .arg(if mv.delete_source { "1" } else { "0" });
    match &mv.target {
        MoveTarget::Stream { fields, trim, .. } => {
            inv.arg("stream").arg(0).arg(trim_args(trim)?);
            push_invocation_fields(&mut inv, fields);
        }
        MoveTarget::Schedule { fields, delay, .. } => {
            inv.arg("schedule").arg(ms(*delay)).arg(trim_args(&[])?);
            push_invocation_fields(&mut inv, fields);
        }
        _ => return Err(unknown("move target")),
    }
    let op = b.op("EVALSHA move_entry").on(&mv.source, &mv.group);
    let mut parts = reply::array(WHAT, b.script(&inv, op).await?)?.into_iter();
    let tag = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    let arg = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    match (tag.as_deref(), arg) {
        (Some("moved"), Some(id)) => Ok(MoveOutcome::Moved {
            new_id: is_stream.then(|| EntryId::from(id)),
        }),
        (Some("not_pending"), None) => Ok(MoveOutcome::NotPending),
        (Some("owned_by"), Some(owner)) => Ok(MoveOutcome::OwnedBy(owner)),
        _ => Err(bad_reply(WHAT, "unknown outcome")),
    }
}

/// The existence-checked transfer; see `scripts/transfer.lua`.
pub(crate) async fn transfer(b: &RedisBackend, t: &Transfer) -> Result<TransferOutcome> {
    let id = crate::commands::check_id(&t.id)?;
    let mut inv = TRANSFER.prepare_invoke();
    inv.key(&t.source).key(&t.target).arg(id);
    push_invocation_fields(&mut inv, &t.fields);
    match b.script(&inv, b.op("EVALSHA transfer")).await? {
        Value::Nil => Ok(TransferOutcome::Missing),
        v => Ok(TransferOutcome::Transferred {
            new_id: EntryId::from(reply::string("transfer", v)?),
        }),
    }
}

/// Promotes due retries of every schedule in one round trip; a schedule that
/// cannot be read reports its error and the others go on.
pub(crate) async fn promote_due(
    b: &RedisBackend,
    schedules: &[ScheduleKeys],
    limit: usize,
) -> Result<Vec<Promotion>> {
    const WHAT: &str = "promote_due";
    if schedules.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.add_command(load(PROMOTE_DUE_SOURCE)).ignore();
    for keys in schedules {
        let mut cmd = evalsha(&PROMOTE_DUE, &[&keys.schedule, &keys.ready]);
        cmd.arg(count_arg(limit));
        pipe.add_command(cmd);
    }
    let replies = b.pipeline(&pipe, b.op("EVALSHA promote_due")).await?;
    if replies.len() != schedules.len() {
        return Err(bad_reply(WHAT, "one reply per schedule expected"));
    }
    replies
        .into_iter()
        .map(|v| {
            let mut it = reply::array(WHAT, v)?.into_iter();
            let (Some(n), Some(next)) = (it.next(), it.next()) else {
                return Err(bad_reply(WHAT, "expected [promoted, next due]"));
            };
            let n = reply::int(WHAT, n)?;
            if n < 0 {
                return Ok(Promotion::failed(reply::string(WHAT, next)?));
            }
            let next = reply::int(WHAT, next)?;
            Ok(Promotion::new(
                n.unsigned_abs(),
                u64::try_from(next).ok().map(Duration::from_millis),
            ))
        })
        .collect()
}

/// One page of claiming, with delivery counts; see `scripts/auto_claim.lua`.
pub(crate) async fn auto_claim(b: &RedisBackend, claim: &AutoClaim<'_>) -> Result<AutoClaimPage> {
    const WHAT: &str = "XAUTOCLAIM";
    let mut inv = AUTO_CLAIM.prepare_invoke();
    inv.key(claim.key)
        .arg(claim.group)
        .arg(claim.consumer)
        .arg(ms(claim.min_idle))
        .arg(claim.start.as_ref().map_or("0-0", Cursor::as_str))
        .arg(count_arg(claim.count))
        .arg(if claim.until_redelivered { "1" } else { "0" });
    let op = b.op("EVALSHA auto_claim").on(claim.key, claim.group);
    let mut parts = reply::array(WHAT, b.script(&inv, op).await?)?.into_iter();
    let (Some(next), Some(entries), Some(deleted), Some(counts)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_reply(WHAT, "expected [next, entries, deleted, counts]"));
    };
    let entries = reply::array(WHAT, entries)?;
    let counts = reply::array(WHAT, counts)?;
    if entries.len() != counts.len() {
        return Err(bad_reply(WHAT, "one delivery count per entry expected"));
    }
    let mut claimed = Vec::with_capacity(entries.len());
    for (entry, n) in entries.into_iter().zip(counts) {
        if let (id, Some(fields)) = reply::entry(WHAT, entry)? {
            claimed.push(DeliveredEntry::new(
                Entry::new(id, fields),
                reply::count(WHAT, n)?,
            ));
        }
    }
    let next = reply::string(WHAT, next)?;
    Ok(AutoClaimPage::new(
        (next != "0-0").then(|| Cursor::new(next)),
        claimed,
        reply::array(WHAT, deleted)?
            .into_iter()
            .map(|v| reply::string(WHAT, v).map(EntryId::from))
            .collect::<Result<_>>()?,
    ))
}

/// The ids of a lease as the scripts read them: pairs of id and expected
/// delivery count (`''` when not known).
fn push_lease_ids(inv: &mut ScriptInvocation<'_>, lease: &Lease<'_>) {
    for (i, id) in lease.ids.iter().enumerate() {
        inv.arg(id.as_str());
        match lease.expected_deliveries(i) {
            Some(n) => inv.arg(n),
            None => inv.arg(""),
        };
    }
}

/// Fenced idle-time update, giving a delivery back with `refund`; see
/// `scripts/set_idle.lua`.
pub(crate) async fn set_idle(
    b: &RedisBackend,
    lease: &Lease<'_>,
    idle: Duration,
    refund: bool,
) -> Result<Vec<EntryId>> {
    const WHAT: &str = "XCLAIM";
    if lease.ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = SET_IDLE.prepare_invoke();
    inv.key(lease.key)
        .arg(lease.group)
        .arg(lease.consumer)
        .arg(ms(idle))
        .arg(if refund { "1" } else { "0" });
    push_lease_ids(&mut inv, lease);
    let op = b.op("EVALSHA set_idle").on(lease.key, lease.group);
    reply::array(WHAT, b.script(&inv, op).await?)?
        .into_iter()
        .map(|v| reply::string(WHAT, v).map(EntryId::from))
        .collect()
}

/// Entries delivered again to the consumer holding them; see
/// `scripts/redeliver.lua`.
pub(crate) async fn redeliver(b: &RedisBackend, lease: &Lease<'_>) -> Result<KeyEntries> {
    const WHAT: &str = "XCLAIM (redeliver)";
    let mut reply = KeyEntries::new(lease.key);
    if lease.ids.is_empty() {
        return Ok(reply);
    }
    let mut inv = REDELIVER.prepare_invoke();
    inv.key(lease.key).arg(lease.group).arg(lease.consumer);
    push_lease_ids(&mut inv, lease);
    let op = b.op("EVALSHA redeliver").on(lease.key, lease.group);
    let mut parts = reply::array(WHAT, b.script(&inv, op).await?)?.into_iter();
    let (Some(entries), Some(counts), Some(deleted)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_reply(WHAT, "expected [entries, counts, deleted]"));
    };
    let entries = reply::array(WHAT, entries)?;
    let counts = reply::array(WHAT, counts)?;
    if entries.len() != counts.len() {
        return Err(bad_reply(WHAT, "one delivery count per entry expected"));
    }
    for (entry, n) in entries.into_iter().zip(counts) {
        let (id, fields) = reply::entry(WHAT, entry)?;
        reply.entries.push(DeliveredEntry::new(
            Entry::new(id, fields.unwrap_or_default()),
            reply::count(WHAT, n)?,
        ));
    }
    reply.deleted = reply::array(WHAT, deleted)?
        .into_iter()
        .map(|v| reply::string(WHAT, v).map(EntryId::from))
        .collect::<Result<_>>()?;
    Ok(reply)
}

/// A group created after `after` when the stream's history reaches it; see
/// `scripts/create_group.lua`.
pub(crate) async fn create_group_after(
    b: &RedisBackend,
    key: &str,
    group: &str,
    after: &EntryId,
) -> Result<bool> {
    let mut inv = CREATE_GROUP.prepare_invoke();
    inv.key(key).arg(group).arg(after.as_str());
    let op = b.op("EVALSHA create_group").on(key, group);
    Ok(reply::int("XGROUP CREATE", b.script(&inv, op).await?)? == 1)
}

/// `XACK` and `XDEL` in one script (no `MULTI`, which an ACL may refuse).
pub(crate) async fn ack_delete(
    b: &RedisBackend,
    key: &str,
    group: &str,
    ids: &[EntryId],
) -> Result<u64> {
    let mut inv = ACK_DELETE.prepare_invoke();
    inv.key(key).arg(group);
    for id in ids {
        inv.arg(id.as_str());
    }
    let op = b.op("EVALSHA ack_delete").on(key, group);
    reply::count("XACK", b.script(&inv, op).await?)
}

/// The fair group read of `scripts/read_group.lua`: the entries, and when
/// nothing was read, the group's last delivered id per key (for a
/// blocking wait).
pub(crate) async fn read_group(
    b: &RedisBackend,
    read: &ReadGroup<'_>,
) -> Result<(Vec<KeyEntries>, Vec<String>)> {
    const WHAT: &str = "XREADGROUP";
    let mut inv = READ_GROUP.prepare_invoke();
    for key in read.keys {
        inv.key(key);
    }
    inv.arg(read.group)
        .arg(read.consumer)
        .arg(count_arg(read.count));
    let first = read.keys.first().map_or("", String::as_str);
    let op = b.op("XREADGROUP").on(first, read.group);
    let mut parts = reply::array(WHAT, b.script(&inv, op).await?)?.into_iter();
    let (Some(items), Some(waits)) = (parts.next(), parts.next()) else {
        return Err(bad_reply(WHAT, "expected [items, waits]"));
    };
    let mut out = Vec::new();
    for item in reply::array(WHAT, items)? {
        let mut it = reply::array(WHAT, item)?.into_iter();
        let (Some(index), Some(entries)) = (it.next(), it.next()) else {
            return Err(bad_reply(WHAT, "an item is not [index, entries]"));
        };
        let index = usize::try_from(reply::int(WHAT, index)?)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .filter(|i| *i < read.keys.len())
            .ok_or_else(|| bad_reply(WHAT, "key index out of range"))?;
        let entries = reply::array(WHAT, entries)?;
        let mut reply = KeyEntries::new(read.keys[index].clone());
        reply.entries.reserve(entries.len());
        for entry in entries {
            let (id, fields) = reply::entry(WHAT, entry)?;
            reply.entries.push(DeliveredEntry::new(
                Entry::new(id, fields.unwrap_or_default()),
                1,
            ));
        }
        out.push(reply);
    }
    let waits = reply::array(WHAT, waits)?
        .into_iter()
        .map(|v| reply::string(WHAT, v))
        .collect::<Result<_>>()?;
    Ok((out, waits))
}

/// Deletes a consumer that holds nothing; see `scripts/delete_consumer.lua`.
pub(crate) async fn delete_consumer(
    b: &RedisBackend,
    c: ConsumerRef<'_>,
) -> Result<ConsumerRemoval> {
    let mut inv = DELETE_CONSUMER.prepare_invoke();
    inv.key(c.key).arg(c.group).arg(c.consumer);
    let op = b.op("EVALSHA delete_consumer").on(c.key, c.group);
    match reply::int("XGROUP DELCONSUMER", b.script(&inv, op).await?)? {
        0 => Ok(ConsumerRemoval::Deleted),
        n if n > 0 => Ok(ConsumerRemoval::HasPending(n.unsigned_abs())),
        _ => Ok(ConsumerRemoval::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_encode_as_triples() {
        let args = trim_args(&[
            Trim::MaxLen {
                len: 10,
                approx: true,
            },
            Trim::MaxAge {
                age: Duration::from_secs(2),
                approx: false,
            },
        ])
        .unwrap();
        assert_eq!(args, ["2", "MAXLEN", "~", "10", "MAXAGE", "=", "2000"]);
        assert_eq!(trim_args(&[]).unwrap(), ["0"]);
    }

    #[test]
    fn sources_match_scripts() {
        assert_eq!(Script::new(ADD_SOURCE).get_hash(), ADD.get_hash());
        assert_eq!(
            Script::new(PROMOTE_DUE_SOURCE).get_hash(),
            PROMOTE_DUE.get_hash()
        );
        assert!(MOVE_ENTRY.get_hash() != TRIM.get_hash());
        for s in [
            &*AUTO_CLAIM,
            &*SET_IDLE,
            &*REDELIVER,
            &*DELETE_CONSUMER,
            &*READ_GROUP,
            &*CREATE_GROUP,
            &*ACK_DELETE,
            &*TRANSFER,
        ] {
            assert_eq!(s.get_hash().len(), 40);
        }
    }
}

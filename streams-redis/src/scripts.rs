//! The Lua scripts, loaded once per server and called by `EVALSHA`.
//!
//! Each script is atomic on the server. Keys are passed only through `KEYS`
//! and values only through `ARGV`. Calls are sent as `EVALSHA` alone; when
//! the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`; the
//! call did not run), the script is loaded and the call sent again.
//! Pipelines of script calls whose order does not matter (moves,
//! promotions) send again only the calls answered `NOSCRIPT`; a batch of
//! adds, whose order does, puts a `SCRIPT LOAD` in front instead.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Cmd, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use streams_core::backend::{
    Add, AutoClaim, AutoClaimPage, ConsumerRef, ConsumerRemoval, Cursor, DeliveredEntry, Entry,
    EntryId, Fields, KeyEntries, Lease, Move, MoveOutcome, MoveTarget, Promotion, ReadGroup,
    ScheduleKeys, Transfer, TransferOutcome, Trim,
};
use streams_core::{Result, StreamError};

use crate::backend::RedisBackend;
use crate::commands::push_fields;
use crate::error::{self, Op, bad_reply};
use crate::reply;

/// Prepends the shared helpers (`now_ms`, `apply_trims`, `rest`, `field_of`)
/// to a script.
macro_rules! with_lib {
    ($file:literal) => {
        concat!(include_str!("scripts/lib.lua"), include_str!($file))
    };
}

/// A Lua script: its name (for errors), its source, and the script
/// loaded from it (which it dereferences to).
pub(crate) struct Lua {
    /// The file name without `.lua`.
    pub(crate) name: &'static str,
    /// The text sent to the server.
    pub(crate) source: &'static str,
    script: LazyLock<Script>,
}

impl std::fmt::Debug for Lua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lua")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Lua {
    type Target = Script;

    fn deref(&self) -> &Script {
        &self.script
    }
}

impl Lua {
    /// The commands the script calls (`redis.call` and `redis.pcall` with
    /// a literal name), in ACL form (`xadd`, `xgroup|create`), sorted and
    /// without repeats.
    pub(crate) fn commands(&self) -> Vec<String> {
        lua_commands(self.source)
    }
}

/// A [`Lua`] static from a name and a source expression.
macro_rules! lua {
    ($name:literal, $source:expr) => {
        Lua {
            name: $name,
            source: $source,
            script: LazyLock::new(|| Script::new($source)),
        }
    };
}

/// Commands that take a subcommand, which ACL rules name as `command|sub`.
pub(crate) const CONTAINERS: [&str; 5] = ["xgroup", "xinfo", "script", "client", "object"];

/// The commands a Lua source calls, in ACL form; see [`Lua::commands`].
pub(crate) fn lua_commands(source: &str) -> Vec<String> {
    let mut found = std::collections::BTreeSet::new();
    for call in ["redis.call(", "redis.pcall("] {
        for (at, _) in source.match_indices(call) {
            let mut literals = string_literals(&source[at + call.len()..]);
            let Some(name) = literals.next() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            match literals.next() {
                Some(sub) if CONTAINERS.contains(&name.as_str()) => {
                    found.insert(format!("{name}|{}", sub.to_ascii_lowercase()));
                }
                _ => {
                    found.insert(name);
                }
            }
        }
    }
    found.into_iter().collect()
}

/// The leading arguments of a call that are string literals (`'X', "Y",`),
/// up to the first that is not.
fn string_literals(args: &str) -> impl Iterator<Item = &str> {
    let mut rest = args;
    std::iter::from_fn(move || {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        let quote = trimmed.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
        let body = &trimmed[1..];
        let end = body.find(quote)?;
        rest = &body[end + 1..];
        Some(&body[..end])
    })
}

/// Adds an entry with trims by age (server clock) and/or length.
pub(crate) static ADD: Lua = lua!("add", with_lib!("scripts/add.lua"));

/// Trims a stream by age (server clock) and/or length.
pub(crate) static TRIM: Lua = lua!("trim", with_lib!("scripts/trim.lua"));

/// The fenced "write the new copy, then acknowledge" move.
pub(crate) static MOVE_ENTRY: Lua = lua!("move_entry", with_lib!("scripts/move_entry.lua"));

/// Many fenced moves, each on its own, in one call.
pub(crate) static MOVE_ENTRIES: Lua = lua!("move_entries", with_lib!("scripts/move_entries.lua"));

/// Moves due retries into a ready stream.
pub(crate) static PROMOTE_DUE: Lua = lua!("promote_due", PROMOTE_DUE_SOURCE);

/// `XAUTOCLAIM` plus the delivery counts of the claimed entries.
pub(crate) static AUTO_CLAIM: Lua = lua!("auto_claim", include_str!("scripts/auto_claim.lua"));

/// Fenced `XCLAIM ... IDLE ms JUSTID`.
pub(crate) static SET_IDLE: Lua = lua!("set_idle", include_str!("scripts/set_idle.lua"));

/// Delivers again entries a consumer still holds.
pub(crate) static REDELIVER: Lua = lua!("redeliver", include_str!("scripts/redeliver.lua"));

/// A group read with a total count shared fairly over its keys.
pub(crate) static READ_GROUP: Lua = lua!("read_group", with_lib!("scripts/read_group.lua"));

/// Creates a group after an id, when the stream's history reaches it.
pub(crate) static CREATE_GROUP: Lua = lua!("create_group", with_lib!("scripts/create_group.lua"));

/// `XACK` then `XDEL`, atomically.
pub(crate) static ACK_DELETE: Lua = lua!("ack_delete", include_str!("scripts/ack_delete.lua"));

/// Adds a copy of an entry to another stream and deletes it, if it exists.
pub(crate) static TRANSFER: Lua = lua!("transfer", include_str!("scripts/transfer.lua"));

/// Deletes a consumer unless it holds pending entries.
pub(crate) static DELETE_CONSUMER: Lua =
    lua!("delete_consumer", with_lib!("scripts/delete_consumer.lua"));

/// Acknowledges a moved entry whose copy went to another cluster slot.
pub(crate) static SETTLE: Lua = lua!("settle", with_lib!("scripts/settle.lua"));

/// Every script the backend runs.
#[cfg(test)]
pub(crate) static ALL: [&Lua; 14] = [
    &ADD,
    &TRIM,
    &MOVE_ENTRY,
    &MOVE_ENTRIES,
    &PROMOTE_DUE,
    &AUTO_CLAIM,
    &SET_IDLE,
    &REDELIVER,
    &READ_GROUP,
    &CREATE_GROUP,
    &ACK_DELETE,
    &TRANSFER,
    &DELETE_CONSUMER,
    &SETTLE,
];

/// The source of [`PROMOTE_DUE`], self-contained: other languages `EVAL`
/// this text to promote their retries.
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
#[cfg(test)]
pub(crate) fn trim_args(trims: &[Trim]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(1 + 3 * trims.len());
    out.push(trims.len().to_string());
    for t in trims {
        let (kind, approx, value) = trim_parts(t)?;
        out.push(kind.to_owned());
        out.push(if approx { "~" } else { "=" }.to_owned());
        out.push(value.to_string());
    }
    Ok(out)
}

fn trim_parts(t: &Trim) -> Result<(&'static str, bool, u64)> {
    match *t {
        Trim::MaxLen { len, approx } => Ok(("MAXLEN", approx, len)),
        Trim::MaxAge { age, approx } => Ok(("MAXAGE", approx, ms(age))),
        _ => Err(unknown("trim")),
    }
}

/// Appends trims in the form of [`trim_args`].
fn push_trims(cmd: &mut Cmd, trims: &[Trim]) -> Result<()> {
    cmd.arg(trims.len());
    for t in trims {
        let (kind, approx, value) = trim_parts(t)?;
        cmd.arg(kind).arg(if approx { "~" } else { "=" }).arg(value);
    }
    Ok(())
}

/// A request of a kind this backend does not know yet.
pub(crate) fn unknown(what: &str) -> StreamError {
    StreamError::Unsupported {
        feature: what.to_owned(),
        reason: "this kind is not known to the redis backend".to_owned(),
    }
}

/// An `EVALSHA` of `script` as a plain command; its arguments follow.
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

/// Whether the server does not have the script (it restarted, or its
/// scripts were flushed): the call did not run.
pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Whether a reply in a pipeline is `NOSCRIPT`.
fn is_noscript_reply(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// Runs the scripted commands `build(i)` for `i` in `0..count` in one
/// pipeline; those the server answered `NOSCRIPT` (none ran) go again,
/// after loading the script, in a second round trip. The replies come in
/// the order of the commands; a refusal is a [`Value::ServerError`]. Use
/// it only where the order in which the commands run does not matter.
async fn eval_many(
    b: &RedisBackend,
    lua: &'static Lua,
    op: Op<'_>,
    count: usize,
    build: impl Fn(usize) -> Result<Cmd>,
) -> Result<Vec<Value>> {
    let op = op.script(lua);
    let mut pipe = redis::Pipeline::with_capacity(count);
    for i in 0..count {
        pipe.add_command(build(i)?);
    }
    let mut replies = b.pipeline_replies(&pipe, 0, op).await?;
    let again: Vec<usize> = (0..count)
        .filter(|&i| is_noscript_reply(&replies[i]))
        .collect();
    if again.is_empty() {
        return Ok(replies);
    }
    let mut pipe = redis::Pipeline::with_capacity(again.len() + 1);
    pipe.add_command(load(lua.source));
    for &i in &again {
        pipe.add_command(build(i)?);
    }
    let retried = b.pipeline_replies(&pipe, 1, op).await?;
    for (i, reply) in again.into_iter().zip(retried) {
        replies[i] = reply;
    }
    Ok(replies)
}

/// A pipelined reply as a result: a refusal becomes the mapped error.
fn reply_result(v: Value, op: Op<'_>) -> Result<Value> {
    match v {
        Value::ServerError(e) => Err(error::map(e.into(), op)),
        v => Ok(v),
    }
}

/// Adds an entry through the `add` script (trims by age or several trims).
pub(crate) async fn add(b: &RedisBackend, add: &Add) -> Result<Value> {
    b.eval(&ADD, b.op("XADD (add script)"), || {
        add_cmd(&add.key, &add.trim, &add.fields)
    })
    .await
}

/// The `add` script as an `EVALSHA` command.
pub(crate) fn add_cmd(key: &str, trim: &[Trim], fields: &Fields) -> Result<Cmd> {
    let mut cmd = evalsha(&ADD, &[key]);
    push_trims(&mut cmd, trim)?;
    push_fields(&mut cmd, fields);
    Ok(cmd)
}

/// Trims by age (or anything else) on the server's clock; returns entries removed.
pub(crate) async fn trim(b: &RedisBackend, key: &str, trim: Trim) -> Result<u64> {
    let reply = b
        .eval(&TRIM, b.op("XTRIM (trim script)"), || {
            let mut cmd = evalsha(&TRIM, &[key]);
            push_trims(&mut cmd, &[trim])?;
            Ok(cmd)
        })
        .await?;
    reply::count("XTRIM", reply)
}

/// The `EVALSHA` of a fenced move; see `scripts/move_entry.lua`.
fn move_cmd(mv: &Move) -> Result<Cmd> {
    let (MoveTarget::Stream { key: target, .. } | MoveTarget::Schedule { key: target, .. }) =
        &mv.target
    else {
        return Err(unknown("move target"));
    };
    let mut cmd = evalsha(&MOVE_ENTRY, &[&mv.source, target]);
    cmd.arg(&mv.group)
        .arg(mv.id.as_str())
        .arg(mv.consumer.as_deref().unwrap_or(""))
        .arg(if mv.delete_source { "1" } else { "0" });
    match &mv.target {
        MoveTarget::Stream { fields, trim, .. } => {
            cmd.arg("stream").arg(0);
            push_trims(&mut cmd, trim)?;
            push_fields(&mut cmd, fields);
        }
        MoveTarget::Schedule { fields, delay, .. } => {
            cmd.arg("schedule").arg(ms(*delay)).arg(0);
            push_fields(&mut cmd, fields);
        }
        _ => return Err(unknown("move target")),
    }
    Ok(cmd)
}

/// What the move script answered.
fn move_outcome(mv: &Move, reply: Value) -> Result<MoveOutcome> {
    const WHAT: &str = "move_entry";
    let mut parts = reply::array(WHAT, reply)?.into_iter();
    let tag = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    let arg = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    settled_as(WHAT, mv, tag.as_deref(), arg)
}

/// A move's outcome from the script's tag and its argument.
fn settled_as(
    what: &'static str,
    mv: &Move,
    tag: Option<&str>,
    arg: Option<String>,
) -> Result<MoveOutcome> {
    let is_stream = matches!(mv.target, MoveTarget::Stream { .. });
    match (tag, arg) {
        (Some("moved"), Some(id)) => Ok(MoveOutcome::Moved {
            new_id: is_stream.then(|| EntryId::from(id)),
        }),
        (Some("not_pending"), None) => Ok(MoveOutcome::NotPending),
        (Some("owned_by"), Some(owner)) => Ok(MoveOutcome::OwnedBy(owner)),
        _ => Err(bad_reply(what, "unknown outcome")),
    }
}

/// The fenced move; see `scripts/move_entry.lua`.
pub(crate) async fn move_entry(b: &RedisBackend, mv: &Move) -> Result<MoveOutcome> {
    if crosses_slots(b, mv) {
        return copy_then_settle(b, mv).await;
    }
    let op = b.op("EVALSHA move_entry").on(&mv.source, &mv.group);
    let reply = b.eval(&MOVE_ENTRY, op, || move_cmd(mv)).await?;
    move_outcome(mv, reply)
}

/// Whether a move's target is in another cluster slot than its source.
fn crosses_slots(b: &RedisBackend, mv: &Move) -> bool {
    let (MoveTarget::Stream { key, .. } | MoveTarget::Schedule { key, .. }) = &mv.target else {
        return false;
    };
    b.is_cluster() && !crate::cluster::same_slot(&mv.source, key)
}

/// A move whose target is in another cluster slot, where no script can
/// reach both keys: check that the entry is pending (for the fencing
/// consumer), write the copy, then acknowledge the original if it is
/// still pending for that consumer (`scripts/settle.lua`). If it no longer
/// is (claimed in between), the copy is deleted again and the refusal
/// returned. The copy is on a replica before the original is acknowledged
/// ([`replicated_copy`]), so a failover of the target's master cannot take
/// it after the original is gone. A crash or a lost connection after the
/// copy leaves the entry pending and the copy written: a duplicate, never
/// a loss.
async fn copy_then_settle(b: &RedisBackend, mv: &Move) -> Result<MoveOutcome> {
    let MoveTarget::Stream { key, fields, trim } = &mv.target else {
        let key = match &mv.target {
            MoveTarget::Schedule { key, .. } => key.as_str(),
            _ => "",
        };
        return Err(crate::cluster::cross_slot(
            mv.source.as_bytes(),
            key.as_bytes(),
        ));
    };
    check_move(mv)?;
    let checked = settle(b, mv, false).await?;
    if !matches!(checked, MoveOutcome::Moved { .. }) {
        return Ok(checked);
    }
    let add = trim
        .iter()
        .fold(Add::new(key.clone(), fields.clone()), |add, t| {
            add.with_trim(*t)
        });
    let new_id = replicated_copy(b, &add).await?;
    match settle(b, mv, true).await {
        Ok(MoveOutcome::Moved { .. }) => Ok(MoveOutcome::Moved {
            new_id: Some(new_id),
        }),
        Ok(refused) => {
            // Taken by another consumer between the check and now: the copy
            // goes, as an atomic move would not have written it.
            if let Err(e) =
                crate::commands::delete_entries(b, key, std::slice::from_ref(&new_id)).await
            {
                tracing::warn!(target = %key, id = %new_id, error = %e, "could not delete the copy of a refused move; it stays as a duplicate");
            }
            Ok(refused)
        }
        Err(e) => Err(e),
    }
}

/// How long a copy made across slots waits for a replica of its master.
const COPY_WAIT: Duration = Duration::from_secs(2);

/// Adds the copy of a move or a transfer across cluster slots and, when
/// the target's master has replicas, waits until one has it (`WAIT`)
/// before the original is acknowledged or deleted on another master:
/// otherwise a failover of the target's master could lose the copy after
/// the original was settled. When no replica confirms in time, the
/// original is left alone and the call fails, retryably (the copy stays:
/// the next attempt makes a duplicate, never a loss).
async fn replicated_copy(b: &RedisBackend, add: &Add) -> Result<EntryId> {
    let replicas = crate::commands::replicas_of(b, &add.key).await?;
    if replicas == 0 {
        return crate::commands::add(b, add).await;
    }
    let many = streams_core::backend::AddMany::new(&add.key, vec![add.fields.clone()])
        .with_trim(&add.trim);
    let durability = streams_core::Durability::replicas(1).with_timeout(COPY_WAIT);
    let written = crate::commands::add_durable(b, many, durability).await?;
    let id = written
        .ids
        .into_iter()
        .next()
        .ok_or_else(|| bad_reply("XADD", "no id for the copy"))?;
    if written.replicas == 0 {
        return Err(StreamError::Connection {
            backend: crate::error::BACKEND,
            message: format!(
                "no replica of the master of `{}` confirmed the copy {id} within {COPY_WAIT:?}; \
                 the original was left pending",
                add.key
            ),
            source: None,
        });
    }
    Ok(id)
}

/// `scripts/settle.lua`: checks (`ack` false) or acknowledges a move's
/// source entry.
async fn settle(b: &RedisBackend, mv: &Move, ack: bool) -> Result<MoveOutcome> {
    let op = b.op("EVALSHA settle").on(&mv.source, &mv.group);
    let reply = b
        .eval(&SETTLE, op, || {
            let mut cmd = evalsha(&SETTLE, &[&mv.source]);
            cmd.arg(&mv.group)
                .arg(mv.id.as_str())
                .arg(mv.consumer.as_deref().unwrap_or(""))
                .arg(if mv.delete_source { "1" } else { "0" })
                .arg(if ack { "1" } else { "0" });
            Ok(cmd)
        })
        .await?;
    const WHAT: &str = "settle";
    let mut parts = reply::array(WHAT, reply)?.into_iter();
    let tag = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    let arg = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    match (tag.as_deref(), arg) {
        (Some("moved"), _) => Ok(MoveOutcome::Moved { new_id: None }),
        (Some("not_pending"), None) => Ok(MoveOutcome::NotPending),
        (Some("owned_by"), Some(owner)) => Ok(MoveOutcome::OwnedBy(owner)),
        _ => Err(bad_reply(WHAT, "unknown outcome")),
    }
}

/// Moves per call of the `move_entries` script: enough to spread its cost,
/// few enough that one call stays short on the server.
const MOVES_PER_CALL: usize = 100;

/// Many fenced moves in one round trip, each atomic on its own: calls of
/// `scripts/move_entries.lua`, [`MOVES_PER_CALL`] moves each, in one
/// pipeline.
pub(crate) async fn move_entries(
    b: &RedisBackend,
    moves: &[Move],
) -> Result<Vec<Result<MoveOutcome>>> {
    // A move that cannot even be written out fails alone.
    let mut outcomes: Vec<Result<MoveOutcome>> = moves
        .iter()
        .map(|mv| check_move(mv).map(|()| MoveOutcome::NotPending))
        .collect();
    let (across, valid): (Vec<usize>, Vec<usize>) = (0..moves.len())
        .filter(|&i| outcomes[i].is_ok())
        .partition(|&i| crosses_slots(b, &moves[i]));
    let copies = across.len();
    // On a cluster, moves to another slot copy first, one by one.
    let copied =
        futures::future::join_all(across.iter().map(|&i| copy_then_settle(b, &moves[i]))).await;
    for (i, outcome) in across.into_iter().zip(copied) {
        outcomes[i] = outcome;
    }
    if valid.is_empty() {
        return Ok(outcomes);
    }
    // One script call keeps to one slot on a cluster.
    let slots: Vec<Vec<usize>> = if b.is_cluster() {
        let sources: Vec<&str> = valid.iter().map(|&i| moves[i].source.as_str()).collect();
        crate::cluster::by_slot(&sources)
            .into_iter()
            .map(|group| group.into_iter().map(|j| valid[j]).collect())
            .collect()
    } else {
        vec![valid.clone()]
    };
    let calls: Vec<&[usize]> = slots
        .iter()
        .flat_map(|group| group.chunks(MOVES_PER_CALL))
        .collect();
    let calls_len = calls.len();
    let op = b.op("EVALSHA move_entries");
    let replies = eval_many(b, &MOVE_ENTRIES, op, calls.len(), |c| {
        move_entries_cmd(moves, calls[c])
    })
    .await?;
    for (call, reply) in calls.into_iter().zip(replies) {
        let first = &moves[call[0]];
        let op = op.on(&first.source, &first.group).script(&MOVE_ENTRIES);
        let replies = match reply_result(reply, op).and_then(|v| reply::array("move_entries", v)) {
            Ok(replies) if replies.len() == call.len() => replies,
            Ok(_) => {
                let e = || bad_reply("move_entries", "one outcome per move expected");
                for &i in call {
                    outcomes[i] = Err(e());
                }
                continue;
            }
            // The whole call failed: nothing says which of its moves ran.
            Err(e) if calls_len == 1 && copies == 0 => return Err(e),
            Err(e) => {
                let text = e.to_string();
                for &i in call {
                    outcomes[i] = Err(StreamError::backend(
                        crate::error::BACKEND,
                        std::io::Error::other(text.clone()),
                    ));
                }
                continue;
            }
        };
        for (&i, reply) in call.iter().zip(replies) {
            let mv = &moves[i];
            let op = b
                .op("EVALSHA move_entries")
                .on(&mv.source, &mv.group)
                .script(&MOVE_ENTRIES);
            outcomes[i] = batch_outcome(mv, reply, op);
        }
    }
    Ok(outcomes)
}

/// Refuses a move this backend cannot write out.
fn check_move(mv: &Move) -> Result<()> {
    match &mv.target {
        MoveTarget::Stream { trim, .. } => trim.iter().try_for_each(|t| trim_parts(t).map(drop)),
        MoveTarget::Schedule { .. } => Ok(()),
        _ => Err(unknown("move target")),
    }
}

/// One call of `move_entries.lua` with the moves `indexes` of `moves`.
fn move_entries_cmd(moves: &[Move], indexes: &[usize]) -> Result<Cmd> {
    let mut keys: Vec<&str> = Vec::with_capacity(2 * indexes.len());
    for &i in indexes {
        let mv = &moves[i];
        let (MoveTarget::Stream { key, .. } | MoveTarget::Schedule { key, .. }) = &mv.target else {
            return Err(unknown("move target"));
        };
        keys.push(&mv.source);
        keys.push(key);
    }
    let mut cmd = evalsha(&MOVE_ENTRIES, &keys);
    cmd.arg(indexes.len());
    for &i in indexes {
        let mv = &moves[i];
        cmd.arg(&mv.group)
            .arg(mv.id.as_str())
            .arg(mv.consumer.as_deref().unwrap_or(""))
            .arg(if mv.delete_source { "1" } else { "0" });
        match &mv.target {
            MoveTarget::Stream { fields, trim, .. } => {
                cmd.arg("stream").arg(0).arg(trim.len()).arg(fields.len());
                for t in trim {
                    let (kind, approx, value) = trim_parts(t)?;
                    cmd.arg(kind).arg(if approx { "~" } else { "=" }).arg(value);
                }
                push_fields(&mut cmd, fields);
            }
            MoveTarget::Schedule { fields, delay, .. } => {
                cmd.arg("schedule").arg(ms(*delay)).arg(0).arg(fields.len());
                push_fields(&mut cmd, fields);
            }
            _ => return Err(unknown("move target")),
        }
    }
    Ok(cmd)
}

/// One move's reply in a `move_entries` call.
fn batch_outcome(mv: &Move, reply: Value, op: Op<'_>) -> Result<MoveOutcome> {
    const WHAT: &str = "move_entries";
    let mut parts = reply::array(WHAT, reply)?.into_iter();
    let tag = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    if tag.as_deref() == Some("error") {
        let message = parts
            .next()
            .map(|v| reply::string(WHAT, v))
            .transpose()?
            .unwrap_or_default();
        let (code, detail) = message.split_once(' ').unwrap_or((&message, ""));
        let e = redis::make_extension_error(code.to_owned(), Some(detail.to_owned()));
        return Err(error::map(e, op));
    }
    let arg = parts.next().map(|v| reply::string(WHAT, v)).transpose()?;
    settled_as(WHAT, mv, tag.as_deref(), arg)
}

/// The existence-checked transfer; see `scripts/transfer.lua`.
pub(crate) async fn transfer(b: &RedisBackend, t: &Transfer) -> Result<TransferOutcome> {
    let id = crate::commands::check_id(&t.id)?;
    if b.is_cluster() && !crate::cluster::same_slot(&t.source, &t.target) {
        return copy_then_delete(b, t, &id).await;
    }
    let reply = b
        .eval(&TRANSFER, b.op("EVALSHA transfer"), || {
            let mut cmd = evalsha(&TRANSFER, &[&t.source, &t.target]);
            cmd.arg(&id);
            push_fields(&mut cmd, &t.fields);
            Ok(cmd)
        })
        .await?;
    match reply {
        Value::Nil => Ok(TransferOutcome::Missing),
        v => Ok(TransferOutcome::Transferred {
            new_id: EntryId::from(reply::string("transfer", v)?),
        }),
    }
}

/// A transfer between two cluster slots, where no script reaches both
/// keys: take the entry's replay lock (`SET NX PX` on a key in the
/// source's slot; held by another replay: `Missing`), read the entry
/// (none: `Missing`), add the copy and wait until a replica has it
/// ([`replicated_copy`]), delete the original, release the lock. Two
/// replays at once move an entry once; a crash or a lost connection after
/// the copy leaves both: a duplicate, never a loss (and the lock expires).
async fn copy_then_delete(b: &RedisBackend, t: &Transfer, id: &str) -> Result<TransferOutcome> {
    // One replay of an entry at a time: a lock key in the source's slot.
    let lock = if t.source.contains('{') {
        format!("{}:replaying:{id}", t.source)
    } else {
        format!("{{{}}}:replaying:{id}", t.source)
    };
    let mut take = redis::cmd("SET");
    take.arg(&lock)
        .arg("1")
        .arg("NX")
        .arg("PX")
        .arg(ms(REPLAY_LOCK));
    if b.raw(take, b.op("SET")).await? == Value::Nil {
        // Another replay has it; it reports the transfer.
        return Ok(TransferOutcome::Missing);
    }
    let outcome = async {
        let mut range = redis::cmd("XRANGE");
        range.arg(&t.source).arg(id).arg(id);
        let found = reply::array("XRANGE", b.raw(range, b.op("XRANGE")).await?)?;
        if found.is_empty() {
            return Ok(TransferOutcome::Missing);
        }
        let new_id = replicated_copy(b, &Add::new(t.target.clone(), t.fields.clone())).await?;
        // Gone already (trimmed since the read): the copy stays.
        crate::commands::delete_entries(b, &t.source, &[EntryId::from(id)]).await?;
        Ok(TransferOutcome::Transferred { new_id })
    }
    .await;
    let mut release = redis::cmd("UNLINK");
    release.arg(&lock);
    if let Err(e) = b.raw(release, b.op("UNLINK")).await {
        tracing::debug!(lock = %lock, error = %e, "could not release a replay lock; it expires on its own");
    }
    outcome
}

/// How long a replay across cluster slots holds its entry's lock at most
/// (a replay that dies leaves the entry to others after this).
const REPLAY_LOCK: Duration = Duration::from_secs(60);

/// Promotes due retries of every schedule in one round trip (two when the
/// server has lost the script); a schedule that cannot be read reports its
/// error and the others go on.
pub(crate) async fn promote_due(
    b: &RedisBackend,
    schedules: &[ScheduleKeys],
    limit: usize,
) -> Result<Vec<Promotion>> {
    const WHAT: &str = "promote_due";
    if schedules.is_empty() {
        return Ok(Vec::new());
    }
    let op = b.op("EVALSHA promote_due");
    let replies = eval_many(b, &PROMOTE_DUE, op, schedules.len(), |i| {
        let keys = &schedules[i];
        let mut cmd = evalsha(&PROMOTE_DUE, &[&keys.schedule, &keys.ready]);
        cmd.arg(count_arg(limit));
        Ok(cmd)
    })
    .await?;
    replies
        .into_iter()
        .map(|v| {
            let v = reply_result(v, op.script(&PROMOTE_DUE))?;
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

/// Delivered entries from parallel lists of entries and delivery counts.
fn delivered(
    what: &'static str,
    entries: Value,
    counts: Value,
    keep_deleted: bool,
) -> Result<Vec<DeliveredEntry>> {
    let entries = reply::array(what, entries)?;
    let counts = reply::array(what, counts)?;
    if entries.len() != counts.len() {
        return Err(bad_reply(what, "one delivery count per entry expected"));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (entry, n) in entries.into_iter().zip(counts) {
        match reply::entry(what, entry)? {
            (id, Some(fields)) => out.push(DeliveredEntry::new(
                Entry::new(id, fields),
                reply::count(what, n)?,
            )),
            (id, None) if keep_deleted => out.push(DeliveredEntry::new(
                Entry::new(id, Fields::new()),
                reply::count(what, n)?,
            )),
            (_, None) => {}
        }
    }
    Ok(out)
}

/// Ids as a list of strings.
fn ids(what: &'static str, v: Value) -> Result<Vec<EntryId>> {
    reply::array(what, v)?
        .into_iter()
        .map(|v| reply::string(what, v).map(EntryId::from))
        .collect()
}

/// Most claimed entries the claim script returns with their fields (a
/// larger page is read with `XRANGE` afterwards, in bulk).
const INLINE_CLAIMED: usize = 8;

/// One page of claiming, with delivery counts; see `scripts/auto_claim.lua`.
/// The script claims by id and returns the fields of a small page itself;
/// the entries of a larger page are then read with `XRANGE` (an entry
/// deleted in between is reported deleted: it is pending for the claimer,
/// which acknowledges it).
pub(crate) async fn auto_claim(b: &RedisBackend, claim: &AutoClaim<'_>) -> Result<AutoClaimPage> {
    const WHAT: &str = "XAUTOCLAIM";
    let op = b.op("EVALSHA auto_claim").on(claim.key, claim.group);
    let reply = b
        .eval(&AUTO_CLAIM, op, || {
            let mut cmd = evalsha(&AUTO_CLAIM, &[claim.key]);
            cmd.arg(claim.group)
                .arg(claim.consumer)
                .arg(ms(claim.min_idle))
                .arg(claim.start.as_ref().map_or("0-0", Cursor::as_str))
                .arg(count_arg(claim.count))
                .arg(if claim.until_redelivered { "1" } else { "0" })
                .arg(INLINE_CLAIMED);
            Ok(cmd)
        })
        .await?;
    let mut parts = reply::array(WHAT, reply)?.into_iter();
    let (Some(next), Some(taken), Some(deleted), Some(counts), inline) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad_reply(WHAT, "expected [next, claimed, deleted, counts]"));
    };
    let taken = ids(WHAT, taken)?;
    let counts = reply::array(WHAT, counts)?;
    if taken.len() != counts.len() {
        return Err(bad_reply(WHAT, "one delivery count per entry expected"));
    }
    let mut deleted = ids(WHAT, deleted)?;
    let mut bodies = match inline {
        Some(entries) => reply::entries(WHAT, entries)?
            .into_iter()
            .map(|entry| (entry.id.clone(), entry))
            .collect(),
        None => read_claimed(b, claim, &taken).await?,
    };
    let mut claimed = Vec::with_capacity(taken.len());
    for (id, n) in taken.into_iter().zip(counts) {
        match bodies.remove(&id) {
            Some(entry) => claimed.push(DeliveredEntry::new(entry, reply::count(WHAT, n)?)),
            None => deleted.push(id),
        }
    }
    let next = reply::string(WHAT, next)?;
    Ok(AutoClaimPage::new(
        (next != "0-0").then(|| Cursor::new(next)),
        claimed,
        deleted,
    ))
}

/// The entries of claimed ids, by id: one `XRANGE` from the first to the
/// last (the claimed entries are usually most of that range), then one
/// pipeline of `XRANGE`s for those it did not reach. An id missing from the
/// result has no entry (it was deleted).
async fn read_claimed(
    b: &RedisBackend,
    claim: &AutoClaim<'_>,
    taken: &[EntryId],
) -> Result<HashMap<EntryId, Entry>> {
    const WHAT: &str = "XRANGE";
    let (Some(first), Some(last)) = (taken.first(), taken.last()) else {
        return Ok(HashMap::new());
    };
    let op = b.op("XRANGE").on(claim.key, claim.group);
    let limit = count_arg(taken.len().saturating_mul(2));
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(claim.key)
        .arg(first.as_str())
        .arg(last.as_str())
        .arg("COUNT")
        .arg(limit);
    let range = reply::entries(WHAT, b.raw(cmd, op).await?)?;
    let complete = range.len() < limit;
    let mut found: HashMap<EntryId, Entry> = HashMap::with_capacity(taken.len());
    // Entries of the range that were not claimed (held by others) are
    // left in the map; the caller takes only the claimed ones.
    for entry in range {
        found.insert(entry.id.clone(), entry);
    }
    if complete {
        return Ok(found);
    }
    let missing: Vec<&EntryId> = taken.iter().filter(|id| !found.contains_key(*id)).collect();
    if missing.is_empty() {
        return Ok(found);
    }
    let mut pipe = redis::Pipeline::with_capacity(missing.len());
    for id in &missing {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(claim.key).arg(id.as_str()).arg(id.as_str());
        pipe.add_command(cmd);
    }
    for reply in b.pipeline(&pipe, 0, op).await? {
        for entry in reply::entries(WHAT, reply)? {
            found.insert(entry.id.clone(), entry);
        }
    }
    Ok(found)
}

/// The ids of a lease as the scripts read them: pairs of id and expected
/// delivery count (`''` when not known).
fn push_lease_ids(cmd: &mut Cmd, lease: &Lease<'_>) {
    for (i, id) in lease.ids.iter().enumerate() {
        cmd.arg(id.as_str());
        match lease.expected_deliveries(i) {
            Some(n) => cmd.arg(n),
            None => cmd.arg(""),
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
    let op = b.op("EVALSHA set_idle").on(lease.key, lease.group);
    let reply = b
        .eval(&SET_IDLE, op, || {
            let mut cmd = evalsha(&SET_IDLE, &[lease.key]);
            cmd.arg(lease.group)
                .arg(lease.consumer)
                .arg(ms(idle))
                .arg(if refund { "1" } else { "0" });
            push_lease_ids(&mut cmd, lease);
            Ok(cmd)
        })
        .await?;
    ids(WHAT, reply)
}

/// Entries delivered again to the consumer holding them; see
/// `scripts/redeliver.lua`.
pub(crate) async fn redeliver(b: &RedisBackend, lease: &Lease<'_>) -> Result<KeyEntries> {
    const WHAT: &str = "XCLAIM (redeliver)";
    let mut out = KeyEntries::new(lease.key);
    if lease.ids.is_empty() {
        return Ok(out);
    }
    let op = b.op("EVALSHA redeliver").on(lease.key, lease.group);
    let reply = b
        .eval(&REDELIVER, op, || {
            let mut cmd = evalsha(&REDELIVER, &[lease.key]);
            cmd.arg(lease.group).arg(lease.consumer);
            push_lease_ids(&mut cmd, lease);
            Ok(cmd)
        })
        .await?;
    let mut parts = reply::array(WHAT, reply)?.into_iter();
    let (Some(entries), Some(counts), Some(deleted)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_reply(WHAT, "expected [entries, counts, deleted]"));
    };
    out.entries = delivered(WHAT, entries, counts, true)?;
    out.deleted = ids(WHAT, deleted)?;
    Ok(out)
}

/// A group created after `after` when the stream's history reaches it; see
/// `scripts/create_group.lua`.
pub(crate) async fn create_group_after(
    b: &RedisBackend,
    key: &str,
    group: &str,
    after: &EntryId,
) -> Result<bool> {
    let op = b.op("EVALSHA create_group").on(key, group);
    let reply = b
        .eval(&CREATE_GROUP, op, || {
            let mut cmd = evalsha(&CREATE_GROUP, &[key]);
            cmd.arg(group).arg(after.as_str());
            Ok(cmd)
        })
        .await?;
    Ok(reply::int("XGROUP CREATE", reply)? == 1)
}

/// `XACK` and `XDEL` in one script (no `MULTI`, which an ACL may refuse).
pub(crate) async fn ack_delete(
    b: &RedisBackend,
    key: &str,
    group: &str,
    ids: &[EntryId],
) -> Result<u64> {
    let op = b.op("EVALSHA ack_delete").on(key, group);
    let reply = b
        .eval(&ACK_DELETE, op, || {
            let mut cmd = evalsha(&ACK_DELETE, &[key]);
            cmd.arg(group);
            for id in ids {
                cmd.arg(id.as_str());
            }
            Ok(cmd)
        })
        .await?;
    reply::count("XACK", reply)
}

/// The fair group read of `scripts/read_group.lua`: the entries, and when
/// nothing was read, the group's last delivered id per key (for a
/// blocking wait).
pub(crate) async fn read_group(
    b: &RedisBackend,
    read: &ReadGroup<'_>,
) -> Result<(Vec<KeyEntries>, Vec<String>)> {
    let first = read.keys.first().map_or("", String::as_str);
    let op = b.op("XREADGROUP").on(first, read.group);
    let reply = b.eval(&READ_GROUP, op, || Ok(read_group_cmd(read))).await?;
    read_group_reply(read, reply)
}

/// The `read_group` script's call (`EVALSHA`) for `read`.
pub(crate) fn read_group_cmd(read: &ReadGroup<'_>) -> Cmd {
    let keys: Vec<&str> = read.keys.iter().map(String::as_str).collect();
    let mut cmd = evalsha(&READ_GROUP, &keys);
    cmd.arg(read.group)
        .arg(read.consumer)
        .arg(count_arg(read.count));
    cmd
}

/// The `read_group` script's reply: the entries read, per key, and each
/// key's last delivered id.
pub(crate) fn read_group_reply(
    read: &ReadGroup<'_>,
    reply: Value,
) -> Result<(Vec<KeyEntries>, Vec<String>)> {
    const WHAT: &str = "XREADGROUP";
    let mut parts = reply::array(WHAT, reply)?.into_iter();
    let (Some(items), Some(waits)) = (parts.next(), parts.next()) else {
        return Err(bad_reply(WHAT, "expected [items, waits]"));
    };
    let items = reply::array(WHAT, items)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
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
        reply.entries.reserve_exact(entries.len());
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
    let op = b.op("EVALSHA delete_consumer").on(c.key, c.group);
    let reply = b
        .eval(&DELETE_CONSUMER, op, || {
            let mut cmd = evalsha(&DELETE_CONSUMER, &[c.key]);
            cmd.arg(c.group).arg(c.consumer);
            Ok(cmd)
        })
        .await?;
    match reply::int("XGROUP DELCONSUMER", reply)? {
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
    fn lua_commands_are_read_from_calls() {
        let source = "local a = redis.call('XADD', KEYS[1], '*')\n\
            local b = redis.pcall( \"XINFO\" , 'GROUPS', k)\n\
            redis.call('XGROUP', 'CREATE', k, g, '0', 'MKSTREAM')\n\
            redis.call('XADD', k)\n\
            redis.call(name)";
        assert_eq!(
            lua_commands(source),
            ["xadd", "xgroup|create", "xinfo|groups"]
        );
        assert_eq!(
            MOVE_ENTRY.commands(),
            ["time", "xack", "xadd", "xdel", "xpending", "xtrim", "zadd"]
        );
    }

    #[test]
    fn sources_match_scripts() {
        for lua in ALL {
            assert_eq!(
                Script::new(lua.source).get_hash(),
                lua.get_hash(),
                "{}",
                lua.name
            );
        }
        assert_eq!(PROMOTE_DUE.source, PROMOTE_DUE_SOURCE);
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

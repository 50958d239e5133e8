//! Group reads: one `XREADGROUP` over every key when the count gives each
//! key a share, the fair-share script for the rest, and a blocking wait
//! on a connection of its own.
//!
//! Entries that pass through a Lua script are converted to Lua values and
//! back, which about doubled the server's time per entry read here; so the
//! bulk of a read is a plain `XREADGROUP`, and the script only shares out
//! what remains (or a count smaller than the number of keys).

use std::time::{Duration, Instant};

use redis::{Cmd, Value};
use streams_core::backend::{DeliveredEntry, Entry, KeyEntries, ReadGroup};
use streams_core::{Result, StreamError};

use crate::backend::RedisBackend;
use crate::error::{self, Op, bad_reply};
use crate::reply;
use crate::scripts::{self, ms};

const WHAT: &str = "XREADGROUP";

/// A group read with a fair total count. The first round is one
/// `XREADGROUP` giving every key the same share (it checks every key's
/// group before it delivers anything); the keys that filled their share
/// share what remains through the `read_group` script. When nothing is
/// found and the read may block, it waits on a connection of its own with
/// `XREAD BLOCK` (which delivers nothing) for an entry to arrive, then
/// reads again, until `block` has passed.
pub(crate) async fn read_group(b: &RedisBackend, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
    if read.keys.is_empty() {
        return Ok(Vec::new());
    }
    if b.is_cluster() {
        let slots = crate::cluster::by_slot(read.keys);
        if slots.len() > 1 {
            return across_slots(b, &read, &slots).await;
        }
    }
    if read.count >= read.keys.len() {
        let got = equal_shares(b, &read).await?;
        if !got.is_empty() {
            return Ok(got);
        }
    }
    let deadline = read.block.map(|block| {
        Instant::now()
            .checked_add(block)
            .unwrap_or_else(|| Instant::now() + crate::conn::FAR)
    });
    // What the script read right after the last wait, on the wait's
    // connection: the next round's result, without another round trip.
    let mut read_on_wake = None;
    loop {
        let (replies, waits) = match read_on_wake.take() {
            Some(got) => got,
            None => scripts::read_group(b, &read).await?,
        };
        if !replies.is_empty() {
            return Ok(replies);
        }
        let Some(deadline) = deadline else {
            return Ok(replies);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || waits.len() != read.keys.len() {
            return Ok(replies);
        }
        let after = b.inner.conns.blocking_timeout(left, b.timeout());
        let op = Op::new("XREADGROUP", after).on(&read.keys[0], read.group);
        let (woke, then) = b
            .inner
            .conns
            .blocking_then(
                left,
                |slice| xread_after(read.keys, &waits, slice),
                scripts::read_group_cmd(&read),
            )
            .await
            .map_err(|e| error::map(e, op))?;
        let woke = woke.extract_error().map_err(|e| error::map(e, op))?;
        match then {
            // Refused (the script is not loaded, the group is gone): the
            // next round reads again the ordinary way, which loads the
            // script or reports the error.
            Some(Value::ServerError(_)) | None => {}
            // Entries read here are delivered: they are returned, even when
            // the wait itself timed out.
            Some(reply) => read_on_wake = Some(scripts::read_group_reply(&read, reply)?),
        }
        if woke == Value::Nil
            && read_on_wake
                .as_ref()
                .is_none_or(|(replies, _)| replies.is_empty())
        {
            return Ok(Vec::new());
        }
    }
}

/// A group read over keys in several cluster slots (`slots`: indexes of
/// `read.keys` per slot), with the same shares as on one server: each
/// round gives every key still in play its share of what is left, the
/// remainder to the keys that have had the least so far (the first listed
/// first), and a key that cannot fill its share leaves the next round to
/// the others; each key is read with an `XREADGROUP` of its own (all of a
/// round at once), so the total never exceeds `read.count`. When nothing
/// is found and the read may block, the `read_group` script runs on each
/// slot in turn with what is left of the count (it reads what arrived
/// meanwhile, or reports where each key's group stands), then one
/// `XREAD BLOCK` per slot (each on a connection of its own; they deliver
/// nothing) waits for the first entry anywhere; the others are dropped,
/// and the keys are read again.
async fn across_slots(
    b: &RedisBackend,
    read: &ReadGroup<'_>,
    slots: &[Vec<usize>],
) -> Result<Vec<KeyEntries>> {
    let deadline = read.block.map(|block| {
        Instant::now()
            .checked_add(block)
            .unwrap_or_else(|| Instant::now() + crate::conn::FAR)
    });
    let groups: Vec<Vec<String>> = slots
        .iter()
        .map(|g| g.iter().map(|&i| read.keys[i].clone()).collect())
        .collect();
    loop {
        let got = fair_rounds(b, read).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        let Some(deadline) = deadline else {
            return Ok(got);
        };
        // What arrived since, or where each group stands, slot by slot.
        let mut got: Vec<KeyEntries> = Vec::new();
        let mut remaining = read.count;
        let mut waits: Vec<(&[String], Vec<String>)> = Vec::new();
        for keys in &groups {
            if remaining == 0 {
                break;
            }
            let sub = ReadGroup::new(read.group, read.consumer, keys, remaining);
            let (round, wait) = match scripts::read_group(b, &sub).await {
                Ok(r) => r,
                Err(e) if got.is_empty() => return Err(e),
                Err(e) => {
                    tracing::debug!(group = read.group, error = %e, "reading a later slot of a group failed; returning what was read");
                    break;
                }
            };
            remaining -= round.iter().map(|k| k.entries.len()).sum::<usize>();
            if wait.len() == keys.len() {
                waits.push((keys, wait));
            }
            merge(&mut got, round);
        }
        if !got.is_empty() {
            got.sort_by_key(|k| read.keys.iter().position(|key| *key == k.key));
            return Ok(got);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || waits.len() != groups.len() {
            return Ok(got);
        }
        let after = b.inner.conns.blocking_timeout(left, b.timeout());
        let op = Op::new("XREAD", after).on(&read.keys[0], read.group);
        let sleeps = waits.iter().map(|(keys, after)| {
            Box::pin(
                b.inner
                    .conns
                    .blocking(left, move |slice| xread_after(keys, after, slice)),
            )
        });
        // The first to wake wins; dropping the others closes their
        // connections, which ends their `BLOCK` on the servers.
        let (woke, _, _) = futures::future::select_all(sleeps).await;
        let woke = woke
            .and_then(Value::extract_error)
            .map_err(|e| error::map(e, op))?;
        if woke == Value::Nil {
            return Ok(Vec::new());
        }
    }
}

/// The rounds of [`across_slots`], one `XREADGROUP` per key with a
/// share; empty when no key had anything.
async fn fair_rounds(b: &RedisBackend, read: &ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
    let n = read.keys.len();
    let mut received = vec![0usize; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut remaining = read.count;
    let mut got: Vec<KeyEntries> = Vec::new();
    while remaining > 0 && !active.is_empty() {
        let share = remaining / active.len();
        let mut by_need = active.clone();
        by_need.sort_by_key(|&i| (received[i], i));
        let extra: Vec<usize> = by_need.into_iter().take(remaining % active.len()).collect();
        let asks: Vec<(usize, usize)> = active
            .iter()
            .map(|&i| (i, share + usize::from(extra.contains(&i))))
            .filter(|&(_, ask)| ask > 0)
            .collect();
        let reads = asks.iter().map(|&(i, ask)| {
            let key = std::slice::from_ref(&read.keys[i]);
            xreadgroup(b, read, key, ask)
        });
        let mut failed = None;
        let mut short: Vec<usize> = Vec::new();
        for (&(i, ask), outcome) in asks.iter().zip(futures::future::join_all(reads).await) {
            match outcome {
                Ok(round) => {
                    let n: usize = round.iter().map(|k| k.entries.len()).sum();
                    received[i] += n;
                    remaining = remaining.saturating_sub(n);
                    if n < ask {
                        short.push(i);
                    }
                    merge(&mut got, round);
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            // A missing group is reported even when other keys delivered
            // (their entries stay pending for this consumer, to be
            // redelivered or claimed): the manager recreates the group
            // only when it sees the error.
            if got.is_empty() || matches!(e, StreamError::NoGroup { .. }) {
                return Err(e);
            }
            // What was read is delivered: it is returned, and the next
            // read meets the error before it delivers anything.
            tracing::debug!(group = read.group, error = %e, "a key of a group read failed; returning what was read");
            break;
        }
        active.retain(|i| !short.contains(i));
    }
    got.sort_by_key(|k| read.keys.iter().position(|key| *key == k.key));
    Ok(got)
}

/// Rounds of one `XREADGROUP` each, giving every key still in play the
/// same share of what remains; a key that cannot fill its share leaves the
/// next round to the others (which all had the same, so the shares stay
/// fair). A remainder smaller than the number of keys goes through the
/// script, which gives it to the first listed. Empty when no key had
/// anything.
async fn equal_shares(b: &RedisBackend, read: &ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
    let mut got: Vec<KeyEntries> = Vec::new();
    let mut keys: Vec<String> = read.keys.to_vec();
    let mut remaining = read.count;
    while remaining > 0 && !keys.is_empty() {
        let round = if remaining < keys.len() {
            let rest = ReadGroup::new(read.group, read.consumer, &keys, remaining);
            scripts::read_group(b, &rest).await.map(|(round, _)| round)
        } else {
            xreadgroup(b, read, &keys, remaining / keys.len()).await
        };
        let round = match round {
            Ok(round) => round,
            Err(e) if got.is_empty() => return Err(e),
            // What was read already is delivered: it is returned, and the
            // next read meets the error (a group deleted meanwhile, say)
            // before it delivers anything.
            Err(e) => {
                tracing::debug!(group = read.group, error = %e, "a later round of a group read failed; returning what was read");
                break;
            }
        };
        if remaining < keys.len() {
            merge(&mut got, round);
            break;
        }
        let share = remaining / keys.len();
        remaining -= round.iter().map(|k| k.entries.len()).sum::<usize>();
        keys.retain(|key| {
            round
                .iter()
                .any(|k| k.key == *key && k.entries.len() >= share)
        });
        merge(&mut got, round);
    }
    got.sort_by_key(|k| read.keys.iter().position(|key| *key == k.key));
    Ok(got)
}

/// Adds a round's entries to those read before, key by key.
fn merge(got: &mut Vec<KeyEntries>, round: Vec<KeyEntries>) {
    for more in round {
        match got.iter_mut().find(|k| k.key == more.key) {
            Some(k) => k.entries.extend(more.entries),
            None => got.push(more),
        }
    }
}

/// `XREADGROUP ... COUNT share STREAMS keys... > ...`: new entries, at
/// most `share` from each key. The server checks every key's group before
/// it delivers anything.
async fn xreadgroup(
    b: &RedisBackend,
    read: &ReadGroup<'_>,
    keys: &[String],
    share: usize,
) -> Result<Vec<KeyEntries>> {
    let mut cmd = Cmd::with_capacity(8 + 2 * keys.len(), 64 * keys.len());
    cmd.arg("XREADGROUP")
        .arg("GROUP")
        .arg(read.group)
        .arg(read.consumer)
        .arg("COUNT")
        .arg(scripts::count_arg(share))
        .arg("STREAMS");
    for key in keys {
        cmd.arg(key);
    }
    for _ in keys {
        cmd.arg(">");
    }
    let op = b.op("XREADGROUP").on(&keys[0], read.group);
    by_key(keys, b.raw(cmd, op).await?)
}

/// An `XREADGROUP` reply (`[[key, entries], ...]`, or a map; nil when
/// nothing was read) as entries per key, in the order of `keys`.
fn by_key(keys: &[String], v: Value) -> Result<Vec<KeyEntries>> {
    let streams: Vec<(Value, Value)> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        other => reply::array(WHAT, other)?
            .into_iter()
            .map(|item| {
                let mut it = reply::array(WHAT, item)?.into_iter();
                match (it.next(), it.next(), it.next()) {
                    (Some(key), Some(entries), None) => Ok((key, entries)),
                    _ => Err(bad_reply(WHAT, "a stream is not [key, entries]")),
                }
            })
            .collect::<Result<_>>()?,
    };
    let mut out: Vec<KeyEntries> = Vec::with_capacity(streams.len());
    for (key, entries) in streams {
        let key = reply::string(WHAT, key)?;
        if !keys.contains(&key) {
            return Err(bad_reply(WHAT, "a stream that was not asked for"));
        }
        let entries = reply::array(WHAT, entries)?;
        if entries.is_empty() {
            continue;
        }
        let mut got = KeyEntries::new(key);
        got.entries.reserve_exact(entries.len());
        for entry in entries {
            let (id, fields) = reply::entry(WHAT, entry)?;
            got.entries.push(DeliveredEntry::new(
                Entry::new(id, fields.unwrap_or_default()),
                1,
            ));
        }
        out.push(got);
    }
    Ok(out)
}

/// `XREAD BLOCK` from the group's last delivered id on every key: it wakes
/// on the next entry any key receives, and delivers nothing.
fn xread_after(keys: &[String], after: &[String], block: Duration) -> Cmd {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(ms(block).max(1))
        .arg("STREAMS");
    for key in keys {
        cmd.arg(key);
    }
    for id in after {
        cmd.arg(id);
    }
    cmd
}

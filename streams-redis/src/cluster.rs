//! Redis Cluster: the slot each command's keys hash to, pipelines split
//! by slot, and scans over every master.
//!
//! A cluster serves a command only when all its keys hash to one slot
//! (`CROSSSLOT` otherwise), and a pipeline only when it goes to one node.
//! The key layout keeps each stream's keys in its slot (`docs/wire-format.md`):
//! the stream key has no hash tag and the keys it owns (retry schedule,
//! ready stream, per-stream dead-letter stream) tag the stream key, so
//! every script of one stream stays in one slot. What spans streams (a
//! group read over several streams, a batch of moves, a pipeline of adds)
//! is split here by slot.

use futures::future::try_join_all;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};
use streams_core::{Result, StreamError};

/// The keys of a command, as the cluster routes it: the script's `KEYS`
/// for `EVALSHA`, the streams of `XREAD`/`XREADGROUP`, the key after the
/// subcommand of `XINFO`/`XGROUP`, every argument of `DEL`/`UNLINK`, none
/// for commands without keys, else the first argument.
pub(crate) fn keys_of(cmd: &Cmd) -> Vec<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect();
    let Some(name) = args.first() else {
        return Vec::new();
    };
    let name = name.to_ascii_uppercase();
    match name.as_slice() {
        b"EVALSHA" | b"EVAL" | b"EVALSHA_RO" | b"EVAL_RO" | b"FCALL" | b"FCALL_RO" => {
            let n = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            args.iter().skip(3).take(n).copied().collect()
        }
        b"XREAD" | b"XREADGROUP" => {
            // Past `GROUP <group> <consumer>` and the options' values, so
            // a group or consumer named `streams` is not taken for the
            // keyword.
            let mut at = if name.as_slice() == b"XREADGROUP" {
                4
            } else {
                1
            };
            while let Some(arg) = args.get(at) {
                if arg.eq_ignore_ascii_case(b"STREAMS") {
                    let rest = &args[at + 1..];
                    return rest[..rest.len() / 2].to_vec();
                }
                at += if arg.eq_ignore_ascii_case(b"COUNT") || arg.eq_ignore_ascii_case(b"BLOCK") {
                    2
                } else {
                    1
                };
            }
            Vec::new()
        }
        b"XINFO" | b"XGROUP" | b"OBJECT" => args.get(2).copied().into_iter().collect(),
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => args[1..].to_vec(),
        b"SCRIPT" | b"PING" | b"INFO" | b"WAIT" | b"WAITAOF" | b"CLIENT" | b"CLUSTER" | b"SCAN"
        | b"ACL" | b"CONFIG" | b"MULTI" | b"EXEC" | b"TIME" | b"HELLO" | b"AUTH" | b"SELECT"
        | b"DBSIZE" | b"FUNCTION" | b"ROLE" | b"READONLY" | b"READWRITE" => Vec::new(),
        _ => args.get(1).copied().into_iter().collect(),
    }
}

/// Whether `cmd` has no keys and is answered as well by any master as by
/// all of them (`INFO`, `CONFIG GET`, `TIME`): the cluster client would
/// send it to every node.
pub(crate) fn one_node_will_do(cmd: &Cmd) -> bool {
    let name = cmd.args_iter().next().and_then(|a| match a {
        Arg::Simple(b) => Some(b.to_ascii_uppercase()),
        _ => None,
    });
    matches!(
        name.as_deref(),
        Some(b"INFO" | b"CONFIG" | b"TIME" | b"CLIENT" | b"ACL" | b"ROLE" | b"DBSIZE")
    )
}

/// The slot all of `cmd`'s keys hash to; `None` for a command without keys.
///
/// # Errors
/// [`StreamError::Unsupported`] naming two keys in different slots: the
/// cluster would refuse the command (`CROSSSLOT`), so it is not sent.
pub(crate) fn slot_of(cmd: &Cmd) -> Result<Option<Slot>> {
    let keys = keys_of(cmd);
    let Some(first) = keys.first() else {
        return Ok(None);
    };
    let slot = Slot::for_key(first);
    match keys.iter().find(|k| Slot::for_key(k) != slot) {
        None => Ok(Some(slot)),
        Some(other) => Err(cross_slot(first, other)),
    }
}

/// The error for two keys one command needs together that a cluster
/// keeps in different slots.
pub(crate) fn cross_slot(a: &[u8], b: &[u8]) -> StreamError {
    StreamError::Unsupported {
        feature: "one command over keys in different cluster slots".to_owned(),
        reason: format!(
            "`{}` and `{}` hash to different Redis Cluster slots, and a command must keep to \
             one slot (the key layout keeps each stream's own keys in its slot; see \
             docs/scaling.md, \"Redis Cluster\"); nothing was sent",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        ),
    }
}

/// Whether two keys hash to the same slot.
pub(crate) fn same_slot(a: &str, b: &str) -> bool {
    Slot::for_key(a) == Slot::for_key(b)
}

/// Indexes of `keys` grouped by slot, groups in the order their first key
/// is listed, keys in the order listed.
pub(crate) fn by_slot<S: AsRef<str>>(keys: &[S]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Slot, Vec<usize>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let slot = Slot::for_key(key.as_ref());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Runs a pipeline on a cluster and returns the replies of its commands
/// after the first `skip`, in order. Commands are grouped by slot, and
/// each group goes to its slot's master as a pipeline of its own (all at
/// once); the commands of one slot keep their order. Commands without keys
/// before the first with keys (a `SCRIPT LOAD`) go in front of every group;
/// one after a command with keys (a `WAIT`) goes with that command's group.
///
/// Server refusals stay values, as on one server. A connection error of
/// any group fails the whole call (nothing says which groups ran).
///
/// # Errors
/// A command whose own keys span slots fails the call before anything is
/// sent, with a client error naming the keys.
pub(crate) async fn pipeline(
    conn: &ClusterConnection,
    pipe: &Pipeline,
    skip: usize,
) -> RedisResult<Vec<Value>> {
    let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
    // The cluster client turns a pipeline with one refused command into
    // that refusal, though the commands before it may have run: only
    // pipelines that add no entries are sent again.
    let again = if cmds.iter().any(|c| adds_entries(c)) {
        0
    } else {
        REDIRECTS
    };
    let mut prefix: Vec<usize> = Vec::new();
    let mut groups: Vec<(Slot, Vec<usize>)> = Vec::new();
    let mut last: Option<usize> = None;
    for (i, cmd) in cmds.iter().enumerate() {
        let slot = slot_of(cmd)
            .map_err(|e| RedisError::from((ErrorKind::Client, "CROSSSLOT", e.to_string())))?;
        match (slot, last) {
            (None, None) => prefix.push(i),
            (None, Some(g)) => groups[g].1.push(i),
            (Some(slot), _) => {
                let g = match groups.iter().position(|(s, _)| *s == slot) {
                    Some(g) => g,
                    None => {
                        groups.push((slot, Vec::new()));
                        groups.len() - 1
                    }
                };
                groups[g].1.push(i);
                last = Some(g);
            }
        }
    }
    if groups.len() <= 1 {
        let route = groups
            .first()
            .map_or(SingleNodeRoutingInfo::RandomPrimary, |(slot, _)| {
                SingleNodeRoutingInfo::SpecificNode(Route::with_slot(*slot, SlotAddr::Master))
            });
        let all = resending(again, || {
            let mut conn = conn.clone();
            let route = route.clone();
            async move {
                let replies = conn
                    .route_pipeline(pipe.clone(), 0, pipe.len(), route)
                    .await?;
                refused_whole(replies)
            }
        })
        .await?;
        return Ok(all.into_iter().skip(skip).collect());
    }
    let sends = groups.iter().map(|(slot, members)| {
        let mut sub = Pipeline::with_capacity(prefix.len() + members.len());
        for &i in prefix.iter().chain(members) {
            sub.add_command(cmds[i].clone());
        }
        let len = sub.len();
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_slot(*slot, SlotAddr::Master));
        resending(again, move || {
            let mut conn = conn.clone();
            let (sub, route) = (sub.clone(), route.clone());
            async move { refused_whole(conn.route_pipeline(sub, 0, len, route).await?) }
        })
    });
    let replies = try_join_all(sends).await?;
    let mut out: Vec<Option<Value>> = vec![None; cmds.len()];
    for (g, ((_, members), replies)) in groups.iter().zip(replies).enumerate() {
        let mut replies = replies.into_iter();
        for &i in &prefix {
            let reply = replies.next();
            if g == 0 {
                out[i] = reply;
            }
        }
        for &i in members {
            out[i] = replies.next();
        }
    }
    out.into_iter()
        .skip(skip)
        .map(|v| {
            v.ok_or_else(|| {
                RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "a pipeline's replies do not match its commands",
                ))
            })
        })
        .collect()
}

/// Most times a command refused without running (`MOVED`, `TRYAGAIN`,
/// `CLUSTERDOWN`) is sent again.
pub(crate) const REDIRECTS: u32 = 5;

/// How long to wait before sending again a command the cluster refused
/// without running it, or `None` when the error says nothing of the kind.
/// On `MOVED` the client has begun refreshing its slot map; `TRYAGAIN`,
/// `CLUSTERDOWN` and `MASTERDOWN` pass once a failover or a migration
/// settles. Nothing else is sent again: a command whose reply was lost may
/// have run (an `XADD` would be written twice).
fn resend_after(e: &RedisError, attempt: u32) -> Option<std::time::Duration> {
    use redis::ServerErrorKind as K;
    let ErrorKind::Server(kind) = e.kind() else {
        return None;
    };
    let base = match kind {
        K::Moved => 10,
        K::TryAgain | K::ClusterDown | K::MasterDown | K::BusyLoading => 100,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(base << attempt.min(4)))
}

/// Whether `cmd` adds entries (`XADD`, the `add` script): sent twice, it
/// would add them twice.
fn adds_entries(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(b) => Some(b),
        _ => None,
    });
    match args.next().map(<[u8]>::to_ascii_uppercase).as_deref() {
        Some(b"XADD") => true,
        Some(b"EVALSHA") => args.next() == Some(crate::scripts::ADD.get_hash().as_bytes()),
        _ => false,
    }
}

/// Runs `send` again while the cluster refuses it without running it
/// (see [`resend_after`]), up to `times` times.
pub(crate) async fn resending<T, F, Fut>(times: u32, mut send: F) -> RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = RedisResult<T>>,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(e) if attempt < times => match resend_after(&e, attempt) {
                Some(wait) => {
                    tracing::debug!(error = %e, ?wait, "the cluster refused a command without running it; sending it again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// A reply that is a refusal to run ([`resend_after`]) as an error, so
/// that [`resending`] sees it.
pub(crate) fn refusal_as_error(v: Value) -> RedisResult<Value> {
    match v {
        Value::ServerError(e) => {
            let err: RedisError = e.clone().into();
            if resend_after(&err, 0).is_some() {
                Err(err)
            } else {
                Ok(Value::ServerError(e))
            }
        }
        v => Ok(v),
    }
}

/// The replies of a one-slot pipeline, or the refusal that sends it
/// again: a slot that moved refuses every command of the pipeline, so
/// none of them ran.
fn refused_whole(replies: Vec<Value>) -> RedisResult<Vec<Value>> {
    if let Some(e) = replies
        .iter()
        .find_map(|v| refusal_as_error(v.clone()).err())
    {
        return Err(e);
    }
    Ok(replies)
}

/// The masters serving slots, as `(host, port)`, from `CLUSTER NODES`.
pub(crate) async fn masters(conn: &ClusterConnection) -> RedisResult<Vec<(String, u16)>> {
    let mut conn = conn.clone();
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let text: String = redis::from_redis_value(
        conn.route_command(
            cmd,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await?,
    )?;
    let (masters, covered) = parse_masters(&text);
    if covered < SLOTS {
        return Err(RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "the cluster's masters do not cover every slot (a failover is under way); try again",
        )));
    }
    Ok(masters)
}

/// Slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// The masters with slots in `CLUSTER NODES` text: lines of
/// `<id> <host:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`.
fn parse_masters(text: &str) -> (Vec<(String, u16)>, u32) {
    let mut out = Vec::new();
    let mut covered = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 {
            continue; // no slots
        }
        let flags = fields[2];
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            continue;
        }
        let addr = fields[1].split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = addr.rsplit_once(':') else {
            continue;
        };
        if let Ok(port) = port.parse::<u16>() {
            out.push((host.to_owned(), port));
            for range in &fields[8..] {
                // `[slot->-node]` entries are slots being imported/migrated.
                if range.starts_with('[') {
                    continue;
                }
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u32>(), hi.parse::<u32>()) {
                    covered += hi.saturating_sub(lo) + 1;
                }
            }
        }
    }
    (out, covered)
}

/// Runs `cmd` on the master serving `key`'s slot.
pub(crate) async fn on_master_of(
    conn: &ClusterConnection,
    key: &str,
    cmd: Cmd,
) -> RedisResult<Value> {
    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
        Slot::for_key(key),
        SlotAddr::Master,
    )));
    resending(REDIRECTS, || {
        let (mut conn, cmd, route) = (conn.clone(), cmd.clone(), route.clone());
        async move { refusal_as_error(conn.route_command(cmd, route).await?) }
    })
    .await
}

/// Runs `cmd` on the node at `host:port`.
pub(crate) async fn on_node(
    conn: &ClusterConnection,
    host: &str,
    port: u16,
    cmd: Cmd,
) -> RedisResult<Value> {
    let mut conn = conn.clone();
    conn.route_command(
        cmd,
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port,
        }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_commands_sent() {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg("abc").arg(2).arg("k1").arg("k2").arg("argv");
        assert_eq!(keys_of(&cmd), vec![b"k1".as_slice(), b"k2"]);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg("a")
            .arg("b")
            .arg(">")
            .arg(">");
        assert_eq!(keys_of(&cmd), vec![b"a".as_slice(), b"b"]);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg("streams")
            .arg("STREAMS")
            .arg("COUNT")
            .arg(2)
            .arg("STREAMS")
            .arg("k")
            .arg(">");
        assert_eq!(keys_of(&cmd), vec![b"k".as_slice()]);
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg("s");
        assert_eq!(keys_of(&cmd), vec![b"s".as_slice()]);
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg("return 1");
        assert!(keys_of(&cmd).is_empty());
        let mut cmd = redis::cmd("XADD");
        cmd.arg("s").arg("*").arg("f").arg("v");
        assert_eq!(keys_of(&cmd), vec![b"s".as_slice()]);
    }

    #[test]
    fn a_stream_and_its_tagged_keys_share_a_slot() {
        for stream in ["ns:xnai:agent_bus", "orders#3", "a"] {
            let schedule = format!("xnai:retry:{{{stream}}}:g");
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg("sha").arg(2).arg(stream).arg(&schedule);
            assert!(slot_of(&cmd).unwrap().is_some(), "{stream}");
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg("sha").arg(2).arg("a").arg("xnai:dlq");
        let e = slot_of(&cmd).unwrap_err();
        assert!(
            e.to_string().contains("different Redis Cluster slots"),
            "{e}"
        );
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let text = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003,host3 master - 0 1426238318243 3 connected 10923-16383
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
aaaa 127.0.0.1:30009@31009 master,fail - 0 0 1 disconnected 0-5
bbbb 127.0.0.1:30010@31010 master - 0 0 1 connected
";
        assert_eq!(
            parse_masters(text),
            (
                vec![
                    ("127.0.0.1".to_owned(), 30002),
                    ("127.0.0.1".to_owned(), 30003),
                    ("127.0.0.1".to_owned(), 30001)
                ],
                16_384
            )
        );
    }

    #[test]
    fn keys_group_by_slot_in_order() {
        let keys = ["a", "xnai:retry:{a}:g:ready", "b", "xnai:retry:{b}:g:ready"];
        let groups = by_slot(&keys);
        assert_eq!(groups, vec![vec![0, 1], vec![2, 3]]);
    }
}

//! The baselines: the `redis` crate used directly, as a careful user would.
//!
//! - [`RawNaive`]: one `XADD` per call; one `XREADGROUP COUNT 1` and one
//!   `XACK` per message (typed replies).
//! - [`RawPipelined`]: pipelines of 500 `XADD`s, 4 in flight; reads of
//!   `COUNT 1000`, the next issued before the current batch is handled, one
//!   `XACK` per batch on a connection of its own; the reply decoded as
//!   `StreamReadReply` (`typed`) or walked as a `redis::Value`.
//! - [`RawTasks`]: 64 tasks, each sending one `XADD` at a time on one
//!   shared multiplexed connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, Value};

use crate::pace::{Latencies, paced};
use crate::shape;
use crate::{Env, Kind, Pace, Phases, Result, Target, Workload};

/// Messages per pipeline.
pub const PIPELINE: usize = 500;
/// Pipelines in flight.
pub const IN_FLIGHT: usize = 4;
/// Entries per read.
pub const READ_COUNT: usize = 1000;
/// Concurrent single senders.
pub const TASKS: usize = 64;
/// How long one blocking read waits (below the client's response timeout).
const BLOCK_MS: usize = 100;
/// Messages built ahead of the clock, per chunk.
const CHUNK: usize = 10_000;

/// `TCP_NODELAY` on the raw clients' sockets: the best setting for each
/// workload unless a run fixes it (see [`set_nodelay`]).
static NODELAY: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();

/// Fixes `TCP_NODELAY` for every raw connection of this process (`None`:
/// each workload's best, as measured here: on for the naive loop, whose
/// two round trips per message otherwise wait on delayed ACKs, off for
/// pipelines and concurrent senders, which it slows down). Only the first
/// call counts.
pub fn set_nodelay(nodelay: Option<bool>) {
    let _ = NODELAY.set(nodelay);
}

fn nodelay(best: bool) -> bool {
    NODELAY.get().copied().flatten().unwrap_or(best)
}

/// A multiplexed connection with a response timeout longer than any read
/// here blocks, with `TCP_NODELAY` as given.
pub(crate) async fn connect_with(url: &str, nodelay: bool) -> Result<MultiplexedConnection> {
    let client = Client::open(url)?;
    let info = client.get_connection_info().clone();
    let tcp = info.tcp_settings().clone().set_nodelay(nodelay);
    let client = Client::open(info.set_tcp_settings(tcp))?;
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// A connection as the redis crate makes it by default (`TCP_NODELAY` off,
/// unless [`set_nodelay`] fixed it).
pub(crate) async fn connect(url: &str) -> Result<MultiplexedConnection> {
    connect_with(url, nodelay(false)).await
}

/// A connection for the naive loop (`TCP_NODELAY` on, unless fixed).
async fn connect_naive(url: &str) -> Result<MultiplexedConnection> {
    connect_with(url, nodelay(true)).await
}

/// Creates group `g` on `key` (and the stream), from its beginning.
async fn create_group(conn: &mut MultiplexedConnection, key: &str, group: &str) -> Result<()> {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await?;
    Ok(())
}

fn xadd(key: &str, i: u64, t: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (name, value) in shape::raw(i, t) {
        cmd.arg(name).arg(value);
    }
    cmd
}

/// Sends `n` messages as pipelines of [`PIPELINE`], [`IN_FLIGHT`] at once.
async fn pipelined_produce(conn: &MultiplexedConnection, key: &str, n: usize) -> Result<()> {
    let pipelines = n.div_ceil(PIPELINE);
    let mut sends = futures::stream::iter(0..pipelines)
        .map(|p| {
            let mut conn = conn.clone();
            async move {
                let from = p * PIPELINE;
                let to = (from + PIPELINE).min(n);
                let mut pipe = redis::pipe();
                for i in from..to {
                    pipe.add_command(xadd(key, i as u64, 0));
                }
                let _: Value = pipe.query_async(&mut conn).await?;
                Ok::<_, crate::Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(r) = sends.next().await {
        r?;
    }
    Ok(())
}

/// Prefills a fresh stream for the raw consumers.
async fn raw_prefill(env: &Env, n: usize) -> Result<Target> {
    let target = Target::new(env.fresh());
    let mut conn = connect(env.redis_url()?).await?;
    let key = target.raw_key();
    create_group(&mut conn, &key, &target.group).await?;
    pipelined_produce(&conn, &key, n).await?;
    Ok(target)
}

/// The ids (and the `t` of each entry) of an `XREADGROUP` reply, walked as a
/// `Value` (RESP2 arrays or RESP3 maps).
pub(crate) fn walk_reply(reply: &Value, mut entry: impl FnMut(&[u8], Option<u64>)) {
    let keys: Box<dyn Iterator<Item = &Value>> = match reply {
        Value::Array(keys) => Box::new(keys.iter().filter_map(|k| match k {
            Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
            _ => None,
        })),
        Value::Map(keys) => Box::new(keys.iter().map(|(_, v)| v)),
        _ => return,
    };
    for entries in keys {
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(parts) = e else { continue };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (parts.first(), parts.get(1))
            else {
                continue;
            };
            let mut t = None;
            for pair in fields.chunks(2) {
                if let [Value::BulkString(k), Value::BulkString(v)] = pair {
                    if k.as_slice() == b"t" {
                        t = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                    }
                }
            }
            entry(id, t);
        }
    }
}

fn xreadgroup(key: &str, group: &str, count: usize, block: bool) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(group).arg("c").arg("COUNT").arg(count);
    if block {
        cmd.arg("BLOCK").arg(BLOCK_MS);
    }
    cmd.arg("STREAMS").arg(key).arg(">");
    cmd
}

/// The ids of a typed reply.
fn typed_ids(reply: &StreamReadReply) -> Vec<&str> {
    reply
        .keys
        .iter()
        .flat_map(|k| k.ids.iter().map(|id| id.id.as_str()))
        .collect()
}

/// Consumes `n` entries with reads of [`READ_COUNT`], the next read issued
/// before the current batch is acknowledged; reads and acks on separate
/// connections. With `latencies`, records the send time of each entry.
async fn pipelined_consume(
    url: &str,
    target: &Target,
    n: usize,
    typed: bool,
    block: bool,
    latencies: Option<&Latencies>,
) -> Result<()> {
    let reader = connect(url).await?;
    let mut acker = connect(url).await?;
    let key = target.raw_key();
    let read = |conn: &MultiplexedConnection| {
        let mut conn = conn.clone();
        let cmd = xreadgroup(&key, &target.group, READ_COUNT, block);
        tokio::spawn(async move { cmd.query_async::<Value>(&mut conn).await })
    };
    let mut next = read(&reader);
    let mut done = 0;
    while done < n {
        let reply = (&mut next).await??;
        next = read(&reader);
        let mut ack = redis::cmd("XACK");
        ack.arg(&key).arg(&target.group);
        let mut got = 0;
        if typed {
            let reply: StreamReadReply = redis::FromRedisValue::from_redis_value(reply)?;
            for id in typed_ids(&reply) {
                ack.arg(id);
                got += 1;
            }
            if let Some(l) = latencies {
                for k in &reply.keys {
                    for id in &k.ids {
                        if let Some(t) = id.get::<u64>("t") {
                            l.record(t);
                        }
                    }
                }
            }
        } else {
            walk_reply(&reply, |id, t| {
                ack.arg(id);
                got += 1;
                if let (Some(l), Some(t)) = (latencies, t) {
                    l.record(t);
                }
            });
        }
        if got > 0 {
            let _: i64 = ack.query_async(&mut acker).await?;
        }
        done += got;
    }
    // The read issued last may still be waiting: let it end.
    next.abort();
    Ok(())
}

/// One `XADD` per call.
async fn naive_produce(conn: &mut MultiplexedConnection, key: &str, n: usize) -> Result<()> {
    let mut sent = 0;
    while sent < n {
        let chunk: Vec<_> = (sent..(sent + CHUNK).min(n))
            .map(|i| shape::raw(i as u64, 0))
            .collect();
        for fields in &chunk {
            let _: String = conn.xadd(key, "*", fields).await?;
        }
        sent += chunk.len();
    }
    Ok(())
}

/// One `XREADGROUP COUNT 1` and one `XACK` per message.
async fn naive_consume(
    conn: &mut MultiplexedConnection,
    target: &Target,
    n: usize,
    block: bool,
    latencies: Option<&Latencies>,
) -> Result<()> {
    let key = target.raw_key();
    let mut opts = StreamReadOptions::default()
        .group(&target.group, "c")
        .count(1);
    if block {
        opts = opts.block(BLOCK_MS);
    }
    let mut done = 0;
    while done < n {
        let reply: Option<StreamReadReply> = conn.xread_options(&[&key], &[">"], &opts).await?;
        let Some(reply) = reply else { continue };
        for k in &reply.keys {
            for id in &k.ids {
                if let (Some(l), Some(t)) = (latencies, id.get::<u64>("t")) {
                    l.record(t);
                }
                let _: i64 = conn.xack(&key, &target.group, &[&id.id]).await?;
                done += 1;
            }
        }
    }
    Ok(())
}

/// The naive loop.
#[derive(Debug)]
pub struct RawNaive;

#[async_trait]
impl Workload for RawNaive {
    fn id(&self) -> &'static str {
        "raw-naive"
    }
    fn label(&self) -> &'static str {
        "raw redis crate, naive loop"
    }
    fn kind(&self) -> Kind {
        Kind::Redis
    }
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    async fn produce(&self, env: &Env, n: usize) -> Result<Duration> {
        let target = Target::new(env.fresh());
        let mut conn = connect_naive(env.redis_url()?).await?;
        let started = Instant::now();
        naive_produce(&mut conn, &target.raw_key(), n).await?;
        let took = started.elapsed();
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn prefill(&self, env: &Env, n: usize) -> Result<Target> {
        raw_prefill(env, n).await
    }

    async fn consume(&self, env: &Env, target: &Target, n: usize) -> Result<Duration> {
        let mut conn = connect_naive(env.redis_url()?).await?;
        let started = Instant::now();
        naive_consume(&mut conn, target, n, false, None).await?;
        Ok(started.elapsed())
    }

    async fn end_to_end(&self, env: &Env, n: usize) -> Result<Duration> {
        let url = env.redis_url()?;
        let target = Target::new(env.fresh());
        let key = target.raw_key();
        let mut producer = connect_naive(url).await?;
        let mut consumer = connect_naive(url).await?;
        create_group(&mut producer, &key, &target.group).await?;
        let started = Instant::now();
        let (p, c) = tokio::join!(
            naive_produce(&mut producer, &key, n),
            naive_consume(&mut consumer, &target, n, true, None)
        );
        p?;
        c?;
        let took = started.elapsed();
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn latency(&self, env: &Env, pace: Pace) -> Result<Vec<u64>> {
        let url = env.redis_url()?;
        let target = Target::new(env.fresh());
        let key = target.raw_key();
        let mut consumer = connect_naive(url).await?;
        create_group(&mut consumer, &key, &target.group).await?;
        let producer = connect_naive(url).await?;
        let latencies = Latencies::default();
        let sender = {
            let key = key.clone();
            paced(pace, move |i, t| {
                let mut conn = producer.clone();
                let cmd = xadd(&key, i, t);
                Box::pin(async move {
                    let _: String = cmd.query_async(&mut conn).await?;
                    Ok(())
                })
            })
        };
        let expected = pace.count();
        naive_consume(&mut consumer, &target, expected, true, Some(&latencies)).await?;
        sender.join()?;
        env.cleanup(&target).await?;
        Ok(latencies.take())
    }
}

/// Pipelines and read-ahead.
#[derive(Debug)]
pub struct RawPipelined {
    /// Decode replies as `StreamReadReply` rather than walking the `Value`.
    pub typed: bool,
}

#[async_trait]
impl Workload for RawPipelined {
    fn id(&self) -> &'static str {
        if self.typed {
            "raw-pipelined-typed"
        } else {
            "raw-pipelined"
        }
    }
    fn label(&self) -> &'static str {
        if self.typed {
            "raw redis crate, pipelined (500 per pipeline, 4 in flight, COUNT 1000 read-ahead), typed reply"
        } else {
            "raw redis crate, pipelined, reply walked as redis::Value"
        }
    }
    fn kind(&self) -> Kind {
        Kind::Redis
    }
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    async fn produce(&self, env: &Env, n: usize) -> Result<Duration> {
        let target = Target::new(env.fresh());
        let conn = connect(env.redis_url()?).await?;
        let started = Instant::now();
        pipelined_produce(&conn, &target.raw_key(), n).await?;
        let took = started.elapsed();
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn prefill(&self, env: &Env, n: usize) -> Result<Target> {
        raw_prefill(env, n).await
    }

    async fn consume(&self, env: &Env, target: &Target, n: usize) -> Result<Duration> {
        let url = env.redis_url()?;
        let started = Instant::now();
        pipelined_consume(url, target, n, self.typed, false, None).await?;
        Ok(started.elapsed())
    }

    async fn end_to_end(&self, env: &Env, n: usize) -> Result<Duration> {
        let url = env.redis_url()?;
        let target = Target::new(env.fresh());
        let key = target.raw_key();
        let mut producer = connect(url).await?;
        create_group(&mut producer, &key, &target.group).await?;
        let started = Instant::now();
        let (p, c) = tokio::join!(
            pipelined_produce(&producer, &key, n),
            pipelined_consume(url, &target, n, self.typed, true, None)
        );
        p?;
        c?;
        let took = started.elapsed();
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn latency(&self, env: &Env, pace: Pace) -> Result<Vec<u64>> {
        let url = env.redis_url()?;
        let target = Target::new(env.fresh());
        let key = target.raw_key();
        let mut producer = connect(url).await?;
        create_group(&mut producer, &key, &target.group).await?;
        let latencies = Latencies::default();
        let sender = {
            let key = key.clone();
            paced(pace, move |i, t| {
                let mut conn = producer.clone();
                let cmd = xadd(&key, i, t);
                Box::pin(async move {
                    let _: String = cmd.query_async(&mut conn).await?;
                    Ok(())
                })
            })
        };
        pipelined_consume(
            url,
            &target,
            pace.count(),
            self.typed,
            true,
            Some(&latencies),
        )
        .await?;
        sender.join()?;
        env.cleanup(&target).await?;
        Ok(latencies.take())
    }
}

/// 64 single senders on one connection.
#[derive(Debug)]
pub struct RawTasks;

#[async_trait]
impl Workload for RawTasks {
    fn id(&self) -> &'static str {
        "raw-64-tasks"
    }
    fn label(&self) -> &'static str {
        "raw redis crate, 64 tasks x one XADD each, one connection"
    }
    fn kind(&self) -> Kind {
        Kind::Redis
    }
    fn phases(&self) -> Phases {
        Phases::PRODUCE
    }

    async fn produce(&self, env: &Env, n: usize) -> Result<Duration> {
        let target = Target::new(env.fresh());
        let conn = connect(env.redis_url()?).await?;
        let key: Arc<str> = Arc::from(target.raw_key());
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mut conn = conn.clone();
                let key = Arc::clone(&key);
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok::<_, redis::RedisError>(());
                        }
                        let _: String = conn.xadd(&*key, "*", &shape::raw(i as u64, 0)).await?;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let took = started.elapsed();
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn prefill(&self, _env: &Env, _n: usize) -> Result<Target> {
        Err("raw-64-tasks only produces".into())
    }
    async fn consume(&self, _env: &Env, _target: &Target, _n: usize) -> Result<Duration> {
        Err("raw-64-tasks only produces".into())
    }
    async fn end_to_end(&self, _env: &Env, _n: usize) -> Result<Duration> {
        Err("raw-64-tasks only produces".into())
    }
    async fn latency(&self, _env: &Env, _pace: Pace) -> Result<Vec<u64>> {
        Err("raw-64-tasks only produces".into())
    }
}

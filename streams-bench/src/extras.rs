//! Figures outside the main table: retry and dead-letter moves, claiming
//! idle entries, and the memory backend's footprint.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use streams_core::backend::RangeQuery;
use streams_core::{StreamBackend, StreamMessage};
use streams_memory::MemoryBackend;

use crate::project::{create_group, fill, memory_manager, redis_manager};
use crate::rss::{self, ChildReport};
use crate::{Env, Result, Target, shape};

/// Which move a moves run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    /// `retry_message`.
    Retry,
    /// `send_to_dlq`.
    DeadLetter,
    /// `retry_many` of every message at once.
    RetryMany,
    /// `dead_letter_many` of every message at once.
    DeadLetterMany,
}

/// Reads `n` messages of a fresh stream into `consumer`'s hands.
async fn delivered(
    env: &Env,
    n: usize,
) -> Result<(
    Target,
    streams_core::Manager<streams_redis::RedisBackend>,
    Vec<StreamMessage>,
)> {
    let target = Target::new(env.fresh());
    let m = redis_manager(env, &target, "consumer").await?;
    create_group(&m, &target).await?;
    fill(&m, &target.stream, n).await?;
    let mut messages = Vec::with_capacity(n);
    while messages.len() < n {
        let batch = m
            .read_messages(&target.group, Some(1000), Some(Duration::from_millis(100)))
            .await?;
        messages.extend(batch);
    }
    Ok((target, m, messages))
}

/// `n` moves of delivered messages through the current API, `in_flight` at
/// once (1: one at a time); the time they took.
///
/// # Errors
/// Redis errors, or a move that was refused.
pub async fn moves(env: &Env, n: usize, kind: MoveKind, in_flight: usize) -> Result<Duration> {
    let (target, m, messages) = delivered(env, n).await?;
    let group = target.group.as_str();
    let started = Instant::now();
    if matches!(kind, MoveKind::RetryMany | MoveKind::DeadLetterMany) {
        let refused = if kind == MoveKind::RetryMany {
            m.retry_many(&messages)
                .await?
                .into_iter()
                .filter(|r| !matches!(r, Ok(true)))
                .count()
        } else {
            m.dead_letter_many(&messages, "bench", Some(group))
                .await?
                .into_iter()
                .filter(Result::is_err)
                .count()
        };
        let took = started.elapsed();
        env.cleanup(&target).await?;
        if refused > 0 {
            return Err(format!("{refused} of {n} moves were refused").into());
        }
        return Ok(took);
    }
    let mut results = futures::stream::iter(&messages)
        .map(|msg| {
            let m = &m;
            async move {
                if kind == MoveKind::DeadLetter {
                    m.send_to_dlq(msg, "bench", Some(group)).await.map(|_| true)
                } else {
                    m.retry_message(msg).await
                }
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = results.next().await {
        if !r? {
            return Err("a move was refused".into());
        }
    }
    let took = started.elapsed();
    env.cleanup(&target).await?;
    Ok(took)
}

/// Claims `n` entries left idle by a consumer: the time
/// `claim_pending_messages` takes to hand them all over (called until it
/// has, as a claimer that drains a dead consumer's work does: the current
/// API takes a redelivered entry alone, so that a crash suspect is
/// isolated).
///
/// # Errors
/// Redis errors, or a claim that took fewer than `n`.
pub async fn claim(env: &Env, n: usize) -> Result<Duration> {
    let (target, _holder, _messages) = delivered(env, n).await?;
    let idle = Duration::from_millis(20);
    tokio::time::sleep(idle * 3).await;
    let taker = redis_manager(env, &target, "taker").await?;
    let started = Instant::now();
    let mut claimed = 0;
    while claimed < n {
        let got = taker
            .claim_pending_messages(&target.group, Some(idle))
            .await?;
        if got.is_empty() {
            break;
        }
        claimed += got.len();
    }
    let took = started.elapsed();
    env.cleanup(&target).await?;
    if claimed != n {
        return Err(format!("claimed {claimed} of {n} idle entries").into());
    }
    Ok(took)
}

/// What the memory backend keeps per entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Footprint {
    /// Entries stored.
    pub entries: usize,
    /// Resident memory the entries added, bytes per entry.
    pub kept_per_entry: f64,
    /// Bytes of content per entry: the id (16) and every field's name and
    /// value.
    pub content_per_entry: f64,
    /// `kept_per_entry / content_per_entry`.
    pub ratio: f64,
}

/// Resident memory while messages stream through a capped stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Streaming {
    /// Messages sent and consumed.
    pub messages: usize,
    /// The stream's `max_len`.
    pub max_len: u64,
    /// Resident memory after each tenth of the messages, MiB.
    pub samples_mib: Vec<f64>,
    /// The largest sample, MiB.
    pub max_mib: f64,
    /// Last sample minus the first, MiB.
    pub growth_mib: f64,
}

/// In a child process (see `--child`): sends `n` messages one per call to
/// a memory backend, and reports the resident memory they added and their
/// content.
///
/// # Errors
/// Backend errors, or no `/proc`.
pub async fn footprint_child(n: usize) -> Result<ChildReport> {
    let env = Env::new(None, "footprint");
    let mut target = Target::new(env.fresh());
    target.memory = Some(MemoryBackend::new());
    let m = memory_manager(&target, "producer")?;
    // Warm the allocator and the manager with a few sends of their own.
    m.send_message("warm", shape::json(0, 0), None).await?;
    let before = rss::rss().ok_or("no /proc/self/status")?;
    rss::reset_peak();
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let len = 10_000.min(n - sent);
        for data in shape::json_chunk(sent as u64, len) {
            m.send_message(&target.stream, data, None).await?;
        }
        sent += len;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = rss::rss().ok_or("no /proc/self/status")?;
    let backend = target.memory.as_ref().ok_or("no backend")?;
    let key = m.keys().stream(&target.stream);
    let sample = backend.range(RangeQuery::new(&key, 1000)).await?;
    let content: usize = sample
        .iter()
        .map(|e| {
            16 + e
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
        })
        .sum();
    let content_per_entry = content as f64 / sample.len().max(1) as f64;
    let kept_per_entry = after.saturating_sub(before) as f64 / n.max(1) as f64;
    let footprint = Footprint {
        entries: n,
        kept_per_entry,
        content_per_entry,
        ratio: kept_per_entry / content_per_entry.max(1.0),
    };
    Ok(ChildReport {
        rss_start: before,
        peak: rss::peak().unwrap_or(0),
        seconds,
        extra: serde_json::to_value(footprint)?,
    })
}

/// In a child process: streams `n` messages through a stream capped at
/// `max_len` (sent one per call, read and acknowledged 1000 at a time) and
/// samples resident memory.
///
/// # Errors
/// Backend errors, or no `/proc`.
pub async fn streaming_child(n: usize, max_len: u64) -> Result<ChildReport> {
    let env = Env::new(None, "streaming");
    let mut target = Target::new(env.fresh());
    target.memory = Some(MemoryBackend::new());
    let producer = memory_manager(&target, "producer")?;
    let consumer = memory_manager(&target, "consumer")?;
    create_group(&consumer, &target).await?;
    let start = rss::rss().ok_or("no /proc/self/status")?;
    rss::reset_peak();
    let started = Instant::now();
    let mut samples = Vec::new();
    let step = (n / 10).max(1);
    let mut sent = 0;
    while sent < n {
        let len = 1000.min(n - sent);
        for data in shape::json_chunk(sent as u64, len) {
            producer
                .send_message(&target.stream, data, Some(max_len))
                .await?;
        }
        let batch = consumer
            .read_messages(&target.group, Some(1000), Some(Duration::ZERO))
            .await?;
        consumer.acknowledge_many(&batch, &target.group).await?;
        sent += len;
        if sent % step < len {
            samples.push(rss::mib(rss::rss().unwrap_or(0)));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let streaming = Streaming {
        messages: n,
        max_len,
        max_mib: samples.iter().copied().fold(0.0, f64::max),
        growth_mib: samples.last().copied().unwrap_or(0.0)
            - samples.first().copied().unwrap_or(0.0),
        samples_mib: samples,
    };
    Ok(ChildReport {
        rss_start: start,
        peak: rss::peak().unwrap_or(0),
        seconds,
        extra: serde_json::to_value(streaming)?,
    })
}

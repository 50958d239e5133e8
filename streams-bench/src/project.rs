//! The project's rows: the [`Manager`] API over Redis and over the memory
//! backend, and the memory backend called directly (its own cost, without
//! the manager's envelope and policy).
//!
//! - [`Mode::Single`]: `send_message` one at a time; `read_messages(1)` and
//!   `acknowledge` per message.
//! - [`Mode::Tasks`]: 64 tasks calling `send_message` on one manager.
//! - [`Mode::Batched`]: `send_batch` of 500, 4 in flight; `read_messages`
//!   of 1000 and `acknowledge_many`, the next read issued with the ack.
//! - [`Mode::Runner`]: the `consume` runner with a handler doing nothing,
//!   at a given concurrency; the stream is fed as in `Batched`.
//! - [`Mode::Direct`], [`Mode::DirectBatched`]: `StreamBackend::add`,
//!   `read_group` and `ack` on the memory backend, one entry per call or
//!   1000.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::de::IgnoredAny;
use serde_json::Value;
use streams_core::backend::{Ack, Add, CreateGroup, ReadGroup, StartAt};
use streams_core::runner::{CancellationToken, Job, Settled};
use streams_core::{
    ConsumerGroupConfig, Fields, Manager, ManagerConfig, StreamBackend, StreamManagerExt,
};
use streams_memory::MemoryBackend;
use streams_redis::RedisBackend;

use crate::pace::{Latencies, paced};
use crate::raw::{IN_FLIGHT, PIPELINE, READ_COUNT, TASKS};
use crate::shape::{self, Stamp};
use crate::{Env, Kind, Pace, Phases, Result, Target, Workload};

/// Messages built ahead of the clock, per chunk.
const CHUNK: usize = 10_000;
/// How long one blocking read waits.
const BLOCK: Duration = Duration::from_millis(100);
/// Entries per call in the direct batched row.
const DIRECT_BATCH: usize = 1000;

/// How a project row uses the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One message per call.
    Single,
    /// 64 concurrent `send_message` tasks.
    Tasks,
    /// `send_batch`, `read_messages(1000)`, `acknowledge_many`.
    Batched,
    /// The `consume` runner at this concurrency.
    Runner(usize),
    /// The memory backend's own calls, one entry each.
    Direct,
    /// The memory backend's own calls, 1000 entries each.
    DirectBatched,
}

/// A project row.
#[derive(Debug)]
pub struct Project {
    kind: Kind,
    mode: Mode,
}

impl Project {
    /// The row of `mode` on `kind`.
    pub fn new(kind: Kind, mode: Mode) -> Self {
        Self { kind, mode }
    }
}

/// A manager on a backend, as every project row makes it.
fn config(namespace: &str, consumer: &str) -> ManagerConfig {
    ManagerConfig::default()
        .with_consumer_id(consumer)
        .with_namespace(namespace)
}

/// Connects a manager for `target`.
pub async fn redis_manager(
    env: &Env,
    target: &Target,
    consumer: &str,
) -> Result<Manager<RedisBackend>> {
    let backend = RedisBackend::connect(env.redis_url()?).await?;
    Ok(Manager::new(backend, config(&target.namespace, consumer))?)
}

/// A manager on `target`'s memory backend.
pub fn memory_manager(target: &Target, consumer: &str) -> Result<Manager<MemoryBackend>> {
    let backend = target
        .memory
        .clone()
        .ok_or("a memory row's target has no backend")?;
    Ok(Manager::new(backend, config(&target.namespace, consumer))?)
}

/// Creates the target's group (from the stream's beginning).
pub async fn create_group<B: StreamBackend>(m: &Manager<B>, target: &Target) -> Result<()> {
    m.create_consumer_group(&ConsumerGroupConfig::new(
        target.group.as_str(),
        [target.stream.as_str()],
    ))
    .await?;
    Ok(())
}

/// `send_message` one at a time; payloads are built before the clock runs.
pub async fn produce_single<B: StreamBackend>(
    m: &Manager<B>,
    stream: &str,
    n: usize,
) -> Result<Duration> {
    let mut took = Duration::ZERO;
    let mut sent = 0;
    while sent < n {
        let chunk = shape::json_chunk(sent as u64, CHUNK.min(n - sent));
        let len = chunk.len();
        let started = Instant::now();
        for data in chunk {
            m.send_message(stream, data, None).await?;
        }
        took += started.elapsed();
        sent += len;
    }
    Ok(took)
}

/// 64 tasks calling `send_message` on one manager (payloads built inline).
pub async fn produce_tasks<B: StreamBackend>(
    m: &Manager<B>,
    stream: &str,
    n: usize,
) -> Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let stream: Arc<str> = Arc::from(stream);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let m = m.clone();
            let next = Arc::clone(&next);
            let stream = Arc::clone(&stream);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, streams_core::StreamError>(());
                    }
                    m.send_message(&*stream, shape::json(i as u64, 0), None)
                        .await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// Sends `batches` with `send_batch`, [`IN_FLIGHT`] at once.
async fn send_batches<B: StreamBackend>(
    m: &Manager<B>,
    stream: &str,
    batches: Vec<Vec<Value>>,
    in_flight: usize,
) -> Result<()> {
    let mut sends = futures::stream::iter(batches)
        .map(|items| m.send_batch(stream, items, None))
        .buffer_unordered(in_flight);
    while let Some(r) = sends.next().await {
        r?;
    }
    Ok(())
}

fn batches_of(from: usize, n: usize, size: usize) -> Vec<Vec<Value>> {
    let items = shape::json_chunk(from as u64, n);
    let mut out = Vec::with_capacity(n.div_ceil(size));
    let mut items = items.into_iter();
    loop {
        let batch: Vec<Value> = items.by_ref().take(size).collect();
        if batch.is_empty() {
            return out;
        }
        out.push(batch);
    }
}

/// `send_batch` of 500, 4 in flight. With `prebuilt`, payloads are built
/// before the clock runs (in chunks); otherwise building them is timed too.
pub async fn produce_batched<B: StreamBackend>(
    m: &Manager<B>,
    stream: &str,
    n: usize,
    prebuilt: bool,
) -> Result<Duration> {
    let mut took = Duration::ZERO;
    let mut sent = 0;
    let started_all = Instant::now();
    while sent < n {
        let len = CHUNK.min(n - sent);
        let batches = batches_of(sent, len, PIPELINE);
        let started = Instant::now();
        send_batches(m, stream, batches, IN_FLIGHT).await?;
        took += started.elapsed();
        sent += len;
    }
    Ok(if prebuilt {
        took
    } else {
        started_all.elapsed()
    })
}

/// Fills a stream with `n` messages (`send_batch` of 1000, not timed).
pub async fn fill<B: StreamBackend>(m: &Manager<B>, stream: &str, n: usize) -> Result<()> {
    let mut sent = 0;
    while sent < n {
        let len = CHUNK.min(n - sent);
        send_batches(m, stream, batches_of(sent, len, 1000), 1).await?;
        sent += len;
    }
    Ok(())
}

/// `read_messages(1)` and `acknowledge`, one message at a time.
pub async fn consume_single<B: StreamBackend>(
    m: &Manager<B>,
    group: &str,
    n: usize,
    block: Option<Duration>,
    latencies: Option<&Latencies>,
) -> Result<Duration> {
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        for msg in m.read_messages(group, Some(1), block).await? {
            if let (Some(l), Some(t)) = (latencies, shape::stamp_of(&msg.data)) {
                l.record(t);
            }
            m.acknowledge(&msg, group).await?;
            done += 1;
        }
    }
    Ok(started.elapsed())
}

/// `read_messages(1000)` and `acknowledge_many`, each ack sent with the next
/// read.
pub async fn consume_batched<B: StreamBackend>(
    m: &Manager<B>,
    group: &str,
    n: usize,
    block: Option<Duration>,
    latencies: Option<&Latencies>,
) -> Result<Duration> {
    let started = Instant::now();
    let mut done = 0;
    let mut batch = m.read_messages(group, Some(READ_COUNT), block).await?;
    loop {
        if let Some(l) = latencies {
            for msg in &batch {
                if let Some(t) = shape::stamp_of(&msg.data) {
                    l.record(t);
                }
            }
        }
        done += batch.len();
        if done >= n {
            m.acknowledge_many(&batch, group).await?;
            break;
        }
        let (acked, next) = tokio::join!(
            m.acknowledge_many(&batch, group),
            m.read_messages(group, Some(READ_COUNT), block)
        );
        acked?;
        batch = next?;
    }
    Ok(started.elapsed())
}

/// The `consume` runner at `concurrency`, until `n` messages are
/// acknowledged (confirmed by the server); the time until the last ack.
pub async fn consume_runner<B: StreamBackend + Clone>(
    m: &Manager<B>,
    group: &str,
    n: usize,
    concurrency: usize,
    latencies: Option<Arc<Latencies>>,
) -> Result<Duration> {
    let stop = CancellationToken::new();
    let acked = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(OnceLock::new());
    let observer = {
        let (stop, acked, last) = (stop.clone(), Arc::clone(&acked), Arc::clone(&last));
        move |s: &streams_core::runner::Settlement<'_>| {
            if matches!(s.how, Settled::Acked | Settled::AckUnconfirmed)
                && acked.fetch_add(1, Ordering::Relaxed) + 1 == n
            {
                let _ = last.set(Instant::now());
                stop.cancel();
            }
        }
    };
    let started = Instant::now();
    let summary = match latencies {
        None => {
            m.consume(group, |_job: Job<IgnoredAny>| async {
                Ok::<_, Infallible>(())
            })
            .concurrency(concurrency)
            .on_settled(observer)
            .shutdown_on(stop.clone())
            .await?
        }
        Some(l) => {
            m.consume(group, move |job: Job<Stamp>| {
                l.record(job.data.t);
                async { Ok::<_, Infallible>(()) }
            })
            .concurrency(concurrency)
            .on_settled(observer)
            .shutdown_on(stop.clone())
            .await?
        }
    };
    let ended = last
        .get()
        .copied()
        .ok_or_else(|| format!("the runner stopped before {n} acks: {summary}"))?;
    Ok(ended - started)
}

/// `add` one entry at a time, straight to the memory backend.
async fn direct_produce(b: &MemoryBackend, key: &str, n: usize, batch: usize) -> Result<Duration> {
    let mut took = Duration::ZERO;
    let mut sent = 0;
    while sent < n {
        let len = CHUNK.min(n - sent);
        let chunk: Vec<Fields> = (sent..sent + len)
            .map(|i| shape::fields(i as u64))
            .collect();
        let started = Instant::now();
        if batch <= 1 {
            for fields in chunk {
                b.add(Add::new(key, fields)).await?;
            }
        } else {
            let mut items = chunk.into_iter();
            loop {
                let adds: Vec<Add> = items
                    .by_ref()
                    .take(batch)
                    .map(|f| Add::new(key, f))
                    .collect();
                if adds.is_empty() {
                    break;
                }
                b.add_batch(adds).await?;
            }
        }
        took += started.elapsed();
        sent += len;
    }
    Ok(took)
}

/// `read_group` and `ack`, `batch` entries per call.
async fn direct_consume(
    b: &MemoryBackend,
    key: &str,
    n: usize,
    batch: usize,
    block: Option<Duration>,
) -> Result<Duration> {
    let keys = [key.to_owned()];
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let read = ReadGroup::new("g", "c", &keys, batch).with_block(block);
        for reply in b.read_group(read).await? {
            let ids: Vec<_> = reply.entries.into_iter().map(|e| e.entry.id).collect();
            done += ids.len();
            b.ack(Ack::new(key, "g", &ids)).await?;
        }
    }
    Ok(started.elapsed())
}

impl Project {
    fn batch(&self) -> usize {
        if self.mode == Mode::DirectBatched {
            DIRECT_BATCH
        } else {
            1
        }
    }

    fn direct(&self) -> bool {
        matches!(self.mode, Mode::Direct | Mode::DirectBatched)
    }

    /// A fresh, empty target with its group.
    async fn fresh(&self, env: &Env) -> Result<Target> {
        let mut target = Target::new(env.fresh());
        match self.kind {
            Kind::Redis => {
                let m = redis_manager(env, &target, "producer").await?;
                create_group(&m, &target).await?;
            }
            Kind::Memory => {
                let backend = MemoryBackend::new();
                if self.direct() {
                    backend
                        .create_group(CreateGroup::new(
                            &target.stream,
                            &target.group,
                            StartAt::Beginning,
                        ))
                        .await?;
                }
                target.memory = Some(backend);
                if !self.direct() {
                    create_group(&memory_manager(&target, "producer")?, &target).await?;
                }
            }
        }
        Ok(target)
    }

    async fn produce_with<B: StreamBackend>(
        &self,
        m: &Manager<B>,
        target: &Target,
        n: usize,
    ) -> Result<Duration> {
        match self.mode {
            Mode::Single => produce_single(m, &target.stream, n).await,
            Mode::Tasks => produce_tasks(m, &target.stream, n).await,
            _ => produce_batched(m, &target.stream, n, true).await,
        }
    }

    async fn consume_with<B: StreamBackend + Clone>(
        &self,
        m: &Manager<B>,
        target: &Target,
        n: usize,
        block: Option<Duration>,
        latencies: Option<Arc<Latencies>>,
    ) -> Result<Duration> {
        let group = target.group.as_str();
        match self.mode {
            Mode::Single => consume_single(m, group, n, block, latencies.as_deref()).await,
            Mode::Runner(c) => consume_runner(m, group, n, c, latencies).await,
            _ => consume_batched(m, group, n, block, latencies.as_deref()).await,
        }
    }

    /// The producer of an end-to-end run: as in the produce phase, with
    /// payloads built inline (the batched producer for runner rows).
    async fn e2e_producer<B: StreamBackend>(
        &self,
        m: &Manager<B>,
        target: &Target,
        n: usize,
    ) -> Result<Duration> {
        match self.mode {
            Mode::Single => {
                for i in 0..n {
                    m.send_message(&target.stream, shape::json(i as u64, 0), None)
                        .await?;
                }
                Ok(Duration::ZERO)
            }
            _ => produce_batched(m, &target.stream, n, false).await,
        }
    }

    async fn e2e_with<B: StreamBackend + Clone>(
        &self,
        producer: &Manager<B>,
        consumer: &Manager<B>,
        target: &Target,
        n: usize,
    ) -> Result<Duration> {
        let started = Instant::now();
        let (p, c) = tokio::join!(
            self.e2e_producer(producer, target, n),
            self.consume_with(consumer, target, n, Some(BLOCK), None)
        );
        p?;
        c?;
        Ok(started.elapsed())
    }

    async fn latency_with<B: StreamBackend + Clone>(
        &self,
        producer: Manager<B>,
        consumer: &Manager<B>,
        target: &Target,
        pace: Pace,
    ) -> Result<Vec<u64>> {
        let latencies = Arc::new(Latencies::default());
        let stream = target.stream.clone();
        let sender = paced(pace, move |i, t| {
            let m = producer.clone();
            let stream = stream.clone();
            Box::pin(async move {
                m.send_message(&stream, shape::json(i, t), None).await?;
                Ok(())
            })
        });
        self.consume_with(
            consumer,
            target,
            pace.count(),
            Some(BLOCK),
            Some(Arc::clone(&latencies)),
        )
        .await?;
        sender.join()?;
        Ok(latencies.take())
    }
}

#[async_trait]
impl Workload for Project {
    fn id(&self) -> &'static str {
        match (self.kind, self.mode) {
            (Kind::Redis, Mode::Single) => "single",
            (Kind::Redis, Mode::Tasks) => "64-tasks",
            (Kind::Redis, Mode::Batched) => "batched",
            (Kind::Redis, Mode::Runner(1)) => "consume-c1",
            (Kind::Redis, Mode::Runner(_)) => "consume-c64",
            (Kind::Redis, _) => "redis-direct",
            (Kind::Memory, Mode::Single) => "mem-single",
            (Kind::Memory, Mode::Tasks) => "mem-64-tasks",
            (Kind::Memory, Mode::Batched) => "mem-batched",
            (Kind::Memory, Mode::Runner(1)) => "mem-consume-c1",
            (Kind::Memory, Mode::Runner(_)) => "mem-consume-c64",
            (Kind::Memory, Mode::Direct) => "mem-backend",
            (Kind::Memory, Mode::DirectBatched) => "mem-backend-batched",
        }
    }

    fn label(&self) -> &'static str {
        match (self.kind, self.mode) {
            (Kind::Redis, Mode::Single) => "this project, one message per call",
            (Kind::Redis, Mode::Tasks) => "this project, 64 tasks x send_message on one manager",
            (Kind::Redis, Mode::Batched) => {
                "this project, send_batch + read 1000 + acknowledge_many"
            }
            (Kind::Redis, Mode::Runner(1)) => "this project, consume runner, concurrency 1",
            (Kind::Redis, Mode::Runner(_)) => "this project, consume runner, concurrency 64",
            (Kind::Redis, _) => "(not a row)",
            (Kind::Memory, Mode::Single) => "memory backend, one message per call",
            (Kind::Memory, Mode::Tasks) => "memory backend, 64 tasks x send_message",
            (Kind::Memory, Mode::Batched) => {
                "memory backend, send_batch + read 1000 + acknowledge_many"
            }
            (Kind::Memory, Mode::Runner(1)) => "memory backend, consume runner, concurrency 1",
            (Kind::Memory, Mode::Runner(_)) => "memory backend, consume runner, concurrency 64",
            (Kind::Memory, Mode::Direct) => {
                "memory backend alone (StreamBackend calls), one entry per call"
            }
            (Kind::Memory, Mode::DirectBatched) => {
                "memory backend alone (StreamBackend calls), 1000 entries per call"
            }
        }
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    fn phases(&self) -> Phases {
        match self.mode {
            Mode::Single | Mode::Batched => Phases::ALL,
            Mode::Tasks => Phases::PRODUCE,
            Mode::Runner(_) => Phases {
                produce: false,
                ..Phases::ALL
            },
            Mode::Direct | Mode::DirectBatched => Phases::THROUGHPUT,
        }
    }

    async fn produce(&self, env: &Env, n: usize) -> Result<Duration> {
        let target = self.fresh(env).await?;
        let took = match self.kind {
            Kind::Redis => {
                let m = redis_manager(env, &target, "producer").await?;
                self.produce_with(&m, &target, n).await?
            }
            Kind::Memory if self.direct() => {
                let b = target.memory.clone().ok_or("no backend")?;
                direct_produce(&b, &target.stream, n, self.batch()).await?
            }
            Kind::Memory => {
                let m = memory_manager(&target, "producer")?;
                self.produce_with(&m, &target, n).await?
            }
        };
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn prefill(&self, env: &Env, n: usize) -> Result<Target> {
        let target = self.fresh(env).await?;
        match self.kind {
            Kind::Redis => {
                let m = redis_manager(env, &target, "producer").await?;
                fill(&m, &target.stream, n).await?;
            }
            Kind::Memory if self.direct() => {
                let b = target.memory.clone().ok_or("no backend")?;
                direct_produce(&b, &target.stream, n, DIRECT_BATCH).await?;
            }
            Kind::Memory => fill(&memory_manager(&target, "producer")?, &target.stream, n).await?,
        }
        Ok(target)
    }

    async fn consume(&self, env: &Env, target: &Target, n: usize) -> Result<Duration> {
        match self.kind {
            Kind::Redis => {
                let m = redis_manager(env, target, "consumer").await?;
                self.consume_with(&m, target, n, None, None).await
            }
            Kind::Memory if self.direct() => {
                let b = target.memory.clone().ok_or("no backend")?;
                direct_consume(&b, &target.stream, n, self.batch(), None).await
            }
            Kind::Memory => {
                let m = memory_manager(target, "consumer")?;
                self.consume_with(&m, target, n, None, None).await
            }
        }
    }

    async fn end_to_end(&self, env: &Env, n: usize) -> Result<Duration> {
        let target = self.fresh(env).await?;
        let took = match self.kind {
            Kind::Redis => {
                let p = redis_manager(env, &target, "producer").await?;
                let c = redis_manager(env, &target, "consumer").await?;
                self.e2e_with(&p, &c, &target, n).await?
            }
            Kind::Memory if self.direct() => {
                let b = target.memory.clone().ok_or("no backend")?;
                let started = Instant::now();
                let (p, c) = tokio::join!(
                    direct_produce(&b, &target.stream, n, self.batch()),
                    direct_consume(&b, &target.stream, n, self.batch(), Some(BLOCK))
                );
                p?;
                c?;
                started.elapsed()
            }
            Kind::Memory => {
                let p = memory_manager(&target, "producer")?;
                let c = memory_manager(&target, "consumer")?;
                self.e2e_with(&p, &c, &target, n).await?
            }
        };
        env.cleanup(&target).await?;
        Ok(took)
    }

    async fn latency(&self, env: &Env, pace: Pace) -> Result<Vec<u64>> {
        let target = self.fresh(env).await?;
        let latencies = match self.kind {
            Kind::Redis => {
                let p = redis_manager(env, &target, "producer").await?;
                let c = redis_manager(env, &target, "consumer").await?;
                self.latency_with(p, &c, &target, pace).await?
            }
            Kind::Memory => {
                let p = memory_manager(&target, "producer")?;
                let c = memory_manager(&target, "consumer")?;
                self.latency_with(p, &c, &target, pace).await?
            }
        };
        env.cleanup(&target).await?;
        Ok(latencies)
    }
}

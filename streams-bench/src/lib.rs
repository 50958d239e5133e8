//! The xnai-streams benchmark.
//!
//! Measures the project's workloads next to raw `redis`-crate loops and
//! `redis-benchmark`, in the same run and with the same message shape
//! (about 150 bytes in 5 fields, see [`shape`]), and the in-process memory
//! backend. Each row reports produce, consume+ack and end-to-end messages
//! per second (medians of interleaved runs), latency at a fixed rate, and
//! the peak RSS of a consumer; the report adds ratios to the baselines and
//! checks them against the project's targets.
//!
//! The binary `xnai-streams-bench` is the front end
//! (`cargo run --release -p streams-bench -- --help`); the regression test
//! in `tests/` runs small workloads through [`workload`] and compares
//! ratios only.

pub mod extras;
pub mod pace;
pub mod project;
pub mod raw;
pub mod report;
pub mod rss;
pub mod run;
pub mod server;
pub mod shape;
pub mod stats;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use streams_memory::MemoryBackend;

pub use report::Report;

/// Errors of a benchmark run.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a run's streams live: the Redis to use and the prefix of every
/// key it writes (each measurement gets a fresh namespace under it and
/// deletes it afterwards).
#[derive(Debug)]
pub struct Env {
    /// The Redis URL, when Redis rows run.
    pub redis: Option<String>,
    /// Prefix of the namespaces (`<prefix>-<n>`).
    pub prefix: String,
    next: AtomicU64,
}

impl Env {
    /// An environment writing under `prefix`.
    pub fn new(redis: Option<String>, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            next: AtomicU64::new(0),
        }
    }

    /// A namespace no measurement has used.
    pub fn fresh(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }

    /// The Redis URL, or an error saying there is none.
    ///
    /// # Errors
    /// When the run has no Redis.
    pub fn redis_url(&self) -> Result<&str> {
        self.redis.as_deref().ok_or_else(|| {
            "this workload needs Redis (--redis URL, or redis-server on PATH)".into()
        })
    }

    /// Deletes every key of a namespace (Redis rows).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn cleanup(&self, target: &Target) -> Result<()> {
        if target.memory.is_none() {
            if let Some(url) = &self.redis {
                streams_redis::testing::cleanup(url, &target.namespace).await?;
            }
        }
        Ok(())
    }
}

impl Env {
    /// Deletes every key written under [`prefix`](Self::prefix) that is
    /// still there (a measurement that failed midway leaves its
    /// namespace); returns how many. Nothing for memory-only runs.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn sweep(&self) -> Result<u64> {
        let Some(url) = &self.redis else {
            return Ok(0);
        };
        let mut conn = raw::connect(url).await?;
        let pattern = format!("{}-*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// A stream filled for a consumer: its namespace, stream name and group
/// (and, for the memory backend, the backend holding it).
#[derive(Debug, Clone)]
pub struct Target {
    /// The namespace (key prefix) of the measurement.
    pub namespace: String,
    /// The stream name (raw rows: the full key).
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// The memory backend holding the stream, for memory rows.
    pub memory: Option<MemoryBackend>,
}

impl Target {
    /// A target in `namespace`: stream `bench`, group `g`.
    pub fn new(namespace: String) -> Self {
        Self {
            stream: "bench".to_owned(),
            group: "g".to_owned(),
            namespace,
            memory: None,
        }
    }

    /// The Redis key of the stream (raw rows write it directly).
    pub fn raw_key(&self) -> String {
        format!("{}:{}", self.namespace, self.stream)
    }
}

/// Which backend a row runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A Redis server.
    Redis,
    /// The in-process memory backend.
    Memory,
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phases {
    /// Produce N messages.
    pub produce: bool,
    /// Consume and acknowledge N messages already in the stream.
    pub consume: bool,
    /// A producer and a consumer at once, until the consumer has
    /// acknowledged N.
    pub end_to_end: bool,
    /// Producer-to-consumer latency at a fixed rate.
    pub latency: bool,
}

impl Phases {
    /// Every phase.
    pub const ALL: Self = Self {
        produce: true,
        consume: true,
        end_to_end: true,
        latency: true,
    };
    /// Throughput phases, no latency.
    pub const THROUGHPUT: Self = Self {
        produce: true,
        consume: true,
        end_to_end: true,
        latency: false,
    };
    /// Produce only.
    pub const PRODUCE: Self = Self {
        produce: true,
        consume: false,
        end_to_end: false,
        latency: false,
    };
}

/// The fixed rate of a latency run.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Messages per second.
    pub rate: u32,
    /// How long it sends.
    pub duration: Duration,
}

/// One row of the table: a client and a way of using it.
#[async_trait]
pub trait Workload: Send + Sync + fmt::Debug {
    /// Short id (`raw-naive`, `batched`, ...).
    fn id(&self) -> &'static str;
    /// What the table calls it.
    fn label(&self) -> &'static str;
    /// The backend it runs on.
    fn kind(&self) -> Kind;
    /// What it measures.
    fn phases(&self) -> Phases;

    /// Sends `n` messages to a fresh stream; the time taken.
    async fn produce(&self, env: &Env, n: usize) -> Result<Duration>;

    /// Fills a fresh stream with `n` messages for [`consume`](Self::consume)
    /// (not timed).
    async fn prefill(&self, env: &Env, n: usize) -> Result<Target>;

    /// Consumes and acknowledges the `n` messages of a prefilled stream; the
    /// time taken.
    async fn consume(&self, env: &Env, target: &Target, n: usize) -> Result<Duration>;

    /// Produces and consumes `n` messages at once; the time until the last
    /// is acknowledged.
    async fn end_to_end(&self, env: &Env, n: usize) -> Result<Duration>;

    /// Sends at a fixed pace and returns each message's latency from send to
    /// the consumer, in microseconds.
    async fn latency(&self, env: &Env, pace: Pace) -> Result<Vec<u64>>;
}

/// Every row, in table order.
pub fn workloads() -> Vec<Box<dyn Workload>> {
    vec![
        Box::new(raw::RawNaive),
        Box::new(raw::RawPipelined { typed: true }),
        Box::new(raw::RawPipelined { typed: false }),
        Box::new(raw::RawTasks),
        Box::new(project::Project::new(Kind::Redis, project::Mode::Single)),
        Box::new(project::Project::new(Kind::Redis, project::Mode::Tasks)),
        Box::new(project::Project::new(Kind::Redis, project::Mode::Batched)),
        Box::new(project::Project::new(Kind::Redis, project::Mode::Runner(1))),
        Box::new(project::Project::new(
            Kind::Redis,
            project::Mode::Runner(64),
        )),
        Box::new(project::Project::new(Kind::Memory, project::Mode::Single)),
        Box::new(project::Project::new(Kind::Memory, project::Mode::Batched)),
        Box::new(project::Project::new(
            Kind::Memory,
            project::Mode::Runner(1),
        )),
        Box::new(project::Project::new(
            Kind::Memory,
            project::Mode::Runner(64),
        )),
        Box::new(project::Project::new(Kind::Memory, project::Mode::Direct)),
        Box::new(project::Project::new(
            Kind::Memory,
            project::Mode::DirectBatched,
        )),
    ]
}

/// The row with this id.
pub fn workload(id: &str) -> Option<Box<dyn Workload>> {
    workloads().into_iter().find(|w| w.id() == id)
}

/// Per-measurement wall time limit: a hung measurement fails the run
/// instead of hanging it.
pub const MEASUREMENT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `f` with [`MEASUREMENT_TIMEOUT`].
///
/// # Errors
/// `f`'s error, or a timeout naming `what`.
pub async fn timed_out<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(MEASUREMENT_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("{what}: no result within {MEASUREMENT_TIMEOUT:?}").into()),
    }
}

/// Messages per second.
pub fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

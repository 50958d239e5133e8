//! # xnai-streams
//!
//! Streams for teams of software agents: agents publish tasks and updates,
//! consumer groups share the work, every message is acknowledged, failures
//! are retried with exponential backoff, poison messages land in a
//! dead-letter queue with their history, work abandoned by a crashed agent is
//! claimed by another, and operators can see the health of it all.
//!
//! Redis Streams is the production transport ([`RedisBackend`]); an
//! in-process model of it ([`MemoryBackend`]) is the embedded default and
//! serves tests. Both run the same [`Manager`], so they behave the same; the
//! conformance suite proves it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> xnai_streams::Result<()> {
//! use serde_json::json;
//! use xnai_streams::{ConsumerGroupConfig, StreamType, create_memory_stream_manager};
//!
//! let manager = create_memory_stream_manager(Some("cline-1")).await?;
//! manager
//!     .create_consumer_group(&ConsumerGroupConfig::new(
//!         "agent_wavefront",
//!         [StreamType::AgentBus, StreamType::TaskUpdates],
//!     ))
//!     .await?;
//!
//! manager
//!     .send_message(
//!         &StreamType::AgentBus,
//!         json!({"agent_id": "cline-1", "action": "task_complete", "task_id": "R003-1"}),
//!         Some(1000),
//!     )
//!     .await?;
//!
//! for message in manager.read_messages("agent_wavefront", Some(10), None).await? {
//!     println!("{} {} {:?}", message.id, message.stream, message.data);
//!     manager.acknowledge(&message, "agent_wavefront").await?;
//! }
//! assert_eq!(manager.get_stats().await?.messages_acknowledged, 1);
//! # Ok(()) }
//! ```
//!
//! The same code runs on Redis with [`create_stream_manager`], which connects
//! to `REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! See `docs/spec-mapping.md` for the Rust name of every name of the API
//! specification, `docs/architecture.md` for how a call flows through the
//! crates, and `docs/wire-format.md` for what is stored in Redis.
//!
//! [`runner`] runs a handler over a group's messages in one call
//! ([`StreamManagerExt::consume`]): concurrency, leases, claims, retries,
//! the dead-letter queue and graceful shutdown.
//!
//! # Features
//!
//! - `memory` (default): the in-process backend, [`MemoryBackend`].
//! - `redis` (default): the Redis backend, [`RedisBackend`].
//! - `tls`: `rediss://` URLs.
//! - `signal`: `Consume::until_signal`, shutdown on Ctrl-C and SIGTERM.
//!
//! The command line tool is the separate `xnai-streams-cli` package.

use std::sync::Arc;

pub use streams_core::{
    BoxError, ConsumerGroupConfig, ConsumerHealth, DeadLetter, Delivery, DlqConfig, DlqCursor,
    DlqFilter, DlqLayout, DlqPage, DlqProgress, DlqPurge, DlqQuery, DlqReplay, DlqSelection,
    DlqStats, Durability, Entry, EntryId, EntryState, Fields, GroupHealth, GroupStart,
    HealthReport, HealthStatus, HealthThresholds, KeyLayout, MAX_DELIVERIES_EXCEEDED,
    MAX_NAME_BYTES, MAX_PARTITIONS, MAX_PAYLOAD_DEPTH, Manager, ManagerConfig, MessageStatus,
    PartitionedStream, PeekQuery, PendingFilter, PendingInfo, PruneReport, PurgeReport,
    PurgedEntry, RawFields, Readiness, Refusal, ReplayDuplicate, ReplayItem, ReplayReport,
    ReplaySkip, Result, RetryConfig, RetryOptions, RetryPolicy, SkipReason, Stats, StreamBackend,
    StreamError, StreamHealth, StreamInfo, StreamManager, StreamManagerExt, StreamMessage,
    StreamType, StreamUse, field, partition_stream, split_partition, validate_name,
    validate_namespace,
};
pub use streams_core::{backend, observe, runner};
#[cfg(feature = "memory")]
pub use streams_memory::MemoryBackend;
#[cfg(feature = "redis")]
pub use streams_redis::{RedisBackend, RedisConfig};

/// The stream manager on the in-process backend.
#[cfg(feature = "memory")]
pub type MemoryStreamManager = Manager<MemoryBackend>;

/// The stream manager on Redis (the spec's `RedisStreamManager`).
#[cfg(feature = "redis")]
pub type RedisStreamManager = Manager<RedisBackend>;

/// A stream manager whose backend is chosen at run time.
pub type DynStreamManager = Arc<dyn StreamManager>;

#[cfg(any(feature = "memory", feature = "redis"))]
fn config_for(consumer_id: Option<&str>) -> ManagerConfig {
    let config = ManagerConfig::default();
    match consumer_id {
        Some(id) => config.with_consumer_id(id),
        None => config,
    }
}

/// Connects to Redis and initializes a manager in one call (the spec's
/// `create_stream_manager`). The server is `REDIS_URL`, or
/// `redis://127.0.0.1:6379` when it is unset; the consumer id defaults to
/// `consumer_<pid>`.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> xnai_streams::Result<()> {
/// let manager = xnai_streams::create_stream_manager(Some("cline-1")).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`StreamError::Connection`] when Redis cannot be reached,
/// [`StreamError::Unsupported`] for a server older than 7.0,
/// [`StreamError::InvalidName`] for a bad consumer id.
#[cfg(feature = "redis")]
pub async fn create_stream_manager(consumer_id: Option<&str>) -> Result<RedisStreamManager> {
    let config = config_for(consumer_id);
    config.validate()?;
    let backend = RedisBackend::from_env().await?;
    let manager = Manager::new(backend, config)?;
    manager.initialize().await?;
    Ok(manager)
}

/// Creates and initializes a manager on a new in-process backend.
///
/// # Errors
/// [`StreamError::InvalidName`] for a bad consumer id.
#[cfg(feature = "memory")]
pub async fn create_memory_stream_manager(
    consumer_id: Option<&str>,
) -> Result<MemoryStreamManager> {
    let manager = Manager::new(MemoryBackend::new(), config_for(consumer_id))?;
    manager.initialize().await?;
    Ok(manager)
}

/// Opens a manager on the backend named by `url`: `memory://` for a new
/// in-process backend, `redis://`, `rediss://` or `redis+unix://` for Redis.
/// The manager is initialized.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> xnai_streams::Result<()> {
/// let manager = xnai_streams::connect("memory://", Default::default()).await?;
/// manager.send_message("xnai:alerts", serde_json::json!({"level": "info"}), None).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`StreamError::Config`] for an unknown scheme, connection and
/// configuration errors.
#[cfg(any(feature = "memory", feature = "redis"))]
pub async fn connect(url: &str, config: ManagerConfig) -> Result<DynStreamManager> {
    // Only the scheme: the rest of a URL may hold a password.
    let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
    let manager: DynStreamManager = match scheme {
        #[cfg(feature = "memory")]
        "memory" => Arc::new(Manager::new(MemoryBackend::new(), config)?),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" | "unix" => {
            Arc::new(Manager::new(RedisBackend::connect(url).await?, config)?)
        }
        _ => {
            return Err(StreamError::config(format!(
                "unknown backend url scheme `{scheme}`: use {}",
                SCHEMES.join(" or ")
            )));
        }
    };
    manager.initialize().await?;
    Ok(manager)
}

/// The URL schemes [`connect`] knows, with the features enabled.
#[cfg(any(feature = "memory", feature = "redis"))]
const SCHEMES: &[&str] = &[
    #[cfg(feature = "memory")]
    "memory://",
    #[cfg(feature = "redis")]
    "redis://host:port",
];

/// The README's code samples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "memory", feature = "redis", feature = "signal"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

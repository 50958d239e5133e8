//! [`Manager`]: the spec's semantics, written once over any [`StreamBackend`].

mod ack;
mod admin;
mod claim;
mod dlq;
mod dlq_ops;
mod group;
mod health;
mod inspect;
mod partitions;
mod read;
mod readiness;
mod retry;
mod send;
mod stats;
mod status;
mod subscribe;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use admin::PruneReport;
pub use claim::MAX_DELIVERIES_EXCEEDED;
pub use dlq_ops::{
    DlqCursor, DlqFilter, DlqPage, DlqProgress, DlqPurge, DlqQuery, DlqReplay, DlqSelection,
    DlqStats, PurgeReport, PurgedEntry, ReplayDuplicate, ReplayItem, ReplayReport, ReplaySkip,
    SkipReason,
};
pub use health::{ConsumerHealth, GroupHealth, HealthReport, StreamHealth};
pub use inspect::{EntryState, PeekQuery, PendingFilter, PendingInfo, StreamInfo};
pub use readiness::Readiness;
pub use stats::Stats;
pub use status::{HealthStatus, HealthThresholds};

use crate::backend::{Feature, ServerInfo, StreamBackend};
use crate::config::ManagerConfig;
use crate::error::{Result, StreamError};
use crate::names::KeyLayout;
pub(crate) use group::Group;
use stats::Counters;

/// The stream manager over a backend `B` (the spec's `RedisStreamManager`,
/// for any transport).
///
/// Cheap to clone: clones share one state, so a clone can be moved into a
/// task. All the spec's methods are inherent `async fn`s (stream names as
/// `impl AsRef<str>`, so [`StreamType`](crate::StreamType) works as is) and
/// also available through the object-safe [`StreamManager`](crate::StreamManager) trait.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
/// use serde_json::json;
/// use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamType};
/// use streams_memory::MemoryBackend;
///
/// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default().with_consumer_id("cline-1"))?;
/// manager.initialize().await?;
/// manager
///     .create_consumer_group(&ConsumerGroupConfig::new("agent_wavefront", [StreamType::AgentBus]))
///     .await?;
/// manager
///     .send_message(StreamType::AgentBus, json!({"agent_id": "cline-1", "action": "task_complete"}), Some(1000))
///     .await?;
/// for message in manager.read_messages("agent_wavefront", None, None).await? {
///     assert_eq!(message.data["action"], "task_complete");
///     manager.acknowledge(&message, "agent_wavefront").await?;
/// }
/// assert_eq!(manager.get_stats().await?.messages_acknowledged, 1);
/// manager.close().await?;
/// # Ok(()) }
/// ```
pub struct Manager<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Manager<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: StreamBackend> fmt::Debug for Manager<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("backend", &self.inner.backend)
            .field("consumer_id", &self.inner.consumer_id)
            .field("namespace", &self.inner.config.namespace)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner<B> {
    backend: B,
    config: ManagerConfig,
    keys: KeyLayout,
    consumer_id: String,
    /// For managers without an explicit id: what follows a group's
    /// `consumer_prefix` in the consumer name (`<pid>` or `<pid>_<n>`).
    default_suffix: Option<String>,
    groups: RwLock<HashMap<String, Arc<Group>>>,
    server: tokio::sync::OnceCell<ServerInfo>,
    closed: AtomicBool,
    counters: Counters,
    /// The dead-letter length last read, reported by `get_stats` once closed.
    last_dlq_len: AtomicU64,
    /// The dead-letter length at the last health check, for its growth rate.
    dlq_sample: Mutex<Option<status::DlqSample>>,
    /// When each dead-letter stream was last trimmed by age by this manager.
    dlq_trimmed: Mutex<HashMap<String, Instant>>,
    /// Partition counts read from the backend, and when (see `partitions.rs`).
    partition_counts: Mutex<HashMap<String, (u32, Instant)>>,
    /// Whose turn it is in round-robin sends.
    round_robin: AtomicU64,
}

impl<B: StreamBackend> Manager<B> {
    /// A manager over `backend`. Nothing is contacted until
    /// [`initialize`](Self::initialize) or the first operation.
    ///
    /// # Errors
    /// [`StreamError::Config`] or [`StreamError::InvalidName`] for a bad configuration.
    pub fn new(backend: B, config: ManagerConfig) -> Result<Self> {
        config.validate()?;
        if config.durability.is_some() && !backend.capabilities().supports(Feature::DurableSends) {
            return Err(StreamError::Unsupported {
                feature: "durable send".to_owned(),
                reason: format!(
                    "this {} backend cannot wait for replicas or fsync",
                    backend.name()
                ),
            });
        }
        let keys = KeyLayout::new(
            config.namespace.as_deref(),
            &config.dlq,
            &config.retry,
            &config.registry_key,
        )?;
        if config.dlq.enabled
            && keys.dlq_is_shared()
            && !backend
                .capabilities()
                .supports(Feature::AtomicCrossStreamMoves)
        {
            tracing::info!(
                backend = backend.name(),
                "dead-letter moves to the shared dead-letter stream copy first, then \
                 acknowledge (this backend cannot move across streams atomically): a crash \
                 in between leaves a duplicate dead letter, never a loss; \
                 DlqLayout::PerStream keeps every move atomic"
            );
        }
        let (consumer_id, default_suffix) = match &config.consumer_id {
            Some(id) => (id.clone(), None),
            None => {
                static INSTANCES: AtomicU64 = AtomicU64::new(0);
                let n = INSTANCES.fetch_add(1, Ordering::Relaxed) + 1;
                let pid = std::process::id();
                let suffix = if n == 1 {
                    pid.to_string()
                } else {
                    format!("{pid}_{n}")
                };
                (format!("consumer_{suffix}"), Some(suffix))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                keys,
                consumer_id,
                default_suffix,
                groups: RwLock::new(HashMap::new()),
                server: tokio::sync::OnceCell::new(),
                closed: AtomicBool::new(false),
                counters: Counters::default(),
                last_dlq_len: AtomicU64::new(0),
                dlq_sample: Mutex::new(None),
                dlq_trimmed: Mutex::new(HashMap::new()),
                partition_counts: Mutex::new(HashMap::new()),
                // A random start: short-lived producers (one send each)
                // would otherwise all begin on partition 0.
                round_robin: AtomicU64::new(std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    std::process::id(),
                )),
                config,
            }),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// The key layout (namespace, retry and dead-letter keys).
    pub fn keys(&self) -> &KeyLayout {
        &self.inner.keys
    }

    /// This manager's consumer id.
    pub fn consumer_id(&self) -> &str {
        &self.inner.consumer_id
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Whether [`initialize`](Self::initialize) has succeeded.
    pub fn is_initialized(&self) -> bool {
        self.inner.server.initialized()
    }

    /// The server this manager talks to, once initialized.
    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.inner.server.get()
    }

    /// Whether the backend supports `feature`.
    pub(crate) fn supports(&self, feature: Feature) -> bool {
        self.inner.backend.capabilities().supports(feature)
    }

    /// Fails with [`StreamError::Unsupported`] unless the backend supports `feature`.
    pub(crate) fn require(&self, feature: Feature, operation: &'static str) -> Result<()> {
        if self.supports(feature) {
            Ok(())
        } else {
            Err(StreamError::Unsupported {
                feature: operation.to_owned(),
                reason: format!(
                    "the {} backend has no {}",
                    self.backend().name(),
                    feature.describe()
                ),
            })
        }
    }

    /// Connects and asks the backend about its server (a backend refuses a
    /// server it cannot use). Idempotent; every other operation calls it on
    /// first use.
    ///
    /// # Errors
    /// [`StreamError::Unsupported`], connection errors, [`StreamError::Closed`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn initialize(&self) -> Result<()> {
        self.ensure_open()?;
        self.inner
            .server
            .get_or_try_init(|| self.inner.backend.server_info())
            .await?;
        Ok(())
    }

    fn ensure_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(StreamError::Closed)
        } else {
            Ok(())
        }
    }

    /// Open and initialized, or an error.
    async fn ready(&self) -> Result<()> {
        self.ensure_open()?;
        if !self.is_initialized() {
            self.initialize().await?;
        }
        Ok(())
    }

    /// Closes the manager: later calls fail with [`StreamError::Closed`].
    /// Idempotent.
    ///
    /// # Errors
    /// Errors from the backend while releasing connections.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.backend.close().await
    }
}

/// Time from now until `next`, if it is in the future.
pub(crate) fn until(next: Instant) -> Duration {
    next.saturating_duration_since(Instant::now())
}

crate::api::delegate_manager!(impl [B: StreamBackend] for Manager<B>, |this| this);

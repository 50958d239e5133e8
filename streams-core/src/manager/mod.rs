//! [`Manager`]: the spec's semantics, written once over any [`StreamBackend`].

mod ack;
mod claim;
mod dlq;
mod health;
mod read;
mod retry;
mod send;
mod stats;
mod subscribe;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

pub use claim::MAX_DELIVERIES_EXCEEDED;
pub use health::{ConsumerHealth, GroupHealth, HealthReport, StreamHealth};
pub use stats::Stats;

use crate::api::StreamManager;
use crate::backend::{ReadCursor, ServerInfo, StreamBackend};
use crate::config::{ConsumerGroupConfig, ManagerConfig};
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;
use crate::names::{KeyLayout, validate_name};
use stats::Counters;

/// Oldest server accepted: `XAUTOCLAIM` arrived in Redis 6.2.
const MIN_VERSION: (u32, u32, u32) = (6, 2, 0);

/// The stream manager over a backend `B` (the spec's `RedisStreamManager`,
/// for any transport).
///
/// Cheap to clone: clones share one state, so a clone can be moved into a
/// task. All the spec's methods are inherent `async fn`s and also available
/// through the object-safe [`StreamManager`] trait.
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
///     .send_message(&StreamType::AgentBus, json!({"agent_id": "cline-1", "action": "task_complete"}), Some(1000))
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
}

/// One stream of a group and its retry keys.
#[derive(Debug)]
pub(crate) struct Source {
    /// The stream name users see.
    pub(crate) logical: String,
    /// The stream key.
    pub(crate) key: String,
    /// The group's retry schedule for this stream.
    pub(crate) schedule: String,
    /// The group's ready stream of due retries for this stream.
    pub(crate) ready: String,
}

/// A group as this manager knows it.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) config: ConsumerGroupConfig,
    /// This manager's consumer name in the group.
    pub(crate) consumer: String,
    pub(crate) sources: Vec<Source>,
    /// `(key, >)` for every key: what a live read asks for.
    pub(crate) live_keys: Vec<(String, ReadCursor)>,
    /// `(schedule, ready)` for every stream.
    pub(crate) promote_pairs: Vec<(String, String)>,
    pub(crate) read: Mutex<ReadState>,
}

impl Group {
    /// The source a key belongs to, and whether the key is its ready stream.
    pub(crate) fn source_of(&self, key: &str) -> Option<(&Source, bool)> {
        self.sources.iter().find_map(|s| {
            if s.key == key {
                Some((s, false))
            } else if s.ready == key {
                Some((s, true))
            } else {
                None
            }
        })
    }

    /// Every key the group reads: each stream, then each ready stream.
    pub(crate) fn all_keys(&self) -> impl Iterator<Item = &str> {
        self.sources
            .iter()
            .map(|s| s.key.as_str())
            .chain(self.sources.iter().map(|s| s.ready.as_str()))
    }

    pub(crate) fn lock_read(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per-group read progress of this manager.
#[derive(Debug)]
pub(crate) struct ReadState {
    /// Own pending entries still to re-deliver after start: `(key, cursor)`.
    /// `None` once they are all delivered.
    pub(crate) backlog: Option<Vec<(String, String)>>,
    /// A task is reading the backlog; others read live entries meanwhile.
    pub(crate) backlog_busy: bool,
    /// When due retries were last promoted.
    pub(crate) last_promote: Option<Instant>,
    /// When the next known retry falls due.
    pub(crate) next_due: Option<Instant>,
}

impl<B: StreamBackend> Manager<B> {
    /// A manager over `backend`. Nothing is contacted until
    /// [`initialize`](Self::initialize) or the first operation.
    ///
    /// # Errors
    /// [`StreamError::Config`] or [`StreamError::InvalidName`] for a bad configuration.
    pub fn new(backend: B, config: ManagerConfig) -> Result<Self> {
        config.validate()?;
        let keys = KeyLayout::new(
            config.namespace.as_deref(),
            &config.dlq,
            &config.registry_key,
        )?;
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

    /// Connects and checks the server version. Idempotent; every other
    /// operation calls it on first use.
    ///
    /// # Errors
    /// [`StreamError::Unsupported`] below Redis 6.2, connection errors,
    /// [`StreamError::Closed`].
    pub async fn initialize(&self) -> Result<()> {
        self.ensure_open()?;
        self.inner
            .server
            .get_or_try_init(|| async {
                let info = self.inner.backend.server_info().await?;
                if info.version < MIN_VERSION {
                    return Err(StreamError::Unsupported {
                        feature: "XAUTOCLAIM",
                        required: "6.2.0".to_owned(),
                        found: info.version_string(),
                    });
                }
                Ok(info)
            })
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

    fn consumer_name(&self, config: &ConsumerGroupConfig) -> String {
        match &self.inner.default_suffix {
            Some(suffix) => format!("{}{suffix}", config.consumer_prefix),
            None => self.inner.consumer_id.clone(),
        }
    }

    fn build_group(&self, config: ConsumerGroupConfig) -> Result<Group> {
        config.validate()?;
        let consumer = self.consumer_name(&config);
        validate_name("consumer", &consumer)?;
        let keys = &self.inner.keys;
        let sources: Vec<Source> = config
            .streams
            .iter()
            .map(|s| Source {
                logical: s.clone(),
                key: keys.stream(s),
                schedule: keys.retry_schedule(s, &config.name),
                ready: keys.retry_ready(s, &config.name),
            })
            .collect();
        let backlog = sources
            .iter()
            .flat_map(|s| [s.key.clone(), s.ready.clone()])
            .map(|k| (k, "0".to_owned()))
            .collect();
        let live_keys = sources
            .iter()
            .map(|s| s.key.clone())
            .chain(sources.iter().map(|s| s.ready.clone()))
            .map(|k| (k, ReadCursor::New))
            .collect();
        let promote_pairs = sources
            .iter()
            .map(|s| (s.schedule.clone(), s.ready.clone()))
            .collect();
        Ok(Group {
            config,
            consumer,
            sources,
            live_keys,
            promote_pairs,
            read: Mutex::new(ReadState {
                backlog: Some(backlog),
                backlog_busy: false,
                last_promote: None,
                next_due: None,
            }),
        })
    }

    fn cached_group(&self, name: &str) -> Option<Arc<Group>> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn cache_group(&self, group: Group) -> Arc<Group> {
        let group = Arc::new(group);
        self.inner
            .groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group.config.name.clone(), Arc::clone(&group));
        group
    }

    /// The group named `name`: known here, or found in the registry.
    pub(crate) async fn group(&self, name: &str) -> Result<Arc<Group>> {
        validate_name("group", name)?;
        if let Some(g) = self.cached_group(name) {
            return Ok(g);
        }
        let stored = self
            .inner
            .backend
            .registry_get(self.inner.keys.registry(), name)
            .await?;
        let Some(json) = stored else {
            return Err(StreamError::GroupNotFound {
                group: name.to_owned(),
            });
        };
        let config: ConsumerGroupConfig =
            serde_json::from_str(&json).map_err(|e| StreamError::Decode {
                what: format!("registry entry of group `{name}`"),
                message: e.to_string(),
            })?;
        if config.name != name {
            return Err(StreamError::Decode {
                what: format!("registry entry of group `{name}`"),
                message: format!("it describes group `{}`", config.name),
            });
        }
        let group = self.build_group(config)?;
        // Another task may have cached it meanwhile; keep the first.
        if let Some(g) = self.cached_group(name) {
            return Ok(g);
        }
        Ok(self.cache_group(group))
    }

    /// Creates the group on each of its streams and in the registry.
    /// See [`StreamManager::create_consumer_group`].
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Config`], backend errors.
    pub async fn create_consumer_group(&self, config: &ConsumerGroupConfig) -> Result<()> {
        self.ready().await?;
        let group = self.build_group(config.clone())?;
        self.create_on_backend(&group).await?;
        let json = serde_json::to_string(&group.config).map_err(|e| StreamError::Decode {
            what: format!("configuration of group `{}`", group.config.name),
            message: e.to_string(),
        })?;
        self.inner
            .backend
            .registry_put(self.inner.keys.registry(), &group.config.name, &json)
            .await?;
        match self.cached_group(&config.name) {
            Some(existing) if existing.config == group.config => {}
            _ => {
                self.cache_group(group);
            }
        }
        Ok(())
    }

    async fn create_on_backend(&self, group: &Group) -> Result<()> {
        let backend = &self.inner.backend;
        let name = &group.config.name;
        for s in &group.sources {
            backend
                .create_group(&s.key, name, group.config.start.as_id())
                .await?;
            backend.create_group(&s.ready, name, "0").await?;
        }
        Ok(())
    }

    /// After `NOGROUP`: recreate the group everywhere at id `0` (so nothing
    /// added since is skipped) and re-register it.
    pub(crate) async fn recover_group(&self, group: &Group) -> Result<()> {
        let backend = &self.inner.backend;
        let name = &group.config.name;
        tracing::warn!(group = %name, "consumer group missing on the server; recreating it");
        for s in &group.sources {
            backend.create_group(&s.key, name, "0").await?;
            backend.create_group(&s.ready, name, "0").await?;
        }
        if let Ok(json) = serde_json::to_string(&group.config) {
            backend
                .registry_put(self.inner.keys.registry(), name, &json)
                .await?;
        }
        self.inner
            .counters
            .groups_recreated
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `op`; on `NOGROUP` recreates the group and runs it once more.
    pub(crate) async fn with_recovery<T, F, Fut>(&self, group: &Group, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(StreamError::NoGroup { .. }) => {
                self.recover_group(group).await?;
                op().await
            }
            other => other,
        }
    }

    /// Closes the manager: later calls fail with [`StreamError::Closed`].
    /// Idempotent.
    ///
    /// # Errors
    /// Errors from the backend while releasing connections.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.backend.close().await
    }

    /// Initializes, runs `f` with a clone of this manager, then closes it,
    /// whether `f` succeeded or not: the Rust form of the spec's
    /// `async with RedisStreamManager(...) as manager:`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// use streams_core::{Manager, ManagerConfig};
    /// use streams_memory::MemoryBackend;
    ///
    /// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default())?;
    /// let sent = manager
    ///     .scoped(|m| async move { m.send_message("jobs", serde_json::json!({"n": 1}), None).await })
    ///     .await?;
    /// assert!(!sent.is_empty());
    /// assert!(manager.is_closed());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The error of `f`, else that of initializing or closing.
    pub async fn scoped<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Self) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if let Err(e) = self.initialize().await {
            let _ = self.close().await;
            return Err(e);
        }
        let result = f(self.clone()).await;
        let closed = self.close().await;
        let value = result?;
        closed.map(|()| value)
    }

    /// The streams of every group this manager knows, sorted, without repeats.
    pub(crate) fn known_streams(&self) -> Vec<String> {
        let mut streams: Vec<String> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flat_map(|g| g.sources.iter().map(|s| s.logical.clone()))
            .collect();
        streams.sort();
        streams.dedup();
        streams
    }

    /// The names of the groups this manager knows, sorted.
    pub fn consumer_groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The group's configuration, if this manager knows the group or finds it
    /// in the registry.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    pub async fn group_config(&self, name: &str) -> Result<ConsumerGroupConfig> {
        self.ready().await?;
        Ok(self.group(name).await?.config.clone())
    }

    /// Every group in the registry, with its configuration.
    ///
    /// # Errors
    /// Connection errors, [`StreamError::Decode`] for an unreadable entry.
    pub async fn registered_groups(&self) -> Result<Vec<ConsumerGroupConfig>> {
        self.ready().await?;
        let mut out = Vec::new();
        for (name, json) in self
            .inner
            .backend
            .registry_list(self.inner.keys.registry())
            .await?
        {
            let config: ConsumerGroupConfig =
                serde_json::from_str(&json).map_err(|e| StreamError::Decode {
                    what: format!("registry entry of group `{name}`"),
                    message: e.to_string(),
                })?;
            out.push(config);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Time from now until `next`, if it is in the future.
pub(crate) fn until(next: Instant) -> Duration {
    next.saturating_duration_since(Instant::now())
}

#[async_trait]
impl<B: StreamBackend> StreamManager for Manager<B> {
    fn consumer_id(&self) -> &str {
        Self::consumer_id(self)
    }

    async fn initialize(&self) -> Result<()> {
        Self::initialize(self).await
    }

    async fn create_consumer_group(&self, config: &ConsumerGroupConfig) -> Result<()> {
        Self::create_consumer_group(self, config).await
    }

    async fn read_messages(
        &self,
        group_name: &str,
        count: Option<usize>,
        block: Option<Duration>,
    ) -> Result<Vec<StreamMessage>> {
        Self::read_messages(self, group_name, count, block).await
    }

    async fn send_message(
        &self,
        stream: &str,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String> {
        Self::send_message(self, stream, data, max_len).await
    }

    async fn send_batch(
        &self,
        stream: &str,
        items: Vec<Value>,
        max_len: Option<u64>,
    ) -> Result<Vec<String>> {
        Self::send_batch(self, stream, items, max_len).await
    }

    async fn acknowledge(&self, message: &StreamMessage, group_name: &str) -> Result<bool> {
        Self::acknowledge(self, message, group_name).await
    }

    async fn acknowledge_many(&self, messages: &[StreamMessage], group_name: &str) -> Result<u64> {
        Self::acknowledge_many(self, messages, group_name).await
    }

    async fn send_to_dlq(
        &self,
        message: &StreamMessage,
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<String> {
        Self::send_to_dlq(self, message, reason, group_name).await
    }

    async fn retry_message(&self, message: &StreamMessage) -> Result<bool> {
        Self::retry_message(self, message).await
    }

    async fn claim_pending_messages(
        &self,
        group_name: &str,
        idle: Option<Duration>,
    ) -> Result<Vec<StreamMessage>> {
        Self::claim_pending_messages(self, group_name, idle).await
    }

    async fn touch(&self, message: &StreamMessage) -> Result<bool> {
        Self::touch(self, message).await
    }

    async fn release(&self, messages: &[StreamMessage]) -> Result<u64> {
        Self::release(self, messages).await
    }

    async fn get_stats(&self) -> Result<Stats> {
        Self::get_stats(self).await
    }

    async fn health(&self) -> Result<HealthReport> {
        Self::health(self).await
    }

    fn subscribe(&self, group_name: &str) -> BoxStream<'static, Result<StreamMessage>> {
        Self::subscribe(self, group_name)
    }

    async fn close(&self) -> Result<()> {
        Self::close(self).await
    }
}

//! Configuration: consumer groups, the dead-letter queue, and the manager.
//!
//! Every type has the spec's defaults, `with_*` builder methods, and serde
//! support. Durations serialize under the spec's field names and units
//! (`block_ms`, `claim_idle_ms`, `max_retention_seconds`, ...).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::StartAt;
use crate::error::{Result, StreamError};
use crate::manager::HealthThresholds;
use crate::names::{validate_name, validate_namespace};

/// A consumer group over one or more streams (the spec's `ConsumerGroupConfig`).
///
/// ```
/// use std::time::Duration;
/// use streams_core::{ConsumerGroupConfig, StreamType};
///
/// let config = ConsumerGroupConfig::new("agent_wavefront", [StreamType::AgentBus, StreamType::TaskUpdates])
///     .with_block(Duration::from_millis(5000))
///     .with_batch_size(10)
///     .with_claim_idle(Duration::from_secs(60));
/// assert_eq!(config.consumer_prefix, "consumer_");
/// assert_eq!(config.streams, ["xnai:agent_bus", "xnai:task_updates"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ConsumerGroupConfig {
    /// The group's name.
    pub name: String,
    /// The streams the group consumes. Default: none (at least one is required).
    pub streams: Vec<String>,
    /// Prefix of the consumer name used when the manager was given no explicit
    /// consumer id: the consumer is then `<consumer_prefix><pid>`. Default `"consumer_"`.
    pub consumer_prefix: String,
    /// How long `read_messages` waits for new entries when none are ready.
    /// Default 5 s. Serialized as `block_ms`.
    #[serde(rename = "block_ms", with = "millis")]
    pub block: Duration,
    /// Most messages one read returns, over all the group's streams and its
    /// retries together. Default 10.
    pub batch_size: usize,
    /// How long an entry must sit unacknowledged before another consumer may
    /// claim it. Default 60 s. Serialized as `claim_idle_ms`.
    #[serde(rename = "claim_idle_ms", with = "millis")]
    pub claim_idle: Duration,
    /// Where a newly created group starts reading. Default
    /// [`GroupStart::Beginning`], so entries sent before the group existed are
    /// delivered too.
    pub start: GroupStart,
    /// This group's retry policy (limit, backoff, cap, jitter). Default
    /// `None`: the manager's ([`ManagerConfig::retry_policy`]). Kept in the
    /// registry with the rest of the configuration, so every manager that
    /// finds the group by name applies it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            streams: Vec::new(),
            consumer_prefix: "consumer_".to_owned(),
            block: Duration::from_millis(5000),
            batch_size: 10,
            claim_idle: Duration::from_millis(60_000),
            start: GroupStart::Beginning,
            retry: None,
        }
    }
}

impl ConsumerGroupConfig {
    /// A group named `name` over `streams`, with the spec's defaults otherwise.
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        streams: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            name: name.into(),
            streams: streams.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets [`consumer_prefix`](Self::consumer_prefix).
    #[must_use]
    pub fn with_consumer_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.consumer_prefix = prefix.into();
        self
    }

    /// Sets [`block`](Self::block).
    #[must_use]
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Sets [`batch_size`](Self::batch_size).
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets [`claim_idle`](Self::claim_idle).
    #[must_use]
    pub fn with_claim_idle(mut self, claim_idle: Duration) -> Self {
        self.claim_idle = claim_idle;
        self
    }

    /// Sets [`start`](Self::start).
    #[must_use]
    pub fn with_start(mut self, start: GroupStart) -> Self {
        self.start = start;
        self
    }

    /// Gives the group a retry policy of its own ([`retry`](Self::retry)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{ConsumerGroupConfig, RetryPolicy};
    ///
    /// let patient = ConsumerGroupConfig::new("indexers", ["docs"])
    ///     .with_retry(RetryPolicy::new(10, Duration::from_secs(5), Duration::from_secs(600)));
    /// assert_eq!(patient.retry.unwrap().limit, 10);
    /// ```
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Checks names and ranges.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`] for a bad group or stream name,
    /// [`StreamError::Config`] for no streams, a repeated stream or a zero batch size.
    pub fn validate(&self) -> Result<()> {
        validate_name("group", &self.name)?;
        if self.streams.is_empty() {
            return Err(StreamError::config(format!(
                "consumer group `{}` has no streams",
                self.name
            )));
        }
        for (i, s) in self.streams.iter().enumerate() {
            validate_name("stream", s)?;
            if self.streams[..i].contains(s) {
                return Err(StreamError::config(format!(
                    "consumer group `{}` lists stream `{s}` twice",
                    self.name
                )));
            }
        }
        if self.batch_size == 0 {
            return Err(StreamError::config(format!(
                "consumer group `{}` has batch_size 0",
                self.name
            )));
        }
        if let Some(policy) = &self.retry {
            policy.validate()?;
        }
        Ok(())
    }
}

/// Where a new consumer group starts reading a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GroupStart {
    /// From the first entry still in the stream.
    #[default]
    Beginning,
    /// Only entries added after the group is created.
    New,
}

impl GroupStart {
    /// Where the backend starts the group.
    pub(crate) fn start_at(self) -> StartAt {
        match self {
            Self::Beginning => StartAt::Beginning,
            Self::New => StartAt::End,
        }
    }
}

/// How dead-letter streams are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DlqLayout {
    /// One dead-letter stream for everything, named `dlq_prefix` (`xnai:dlq`).
    #[default]
    Shared,
    /// One dead-letter stream per source stream, `<dlq_prefix>:{<stream>}`, in the
    /// source stream's Redis Cluster slot, so a dead-letter move is one atomic script.
    PerStream,
}

/// Retry and dead-letter policy (the spec's `DLQConfig`).
///
/// The project's own retry settings (the backoff cap, jitter and the key
/// prefix of retry schedules) are in [`RetryConfig`].
///
/// ```
/// use std::time::Duration;
/// use streams_core::DlqConfig;
///
/// let dlq = DlqConfig::default();
/// assert_eq!(dlq.retry_limit, 3);
/// assert_eq!(dlq.retry_backoff, Duration::from_secs(60));
/// assert_eq!(dlq.dlq_prefix, "xnai:dlq");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DlqConfig {
    /// Whether failed messages may be dead-lettered. Default `true`. When
    /// `false`, `send_to_dlq` fails with [`StreamError::DlqDisabled`] and the
    /// message stays pending; nothing is dropped.
    pub enabled: bool,
    /// How long dead-letter entries are kept (trimmed by age, approximately,
    /// by a dead-letter write at most once a second per stream, or once
    /// per tenth of this when that is shorter). Default 24 h.
    /// Serialized as `max_retention_seconds`.
    #[serde(rename = "max_retention_seconds", with = "seconds")]
    pub max_retention: Duration,
    /// How many times a message may be retried. Default 3.
    pub retry_limit: u32,
    /// Base delay of the exponential backoff. Default 60 s.
    /// Serialized as `retry_backoff_seconds`.
    #[serde(rename = "retry_backoff_seconds", with = "seconds")]
    pub retry_backoff: Duration,
    /// Name (or prefix, with [`DlqLayout::PerStream`]) of the dead-letter stream.
    /// Default `"xnai:dlq"`.
    pub dlq_prefix: String,
    /// Approximate maximum length of each dead-letter stream. Default 10 000.
    pub max_len: u64,
    /// Shared or per-stream dead-letter streams. Default [`DlqLayout::Shared`].
    pub layout: DlqLayout,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_retention: Duration::from_secs(86_400),
            retry_limit: 3,
            retry_backoff: Duration::from_secs(60),
            dlq_prefix: "xnai:dlq".to_owned(),
            max_len: 10_000,
            layout: DlqLayout::Shared,
        }
    }
}

impl DlqConfig {
    /// Sets [`enabled`](Self::enabled).
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets [`max_retention`](Self::max_retention).
    #[must_use]
    pub fn with_max_retention(mut self, max_retention: Duration) -> Self {
        self.max_retention = max_retention;
        self
    }

    /// Sets [`retry_limit`](Self::retry_limit).
    #[must_use]
    pub fn with_retry_limit(mut self, retry_limit: u32) -> Self {
        self.retry_limit = retry_limit;
        self
    }

    /// Sets [`retry_backoff`](Self::retry_backoff).
    #[must_use]
    pub fn with_retry_backoff(mut self, retry_backoff: Duration) -> Self {
        self.retry_backoff = retry_backoff;
        self
    }

    /// Sets [`dlq_prefix`](Self::dlq_prefix).
    #[must_use]
    pub fn with_dlq_prefix(mut self, dlq_prefix: impl Into<String>) -> Self {
        self.dlq_prefix = dlq_prefix.into();
        self
    }

    /// Sets [`max_len`](Self::max_len).
    #[must_use]
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// Sets [`layout`](Self::layout).
    #[must_use]
    pub fn with_layout(mut self, layout: DlqLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Checks ranges and names.
    ///
    /// # Errors
    /// [`StreamError::Config`] or [`StreamError::InvalidName`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        validate_name("stream", &self.dlq_prefix)?;
        if self.max_len == 0 {
            return Err(StreamError::config("dlq max_len must be at least 1"));
        }
        Ok(())
    }
}

/// The project's own retry settings, beside the spec's [`DlqConfig`]
/// (which holds the retry limit and the base backoff).
///
/// ```
/// use std::time::Duration;
/// use streams_core::RetryConfig;
///
/// let retry = RetryConfig::default().with_jitter(0.2);
/// assert_eq!(retry.backoff_cap, Duration::from_secs(3600));
/// assert_eq!(retry.key_prefix, "xnai:retry");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Upper bound of the backoff delay. Default 1 h.
    /// Serialized as `backoff_cap_seconds`.
    #[serde(rename = "backoff_cap_seconds", with = "seconds")]
    pub backoff_cap: Duration,
    /// Random extra delay, as a fraction of the backoff (`0.0..=1.0`), added to
    /// spread retries of many messages that failed together. It only ever
    /// lengthens the delay. Default `0.0`.
    pub jitter: f64,
    /// Prefix of the per-group retry keys. Default `"xnai:retry"`.
    pub key_prefix: String,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            backoff_cap: Duration::from_secs(3600),
            jitter: 0.0,
            key_prefix: "xnai:retry".to_owned(),
        }
    }
}

impl RetryConfig {
    /// Sets [`backoff_cap`](Self::backoff_cap).
    #[must_use]
    pub fn with_backoff_cap(mut self, backoff_cap: Duration) -> Self {
        self.backoff_cap = backoff_cap;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`key_prefix`](Self::key_prefix).
    #[must_use]
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Checks ranges and names.
    ///
    /// # Errors
    /// [`StreamError::Config`] or [`StreamError::InvalidName`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        validate_name("stream", &self.key_prefix)?;
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(StreamError::config(format!(
                "retry jitter must be within 0.0..=1.0, got {}",
                self.jitter
            )));
        }
        Ok(())
    }
}

/// The retry policy in effect: how often, and how long to wait.
///
/// ```
/// use std::time::Duration;
/// use streams_core::RetryPolicy;
///
/// let policy = RetryPolicy::new(3, Duration::from_secs(60), Duration::from_secs(3600));
/// // backoff(n) = min(cap, base * 2^n)
/// assert_eq!(policy.backoff(0), Duration::from_secs(60));
/// assert_eq!(policy.backoff(2), Duration::from_secs(240));
/// assert_eq!(policy.backoff(30), Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// How many times a message may be retried.
    pub limit: u32,
    /// Base delay of the exponential backoff. Serialized as `backoff_ms`.
    #[serde(rename = "backoff_ms", with = "millis")]
    pub backoff: Duration,
    /// Upper bound of the delay. Serialized as `cap_ms`.
    #[serde(rename = "cap_ms", with = "millis")]
    pub cap: Duration,
    /// Random extra delay, as a fraction of the backoff (0.0 to 1.0).
    #[serde(default)]
    pub jitter: f64,
}

impl RetryPolicy {
    /// A policy without jitter.
    pub fn new(limit: u32, backoff: Duration, cap: Duration) -> Self {
        Self {
            limit,
            backoff,
            cap,
            jitter: 0.0,
        }
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Checks that the jitter is a fraction.
    ///
    /// # Errors
    /// [`StreamError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(StreamError::config(format!(
                "retry jitter must be within 0.0..=1.0, got {}",
                self.jitter
            )));
        }
        Ok(())
    }

    /// The delay before retry number `retry_count + 1`:
    /// `min(cap, backoff * 2^retry_count)`, without jitter.
    pub fn backoff(&self, retry_count: u32) -> Duration {
        let factor = 1u32.checked_shl(retry_count).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.cap)
    }
}

/// Everything a [`Manager`](crate::Manager) needs besides its backend.
///
/// ```
/// use streams_core::{DlqConfig, ManagerConfig};
///
/// let config = ManagerConfig::default()
///     .with_consumer_id("cline-1")
///     .with_namespace("tenant-a")
///     .with_dlq(DlqConfig::default().with_retry_limit(5));
/// assert_eq!(config.max_message_bytes, 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// This process's consumer name. Default: `consumer_<pid>` (a second
    /// manager in the same process gets `consumer_<pid>_2`, and so on, so two
    /// managers of one process never share a pending list by accident).
    ///
    /// Give workers a name that is stable across restarts and unique among
    /// live workers. A restarted worker then resumes its own unfinished work
    /// at once; with the default, which changes on every start, that work
    /// waits for a claim. Processes in different containers can have the
    /// same pid (often 1), and two live workers sharing one name share one
    /// pending list: each may take the other's in-flight work as its own.
    pub consumer_id: Option<String>,
    /// Prefix for every key, so tenants or test cases can share one server:
    /// a valid name without `:` (one key segment). Default: none.
    pub namespace: Option<String>,
    /// Retry and dead-letter policy (the spec's `DLQConfig`).
    pub dlq: DlqConfig,
    /// The backoff cap, jitter and key prefix of retries.
    pub retry: RetryConfig,
    /// Trim applied by `send_message` when it is given no `max_len`
    /// (approximate `MAXLEN ~`). Default: none, streams are never trimmed on
    /// send unless asked, because trimming drops entries a lagging group has
    /// not read yet.
    pub default_max_len: Option<u64>,
    /// Largest accepted encoded payload (the `data` field). Default 1 MiB.
    pub max_message_bytes: usize,
    /// How often reads check for due retries besides the ones this manager
    /// knows about. Default 500 ms. Serialized as `promote_interval_ms`.
    #[serde(rename = "promote_interval_ms", with = "millis")]
    pub promote_interval: Duration,
    /// `COUNT` of each `XAUTOCLAIM` page. Default 100.
    pub claim_page_size: usize,
    /// How long a manager relies on what other processes may change before
    /// reading it again: a group's registered configuration (a stream added,
    /// partitions grown) and partition counts. Default 10 s. Serialized as
    /// `refresh_interval_ms`.
    #[serde(rename = "refresh_interval_ms", with = "millis")]
    pub refresh_interval: Duration,
    /// The hash holding every group's configuration. Default `"xnai:groups"`.
    pub registry_key: String,
    /// When `health` reports degraded. Default: [`HealthThresholds::default`]
    /// (abandoned work waiting to be claimed, nothing else).
    pub health: HealthThresholds,
    /// How durable a send must be before `send_message` and `send_batch`
    /// return its ids. Default: none, a send returns once the server has
    /// the entry. See [`Durability`].
    pub durability: Option<Durability>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            consumer_id: None,
            namespace: None,
            dlq: DlqConfig::default(),
            retry: RetryConfig::default(),
            default_max_len: None,
            max_message_bytes: 1024 * 1024,
            promote_interval: Duration::from_millis(500),
            claim_page_size: 100,
            refresh_interval: Duration::from_secs(10),
            registry_key: "xnai:groups".to_owned(),
            health: HealthThresholds::default(),
            durability: None,
        }
    }
}

impl ManagerConfig {
    /// The defaults, with the consumer id from `XNAI_CONSUMER_ID` and the
    /// namespace from `XNAI_NAMESPACE` when they are set: how a worker
    /// deployed many times gets its name from its environment.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`] or [`StreamError::Config`] for a bad
    /// value in either variable.
    pub fn from_env() -> Result<Self> {
        let mut config = Self::default();
        if let Ok(id) = std::env::var("XNAI_CONSUMER_ID") {
            config = config.with_consumer_id(id);
        }
        if let Ok(ns) = std::env::var("XNAI_NAMESPACE") {
            config = config.with_namespace(ns);
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets [`consumer_id`](Self::consumer_id).
    #[must_use]
    pub fn with_consumer_id(mut self, consumer_id: impl Into<String>) -> Self {
        self.consumer_id = Some(consumer_id.into());
        self
    }

    /// Sets [`namespace`](Self::namespace).
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets [`dlq`](Self::dlq).
    #[must_use]
    pub fn with_dlq(mut self, dlq: DlqConfig) -> Self {
        self.dlq = dlq;
        self
    }

    /// Sets [`retry`](Self::retry).
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// The retry policy of the [`dlq`](Self::dlq) and [`retry`](Self::retry) settings.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new(
            self.dlq.retry_limit,
            self.dlq.retry_backoff,
            self.retry.backoff_cap,
        )
        .with_jitter(self.retry.jitter)
    }

    /// Sets [`default_max_len`](Self::default_max_len).
    #[must_use]
    pub fn with_default_max_len(mut self, max_len: Option<u64>) -> Self {
        self.default_max_len = max_len;
        self
    }

    /// Sets [`max_message_bytes`](Self::max_message_bytes).
    #[must_use]
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets [`promote_interval`](Self::promote_interval).
    #[must_use]
    pub fn with_promote_interval(mut self, interval: Duration) -> Self {
        self.promote_interval = interval;
        self
    }

    /// Sets [`refresh_interval`](Self::refresh_interval).
    #[must_use]
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Sets [`claim_page_size`](Self::claim_page_size).
    #[must_use]
    pub fn with_claim_page_size(mut self, size: usize) -> Self {
        self.claim_page_size = size;
        self
    }

    /// Sets [`health`](Self::health).
    #[must_use]
    pub fn with_health_thresholds(mut self, thresholds: HealthThresholds) -> Self {
        self.health = thresholds;
        self
    }

    /// Sets [`registry_key`](Self::registry_key).
    #[must_use]
    pub fn with_registry_key(mut self, key: impl Into<String>) -> Self {
        self.registry_key = key.into();
        self
    }

    /// Sets [`durability`](Self::durability): every send waits for it.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`StreamError::Config`] or [`StreamError::InvalidName`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if let Some(id) = &self.consumer_id {
            validate_name("consumer", id)?;
        }
        if let Some(ns) = &self.namespace {
            validate_namespace(ns)?;
        }
        validate_name("stream", &self.registry_key)?;
        self.dlq.validate()?;
        self.retry.validate()?;
        let prefixes = [
            ("dlq_prefix", self.dlq.dlq_prefix.as_str()),
            ("retry key_prefix", self.retry.key_prefix.as_str()),
            ("registry_key", self.registry_key.as_str()),
        ];
        for (i, (a, x)) in prefixes.iter().enumerate() {
            for (b, y) in &prefixes[i + 1..] {
                if x == y {
                    return Err(StreamError::config(format!(
                        "{a} and {b} are both `{x}`: they must differ"
                    )));
                }
            }
            if self.namespace.as_deref() == Some(*x) {
                return Err(StreamError::config(format!(
                    "the namespace `{x}` equals the {a}: they must differ"
                )));
            }
        }
        if self.max_message_bytes == 0 {
            return Err(StreamError::config("max_message_bytes must be at least 1"));
        }
        if self.claim_page_size == 0 {
            return Err(StreamError::config("claim_page_size must be at least 1"));
        }
        if self.default_max_len == Some(0) {
            return Err(StreamError::config("default_max_len must be at least 1"));
        }
        if let Some(durability) = &self.durability {
            durability.validate()?;
        }
        self.health.validate()
    }
}

/// How durable a send must be before it returns: on how many replicas,
/// and whether written to disk (fsynced), within how long.
///
/// A send that is not confirmed in time fails with
/// [`StreamError::DurabilityNotConfirmed`], which carries the ids: the
/// entries are on the server, but a failover before they reach the
/// replicas may lose them. Sending them again would duplicate them if they
/// survive; the caller decides.
///
/// On Redis, the entries and a `WAIT` (or, with [`fsync`](Self::fsync),
/// `WAITAOF`, Redis 7.2 and newer; refused before anything is written on
/// older servers) go in one pipeline on a connection of their own, so a
/// slow replica holds up only the durable sends. A backend without
/// [`Feature::DurableSends`](crate::backend::Feature::DurableSends) (the
/// memory backend, which has no replicas; a Redis backend built on the
/// caller's connection, which cannot open one) has
/// [`Manager::new`](crate::Manager::new) refused with
/// [`StreamError::Unsupported`]. A batch
/// the server refuses part-way (out of memory, say) fails with that
/// refusal, as a plain `send_batch` does: the entries before the refused
/// one may be written, and their ids are not known.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use streams_core::{Durability, ManagerConfig};
///
/// let config = ManagerConfig::default()
///     .with_durability(Durability::replicas(1).with_timeout(Duration::from_millis(500)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Durability {
    /// Replicas that must have the entries (`WAIT numreplicas`). Default 1.
    pub replicas: u32,
    /// Also fsynced to the append-only file: on the server itself and on
    /// each of those replicas (`WAITAOF 1 numreplicas`). Default: no.
    pub fsync: bool,
    /// How long to wait for the confirmations; at least 1 ms, at most
    /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT). Default 1 s. Serialized as
    /// `timeout_ms`.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            replicas: 1,
            fsync: false,
            timeout: Duration::from_secs(1),
        }
    }
}

impl Durability {
    /// The longest [`timeout`](Self::timeout) accepted: 1 hour.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

    /// On `replicas` replicas, not fsynced, within 1 s.
    pub fn replicas(replicas: u32) -> Self {
        Self {
            replicas,
            ..Self::default()
        }
    }

    /// Sets [`fsync`](Self::fsync).
    #[must_use]
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout in whole milliseconds, at least 1 (0 means "forever" to
    /// Redis).
    pub fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`StreamError::Config`] when it asks for nothing (no replica and no
    /// fsync) or its timeout is under 1 ms or over [`MAX_TIMEOUT`](Self::MAX_TIMEOUT).
    pub fn validate(&self) -> Result<()> {
        if self.replicas == 0 && !self.fsync {
            return Err(StreamError::config(
                "durability asks for nothing: set replicas to at least 1, or fsync",
            ));
        }
        if self.timeout < Duration::from_millis(1) {
            return Err(StreamError::config(
                "durability timeout must be at least 1 ms",
            ));
        }
        if self.timeout > Self::MAX_TIMEOUT {
            return Err(StreamError::config(
                "durability timeout must be at most 1 hour (a send never waits forever)",
            ));
        }
        Ok(())
    }
}

/// `Duration` as whole milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `Duration` as seconds: a whole number when it is one, else a fraction.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_must_ask_for_something_within_a_timeout() {
        assert!(Durability::replicas(1).validate().is_ok());
        assert!(Durability::replicas(0).with_fsync(true).validate().is_ok());
        assert!(Durability::replicas(0).validate().is_err());
        assert!(
            Durability::replicas(1)
                .with_timeout(Duration::from_micros(10))
                .validate()
                .is_err()
        );
        // "Forever" is not a timeout: Redis would refuse it after the write.
        assert!(
            Durability::replicas(1)
                .with_timeout(Duration::MAX)
                .validate()
                .is_err()
        );
        let bad = ManagerConfig::default().with_durability(Durability::replicas(0));
        assert!(bad.validate().is_err());
        // Redis reads a WAIT timeout of 0 as "forever": never sent.
        let d = Durability::replicas(1).with_timeout(Duration::from_micros(1500));
        assert_eq!(d.timeout_ms(), 1);
        // Configuration files name the timeout in milliseconds.
        let config: ManagerConfig =
            serde_json::from_str(r#"{"durability": {"replicas": 2, "timeout_ms": 250}}"#).unwrap();
        assert_eq!(
            config.durability,
            Some(Durability::replicas(2).with_timeout(Duration::from_millis(250)))
        );
        assert_eq!(ManagerConfig::default().durability, None);
    }

    #[test]
    fn spec_defaults() {
        let g = ConsumerGroupConfig::default();
        assert_eq!(g.consumer_prefix, "consumer_");
        assert_eq!(g.block, Duration::from_millis(5000));
        assert_eq!(g.batch_size, 10);
        assert_eq!(g.claim_idle, Duration::from_millis(60_000));
        let d = DlqConfig::default();
        assert!(d.enabled);
        assert_eq!(d.max_retention, Duration::from_secs(86_400));
        assert_eq!(d.retry_limit, 3);
        assert_eq!(d.retry_backoff, Duration::from_secs(60));
        assert_eq!(d.dlq_prefix, "xnai:dlq");
        assert_eq!(d.max_len, 10_000);
    }

    #[test]
    fn group_config_json_uses_spec_field_names() {
        let g = ConsumerGroupConfig::new("g", ["a", "b"]);
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["block_ms"], 5000);
        assert_eq!(v["claim_idle_ms"], 60_000);
        assert_eq!(v["batch_size"], 10);
        assert_eq!(v["start"], "beginning");
        let back: ConsumerGroupConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, g);
        let partial: ConsumerGroupConfig =
            serde_json::from_str(r#"{"name":"x","streams":["s"]}"#).unwrap();
        assert_eq!(partial.block, Duration::from_millis(5000));
    }

    #[test]
    fn dlq_config_json_uses_spec_units() {
        let d = DlqConfig::default().with_retry_backoff(Duration::from_millis(250));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["max_retention_seconds"], 86_400);
        assert_eq!(v["retry_backoff_seconds"], 0.25);
        let back: DlqConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
        let r = RetryConfig::default().with_backoff_cap(Duration::from_millis(1500));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["backoff_cap_seconds"], 1.5);
        assert_eq!(serde_json::from_value::<RetryConfig>(v).unwrap(), r);
        let m = ManagerConfig::default().with_retry(r);
        assert_eq!(m.retry_policy().cap, Duration::from_millis(1500));
        assert_eq!(m.retry_policy().limit, 3);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let d = RetryPolicy::new(3, Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(d.backoff(0), Duration::from_millis(100));
        assert_eq!(d.backoff(1), Duration::from_millis(200));
        assert_eq!(d.backoff(3), Duration::from_millis(800));
        assert_eq!(d.backoff(4), Duration::from_secs(1));
        assert_eq!(d.backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn validation() {
        assert!(
            ConsumerGroupConfig::new("g", Vec::<String>::new())
                .validate()
                .is_err()
        );
        assert!(
            ConsumerGroupConfig::new("g", ["a", "a"])
                .validate()
                .is_err()
        );
        assert!(
            ConsumerGroupConfig::new("g", ["a"])
                .with_batch_size(0)
                .validate()
                .is_err()
        );
        assert!(ConsumerGroupConfig::new("g g", ["a"]).validate().is_err());
        assert!(ConsumerGroupConfig::new("g", ["a"]).validate().is_ok());
        assert!(RetryConfig::default().with_jitter(1.5).validate().is_err());
        assert!(
            ManagerConfig::default()
                .with_retry(RetryConfig::default().with_key_prefix("xnai:dlq"))
                .validate()
                .is_err()
        );
        assert!(
            ManagerConfig::default()
                .with_namespace("a:b")
                .validate()
                .is_err()
        );
        assert!(
            ManagerConfig::default()
                .with_consumer_id("a b")
                .validate()
                .is_err()
        );
        assert!(ManagerConfig::default().validate().is_ok());
    }
}

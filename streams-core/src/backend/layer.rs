//! Wrapping a backend: metrics, tracing, throttling, fault injection.
//!
//! A wrapper implements the small [`BackendLayer`] trait (the inner backend,
//! and optionally a hook around every call) and [`Layered`] turns it into a
//! [`StreamBackend`]: the forwarding of every primitive is written once,
//! here.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{
    Ack, Add, AddMany, AutoClaim, AutoClaimPage, Capabilities, ConsumerInfo, ConsumerRef,
    ConsumerRemoval, CreateGroup, DurableWrite, Entry, EntryId, GroupInfo, GroupRegistry,
    KeyEntries, Lease, Move, MoveOutcome, PendingEntry, PendingQuery, Probe, Promotion, RangeQuery,
    ReadGroup, ScheduleKeys, ServerInfo, StreamBackend, Transfer, TransferOutcome, Trim,
};
use crate::config::Durability;
use crate::error::Result;

/// What a call through a layer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call<'a> {
    /// The primitive, by its method name: `"add"`, `"read_group"`, ...
    pub operation: &'static str,
    /// The key it works on, when there is one (the first, for reads over
    /// several keys).
    pub key: Option<&'a str>,
    /// The group, when there is one.
    pub group: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// A call of `operation`.
    pub const fn new(operation: &'static str) -> Self {
        Self {
            operation,
            key: None,
            group: None,
        }
    }

    /// Names the key.
    #[must_use]
    pub const fn on_key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    /// Names the group.
    #[must_use]
    pub const fn in_group(mut self, group: &'a str) -> Self {
        self.group = Some(group);
        self
    }
}

/// A wrapper around a backend. Only [`inner`](Self::inner) is required;
/// [`around`](Self::around) sees every call.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use futures::future::BoxFuture;
/// use streams_core::backend::{BackendLayer, Call, Layered};
/// use streams_core::{Manager, ManagerConfig, Result};
/// use streams_memory::MemoryBackend;
///
/// /// Counts the calls that reach the backend.
/// #[derive(Debug, Default)]
/// struct Counting { inner: MemoryBackend, calls: AtomicU64 }
///
/// impl BackendLayer for Counting {
///     type Inner = MemoryBackend;
///     fn inner(&self) -> &MemoryBackend { &self.inner }
///     fn around<'a, T: Send + 'a>(&'a self, _call: Call<'a>, op: BoxFuture<'a, Result<T>>) -> BoxFuture<'a, Result<T>> {
///         self.calls.fetch_add(1, Ordering::Relaxed);
///         op
///     }
/// }
///
/// let manager = Manager::new(Layered(Counting::default()), ManagerConfig::default())?;
/// manager.send_message("jobs", serde_json::json!({"n": 1}), None).await?;
/// assert!(manager.backend().0.calls.load(Ordering::Relaxed) >= 1);
/// # Ok(()) }
/// ```
pub trait BackendLayer: Send + Sync + Debug + 'static {
    /// The wrapped backend.
    type Inner: StreamBackend + ?Sized;

    /// The wrapped backend.
    fn inner(&self) -> &Self::Inner;

    /// Runs one call. The default runs it as it is; a layer may time it,
    /// trace it, delay it, or fail it instead (a fault injector returns an
    /// error future without polling `op`).
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let _ = call;
        op
    }

    /// The capabilities of the layered backend. The default is the inner
    /// backend's; a layer that hides a feature (to test a fallback) says so here.
    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }
}

/// A [`BackendLayer`] as a backend.
#[derive(Debug, Clone, Default)]
pub struct Layered<L>(pub L);

#[async_trait]
impl<L: BackendLayer> GroupRegistry for Layered<L> {
    async fn registry_put(&self, key: &str, group: &str, config: &str) -> Result<()> {
        let call = Call::new("registry_put").on_key(key).in_group(group);
        let op = self.0.inner().registry_put(key, group, config);
        self.0.around(call, op).await
    }

    async fn registry_get(&self, key: &str, group: &str) -> Result<Option<String>> {
        let call = Call::new("registry_get").on_key(key).in_group(group);
        let op = self.0.inner().registry_get(key, group);
        self.0.around(call, op).await
    }

    async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>> {
        let call = Call::new("registry_list").on_key(key);
        self.0.around(call, self.0.inner().registry_list(key)).await
    }
}

#[async_trait]
impl<L: BackendLayer> StreamBackend for Layered<L> {
    fn name(&self) -> &'static str {
        self.0.inner().name()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    fn entry_time(&self, id: &EntryId) -> Option<std::time::SystemTime> {
        self.0.inner().entry_time(id)
    }

    async fn server_info(&self) -> Result<ServerInfo> {
        let op = self.0.inner().server_info();
        self.0.around(Call::new("server_info"), op).await
    }

    async fn ping(&self) -> Result<()> {
        self.0
            .around(Call::new("ping"), self.0.inner().ping())
            .await
    }

    async fn write_probe(&self, probe: Probe<'_>) -> Result<()> {
        let call = Call::new("write_probe").on_key(probe.key);
        self.0.around(call, self.0.inner().write_probe(probe)).await
    }

    async fn create_group(&self, create: CreateGroup<'_>) -> Result<bool> {
        let call = Call::new("create_group")
            .on_key(create.key)
            .in_group(create.group);
        let op = self.0.inner().create_group(create.clone());
        self.0.around(call, op).await
    }

    async fn destroy_group(&self, key: &str, group: &str) -> Result<bool> {
        let call = Call::new("destroy_group").on_key(key).in_group(group);
        let op = self.0.inner().destroy_group(key, group);
        self.0.around(call, op).await
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<u64> {
        let mut call = Call::new("delete_keys");
        if let Some(first) = keys.first() {
            call = call.on_key(first);
        }
        self.0.around(call, self.0.inner().delete_keys(keys)).await
    }

    async fn add(&self, add: Add) -> Result<EntryId> {
        let key = add.key.clone();
        let op = self.0.inner().add(add);
        self.0.around(Call::new("add").on_key(&key), op).await
    }

    async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<EntryId>> {
        let key = adds.first().map(|a| a.key.clone());
        let mut call = Call::new("add_batch");
        if let Some(key) = &key {
            call = call.on_key(key);
        }
        let op = self.0.inner().add_batch(adds);
        self.0.around(call, op).await
    }

    async fn add_many(&self, many: AddMany<'_>) -> Result<Vec<EntryId>> {
        let key = many.key;
        let op = self.0.inner().add_many(many);
        let call = Call::new("add_many").on_key(key);
        self.0.around(call, op).await
    }

    async fn add_durable(&self, many: AddMany<'_>, durability: Durability) -> Result<DurableWrite> {
        let key = many.key;
        let op = self.0.inner().add_durable(many, durability);
        let call = Call::new("add_durable").on_key(key);
        self.0.around(call, op).await
    }

    async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
        let mut call = Call::new("read_group").in_group(read.group);
        if let Some(key) = read.keys.first() {
            call = call.on_key(key);
        }
        let op = self.0.inner().read_group(read.clone());
        self.0.around(call, op).await
    }

    async fn ack(&self, ack: Ack<'_>) -> Result<u64> {
        let call = Call::new("ack").on_key(ack.key).in_group(ack.group);
        let op = self.0.inner().ack(ack.clone());
        self.0.around(call, op).await
    }

    async fn auto_claim(&self, claim: AutoClaim<'_>) -> Result<AutoClaimPage> {
        let call = Call::new("auto_claim")
            .on_key(claim.key)
            .in_group(claim.group);
        let op = self.0.inner().auto_claim(claim.clone());
        self.0.around(call, op).await
    }

    async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>> {
        let call = Call::new("pending").on_key(query.key).in_group(query.group);
        let op = self.0.inner().pending(query.clone());
        self.0.around(call, op).await
    }

    async fn renew(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
        let call = Call::new("renew").on_key(lease.key).in_group(lease.group);
        let op = self.0.inner().renew(lease.clone());
        self.0.around(call, op).await
    }

    async fn redeliver(&self, lease: Lease<'_>) -> Result<KeyEntries> {
        let call = Call::new("redeliver")
            .on_key(lease.key)
            .in_group(lease.group);
        let op = self.0.inner().redeliver(lease.clone());
        self.0.around(call, op).await
    }

    async fn hand_back(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
        let call = Call::new("hand_back")
            .on_key(lease.key)
            .in_group(lease.group);
        let op = self.0.inner().hand_back(lease.clone());
        self.0.around(call, op).await
    }

    async fn move_entry(&self, mv: Move) -> Result<MoveOutcome> {
        let (key, group) = (mv.source.clone(), mv.group.clone());
        let op = self.0.inner().move_entry(mv);
        let call = Call::new("move_entry").on_key(&key).in_group(&group);
        self.0.around(call, op).await
    }

    async fn move_entries(&self, moves: Vec<Move>) -> Result<Vec<Result<MoveOutcome>>> {
        let first = moves.first().map(|m| (m.source.clone(), m.group.clone()));
        let mut call = Call::new("move_entries");
        if let Some((key, group)) = &first {
            call = call.on_key(key).in_group(group);
        }
        let op = self.0.inner().move_entries(moves);
        self.0.around(call, op).await
    }

    async fn promote_due(
        &self,
        schedules: &[ScheduleKeys],
        limit: usize,
    ) -> Result<Vec<Promotion>> {
        let mut call = Call::new("promote_due");
        if let Some(first) = schedules.first() {
            call = call.on_key(&first.schedule);
        }
        let op = self.0.inner().promote_due(schedules, limit);
        self.0.around(call, op).await
    }

    async fn schedule_len(&self, key: &str) -> Result<u64> {
        let op = self.0.inner().schedule_len(key);
        self.0
            .around(Call::new("schedule_len").on_key(key), op)
            .await
    }

    async fn trim(&self, key: &str, trim: Trim) -> Result<u64> {
        let op = self.0.inner().trim(key, trim);
        self.0.around(Call::new("trim").on_key(key), op).await
    }

    async fn len(&self, key: &str) -> Result<u64> {
        let op = self.0.inner().len(key);
        self.0.around(Call::new("len").on_key(key), op).await
    }

    async fn range(&self, query: RangeQuery<'_>) -> Result<Vec<Entry>> {
        let call = Call::new("range").on_key(query.key);
        let op = self.0.inner().range(query.clone());
        self.0.around(call, op).await
    }

    async fn transfer(&self, transfer: Transfer) -> Result<TransferOutcome> {
        let key = transfer.source.clone();
        let op = self.0.inner().transfer(transfer);
        self.0.around(Call::new("transfer").on_key(&key), op).await
    }

    async fn delete_entries(&self, key: &str, ids: &[EntryId]) -> Result<Vec<EntryId>> {
        let op = self.0.inner().delete_entries(key, ids);
        self.0
            .around(Call::new("delete_entries").on_key(key), op)
            .await
    }

    async fn stream_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let op = self.0.inner().stream_keys(prefix);
        self.0
            .around(Call::new("stream_keys").on_key(prefix), op)
            .await
    }

    async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>> {
        let op = self.0.inner().groups(key);
        self.0.around(Call::new("groups").on_key(key), op).await
    }

    async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        let call = Call::new("consumers").on_key(key).in_group(group);
        let op = self.0.inner().consumers(key, group);
        self.0.around(call, op).await
    }

    async fn delete_consumer(&self, consumer: ConsumerRef<'_>) -> Result<ConsumerRemoval> {
        let call = Call::new("delete_consumer")
            .on_key(consumer.key)
            .in_group(consumer.group);
        let op = self.0.inner().delete_consumer(consumer);
        self.0.around(call, op).await
    }

    async fn close(&self) -> Result<()> {
        self.0
            .around(Call::new("close"), self.0.inner().close())
            .await
    }
}

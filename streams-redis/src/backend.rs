//! [`RedisBackend`]: constructors, and [`StreamBackend`] over Redis commands.
//! The commands that need atomicity run as Lua scripts (`scripts.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::aio::ConnectionManager;
use redis::{Client, Cmd, Value};
use streams_core::backend::{
    Ack, Add, AddMany, AutoClaim, AutoClaimPage, Capabilities, ConsumerInfo, ConsumerRef,
    ConsumerRemoval, CreateGroup, DurableWrite, Entry, EntryId, Feature, GroupInfo, GroupRegistry,
    KeyEntries, Lease, Move, MoveOutcome, PendingEntry, PendingQuery, Probe, Promotion, RangeQuery,
    ReadGroup, ScheduleKeys, ServerInfo, Transfer, TransferOutcome, Trim,
};
use streams_core::{Durability, Result, StreamBackend};

use crate::commands;
use crate::config::RedisConfig;
use crate::conn::Conns;
use crate::error::{self, BACKEND, Op, bad_reply};
use crate::reply;
use crate::scripts::{self, Lua};

/// The Redis Streams backend.
///
/// Cheap to clone: clones share the connections, so one backend can serve
/// many managers (`Arc<RedisBackend>` works as well).
///
/// Ordinary commands go through one auto-reconnecting multiplexed connection
/// with the configured response timeout (default 5 s); concurrent single
/// commands share round trips (see `docs/architecture.md`, "Concurrent
/// commands share round trips"). Each blocking read runs on a dedicated
/// connection from a small pool, with a response timeout of its `BLOCK`
/// time plus [`RedisConfig::block_margin`], so acknowledgements and sends
/// are never queued behind a `BLOCK`. `TCP_NODELAY` is set on every
/// connection unless [`RedisConfig::tcp_nodelay`] is off. A producer's
/// `XADD` is never retried by the backend: a lost reply would otherwise
/// duplicate the entry.
///
/// [`close`](StreamBackend::close) closes only the idle blocking
/// connections, since other managers may share the backend; everything is
/// closed when the last clone is dropped.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> streams_core::Result<()> {
/// use streams_core::{Manager, ManagerConfig};
/// use streams_redis::RedisBackend;
///
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379").await?;
/// let manager = Manager::new(backend, ManagerConfig::default())?;
/// manager.initialize().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conns: Conns,
    pub(crate) config: RedisConfig,
    /// `host:port` or socket path, for `Debug` and logs.
    pub(crate) addr: String,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.inner.addr)
            .field("config", &self.inner.config)
            .field("idle_blocking_connections", &self.inner.conns.idle_count())
            .finish()
    }
}

impl RedisBackend {
    /// Connects to the server at `url` with the default settings.
    ///
    /// # Errors
    /// [`StreamError::Config`](streams_core::StreamError::Config) for a bad
    /// URL, [`StreamError::Connection`](streams_core::StreamError::Connection)
    /// or [`StreamError::Timeout`](streams_core::StreamError::Timeout) if the
    /// server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::from_config(RedisConfig::new(url)).await
    }

    /// Connects to `REDIS_URL`, or `redis://127.0.0.1:6379` when it is unset.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn from_env() -> Result<Self> {
        Self::from_config(RedisConfig::from_env()).await
    }

    /// Connects with the given settings.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn from_config(config: RedisConfig) -> Result<Self> {
        let connect = Op::new("connect", config.connect_timeout);
        if config.is_cluster() {
            let conns = Conns::open_cluster(&config)
                .await
                .map_err(|e| error::map(e, connect))?;
            let addr = crate::config::redact_url(&config.seeds().join(","));
            tracing::debug!(%addr, "connected to redis cluster");
            return Ok(Self::build(conns, config, addr));
        }
        let client = Client::open(config.url.as_str()).map_err(|e| error::map(e, connect))?;
        Self::from_client_with_config(client, config).await
    }

    /// Uses an existing client (its address, credentials, database and TLS
    /// settings) with the default settings (`TCP_NODELAY` on).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn from_client(client: Client) -> Result<Self> {
        Self::from_client_with_config(client, RedisConfig::default()).await
    }

    /// Uses an existing client with the given settings; `config.url` is
    /// ignored in favour of the client's address.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn from_client_with_config(client: Client, config: RedisConfig) -> Result<Self> {
        let addr = client.get_connection_info().addr().to_string();
        let conns = Conns::open(client, &config)
            .await
            .map_err(|e| error::map(e, Op::new("connect", config.connect_timeout)))?;
        tracing::debug!(%addr, "connected to redis");
        Ok(Self::build(conns, config, addr))
    }

    /// Uses an existing connection for everything, with the default settings.
    /// See [`from_connection_manager_with_config`](Self::from_connection_manager_with_config).
    pub fn from_connection_manager(conn: ConnectionManager) -> Self {
        Self::from_connection_manager_with_config(conn, RedisConfig::default())
    }

    /// Uses an existing connection for everything.
    ///
    /// A connection does not reveal how to open another one, so blocking
    /// reads cannot have connections of their own: they share this one and
    /// wait in slices of at most [`RedisConfig::shared_block_slice`]
    /// (default 50 ms), so another command waits for one slice at most. Each
    /// slice is a round trip; prefer [`from_client`](Self::from_client) for
    /// consumers that block often. The slice must be shorter than the
    /// connection's response timeout (the redis crate's default is 500 ms).
    /// `config.url` is ignored; the timeouts of `conn` apply, not those of
    /// `config` (set `config.response_timeout` to the connection's, so that
    /// timeout errors report the right duration).
    pub fn from_connection_manager_with_config(
        conn: ConnectionManager,
        config: RedisConfig,
    ) -> Self {
        let conns = Conns::shared(conn, &config);
        Self::build(conns, config, "(caller's connection)".to_owned())
    }

    fn build(conns: Conns, config: RedisConfig, addr: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                conns,
                config,
                addr,
            }),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether this backend talks to a Redis Cluster
    /// ([`RedisConfig::is_cluster`]).
    pub fn is_cluster(&self) -> bool {
        self.inner.conns.is_cluster()
    }

    /// On a cluster, refuses a command whose keys span slots before it is
    /// sent.
    pub(crate) fn check_slot(&self, cmd: &Cmd) -> Result<()> {
        if self.is_cluster() {
            crate::cluster::slot_of(cmd)?;
        }
        Ok(())
    }

    /// Deletes every key of a namespace (`<namespace>:*`: its streams, retry
    /// schedules, dead-letter streams and group registry) with `SCAN` and
    /// `UNLINK`; returns how many keys were deleted. Keys written while it
    /// runs may survive.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`](streams_core::StreamError::InvalidName)
    /// for a name that is not a valid namespace (an empty one would match
    /// other data), connection errors.
    pub async fn delete_namespace(&self, namespace: &str) -> Result<u64> {
        streams_core::validate_name("namespace", namespace)?;
        commands::delete_namespace(self, namespace).await
    }

    /// The response timeout of ordinary commands, for errors.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.config.response_timeout
    }

    /// An [`Op`] for a command on the command connection.
    pub(crate) fn op(&self, name: &'static str) -> Op<'static> {
        Op::new(name, self.timeout())
    }

    /// Sends a command on the command connection, in a pipeline with the
    /// other commands queued meanwhile (see `coalesce.rs`); returns the
    /// reply as it came, without walking it. A refusal of the command
    /// itself is an `Err`; errors nested in the reply stay values.
    pub(crate) async fn call(&self, cmd: Cmd) -> redis::RedisResult<Value> {
        match self.inner.conns.writer().send(cmd).await? {
            Value::ServerError(e) => Err(e.into()),
            v => Ok(v),
        }
    }

    /// [`call`](Self::call), with the error mapped.
    pub(crate) async fn raw(&self, cmd: Cmd, op: Op<'_>) -> Result<Value> {
        self.check_slot(&cmd)?;
        self.call(cmd).await.map_err(|e| error::map(e, op))
    }

    /// Runs a pipeline in one round trip and returns the replies of its
    /// commands after the first `skip`, as the server sent them: a refused
    /// command's reply is a [`Value::ServerError`] (the replies of the
    /// skipped commands are not looked at).
    pub(crate) async fn pipeline_replies(
        &self,
        pipe: &redis::Pipeline,
        skip: usize,
        op: Op<'_>,
    ) -> Result<Vec<Value>> {
        let count = pipe.len().saturating_sub(skip);
        let mut conn = self.inner.conns.commands();
        let replies = conn
            .req_packed_commands(pipe, skip, count)
            .await
            .map_err(|e| error::map(e, op))?;
        if replies.len() != count {
            return Err(bad_reply(
                op.name,
                format!("{} replies to {count} commands", replies.len()),
            ));
        }
        Ok(replies)
    }

    /// [`pipeline_replies`](Self::pipeline_replies), failing with the first
    /// refusal if any command was refused.
    pub(crate) async fn pipeline(
        &self,
        pipe: &redis::Pipeline,
        skip: usize,
        op: Op<'_>,
    ) -> Result<Vec<Value>> {
        let mut replies = self.pipeline_replies(pipe, skip, op).await?;
        if let Some(i) = replies
            .iter()
            .position(|v| matches!(v, Value::ServerError(_)))
        {
            if let Value::ServerError(e) = replies.swap_remove(i) {
                return Err(error::map(e.into(), op));
            }
        }
        Ok(replies)
    }

    /// Runs a script: `build` makes its `EVALSHA`. When the server does not
    /// have the script (`NOSCRIPT`: it restarted, or its scripts were
    /// flushed), nothing ran, so it is loaded and the call made once more.
    pub(crate) async fn eval(
        &self,
        lua: &'static Lua,
        op: Op<'_>,
        build: impl Fn() -> Result<Cmd>,
    ) -> Result<Value> {
        let op = op.script(lua);
        let cmd = build()?;
        self.check_slot(&cmd)?;
        match self.call(cmd).await {
            // On a cluster the script goes to the master that lacked it
            // (a promoted replica, say), with the call, in one pipeline.
            Err(e) if scripts::is_noscript(&e) && self.is_cluster() => {
                let mut pipe = redis::Pipeline::with_capacity(2);
                pipe.add_command(scripts::load(lua.source))
                    .add_command(build()?);
                let mut replies = self.pipeline(&pipe, 1, op).await?;
                replies
                    .pop()
                    .ok_or_else(|| bad_reply(op.name, "no reply to the script"))
            }
            Err(e) if scripts::is_noscript(&e) => {
                self.raw(scripts::load(lua.source), op).await?;
                self.raw(build()?, op).await
            }
            reply => reply.map_err(|e| error::map(e, op)),
        }
    }
}

/// Idle time given to handed-back entries: longer than any claim threshold.
const HANDED_BACK_IDLE: Duration = Duration::from_secs(10 * 365 * 86_400);

#[async_trait]
impl GroupRegistry for RedisBackend {
    async fn registry_put(&self, key: &str, group: &str, config: &str) -> Result<()> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key).arg(group).arg(config);
        self.raw(cmd, self.op("HSET")).await.map(drop)
    }

    async fn registry_get(&self, key: &str, group: &str) -> Result<Option<String>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(key).arg(group);
        match self.raw(cmd, self.op("HGET")).await? {
            Value::Nil => Ok(None),
            v => reply::string("HGET", v).map(Some),
        }
    }

    async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        reply::pairs("HGETALL", self.raw(cmd, self.op("HGETALL")).await?)?
            .into_iter()
            .map(|(k, v)| Ok((reply::string("HGETALL", k)?, reply::string("HGETALL", v)?)))
            .collect()
    }
}

#[async_trait]
impl StreamBackend for RedisBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// Everything; durable sends only with connections of its own (not
    /// when built on the caller's connection); on a cluster, moves to
    /// another stream's slot copy first, then acknowledge.
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::all();
        if !self.inner.conns.has_dedicated() {
            caps = caps.without(Feature::DurableSends);
        }
        if self.is_cluster() {
            caps = caps.without(Feature::AtomicCrossStreamMoves);
        }
        caps
    }

    /// Ids are `<ms>-<seq>`: the milliseconds are when the entry was added.
    fn entry_time(&self, id: &EntryId) -> Option<std::time::SystemTime> {
        let (ms, seq) = id.as_str().split_once('-')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ms: u64 = ms.parse().ok()?;
        std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    }

    async fn server_info(&self) -> Result<ServerInfo> {
        commands::server_info(self).await
    }

    async fn ping(&self) -> Result<()> {
        let pong = reply::bytes("PING", self.raw(redis::cmd("PING"), self.op("PING")).await?)?;
        if pong.as_ref() == b"PONG" {
            Ok(())
        } else {
            Err(bad_reply("PING", "the answer is not PONG"))
        }
    }

    /// `SET key value PX ttl`: refused with `OOM` by a server out of memory
    /// under `noeviction`, and with `READONLY` by a replica.
    async fn write_probe(&self, probe: Probe<'_>) -> Result<()> {
        let ttl_ms = u64::try_from(probe.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(probe.key).arg(probe.value).arg("PX").arg(ttl_ms);
        let ok = reply::bytes("SET", self.raw(cmd, self.op("SET")).await?)?;
        if ok.as_ref() == b"OK" {
            Ok(())
        } else {
            Err(bad_reply("SET", "the answer is not OK"))
        }
    }

    async fn create_group(&self, create: CreateGroup<'_>) -> Result<bool> {
        commands::create_group(self, &create).await
    }

    async fn destroy_group(&self, key: &str, group: &str) -> Result<bool> {
        commands::destroy_group(self, key, group).await
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<u64> {
        commands::delete_keys(self, keys).await
    }

    async fn add(&self, add: Add) -> Result<EntryId> {
        commands::add(self, &add).await
    }

    async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<EntryId>> {
        commands::add_batch(self, adds).await
    }

    async fn add_many(&self, many: AddMany<'_>) -> Result<Vec<EntryId>> {
        commands::add_many(self, many).await
    }

    async fn add_durable(&self, many: AddMany<'_>, durability: Durability) -> Result<DurableWrite> {
        commands::add_durable(self, many, durability).await
    }

    async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
        crate::read::read_group(self, read).await
    }

    async fn ack(&self, ack: Ack<'_>) -> Result<u64> {
        commands::ack(self, &ack).await
    }

    async fn auto_claim(&self, claim: AutoClaim<'_>) -> Result<AutoClaimPage> {
        scripts::auto_claim(self, &claim).await
    }

    async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>> {
        commands::pending(self, query).await
    }

    async fn redeliver(&self, lease: Lease<'_>) -> Result<KeyEntries> {
        scripts::redeliver(self, &lease).await
    }

    async fn renew(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
        scripts::set_idle(self, &lease, Duration::ZERO, false).await
    }

    async fn hand_back(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
        scripts::set_idle(self, &lease, HANDED_BACK_IDLE, true).await
    }

    async fn move_entry(&self, mv: Move) -> Result<MoveOutcome> {
        scripts::move_entry(self, &mv).await
    }

    /// One pipeline of move scripts; moves the server answered `NOSCRIPT`
    /// go again after the script is loaded.
    async fn move_entries(&self, moves: Vec<Move>) -> Result<Vec<Result<MoveOutcome>>> {
        scripts::move_entries(self, &moves).await
    }

    async fn promote_due(
        &self,
        schedules: &[ScheduleKeys],
        limit: usize,
    ) -> Result<Vec<Promotion>> {
        scripts::promote_due(self, schedules, limit).await
    }

    async fn schedule_len(&self, key: &str) -> Result<u64> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(key);
        reply::count("ZCARD", self.raw(cmd, self.op("ZCARD")).await?)
    }

    async fn trim(&self, key: &str, trim: Trim) -> Result<u64> {
        match trim {
            Trim::MaxLen { len, approx } => {
                let mut cmd = redis::cmd("XTRIM");
                cmd.arg(key)
                    .arg("MAXLEN")
                    .arg(if approx { "~" } else { "=" })
                    .arg(len);
                reply::count("XTRIM", self.raw(cmd, self.op("XTRIM")).await?)
            }
            _ => scripts::trim(self, key, trim).await,
        }
    }

    async fn len(&self, key: &str) -> Result<u64> {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(key);
        reply::count("XLEN", self.raw(cmd, self.op("XLEN")).await?)
    }

    async fn range(&self, query: RangeQuery<'_>) -> Result<Vec<Entry>> {
        commands::range(self, query).await
    }

    async fn transfer(&self, transfer: Transfer) -> Result<TransferOutcome> {
        scripts::transfer(self, &transfer).await
    }

    async fn delete_entries(&self, key: &str, ids: &[EntryId]) -> Result<Vec<EntryId>> {
        commands::delete_entries(self, key, ids).await
    }

    async fn stream_keys(&self, prefix: &str) -> Result<Vec<String>> {
        commands::stream_keys(self, prefix).await
    }

    async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>> {
        commands::groups(self, key).await
    }

    async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        commands::consumers(self, key, group).await
    }

    async fn delete_consumer(&self, consumer: ConsumerRef<'_>) -> Result<ConsumerRemoval> {
        scripts::delete_consumer(self, consumer).await
    }

    /// Closes the idle blocking connections only. Other managers may share
    /// this backend, so the command connection stays open and later calls
    /// keep working (blocking reads open new connections); the connections
    /// close for good when the last clone of the backend is dropped.
    async fn close(&self) -> Result<()> {
        self.inner.conns.close_idle();
        Ok(())
    }
}

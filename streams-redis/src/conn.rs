//! Connections: one auto-reconnecting connection for ordinary commands
//! (where concurrent single commands share round trips, see
//! `coalesce.rs`), and dedicated connections for blocking reads.
//!
//! A `BLOCK` on a multiplexed connection holds up every command queued
//! behind it (a `PING` sent 50 ms into a `BLOCK 1000` waited about a second),
//! so blocking reads never use the command connection. Each runs on a
//! connection of its own, taken from a small pool, whose response timeout
//! is the `BLOCK` time plus a margin: the server always answers first.
//!
//! On a Redis Cluster the command connection is the redis crate's cluster
//! connection (one multiplexed connection per node, routed by slot, which
//! follows the topology), single commands go straight to it, and each
//! blocking read has a cluster connection of its own.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, RedisResult, Value};

use crate::coalesce::Coalescer;
use crate::config::RedisConfig;

/// Stands in for a block too long to represent (a century).
pub(crate) const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The connections of one backend.
pub(crate) struct Conns {
    commands: Commands,
    /// Shares the round trips of single commands on `commands`.
    writer: Writer,
    blocking: Blocking,
}

/// The connection for ordinary commands.
#[derive(Clone)]
pub(crate) enum Commands {
    /// One server, through an auto-reconnecting connection.
    Single(ConnectionManager),
    /// A Redis Cluster: routed by slot, following the topology.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    /// On a cluster, the pipeline is split by slot (see `cluster.rs`).
    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipe, offset, count),
            Self::Cluster(conn) => Box::pin(async move {
                let mut replies = crate::cluster::pipeline(conn, pipe, offset).await?;
                replies.truncate(count);
                Ok(replies)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Where single commands go.
pub(crate) enum Writer {
    /// Shared round trips on one server's connection.
    Coalesce(Coalescer),
    /// Straight to the cluster connection, which pipelines per node.
    Cluster(ClusterConnection),
}

impl Writer {
    /// Sends `cmd`; its reply, a refusal as a [`Value::ServerError`] or an
    /// `Err`.
    pub(crate) async fn send(&self, cmd: Cmd) -> RedisResult<Value> {
        match self {
            Self::Coalesce(c) => c.send(cmd).await,
            // `INFO` and the like go to one master, not to every node
            // (`SCRIPT LOAD` and `PING` keep going to every node).
            Self::Cluster(conn) if crate::cluster::one_node_will_do(&cmd) => {
                let route = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::RandomPrimary,
                );
                conn.clone().route_command(cmd, route).await
            }
            Self::Cluster(conn) => {
                crate::cluster::resending(crate::cluster::REDIRECTS, || async {
                    let reply = conn.clone().req_packed_command(&cmd).await?;
                    crate::cluster::refusal_as_error(reply)
                })
                .await
            }
        }
    }
}

/// A connection of the blocking pool.
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// What the blocking pool opens connections from.
enum Opener {
    Single(Box<Client>),
    Cluster(Box<ClusterClient>),
}

enum Blocking {
    /// Dedicated connections, opened from the client on demand.
    Pool(Box<Pool>),
    /// Only the caller's connection is available: blocking reads share it,
    /// in slices short enough that other commands barely wait.
    Shared { slice: Duration },
}

struct Pool {
    opener: Opener,
    connect_timeout: Duration,
    margin: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Link>>,
}

/// The client with `TCP_NODELAY` set as configured (see
/// [`RedisConfig::tcp_nodelay`]).
pub(crate) fn with_nodelay(client: &Client, nodelay: bool) -> RedisResult<Client> {
    let info = client.get_connection_info().clone();
    let tcp = info.tcp_settings().clone().set_nodelay(nodelay);
    Client::open(info.set_tcp_settings(tcp))
}

impl Conns {
    /// Opens the command connection (eagerly, so a wrong address fails
    /// here) and prepares the pool of blocking connections.
    pub(crate) async fn open(client: Client, config: &RedisConfig) -> RedisResult<Self> {
        let client = with_nodelay(&client, config.tcp_nodelay)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(config.reconnect_retries)
            .set_max_delay(Duration::from_secs(2));
        let commands = client
            .get_connection_manager_with_config(manager_config)
            .await?;
        Ok(Self {
            writer: Writer::Coalesce(Coalescer::new(commands.clone())),
            commands: Commands::Single(commands),
            blocking: Blocking::Pool(Box::new(Pool {
                opener: Opener::Single(Box::new(client)),
                connect_timeout: config.connect_timeout,
                margin: config.block_margin,
                max_idle: config.max_idle_blocking,
                idle: Mutex::new(Vec::new()),
            })),
        })
    }

    /// Opens the cluster connection for commands (eagerly: it reads the
    /// slot map from a seed node, so a wrong address fails here) and
    /// prepares the pool of blocking connections. Nothing is re-sent by the
    /// cluster client (a lost reply to an `XADD` would otherwise duplicate
    /// the entry): a redirection or a lost node fails the command with a
    /// retryable error, and the slot map is refreshed for the next one.
    pub(crate) async fn open_cluster(config: &RedisConfig) -> RedisResult<Self> {
        let commands = cluster_client(config, config.response_timeout)?
            .get_async_connection()
            .await?;
        // Blocking reads carry their own deadline (`BLOCK` plus the margin).
        let blocking = cluster_client(config, FAR_RESPONSE)?;
        Ok(Self {
            writer: Writer::Cluster(commands.clone()),
            commands: Commands::Cluster(commands),
            blocking: Blocking::Pool(Box::new(Pool {
                opener: Opener::Cluster(Box::new(blocking)),
                connect_timeout: config.connect_timeout,
                margin: config.block_margin,
                max_idle: config.max_idle_blocking,
                idle: Mutex::new(Vec::new()),
            })),
        })
    }

    /// Uses the caller's connection for everything.
    pub(crate) fn shared(commands: ConnectionManager, config: &RedisConfig) -> Self {
        Self {
            writer: Writer::Coalesce(Coalescer::new(commands.clone())),
            commands: Commands::Single(commands),
            blocking: Blocking::Shared {
                slice: config.shared_block_slice.max(Duration::from_millis(1)),
            },
        }
    }

    /// The connection for ordinary commands (a cheap handle), for
    /// pipelines built by the caller.
    pub(crate) fn commands(&self) -> Commands {
        self.commands.clone()
    }

    /// Whether the backend talks to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.commands, Commands::Cluster(_))
    }

    /// Single commands on the command connection, sharing round trips.
    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The response timeout a blocking read of `block` runs under, for errors.
    pub(crate) fn blocking_timeout(&self, block: Duration, response_timeout: Duration) -> Duration {
        match &self.blocking {
            Blocking::Pool(pool) => block.saturating_add(pool.margin),
            Blocking::Shared { .. } => response_timeout,
        }
    }

    /// Runs a blocking command built by `build(block)`; a nil reply means the
    /// block time passed with nothing to return.
    pub(crate) async fn blocking<F>(&self, block: Duration, mut build: F) -> RedisResult<Value>
    where
        F: FnMut(Duration) -> Cmd,
    {
        match &self.blocking {
            Blocking::Pool(pool) => pool.run(&build(block), block).await,
            Blocking::Shared { slice } => {
                let deadline = Instant::now()
                    .checked_add(block)
                    .unwrap_or_else(|| Instant::now() + FAR);
                let mut conn = self.commands.clone();
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let reply = build(left.min(*slice).max(Duration::from_millis(1)))
                        .query_async::<Value>(&mut conn)
                        .await?;
                    if reply != Value::Nil || Instant::now() >= deadline {
                        return Ok(reply);
                    }
                }
            }
        }
    }

    /// Like [`blocking`](Self::blocking), with `then` sent right behind the
    /// blocking command on the same connection, in one write: the server
    /// runs it as soon as the block ends, without waiting for the client to
    /// see the first reply. Returns both replies; the second is `None` when
    /// blocking reads share the command connection (there it is not sent).
    /// A refusal of either command comes back as a
    /// [`Value::ServerError`], not an `Err`.
    pub(crate) async fn blocking_then<F>(
        &self,
        block: Duration,
        mut build: F,
        then: Cmd,
    ) -> RedisResult<(Value, Option<Value>)>
    where
        F: FnMut(Duration) -> Cmd,
    {
        match &self.blocking {
            Blocking::Pool(pool) => {
                let mut pipe = redis::Pipeline::with_capacity(2);
                pipe.add_command(build(block)).add_command(then);
                let mut replies = pool.run_pipe(&pipe, block).await?.into_iter();
                match (replies.next(), replies.next(), replies.next()) {
                    (Some(woke), Some(then), None) => Ok((woke, Some(then))),
                    _ => Err(redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "a pipeline's replies do not match its commands",
                    ))),
                }
            }
            Blocking::Shared { .. } => Ok((self.blocking(block, build).await?, None)),
        }
    }

    /// Whether connections of its own can be opened (not when the backend
    /// was built on the caller's connection).
    pub(crate) fn has_dedicated(&self) -> bool {
        matches!(self.blocking, Blocking::Pool(_))
    }

    /// Runs a pipeline that may hold its connection for up to `wait` (a
    /// `WAIT`) on a connection of its own, so that the command connection
    /// is not held up; its response timeout is `wait` plus the margin.
    /// Server errors come back as values. Only with
    /// [`has_dedicated`](Self::has_dedicated): otherwise it fails before
    /// sending anything.
    pub(crate) async fn dedicated_pipe(
        &self,
        pipe: &redis::Pipeline,
        wait: Duration,
    ) -> RedisResult<Vec<Value>> {
        match &self.blocking {
            Blocking::Pool(pool) => pool.run_pipe(pipe, wait).await,
            Blocking::Shared { .. } => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no connection of its own to wait on",
            ))),
        }
    }

    /// The response timeout [`dedicated_pipe`](Self::dedicated_pipe) runs
    /// under, for errors.
    pub(crate) fn dedicated_timeout(&self, wait: Duration, response_timeout: Duration) -> Duration {
        self.blocking_timeout(wait, response_timeout)
    }

    /// Closes the idle blocking connections. Reads in progress keep theirs
    /// until they end; later reads open new ones.
    pub(crate) fn close_idle(&self) {
        if let Blocking::Pool(pool) = &self.blocking {
            let idle = std::mem::take(&mut *pool.lock());
            drop(idle);
        }
    }

    /// Idle blocking connections, for `Debug`.
    pub(crate) fn idle_count(&self) -> Option<usize> {
        match &self.blocking {
            Blocking::Pool(pool) => Some(pool.lock().len()),
            Blocking::Shared { .. } => None,
        }
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn take(&self, timeout: Duration) -> RedisResult<Link> {
        let pooled = self.lock().pop();
        if let Some(mut link) = pooled {
            if let Link::Single(conn) = &mut link {
                conn.set_response_timeout(timeout);
            }
            return Ok(link);
        }
        match &self.opener {
            Opener::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Link::Single)
            }
            Opener::Cluster(client) => bounded(self.connect_timeout, client.get_async_connection())
                .await
                .map(Link::Cluster),
        }
    }

    /// Runs `cmd` on a connection of its own. The connection goes back to
    /// the pool only after a complete reply; if this future is dropped
    /// mid-read, the connection is dropped with it, which closes the socket
    /// and ends the `BLOCK` on the server.
    async fn run(&self, cmd: &Cmd, block: Duration) -> RedisResult<Value> {
        let limit = block.saturating_add(self.margin);
        let mut link = self.take(limit).await?;
        let result = match &mut link {
            Link::Single(conn) => cmd.query_async::<Value>(conn).await,
            Link::Cluster(conn) => bounded(
                limit,
                crate::cluster::resending(crate::cluster::REDIRECTS, || async {
                    crate::cluster::refusal_as_error(conn.clone().req_packed_command(cmd).await?)
                }),
            )
            .await
            .and_then(|v| v.extract_error()),
        };
        match &result {
            Ok(_) => self.give_back(link),
            // A server error (NOGROUP, ...) leaves the connection usable.
            Err(e) if e.code().is_some() => self.give_back(link),
            // A timed-out read may still be running on the server.
            Err(e) if e.is_timeout() => drop(link),
            Err(_) => {
                drop(link);
                // The server went away: the idle connections are dead too.
                self.lock().clear();
            }
        }
        result
    }

    /// Runs a pipeline whose first command blocks, as [`run`](Self::run)
    /// runs one command. Server errors come back as values.
    async fn run_pipe(&self, pipe: &redis::Pipeline, block: Duration) -> RedisResult<Vec<Value>> {
        let limit = block.saturating_add(self.margin);
        let mut link = self.take(limit).await?;
        let result = match &mut link {
            Link::Single(conn) => conn.req_packed_commands(pipe, 0, pipe.len()).await,
            Link::Cluster(conn) => bounded(limit, crate::cluster::pipeline(conn, pipe, 0)).await,
        };
        match &result {
            Ok(_) => self.give_back(link),
            Err(e) if e.is_timeout() => drop(link),
            Err(_) => {
                drop(link);
                self.lock().clear();
            }
        }
        result
    }

    fn give_back(&self, link: Link) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(link);
        }
    }
}

/// Response timeout of the cluster client of blocking reads, which time
/// out on their own (a week; tokio caps longer timers anyway).
const FAR_RESPONSE: Duration = Duration::from_secs(7 * 86_400);

/// A cluster client over the seed nodes of `config`, with `TCP_NODELAY` as
/// configured and no re-sending of commands.
pub(crate) fn cluster_client(
    config: &RedisConfig,
    response: Duration,
) -> RedisResult<ClusterClient> {
    let mut seeds = Vec::new();
    for url in config.seeds() {
        let client = with_nodelay(&Client::open(url)?, config.tcp_nodelay)?;
        seeds.push(client.get_connection_info().clone());
    }
    let tcp = seeds
        .first()
        .map(|s| s.tcp_settings().clone())
        .unwrap_or_default();
    ClusterClient::builder(seeds)
        .connection_timeout(config.connect_timeout)
        .response_timeout(response)
        .retries(0)
        .tcp_settings(tcp)
        .build()
}

/// `fut`, failing with a timeout error after `limit`.
async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no reply in time",
        ))),
    }
}

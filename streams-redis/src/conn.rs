//! Connections: one auto-reconnecting connection for ordinary commands
//! (where concurrent single commands share round trips, see
//! `coalesce.rs`), and dedicated connections for blocking reads.
//!
//! A `BLOCK` on a multiplexed connection holds up every command queued
//! behind it (a `PING` sent 50 ms into a `BLOCK 1000` waited about a second),
//! so blocking reads never use the command connection. Each runs on a
//! connection of its own, taken from a small pool, whose response timeout
//! is the `BLOCK` time plus a margin: the server always answers first.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisResult, Value};

use crate::coalesce::Coalescer;
use crate::config::RedisConfig;

/// Stands in for a block too long to represent (a century).
pub(crate) const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The connections of one backend.
pub(crate) struct Conns {
    commands: ConnectionManager,
    /// Shares the round trips of single commands on `commands`.
    writer: Coalescer,
    blocking: Blocking,
}

enum Blocking {
    /// Dedicated connections, opened from the client on demand.
    Pool(Box<Pool>),
    /// Only the caller's connection is available: blocking reads share it,
    /// in slices short enough that other commands barely wait.
    Shared { slice: Duration },
}

struct Pool {
    client: Client,
    connect_timeout: Duration,
    margin: Duration,
    max_idle: usize,
    idle: Mutex<Vec<MultiplexedConnection>>,
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
            writer: Coalescer::new(commands.clone()),
            commands,
            blocking: Blocking::Pool(Box::new(Pool {
                client,
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
            writer: Coalescer::new(commands.clone()),
            commands,
            blocking: Blocking::Shared {
                slice: config.shared_block_slice.max(Duration::from_millis(1)),
            },
        }
    }

    /// The connection for ordinary commands (a cheap handle), for
    /// pipelines built by the caller.
    pub(crate) fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// Single commands on the command connection, sharing round trips.
    pub(crate) fn writer(&self) -> &Coalescer {
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
                let mut conn = self.commands();
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
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MultiplexedConnection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn take(&self, timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let pooled = self.lock().pop();
        if let Some(mut conn) = pooled {
            conn.set_response_timeout(timeout);
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Runs `cmd` on a connection of its own. The connection goes back to
    /// the pool only after a complete reply; if this future is dropped
    /// mid-read, the connection is dropped with it, which closes the socket
    /// and ends the `BLOCK` on the server.
    async fn run(&self, cmd: &Cmd, block: Duration) -> RedisResult<Value> {
        let mut conn = self.take(block.saturating_add(self.margin)).await?;
        let result = cmd.query_async::<Value>(&mut conn).await;
        match &result {
            Ok(_) => self.give_back(conn),
            // A server error (NOGROUP, ...) leaves the connection usable.
            Err(e) if e.code().is_some() => self.give_back(conn),
            // A timed-out read may still be running on the server.
            Err(e) if e.is_timeout() => drop(conn),
            Err(_) => {
                drop(conn);
                // The server went away: the idle connections are dead too.
                self.lock().clear();
            }
        }
        result
    }

    /// Runs a pipeline whose first command blocks, as [`run`](Self::run)
    /// runs one command. Server errors come back as values.
    async fn run_pipe(&self, pipe: &redis::Pipeline, block: Duration) -> RedisResult<Vec<Value>> {
        let mut conn = self.take(block.saturating_add(self.margin)).await?;
        let result = conn.req_packed_commands(pipe, 0, pipe.len()).await;
        match &result {
            Ok(_) => self.give_back(conn),
            Err(e) if e.is_timeout() => drop(conn),
            Err(_) => {
                drop(conn);
                self.lock().clear();
            }
        }
        result
    }

    fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

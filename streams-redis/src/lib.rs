//! The Redis Streams transport of xnai-streams: [`RedisBackend`] implements
//! [`StreamBackend`](streams_core::StreamBackend) on the `redis` crate
//! (tokio), so [`Manager<RedisBackend>`](streams_core::Manager) has the whole
//! [`StreamManager`](streams_core::StreamManager) API.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> streams_core::Result<()> {
//! use serde_json::json;
//! use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamType};
//! use streams_redis::RedisBackend;
//!
//! // REDIS_URL, or redis://127.0.0.1:6379.
//! let backend = RedisBackend::from_env().await?;
//! let manager = Manager::new(backend, ManagerConfig::default().with_consumer_id("cline-1"))?;
//! manager.initialize().await?;
//! manager
//!     .create_consumer_group(&ConsumerGroupConfig::new("agent_wavefront", [StreamType::AgentBus]))
//!     .await?;
//! manager.send_message(&StreamType::AgentBus, json!({"task_id": "R003-1"}), None).await?;
//! for message in manager.read_messages("agent_wavefront", Some(10), None).await? {
//!     manager.acknowledge(&message, "agent_wavefront").await?;
//! }
//! manager.close().await?;
//! # Ok(()) }
//! ```
//!
//! # How it uses Redis
//!
//! - Ordinary commands share one auto-reconnecting connection with a 5 s
//!   response timeout ([`RedisConfig::response_timeout`]). Concurrent
//!   single commands share round trips: a command that finds the
//!   connection idle leaves at once; those sent while its round trip is
//!   out leave together as one pipeline when it ends. Each caller gets its
//!   own reply or error. Blocking reads run on dedicated pooled
//!   connections whose timeout is the `BLOCK` time plus
//!   [`RedisConfig::block_margin`], so acknowledgements and sends never
//!   wait behind a `BLOCK`.
//! - Replies are decoded from raw values, binary-safe, without copies.
//! - Moves (retry scheduling, dead-lettering), promotion of due retries,
//!   claiming with delivery counts, lease renewal and consumer removal are
//!   Lua scripts, each atomic, fenced where the contract asks for it, and
//!   timed by the server's clock.
//! - `XADD` is never retried by the backend: a lost reply would duplicate
//!   the entry. Every envelope carries a producer id (`mid`) for deduplication.
//! - A group read shares its `COUNT` fairly over the group's keys in
//!   rounds of one `XREADGROUP` each (every key still in play gets the same
//!   share); a remainder smaller than the number of keys goes through a
//!   script. When it finds nothing, an `XREAD BLOCK` on a connection of its
//!   own waits for the next entry without delivering anything.
//! - Moves in bulk ([`move_entries`](streams_core::StreamBackend::move_entries))
//!   are one pipeline of move scripts. Scripts are sent as `EVALSHA` and
//!   loaded when the server answers `NOSCRIPT`.
//! - Redis Cluster: several seed URLs (`redis://a:7000,redis://b:7000`) or
//!   [`RedisConfig::with_cluster`] select the cluster client. Each script
//!   keeps to one stream's slot (the key layout tags a stream's keys with
//!   its name), a command whose keys would span slots is refused before it
//!   is sent, pipelines and group reads are split by slot, and a move to
//!   the shared dead-letter stream copies first, then acknowledges (see
//!   `docs/scaling.md`, "Redis Cluster").
//! - The server must be Redis 7.0 or newer; older servers are refused by
//!   [`server_info`](streams_core::StreamBackend::server_info). The scripts
//!   rely on 7.0: errors raised inside them keep their code (`NOGROUP`), and
//!   claims report and drop pending entries that were deleted.
//!
//! The wire format and key layout are in `docs/wire-format.md`.
//!
//! # Features
//!
//! - `tls`: `rediss://` URLs, through rustls.
//! - `testing`: the `testing` module: finding or starting a Redis for
//!   tests, and cleaning up their keys.
//! - `testcontainers`: lets `testing` start a Redis container when nothing
//!   else is found and Docker answers.

pub mod acl;
mod backend;
mod cluster;
mod coalesce;
mod commands;
mod config;
mod conn;
mod error;
mod read;
mod reply;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;

pub use acl::AclRules;
pub use backend::RedisBackend;
pub use config::{DEFAULT_URL, RedisConfig};

/// The Lua script that moves a group's due retries from its schedule into
/// its ready stream, self-contained. Consumers written in other languages
/// `EVAL` it with `KEYS = [schedule, ready stream]` and `ARGV = [limit]` to
/// get their retries without a Rust reader of their group; see
/// `docs/wire-format.md` and the Python client in `docs/python/`.
pub const PROMOTE_SCRIPT: &str = scripts::PROMOTE_DUE_SOURCE;

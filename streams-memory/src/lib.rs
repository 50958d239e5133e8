//! [`MemoryBackend`]: an in-process model of Redis 7.0 Streams, the
//! embedded default of xnai-streams.
//!
//! It implements [`StreamBackend`](streams_core::StreamBackend) with the
//! semantics of the Redis commands the Redis backend sends, so everything
//! written against it behaves the same on a server, and it passes the same
//! conformance suite (`streams-conformance`):
//!
//! - one keyspace, where a key holds a stream, a sorted set (a retry
//!   schedule) or a hash (the group registry), and using it as another type
//!   fails like Redis' `WRONGTYPE`;
//! - ids `<ms>-<seq>` that strictly increase per stream, even when the clock
//!   goes back or the last entry was deleted;
//! - consumer groups with a pending entries list: delivery counts, idle
//!   times, redeliveries to the holder (which count as deliveries and
//!   report deleted ids), `XAUTOCLAIM` paging, and trimming that leaves
//!   pending ids alone;
//! - blocking reads woken by the add that feeds them, not by polling;
//! - every command atomic, as under Redis' single thread.
//!
//! Clones share the same data, like connections to one server, so many
//! managers can work on one backend; [`close`](streams_core::StreamBackend::close)
//! keeps the data. Nothing is persisted.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
//! use serde_json::json;
//! use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig};
//! use streams_memory::MemoryBackend;
//!
//! let backend = MemoryBackend::new();
//! let producer = Manager::new(backend.clone(), ManagerConfig::default().with_consumer_id("producer"))?;
//! let worker = Manager::new(backend, ManagerConfig::default().with_consumer_id("worker-1"))?;
//!
//! worker
//!     .create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"]))
//!     .await?;
//! producer.send_message("jobs", json!({"task": "index"}), None).await?;
//!
//! let messages = worker.read_messages("workers", Some(10), None).await?;
//! assert_eq!(messages.len(), 1);
//! assert_eq!(messages[0].data["task"], "index");
//! assert!(worker.acknowledge(&messages[0], "workers").await?);
//! # Ok(()) }
//! ```
//!
//! The backend can also be used directly, in the raw terms of the trait:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
//! use bytes::Bytes;
//! use streams_core::StreamBackend;
//! use streams_core::backend::{Ack, Add, CreateGroup, ReadGroup, StartAt};
//! use streams_memory::MemoryBackend;
//!
//! let backend = MemoryBackend::new();
//! backend.create_group(CreateGroup::new("jobs", "workers", StartAt::End)).await?;
//! let fields = vec![(Bytes::from("task"), Bytes::from("index"))];
//! let id = backend.add(Add::new("jobs", fields)).await?;
//!
//! let keys = ["jobs".to_owned()];
//! let replies = backend.read_group(ReadGroup::new("workers", "w1", &keys, 10)).await?;
//! assert_eq!(replies[0].entries[0].entry.id, id);
//! assert_eq!(backend.ack(Ack::new("jobs", "workers", &[id])).await?, 1);
//! # Ok(()) }
//! ```

mod backend;
mod commands;
mod entries;
mod error;
mod group;
mod id;
mod packed;
mod state;
mod wait;

use std::fmt;
use std::sync::{Arc, Mutex};

use state::Keyspace;

/// An in-process model of Redis 7.0 Streams.
///
/// Cheap to clone; clones share the same data. [`Debug`] shows how many keys
/// of each kind it holds, not their contents.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<Keyspace>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (streams, schedules, hashes) = self.lock().counts();
        f.debug_struct("MemoryBackend")
            .field("streams", &streams)
            .field("schedules", &schedules)
            .field("hashes", &hashes)
            .finish()
    }
}

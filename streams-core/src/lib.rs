//! The core of xnai-streams: data types, configuration, errors, the
//! [`StreamBackend`] and [`StreamManager`] traits, and [`Manager`], which
//! implements the whole API once over any backend.
//!
//! - [`StreamBackend`]: the primitives of a transport (Redis, in-memory, ...).
//!   No policy.
//! - [`StreamManager`]: the spec's API (`read_messages`, `send_to_dlq`, ...),
//!   object safe.
//! - [`Manager<B>`](Manager): retry limits, backoff, dead-letter provenance,
//!   claiming, statistics and error mapping, for every backend.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
//! use serde_json::json;
//! use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamType};
//! use streams_memory::MemoryBackend;
//!
//! let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default().with_consumer_id("cline-1"))?;
//! manager
//!     .create_consumer_group(&ConsumerGroupConfig::new("agent_wavefront", [StreamType::AgentBus]))
//!     .await?;
//! manager.send_message(&StreamType::AgentBus, json!({"task_id": "R003-1"}), None).await?;
//! let messages = manager.read_messages("agent_wavefront", Some(10), None).await?;
//! assert_eq!(messages[0].data["task_id"], "R003-1");
//! manager.acknowledge(&messages[0], "agent_wavefront").await?;
//! # Ok(()) }
//! ```

mod api;
pub mod backend;
mod codec;
mod config;
mod error;
mod manager;
mod message;
mod names;
pub mod observe;
mod partition;
pub mod runner;

pub use api::{StreamManager, StreamManagerExt};
pub use backend::{Entry, EntryId, Fields, StreamBackend};
pub use codec::{MAX_PAYLOAD_DEPTH, field};
pub use config::{
    ConsumerGroupConfig, DlqConfig, DlqLayout, Durability, GroupStart, ManagerConfig, RetryConfig,
    RetryPolicy,
};
pub use error::{BoxError, Refusal, Result, StreamError};
pub use manager::{
    ConsumerHealth, DlqCursor, DlqFilter, DlqPage, DlqProgress, DlqPurge, DlqQuery, DlqReplay,
    DlqSelection, DlqStats, EntryState, GroupHealth, HealthReport, HealthStatus, HealthThresholds,
    Manager, PeekQuery, PendingFilter, PendingInfo, PruneReport, PurgeReport, PurgedEntry,
    Readiness, ReplayDuplicate, ReplayItem, ReplayReport, ReplaySkip, SkipReason, Stats,
    StreamHealth, StreamInfo,
};
pub use message::{DeadLetter, Delivery, MessageStatus, RawFields, RetryOptions, StreamMessage};
pub use names::{
    KeyLayout, MAX_NAME_BYTES, StreamType, StreamUse, validate_name, validate_namespace,
};
pub use partition::{MAX_PARTITIONS, PartitionedStream, partition_stream, split_partition};

/// The dead-letter reason given to poison messages.
pub use manager::MAX_DELIVERIES_EXCEEDED;

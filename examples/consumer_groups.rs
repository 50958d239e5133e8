//! Consumer groups over several streams (spec: `create_consumer_group()`).
//!
//! Run with `cargo run --example consumer_groups`.

use std::time::Duration;

use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend, StreamType,
};

/// Creates `agent_wavefront` with the spec's values, then finds it by name
/// from a second manager, as another process would.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(backend.clone(), config.clone().with_consumer_id("cline-1"))?;
    manager.initialize().await?;

    let group = ConsumerGroupConfig::new(
        "agent_wavefront",
        [StreamType::AgentBus, StreamType::TaskUpdates],
    )
    .with_consumer_prefix("consumer_")
    .with_block(Duration::from_millis(5000))
    .with_batch_size(10)
    .with_claim_idle(Duration::from_millis(60_000));
    manager.create_consumer_group(&group).await?;
    // Creating it again is not an error.
    manager.create_consumer_group(&group).await?;

    // Another process knows the group by name alone: its configuration is in
    // the group registry.
    let other = Manager::new(backend, config.with_consumer_id("cline-2"))?;
    let found = other.group_config("agent_wavefront").await?;
    println!(
        "cline-2 found group {} over {:?}",
        found.name, found.streams
    );
    assert_eq!(found, group);

    manager.close().await?;
    other.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

//! Agent coordination: an agent publishes task updates, the overseer reads them.
//!
//! Run with `cargo run --example agent_coordination`.

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend, StreamType,
};

/// cline-1 reports progress on `xnai:task_updates`; MC-Overseer follows it
/// through the `agent_wavefront` group.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let agent = Manager::new(backend.clone(), config.clone().with_consumer_id("cline-1"))?;
    let overseer = Manager::new(backend, config.with_consumer_id("mc-overseer"))?;
    overseer
        .create_consumer_group(&ConsumerGroupConfig::new(
            "agent_wavefront",
            [StreamType::AgentBus, StreamType::TaskUpdates],
        ))
        .await?;

    // Agent publishes task update.
    agent
        .send_message(
            &StreamType::TaskUpdates,
            json!({
                "agent_id": "cline-1",
                "task_id": "R003-1",
                "status": "in_progress",
                "progress": "50%",
                "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            }),
            None,
        )
        .await?;

    // MC-Overseer reads updates.
    let updates = overseer
        .read_messages("agent_wavefront", None, None)
        .await?;
    for update in &updates {
        println!(
            "{} reports {} on {}",
            update.data["agent_id"], update.data["progress"], update.stream
        );
        overseer.acknowledge(update, "agent_wavefront").await?;
    }
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].stream, StreamType::TaskUpdates.as_str());
    agent.close().await?;
    overseer.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

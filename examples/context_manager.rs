//! The spec's `async with RedisStreamManager(...) as manager:`.
//!
//! Run with `cargo run --example context_manager`.

use std::time::Duration;

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
    StreamManagerExt, StreamMessage,
};

async fn process_message(message: &StreamMessage) -> Result<()> {
    // Stands in for the agent's real (asynchronous) work.
    tokio::task::yield_now().await;
    println!("processing {} {:?}", message.id, message.data);
    Ok(())
}

/// `scoped` initializes, runs the block, and always closes the manager.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let setup = Manager::new(backend.clone(), config.clone().with_consumer_id("producer"))?;
    setup
        .create_consumer_group(
            &ConsumerGroupConfig::new("agent_wavefront", ["xnai:agent_bus"])
                .with_block(Duration::from_millis(200)),
        )
        .await?;
    setup
        .send_message("xnai:agent_bus", json!({"task_id": "R005-1"}), None)
        .await?;

    let manager = Manager::new(backend, config.with_consumer_id("cline-1"))?;
    let handled = manager
        .scoped(|manager| async move {
            let messages = manager.read_messages("agent_wavefront", None, None).await?;
            for message in &messages {
                process_message(message).await?;
                manager.acknowledge(message, "agent_wavefront").await?;
            }
            Ok(messages.len())
        })
        .await?;
    println!(
        "handled {handled} messages; closed: {}",
        manager.is_closed()
    );
    assert_eq!(handled, 1);
    assert!(manager.is_closed());
    setup.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

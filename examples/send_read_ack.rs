//! Send, read and acknowledge (spec: `send_message()`, `read_messages()`, `acknowledge()`).
//!
//! Run with `cargo run --example send_read_ack`.

use std::time::Duration;

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
};

/// The spec's message operations, in order.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(backend, config.with_consumer_id("cline-1"))?;
    manager.initialize().await?;
    manager
        .create_consumer_group(&ConsumerGroupConfig::new(
            "agent_wavefront",
            ["xnai:agent_bus", "xnai:task_updates"],
        ))
        .await?;

    let message_id = manager
        .send_message(
            "xnai:agent_bus",
            json!({"agent_id": "cline-1", "action": "task_complete", "task_id": "R003-1"}),
            Some(1000),
        )
        .await?;
    println!("sent {message_id}");

    let messages = manager
        .read_messages(
            "agent_wavefront",
            Some(10),
            Some(Duration::from_millis(5000)),
        )
        .await?;
    for message in &messages {
        println!("ID: {}", message.id);
        println!("Stream: {}", message.stream);
        println!("Data: {:?}", message.data);
        manager.acknowledge(message, "agent_wavefront").await?;
    }
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, message_id);
    assert_eq!(messages[0].data["task_id"], "R003-1");
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

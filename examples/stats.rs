//! Statistics (spec: `get_stats()`).
//!
//! Run with `cargo run --example stats`.

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
};

/// Some traffic, then the statistics as the spec's JSON.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(backend, config.with_consumer_id("consumer_12345"))?;
    for group in ["agent_wavefront", "memory_sync"] {
        manager
            .create_consumer_group(&ConsumerGroupConfig::new(group, ["xnai:agent_bus"]))
            .await?;
    }
    for n in 0..3 {
        manager
            .send_message("xnai:agent_bus", json!({"n": n}), None)
            .await?;
    }
    let messages = manager.read_messages("agent_wavefront", None, None).await?;
    manager.acknowledge(&messages[0], "agent_wavefront").await?;
    manager.acknowledge(&messages[1], "agent_wavefront").await?;
    manager
        .send_to_dlq(&messages[2], "bad input", Some("agent_wavefront"))
        .await?;

    let stats = manager.get_stats().await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&stats).expect("stats serialize")
    );
    assert_eq!(stats.messages_read, 3);
    assert_eq!(stats.messages_acknowledged, 2);
    assert_eq!(stats.messages_failed, 1);
    assert_eq!(stats.dlq_entries, 1);
    assert_eq!(stats.consumer_groups, ["agent_wavefront", "memory_sync"]);
    assert!(stats.initialized);
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

//! The dead-letter queue (spec: `send_to_dlq()`).
//!
//! Run with `cargo run --example dead_letter_queue`.

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
};

/// A message that cannot be processed goes to the DLQ with its provenance;
/// giving the group acknowledges the original in the same step.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(backend, config.with_consumer_id("cline-1"))?;
    manager
        .create_consumer_group(&ConsumerGroupConfig::new(
            "agent_wavefront",
            ["xnai:agent_bus"],
        ))
        .await?;
    manager
        .send_message(
            "xnai:agent_bus",
            json!({"task_id": "R003-2", "action": "index"}),
            None,
        )
        .await?;

    let message = manager
        .read_messages("agent_wavefront", None, None)
        .await?
        .remove(0);
    let dlq_id = manager
        .send_to_dlq(
            &message,
            "Processing failed: timeout",
            Some("agent_wavefront"),
        )
        .await?;
    println!("dead-lettered {} as {dlq_id}", message.id);

    for entry in manager.dead_letters(10).await? {
        let provenance = entry
            .dead_letter
            .as_ref()
            .expect("dead-letter entries carry provenance");
        println!(
            "{}: {} from {} {} (group {:?}, consumer {:?}) at {}",
            entry.id,
            provenance.reason,
            provenance.origin_stream,
            provenance.origin_id,
            provenance.group,
            provenance.consumer,
            provenance.failed_at
        );
        assert_eq!(provenance.origin_id, message.id);
        assert_eq!(entry.data["task_id"], "R003-2");
    }
    let stats = manager.get_stats().await?;
    assert_eq!(stats.dlq_entries, 1);
    // The original was acknowledged: nothing is left to claim.
    assert!(
        manager
            .claim_pending_messages("agent_wavefront", Some(std::time::Duration::ZERO))
            .await?
            .is_empty()
    );
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

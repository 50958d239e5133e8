//! The spec's message processing loop: read, process, acknowledge or
//! dead-letter, and claim abandoned messages.
//!
//! Run with `cargo run --example processing_loop`.

use std::time::Duration;

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
    StreamMessage,
};

/// Fails on messages marked `"fail": true`.
async fn process_message(message: &StreamMessage) -> std::result::Result<(), String> {
    // Stands in for the agent's real (asynchronous) work.
    tokio::task::yield_now().await;
    if message.data.get("fail").and_then(|v| v.as_bool()) == Some(true) {
        return Err(format!("cannot process task {}", message.data["task_id"]));
    }
    Ok(())
}

/// The loop of the spec. It stops once `expected` messages are handled so
/// the example ends; a real agent loops until shutdown.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(backend, config.with_consumer_id("cline-1"))?;
    manager.initialize().await?;
    manager
        .create_consumer_group(
            &ConsumerGroupConfig::new("agent_wavefront", ["xnai:agent_bus"])
                .with_block(Duration::from_millis(200))
                .with_claim_idle(Duration::from_secs(60)),
        )
        .await?;
    let expected = 10;
    for n in 0..expected {
        manager
            .send_message(
                "xnai:agent_bus",
                json!({"task_id": n, "fail": n == 7}),
                None,
            )
            .await?;
    }

    let (mut done, mut failed) = (0, 0);
    while done + failed < expected {
        let messages = manager.read_messages("agent_wavefront", None, None).await?;
        for message in messages {
            match process_message(&message).await {
                Ok(()) => {
                    manager.acknowledge(&message, "agent_wavefront").await?;
                    done += 1;
                }
                Err(e) => {
                    manager
                        .send_to_dlq(&message, &e, Some("agent_wavefront"))
                        .await?;
                    failed += 1;
                }
            }
        }

        // Claim abandoned messages.
        let claimed = manager
            .claim_pending_messages("agent_wavefront", None)
            .await?;
        for message in claimed {
            if process_message(&message).await.is_ok() {
                manager.acknowledge(&message, "agent_wavefront").await?;
                done += 1;
            }
        }
    }
    println!("processed {done}, dead-lettered {failed}");
    assert_eq!((done, failed), (9, 1));
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

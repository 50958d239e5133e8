//! Retry with exponential backoff (spec: `retry_message()`).
//!
//! Run with `cargo run --example retry`.

use std::time::{Duration, Instant};

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
};

/// A failing message is retried after `base * 2^n` until the retry limit,
/// then `retry_message` returns false and the message goes to the DLQ.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let dlq = DlqConfig::default()
        .with_retry_limit(2)
        .with_retry_backoff(Duration::from_millis(100));
    let manager = Manager::new(backend, config.with_consumer_id("cline-1").with_dlq(dlq))?;
    let group = ConsumerGroupConfig::new("agent_wavefront", ["xnai:agent_bus"])
        .with_block(Duration::from_secs(2));
    manager.create_consumer_group(&group).await?;
    manager
        .send_message("xnai:agent_bus", json!({"task_id": "R003-3"}), None)
        .await?;

    let started = Instant::now();
    let mut message = manager
        .read_messages("agent_wavefront", None, None)
        .await?
        .remove(0);
    loop {
        // Processing fails every time in this example.
        let success = manager
            .retry_with_error(&message, "upstream unavailable")
            .await?;
        if !success {
            println!("retry limit reached after {} retries", message.retry_count);
            manager
                .send_to_dlq(&message, "retry limit reached", Some("agent_wavefront"))
                .await?;
            break;
        }
        let delay = manager.retry_delay(message.retry_count);
        println!("retry {} scheduled in {delay:?}", message.retry_count + 1);
        message = manager
            .read_messages("agent_wavefront", None, None)
            .await?
            .remove(0);
        println!(
            "got retry {} at {:?}, last error: {:?}",
            message.retry_count,
            started.elapsed(),
            message.error
        );
    }
    // 100 ms, then 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(manager.get_stats().await?.messages_retried, 2);
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

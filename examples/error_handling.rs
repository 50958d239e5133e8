//! Error handling: typed errors, and what to do about each.
//!
//! Run with `cargo run --example error_handling`.

use std::time::Duration;

use serde_json::json;
use xnai_streams::{Manager, ManagerConfig, MemoryBackend, Result, StreamBackend, StreamError};

/// Reads with a fallback: temporary errors are retried with a pause, the
/// others are reported.
async fn read_with_fallback<B: StreamBackend>(manager: &Manager<B>, group: &str) -> Result<usize> {
    let mut pause = Duration::from_millis(50);
    for _ in 0..3 {
        match manager
            .read_messages(group, None, Some(Duration::ZERO))
            .await
        {
            Ok(messages) => return Ok(messages.len()),
            Err(e) if e.is_retryable() => {
                eprintln!("failed to read messages: {e}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    Err(StreamError::Timeout {
        operation: "read_with_fallback".to_owned(),
        after: pause,
    })
}

/// Every kind of bad input gives its own error, and nothing is written.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(
        backend,
        config
            .with_consumer_id("cline-1")
            .with_max_message_bytes(1024),
    )?;

    match read_with_fallback(&manager, "agent_wavefront").await {
        Err(StreamError::GroupNotFound { group }) => println!("no such group: {group}"),
        other => panic!("expected GroupNotFound, got {other:?}"),
    }
    match manager.send_message("has spaces", json!({}), None).await {
        Err(StreamError::InvalidName { kind, name, reason }) => {
            println!("bad {kind} name {name:?}: {reason}")
        }
        other => panic!("expected InvalidName, got {other:?}"),
    }
    match manager
        .send_message("xnai:agent_bus", json!(["not", "an", "object"]), None)
        .await
    {
        Err(StreamError::PayloadNotObject { found }) => {
            println!("payload must be an object, not {found}")
        }
        other => panic!("expected PayloadNotObject, got {other:?}"),
    }
    match manager
        .send_message("xnai:agent_bus", json!({"blob": "x".repeat(4096)}), None)
        .await
    {
        Err(e @ StreamError::PayloadTooLarge { .. }) => println!("{e}"),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(manager.get_stats().await?.messages_sent, 0);

    manager.close().await?;
    match manager
        .send_message("xnai:agent_bus", json!({}), None)
        .await
    {
        Err(StreamError::Closed) => println!("closed managers refuse work"),
        other => panic!("expected Closed, got {other:?}"),
    }
    Ok(())
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

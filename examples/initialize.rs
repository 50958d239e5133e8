//! Create a manager and initialize it (spec: "RedisStreamManager" / "Initialize").
//!
//! Run with `cargo run --example initialize`.

use xnai_streams::{Manager, ManagerConfig, MemoryBackend, Result, StreamBackend};

/// The spec's `RedisStreamManager(redis=client, consumer_id="cline-1")` then
/// `await manager.initialize()`. The backend plays the part of the client.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let manager = Manager::new(backend.clone(), config.clone().with_consumer_id("cline-1"))?;
    manager.initialize().await?;
    // Initializing twice is harmless.
    manager.initialize().await?;
    println!(
        "consumer {} initialized: {}",
        manager.consumer_id(),
        manager.is_initialized()
    );
    assert_eq!(manager.consumer_id(), "cline-1");

    // Without a consumer id, the manager is `consumer_<pid>`.
    let anonymous = Manager::new(backend, config)?;
    anonymous.initialize().await?;
    println!("default consumer id: {}", anonymous.consumer_id());
    assert!(anonymous.consumer_id().starts_with("consumer_"));

    manager.close().await?;
    anonymous.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}

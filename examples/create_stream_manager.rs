//! `create_stream_manager()`: create and initialize in one call.
//!
//! Run with `cargo run --example create_stream_manager`; set `REDIS_URL` to
//! also connect to Redis.

use serde_json::json;
use xnai_streams::{
    Manager, ManagerConfig, MemoryBackend, Result, StreamBackend, create_memory_stream_manager,
    create_stream_manager,
};

/// One call gives a ready manager: in-process here, or on any backend
/// through `Manager::new` + `initialize`.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let embedded = create_memory_stream_manager(Some("cline-1")).await?;
    assert!(embedded.is_initialized());
    embedded
        .send_message("xnai:alerts", json!({"level": "info"}), None)
        .await?;
    println!("embedded manager {} is ready", embedded.consumer_id());

    // What create_stream_manager does, for a backend chosen by the caller.
    let manager = Manager::new(backend, config.with_consumer_id("cline-1"))?;
    manager.initialize().await?;
    let server = manager.server_info().expect("initialized");
    println!("{} {} is ready", server.backend, server.version);
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await?;
    if std::env::var_os("REDIS_URL").is_some() {
        let manager = create_stream_manager(Some("cline-1")).await?;
        println!(
            "connected to Redis {}",
            manager.server_info().expect("initialized").version
        );
        manager.close().await?;
    }
    Ok(())
}

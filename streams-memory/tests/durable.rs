//! Durable sends need replicas or an append-only file: the memory backend
//! has neither, and refuses them before writing anything.

use serde_json::json;
use streams_core::{Durability, Manager, ManagerConfig, StreamBackend, StreamError};
use streams_memory::MemoryBackend;

#[tokio::test]
async fn durable_sends_are_refused_and_write_nothing() {
    let backend = MemoryBackend::new();
    let config = ManagerConfig::default().with_durability(Durability::replicas(1));
    let m = Manager::new(backend.clone(), config).unwrap();
    for got in [
        m.send_message("jobs", json!({"n": 1}), None)
            .await
            .map(|_| ()),
        m.send_batch("jobs", vec![json!({"n": 2})], None)
            .await
            .map(|_| ()),
    ] {
        match got {
            Err(StreamError::Unsupported { feature, reason }) => {
                assert_eq!(feature, "durable sends");
                assert!(reason.contains("memory"), "{reason}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    // Nothing was written, and a manager without durability works as ever.
    assert_eq!(backend.len("jobs").await.unwrap(), 0);
    let plain = Manager::new(backend.clone(), ManagerConfig::default()).unwrap();
    plain
        .send_message("jobs", json!({"n": 3}), None)
        .await
        .unwrap();
    assert_eq!(backend.len("jobs").await.unwrap(), 1);
}

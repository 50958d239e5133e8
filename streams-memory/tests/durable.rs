//! Durable sends need replicas or an append-only file: the memory backend
//! has neither, and a manager asking for them is refused when built.

use serde_json::json;
use streams_core::backend::{AddMany, Feature};
use streams_core::{Durability, Fields, Manager, ManagerConfig, StreamBackend, StreamError};
use streams_memory::MemoryBackend;

#[tokio::test]
async fn durable_sends_are_refused_when_the_manager_is_built() {
    let backend = MemoryBackend::new();
    assert!(!backend.capabilities().supports(Feature::DurableSends));
    let config = ManagerConfig::default().with_durability(Durability::replicas(1));
    match Manager::new(backend.clone(), config) {
        Err(StreamError::Unsupported { feature, reason }) => {
            assert_eq!(feature, "durable send");
            assert!(reason.contains("memory"), "{reason}");
        }
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
    // Asked of the backend directly, it refuses before writing anything.
    let add = AddMany::new("jobs", vec![Fields::new()]);
    assert!(matches!(
        backend.add_durable(add, Durability::replicas(1)).await,
        Err(StreamError::Unsupported { .. })
    ));
    assert_eq!(backend.len("jobs").await.unwrap(), 0);
    // Without durability the same backend sends as ever.
    let plain = Manager::new(backend.clone(), ManagerConfig::default()).unwrap();
    plain
        .send_message("jobs", json!({"n": 3}), None)
        .await
        .unwrap();
    assert_eq!(backend.len("jobs").await.unwrap(), 1);
}

//! The backend works in every form a user can hold it: the concrete type,
//! `Box<dyn StreamBackend>` and `Arc<dyn StreamBackend>`.

#![allow(clippy::unwrap_used, reason = "the shared helper is test code too")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streams_core::{
    ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig, StreamBackend, StreamManager,
};
use streams_memory::MemoryBackend;

/// Send, read, fail once, retry, read the retry, acknowledge: the round trip
/// every form must support.
async fn round_trip<B: StreamBackend>(backend: B) {
    let config = ManagerConfig::default()
        .with_consumer_id("worker")
        .with_dlq(DlqConfig::default().with_retry_backoff(Duration::from_millis(20)));
    let manager = Manager::new(backend, config).unwrap();
    manager.initialize().await.unwrap();
    assert_eq!(manager.server_info().unwrap().backend, "memory");
    let group = ConsumerGroupConfig::new("workers", ["jobs"]).with_block(Duration::from_millis(50));
    manager.create_consumer_group(&group).await.unwrap();

    let sent = manager
        .send_message("jobs", json!({"n": 1}), None)
        .await
        .unwrap();
    let got = manager
        .read_messages("workers", Some(10), None)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, sent);
    assert_eq!(got[0].data["n"], 1);
    assert!(manager.acknowledge(&got[0], "workers").await.unwrap());
    assert!(!manager.acknowledge(&got[0], "workers").await.unwrap());

    manager
        .send_message("jobs", json!({"n": 2}), None)
        .await
        .unwrap();
    let failed = manager
        .read_messages("workers", Some(10), None)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(manager.retry_message(&failed[0]).await.unwrap());
    let retried = manager
        .read_messages("workers", Some(10), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].data["n"], 2);
    assert_eq!(retried[0].retry_count, 1);
    assert!(retried[0].delivery.as_ref().is_some_and(|d| d.from_retry));
    assert!(manager.acknowledge(&retried[0], "workers").await.unwrap());

    let stats = manager.get_stats().await.unwrap();
    assert_eq!(
        (
            stats.messages_sent,
            stats.messages_read,
            stats.messages_acknowledged
        ),
        (2, 3, 2)
    );
    assert_eq!((stats.messages_retried, stats.retries_promoted), (1, 1));
    let health = manager.health().await.unwrap();
    assert!(health.healthy, "{:?}", health.problems);
    manager.close().await.unwrap();
}

#[tokio::test]
async fn concrete_type() {
    round_trip(MemoryBackend::new()).await;
}

#[tokio::test]
async fn boxed_trait_object() {
    let backend: Box<dyn StreamBackend> = Box::new(MemoryBackend::new());
    round_trip(backend).await;
}

#[tokio::test]
async fn shared_trait_object() {
    let backend: Arc<dyn StreamBackend> = Arc::new(MemoryBackend::new());
    round_trip(Arc::clone(&backend)).await;
    // Closing a manager leaves the data to the others sharing the backend.
    assert_eq!(backend.len("jobs").await.unwrap(), 2);
}

#[tokio::test]
async fn managers_on_clones_share_one_server() {
    let backend = MemoryBackend::new();
    let producer: Box<dyn StreamManager> = Box::new(
        Manager::new(
            backend.clone(),
            ManagerConfig::default().with_consumer_id("p"),
        )
        .unwrap(),
    );
    let consumer = Manager::new(
        Arc::new(backend) as Arc<dyn StreamBackend>,
        ManagerConfig::default().with_consumer_id("c"),
    )
    .unwrap();
    consumer
        .create_consumer_group(&ConsumerGroupConfig::new("g", ["s"]))
        .await
        .unwrap();
    // The group is found by name through the registry the first one wrote.
    let reader = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            consumer
                .read_messages("g", Some(1), Some(Duration::from_secs(5)))
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    producer
        .send_message("s", json!({"hello": "world"}), None)
        .await
        .unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data["hello"], "world");
}

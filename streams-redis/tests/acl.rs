//! The backend under a Redis ACL user that may not use transactions
//! (`MULTI`/`EXEC`): everything the manager does, including acknowledging
//! (and deleting) a retry copy, works with scripts and plain commands.

use std::time::Duration;

use serde_json::json;
use streams_core::{ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig};
use streams_redis::RedisBackend;
use streams_redis::testing::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_a_user_without_transactions() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg("worker")
        .arg("on")
        .arg(">worker-secret")
        .arg("~*")
        .arg("+@all")
        .arg("-multi")
        .arg("-exec");
    setuser.query_async::<()>(&mut conn).await.unwrap();
    // The user really cannot open a transaction.
    let user_url = format!("redis://worker:worker-secret@127.0.0.1:{}", server.port());
    let user = redis::Client::open(user_url.as_str()).unwrap();
    let mut user_conn = user.get_multiplexed_async_connection().await.unwrap();
    let refused = redis::cmd("MULTI").query_async::<()>(&mut user_conn).await;
    assert!(refused.is_err(), "MULTI was allowed");

    let backend = RedisBackend::connect(&user_url).await.unwrap();
    let config = ManagerConfig::default()
        .with_consumer_id("w")
        .with_dlq(DlqConfig::default().with_retry_backoff(Duration::ZERO));
    let m = Manager::new(backend, config).unwrap();
    m.create_consumer_group(
        &ConsumerGroupConfig::new("g", ["s"]).with_block(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    m.send_message("s", json!({"n": 1}), None).await.unwrap();
    let got = m.read_messages("g", None, None).await.unwrap();
    assert!(m.retry_message(&got[0]).await.unwrap());
    let copy = m
        .read_messages("g", None, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(copy[0].retry_count, 1);
    assert!(copy[0].delivery.as_ref().unwrap().from_retry);
    // Acknowledging a retry copy also deletes it from the ready stream.
    assert!(m.acknowledge(&copy[0], "g").await.unwrap());
    let ready = m.keys().retry_ready("s", "g");
    let len: u64 = redis::cmd("XLEN")
        .arg(&ready)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);
    m.send_message("s", json!({"n": 2}), None).await.unwrap();
    let more = m.read_messages("g", None, None).await.unwrap();
    m.send_to_dlq(&more[0], "bad", Some("g")).await.unwrap();
    assert_eq!(m.get_stats().await.unwrap().dlq_entries, 1);
    assert!(m.health().await.unwrap().healthy);
}

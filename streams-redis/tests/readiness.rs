//! Readiness and health against servers in trouble, each a private
//! `redis-server` (the shared one is never touched or reconfigured): one
//! out of memory under `maxmemory` with `noeviction`, which still answers
//! `PING` but refuses writes, and one that is gone. And what readiness
//! costs the server: one `SET`.

#![allow(clippy::unwrap_used, reason = "the helpers are test code too")]

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use streams_core::{ConsumerGroupConfig, HealthStatus, Manager, ManagerConfig, StreamBackend};
use streams_redis::testing::RedisServer;
use streams_redis::{RedisBackend, RedisConfig};

async fn manager_on(url: &str) -> (RedisBackend, Manager<RedisBackend>) {
    let config = RedisConfig::new(url)
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_secs(2))
        .with_reconnect_retries(1);
    let backend = RedisBackend::from_config(config).await.unwrap();
    let manager = Manager::new(
        backend.clone(),
        ManagerConfig::default().with_consumer_id("probe-test"),
    )
    .unwrap();
    (backend, manager)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_memory_is_not_ready_and_is_unhealthy() {
    let server =
        RedisServer::start_with_args(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"])
            .expect("redis-server on PATH");
    let (backend, manager) = manager_on(&server.url()).await;
    manager
        .create_consumer_group(&ConsumerGroupConfig::new("g", ["s"]))
        .await
        .unwrap();
    manager
        .send_message("s", json!({"n": 1}), None)
        .await
        .unwrap();
    assert!(manager.readiness().await.unwrap().ready);
    assert_eq!(
        manager.health().await.unwrap().status,
        HealthStatus::Healthy
    );

    // Fill the server until it refuses writes; then lower the limit well
    // below what it holds, so the refusal does not hang on how the server
    // counts its connections' buffers at the edge of the limit.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let chunk = "x".repeat(64 * 1024);
    let mut filled = 0;
    let refusal = loop {
        assert!(filled < 1000, "4 MB of maxmemory never filled up");
        match conn.set::<_, _, ()>(format!("fill:{filled}"), &chunk).await {
            Ok(()) => filled += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.code(), Some("OOM"), "{refusal}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("2mb")
        .query_async(&mut conn)
        .await
        .unwrap();

    // It still answers, so a ping would call it fine; a probe write does not.
    backend.ping().await.unwrap();
    let ready = manager.readiness().await.unwrap();
    assert!(
        !ready.ready && ready.reachable && !ready.accepts_writes,
        "{ready:?}"
    );
    let why = ready.problem.unwrap();
    assert!(
        why.contains("refuses writes") && why.contains("OOM"),
        "{why}"
    );
    let report = manager.health().await.unwrap();
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:#?}");
    assert!(!report.healthy && !report.accepts_writes);
    assert!(report.problems.iter().any(|p| p.contains("OOM")));
    // Reads still work: the groups are reported.
    assert_eq!(report.groups.len(), 1);
    assert_eq!(report.groups[0].streams[0].length, 1);
    assert!(
        manager
            .send_message("s", json!({"n": 2}), None)
            .await
            .is_err(),
        "sends fail too"
    );

    // Memory freed: ready again.
    let keys: Vec<String> = (0..filled).map(|i| format!("fill:{i}")).collect();
    let _: u64 = conn.del(&keys).await.unwrap();
    let ready = manager.readiness().await.unwrap();
    assert!(ready.ready, "{ready:?}");
    assert_eq!(
        manager.health().await.unwrap().status,
        HealthStatus::Healthy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_gone_is_unreachable() {
    let mut server = RedisServer::start().expect("redis-server on PATH");
    let (_backend, manager) = manager_on(&server.url()).await;
    assert!(manager.readiness().await.unwrap().ready);
    server.kill().unwrap();
    let ready = manager.readiness().await.unwrap();
    assert!(
        !ready.ready && !ready.reachable && ready.latency_ms.is_none(),
        "{ready:?}"
    );
    assert!(ready.problem.unwrap().contains("unreachable"));
    let report = manager.health().await.unwrap();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(report.groups.is_empty() && report.latency_ms.is_none());
}

/// The commands the server ran, by name, from `INFO commandstats`.
async fn command_calls(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| name != "info" && !name.starts_with("config"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_one_set_on_the_server() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let (_backend, manager) = manager_on(&server.url()).await;
    manager.initialize().await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ready = manager.readiness().await.unwrap();
    assert!(ready.ready);
    assert_eq!(command_calls(&mut conn).await, [("set".to_owned(), 1)]);
    let ttl: i64 = conn.pttl(manager.keys().probe()).await.unwrap();
    assert!((1..=10_000).contains(&ttl), "the probe key expires: {ttl}");
}

//! Failover: a master with one replica, linked through the test proxy so
//! that replication takes a little time, as it does between hosts. Under
//! load the master's host dies (its in-flight replication is dropped and
//! the process killed) and the replica is promoted. The history checker
//! then counts which acknowledged sends the new master lacks: without
//! durable sends asynchronous replication loses the last ones; with
//! `Durability::replicas(1)` it loses none.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{GROUP, STREAM, Scenario};
use serde_json::json;
use streams_conformance::checker::{Final, Recorder, Report};
use streams_core::runner::ConsumeOptions;
use streams_core::{Durability, Manager, StreamError, StreamManager};
use streams_faults::Proxy;
use streams_redis::testing::RedisServer;
use streams_redis::{RedisBackend, RedisConfig};

/// Producer tasks.
const PRODUCERS: u64 = 8;

/// Messages per send: a durable send waits a round trip to the replica,
/// so batches keep the durable run's volume up.
const BATCH: usize = 20;

/// How long the replication link takes, each way.
const LINK_DELAY: Duration = Duration::from_millis(30);

/// One failover under load; returns the checker's report and how many
/// sends were written but not confirmed durable.
async fn failover(name: &str, durability: Option<Durability>) -> (Report, u64) {
    let _serial = common::SERIAL.lock().await;
    // No wait before the replica's first sync (Redis waits 5 s by default
    // for more replicas to share it).
    let mut s = Scenario::new(name, &["--repl-diskless-sync-delay", "0"]);
    let master_addr = format!("127.0.0.1:{}", s.server.port()).parse().unwrap();
    let link = Proxy::start(master_addr).await.unwrap();
    let replica =
        RedisServer::start_replica_of(link.addr().port(), &[]).expect("a replica redis-server");
    s.server
        .wait_replicas_online(1, Duration::from_secs(30))
        .expect("the replica links");
    link.delay(LINK_DELAY);

    // The group exists before the run, on both servers.
    let admin = s.manager("admin").await;
    s.create_group(&admin, Duration::from_secs(30)).await;

    let mut config = s.manager_config("producer");
    if let Some(d) = durability {
        config = config.with_durability(d);
    }
    let backend = RedisBackend::from_config(
        RedisConfig::new(s.server.url())
            .with_response_timeout(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(1))
            .with_reconnect_retries(1),
    )
    .await
    .unwrap();
    let producer = Arc::new(Manager::new(backend, config).unwrap());
    let history = Arc::new(Recorder::create(s.history_dir(), "producer").unwrap());
    let dead = Arc::new(AtomicBool::new(false));
    let unconfirmed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (m, history, dead, unconfirmed) = (
                Arc::clone(&producer),
                Arc::clone(&history),
                Arc::clone(&dead),
                Arc::clone(&unconfirmed),
            );
            tokio::spawn(async move {
                for n in 0u64.. {
                    let keys: Vec<String> = (0..BATCH).map(|i| format!("p{p}-{n}-{i}")).collect();
                    let batch = keys.iter().map(|key| json!({"key": key})).collect();
                    match m.send_batch(STREAM, batch, None).await {
                        // Acknowledged: the checker holds the scenario to them.
                        Ok(ids) => {
                            for (key, id) in keys.iter().zip(&ids) {
                                history.sent(key, STREAM, id);
                            }
                        }
                        // Written but not confirmed: the caller was told so.
                        Err(StreamError::DurabilityNotConfirmed { ids, .. }) => {
                            unconfirmed.fetch_add(ids.len() as u64, Ordering::Relaxed);
                        }
                        // The master is gone; whether this one was written
                        // is unknown, and it was not acknowledged.
                        Err(_) if dead.load(Ordering::SeqCst) => return,
                        Err(e) => panic!("a send failed before the fault: {e}"),
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(400)).await;
    // The master's host dies: what it has not delivered to the replica yet
    // is gone with it, and so is the process.
    s.recorder
        .fault("master host lost: replication link cut, master SIGKILLed");
    dead.store(true, Ordering::SeqCst);
    link.down();
    s.server.kill().unwrap();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a producer hung after the master died")
            .unwrap();
    }

    // Failover: the replica becomes the master, and a consumer drains the
    // group there.
    let client = redis::Client::open(replica.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    s.recorder.healed("replica promoted");
    let on_replica = |consumer: &str| {
        let config = s.manager_config(consumer);
        let url = replica.url();
        async move {
            let backend = RedisBackend::connect(&url).await.unwrap();
            Manager::new(backend, config).unwrap()
        }
    };
    let consumer = on_replica("c1").await;
    let runner = s.runner("c1", consumer, ConsumeOptions::default().concurrency(64));
    let watcher = on_replica("checker").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Done when every entry on the new master was handed to the
        // consumer and nothing is pending (Redis 7.0 does not always know
        // the lag, so the deliveries are counted).
        let health = watcher.group_health(GROUP).await.unwrap();
        let length: u64 = health.streams.iter().map(|st| st.length).sum();
        let pending: u64 = health.streams.iter().map(|st| st.pending).sum();
        let delivered: std::collections::HashSet<String> = runner
            .delivered
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.id.clone())
            .collect();
        if (pending == 0 && delivered.len() as u64 >= length) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runner.stop().await;
    let report = s.report(&Final::new());
    (report, unconfirmed.load(Ordering::Relaxed))
}

/// Without durable sends, the sends acknowledged in the last moments
/// before the master's death are lost with it: the fault really loses
/// data. With `Durability::replicas(1)`, no acknowledged send is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_no_send_a_replica_confirmed() {
    let (plain, _) = failover("failover-async", None).await;
    let (durable, unconfirmed) = failover(
        "failover-wait-1",
        Some(Durability::replicas(1).with_timeout(Duration::from_secs(1))),
    )
    .await;
    eprintln!(
        "without durability: {} acknowledged, {} lost; with replicas(1): {} acknowledged, {} lost, {unconfirmed} not confirmed",
        plain.messages, plain.lost, durable.messages, durable.lost
    );
    assert!(
        plain.messages > 500 && plain.lost > 0,
        "the fault lost nothing without durability, so it proves nothing: {plain}"
    );
    // Each durable round waits a replication round trip (60 ms here, more
    // on a busy machine): one full round of every producer is enough.
    assert!(
        durable.messages >= PRODUCERS * BATCH as u64,
        "too little was sent: {durable}"
    );
    durable.assert_ok("failover-wait-1");
}

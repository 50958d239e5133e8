//! Failover on a Redis Cluster: three masters with a replica each, a
//! stream split into six partitions over them, producers sending by key
//! and a consumer draining the group. Under load one master is killed;
//! the cluster promotes its replica, the client follows the new topology,
//! and the consumer resumes. The history checker then counts what was
//! lost: without durable sends, what the dead master had acknowledged
//! but not yet passed to its replica may be gone (asynchronous
//! replication); with `Durability::replicas(1)` no acknowledged send is
//! lost.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{GROUP, STREAM, Scenario};
use serde_json::json;
use streams_conformance::checker::{Final, Recorder, Report};
use streams_core::{Durability, Manager, StreamError, StreamManager};
use streams_redis::testing::RedisCluster;
use streams_redis::{RedisBackend, RedisConfig};

/// Producer tasks.
const PRODUCERS: u64 = 4;

/// Messages per keyed batch.
const BATCH: usize = 10;

/// Partitions of the stream, spread over the masters.
const PARTITIONS: u32 = 6;

/// What one run measured.
struct Run {
    report: Report,
    /// Sends written but not confirmed durable.
    unconfirmed: u64,
    /// Sends acknowledged after the failover.
    sent_after: u64,
}

/// The `CLUSTER NODES` line of the node on `port` says it is a master.
fn is_master(port: u16) -> bool {
    RedisCluster::nodes_of(port)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("myself") && l.contains("master"))
}

async fn failover(name: &str, durability: Option<Durability>) -> Run {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new(name, &[]);
    let mut cluster = RedisCluster::start(3, 1).expect(
        "a private Redis Cluster (redis-server and redis-cli on PATH: apt-get install \
         redis-server redis-tools)",
    );
    let url = cluster.urls().join(",");
    let config = || {
        RedisConfig::new(&url)
            .with_response_timeout(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(1))
    };
    let admin = s.manager_on(config(), "admin").await;
    let partitioned = admin.declare_partitions(STREAM, PARTITIONS).await.unwrap();
    s.create_group(&admin, Duration::from_secs(2)).await;

    let consumer = s.manager_on(config(), "c1").await;
    let runner = s.runner(
        "c1",
        consumer,
        common::runner_options(Duration::from_secs(2)).concurrency(32),
    );

    let mut producer_config = s.manager_config("producer");
    if let Some(d) = durability {
        producer_config = producer_config.with_durability(d);
    }
    let backend = RedisBackend::from_config(config()).await.unwrap();
    let producer = Arc::new(Manager::new(backend, producer_config).unwrap());
    let history = Arc::new(Recorder::create(s.history_dir(), "producer").unwrap());
    let faulted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let unconfirmed = Arc::new(AtomicU64::new(0));
    let after = Arc::new(AtomicU64::new(0));
    let back_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (m, history, faulted, stop, unconfirmed, after, back_at, partitioned) = (
                Arc::clone(&producer),
                Arc::clone(&history),
                Arc::clone(&faulted),
                Arc::clone(&stop),
                Arc::clone(&unconfirmed),
                Arc::clone(&after),
                Arc::clone(&back_at),
                partitioned.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let keys: Vec<String> = (0..BATCH).map(|i| format!("p{p}-{n}-{i}")).collect();
                    let items = keys
                        .iter()
                        .map(|key| (key.clone(), json!({"key": key})))
                        .collect();
                    match m.send_batch_keyed(STREAM, items, None).await {
                        Ok(ids) => {
                            for (key, id) in keys.iter().zip(&ids) {
                                history.sent(key, &partitioned.stream_for_key(key), id);
                            }
                            if faulted.load(Ordering::SeqCst) {
                                after.fetch_add(ids.len() as u64, Ordering::Relaxed);
                                back_at.lock().unwrap().get_or_insert_with(Instant::now);
                            }
                        }
                        Err(StreamError::DurabilityNotConfirmed { ids, .. }) => {
                            unconfirmed.fetch_add(ids.len() as u64, Ordering::Relaxed);
                        }
                        // A node is gone: whether this batch was written is
                        // unknown, and it was not acknowledged. Try the
                        // next one after a pause, as a producer would.
                        Err(e) if faulted.load(Ordering::SeqCst) && e.is_retryable() => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            panic!("a send failed (before the fault, or not retryable): {e:?}")
                        }
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let victim = (0..cluster.nodes().len())
        .find(|&i| is_master(cluster.nodes()[i].port()))
        .expect("a master");
    s.recorder.fault("a master SIGKILLed");
    faulted.store(true, Ordering::SeqCst);
    cluster.node_mut(victim).kill().unwrap();

    // The cluster promotes the replica (node timeout 2 s); sends resume.
    let deadline = Instant::now() + Duration::from_secs(60);
    while back_at.lock().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "no send succeeded within 60 s of the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.recorder.healed("a send succeeded after the failover");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a producer hung")
            .unwrap();
    }

    // Drained when nothing is pending and every entry was handed over.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = admin.group_health(GROUP).await;
        if let Ok(health) = health {
            let length: u64 = health.streams.iter().map(|st| st.length).sum();
            let pending: u64 = health.streams.iter().map(|st| st.pending).sum();
            let delivered: std::collections::HashSet<(String, String)> = runner
                .delivered
                .lock()
                .unwrap()
                .iter()
                .map(|d| (d.key.clone(), d.id.clone()))
                .collect();
            if pending == 0 && delivered.len() as u64 >= length {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the group did not drain within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runner.stop().await;
    Run {
        report: s.report(&Final::new()),
        unconfirmed: unconfirmed.load(Ordering::Relaxed),
        sent_after: after.load(Ordering::Relaxed),
    }
}

/// The client follows the new topology: sends and the consumer resume
/// after a master dies, and every acknowledged send a replica confirmed
/// is delivered. What asynchronous replication loses without durable
/// sends is measured and printed (it may be nothing on a quiet machine:
/// the replica is local and close behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_resumes_and_loses_no_confirmed_send() {
    let plain = failover("cluster-failover-async", None).await;
    let durable = failover(
        "cluster-failover-wait-1",
        Some(Durability::replicas(1).with_timeout(Duration::from_secs(1))),
    )
    .await;
    eprintln!(
        "cluster failover without durability: {} acknowledged, {} lost, {} handled twice, \
         recovered in {:?}; with replicas(1): {} acknowledged, {} lost, {} not confirmed, \
         {} handled twice, recovered in {:?}",
        plain.report.messages,
        plain.report.lost,
        plain.report.duplicated,
        plain.report.recovery,
        durable.report.messages,
        durable.report.lost,
        durable.unconfirmed,
        durable.report.duplicated,
        durable.report.recovery,
    );
    for (name, run) in [("async", &plain), ("replicas(1)", &durable)] {
        assert!(
            run.sent_after > 0,
            "{name}: no send was acknowledged after the failover"
        );
        // Everything still in the cluster was delivered and settled.
        assert_eq!(run.report.pending, 0, "{name}: {}", run.report);
        assert_eq!(run.report.double_settled, 0, "{name}: {}", run.report);
        assert_eq!(run.report.faults, 1, "{name}: {}", run.report);
    }
    assert!(
        durable.report.messages >= PRODUCERS * BATCH as u64,
        "too little was sent: {}",
        durable.report
    );
    // No acknowledged durable send is lost. Acknowledgements are
    // replicated asynchronously too, so messages acknowledged just before
    // the kill may be handled again: duplicates are allowed, loss is not.
    assert_eq!(durable.report.lost, 0, "{}", durable.report);
}

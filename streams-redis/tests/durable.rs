//! Durable sends on private servers: a master with one replica. A send
//! waits for the replica (`WAIT`); a paused replica makes it fail in
//! bounded time with the ids of what was written, without holding up
//! ordinary sends; fsync confirmations (`WAITAOF`) are refused before
//! anything is written by a server that cannot give them.

#![allow(clippy::unwrap_used, reason = "the helpers are test code too")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use streams_core::backend::{AddMany, Feature};
use streams_core::{Durability, Manager, ManagerConfig, StreamBackend, StreamError};
use streams_redis::RedisBackend;
use streams_redis::testing::RedisServer;

/// A master and a replica of it, linked.
fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start().expect("redis-server on PATH (see the README)");
    let replica = RedisServer::start_replica_of(master.port(), &[]).expect("a replica");
    master
        .wait_replicas_online(1, Duration::from_secs(20))
        .expect("the replica links");
    (master, replica)
}

async fn manager(server: &RedisServer, durability: Option<Durability>) -> Manager<RedisBackend> {
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let mut config = ManagerConfig::default().with_consumer_id("durable");
    if let Some(d) = durability {
        config = config.with_durability(d);
    }
    Manager::new(backend, config).unwrap()
}

async fn ids_on(server: &RedisServer, key: &str) -> Vec<String> {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut ids = Vec::new();
    let mut start = "-".to_owned();
    loop {
        // In pages: a failover run leaves hundreds of thousands.
        let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let Some((last, _)) = page.last() else {
            return ids;
        };
        start = format!("({last}");
        ids.extend(page.into_iter().map(|(id, _)| id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_wait_until_the_replica_has_them() {
    let (master, replica) = master_and_replica();
    let m = manager(
        &master,
        Some(Durability::replicas(1).with_timeout(Duration::from_secs(5))),
    )
    .await;
    let one = m.send_message("jobs", json!({"n": 1}), None).await.unwrap();
    let many = m
        .send_batch("jobs", vec![json!({"n": 2}), json!({"n": 3})], Some(100))
        .await
        .unwrap();
    let mut sent = vec![one];
    sent.extend(many);
    // Confirmed by the replica: it has every one of them now.
    assert_eq!(ids_on(&replica, "jobs").await, sent);
    assert_eq!(ids_on(&master, "jobs").await, sent);
    // An empty batch writes nothing and waits for nothing.
    assert!(m.send_batch("jobs", vec![], None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_fails_the_send_in_bounded_time_with_its_ids() {
    let (master, replica) = master_and_replica();
    let timeout = Duration::from_millis(300);
    // One backend, so one command connection, for both managers.
    let backend = RedisBackend::connect(&master.url()).await.unwrap();
    let config = ManagerConfig::default().with_consumer_id("durable");
    let durable = Manager::new(
        backend.clone(),
        config
            .clone()
            .with_durability(Durability::replicas(1).with_timeout(timeout)),
    )
    .unwrap();
    let plain = Manager::new(backend.clone(), config.clone()).unwrap();
    // Replication works before the fault (with time to spare on a busy
    // machine).
    Manager::new(
        backend,
        config.with_durability(Durability::replicas(1).with_timeout(Duration::from_secs(10))),
    )
    .unwrap()
    .send_message("jobs", json!({"n": 0}), None)
    .await
    .unwrap();

    replica.pause().unwrap();
    let started = Instant::now();
    let (durable_send, plain_send) =
        tokio::join!(durable.send_message("jobs", json!({"n": 1}), None), async {
            // Sent while the durable send waits: not held up by it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let at = Instant::now();
            let id = plain
                .send_message("jobs", json!({"n": 2}), None)
                .await
                .unwrap();
            (id, at.elapsed())
        });
    let took = started.elapsed();
    replica.resume().unwrap();

    let Err(StreamError::DurabilityNotConfirmed {
        stream,
        ids,
        wanted_replicas,
        replicas,
        fsync,
        ..
    }) = &durable_send
    else {
        panic!("expected DurabilityNotConfirmed, got {durable_send:?}");
    };
    assert_eq!(stream, "jobs");
    assert_eq!((*wanted_replicas, *replicas, *fsync), (1, 0, false));
    assert_eq!(ids.len(), 1);
    assert!(
        took >= timeout && took < Duration::from_secs(3),
        "the durable send took {took:?} with a {timeout:?} timeout"
    );
    let (plain_id, plain_took) = plain_send;
    assert!(
        plain_took < Duration::from_millis(200),
        "an ordinary send waited {plain_took:?} behind a durable one"
    );
    // Written, just not confirmed: the entry is on the master, findable
    // by the id the error carries.
    let on_master = ids_on(&master, "jobs").await;
    assert!(
        on_master.contains(&ids[0]),
        "{on_master:?} lacks {}",
        ids[0]
    );
    assert!(on_master.contains(&plain_id));
    let message = durable_send.unwrap_err().to_string();
    assert!(message.contains("not confirmed durable"), "{message}");
    assert!(message.contains("0 of 1 replica"), "{message}");

    // The replica is back: the same manager's sends are confirmed again.
    durable
        .send_message("jobs", json!({"n": 3}), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_replicas_than_there_are_is_reported_as_not_confirmed() {
    let (master, _replica) = master_and_replica();
    let m = manager(
        &master,
        // Long enough for the one replica to answer on a busy machine: the
        // wait lasts all of it, since a second replica never will.
        Some(Durability::replicas(2).with_timeout(Duration::from_secs(2))),
    )
    .await;
    let got = m
        .send_batch("jobs", vec![json!({"n": 1}), json!({"n": 2})], None)
        .await;
    match got {
        Err(StreamError::DurabilityNotConfirmed {
            ids,
            wanted_replicas: 2,
            replicas: 1,
            ..
        }) => assert_eq!(ids, ids_on(&master, "jobs").await),
        other => panic!("expected 1 of 2 replicas, got {other:?}"),
    }
}

/// The server's version, from `INFO server`.
async fn version(server: &RedisServer) -> (u32, u32) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    let line = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))
        .unwrap();
    let mut parts = line
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_is_refused_before_writing_where_the_server_cannot_give_it() {
    // Without an append-only file (every server), or before Redis 7.2.
    let server = RedisServer::start().expect("redis-server on PATH (see the README)");
    let m = manager(&server, Some(Durability::replicas(0).with_fsync(true))).await;
    let got = m.send_message("jobs", json!({"n": 1}), None).await;
    let Err(StreamError::Unsupported { feature, reason }) = &got else {
        panic!("expected Unsupported, got {got:?}");
    };
    assert!(feature.contains("WAITAOF"), "{feature}");
    if version(&server).await < (7, 2) {
        assert!(reason.contains("7.2.0 or newer"), "{reason}");
    } else {
        assert!(reason.contains("append-only"), "{reason}");
    }
    assert!(
        ids_on(&server, "jobs").await.is_empty(),
        "something was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_is_confirmed_where_the_server_can_give_it() {
    let server = RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"])
        .expect("redis-server on PATH (see the README)");
    if version(&server).await < (7, 2) {
        // WAITAOF does not exist before 7.2: the refusal is the test above.
        let m = manager(&server, Some(Durability::replicas(0).with_fsync(true))).await;
        let got = m.send_message("jobs", json!({"n": 1}), None).await;
        assert!(
            matches!(&got, Err(StreamError::Unsupported { reason, .. }) if reason.contains("7.2.0")),
            "{got:?}"
        );
        assert!(ids_on(&server, "jobs").await.is_empty());
        return;
    }
    let m = manager(&server, Some(Durability::replicas(0).with_fsync(true))).await;
    let id = m.send_message("jobs", json!({"n": 1}), None).await.unwrap();
    assert_eq!(ids_on(&server, "jobs").await, vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_on_the_callers_connection_refuses_durable_sends_before_writing() {
    let (master, _replica) = master_and_replica();
    let client = redis::Client::open(master.url()).unwrap();
    let conn = client.get_connection_manager().await.unwrap();
    let backend = RedisBackend::from_connection_manager(conn);
    assert!(!backend.capabilities().supports(Feature::DurableSends));
    let config = ManagerConfig::default()
        .with_consumer_id("durable")
        .with_durability(Durability::replicas(1));
    match Manager::new(backend.clone(), config) {
        Err(StreamError::Unsupported { feature, .. }) => assert_eq!(feature, "durable send"),
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
    // Asked of the backend directly, it refuses before writing.
    let fields = vec![(Bytes::from_static(b"n"), Bytes::from_static(b"1"))];
    let add = AddMany::new("jobs", vec![fields]);
    match backend.add_durable(add, Durability::replicas(1)).await {
        Err(StreamError::Unsupported { reason, .. }) => {
            assert!(reason.contains("from_connection_manager"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(
        ids_on(&master, "jobs").await.is_empty(),
        "something was written"
    );
}

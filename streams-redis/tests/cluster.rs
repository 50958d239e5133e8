//! The private Redis Cluster fixture: three masters with a replica each,
//! every slot served, keys routed by slot (hash tags included), and every
//! node stopped when the cluster is dropped.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use streams_core::{Manager, ManagerConfig, StreamError};
use streams_redis::testing::{RedisCluster, answers_ping};
use streams_redis::{RedisBackend, RedisConfig};

/// `redis-cli` on `port` with `args`; its output, trimmed.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_cluster_of_three_masters_and_three_replicas_serves_every_slot() {
    let cluster = RedisCluster::start(3, 1).expect("redis-server and redis-cli on PATH");
    assert_eq!((cluster.nodes().len(), cluster.masters()), (6, 3));
    let port = cluster.nodes()[0].port();
    let nodes = cli(port, &["cluster", "nodes"]);
    let masters = nodes.lines().filter(|l| l.contains("master")).count();
    let replicas = nodes.lines().filter(|l| l.contains("slave")).count();
    assert_eq!((masters, replicas), (3, 3), "{nodes}");

    // A key is served by the master of its slot; the others redirect.
    let slot = cli(port, &["cluster", "keyslot", "xnai:jobs"]);
    let same = cli(port, &["cluster", "keyslot", "xnai:retry:{xnai:jobs}:g"]);
    assert_eq!(slot, same, "a hash tag keeps a stream's keys in its slot");
    let mut served = 0;
    let mut moved = 0;
    for node in cluster.nodes() {
        let reply = cli(node.port(), &["set", "xnai:jobs", "1"]);
        if reply == "OK" {
            served += 1;
        } else if reply.starts_with("MOVED") {
            moved += 1;
        }
    }
    // The master serves it; the other masters and the replicas redirect.
    assert_eq!((served, moved), (1, 5));

    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    drop(cluster);
    for port in ports {
        assert!(
            !answers_ping(port, Duration::from_millis(200)),
            "node on {port} still runs after the cluster was dropped"
        );
    }
}

/// Configured for one server but pointed at a cluster node, a manager
/// refuses to start rather than fail later on other nodes' keys, and says
/// how to talk to the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_backend_refuses_a_cluster_node_clearly() {
    let cluster = RedisCluster::start(3, 0).expect("redis-server and redis-cli on PATH");
    let port = cluster.nodes()[0].port();
    let backend = RedisBackend::connect(&cluster.urls()[0]).await.unwrap();
    let m = Manager::new(backend, ManagerConfig::default()).unwrap();
    let got = m.send_message("jobs", json!({"n": 1}), None).await;
    match &got {
        Err(StreamError::Unsupported { feature, reason }) => {
            assert!(feature.contains("Redis Cluster"), "{feature}");
            assert!(reason.contains("MOVED"), "{reason}");
            assert!(reason.contains("with_cluster(true)"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(cli(port, &["dbsize"]), "0", "nothing was written");
}

#[test]
fn fewer_than_three_masters_is_refused() {
    let err = RedisCluster::start(2, 0).unwrap_err();
    assert!(err.to_string().contains("at least 3 masters"), "{err}");
}

/// The master serving each slot, from `CLUSTER NODES`.
fn slot_owners(port: u16) -> Vec<(u16, u16, String)> {
    cli(port, &["cluster", "nodes"])
        .lines()
        .filter(|l| l.contains("master"))
        .flat_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = fields[0].to_owned();
            fields[8..]
                .iter()
                .filter_map(|range| {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    Some((lo.parse().ok()?, hi.parse().ok()?, id.clone()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Hostile names cannot move a stream's keys apart: for any valid name,
/// with or without a namespace, the stream, its retry schedule and ready
/// stream and its per-stream dead-letter stream hash to one slot (asked of
/// the cluster itself, `CLUSTER KEYSLOT`); names with braces, which would
/// choose another hash tag, are refused. A partitioned stream's partitions
/// have hash tags of their own, so they spread over the masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_cannot_move_a_streams_keys_to_another_slot() {
    use streams_core::{DlqConfig, DlqLayout, KeyLayout, PartitionedStream, RetryConfig};

    let cluster = RedisCluster::start(3, 0).expect("redis-server and redis-cli on PATH");
    let port = cluster.nodes()[0].port();
    let slot = |key: &str| -> u16 { cli(port, &["cluster", "keyslot", key]).parse().unwrap() };

    for refused in ["{jobs}", "a{b", "jobs}", "x{}y", "{", "}"] {
        assert!(
            matches!(
                streams_core::validate_name("stream", refused),
                Err(StreamError::InvalidName { .. })
            ),
            "{refused}"
        );
        assert!(PartitionedStream::new(refused, 2).is_err(), "{refused}");
    }
    let long = "z".repeat(512);
    let hostile = [
        "jobs",
        "xnai:agent_bus",
        "a:b:c",
        "jobs#3",
        "jobs#",
        "::",
        "*",
        "?[a-z]",
        "\\",
        "\"quoted\"",
        "ünïcödé-✓",
        "schedule:g",
        "xnai:retry:",
        long.as_str(),
    ];
    let dlq = DlqConfig::default().with_layout(DlqLayout::PerStream);
    for namespace in [None, Some("t1")] {
        let keys = KeyLayout::new(namespace, &dlq, &RetryConfig::default(), "xnai:groups").unwrap();
        for name in hostile {
            streams_core::validate_name("stream", name).unwrap();
            let home = slot(&keys.stream(name));
            for key in [
                keys.retry_schedule(name, "g"),
                keys.retry_ready(name, "g"),
                keys.retry_ready(name, "}{"),
                keys.dlq(name),
            ] {
                assert_eq!(
                    slot(&key),
                    home,
                    "{key} and the stream {name} ({namespace:?})"
                );
            }
        }
    }

    let owners = slot_owners(port);
    let owner = |s: u16| {
        owners
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&s))
            .map(|(_, _, id)| id.clone())
            .unwrap()
    };
    let keys = KeyLayout::new(
        Some("t1"),
        &DlqConfig::default(),
        &RetryConfig::default(),
        "xnai:groups",
    )
    .unwrap();
    let orders = PartitionedStream::new("orders", 12).unwrap();
    let masters: std::collections::HashSet<String> = orders
        .streams()
        .iter()
        .map(|p| owner(slot(&keys.stream(p))))
        .collect();
    assert_eq!(masters.len(), 3, "12 partitions over 3 masters");
}

/// Connects a manager of `namespace` to the cluster.
async fn cluster_manager(
    cluster: &RedisCluster,
    namespace: &str,
    consumer: &str,
) -> Manager<RedisBackend> {
    let backend = RedisBackend::from_config(RedisConfig::new(cluster.urls().join(",")))
        .await
        .unwrap();
    assert!(backend.is_cluster());
    Manager::new(
        backend,
        ManagerConfig::default()
            .with_namespace(namespace)
            .with_consumer_id(consumer),
    )
    .unwrap()
}

/// A group over streams on every master: a read shares its count over
/// them, a blocking read wakes as soon as any of them gets a message, and
/// listing and deleting reach every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_every_master_reads_wakes_lists_and_deletes() {
    use std::time::Instant;
    use streams_core::ConsumerGroupConfig;
    use streams_core::backend::{Feature, StreamBackend};

    let cluster = RedisCluster::start(3, 0).expect("redis-server and redis-cli on PATH");
    let port = cluster.nodes()[0].port();
    let ns = "xt-cluster-group";
    let m = cluster_manager(&cluster, ns, "c1").await;
    assert!(
        !m.backend()
            .capabilities()
            .supports(Feature::AtomicCrossStreamMoves)
    );
    // Streams whose slots are on three different masters.
    let owners = slot_owners(port);
    let owner = |key: &str| -> String {
        let slot: u16 = cli(port, &["cluster", "keyslot", key]).parse().unwrap();
        owners
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, id)| id.clone())
            .unwrap()
    };
    let mut streams: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0.. {
        let name = format!("s{i}");
        if seen.insert(owner(&m.keys().stream(&name))) {
            streams.push(name);
        }
        if streams.len() == 3 {
            break;
        }
    }
    m.create_consumer_group(&ConsumerGroupConfig::new("g", streams.clone()))
        .await
        .unwrap();
    for s in &streams {
        for n in 0..4 {
            m.send_message(s.as_str(), json!({"n": n}), None)
                .await
                .unwrap();
        }
    }
    let got = m.read_messages("g", Some(6), None).await.unwrap();
    assert_eq!(got.len(), 6, "the count is kept over the slots");
    for s in &streams {
        let n = got.iter().filter(|x| &x.stream == s).count();
        assert_eq!(n, 2, "each stream gets its share: {got:?}");
    }
    let rest = m.read_messages("g", Some(100), None).await.unwrap();
    assert_eq!(rest.len(), 6);
    for x in got.iter().chain(&rest) {
        assert!(m.acknowledge(x, "g").await.unwrap());
    }

    // A blocking read wakes on the last stream's message.
    let reader = cluster_manager(&cluster, ns, "c2").await;
    let last = streams[2].clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let got = reader
            .read_messages("g", Some(10), Some(Duration::from_secs(10)))
            .await
            .unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.send_message(last.as_str(), json!({"wake": true}), None)
        .await
        .unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].stream, last);
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");

    // Listing and deleting reach every master.
    let listed = m.list_streams().await.unwrap();
    for s in &streams {
        assert!(listed.iter().any(|l| l.name == *s), "{s} in {listed:?}");
    }
    let deleted = m.backend().delete_namespace(ns).await.unwrap();
    assert!(deleted >= 4, "streams and registry: {deleted}");
    for node in cluster.nodes() {
        let keys = cli(node.port(), &["--scan", "--pattern", &format!("{ns}:*")]);
        assert!(keys.is_empty(), "left on {}: {keys}", node.port());
    }
}

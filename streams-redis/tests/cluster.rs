//! The private Redis Cluster fixture: three masters with a replica each,
//! every slot served, keys routed by slot (hash tags included), and every
//! node stopped when the cluster is dropped.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use streams_core::{Manager, ManagerConfig, StreamError};
use streams_redis::RedisBackend;
use streams_redis::testing::{RedisCluster, answers_ping};

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

/// The redis backend talks to one server: pointed at a cluster node, a
/// manager refuses to start rather than fail later on other nodes' keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_refuses_a_cluster_node_clearly() {
    let cluster = RedisCluster::start(3, 0).expect("redis-server and redis-cli on PATH");
    let port = cluster.nodes()[0].port();
    let backend = RedisBackend::connect(&cluster.urls()[0]).await.unwrap();
    let m = Manager::new(backend, ManagerConfig::default()).unwrap();
    let got = m.send_message("jobs", json!({"n": 1}), None).await;
    match &got {
        Err(StreamError::Unsupported { feature, reason }) => {
            assert_eq!(feature, "Redis Cluster");
            assert!(reason.contains("MOVED"), "{reason}");
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

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

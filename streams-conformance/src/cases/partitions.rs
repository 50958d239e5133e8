//! Partitioned streams: routing by key, groups over every partition, and
//! growing the partition count.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;
use streams_core::backend::Add;
use streams_core::{GroupStart, PartitionedStream, StreamError};

use crate::assert_err;
use crate::support::{TestContext, entries, read_n};

/// Keyed sends go to the key's partition (`crc32(key) % n`), every
/// partition is a stream of its own, a group created on the stream's name
/// reads them all, and every key's messages come out in the order sent,
/// each once.
pub async fn keyed_sends_keep_order_per_key(ctx: &TestContext) {
    let m = ctx.manager("a");
    let jobs = m.declare_partitions("jobs", 4).await.unwrap();
    assert_eq!(jobs.streams(), ["jobs", "jobs#1", "jobs#2", "jobs#3"]);
    ctx.create_group(&m, "g", &["jobs"]).await;
    let config = m.group_config("g").await.unwrap();
    assert_eq!(
        config.streams,
        jobs.streams(),
        "the group reads every partition"
    );

    let keys: Vec<String> = (0..12).map(|k| format!("key-{k}")).collect();
    let mut sent = 0;
    for seq in 0..15 {
        for key in &keys {
            m.send_keyed("jobs", key, json!({"key": key, "seq": seq}), None)
                .await
                .unwrap();
            sent += 1;
        }
    }
    // Stored where the key says, in order.
    for p in 0..4 {
        let stored = entries(&ctx.backend(), &ctx.key(&jobs.stream(p))).await;
        assert!(!stored.is_empty(), "12 keys leave no partition empty");
        for e in stored {
            let data: serde_json::Value =
                serde_json::from_slice(crate::support::field(&e.fields, "data").unwrap()).unwrap();
            let key = data["key"].as_str().unwrap();
            assert_eq!(jobs.partition_for_key(key), p, "{key} on partition {p}");
        }
    }
    // Read by two consumers: each key's messages in order, each once.
    let b = ctx.second_manager("b").await;
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen = HashSet::new();
    let mut got = 0;
    while got < sent {
        for reader in [&m, &b] {
            let batch = reader
                .read_messages("g", Some(7), Some(Duration::from_millis(50)))
                .await
                .unwrap();
            for msg in &batch {
                let key = msg.data["key"].as_str().unwrap().to_owned();
                let seq = msg.data["seq"].as_i64().unwrap();
                assert_eq!(msg.stream, jobs.stream_for_key(&key));
                let before = last.insert(key.clone(), seq);
                assert_eq!(before.map_or(0, |s| s + 1), seq, "{key} out of order");
                assert!(seen.insert((key, seq)), "delivered twice");
                assert!(reader.acknowledge(msg, "g").await.unwrap());
            }
            got += batch.len();
        }
    }
    assert_eq!(seen.len(), sent);
    assert!(
        m.read_messages("g", None, Some(Duration::ZERO))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Round-robin sends take the partitions in turn; a batch of keyed sends
/// returns its ids in the order given, each on its key's partition; a
/// stream never partitioned is one partition, itself.
pub async fn round_robin_and_keyed_batches(ctx: &TestContext) {
    let m = ctx.manager("a");
    let plain = m.partitioned_stream("plain").await.unwrap();
    assert_eq!(plain.partitions(), 1);
    m.send_keyed("plain", "k", json!({"n": 1}), None)
        .await
        .unwrap();
    assert_eq!(entries(&ctx.backend(), &ctx.key("plain")).await.len(), 1);

    let jobs = m.declare_partitions("jobs", 3).await.unwrap();
    for n in 0..9 {
        m.send_round_robin("jobs", json!({"n": n}), None)
            .await
            .unwrap();
    }
    for p in 0..3 {
        let stored = entries(&ctx.backend(), &ctx.key(&jobs.stream(p))).await;
        assert_eq!(stored.len(), 3, "partition {p}");
    }
    let items: Vec<(String, serde_json::Value)> = (0..20)
        .map(|n| (format!("k{}", n % 5), json!({"n": n})))
        .collect();
    let ids = m
        .send_batch_keyed("jobs", items.clone(), None)
        .await
        .unwrap();
    assert_eq!(ids.len(), 20);
    for ((key, data), id) in items.iter().zip(&ids) {
        let stored = entries(&ctx.backend(), &ctx.key(&jobs.stream_for_key(key))).await;
        let entry = stored.iter().find(|e| e.id.as_str() == id);
        let entry = entry.unwrap_or_else(|| panic!("{id} of {key} on its partition"));
        let stored: serde_json::Value =
            serde_json::from_slice(crate::support::field(&entry.fields, "data").unwrap()).unwrap();
        assert_eq!(&stored, data);
    }
    assert_eq!(
        m.partitioned_streams().await.unwrap(),
        vec![PartitionedStream::new("jobs", 3).unwrap()]
    );
}

/// Growing a stream's partitions creates every registered group on the new
/// partitions before the count is recorded: a manager that finds the group
/// by name afterwards reads them, and nothing sent there is missed.
/// Partitions are never removed, and bad counts and names are refused.
pub async fn partitions_grow_and_groups_follow(ctx: &TestContext) {
    let m = ctx.manager("a");
    m.declare_partitions("jobs", 2).await.unwrap();
    ctx.create_group(&m, "g", &["jobs", "other"]).await;
    assert_eq!(
        m.group_config("g").await.unwrap().streams,
        ["jobs", "jobs#1", "other"]
    );
    // A group that starts at new entries gets the new partitions too.
    m.create_consumer_group(&ctx.group("late", &["jobs"]).with_start(GroupStart::New))
        .await
        .unwrap();
    // Sent there by name is refused: no group reads it yet.
    assert_err!(
        m.send_message("jobs#3", json!({"key": "early"}), None)
            .await,
        StreamError::InvalidName { .. }
    );
    // Another client may write there all the same: that stream is not
    // taken over as a partition, entries and all.
    let early_key = ctx.key("jobs#3");
    ctx.backend()
        .add(Add::new(
            early_key.clone(),
            crate::support::fields(&[("data", br#"{"key":"early"}"#)]),
        ))
        .await
        .unwrap();
    assert_err!(
        m.declare_partitions("jobs", 4).await,
        StreamError::Config { .. }
    );
    assert_eq!(m.partitioned_stream("jobs").await.unwrap().partitions(), 2);
    ctx.backend().delete_keys(&[early_key]).await.unwrap();
    // A group that reads one partition by its name keeps to it.
    ctx.create_group(&m, "one", &["jobs#1"]).await;
    let grown = m.declare_partitions("jobs", 4).await.unwrap();
    assert_eq!(m.group_config("one").await.unwrap().streams, ["jobs#1"]);
    assert_eq!(
        m.group_config("late").await.unwrap().streams,
        ["jobs", "jobs#1", "jobs#2", "jobs#3"]
    );
    assert_eq!(
        m.group_config("g").await.unwrap().streams,
        ["jobs", "jobs#1", "jobs#2", "jobs#3", "other"]
    );
    // Same count again: nothing changes.
    m.declare_partitions("jobs", 4).await.unwrap();
    assert_err!(
        m.declare_partitions("jobs", 3).await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.declare_partitions("jobs", 0).await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.declare_partitions("jobs#2", 2).await,
        StreamError::InvalidName { .. }
    );
    assert_err!(
        m.declare_partitions("xnai:partitions", 2).await,
        StreamError::InvalidName { .. }
    );
    assert_err!(
        m.send_message("xnai:partitions", json!({}), None).await,
        StreamError::InvalidName { .. }
    );

    // Another process: finds the count and the group, and reads the new
    // partitions.
    let b = ctx.second_manager("b").await;
    assert_eq!(b.partitioned_stream("jobs").await.unwrap(), grown);
    let mut expected = HashSet::new();
    for n in 0..40 {
        let key = format!("k{n}");
        b.send_keyed("jobs", &key, json!({"key": key}), None)
            .await
            .unwrap();
        expected.insert(key);
    }
    let used: HashSet<u32> = expected
        .iter()
        .map(|k| grown.partition_for_key(k))
        .collect();
    assert!(used.contains(&2) || used.contains(&3), "{used:?}");
    let got = read_n(&b, "g", 40, Duration::from_secs(5)).await;
    for msg in &got {
        assert!(msg.data.contains_key("key"), "{msg:?}");
    }
    let keys: HashSet<String> = got
        .iter()
        .map(|msg| msg.data["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, expected);
    // Listed streams show each partition, named as such.
    let listed: HashSet<String> = b
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for p in grown.streams() {
        assert!(listed.contains(&p), "{p} in {listed:?}");
    }
    assert!(!listed.contains("xnai:partitions"), "{listed:?}");
}

/// A consumer that is already reading a group follows partitions added by
/// another process, without a restart: within
/// `ManagerConfig::refresh_interval` (zero here) its reads take in the new
/// partitions, and what it had in hand stays its own.
pub async fn running_consumers_follow_grown_partitions(ctx: &TestContext) {
    let admin = ctx.manager("admin");
    admin.declare_partitions("jobs", 2).await.unwrap();
    ctx.create_group(&admin, "g", &["jobs"]).await;
    let worker = ctx
        .second_manager_with(ctx.config("worker").with_refresh_interval(Duration::ZERO))
        .await;
    admin
        .send_keyed("jobs", "first", json!({"key": "first"}), None)
        .await
        .unwrap();
    let held = read_n(&worker, "g", 1, Duration::from_secs(5)).await;

    let grown = admin.declare_partitions("jobs", 6).await.unwrap();
    let mut expected = HashSet::new();
    for n in 0..30 {
        let key = format!("k{n}");
        admin
            .send_keyed("jobs", &key, json!({"key": key}), None)
            .await
            .unwrap();
        expected.insert(key);
    }
    assert!(
        expected.iter().any(|k| grown.partition_for_key(k) >= 2),
        "some keys land on the new partitions"
    );
    let got = read_n(&worker, "g", 30, Duration::from_secs(5)).await;
    let keys: HashSet<String> = got
        .iter()
        .map(|m| m.data["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, expected);
    assert!(worker.acknowledge(&held[0], "g").await.unwrap());
    assert_eq!(worker.acknowledge_many(&got, "g").await.unwrap(), 30);
}

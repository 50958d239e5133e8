//! The group registry: groups found by name, listed, and recreated when lost.

use std::time::Duration;

use serde_json::json;
use streams_core::backend::{Add, ReadGroup};
use streams_core::{GroupStart, StreamError};

use crate::assert_err;
use crate::support::{TestContext, fields, ids, pending_all, read_n, read_now, send_n};

/// A group created by one manager is found by name alone by a second
/// manager on another connection to the same backend, with the same
/// configuration, and works there: reading and acknowledging.
pub async fn group_found_by_name_from_second_manager(ctx: &TestContext) {
    let a = ctx.manager("a");
    let cfg = ctx
        .group("agent_wavefront", &["xnai:agent_bus", "xnai:task_updates"])
        .with_batch_size(7)
        .with_claim_idle(Duration::from_millis(1234));
    a.create_consumer_group(&cfg).await.unwrap();
    let sent_bus = a
        .send_message("xnai:agent_bus", json!({"task": 1}), None)
        .await
        .unwrap();
    let sent_updates = a
        .send_message("xnai:task_updates", json!({"task": 2}), None)
        .await
        .unwrap();

    let b = ctx.second_manager("b").await;
    assert!(b.consumer_groups().is_empty());
    assert_eq!(b.group_config("agent_wavefront").await.unwrap(), cfg);
    let mut got = read_n(&b, "agent_wavefront", 2, Duration::from_secs(5)).await;
    got.sort_by(|x, y| x.stream.cmp(&y.stream));
    assert_eq!(got[0].stream, "xnai:agent_bus");
    assert_eq!(got[0].id, sent_bus);
    assert_eq!(got[1].stream, "xnai:task_updates");
    assert_eq!(got[1].id, sent_updates);
    assert_eq!(&*got[0].delivery.as_ref().unwrap().consumer, "b");
    assert_eq!(b.consumer_groups(), ["agent_wavefront"]);

    assert_eq!(
        b.acknowledge_many(&got, "agent_wavefront").await.unwrap(),
        2
    );
    assert!(read_now(&a, "agent_wavefront").await.is_empty());
}

/// The registry lists every created group with its configuration (through
/// the manager, sorted by name, and through the backend's hash), and an
/// unknown name is absent.
pub async fn registry_lists_groups(ctx: &TestContext) {
    let a = ctx.manager("a");
    let g2 = ctx.group("g2", &["s1", "s2"]).with_batch_size(3);
    let g1 = ctx.group("g1", &["s1"]);
    a.create_consumer_group(&g2).await.unwrap();
    a.create_consumer_group(&g1).await.unwrap();
    let b = ctx.second_manager("b").await;
    assert_eq!(
        b.registered_groups().await.unwrap(),
        [g1.clone(), g2.clone()]
    );

    let backend = ctx.backend();
    let registry = a.keys().registry().to_owned();
    assert_eq!(registry, ctx.key("xnai:groups"));
    let mut listed = backend.registry_list(&registry).await.unwrap();
    listed.sort();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].0, "g1");
    assert_eq!(listed[1].0, "g2");
    let parsed: streams_core::ConsumerGroupConfig = serde_json::from_str(&listed[1].1).unwrap();
    assert_eq!(parsed, g2);
    assert_eq!(
        backend
            .registry_get(&registry, "g1")
            .await
            .unwrap()
            .as_deref(),
        Some(listed[0].1.as_str())
    );
    assert_eq!(backend.registry_get(&registry, "nope").await.unwrap(), None);
    assert_eq!(
        backend
            .registry_get(&ctx.key("no-such-hash"), "g1")
            .await
            .unwrap(),
        None
    );
    assert!(
        backend
            .registry_list(&ctx.key("no-such-hash"))
            .await
            .unwrap()
            .is_empty()
    );
    // A deleted group leaves a mark that lists show as deleted, not as a group.
    assert!(a.delete_consumer_group("g1").await.unwrap());
    assert_eq!(
        b.registered_groups().await.unwrap(),
        std::slice::from_ref(&g2)
    );
    let mark = backend
        .registry_get(&registry, "g1")
        .await
        .unwrap()
        .unwrap();
    let mark: serde_json::Value = serde_json::from_str(&mark).unwrap();
    assert!(mark["deleted_at"].is_string(), "{mark}");
    // Creating it again replaces the mark.
    a.create_consumer_group(&g1).await.unwrap();
    assert_eq!(
        b.registered_groups().await.unwrap(),
        [g1.clone(), g2.clone()]
    );
    assert_err!(
        b.group_config("nope").await,
        StreamError::GroupNotFound { ref group } if group == "nope"
    );
}

/// A group that is registered but missing on the server (its streams were
/// deleted, or the server restarted without persistence) is recreated on
/// `NOGROUP` at id `0`, so entries added meanwhile are delivered, even when
/// the registered group was meant to start at new entries; this is counted.
pub async fn lost_group_is_recreated_from_registry(ctx: &TestContext) {
    let backend = ctx.backend();
    let a = ctx.manager("a");
    // Another producer wrote to the stream; the group exists only in the registry.
    let mut written = Vec::new();
    for i in 0..2 {
        let id = backend
            .add(Add::new(
                ctx.key("s"),
                fields(&[("data", format!("{{\"i\":{i}}}").as_bytes())]),
            ))
            .await
            .unwrap();
        written.push(id);
    }
    let cfg = ctx.group("g", &["s"]).with_start(GroupStart::New);
    backend
        .registry_put(
            a.keys().registry(),
            "g",
            &serde_json::to_string(&cfg).unwrap(),
        )
        .await
        .unwrap();
    let keys = [ctx.key("s")];
    assert_err!(
        backend
            .read_group(ReadGroup::new("g", "a", &keys, 10))
            .await,
        StreamError::NoGroup { .. }
    );

    let got = read_n(&a, "g", 2, Duration::from_secs(5)).await;
    assert_eq!(ids(&got), written);
    assert_eq!(got[1].data["i"], 1);
    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.groups_recreated, 1);
    let groups = backend.groups(&ctx.key("s")).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "g");
    assert_eq!(pending_all(&backend, &ctx.key("s"), "g").await.len(), 2);
    // Once recreated, the group works as usual.
    let more = send_n(&a, "s", 1).await;
    assert_eq!(ids(&read_n(&a, "g", 1, Duration::from_secs(5)).await), more);
    assert_eq!(a.get_stats().await.unwrap().groups_recreated, 1);
}

/// A group destroyed on a stream that survived (an operator's `XGROUP
/// DESTROY`) is recreated after the last entry this manager saw delivered,
/// not at the beginning: its history is not delivered again; entries never
/// delivered are.
pub async fn destroyed_group_resumes_after_last_delivered(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 5).await;
    let first = a
        .read_messages("g", Some(3), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(ids(&first), sent[..3]);
    assert_eq!(a.acknowledge_many(&first, "g").await.unwrap(), 3);
    let backend = ctx.backend();
    assert!(backend.destroy_group(&ctx.key("s"), "g").await.unwrap());

    let rest = read_n(&a, "g", 2, Duration::from_secs(5)).await;
    assert_eq!(ids(&rest), sent[3..], "the history is not delivered again");
    assert!(read_now(&a, "g").await.is_empty());
    assert_eq!(a.get_stats().await.unwrap().groups_recreated, 1);
}

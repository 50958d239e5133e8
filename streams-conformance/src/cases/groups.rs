//! Consumer groups: creating them, their start position, several streams.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use streams_core::{ConsumerGroupConfig, GroupStart, StreamError};

use streams_core::backend::{CreateGroup, StartAt};

use crate::assert_err;
use crate::support::{Fault, Meddle, TestContext, group_names, ids, read_n, read_now, send_n};

/// Creating a group twice is not an error; the backend's `create_group`
/// reports `true` the first time and `false` after, and creates the stream.
pub async fn create_group_is_idempotent(ctx: &TestContext) {
    let m = ctx.manager("a");
    let cfg = ctx.group("g", &["s"]);
    m.create_consumer_group(&cfg).await.unwrap();
    m.create_consumer_group(&cfg).await.unwrap();
    assert_eq!(m.consumer_groups(), ["g"]);

    let b = ctx.backend();
    let key = ctx.key("fresh");
    assert!(
        b.create_group(CreateGroup::new(&key, "x", StartAt::Beginning))
            .await
            .unwrap()
    );
    assert!(
        !b.create_group(CreateGroup::new(&key, "x", StartAt::Beginning))
            .await
            .unwrap()
    );
    assert!(
        !b.create_group(CreateGroup::new(&key, "x", StartAt::End))
            .await
            .unwrap()
    );
    assert_eq!(b.len(&key).await.unwrap(), 0);
    let groups = b.groups(&key).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "x");
    assert_eq!(groups[0].pending, 0);
    assert_eq!(groups[0].consumers, 0);

    // Messages sent before the second create are still delivered once.
    send_n(&m, "s", 3).await;
    m.create_consumer_group(&cfg).await.unwrap();
    let got = read_n(&m, "g", 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    assert!(read_now(&m, "g").await.is_empty());
}

/// Creating a group again with another configuration replaces it: the
/// creating manager and managers that look it up later use the new one.
pub async fn create_group_replaces_config(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s1"]).await;
    let wider = ctx.group("g", &["s1", "s2"]).with_batch_size(7);
    m.create_consumer_group(&wider).await.unwrap();
    assert_eq!(m.group_config("g").await.unwrap(), wider);
    let other = ctx.second_manager("b").await;
    assert_eq!(other.group_config("g").await.unwrap(), wider);

    let id = m
        .send_message("s2", json!({"via": "s2"}), None)
        .await
        .unwrap();
    let got = read_n(&m, "g", 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&got), [id]);
    assert_eq!(got[0].stream, "s2");
}

/// A group started at the beginning (the default) gets entries sent before
/// it existed; one started with `GroupStart::New` gets only later ones.
pub async fn group_start_controls_old_entries(ctx: &TestContext) {
    let m = ctx.manager("a");
    let old = send_n(&m, "s", 2).await;
    ctx.create_group(&m, "from_start", &["s"]).await;
    m.create_consumer_group(&ctx.group("only_new", &["s"]).with_start(GroupStart::New))
        .await
        .unwrap();
    let new = m
        .send_message("s", json!({"late": true}), None)
        .await
        .unwrap();

    let all = read_n(&m, "from_start", 3, Duration::from_secs(5)).await;
    assert_eq!(ids(&all), [old[0].clone(), old[1].clone(), new.clone()]);
    let later = read_n(&m, "only_new", 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&later), [new]);
    assert!(read_now(&m, "only_new").await.is_empty());
}

/// A group over several streams delivers the messages of each, each with
/// the right `stream`, in order per stream; `count` is the most one read
/// returns over all of them.
pub async fn group_over_several_streams(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s1", "s2", "s3"]).await;
    let mut sent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (stream, n) in [("s1", 4), ("s2", 3), ("s3", 1)] {
        for i in 0..n {
            let id = m
                .send_message(stream, json!({"stream": stream, "i": i}), None)
                .await
                .unwrap();
            sent.entry(stream).or_default().push(id);
        }
    }
    // Five over the three streams (and the group's retries).
    let first = m
        .read_messages("g", Some(5), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(first.len(), 5, "{first:?}");
    let rest = read_n(&m, "g", 3, Duration::from_secs(5)).await;
    let mut got: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for msg in first.iter().chain(&rest) {
        assert_eq!(msg.data["stream"], msg.stream.as_str(), "{msg:?}");
        let stream = ["s1", "s2", "s3"]
            .into_iter()
            .find(|s| *s == msg.stream)
            .expect("a stream of the group");
        got.entry(stream).or_default().push(msg.id.clone());
    }
    assert_eq!(got, sent);
    assert_eq!(m.acknowledge_many(&first, "g").await.unwrap(), 5);
    assert_eq!(m.acknowledge_many(&rest, "g").await.unwrap(), 3);
}

/// Bad group configurations are refused with typed errors before anything
/// is created: no streams or a repeated stream or batch size 0 give
/// `Config`, bad names give `InvalidName`.
pub async fn invalid_group_config_is_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    assert_err!(
        m.create_consumer_group(&ConsumerGroupConfig::new("g", Vec::<String>::new()))
            .await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.create_consumer_group(&ConsumerGroupConfig::new("g", ["s", "s"]))
            .await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.create_consumer_group(&ctx.group("g", &["s"]).with_batch_size(0))
            .await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.create_consumer_group(&ctx.group("bad group", &["s"]))
            .await,
        StreamError::InvalidName { kind: "group", .. }
    );
    assert_err!(
        m.create_consumer_group(&ctx.group("g", &["ok", "bad{stream}"]))
            .await,
        StreamError::InvalidName { kind: "stream", .. }
    );
    assert!(m.consumer_groups().is_empty());
    assert!(m.registered_groups().await.unwrap().is_empty());
    assert_eq!(ctx.backend().len(&ctx.key("ok")).await.unwrap(), 0);
    assert!(group_names(&ctx.backend(), &ctx.key("ok")).await.is_empty());
}

/// No group name reaches another group's keys: groups `g` and `g:ready`
/// (whose retry keys once collided) both read, retry and dead-letter on one
/// stream, each its own messages.
pub async fn group_names_never_reach_each_others_keys(ctx: &TestContext) {
    let m = ctx.manager_with(
        ctx.config("a")
            .with_dlq(streams_core::DlqConfig::default().with_retry_backoff(Duration::ZERO)),
    );
    let names = ["g", "g:ready", "g:schedule", "ready:g"];
    for name in names {
        ctx.create_group(&m, name, &["s"]).await;
    }
    let sent = send_n(&m, "s", 1).await;
    for name in names {
        let got = read_n(&m, name, 1, Duration::from_secs(5)).await;
        assert_eq!(ids(&got), sent, "{name}");
        assert!(m.retry_message(&got[0]).await.unwrap(), "{name}");
    }
    for name in names {
        let copy = read_n(&m, name, 1, Duration::from_secs(5)).await;
        assert_eq!(copy[0].retry_count, 1, "{name}");
        assert!(copy[0].delivery.as_ref().unwrap().from_retry, "{name}");
        assert!(m.acknowledge(&copy[0], name).await.unwrap(), "{name}");
        assert!(
            read_now(&m, name).await.is_empty(),
            "{name} got another's retry"
        );
    }
    let keys: BTreeSet<String> = names
        .iter()
        .flat_map(|g| {
            [
                m.keys().retry_schedule("s", g),
                m.keys().retry_ready("s", g),
            ]
        })
        .collect();
    assert_eq!(
        keys.len(),
        2 * names.len(),
        "every retry key is a group's own"
    );
    assert_eq!(m.get_stats().await.unwrap().promote_failures, 0);
}

/// Deleting a group removes it from its streams (with its pending list), its
/// retry keys and the registry; the streams and other groups stay.
pub async fn delete_group_removes_it_everywhere(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s1", "s2"]).await;
    ctx.create_group(&m, "other", &["s1"]).await;
    send_n(&m, "s1", 2).await;
    let got = read_n(&m, "g", 2, Duration::from_secs(5)).await;
    assert!(m.retry_message(&got[0]).await.unwrap());
    let backend = ctx.backend();
    assert!(m.delete_consumer_group("g").await.unwrap());
    for stream in ["s1", "s2"] {
        let groups = group_names(&backend, &ctx.key(stream)).await;
        assert!(!groups.contains(&"g".to_owned()), "{stream}: {groups:?}");
        assert_eq!(
            backend
                .schedule_len(&m.keys().retry_schedule(stream, "g"))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            backend
                .groups(&m.keys().retry_ready(stream, "g"))
                .await
                .unwrap()
                .len(),
            0
        );
    }
    assert_eq!(backend.len(&ctx.key("s1")).await.unwrap(), 2);
    assert_eq!(m.registered_groups().await.unwrap().len(), 1);
    assert_err!(
        m.read_messages("g", None, None).await,
        StreamError::GroupNotFound { .. }
    );
    let other = ctx.second_manager("b").await;
    assert_err!(
        other.group_config("g").await,
        StreamError::GroupNotFound { .. }
    );
    assert_eq!(
        read_n(&other, "other", 2, Duration::from_secs(5))
            .await
            .len(),
        2
    );
    assert_err!(
        m.delete_consumer_group("g").await,
        StreamError::GroupNotFound { .. }
    );
}

/// A group deleted while another manager still reads it stays deleted,
/// whether or not other groups are registered: that manager's next read
/// fails with `GroupNotFound` and recreates nothing, and it forgets the
/// group.
pub async fn deleted_group_stays_deleted(ctx: &TestContext) {
    // The only group of the namespace.
    let admin = ctx.manager("admin");
    ctx.create_group(&admin, "solo", &["t"]).await;
    let worker = ctx.second_manager("w").await;
    send_n(&admin, "t", 1).await;
    read_n(&worker, "solo", 1, Duration::from_secs(5)).await;
    assert!(admin.delete_consumer_group("solo").await.unwrap());
    send_n(&admin, "t", 1).await;
    assert_err!(
        worker.read_messages("solo", None, Some(Duration::from_millis(20))).await,
        StreamError::GroupNotFound { ref group } if group == "solo"
    );
    assert!(group_names(&ctx.backend(), &ctx.key("t")).await.is_empty());
    assert!(admin.registered_groups().await.unwrap().is_empty());

    // One group among others.
    ctx.create_group(&admin, "g", &["s"]).await;
    ctx.create_group(&admin, "other", &["s"]).await;
    send_n(&admin, "s", 1).await;
    read_n(&worker, "g", 1, Duration::from_secs(5)).await;
    assert!(admin.delete_consumer_group("g").await.unwrap());
    send_n(&admin, "s", 1).await;
    assert_err!(
        worker.read_messages("g", None, Some(Duration::from_millis(20))).await,
        StreamError::GroupNotFound { ref group } if group == "g"
    );
    assert!(!worker.consumer_groups().contains(&"g".to_owned()));
    assert_eq!(group_names(&ctx.backend(), &ctx.key("s")).await, ["other"]);
    assert_eq!(admin.registered_groups().await.unwrap().len(), 1);
    assert_eq!(worker.get_stats().await.unwrap().groups_recreated, 0);
}

/// A reader that finds the group missing while `delete_consumer_group` is
/// still running (the group destroyed on its streams, the registry not yet
/// updated, had the registry been updated last) does not bring the group
/// back: the deletion marks the registry first.
pub async fn delete_racing_a_reader_stays_deleted(ctx: &TestContext) {
    let admin = ctx.manager_with(ctx.config("admin"));
    ctx.create_group(&admin, "g", &["s"]).await;
    let worker = ctx.second_manager("w").await;
    send_n(&admin, "s", 1).await;
    read_n(&worker, "g", 1, Duration::from_secs(5)).await;
    // The deletion pauses after destroying the group on the stream.
    let slow = Meddle::wrap(
        ctx.second_backend().await,
        "delete_keys",
        Fault::Delay(Duration::from_millis(300)),
    );
    let deleting = streams_core::Manager::new(slow, ctx.config("admin2")).unwrap();
    let deletion = tokio::spawn(async move { deleting.delete_consumer_group("g").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_n(&admin, "s", 1).await;
    assert_err!(
        worker
            .read_messages("g", None, Some(Duration::from_millis(20)))
            .await,
        StreamError::GroupNotFound { .. }
    );
    assert!(deletion.await.unwrap().unwrap());
    assert!(group_names(&ctx.backend(), &ctx.key("s")).await.is_empty());
    assert!(admin.registered_groups().await.unwrap().is_empty());
}

/// After the server lost everything (streams, groups, registry), every
/// group comes back when its workers read, whichever comes back first, and
/// nothing sent since is skipped.
pub async fn every_lost_group_comes_back(ctx: &TestContext) {
    let m = ctx.manager("w");
    ctx.create_group(&m, "g1", &["s"]).await;
    ctx.create_group(&m, "g2", &["s"]).await;
    send_n(&m, "s", 1).await;
    read_n(&m, "g1", 1, Duration::from_secs(5)).await;
    read_n(&m, "g2", 1, Duration::from_secs(5)).await;
    let other = ctx.second_manager("v").await;
    other.group_config("g2").await.unwrap();
    // A restart without persistence.
    let keys = m.keys();
    let lost = [
        ctx.key("s"),
        keys.registry().to_owned(),
        keys.retry_schedule("s", "g1"),
        keys.retry_ready("s", "g1"),
        keys.retry_schedule("s", "g2"),
        keys.retry_ready("s", "g2"),
    ];
    ctx.backend().delete_keys(&lost).await.unwrap();
    // A restart takes time: ids of the new stream are later than the old.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let sent = send_n(&m, "s", 1).await;
    let one = read_n(&m, "g1", 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&one), sent);
    let two = read_n(&other, "g2", 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&two), sent, "the second group comes back too");
    let mut names: Vec<String> = m
        .registered_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    names.sort();
    assert_eq!(names, ["g1", "g2"]);
}

/// Pruning removes the group's consumers that have been idle at least the
/// given time and hold nothing; busy or recent consumers, and the pruning
/// manager's own consumer, stay; consumers holding work are reported.
pub async fn prune_removes_only_idle_empty_consumers(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let holder = ctx.second_manager("holder").await;
    let held = read_n(&holder, "g", 1, Duration::from_secs(5)).await;
    send_n(&a, "s", 1).await;
    let done = ctx.second_manager("done").await;
    let finished = read_n(&done, "g", 1, Duration::from_secs(5)).await;
    assert!(done.acknowledge(&finished[0], "g").await.unwrap());
    assert_eq!(ids(&held).len(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // `a` itself never read: it is not a consumer yet; make it one.
    send_n(&a, "s", 1).await;
    let own = read_n(&a, "g", 1, Duration::from_secs(5)).await;
    assert!(a.acknowledge(&own[0], "g").await.unwrap());

    let report = a
        .prune_consumers("g", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        report.removed.is_empty() && report.kept.is_empty(),
        "{report:?}"
    );
    let report = a
        .prune_consumers("g", Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(report.removed, ["done"]);
    assert_eq!(report.kept, [("holder".to_owned(), 1)]);
    let names: BTreeSet<String> = ctx
        .backend()
        .consumers(&ctx.key("s"), "g")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "holder"].map(str::to_owned).into());
    assert_eq!(a.get_stats().await.unwrap().consumers_pruned, 1);
}

//! Basics: initializing, sending, and what a sent message looks like.

use std::time::{Duration, SystemTime};

use serde_json::json;
use streams_core::backend::Feature;
use streams_core::{Durability, Manager, MessageStatus, StreamError};

use crate::assert_err;
use crate::support::{TestContext, entries, field, field_str, ids, read_n, rfc3339};

/// `send_message` returns the id of the entry it added, and the entry holds
/// the payload as JSON under `data`.
pub async fn send_returns_id(ctx: &TestContext) {
    let m = ctx.manager("a");
    let id = m.send_message("s", json!({"k": 1}), None).await.unwrap();
    assert!(!id.is_empty());
    let stored = entries(&ctx.backend(), &ctx.key("s")).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    let data: serde_json::Value =
        serde_json::from_slice(field(&stored[0].fields, "data").unwrap()).unwrap();
    assert_eq!(data, json!({"k": 1}));
    assert!(field_str(&stored[0].fields, "mid").is_some_and(|m| !m.is_empty()));
    assert_eq!(field(&stored[0].fields, "retry_count"), None);
}

/// A message read back has the sent payload (nested values included), its
/// stream, a creation time, retry count 0, status pending and no error.
pub async fn send_round_trips_payload(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let payload = json!({
        "agent_id": "cline-1",
        "task": {"id": "R003-1", "steps": [1, 2.5, null, true, "x"], "meta": {}},
        "unicode": "héllo ✓",
    });
    let before = SystemTime::now() - Duration::from_secs(1);
    let id = m.send_message("s", payload.clone(), None).await.unwrap();
    let after = SystemTime::now() + Duration::from_secs(1);
    let got = read_n(&m, "g", 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let msg = &got[0];
    assert_eq!(msg.id, id);
    assert_eq!(msg.stream, "s");
    assert_eq!(serde_json::Value::Object(msg.data.clone()), payload);
    assert_eq!(msg.retry_count, 0);
    assert_eq!(msg.status, MessageStatus::Pending);
    assert_eq!(msg.error, None);
    assert!(msg.mid.is_some());
    assert!(msg.raw.is_none());
    let ts = rfc3339(&msg.timestamp);
    assert!(ts >= before && ts <= after, "timestamp {}", msg.timestamp);
    let delivery = msg.delivery.as_ref().expect("delivery details");
    assert_eq!(&*delivery.group, "g");
    assert_eq!(&*delivery.consumer, "a");
    assert!(!delivery.from_retry);
}

/// `send_batch` adds every message in the order given, each with its own
/// id, and a reader gets them in that order.
pub async fn send_batch_preserves_order(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let items: Vec<_> = (0..25).map(|i| json!({"i": i})).collect();
    let sent = m.send_batch("s", items, None).await.unwrap();
    assert_eq!(sent.len(), 25);
    let unique: std::collections::HashSet<&String> = sent.iter().collect();
    assert_eq!(unique.len(), 25, "{sent:?}");
    let stored = entries(&ctx.backend(), &ctx.key("s")).await;
    assert_eq!(
        stored.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        sent
    );
    let got = read_n(&m, "g", 25, Duration::from_secs(5)).await;
    assert_eq!(ids(&got), sent);
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(msg.data["i"], i);
    }
    let mids: std::collections::HashSet<_> = got.iter().map(|m| m.mid.clone()).collect();
    assert_eq!(mids.len(), 25, "every message has its own mid");
    assert_eq!(
        m.send_batch("s", Vec::new(), None).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(m.get_stats().await.unwrap().messages_sent, 25);
}

/// Durable sends lose track of nothing. A backend without
/// [`Feature::DurableSends`] has the manager refused when it is built; on
/// one with it, a send is confirmed (its ids are in the stream) or written
/// but not confirmed in time (`DurabilityNotConfirmed`, carrying exactly
/// the ids written). The suite's servers have no replicas, so asking for
/// more than exist must never be confirmed.
pub async fn durable_sends_are_confirmed_or_refused(ctx: &TestContext) {
    let wanted = Durability::replicas(64).with_timeout(Duration::from_millis(50));
    let config = ctx.config("a").with_durability(wanted);
    if !ctx.supports(Feature::DurableSends) {
        // Refused when the manager is built, before anything is sent.
        match Manager::new(ctx.backend(), config) {
            Err(StreamError::Unsupported { feature, .. }) => assert_eq!(feature, "durable send"),
            other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
        }
        assert!(entries(&ctx.backend(), &ctx.key("s")).await.is_empty());
        return;
    }
    let m = ctx.manager_with(config);
    for batch in [1usize, 3] {
        let before = entries(&ctx.backend(), &ctx.key("s")).await;
        let got = if batch == 1 {
            m.send_message("s", json!({"i": 0}), None)
                .await
                .map(|id| vec![id])
        } else {
            let items = (0..batch).map(|i| json!({"i": i})).collect();
            m.send_batch("s", items, None).await
        };
        let after = entries(&ctx.backend(), &ctx.key("s")).await;
        let added: Vec<String> = after[before.len()..]
            .iter()
            .map(|e| e.id.as_str().to_owned())
            .collect();
        match got {
            Ok(ids) => panic!("a send asking for 64 replicas was confirmed: {ids:?}"),
            Err(StreamError::DurabilityNotConfirmed {
                stream,
                ids,
                wanted_replicas,
                replicas,
                ..
            }) => {
                assert_eq!(stream, "s");
                assert_eq!((wanted_replicas, replicas < 64), (64, true));
                assert_eq!(ids, added, "the error names exactly what was written");
                assert_eq!(ids.len(), batch);
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    // Without durability the same manager configuration sends as ever.
    let plain = ctx.manager("b");
    plain
        .send_message("s", json!({"i": 9}), None)
        .await
        .unwrap();
}

/// `initialize` is idempotent, reports the consumer id it was given, and
/// marks the manager initialized; statistics read before it say so.
pub async fn initialize_is_idempotent(ctx: &TestContext) {
    let m = ctx.manager("cline-1");
    assert!(!m.is_initialized());
    let before = m.get_stats().await.unwrap();
    assert!(!before.initialized, "get_stats does not initialize");
    assert!(!m.is_initialized());
    m.initialize().await.unwrap();
    m.initialize().await.unwrap();
    assert!(m.is_initialized());
    let info = m.server_info().expect("server info after initialize");
    assert_eq!(info.backend, ctx.backend().name());
    assert_eq!(streams_core::StreamManager::consumer_id(&m), "cline-1");
    let stats = m.get_stats().await.unwrap();
    assert!(stats.initialized);
    assert_eq!(stats.consumer_id, "cline-1");
    assert_eq!(stats.messages_sent, 0);
    assert!(stats.consumer_groups.is_empty());
}

/// The whole API works through `Arc<dyn StreamManager>`: every method
/// reaches the manager with its arguments in place, and the conveniences of
/// `StreamManagerExt` work on it too.
pub async fn dyn_manager_runs_the_whole_api(ctx: &TestContext) {
    use futures::StreamExt;
    use streams_core::{StreamManager, StreamManagerExt};

    let m: std::sync::Arc<dyn StreamManager> = std::sync::Arc::new(ctx.second_manager("a").await);
    m.initialize().await.unwrap();
    assert_eq!(m.consumer_id(), "a");
    m.create_consumer_group(&ctx.group("g", &["s"]))
        .await
        .unwrap();
    let first = m
        .send_message("s", json!({"k": 1}), Some(1000))
        .await
        .unwrap();
    let mut sent = vec![first];
    sent.extend(
        m.send_batch(
            "s",
            vec![json!({"k": 2}), json!({"k": 3}), json!({"k": 4})],
            None,
        )
        .await
        .unwrap(),
    );
    let got = m
        .read_messages("g", Some(10), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(ids(&got), sent);
    assert_eq!(got[3].data["k"], 4);
    assert!(m.acknowledge(&got[0], "g").await.unwrap());
    assert_eq!(m.acknowledge_many(&got[1..2], "g").await.unwrap(), 1);
    assert!(m.touch(&got[2]).await.unwrap());
    assert_eq!(m.release(&[]).await.unwrap(), 0);
    assert!(m.retry_with_error(&got[2], "tool failed").await.unwrap());
    assert_err!(m.retry_message(&got[2]).await, StreamError::NotOwner { .. });
    m.send_to_dlq(&got[3], "bad", Some("g")).await.unwrap();
    let dead = m.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_letter.as_ref().unwrap().reason, "bad");
    let page = m.dlq_list(&streams_core::DlqQuery::new()).await.unwrap();
    assert_eq!(ids(&page.entries), ids(&dead));
    let shown = m.dlq_show(&dead[0].id, None).await.unwrap().unwrap();
    assert_eq!(shown.data["k"], 4);
    let counted = m.dlq_stats(&streams_core::DlqFilter::new()).await.unwrap();
    assert_eq!(counted.by_reason["bad"], 1);
    let everything = streams_core::DlqSelection::all();
    let plan = m
        .dlq_replay(&streams_core::DlqReplay::new(everything.clone()).dry_run(true))
        .await
        .unwrap();
    assert_eq!(plan.would_replay.len(), 1);
    let purge = m
        .dlq_purge(&streams_core::DlqPurge::new(everything).dry_run(true))
        .await
        .unwrap();
    assert_eq!(purge.would_remove.len(), 1);
    let streams = m.list_streams().await.unwrap();
    assert_eq!(
        streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["s"]
    );
    let held = m
        .list_pending(&streams_core::PendingFilter::new("g"))
        .await
        .unwrap();
    assert!(held.is_empty(), "every message was settled: {held:?}");
    let peeked = m
        .peek_messages(
            &streams_core::PeekQuery::new("s")
                .newest_first()
                .with_count(1),
        )
        .await
        .unwrap();
    assert_eq!(ids(&peeked), [sent[3].clone()]);
    let view = m.group_view("g", "s", &sent).await.unwrap();
    assert_eq!(view, vec![streams_core::EntryState::Done; 4]);
    assert_eq!(m.group_config("g").await.unwrap().streams, ["s"]);
    assert_eq!(m.registered_groups().await.unwrap().len(), 1);
    assert_eq!(m.promote_due_retries(Some("g")).await.unwrap(), 0);
    assert!(
        m.prune_consumers("g", Duration::from_secs(3600))
            .await
            .unwrap()
            .removed
            .is_empty()
    );
    assert!(
        m.claim_pending_messages("g", Some(Duration::ZERO))
            .await
            .unwrap()
            .is_empty()
    );
    let health = m.health().await.unwrap();
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.groups[0].streams[0].scheduled_retries, 1);
    assert_eq!(health.dlq_entries, 1);

    let mut subscription = m.subscribe("g");
    let copy = crate::support::within("retry copy", Duration::from_secs(5), subscription.next())
        .await
        .expect("an item")
        .unwrap();
    assert_eq!(copy.retry_count, 1);
    assert_eq!(copy.data["k"], 3);
    assert_eq!(copy.error.as_deref(), Some("tool failed"));
    assert!(m.acknowledge(&copy, "g").await.unwrap());
    drop(subscription);

    #[derive(serde::Serialize)]
    struct Update {
        k: u32,
    }
    m.send("t", &Update { k: 5 }, None).await.unwrap();
    assert_eq!(m.trim_stream("t", 1).await.unwrap(), 0);

    let stats = m.get_stats().await.unwrap();
    assert_eq!(
        (
            stats.messages_sent,
            stats.messages_read,
            stats.messages_acknowledged,
            stats.messages_retried,
            stats.messages_dead_lettered,
            stats.dlq_entries,
        ),
        (5, 5, 3, 1, 1, 1)
    );
    assert!(m.delete_consumer_group("g").await.unwrap());
    crate::assert_err!(
        m.read_messages("g", None, None).await,
        streams_core::StreamError::GroupNotFound { .. }
    );
    let scoped = m
        .scoped(|m| async move { m.send_message("s", json!({"k": 6}), None).await })
        .await
        .unwrap();
    assert!(!scoped.is_empty());
    crate::assert_err!(
        m.send_message("s", json!({}), None).await,
        streams_core::StreamError::Closed
    );
}

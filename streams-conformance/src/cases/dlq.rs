//! The dead-letter queue: provenance, acknowledgement, trimming, layouts.

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use streams_core::backend::Trim;
use streams_core::{DlqLayout, MessageStatus, StreamError, StreamMessage};

use crate::assert_err;
use crate::support::{
    TestContext, entries, field, field_str, pending_all, read_n, rfc3339, send_n,
};

/// `send_to_dlq` with a group writes one dead-letter entry carrying the
/// payload and its provenance (origin stream and id, group, consumer,
/// reason, failure time, deliveries) and acknowledges the original.
pub async fn dlq_move_acks_original(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let payload = json!({"task_id": "R003-1", "nested": {"x": [1, 2]}});
    let id = a.send_message("s", payload.clone(), None).await.unwrap();
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    let before = SystemTime::now() - Duration::from_secs(1);
    let reason = "Processing failed: timeout";
    let dlq_id = a.send_to_dlq(&msg, reason, Some("g")).await.unwrap();
    let after = SystemTime::now() + Duration::from_secs(1);

    let backend = ctx.backend();
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
    let dlq = entries(&backend, &a.keys().dlq("s")).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].id, dlq_id);
    let f = &dlq[0].fields;
    assert_eq!(field_str(f, "origin_stream"), Some("s"));
    assert_eq!(field_str(f, "origin_id"), Some(id.as_str()));
    assert_eq!(field_str(f, "group"), Some("g"));
    assert_eq!(field_str(f, "consumer"), Some("a"));
    assert_eq!(field_str(f, "reason"), Some(reason));
    assert_eq!(field_str(f, "deliveries"), Some("1"));
    assert_eq!(field_str(f, "mid"), msg.mid.as_deref());
    assert_eq!(field_str(f, "ts"), Some(msg.timestamp.as_str()));
    let failed_at = rfc3339(field_str(f, "failed_at").unwrap());
    assert!(failed_at >= before && failed_at <= after);
    let data: serde_json::Value = serde_json::from_slice(field(f, "data").unwrap()).unwrap();
    assert_eq!(data, payload);

    let dead = StreamMessage::from_entry("xnai:dlq", dlq[0].id.as_str(), f);
    assert_eq!(dead.status, MessageStatus::Dlq);
    assert_eq!(dead.error.as_deref(), Some(reason));
    let prov = dead.dead_letter.expect("provenance");
    assert_eq!(prov.origin_stream, "s");
    assert_eq!(prov.origin_id, id);
    assert_eq!(prov.group.as_deref(), Some("g"));
    assert_eq!(prov.consumer.as_deref(), Some("a"));
    assert_eq!(prov.deliveries, Some(1));

    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.dlq_entries, 1);
    assert_eq!(stats.messages_dead_lettered, 1);
    assert_eq!(stats.messages_failed, 1);
}

/// Without a group, `send_to_dlq` writes the dead-letter entry but leaves
/// the original pending: only a group's move acknowledges it.
pub async fn dlq_without_group_keeps_original_pending(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    a.send_to_dlq(&msg, "inspect me", None).await.unwrap();

    let backend = ctx.backend();
    let pending = pending_all(&backend, &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, msg.id);
    let dlq = entries(&backend, &a.keys().dlq("s")).await;
    assert_eq!(dlq.len(), 1);
    let prov = StreamMessage::from_entry("xnai:dlq", dlq[0].id.as_str(), &dlq[0].fields)
        .dead_letter
        .expect("provenance");
    assert_eq!(prov.group, None);
    assert_eq!(prov.consumer.as_deref(), Some("a"));
    assert_eq!(prov.origin_id, msg.id);
    assert_eq!(prov.reason, "inspect me");
    assert!(a.acknowledge(&msg, "g").await.unwrap());
}

/// With the dead-letter queue disabled, `send_to_dlq` fails with
/// `DlqDisabled`, writes nothing and leaves the message pending; claims then
/// never dead-letter poison messages.
pub async fn dlq_disabled_keeps_message_pending(ctx: &TestContext) {
    let cfg = ctx.config("a");
    let dlq = cfg.dlq.clone().with_enabled(false).with_retry_limit(0);
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert_err!(
        a.send_to_dlq(&msg, "no", Some("g")).await,
        StreamError::DlqDisabled { ref id } if id == &msg.id
    );
    assert_err!(
        a.send_to_dlq(&msg, "no", None).await,
        StreamError::DlqDisabled { .. }
    );
    // Delivered twice with a retry limit of 0, yet handed out, not dead-lettered.
    let claimed = a
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let backend = ctx.backend();
    assert_eq!(pending_all(&backend, &ctx.key("s"), "g").await.len(), 1);
    assert_eq!(backend.len(&a.keys().dlq("s")).await.unwrap(), 0);
    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.messages_dead_lettered, 0);
    assert_eq!(stats.dlq_entries, 0);
}

/// The dead-letter stream is trimmed to about `max_len` entries: never
/// fewer, and at most one stream node (100 entries) more.
pub async fn dlq_trims_by_max_len(ctx: &TestContext) {
    let cfg = ctx.config("a");
    let dlq = cfg.dlq.clone().with_max_len(20);
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    let mut last = String::new();
    for _ in 0..300 {
        last = a.send_to_dlq(&msg, "again", None).await.unwrap();
    }
    let backend = ctx.backend();
    let key = a.keys().dlq("s");
    let len = backend.len(&key).await.unwrap();
    assert!((20..=120).contains(&len), "dead-letter stream holds {len}");
    let kept = entries(&backend, &key).await;
    assert_eq!(kept.len() as u64, len);
    assert_eq!(kept.last().unwrap().id, last);
    assert_eq!(a.get_stats().await.unwrap().dlq_entries, len);
    assert_eq!(a.get_stats().await.unwrap().messages_dead_lettered, 300);
}

/// Dead-letter entries older than `max_retention` are trimmed away when
/// new ones are added; the backend's exact age trim removes every older
/// entry and nothing newer.
pub async fn dlq_trims_by_age(ctx: &TestContext) {
    let retention = Duration::from_millis(500);
    let cfg = ctx.config("a");
    let dlq = cfg.dlq.clone().with_max_retention(retention);
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s"]).await;
    // Large entries: one per stream node, so even approximate trimming is exact.
    let big = "x".repeat(5000);
    a.send_message("s", json!({"big": big}), None)
        .await
        .unwrap();
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    for _ in 0..40 {
        a.send_to_dlq(&msg, "old", None).await.unwrap();
    }
    let backend = ctx.backend();
    let key = a.keys().dlq("s");
    let old_done = Instant::now();
    assert_eq!(backend.len(&key).await.unwrap(), 40, "nothing is old yet");
    tokio::time::sleep(retention + Duration::from_millis(150)).await;

    let newest = a.send_to_dlq(&msg, "new", None).await.unwrap();
    let kept = entries(&backend, &key).await;
    assert!(
        kept.len() <= 5,
        "{} entries kept after the retention passed",
        kept.len()
    );
    assert_eq!(kept.last().unwrap().id, newest);

    // Exact trim by age: every old entry goes, the new one stays.
    let removed = backend
        .trim(
            &key,
            Trim::MaxAge {
                age: retention,
                approx: false,
            },
        )
        .await
        .unwrap();
    assert!(old_done.elapsed() > retention);
    assert_eq!(removed as usize, kept.len() - 1);
    let kept = entries(&backend, &key).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, newest);
}

/// With the per-stream layout, each source stream has its own dead-letter
/// stream `[<namespace>:]<dlq_prefix>:{<stream>}`; `dlq_entries` counts them all.
pub async fn dlq_per_stream_layout(ctx: &TestContext) {
    let cfg = ctx.config("a");
    let dlq = cfg.dlq.clone().with_layout(DlqLayout::PerStream);
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s1", "s2"]).await;
    send_n(&a, "s1", 1).await;
    send_n(&a, "s2", 2).await;
    let got = read_n(&a, "g", 3, Duration::from_secs(5)).await;
    for msg in &got {
        a.send_to_dlq(msg, "per stream", Some("g")).await.unwrap();
    }
    let backend = ctx.backend();
    let k1 = a.keys().dlq("s1");
    let k2 = a.keys().dlq("s2");
    assert_eq!(k1, format!("{}:xnai:dlq:{{s1}}", ctx.namespace));
    assert_eq!(backend.len(&k1).await.unwrap(), 1);
    assert_eq!(backend.len(&k2).await.unwrap(), 2);
    assert_eq!(backend.len(&ctx.key("xnai:dlq")).await.unwrap(), 0);
    for (key, stream) in [(&k1, "s1"), (&k2, "s2")] {
        for e in entries(&backend, key).await {
            assert_eq!(field_str(&e.fields, "origin_stream"), Some(stream));
        }
    }
    assert_eq!(a.get_stats().await.unwrap().dlq_entries, 3);
}

/// Dead-lettering a retry copy acknowledges it on the group's retry stream
/// and removes it there; the entry names the logical stream and keeps the
/// retry count and `mid`.
pub async fn dlq_of_retry_copy_cleans_ready_stream(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(a.retry_with_error(&msg, "flaky").await.unwrap());
    let copy = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    a.send_to_dlq(&copy, "gave up", Some("g")).await.unwrap();

    let backend = ctx.backend();
    let ready = a.keys().retry_ready("s", "g");
    assert_eq!(backend.len(&ready).await.unwrap(), 0);
    assert!(pending_all(&backend, &ready, "g").await.is_empty());
    let dlq = entries(&backend, &a.keys().dlq("s")).await;
    assert_eq!(dlq.len(), 1);
    let dead = StreamMessage::from_entry("xnai:dlq", dlq[0].id.as_str(), &dlq[0].fields);
    assert_eq!(dead.retry_count, 1);
    assert_eq!(dead.mid, msg.mid);
    assert_eq!(dead.error.as_deref(), Some("flaky"));
    assert_eq!(dead.data, msg.data);
    let prov = dead.dead_letter.unwrap();
    assert_eq!(prov.origin_stream, "s");
    assert_eq!(prov.origin_id, copy.id);
    assert_eq!(prov.reason, "gave up");
}

/// `dead_letter_many` writes a dead letter for each message as
/// `send_to_dlq` does, in order, with each outcome: the entry id, or
/// `NotOwner` for one acknowledged meanwhile (nothing written for it).
/// Without a group the originals stay pending.
pub async fn dead_letter_many_moves_each(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 4).await;
    let got = read_n(&a, "g", 4, Duration::from_secs(5)).await;
    assert!(a.acknowledge(&got[1], "g").await.unwrap());

    let outcomes = a
        .dead_letter_many(&got[..3], "bulk failure", Some("g"))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(
        matches!(outcomes[1], Err(StreamError::NotOwner { owner: None, .. })),
        "{:?}",
        outcomes[1]
    );
    let backend = ctx.backend();
    let dlq = entries(&backend, &a.keys().dlq("s")).await;
    assert_eq!(dlq.len(), 2);
    for (entry, (outcome, origin)) in dlq
        .iter()
        .zip([(&outcomes[0], &sent[0]), (&outcomes[2], &sent[2])])
    {
        assert_eq!(outcome.as_ref().unwrap(), entry.id.as_str());
        assert_eq!(field_str(&entry.fields, "reason"), Some("bulk failure"));
        assert_eq!(field_str(&entry.fields, "origin_id"), Some(origin.as_str()));
        assert_eq!(field_str(&entry.fields, "group"), Some("g"));
    }
    let pending = pending_all(&backend, &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, got[3].id);

    // Without a group: written, the original left pending.
    let outcomes = a
        .dead_letter_many(&got[3..], "inspect", None)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert_eq!(entries(&backend, &a.keys().dlq("s")).await.len(), 3);
    assert_eq!(pending_all(&backend, &ctx.key("s"), "g").await.len(), 1);
    assert_eq!(a.get_stats().await.unwrap().messages_dead_lettered, 3);
}

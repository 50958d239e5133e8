//! Bad input and misuse: every error has its typed variant.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, json};
use streams_core::{
    MAX_PAYLOAD_DEPTH, Manager, MessageStatus, StreamBackend, StreamError, StreamManagerExt,
    StreamMessage,
};

use crate::assert_err;
use crate::support::{Fault, Meddle, TestContext, group_names, pending_all, read_n, send_n};

/// Invalid stream names (empty, whitespace, control characters, braces,
/// longer than 512 bytes) are refused with `InvalidName` by every sending
/// method, and nothing is written.
pub async fn invalid_stream_name_is_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    let long = "s".repeat(513);
    for bad in [
        "",
        "a b",
        "tab\there",
        "bell\u{7}",
        "x{y}",
        "}",
        long.as_str(),
    ] {
        assert_err!(
            m.send_message(bad, json!({"k": 1}), None).await,
            StreamError::InvalidName { kind: "stream", ref name, .. } if name == bad
        );
        assert_err!(
            m.send_batch(bad, vec![json!({"k": 1})], None).await,
            StreamError::InvalidName { kind: "stream", .. }
        );
    }
    // 512 bytes is still a valid name.
    let longest = "s".repeat(512);
    m.send_message(&longest, json!({"k": 1}), None)
        .await
        .unwrap();
    assert_eq!(ctx.backend().len(&ctx.key(&longest)).await.unwrap(), 1);
    assert_err!(
        m.read_messages("bad group", None, None).await,
        StreamError::InvalidName { kind: "group", .. }
    );
    assert_eq!(m.get_stats().await.unwrap().messages_sent, 1);
}

/// A payload whose JSON encoding is larger than `max_message_bytes` is
/// refused with `PayloadTooLarge` giving the size and the limit; one of
/// exactly the limit is accepted; a batch with one oversized item sends nothing.
pub async fn oversized_payload_is_refused(ctx: &TestContext) {
    let m = ctx.manager_with(ctx.config("a").with_max_message_bytes(1024));
    // {"b":"<n x>"} encodes to n + 8 bytes.
    let exactly = json!({"b": "x".repeat(1016)});
    let over = json!({"b": "x".repeat(1017)});
    assert_eq!(serde_json::to_vec(&exactly).unwrap().len(), 1024);
    m.send_message("s", exactly.clone(), None).await.unwrap();
    assert_err!(
        m.send_message("s", over.clone(), None).await,
        StreamError::PayloadTooLarge {
            size: 1025,
            limit: 1024
        }
    );
    assert_err!(
        m.send_batch("s", vec![exactly, over, json!({})], None)
            .await,
        StreamError::PayloadTooLarge {
            size: 1025,
            limit: 1024
        }
    );
    assert_eq!(ctx.backend().len(&ctx.key("s")).await.unwrap(), 1);

    // The default limit is 1 MiB.
    let d = ctx.manager("d");
    let big = json!({"b": "x".repeat(1024 * 1024)});
    assert_err!(
        d.send_message("s", big, None).await,
        StreamError::PayloadTooLarge { size, limit: 1_048_576 } if size == 1024 * 1024 + 8
    );
    assert_eq!(ctx.backend().len(&ctx.key("s")).await.unwrap(), 1);
}

/// Payloads that are not JSON objects (array, string, number, boolean,
/// null) are refused with `PayloadNotObject` naming the type found; a batch
/// with one of them sends nothing.
pub async fn non_object_payload_is_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    for (value, found) in [
        (json!([1, 2]), "array"),
        (json!("text"), "string"),
        (json!(42), "number"),
        (json!(true), "boolean"),
        (json!(null), "null"),
    ] {
        assert_err!(
            m.send_message("s", value.clone(), None).await,
            StreamError::PayloadNotObject { found: f } if f == found
        );
        assert_err!(
            m.send_batch("s", vec![json!({"ok": 1}), value], None).await,
            StreamError::PayloadNotObject { found: f } if f == found
        );
    }
    assert_eq!(ctx.backend().len(&ctx.key("s")).await.unwrap(), 0);
    assert_eq!(m.get_stats().await.unwrap().messages_sent, 0);
}

/// Every method that takes a group name fails with `GroupNotFound` for a
/// group that was never created, and creates nothing.
pub async fn unknown_group_is_group_not_found(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    send_n(&m, "s", 1).await;
    let msg = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    let is_nope = |group: &String| group == "nope";
    assert_err!(
        m.read_messages("nope", None, Some(Duration::from_secs(5))).await,
        StreamError::GroupNotFound { ref group } if is_nope(group)
    );
    assert_err!(
        m.acknowledge(&msg, "nope").await,
        StreamError::GroupNotFound { ref group } if is_nope(group)
    );
    assert_err!(
        m.acknowledge_many(std::slice::from_ref(&msg), "nope").await,
        StreamError::GroupNotFound { ref group } if is_nope(group)
    );
    assert_err!(
        m.claim_pending_messages("nope", None).await,
        StreamError::GroupNotFound { ref group } if is_nope(group)
    );
    assert_err!(
        m.send_to_dlq(&msg, "r", Some("nope")).await,
        StreamError::GroupNotFound { ref group } if is_nope(group)
    );
    assert_err!(
        m.group_config("nope").await,
        StreamError::GroupNotFound { ref group } if is_nope(group)
    );
    assert_eq!(m.consumer_groups(), ["g"]);
    assert_eq!(ctx.backend().len(&m.keys().dlq("s")).await.unwrap(), 0);
    assert!(
        m.acknowledge(&msg, "g").await.unwrap(),
        "still pending in g"
    );
}

/// Retrying, touching or releasing a message that was not read through a
/// consumer group fails with `NotDelivered`.
pub async fn undelivered_message_is_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    let mut msg = StreamMessage::new("s", Map::new());
    msg.id = "1-1".to_owned();
    assert_err!(
        m.retry_message(&msg).await,
        StreamError::NotDelivered { ref id, operation: "retried" } if id == "1-1"
    );
    assert_err!(m.touch(&msg).await, StreamError::NotDelivered { .. });
    assert_err!(
        m.release(std::slice::from_ref(&msg)).await,
        StreamError::NotDelivered { .. }
    );
    assert_eq!(
        ctx.backend()
            .schedule_len(&m.keys().retry_schedule("s", "g"))
            .await
            .unwrap(),
        0
    );
}

/// A message is settled only through the group that delivered it: acking
/// or dead-lettering it through another group gives `WrongGroup` and
/// changes nothing in either group, even where the other group holds the
/// same entry pending.
pub async fn settling_through_another_group_is_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g1", &["s"]).await;
    ctx.create_group(&m, "g2", &["s"]).await;
    send_n(&m, "s", 1).await;
    let one = read_n(&m, "g1", 1, Duration::from_secs(5)).await;
    let two = read_n(&m, "g2", 1, Duration::from_secs(5)).await;
    assert_eq!(one[0].id, two[0].id);
    assert_err!(
        m.acknowledge(&one[0], "g2").await,
        StreamError::WrongGroup { ref delivered_to, ref given, .. } if delivered_to == "g1" && given == "g2"
    );
    assert_err!(
        m.acknowledge_many(&[two[0].clone(), one[0].clone()], "g2")
            .await,
        StreamError::WrongGroup { .. }
    );
    assert_err!(
        m.send_to_dlq(&one[0], "no", Some("g2")).await,
        StreamError::WrongGroup { .. }
    );
    let backend = ctx.backend();
    let key = ctx.key("s");
    assert_eq!(pending_all(&backend, &key, "g1").await.len(), 1);
    assert_eq!(pending_all(&backend, &key, "g2").await.len(), 1);
    assert_eq!(backend.len(&m.keys().dlq("s")).await.unwrap(), 0);
    // Through their own groups both settle.
    assert!(m.acknowledge(&one[0], "g1").await.unwrap());
    assert!(m.acknowledge(&two[0], "g2").await.unwrap());
    assert_eq!(m.get_stats().await.unwrap().messages_acknowledged, 2);
}

/// Counts and durations at the edge of their types neither panic nor fail:
/// a read of `usize::MAX` messages, a read blocking for `Duration::MAX`
/// (it returns when a message arrives), a retry whose backoff is
/// `Duration::MAX`.
pub async fn extreme_counts_and_durations_are_accepted(ctx: &TestContext) {
    let config = ctx
        .config("a")
        .with_dlq(streams_core::DlqConfig::default().with_retry_backoff(Duration::MAX));
    let config =
        config.with_retry(streams_core::RetryConfig::default().with_backoff_cap(Duration::MAX));
    let m = Arc::new(ctx.manager_with(config));
    ctx.create_group(&m, "g", &["s"]).await;
    send_n(&m, "s", 2).await;
    let got = m.read_messages("g", Some(usize::MAX), None).await.unwrap();
    assert_eq!(got.len(), 2);
    let waiting = {
        let m = Arc::clone(&m);
        tokio::spawn(async move { m.read_messages("g", Some(1), Some(Duration::MAX)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    send_n(&m, "s", 1).await;
    let woke = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a read blocking for Duration::MAX returns when a message arrives")
        .unwrap()
        .unwrap();
    assert_eq!(woke.len(), 1);
    assert!(m.retry_message(&got[0]).await.unwrap());
    assert_eq!(
        ctx.backend()
            .schedule_len(&m.keys().retry_schedule("s", "g"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        m.acknowledge_many(&[got[1].clone(), woke[0].clone()], "g")
            .await
            .unwrap(),
        2
    );
}

/// Zero counts are configuration errors: a read of 0 messages, a send
/// trimming to 0 entries.
pub async fn zero_counts_are_config_errors(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    assert_err!(
        m.read_messages("g", Some(0), None).await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.send_message("s", json!({}), Some(0)).await,
        StreamError::Config { .. }
    );
    assert_err!(
        m.send_batch("s", vec![json!({})], Some(0)).await,
        StreamError::Config { .. }
    );
    assert_eq!(ctx.backend().len(&ctx.key("s")).await.unwrap(), 0);
}

/// After `close`, every call fails with `Closed` (close itself is
/// idempotent), and nothing is written; only `get_stats` still answers,
/// with `initialized` false.
pub async fn closed_manager_refuses_calls(ctx: &TestContext) {
    let m = ctx.second_manager("a").await;
    ctx.create_group(&m, "g", &["s"]).await;
    m.send_message("s", json!({"k": 1}), None).await.unwrap();
    let msg = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    m.close().await.unwrap();
    m.close().await.unwrap();
    assert!(m.is_closed());

    let cfg = ctx.group("g", &["s"]);
    let one = std::slice::from_ref(&msg);
    assert_err!(m.initialize().await, StreamError::Closed);
    assert_err!(m.create_consumer_group(&cfg).await, StreamError::Closed);
    assert_err!(m.read_messages("g", None, None).await, StreamError::Closed);
    assert_err!(
        m.send_message("s", json!({}), None).await,
        StreamError::Closed
    );
    assert_err!(
        m.send_batch("s", vec![json!({})], None).await,
        StreamError::Closed
    );
    assert_err!(m.acknowledge(&msg, "g").await, StreamError::Closed);
    assert_err!(m.acknowledge_many(one, "g").await, StreamError::Closed);
    assert_err!(
        m.send_to_dlq(&msg, "r", Some("g")).await,
        StreamError::Closed
    );
    assert_err!(m.send_to_dlq(&msg, "r", None).await, StreamError::Closed);
    assert_err!(m.retry_message(&msg).await, StreamError::Closed);
    assert_err!(
        m.claim_pending_messages("g", Some(Duration::ZERO)).await,
        StreamError::Closed
    );
    assert_err!(m.touch(&msg).await, StreamError::Closed);
    assert_err!(m.release(one).await, StreamError::Closed);
    assert_err!(m.health().await, StreamError::Closed);
    assert_err!(m.group_config("g").await, StreamError::Closed);
    assert_err!(m.promote_due_retries(None).await, StreamError::Closed);
    assert_err!(m.dead_letters(10).await, StreamError::Closed);
    // Statistics stay readable: the counters, and `initialized` is false.
    let stats = m.get_stats().await.unwrap();
    assert!(!stats.initialized);
    assert_eq!((stats.messages_sent, stats.messages_read), (1, 1));

    let backend = ctx.backend();
    assert_eq!(backend.len(&ctx.key("s")).await.unwrap(), 1);
    let pending = crate::support::pending_all(&backend, &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1, "the message is still pending");
}

/// `scoped` initializes the manager, hands it to the closure and closes it
/// afterwards, whether the closure succeeded or failed.
pub async fn scoped_closes_the_manager(ctx: &TestContext) {
    let m = ctx.second_manager("a").await;
    let id = m
        .scoped(|m| async move {
            assert!(m.is_initialized());
            m.send_message("s", json!({"k": 1}), None).await
        })
        .await
        .unwrap();
    assert!(m.is_closed());
    assert_err!(
        m.send_message("s", json!({}), None).await,
        StreamError::Closed
    );
    let stored = crate::support::entries(&ctx.backend(), &ctx.key("s")).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);

    let m = ctx.second_manager("b").await;
    let result: streams_core::Result<()> = m
        .scoped(|m| async move {
            m.read_messages("missing", None, None).await?;
            Ok(())
        })
        .await;
    assert_err!(result, StreamError::GroupNotFound { .. });
    assert!(m.is_closed());
}

/// What a backend answers for a server too old for it.
fn too_old() -> StreamError {
    StreamError::Unsupported {
        feature: "the backend".to_owned(),
        reason: "it needs a newer server".to_owned(),
    }
}

/// A server the backend refuses (Redis older than 7.0, say) fails
/// `initialize` with the backend's `Unsupported`, and so does every
/// operation, before anything is written; `health` reports it as a problem
/// instead of failing.
pub async fn old_server_is_unsupported(ctx: &TestContext) {
    let refused = Meddle::wrap(ctx.backend(), "server_info", Fault::Fail(too_old));
    let m = Manager::new(refused, ctx.config("a")).unwrap();
    assert_err!(
        m.initialize().await,
        StreamError::Unsupported { ref feature, .. } if feature == "the backend"
    );
    assert!(!m.is_initialized());
    assert_err!(
        m.create_consumer_group(&ctx.group("g", &["s"])).await,
        StreamError::Unsupported { .. }
    );
    assert_err!(
        m.send_message("s", json!({"k": 1}), None).await,
        StreamError::Unsupported { .. }
    );
    assert_eq!(ctx.backend().len(&ctx.key("s")).await.unwrap(), 0);
    assert!(group_names(&ctx.backend(), &ctx.key("s")).await.is_empty());
    let report = m.health().await.unwrap();
    assert!(!report.healthy);
    assert!(report.server_version.is_none());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let stats = m.get_stats().await.unwrap();
    assert!(!stats.initialized);
}

/// Payloads nested deeper than readers decode are refused with
/// `PayloadTooDeep` at send, and nothing is written: whatever a send
/// accepts, every reader decodes.
pub async fn too_deep_payload_is_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let nested = |levels: usize| {
        // The payload object is level 1; each array adds one.
        let mut v = json!(0);
        for _ in 1..levels {
            v = json!([v]);
        }
        json!({ "a": v })
    };
    let deepest = nested(MAX_PAYLOAD_DEPTH);
    m.send_message("s", deepest.clone(), None).await.unwrap();
    assert_err!(
        m.send_message("s", nested(MAX_PAYLOAD_DEPTH + 1), None).await,
        StreamError::PayloadTooDeep { depth, limit } if depth == MAX_PAYLOAD_DEPTH + 1 && limit == MAX_PAYLOAD_DEPTH
    );
    assert_err!(
        m.send_batch("s", vec![json!({}), nested(500)], None).await,
        StreamError::PayloadTooDeep { .. }
    );
    assert_eq!(ctx.backend().len(&ctx.key("s")).await.unwrap(), 1);
    let got = read_n(&m, "g", 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].status, MessageStatus::Pending, "{:?}", got[0].error);
    assert_eq!(serde_json::Value::Object(got[0].data.clone()), deepest);
    // The manager can retry and dead-letter it too.
    assert!(m.retry_message(&got[0]).await.unwrap());
}

/// Names that would reach another key are refused: the group registry's
/// name is never a stream, nothing but dead letters is sent to the shared
/// dead-letter stream, and a namespace is one key segment (no `:`), so
/// namespace `a` with stream `b:c` and namespace `a:b` with stream `c`
/// cannot meet.
pub async fn reserved_names_are_refused(ctx: &TestContext) {
    let m = ctx.manager("a");
    for (stream, send_refused, read_refused) in
        [("xnai:groups", true, true), ("xnai:dlq", true, false)]
    {
        let sent = m.send_message(stream, json!({"k": 1}), None).await;
        assert_eq!(
            matches!(sent, Err(StreamError::InvalidName { kind: "stream", .. })),
            send_refused,
            "{stream}: {sent:?}"
        );
        let created = m
            .create_consumer_group(&ctx.group(&format!("g-{}", stream.len()), &[stream]))
            .await;
        assert_eq!(
            matches!(
                created,
                Err(StreamError::InvalidName { kind: "stream", .. })
            ),
            read_refused,
            "{stream}: {created:?}"
        );
    }
    // The registry still works: a group can be created and found.
    ctx.create_group(&m, "g", &["s"]).await;
    assert_eq!(m.group_config("g").await.unwrap().streams, ["s"]);
    assert_err!(
        Manager::new(ctx.backend(), ctx.config("a").with_namespace("a:b")),
        StreamError::InvalidName {
            kind: "namespace",
            ..
        }
    );
}

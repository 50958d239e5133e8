//! Statistics.

use std::time::Duration;

use streams_core::Stats;

use crate::support::{TestContext, read_n, send_n};

/// Every counter of `get_stats` matches the operations done: sends, reads
/// (claims included), acknowledgements that counted, retries, dead letters,
/// claims, promotions; the scheduled retry shows in `schedule_len`; another
/// manager's counters are its own.
pub async fn stats_match_operations(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 4).await;
    a.send_message("s", serde_json::json!({"n": 4}), None)
        .await
        .unwrap();
    a.send_message("s", serde_json::json!({"n": 5}), None)
        .await
        .unwrap();
    let got = read_n(&a, "g", 6, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 6);

    assert_eq!(a.acknowledge_many(&got[0..3], "g").await.unwrap(), 3);
    assert!(!a.acknowledge(&got[0], "g").await.unwrap());
    assert!(a.retry_message(&got[3]).await.unwrap());
    let backend = ctx.backend();
    let schedule = a.keys().retry_schedule("s", "g");
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 1);
    a.send_to_dlq(&got[4], "bad", Some("g")).await.unwrap();
    // got[5] is abandoned and claimed back.
    let claimed = a
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, got[5].id);
    let copy = read_n(&a, "g", 1, Duration::from_secs(5)).await;
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 0);
    assert_eq!(a.acknowledge_many(&copy, "g").await.unwrap(), 1);
    assert!(a.acknowledge(&claimed[0], "g").await.unwrap());

    let stats = a.get_stats().await.unwrap();
    let mut expected = Stats::default();
    expected.messages_read = 8;
    expected.messages_acknowledged = 5;
    expected.messages_failed = 2;
    expected.dlq_entries = 1;
    expected.consumer_id = "a".to_owned();
    expected.consumer_groups = vec!["g".to_owned()];
    expected.initialized = true;
    expected.messages_sent = 6;
    expected.messages_retried = 1;
    expected.messages_claimed = 1;
    expected.messages_dead_lettered = 1;
    expected.retries_promoted = 1;
    assert_eq!(stats, expected);

    let b = ctx.second_manager("b").await;
    let other = b.get_stats().await.unwrap();
    let mut fresh = Stats::default();
    fresh.dlq_entries = 1;
    fresh.consumer_id = "b".to_owned();
    assert_eq!(
        other, fresh,
        "a fresh manager, not initialized by get_stats"
    );
}

/// `consumer_groups` in the stats lists the groups a manager knows, sorted:
/// those it created and those it looked up by name.
pub async fn get_stats_lists_consumer_groups(ctx: &TestContext) {
    let a = ctx.manager("a");
    for name in ["zeta", "alpha", "mid"] {
        a.create_consumer_group(&ctx.group(name, &["s"]))
            .await
            .unwrap();
    }
    assert_eq!(
        a.get_stats().await.unwrap().consumer_groups,
        ["alpha", "mid", "zeta"]
    );
    let b = ctx.second_manager("b").await;
    assert!(b.get_stats().await.unwrap().consumer_groups.is_empty());
    b.read_messages("mid", None, Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(b.get_stats().await.unwrap().consumer_groups, ["mid"]);
    let json = serde_json::to_value(b.get_stats().await.unwrap()).unwrap();
    assert_eq!(json["consumer_groups"], serde_json::json!(["mid"]));
    assert_eq!(json["consumer_id"], "b");
    assert_eq!(json["initialized"], true);
}

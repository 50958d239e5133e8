//! Health reports.

use std::time::Duration;

use crate::support::{TestContext, send_n};

/// `health` reports the backend, its version and latency, and for every
/// group and stream: length, pending entries, lag, claimable entries,
/// scheduled retries and consumers, all matching what was done; abandoned
/// work is named as a problem but does not make the report unhealthy.
pub async fn health_reports_groups(ctx: &TestContext) {
    let a = ctx.manager("a");
    a.create_consumer_group(
        &ctx.group("g", &["s1", "s2"])
            .with_claim_idle(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    send_n(&a, "s1", 5).await;
    send_n(&a, "s2", 2).await;
    // Five of seven: all of s2, three of s1 (s2's unused share goes to s1).
    let got = a
        .read_messages("g", Some(5), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
    let from_s1: Vec<_> = got.iter().filter(|m| m.stream == "s1").collect();
    let from_s2: Vec<_> = got.iter().filter(|m| m.stream == "s2").collect();
    assert!(a.acknowledge(from_s1[0], "g").await.unwrap());
    assert!(a.retry_message(from_s2[0]).await.unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;

    let backend = ctx.backend();
    backend.ping().await.unwrap();
    let report = a.health().await.unwrap();
    assert!(report.healthy, "{report:#?}");
    assert_eq!(report.backend, backend.name());
    assert!(report.server_version.is_some());
    assert!(report.latency_ms.is_some_and(|l| l >= 0.0));
    assert_eq!(report.consumer_id, "a");
    assert_eq!(report.dlq_entries, 0);
    assert_eq!(report.groups.len(), 1, "{report:#?}");
    let g = &report.groups[0];
    assert_eq!(g.group, "g");
    assert_eq!(g.claim_idle_ms, 100);
    let streams: Vec<_> = g.streams.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(streams, ["s1", "s2"]);

    let s1 = &g.streams[0];
    assert_eq!(s1.length, 5);
    assert!(s1.group_exists);
    assert_eq!(s1.pending, 2);
    assert_eq!(s1.lag, Some(2));
    assert_eq!(s1.claimable, 2);
    assert_eq!(s1.scheduled_retries, 0);
    assert_eq!(s1.ready_retries, 0);
    let consumers: Vec<_> = s1
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending))
        .collect();
    assert_eq!(consumers, [("a", 2)]);

    let s2 = &g.streams[1];
    assert_eq!(s2.length, 2);
    assert!(s2.group_exists);
    assert_eq!(s2.pending, 1);
    assert_eq!(s2.lag, Some(0));
    assert_eq!(s2.claimable, 1);
    assert_eq!(s2.scheduled_retries, 1);
    assert_eq!(s2.ready_retries, 0);
    let consumers: Vec<_> = s2
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending))
        .collect();
    assert_eq!(consumers, [("a", 1)]);
    assert!(s2.consumers[0].idle_ms >= 100, "{:?}", s2.consumers);

    // The claimable entries are named as problems, one per stream.
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

/// A group registered but missing on its stream makes the report unhealthy,
/// says so per stream, and the backend's group info of that stream is empty.
pub async fn health_reports_missing_group(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "ok", &["s"]).await;
    let ghost = ctx.group("ghost", &["nowhere"]);
    let backend = ctx.backend();
    backend
        .registry_put(
            a.keys().registry(),
            "ghost",
            &serde_json::to_string(&ghost).unwrap(),
        )
        .await
        .unwrap();
    let report = a.health().await.unwrap();
    assert!(!report.healthy, "{report:#?}");
    let names: Vec<_> = report.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["ghost", "ok"]);
    let ghost = &report.groups[0].streams[0];
    assert_eq!(ghost.stream, "nowhere");
    assert!(!ghost.group_exists);
    assert_eq!(ghost.length, 0);
    assert_eq!(ghost.pending, 0);
    assert!(ghost.consumers.is_empty());
    assert!(report.groups[1].streams[0].group_exists);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("ghost"),
        "{:?}",
        report.problems
    );
    assert!(
        backend
            .groups(&ctx.key("nowhere"))
            .await
            .unwrap()
            .is_empty()
    );
}

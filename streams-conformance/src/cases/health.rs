//! Health reports and readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use streams_core::{HealthStatus, HealthThresholds, Manager, StreamError};

use crate::assert_err;
use crate::support::{ANY, Fault, Meddle, TestContext, send_n};

/// `health` reports the backend, its version and latency, and for every
/// group and stream: length, pending entries and the age of the oldest,
/// lag, claimable entries, scheduled retries and consumers, all matching
/// what was done; abandoned work is named as a problem and makes the
/// report degraded (the default thresholds), still healthy.
/// `group_health` reports the same for one group.
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
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(report.accepts_writes);
    assert_eq!(report.dlq_growth_per_minute, None, "no earlier check");
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
    let age = s1.oldest_pending_ms.unwrap();
    assert!((150..60_000).contains(&age), "{age} ms");
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
    assert!(s2.oldest_pending_ms.is_some_and(|ms| ms >= 150));

    // The claimable entries are named as problems, one per stream.
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);

    // One group's part, alone.
    let one = a.group_health("g").await.unwrap();
    assert_eq!(one.group, "g");
    for (mine, theirs) in one.streams.iter().zip(&g.streams) {
        assert_eq!(
            (mine.length, mine.pending, mine.lag, mine.claimable),
            (theirs.length, theirs.pending, theirs.lag, theirs.claimable)
        );
        assert_eq!(mine.scheduled_retries, theirs.scheduled_retries);
        assert!(mine.oldest_pending_ms >= theirs.oldest_pending_ms);
    }
    assert_eq!(one.streams.len(), 2);
    crate::assert_err!(
        a.group_health("nope").await,
        StreamError::GroupNotFound { .. }
    );
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
    assert_eq!(report.status, HealthStatus::Unhealthy);
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

/// `readiness` is one probe write and nothing else (the manager is not even
/// initialized): ready on a working backend; not ready, saying why, when
/// the backend refuses writes or cannot be reached. `health` is unhealthy
/// then too; when only writes fail, it still reports the groups.
pub async fn readiness_is_one_write(ctx: &TestContext) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Meddle::wrap(ctx.backend(), ANY, Fault::Count(Arc::clone(&calls)));
    let m = Manager::new(counted, ctx.config("a")).unwrap();
    let ready = m.readiness().await.unwrap();
    assert!(
        ready.ready && ready.reachable && ready.accepts_writes,
        "{ready:?}"
    );
    assert_eq!(ready.backend, ctx.backend_name());
    assert!(ready.latency_ms.is_some_and(|ms| ms >= 0.0));
    assert_eq!(ready.problem, None);
    assert_eq!(calls.load(Ordering::Relaxed), 1, "one call to the backend");
    assert!(!m.is_initialized());
    // What it wrote is the probe key's short-lived value.
    assert_err!(
        ctx.backend().len(&m.keys().probe()).await,
        StreamError::Backend { .. }
    );

    // A server that answers but refuses writes (out of memory, read-only).
    fn refused() -> StreamError {
        StreamError::backend(
            "test",
            "OOM command not allowed when used memory > 'maxmemory'",
        )
    }
    let full = Manager::new(
        Meddle::wrap(ctx.backend(), "write_probe", Fault::Fail(refused)),
        ctx.config("b"),
    )
    .unwrap();
    ctx.create_group(&full, "g", &["s"]).await;
    let ready = full.readiness().await.unwrap();
    assert!(
        !ready.ready && ready.reachable && !ready.accepts_writes,
        "{ready:?}"
    );
    assert!(ready.latency_ms.is_some());
    let why = ready.problem.unwrap();
    assert!(
        why.contains("refuses writes") && why.contains("OOM"),
        "{why}"
    );
    let report = full.health().await.unwrap();
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:#?}");
    assert!(!report.healthy && !report.accepts_writes);
    assert!(report.problems.iter().any(|p| p.contains("refuses writes")));
    assert_eq!(report.groups.len(), 1, "reads still work: {report:#?}");
    assert!(report.server_version.is_some());

    // A server that does not answer.
    fn down() -> StreamError {
        StreamError::connection("test", "connection refused")
    }
    let gone = Manager::new(
        Meddle::wrap(ctx.backend(), "write_probe", Fault::Fail(down)),
        ctx.config("c"),
    )
    .unwrap();
    let ready = gone.readiness().await.unwrap();
    assert!(!ready.ready && !ready.reachable && !ready.accepts_writes);
    assert_eq!(ready.latency_ms, None);
    assert!(ready.problem.unwrap().contains("unreachable"));
    let report = gone.health().await.unwrap();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(!report.healthy && report.latency_ms.is_none());
    assert!(report.groups.is_empty());
    assert!(
        report.problems[0].contains("unreachable"),
        "{:?}",
        report.problems
    );

    m.close().await.unwrap();
    assert_err!(m.readiness().await, StreamError::Closed);
}

/// The verdict follows the thresholds: with none set, lag, old pending work
/// and abandoned work leave the report healthy; each threshold exceeded
/// alone makes it degraded (still `healthy`) and says why; thresholds not
/// exceeded keep it healthy. Dead-letter growth is measured between two
/// checks of one manager: a dead letter since the last check exceeds a
/// small rate, and none since brings the report back to healthy.
pub async fn health_status_follows_thresholds(ctx: &TestContext) {
    let a = ctx.manager("a");
    a.create_consumer_group(
        &ctx.group("g", &["s"])
            .with_claim_idle(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    send_n(&a, "s", 3).await;
    let got = a
        .read_messages("g", Some(1), Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let with = |t: HealthThresholds| ctx.manager_with(ctx.config("a").with_health_thresholds(t));

    let report = with(HealthThresholds::none()).health().await.unwrap();
    assert_eq!(report.status, HealthStatus::Healthy, "{report:#?}");
    assert!(report.healthy && report.problems.is_empty());
    let s = &report.groups[0].streams[0];
    assert_eq!((s.lag, s.pending, s.claimable), (Some(2), 1, 1));
    assert!(s.oldest_pending_ms.is_some_and(|ms| ms >= 150), "{s:?}");

    let none = HealthThresholds::none;
    for (thresholds, why) in [
        (none().with_max_lag(Some(1)), "not yet delivered"),
        (
            none().with_max_oldest_pending(Some(Duration::from_millis(100))),
            "oldest pending entry",
        ),
        (none().with_max_claimable(Some(0)), "claim_pending_messages"),
        (HealthThresholds::default(), "claim_pending_messages"),
    ] {
        let report = with(thresholds.clone()).health().await.unwrap();
        assert_eq!(report.status, HealthStatus::Degraded, "{thresholds:?}");
        assert!(report.healthy);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].contains(why), "{:?}", report.problems);
    }
    let roomy = none()
        .with_max_lag(Some(2))
        .with_max_oldest_pending(Some(Duration::from_secs(60)))
        .with_max_claimable(Some(1));
    assert_eq!(
        with(roomy).health().await.unwrap().status,
        HealthStatus::Healthy
    );

    let watcher = with(none().with_max_dlq_growth_per_minute(Some(10.0)));
    let first = watcher.health().await.unwrap();
    assert_eq!(first.dlq_growth_per_minute, None);
    assert_eq!(first.status, HealthStatus::Healthy);
    a.send_to_dlq(&got[0], "bad", Some("g")).await.unwrap();
    let second = watcher.health().await.unwrap();
    assert!(
        second.dlq_growth_per_minute.is_some_and(|r| r > 10.0),
        "{second:#?}"
    );
    assert_eq!(second.status, HealthStatus::Degraded);
    assert!(second.problems[0].contains("dead-letter queue grew"));
    let third = watcher.health().await.unwrap();
    assert_eq!(third.dlq_growth_per_minute, Some(0.0));
    assert_eq!(third.status, HealthStatus::Healthy);
}

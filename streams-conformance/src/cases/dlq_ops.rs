//! Operating the dead-letter queue: listing with filters and pages,
//! showing, counting, replaying to the original group, purging.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use streams_core::backend::Add;
use streams_core::{
    DlqFilter, DlqLayout, DlqPage, DlqPurge, DlqQuery, DlqReplay, DlqSelection, MessageStatus,
    SkipReason, StreamError, StreamMessage,
};

use crate::assert_err;
use crate::support::{
    TestContext, TestManager, entries, field, fields, ids, read_n, read_now, send_n,
};

const WAIT: Duration = Duration::from_secs(5);

/// Sends one message per reason to `stream`, reads each through `group`
/// and dead-letters it with that reason; returns the dead-letter ids.
async fn dead_letter(m: &TestManager, group: &str, stream: &str, reasons: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for reason in reasons {
        m.send_message(stream, json!({ "reason": reason }), None)
            .await
            .unwrap();
        let msg = read_n(m, group, 1, WAIT).await.remove(0);
        out.push(m.send_to_dlq(&msg, reason, Some(group)).await.unwrap());
    }
    out
}

fn page_ids(page: &DlqPage) -> Vec<String> {
    ids(&page.entries)
}

async fn list(m: &TestManager, filter: DlqFilter) -> Vec<String> {
    let page = m
        .dlq_list(&DlqQuery::new().with_filter(filter))
        .await
        .unwrap();
    assert!(page.next.is_none(), "one page holds it all");
    page_ids(&page)
}

/// Every page of a listing, `limit` entries at a time.
async fn all_pages(m: &TestManager, filter: DlqFilter, limit: usize) -> (Vec<String>, usize) {
    let mut query = DlqQuery::new().with_filter(filter).with_limit(limit);
    let (mut out, mut pages) = (Vec::new(), 0);
    loop {
        let page = m.dlq_list(&query).await.unwrap();
        pages += 1;
        assert!(page.entries.len() <= limit);
        out.extend(page_ids(&page));
        let Some(next) = page.next else {
            return (out, pages);
        };
        assert!(pages < 100, "pages never end");
        query = query.after(next);
    }
}

/// `dlq_list` returns dead letters oldest first, decoded with their
/// provenance, filtered by origin stream, group, reason text
/// (case-sensitive) and failure time, a page at a time with a cursor that
/// ends; a limit of 0 is `Config`, an unreadable cursor `InvalidId`.
pub async fn dlq_list_filters_and_pages(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g1", &["s1"]).await;
    ctx.create_group(&m, "g2", &["s2"]).await;
    let early = dead_letter(&m, "g1", "s1", &["timeout: model", "bad input"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let boundary = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = dead_letter(&m, "g2", "s2", &["timeout: tool", "crash"]).await;
    let all: Vec<String> = early.iter().chain(&late).cloned().collect();

    let page = m.dlq_list(&DlqQuery::new()).await.unwrap();
    assert_eq!(page_ids(&page), all);
    assert_eq!(page.next, None);
    let first = &page.entries[0];
    assert_eq!(first.status, MessageStatus::Dlq);
    assert_eq!(first.data["reason"], "timeout: model");
    let prov = first.dead_letter.as_ref().unwrap();
    assert_eq!(
        (prov.origin_stream.as_str(), prov.group.as_deref()),
        ("s1", Some("g1"))
    );

    assert_eq!(list(&m, DlqFilter::new().with_stream("s2")).await, late);
    assert_eq!(list(&m, DlqFilter::new().with_group("g1")).await, early);
    let timeouts = list(&m, DlqFilter::new().with_reason("timeout")).await;
    assert_eq!(timeouts, [early[0].clone(), late[0].clone()]);
    assert!(
        list(&m, DlqFilter::new().with_reason("TIMEOUT"))
            .await
            .is_empty()
    );
    assert_eq!(
        list(&m, DlqFilter::new().failed_since(boundary)).await,
        late
    );
    assert_eq!(
        list(&m, DlqFilter::new().failed_before(boundary)).await,
        early
    );
    assert!(
        list(&m, DlqFilter::new().older_than(Duration::from_secs(3600)))
            .await
            .is_empty()
    );
    let both = DlqFilter::new().with_group("g2").with_reason("timeout");
    assert_eq!(list(&m, both).await, [late[0].clone()]);

    let (paged, pages) = all_pages(&m, DlqFilter::new(), 3).await;
    assert_eq!((paged, pages), (all.clone(), 2));
    let (paged, _) = all_pages(&m, DlqFilter::new().with_reason("timeout"), 1).await;
    assert_eq!(paged, timeouts);
    let (paged, _) = all_pages(&m, DlqFilter::new(), 1).await;
    assert_eq!(paged, all);

    assert_err!(
        m.dlq_list(&DlqQuery::new().with_limit(0)).await,
        StreamError::Config { .. }
    );
    let garbage = DlqQuery::new().after(streams_core::DlqCursor::new("garbage"));
    assert_err!(m.dlq_list(&garbage).await, StreamError::InvalidId { .. });
}

/// `dlq_show` finds one dead letter by id, decoded with its payload and
/// provenance; an id no entry has gives `None`, an unreadable one `InvalidId`.
pub async fn dlq_show_finds_one_entry(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let dead = dead_letter(&m, "g", "s", &["first", "second"]).await;
    let shown = m.dlq_show(&dead[1], None).await.unwrap().expect("found");
    assert_eq!(shown.id, dead[1]);
    assert_eq!(shown.data["reason"], "second");
    let prov = shown.dead_letter.unwrap();
    assert_eq!(prov.reason, "second");
    assert_eq!(prov.group.as_deref(), Some("g"));
    assert_eq!(prov.consumer.as_deref(), Some("a"));
    assert!(m.dlq_show("1-0", None).await.unwrap().is_none());
    assert_err!(
        m.dlq_show("nope", None).await,
        StreamError::InvalidId { .. }
    );
}

/// `dlq_stats` counts dead letters in total, by reason, by origin stream
/// and by group (entries without a group are counted but not by group),
/// and knows the oldest and newest failure; filters apply.
pub async fn dlq_stats_count_by_reason(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g1", &["s1"]).await;
    ctx.create_group(&m, "g2", &["s2"]).await;
    dead_letter(&m, "g1", "s1", &["timeout", "timeout", "crash"]).await;
    dead_letter(&m, "g2", "s2", &["timeout"]).await;
    send_n(&m, "s1", 1).await;
    let loose = read_n(&m, "g1", 1, WAIT).await.remove(0);
    m.send_to_dlq(&loose, "manual", None).await.unwrap();

    let stats = m.dlq_stats(&DlqFilter::new()).await.unwrap();
    assert_eq!(stats.total, 5);
    let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(
        stats.by_reason,
        counts(&[("timeout", 3), ("crash", 1), ("manual", 1)])
    );
    assert_eq!(stats.by_stream, counts(&[("s1", 4), ("s2", 1)]));
    assert_eq!(stats.by_group, counts(&[("g1", 3), ("g2", 1)]));
    assert_eq!(stats.without_provenance, 0);
    let (oldest, newest) = (
        stats.oldest_failed_at.unwrap(),
        stats.newest_failed_at.unwrap(),
    );
    assert!(crate::support::rfc3339(&oldest) <= crate::support::rfc3339(&newest));

    let g1 = m
        .dlq_stats(&DlqFilter::new().with_group("g1"))
        .await
        .unwrap();
    assert_eq!(g1.total, 3);
    assert_eq!(g1.by_reason, counts(&[("timeout", 2), ("crash", 1)]));
    let none = m
        .dlq_stats(&DlqFilter::new().with_reason("zzz"))
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    assert_eq!(none.oldest_failed_at, None);
}

/// A replay puts the message back into its original group only, through
/// the group's ready stream (the source stream and other groups never see
/// it again), with the stored payload bytes, its `mid`, a fresh retry
/// budget, and its history: `replayed_from` and `replay_count`, kept
/// through retries and later dead-letter moves; the dead letter is gone.
pub async fn dlq_replay_returns_to_the_original_group(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g1", &["s"]).await;
    ctx.create_group(&a, "g2", &["s"]).await;
    let stored: &[u8] = b"{\"z\": 18446744073709551616, \"a\":[1.50,2]}";
    let backend = ctx.backend();
    backend
        .add(Add::new(
            ctx.key("s"),
            fields(&[("data", stored), ("ts", b"t0"), ("mid", b"m-1")]),
        ))
        .await
        .unwrap();
    let seen_by_g2 = read_n(&a, "g2", 1, WAIT).await.remove(0);
    a.acknowledge(&seen_by_g2, "g2").await.unwrap();
    let msg = read_n(&a, "g1", 1, WAIT).await.remove(0);
    assert!(a.retry_with_error(&msg, "flaky").await.unwrap());
    let copy = read_n(&a, "g1", 1, WAIT).await.remove(0);
    let dlq_id = a.send_to_dlq(&copy, "gave up", Some("g1")).await.unwrap();

    let report = a
        .dlq_replay(&DlqReplay::new(DlqSelection::all()))
        .await
        .unwrap();
    assert!(!report.dry_run);
    assert_eq!(report.replayed.len(), 1, "{report:?}");
    assert!(report.skipped.is_empty() && report.duplicates.is_empty());
    let item = &report.replayed[0];
    assert_eq!(item.dlq_id, dlq_id);
    assert_eq!((item.stream.as_str(), item.group.as_str()), ("s", "g1"));
    assert_eq!((item.mid.as_deref(), item.replay_count), (Some("m-1"), 1));
    assert_eq!(backend.len(&a.keys().dlq("s")).await.unwrap(), 0);
    assert_eq!(
        backend.len(&ctx.key("s")).await.unwrap(),
        1,
        "not re-sent to the stream"
    );
    let ready = entries(&backend, &a.keys().retry_ready("s", "g1")).await;
    assert_eq!(ready.len(), 1);
    assert_eq!(Some(ready[0].id.as_str()), item.new_id.as_deref());
    assert_eq!(field(&ready[0].fields, "data"), Some(stored));

    assert!(
        read_now(&a, "g2").await.is_empty(),
        "other groups never see it again"
    );
    let back = read_n(&a, "g1", 1, WAIT).await.remove(0);
    assert_eq!(Some(back.id.as_str()), item.new_id.as_deref());
    assert_eq!(back.stream, "s");
    assert!(back.delivery.as_ref().unwrap().from_retry);
    assert_eq!((back.retry_count, back.status), (0, MessageStatus::Pending));
    assert_eq!(back.data, msg.data);
    assert_eq!(back.mid.as_deref(), Some("m-1"));
    assert_eq!(back.timestamp, "t0");
    assert_eq!(back.replayed_from.as_deref(), Some(dlq_id.as_str()));
    assert_eq!(back.replay_count, 1);
    assert_eq!(back.to_json()["replay_count"], 1);

    // A fresh budget: it can be retried again, and keeps its history.
    assert!(a.retry_message(&back).await.unwrap());
    let retried = read_n(&a, "g1", 1, WAIT).await.remove(0);
    assert_eq!(retried.retry_count, 1);
    assert_eq!(retried.replay_count, 1);
    assert_eq!(retried.replayed_from.as_deref(), Some(dlq_id.as_str()));
    let second = a.send_to_dlq(&retried, "again", Some("g1")).await.unwrap();
    let dead = a.dlq_show(&second, None).await.unwrap().unwrap();
    assert_eq!(dead.replay_count, 1);
    assert_eq!(dead.replayed_from.as_deref(), Some(dlq_id.as_str()));
    let report = a
        .dlq_replay(&DlqReplay::new(DlqSelection::ids([&second])))
        .await
        .unwrap();
    assert_eq!(report.replayed[0].replay_count, 2);
    let twice = read_n(&a, "g1", 1, WAIT).await.remove(0);
    assert_eq!((twice.replay_count, twice.retry_count), (2, 0));
    assert_eq!(twice.replayed_from.as_deref(), Some(second.as_str()));
    assert_eq!(
        field(
            &entries(&backend, &a.keys().retry_ready("s", "g1")).await[0].fields,
            "data"
        ),
        Some(stored)
    );
}

/// Replays are idempotent: each entry moves once (a second run, or two
/// replays at once, replay nothing twice); entries sharing a `mid` and a
/// target are replayed once, the newest, and the others left in place as
/// duplicates, also while the replayed copy waits in the ready stream.
pub async fn dlq_replay_is_idempotent(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 3).await;
    let got = read_n(&a, "g", 3, WAIT).await;
    let d0a = a.send_to_dlq(&got[0], "first", None).await.unwrap();
    let d0b = a.send_to_dlq(&got[0], "second", Some("g")).await.unwrap();
    let d1 = a.send_to_dlq(&got[1], "x", Some("g")).await.unwrap();
    let d2 = a.send_to_dlq(&got[2], "x", Some("g")).await.unwrap();
    let all = DlqReplay::new(DlqSelection::all()).with_target_group("g");

    let first = a.dlq_replay(&all).await.unwrap();
    let replayed: Vec<&str> = first.replayed.iter().map(|r| r.dlq_id.as_str()).collect();
    assert_eq!(replayed, [d0b.as_str(), d1.as_str(), d2.as_str()]);
    assert_eq!(first.duplicates.len(), 1);
    let dup = &first.duplicates[0];
    assert_eq!(
        (dup.dlq_id.as_str(), dup.of.as_str(), dup.waiting),
        (d0a.as_str(), d0b.as_str(), false)
    );
    assert_eq!(Some(dup.mid.as_str()), got[0].mid.as_deref());
    assert_eq!(
        ids(&a.dlq_list(&DlqQuery::new()).await.unwrap().entries),
        std::slice::from_ref(&d0a)
    );

    let second = a.dlq_replay(&all).await.unwrap();
    assert!(second.replayed.is_empty(), "{second:?}");
    assert_eq!(second.duplicates.len(), 1);
    assert!(second.duplicates[0].waiting);
    assert_eq!(
        Some(second.duplicates[0].of.as_str()),
        first.replayed[0].new_id.as_deref()
    );
    let by_id = a
        .dlq_replay(&DlqReplay::new(DlqSelection::ids([&d1])))
        .await
        .unwrap();
    assert_eq!(by_id.skipped[0].reason, SkipReason::NotFound);
    let ready = a.keys().retry_ready("s", "g");
    assert_eq!(ctx.backend().len(&ready).await.unwrap(), 3);

    // Once the copy has been handled, the leftover is a message of its own.
    let copies = read_n(&a, "g", 3, WAIT).await;
    a.acknowledge_many(&copies, "g").await.unwrap();
    let third = a.dlq_replay(&all).await.unwrap();
    assert_eq!(third.replayed.len(), 1);
    assert_eq!(third.replayed[0].dlq_id, d0a);

    // Two replays at once move each entry once.
    send_n(&a, "s", 5).await;
    let more = read_n(&a, "g", 6, WAIT).await;
    let mut dead = Vec::new();
    for msg in more.iter().filter(|m| m.replayed_from.is_none()) {
        dead.push(a.send_to_dlq(msg, "batch", Some("g")).await.unwrap());
    }
    assert_eq!(dead.len(), 5);
    let b = ctx.second_manager("b").await;
    let everything = DlqReplay::new(DlqSelection::all());
    let (x, y) = tokio::join!(a.dlq_replay(&everything), b.dlq_replay(&everything));
    let mut moved: Vec<String> = x
        .unwrap()
        .replayed
        .into_iter()
        .chain(y.unwrap().replayed)
        .map(|r| r.dlq_id)
        .collect();
    moved.sort();
    dead.sort();
    assert_eq!(moved, dead);
    assert_eq!(a.dlq_stats(&DlqFilter::new()).await.unwrap().total, 0);
}

/// A dry run reports what would be replayed and changes nothing.
pub async fn dlq_replay_dry_run_writes_nothing(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let dead = dead_letter(&a, "g", "s", &["one", "two"]).await;
    let report = a
        .dlq_replay(&DlqReplay::new(DlqSelection::all()).dry_run(true))
        .await
        .unwrap();
    assert!(report.dry_run);
    assert!(report.replayed.is_empty());
    let planned: Vec<&str> = report
        .would_replay
        .iter()
        .map(|r| r.dlq_id.as_str())
        .collect();
    assert_eq!(planned, [dead[0].as_str(), dead[1].as_str()]);
    assert!(
        report
            .would_replay
            .iter()
            .all(|r| r.new_id.is_none() && r.group == "g")
    );
    let backend = ctx.backend();
    assert_eq!(backend.len(&a.keys().dlq("s")).await.unwrap(), 2);
    assert_eq!(
        backend.len(&a.keys().retry_ready("s", "g")).await.unwrap(),
        0
    );
    assert!(read_now(&a, "g").await.is_empty());
}

/// A rate limit of `n` per second spaces the moves (six at 10 per second
/// take at least half a second) and reports progress; 0 is `Config`.
pub async fn dlq_replay_respects_rate_limit(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 6).await;
    for msg in read_n(&a, "g", 6, WAIT).await {
        a.send_to_dlq(&msg, "slow", Some("g")).await.unwrap();
    }
    let calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    let progress: streams_core::DlqProgress = Arc::new(move |done, total| {
        assert_eq!(total, 6);
        seen.store(done, Ordering::Relaxed);
    });
    let started = Instant::now();
    let report = a
        .dlq_replay(
            &DlqReplay::new(DlqSelection::all())
                .with_rate_limit(10)
                .with_progress(progress),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(report.replayed.len(), 6);
    assert!(
        took >= Duration::from_millis(450),
        "six replays at 10/s took {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(calls.load(Ordering::Relaxed), 6);
    assert_err!(
        a.dlq_replay(&DlqReplay::new(DlqSelection::all()).with_rate_limit(0))
            .await,
        StreamError::Config { .. }
    );
}

/// `dlq_purge` removes by id (reporting ids no entry has), by filter and by
/// age, and reports each entry it removed with its provenance; a dry run
/// removes nothing.
pub async fn dlq_purge_reports_what_it_removed(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let old = dead_letter(&a, "g", "s", &["old a", "old b"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Entries older than the time from `between` to when a purge runs
    // are exactly the old ones, however slow the machine.
    let between = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = dead_letter(&a, "g", "s", &["new timeout", "new crash"]).await;
    let aged = || DlqSelection::matching(DlqFilter::new().older_than(between.elapsed()));

    let dry = a
        .dlq_purge(&DlqPurge::new(aged()).dry_run(true))
        .await
        .unwrap();
    assert!(dry.dry_run && dry.removed.is_empty());
    let planned: Vec<&str> = dry.would_remove.iter().map(|p| p.dlq_id.as_str()).collect();
    assert_eq!(planned, [old[0].as_str(), old[1].as_str()]);
    let backend = ctx.backend();
    let key = a.keys().dlq("s");
    assert_eq!(backend.len(&key).await.unwrap(), 4);

    let by_id = a
        .dlq_purge(&DlqPurge::new(DlqSelection::ids([old[0].as_str(), "1-0"])))
        .await
        .unwrap();
    assert_eq!(by_id.removed.len(), 1);
    let gone = &by_id.removed[0];
    assert_eq!(gone.dlq_id, old[0]);
    assert_eq!(
        (
            gone.stream.as_deref(),
            gone.group.as_deref(),
            gone.reason.as_deref()
        ),
        (Some("s"), Some("g"), Some("old a"))
    );
    assert_eq!(by_id.not_found, ["1-0"]);

    let by_age = a.dlq_purge(&DlqPurge::new(aged())).await.unwrap();
    assert_eq!(
        by_age
            .removed
            .iter()
            .map(|p| p.dlq_id.clone())
            .collect::<Vec<_>>(),
        [old[1].clone()]
    );
    let by_reason = DlqSelection::matching(DlqFilter::new().with_reason("timeout"));
    let by_filter = a.dlq_purge(&DlqPurge::new(by_reason)).await.unwrap();
    assert_eq!(by_filter.removed[0].dlq_id, new[0]);
    assert_eq!(by_filter.removed.len(), 1);
    assert_eq!(
        ids(&a.dlq_list(&DlqQuery::new()).await.unwrap().entries),
        [new[1].clone()]
    );
    let rest = a
        .dlq_purge(&DlqPurge::new(DlqSelection::all()))
        .await
        .unwrap();
    assert_eq!(rest.removed.len(), 1);
    assert_eq!(backend.len(&key).await.unwrap(), 0);
    assert_err!(
        a.dlq_purge(&DlqPurge::new(DlqSelection::ids(["bad"])))
            .await,
        StreamError::InvalidId { .. }
    );
}

/// An entry dead-lettered without a group is replayed only to a target
/// group the request names, which must be registered and read the origin
/// stream; otherwise it is reported as skipped, with the reason, and stays.
/// The same holds for an entry whose group was deleted.
pub async fn dlq_entries_without_group(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    ctx.create_group(&a, "other", &["t"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, WAIT).await.remove(0);
    let dead = a.send_to_dlq(&msg, "manual", None).await.unwrap();
    a.acknowledge(&msg, "g").await.unwrap();
    let just = || DlqReplay::new(DlqSelection::ids([&dead]));
    let skipped = |report: streams_core::ReplayReport| {
        assert!(report.replayed.is_empty(), "{report:?}");
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].dlq_id, dead);
        report.skipped[0].reason.clone()
    };
    assert_eq!(
        skipped(a.dlq_replay(&just()).await.unwrap()),
        SkipReason::NoGroup
    );
    assert_eq!(
        skipped(
            a.dlq_replay(&just().with_target_group("nope"))
                .await
                .unwrap()
        ),
        SkipReason::GroupNotFound {
            group: "nope".into()
        }
    );
    assert_eq!(
        skipped(
            a.dlq_replay(&just().with_target_group("other"))
                .await
                .unwrap()
        ),
        SkipReason::StreamNotInGroup {
            group: "other".into(),
            stream: "s".into()
        }
    );
    assert_err!(
        a.dlq_replay(&just().with_target_group("bad name")).await,
        StreamError::InvalidName { .. }
    );
    assert_eq!(a.dlq_stats(&DlqFilter::new()).await.unwrap().total, 1);
    let report = a.dlq_replay(&just().with_target_group("g")).await.unwrap();
    assert_eq!(report.replayed[0].group, "g");
    let back = read_n(&a, "g", 1, WAIT).await.remove(0);
    assert_eq!(back.mid, msg.mid);
    assert_eq!(back.replayed_from.as_deref(), Some(dead.as_str()));

    // A deleted group is no target.
    ctx.create_group(&a, "h", &["s"]).await;
    let from_h = dead_letter(&a, "h", "s", &["h gave up"]).await;
    assert!(a.delete_consumer_group("h").await.unwrap());
    let report = a
        .dlq_replay(&DlqReplay::new(DlqSelection::ids(&from_h)))
        .await
        .unwrap();
    assert_eq!(
        report.skipped[0].reason,
        SkipReason::GroupNotFound { group: "h".into() }
    );
    assert!(a.dlq_show(&from_h[0], None).await.unwrap().is_some());
}

/// With the per-stream layout every operation covers every dead-letter
/// stream (also that of a stream whose group was deleted), the origin
/// stream narrows it to one, and cursors go from one stream to the next.
pub async fn dlq_ops_per_stream_layout(ctx: &TestContext) {
    let cfg = ctx.config("a");
    let dlq = cfg.dlq.clone().with_layout(DlqLayout::PerStream);
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s1", "s2"]).await;
    ctx.create_group(&a, "h", &["s3"]).await;
    let mut in_s1 = Vec::new();
    let mut in_s2 = Vec::new();
    for i in 0..5 {
        let stream = if i % 2 == 0 { "s2" } else { "s1" };
        let reason = format!("r{i}");
        let id = dead_letter(&a, "g", stream, &[reason.as_str()])
            .await
            .remove(0);
        if stream == "s1" {
            in_s1.push(id)
        } else {
            in_s2.push(id)
        }
    }
    let in_s3 = dead_letter(&a, "h", "s3", &["h"]).await;
    assert!(a.delete_consumer_group("h").await.unwrap());
    let fresh = ctx.manager_with(a.config().clone());

    let (paged, pages) = all_pages(&fresh, DlqFilter::new(), 2).await;
    let expected: Vec<String> = in_s1.iter().chain(&in_s2).chain(&in_s3).cloned().collect();
    assert_eq!(paged, expected);
    assert!(pages >= 3);
    let stats = fresh.dlq_stats(&DlqFilter::new()).await.unwrap();
    assert_eq!(stats.total, 6);
    assert_eq!(stats.by_stream["s2"], 3);
    assert_eq!(
        list(&fresh, DlqFilter::new().with_stream("s1")).await,
        in_s1
    );
    let shown = fresh
        .dlq_show(&in_s2[0], Some("s2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shown.dead_letter.unwrap().origin_stream, "s2");

    let report = fresh
        .dlq_replay(&DlqReplay::new(DlqSelection::matching(
            DlqFilter::new().with_stream("s2"),
        )))
        .await
        .unwrap();
    assert_eq!(report.replayed.len(), 3);
    let back = read_n(&fresh, "g", 3, WAIT).await;
    assert!(back.iter().all(|m: &StreamMessage| m.stream == "s2"));
    let purged = fresh
        .dlq_purge(&DlqPurge::new(DlqSelection::all()))
        .await
        .unwrap();
    assert_eq!(purged.removed.len(), 3);
    assert_eq!(fresh.dlq_stats(&DlqFilter::new()).await.unwrap().total, 0);
}

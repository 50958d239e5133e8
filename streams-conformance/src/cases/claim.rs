//! Claiming abandoned work, poison messages, entries deleted while pending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streams_core::{MAX_DELIVERIES_EXCEEDED, Manager, MessageStatus, StreamMessage};

use crate::support::{
    Fault, Meddle, TestContext, claim_all, entries, eventually, ids, pending_all, read_n, read_now,
    send_n, trim_exact,
};

/// Idle time the claims below ask for: longer than a claimer takes to page
/// through everything, so it never claims back what it has just claimed.
const CLAIM_IDLE: Duration = Duration::from_millis(800);

/// An unacknowledged message can be claimed by another consumer once it has
/// been idle for the given time, and not before; the group's `claim_idle`
/// is the default threshold.
pub async fn claim_respects_idle_time(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 1).await;
    let read_started = Instant::now();
    read_n(&a, "g", 1, Duration::from_secs(5)).await;
    let b = ctx.second_manager("b").await;
    let idle = Duration::from_millis(500);

    let early = b.claim_pending_messages("g", Some(idle)).await.unwrap();
    assert!(
        early.is_empty() || read_started.elapsed() >= idle,
        "claimed {:?} after only {:?}",
        ids(&early),
        read_started.elapsed()
    );
    // The group's claim_idle (60 s by default) applies without an argument.
    assert!(
        b.claim_pending_messages("g", None)
            .await
            .unwrap()
            .is_empty()
    );

    let claimed: Vec<StreamMessage> = eventually("claimable", Duration::from_secs(3), || async {
        let c = b.claim_pending_messages("g", Some(idle)).await.unwrap();
        (!c.is_empty()).then_some(c)
    })
    .await;
    let after = read_started.elapsed();
    assert!(
        after >= idle - Duration::from_millis(2),
        "claimed after {after:?}, idle threshold {idle:?}"
    );
    assert_eq!(ids(&claimed), sent);
    let d = claimed[0].delivery.as_ref().unwrap();
    assert_eq!(&*d.consumer, "b");
    assert_eq!(&*d.group, "g");
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].consumer, "b");
    assert!(b.acknowledge(&claimed[0], "g").await.unwrap());
    assert_eq!(b.get_stats().await.unwrap().messages_claimed, 1);
}

/// Every claim counts a delivery: the claimed message reports the server's
/// delivery count; its `retry_count` counts retries only, so it stays 0.
pub async fn claim_increments_delivery_count(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 1).await;
    read_n(&a, "g", 1, Duration::from_secs(5)).await;
    let b = ctx.second_manager("b").await;
    let backend = ctx.backend();
    let key = ctx.key("s");

    for (round, (claimer, name)) in [(&b, "b"), (&a, "a"), (&b, "b")].into_iter().enumerate() {
        let deliveries = round as u64 + 2;
        let claimed = claimer
            .claim_pending_messages("g", Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(ids(&claimed), sent, "round {round}");
        let msg = &claimed[0];
        assert_eq!(msg.delivery.as_ref().unwrap().deliveries, deliveries);
        assert_eq!(&*msg.delivery.as_ref().unwrap().consumer, name);
        assert_eq!(msg.retry_count, 0, "a redelivery is not a retry");
        let pending = pending_all(&backend, &key, "g").await;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].deliveries, deliveries);
        assert_eq!(pending[0].consumer, name);
    }
}

/// Claims take every idle entry of every stream of the group, across as
/// many pages as it takes: handed-back ones all at once, and the ones a
/// consumer died holding one per claim (each may have killed it).
pub async fn claim_pages_through_everything(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s1", "s2"]).await;
    let s1 = send_n(&a, "s1", 7).await;
    let s2 = send_n(&a, "s2", 4).await;
    let held = read_n(&a, "g", 11, Duration::from_secs(5)).await;

    let b = ctx
        .second_manager_with(ctx.config("b").with_claim_page_size(3))
        .await;
    // `a` hands back three of s1 before it dies holding the rest. The idle
    // bound keeps `b` from claiming back what it has just claimed.
    let handed_back: Vec<_> = held
        .iter()
        .filter(|m| m.stream == "s1")
        .take(3)
        .cloned()
        .collect();
    assert_eq!(a.release(&handed_back).await.unwrap(), 3);
    tokio::time::sleep(CLAIM_IDLE + Duration::from_millis(50)).await;
    let first = b
        .claim_pending_messages("g", Some(CLAIM_IDLE))
        .await
        .unwrap();
    assert_eq!(
        first.len(),
        4,
        "three handed back and one redelivered: {first:?}"
    );
    let mut claimed = first;
    claimed.extend(claim_all(&b, "g", CLAIM_IDLE).await);
    let from = |stream: &str| -> Vec<String> {
        claimed
            .iter()
            .filter(|m| m.stream == stream)
            .map(|m| m.id.clone())
            .collect()
    };
    assert_eq!(from("s1"), s1);
    assert_eq!(from("s2"), s2);
    assert_eq!(claimed.len(), 11);
    for key in [ctx.key("s1"), ctx.key("s2")] {
        assert!(
            pending_all(&ctx.backend(), &key, "g")
                .await
                .iter()
                .all(|p| p.consumer == "b")
        );
    }
    let stats = b.get_stats().await.unwrap();
    assert_eq!(stats.messages_claimed, 11);
    assert_eq!(stats.messages_read, 11);
}

/// Entries deleted (trimmed) while pending are not ignored by a claim: they
/// are acknowledged and counted in `pending_deleted`; the rest are claimed.
pub async fn claim_acks_deleted_pending_entries(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 5).await;
    read_n(&a, "g", 5, Duration::from_secs(5)).await;
    let backend = ctx.backend();
    let key = ctx.key("s");
    let removed = trim_exact(&backend, &key, 2).await;
    assert_eq!(removed, 3);

    let b = ctx.second_manager("b").await;
    tokio::time::sleep(CLAIM_IDLE + Duration::from_millis(50)).await;
    let claimed = claim_all(&b, "g", CLAIM_IDLE).await;
    assert_eq!(ids(&claimed), sent[3..]);
    let stats = b.get_stats().await.unwrap();
    assert_eq!(stats.pending_deleted, 3);
    assert_eq!(stats.messages_claimed, 2);
    let pending = pending_all(&backend, &key, "g").await;
    assert_eq!(
        pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        sent[3..]
    );
}

/// Entries deleted while pending are not ignored when a restarted consumer
/// resumes its own pending entries: they are acknowledged and counted, and
/// the surviving ones are delivered.
pub async fn restart_acks_deleted_pending_entries(ctx: &TestContext) {
    let first = ctx.manager("worker");
    ctx.create_group(&first, "g", &["s"]).await;
    let sent = send_n(&first, "s", 4).await;
    read_n(&first, "g", 4, Duration::from_secs(5)).await;
    let backend = ctx.backend();
    let key = ctx.key("s");
    trim_exact(&backend, &key, 1).await;

    let restarted = ctx.second_manager("worker").await;
    let resumed = restarted
        .read_messages("g", None, Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(ids(&resumed), sent[3..]);
    assert_eq!(restarted.get_stats().await.unwrap().pending_deleted, 3);
    let pending = pending_all(&backend, &key, "g").await;
    assert_eq!(
        pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        sent[3..]
    );
    assert!(restarted.acknowledge(&resumed[0], "g").await.unwrap());
    assert!(read_now(&restarted, "g").await.is_empty());
}

/// A message delivered more than `retry_limit + 1` times through repeated
/// claims is a poison message: the claim sends it to the dead-letter queue
/// with reason "max deliveries exceeded" instead of returning it, and the
/// dead letter records the deliveries that reached a handler.
pub async fn poison_message_goes_to_dlq(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 1).await;
    read_n(&a, "g", 1, Duration::from_secs(5)).await;
    let b = ctx.second_manager("b").await;
    // retry_limit is 3: deliveries 2, 3 and 4 are still handed out.
    for (claimer, deliveries) in [(&b, 2), (&a, 3), (&b, 4)] {
        let claimed = claimer
            .claim_pending_messages("g", Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(ids(&claimed), sent, "delivery {deliveries}");
    }
    let claimed = a
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(claimed.is_empty(), "poison handed out: {claimed:?}");

    let backend = ctx.backend();
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
    let dlq = entries(&backend, &a.keys().dlq("s")).await;
    assert_eq!(dlq.len(), 1);
    let dead = StreamMessage::from_entry("xnai:dlq", dlq[0].id.as_str(), &dlq[0].fields);
    assert_eq!(dead.status, MessageStatus::Dlq);
    let prov = dead.dead_letter.expect("provenance");
    assert_eq!(prov.reason, MAX_DELIVERIES_EXCEEDED);
    assert_eq!(prov.origin_stream, "s");
    assert_eq!(prov.origin_id, sent[0]);
    assert_eq!(prov.group.as_deref(), Some("g"));
    assert_eq!(prov.consumer.as_deref(), Some("a"));
    assert_eq!(prov.deliveries, Some(4), "handed to a handler four times");
    assert_eq!(dead.data["n"], 0);

    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.poison_messages, 1);
    assert_eq!(stats.messages_dead_lettered, 1);
    assert_eq!(stats.messages_claimed, 1);
    assert_eq!(stats.dlq_entries, 1);
}

/// A claimed retry copy keeps its logical stream, is acknowledged on the
/// group's retry stream it was read from, and is removed from there.
pub async fn claimed_retry_copy_is_acked_where_read(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let got = read_n(&a, "g", 1, Duration::from_secs(5)).await;
    assert!(a.retry_message(&got[0]).await.unwrap());
    let copy = read_n(&a, "g", 1, Duration::from_secs(5)).await;
    assert!(copy[0].delivery.as_ref().unwrap().from_retry);
    // `a` dies holding the retry copy.
    let b = ctx.second_manager("b").await;
    let claimed = b
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ids(&copy));
    let msg = &claimed[0];
    assert_eq!(msg.stream, "s");
    let d = msg.delivery.as_ref().unwrap();
    assert!(d.from_retry);
    assert_eq!(d.deliveries, 2);
    assert_eq!(
        msg.retry_count, 1,
        "one retry; the redelivery is in `deliveries`"
    );
    assert_eq!(msg.data["n"], 0);

    let backend = ctx.backend();
    let ready = a.keys().retry_ready("s", "g");
    assert!(b.acknowledge(msg, "g").await.unwrap());
    assert!(pending_all(&backend, &ready, "g").await.is_empty());
    assert_eq!(backend.len(&ready).await.unwrap(), 0);
    assert_eq!(backend.len(&ctx.key("s")).await.unwrap(), 1);
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
}

/// Claims after a crash pin a crash loop on its culprit: a consumer dies on
/// the first of a batch it read; each claimer gets the culprit alone and
/// dies on it too, until it is dead-lettered; its batch-mates, never
/// started, come one per claim and are handled, none dead-lettered.
pub async fn claims_take_redelivered_entries_alone(ctx: &TestContext) {
    let setup = ctx.manager("setup");
    ctx.create_group(&setup, "g", &["s"]).await;
    let items = (0..7).map(|i| serde_json::json!({ "i": i })).collect();
    let sent = setup.send_batch("s", items, None).await.unwrap();
    // The first process reads all seven and dies on the first (i = 0).
    read_n(
        &ctx.second_manager("w0").await,
        "g",
        7,
        Duration::from_secs(5),
    )
    .await;
    let mut crashes = 1;
    let mut handled = Vec::new();
    for n in 1..20 {
        let worker = ctx.second_manager(&format!("w{n}")).await;
        let claimed = worker
            .claim_pending_messages("g", Some(Duration::ZERO))
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        assert_eq!(
            claimed.len(),
            1,
            "one redelivered message per claim: {claimed:?}"
        );
        if claimed[0].data["i"] == 0 {
            crashes += 1; // This worker dies too.
            continue;
        }
        assert!(worker.acknowledge(&claimed[0], "g").await.unwrap());
        handled.push(claimed[0].id.clone());
    }
    let limit = setup.config().dlq.retry_limit;
    assert_eq!(crashes, limit + 1, "the culprit had its attempts");
    handled.sort();
    assert_eq!(handled, sent[1..], "every batch-mate was handled");
    let dead = setup.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].data["i"], 0);
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s"), "g")
            .await
            .is_empty()
    );
}

/// Draining crash suspects that sit behind entries still being worked on
/// costs about one pass over the pending list, not one pass per suspect: a
/// claim goes on where the previous one stopped, and goes round once more
/// only when that finds nothing.
pub async fn claims_go_on_where_the_last_one_stopped(ctx: &TestContext) {
    let a = ctx.manager("busy");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 40).await;
    let busy = read_n(&a, "g", 40, Duration::from_secs(5)).await;
    let dead = ctx.second_manager("dead").await;
    let suspects = send_n(&a, "s", 5).await;
    read_n(&dead, "g", 5, Duration::from_secs(5)).await;
    // `dead` stops; `busy` keeps its lease on its 40.
    let idle = Duration::from_millis(300);
    tokio::time::sleep(idle + Duration::from_millis(50)).await;
    // One call renews all 40 at once, so none of them is idle again before
    // the claims below are done.
    assert_eq!(a.touch_many(&busy).await.unwrap(), 40);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Meddle::wrap(
        ctx.second_backend().await,
        "auto_claim",
        Fault::Count(Arc::clone(&calls)),
    );
    // One entry per page: a page examines at most ten pending entries.
    let claimer = Manager::new(counted, ctx.config("c").with_claim_page_size(1)).unwrap();
    let mut claimed = Vec::new();
    for _ in 0..20 {
        let got = claimer
            .claim_pending_messages("g", Some(idle))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        assert_eq!(got.len(), 1, "one suspect per claim");
        claimed.extend(got);
    }
    assert_eq!(ids(&claimed), suspects);
    // A pass over the 40 busy entries takes 4 or 5 pages; one pass to get to
    // the first suspect, one page per later suspect, and one whole pass to
    // find nothing is left: far below the 5 passes of starting over each
    // time.
    let n = calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n <= 16, "{n} pages to drain 5 suspects");
}

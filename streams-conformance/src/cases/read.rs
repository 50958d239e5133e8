//! Reading: blocking, sharing work between consumers, resuming after a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use streams_core::{Manager, StreamMessage};

use crate::support::{
    Fault, Meddle, TestContext, TestManager, ids, pending_all, read_n, read_now, send_n, within,
};

/// A read blocked waiting for new entries returns within 50 ms of a send to
/// any stream of its group (measured from the send's return to the read's
/// return), five times in a row, after blocking for different times (so a
/// backend that polls instead of waking cannot pass by the luck of its phase).
pub async fn blocking_read_wakes_on_send(ctx: &TestContext) {
    let reader = ctx.manager("reader");
    ctx.create_group(&reader, "g", &["s1", "s2"]).await;
    let producer = ctx.second_manager("producer").await;
    producer.initialize().await.unwrap();
    // Nothing pending: the first read only resumes the (empty) backlog.
    assert!(read_now(&reader, "g").await.is_empty());

    let rounds = [
        ("s1", 100),
        ("s2", 125),
        ("s1", 150),
        ("s2", 175),
        ("s1", 200),
    ];
    for (round, (stream, blocked_ms)) in rounds.into_iter().enumerate() {
        let r = reader.clone();
        let started = Instant::now();
        let read = tokio::spawn(async move {
            let got = r
                .read_messages("g", None, Some(Duration::from_secs(10)))
                .await
                .unwrap();
            (got, Instant::now())
        });
        // Let the read reach its blocking wait.
        tokio::time::sleep(Duration::from_millis(blocked_ms)).await;
        assert!(
            !read.is_finished(),
            "round {round}: the read returned before any send"
        );
        let id = producer
            .send_message(stream, json!({"round": round}), None)
            .await
            .unwrap();
        let sent_at = Instant::now();
        let (got, returned_at) = within("blocked read", Duration::from_secs(5), read)
            .await
            .unwrap();
        let wake = returned_at.saturating_duration_since(sent_at);
        assert_eq!(ids(&got), [id], "round {round}");
        assert_eq!(got[0].stream, stream);
        assert!(
            wake < Duration::from_millis(50),
            "round {round}: the read returned {wake:?} after the send (blocked {:?})",
            returned_at - started
        );
    }
}

/// Two consumers of one group reading concurrently share the new messages:
/// every one of 200 messages goes to exactly one of them.
pub async fn consumers_share_new_messages(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let b = ctx.second_manager("b").await;
    let sent = send_n(&a, "s", 200).await;
    let total = Arc::new(AtomicUsize::new(0));
    let consume = |m: TestManager, total: Arc<AtomicUsize>| async move {
        let mut got: Vec<StreamMessage> = Vec::new();
        while total.load(Ordering::SeqCst) < 200 {
            let batch = m
                .read_messages("g", Some(5), Some(Duration::from_millis(20)))
                .await
                .unwrap();
            total.fetch_add(batch.len(), Ordering::SeqCst);
            got.extend(batch);
            tokio::task::yield_now().await;
        }
        got
    };
    let ta = tokio::spawn(consume(a.clone(), Arc::clone(&total)));
    let tb = tokio::spawn(consume(b.clone(), Arc::clone(&total)));
    let got_a = within("consumer a", Duration::from_secs(20), ta)
        .await
        .unwrap();
    let got_b = within("consumer b", Duration::from_secs(20), tb)
        .await
        .unwrap();

    let set_a: HashSet<String> = ids(&got_a).into_iter().collect();
    let set_b: HashSet<String> = ids(&got_b).into_iter().collect();
    assert_eq!(set_a.len(), got_a.len(), "a got a message twice");
    assert_eq!(set_b.len(), got_b.len(), "b got a message twice");
    let both: Vec<_> = set_a.intersection(&set_b).collect();
    assert!(both.is_empty(), "delivered to both consumers: {both:?}");
    let union: HashSet<String> = set_a.union(&set_b).cloned().collect();
    assert_eq!(union, sent.iter().cloned().collect::<HashSet<_>>());
    for m in &got_a {
        assert_eq!(&*m.delivery.as_ref().unwrap().consumer, "a");
    }
    for m in &got_b {
        assert_eq!(&*m.delivery.as_ref().unwrap().consumer, "b");
    }
    // The server agrees on who holds what.
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 200);
    for p in &pending {
        let expected = if set_a.contains(p.id.as_str()) {
            "a"
        } else {
            "b"
        };
        assert_eq!(p.consumer, expected, "{p:?}");
        assert_eq!(p.deliveries, 1);
    }
}

/// A restarted consumer (a new manager with the same consumer id) first gets
/// its own pending entries again, in order and one per read (each may have
/// crashed it), counted as redeliveries, then new ones; other consumers
/// never see those pending entries.
pub async fn restarted_consumer_gets_own_pending_first(ctx: &TestContext) {
    let first = ctx.manager("worker");
    ctx.create_group(&first, "g", &["s"]).await;
    let old = send_n(&first, "s", 3).await;
    let taken = read_n(&first, "g", 3, Duration::from_secs(5)).await;
    assert_eq!(ids(&taken), old);
    // The worker dies without acknowledging; more work arrives.
    let new = send_n(&first, "s", 2).await;

    let other = ctx.second_manager("other").await;
    let others = other
        .read_messages("g", Some(1), Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(
        ids(&others),
        [new[0].clone()],
        "others only get new entries"
    );

    let restarted = ctx.second_manager("worker").await;
    let mut resumed = Vec::new();
    for _ in 0..3 {
        let one = restarted
            .read_messages("g", Some(10), Some(Duration::from_millis(50)))
            .await
            .unwrap();
        assert_eq!(one.len(), 1, "one own pending entry per read: {one:?}");
        resumed.extend(one);
    }
    assert_eq!(ids(&resumed), old, "own pending entries first");
    for msg in &resumed {
        assert_eq!(msg.retry_count, 0, "a redelivery is not a retry: {msg:?}");
        let d = msg.delivery.as_ref().unwrap();
        assert_eq!(&*d.consumer, "worker");
        assert_eq!(d.deliveries, 2, "a redelivery counts a delivery");
        assert!(d.is_redelivery());
    }
    let fresh = read_n(&restarted, "g", 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&fresh), [new[1].clone()]);
    assert_eq!(fresh[0].retry_count, 0);
    assert_eq!(restarted.acknowledge_many(&resumed, "g").await.unwrap(), 3);
    assert!(read_now(&restarted, "g").await.is_empty());
}

/// The backlog of a restarted consumer is what it held at the start: work
/// delivered to it since (by another task reading live while the backlog
/// is being delivered) is never handed out a second time. Every message
/// reaches the restarted consumer exactly once.
pub async fn backlog_never_serves_work_delivered_since(ctx: &TestContext) {
    let first = ctx.manager("worker");
    ctx.create_group(&first, "g", &["s"]).await;
    let old = send_n(&first, "s", 2).await;
    read_n(&first, "g", 2, Duration::from_secs(5)).await;
    // The worker dies holding both; it restarts on a slow connection.
    let slow = Meddle::wrap(
        ctx.second_backend().await,
        "redeliver",
        Fault::Delay(Duration::from_millis(300)),
    );
    let restarted = Arc::new(Manager::new(slow, ctx.config("worker")).unwrap());
    let a = {
        let m = Arc::clone(&restarted);
        tokio::spawn(async move { m.read_messages("g", Some(10), Some(Duration::ZERO)).await })
    };
    // While task A delivers the first backlog entry, new work arrives and
    // task B reads it live.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = send_n(&first, "s", 2).await;
    let b = restarted
        .read_messages("g", Some(10), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(ids(&b), new, "the live read gets the new work");
    assert!(
        b.iter()
            .all(|m| m.delivery.as_ref().unwrap().deliveries == 1)
    );
    let a = a.await.unwrap().unwrap();
    assert_eq!(ids(&a), [old[0].clone()], "the backlog's first entry");
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.extend(
            restarted
                .read_messages("g", Some(10), Some(Duration::from_millis(50)))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        ids(&rest),
        [old[1].clone()],
        "then the rest of the backlog, and nothing twice"
    );
    let all: Vec<StreamMessage> = a.into_iter().chain(b).chain(rest).collect();
    assert_eq!(restarted.acknowledge_many(&all, "g").await.unwrap(), 4);
}

/// A restarted consumer whose own claim takes back one of the entries it
/// held (before its first read) gets that entry from the claim only: the
/// backlog skips it, and serves the rest.
pub async fn backlog_skips_what_a_claim_took_since(ctx: &TestContext) {
    let first = ctx.manager("w");
    ctx.create_group(&first, "g", &["s"]).await;
    let sent = send_n(&first, "s", 2).await;
    read_n(&first, "g", 2, Duration::from_secs(5)).await;
    let restarted = ctx.second_manager("w").await;
    let claimed = restarted
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), sent[..1], "one crash suspect per claim");
    let mut read = Vec::new();
    for _ in 0..3 {
        read.extend(
            restarted
                .read_messages("g", Some(10), Some(Duration::from_millis(20)))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        ids(&read),
        sent[1..],
        "the claimed entry is not served again"
    );
}

/// A backlog read cancelled while it delivers an entry (a timeout around
/// `read_messages`) loses nothing: the next read delivers that entry.
pub async fn cancelled_backlog_read_keeps_its_entry(ctx: &TestContext) {
    let first = ctx.manager("w");
    ctx.create_group(&first, "g", &["s"]).await;
    let sent = send_n(&first, "s", 2).await;
    read_n(&first, "g", 2, Duration::from_secs(5)).await;
    let slow = Meddle::wrap(
        ctx.second_backend().await,
        "redeliver",
        Fault::Delay(Duration::from_millis(200)),
    );
    let restarted = Manager::new(slow, ctx.config("w")).unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        restarted.read_messages("g", Some(10), Some(Duration::ZERO)),
    )
    .await;
    assert!(cancelled.is_err(), "the read was cut short");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(
            restarted
                .read_messages("g", Some(10), Some(Duration::ZERO))
                .await
                .unwrap(),
        );
    }
    assert_eq!(ids(&got), sent, "both, the interrupted one first");
}

/// `read_messages` without arguments uses the group's `batch_size` and
/// `block`; an explicit `count` overrides the batch size.
pub async fn read_uses_group_defaults(ctx: &TestContext) {
    let m = ctx.manager("a");
    m.create_consumer_group(
        &ctx.group("g", &["s"])
            .with_batch_size(3)
            .with_block(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    send_n(&m, "s", 5).await;
    let batch = m.read_messages("g", None, None).await.unwrap();
    assert_eq!(batch.len(), 3);
    let batch = m.read_messages("g", Some(1), None).await.unwrap();
    assert_eq!(batch.len(), 1);
    let batch = m.read_messages("g", None, None).await.unwrap();
    assert_eq!(batch.len(), 1);

    // Nothing left: the group's block (300 ms) applies.
    let started = Instant::now();
    let empty = m.read_messages("g", None, None).await.unwrap();
    let waited = started.elapsed();
    assert!(empty.is_empty());
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
}

/// An empty read waits for the block time given, and `Duration::ZERO` does
/// not wait at all.
pub async fn empty_read_waits_for_block(ctx: &TestContext) {
    let m = ctx.manager("a");
    m.create_consumer_group(&ctx.group("g", &["s"]).with_block(Duration::from_secs(30)))
        .await
        .unwrap();
    let started = Instant::now();
    let got = m
        .read_messages("g", None, Some(Duration::from_millis(250)))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(240) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    let started = Instant::now();
    let got = m
        .read_messages("g", None, Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "a zero block waited {:?}",
        started.elapsed()
    );
}

/// A message that crashes its consumer every time is not redelivered
/// forever: each restart's re-delivery counts, and the read that would deliver
/// it more than `retry_limit + 1` times dead-letters it instead, with reason
/// `max deliveries exceeded`.
pub async fn restart_loop_dead_letters_poison(ctx: &TestContext) {
    let setup = ctx.manager("setup");
    ctx.create_group(&setup, "g", &["s"]).await;
    let sent = send_n(&setup, "s", 1).await;
    let limit = setup.config().dlq.retry_limit;
    // First delivery, then one re-delivery per restart, up to the limit.
    for delivery in 1..=u64::from(limit) + 1 {
        let worker = ctx.second_manager("worker").await;
        let got = worker
            .read_messages("g", Some(10), Some(Duration::from_millis(50)))
            .await
            .unwrap();
        assert_eq!(ids(&got), sent, "delivery {delivery}");
        assert_eq!(got[0].delivery.as_ref().unwrap().deliveries, delivery);
        assert_eq!(got[0].retry_count, 0, "a redelivery is not a retry");
        // The worker crashes: no ack.
    }
    let worker = ctx.second_manager("worker").await;
    let got = worker
        .read_messages("g", Some(10), Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "the poison message is not handed out again: {got:?}"
    );
    let dead = worker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let provenance = dead[0].dead_letter.as_ref().unwrap();
    assert_eq!(provenance.origin_id, sent[0]);
    assert_eq!(provenance.reason, streams_core::MAX_DELIVERIES_EXCEEDED);
    assert_eq!(
        provenance.deliveries,
        Some(u64::from(limit) + 1),
        "the deliveries that reached a handler"
    );
    assert_eq!(worker.get_stats().await.unwrap().poison_messages, 1);
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s"), "g")
            .await
            .is_empty()
    );
}

/// `count` is the most messages one read returns, over all the group's
/// streams and its retries together, and it is shared fairly: every stream
/// and the retries get their turn, and over successive reads none is starved.
pub async fn read_count_caps_the_total(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s1", "s2", "s3"]).await;
    // A retry, due at once, waits in the group's ready stream.
    send_n(&m, "s1", 1).await;
    let first = read_n(&m, "g", 1, Duration::from_secs(5)).await;
    let cfg = ctx
        .config("r")
        .with_dlq(streams_core::DlqConfig::default().with_retry_backoff(Duration::ZERO));
    let r = ctx.manager_with(cfg);
    let held = r
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(ids(&held), ids(&first));
    assert!(r.retry_message(&held[0]).await.unwrap());
    assert_eq!(r.promote_due_retries(Some("g")).await.unwrap(), 1);
    for stream in ["s1", "s2", "s3"] {
        send_n(&m, stream, 10).await;
    }

    // Four over three streams and the retries: one of each.
    let got = m
        .read_messages("g", Some(4), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    let retries = got
        .iter()
        .filter(|x| x.delivery.as_ref().unwrap().from_retry)
        .count();
    assert_eq!(retries, 1, "the retry gets its share: {got:?}");
    let streams: HashSet<&str> = got.iter().map(|x| x.stream.as_str()).collect();
    assert_eq!(streams.len(), 3, "every stream gets its share: {got:?}");

    // One at a time, the streams take turns.
    let mut turns: Vec<String> = Vec::new();
    for _ in 0..6 {
        let one = m
            .read_messages("g", Some(1), Some(Duration::from_millis(100)))
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        turns.push(one[0].stream.clone());
    }
    for stream in ["s1", "s2", "s3"] {
        let n = turns.iter().filter(|s| *s == stream).count();
        assert!(n >= 1, "{stream} starved: {turns:?}");
    }

    // Never more than asked, however much is waiting.
    for count in [1, 2, 5, 7] {
        let got = m
            .read_messages("g", Some(count), Some(Duration::from_millis(100)))
            .await
            .unwrap();
        assert!(got.len() <= count, "{} for count {count}", got.len());
    }
}

//! Leases: `touch` renews a message being worked on, `release` hands it back.

use std::time::{Duration, Instant};

use streams_core::StreamMessage;
use streams_core::backend::PendingQuery;

use crate::support::{TestContext, eventually, ids, pending_all, read_n, send_n};

/// Touching a message resets its idle time without counting a delivery, so
/// a claim with a shorter idle threshold does not take it; once it has been
/// idle long enough again, it can be claimed, and the old holder's touch
/// then returns `false`.
pub async fn touch_keeps_entry_from_claims(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let got = read_n(&a, "g", 1, Duration::from_secs(5)).await;
    let idle = Duration::from_millis(250);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(a.touch(&got[0]).await.unwrap());
    let touched_at = Instant::now();
    let b = ctx.second_manager("b").await;
    let early = b.claim_pending_messages("g", Some(idle)).await.unwrap();
    assert!(
        early.is_empty() || touched_at.elapsed() >= idle,
        "claimed {:?} {:?} after a touch",
        ids(&early),
        touched_at.elapsed()
    );
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending[0].consumer, "a");
    assert_eq!(pending[0].deliveries, 1, "a touch is not a delivery");

    let claimed: Vec<StreamMessage> = eventually("claimable", Duration::from_secs(3), || async {
        let c = b.claim_pending_messages("g", Some(idle)).await.unwrap();
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert!(touched_at.elapsed() >= idle - Duration::from_millis(2));
    assert_eq!(ids(&claimed), ids(&got));
    assert_eq!(claimed[0].delivery.as_ref().unwrap().deliveries, 2);
    assert!(!a.touch(&got[0]).await.unwrap(), "no longer a's to touch");
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending[0].consumer, "b");
    assert_eq!(pending[0].deliveries, 2);
}

/// Releasing messages hands them back: they stay pending for their holder
/// but are claimable at once, even with a long idle threshold, and the
/// delivery that brought them is not counted; the others are untouched.
pub async fn release_makes_entry_claimable(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 3).await;
    let got = read_n(&a, "g", 3, Duration::from_secs(5)).await;
    let handed_back = [got[0].clone(), got[2].clone()];
    assert_eq!(a.release(&handed_back).await.unwrap(), 2);
    assert_eq!(a.release(&[]).await.unwrap(), 0);

    let backend = ctx.backend();
    let key = ctx.key("s");
    let idle_long = backend
        .pending(PendingQuery::new(&key, "g", 100).idle_at_least(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(
        idle_long.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        [sent[0].clone(), sent[2].clone()]
    );
    assert!(
        idle_long
            .iter()
            .all(|p| p.consumer == "a" && p.deliveries == 0),
        "a hand-back gives its delivery back: {idle_long:?}"
    );

    let b = ctx.second_manager("b").await;
    let claimed = b
        .claim_pending_messages("g", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ids(&handed_back));
    let pending = pending_all(&backend, &key, "g").await;
    let owners: Vec<_> = pending
        .iter()
        .map(|p| (p.consumer.as_str(), p.deliveries))
        .collect();
    assert_eq!(owners, [("b", 1), ("a", 1), ("b", 1)]);
    assert!(
        claimed
            .iter()
            .all(|m| m.delivery.as_ref().unwrap().deliveries == 1)
    );
    assert_eq!(a.get_stats().await.unwrap().messages_handed_back, 2);
    // Released entries that another consumer took are not a's to release.
    assert_eq!(a.release(&handed_back).await.unwrap(), 0);
}

/// Handing the same delivery back twice gives back one delivery: a
/// release repeated (after a timeout, or by a dropped subscription and by
/// hand) cannot erase the crashes a message has caused.
pub async fn release_twice_gives_back_one_delivery(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    read_n(&a, "g", 1, Duration::from_secs(5)).await;
    // `a` dies holding it; `b` claims it (its second delivery).
    let b = ctx.second_manager("b").await;
    let claimed = b
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(claimed[0].delivery.as_ref().unwrap().deliveries, 2);
    assert_eq!(b.release(&claimed).await.unwrap(), 1);
    assert_eq!(b.release(&claimed).await.unwrap(), 0, "already handed back");
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(
        pending[0].deliveries, 1,
        "one delivery given back: {pending:?}"
    );
    assert_eq!(b.get_stats().await.unwrap().messages_handed_back, 1);
}

/// `touch_many` renews the lease of every message still held, in one call
/// per stream, and counts only those.
pub async fn touch_many_renews_every_lease(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s1", "s2"]).await;
    send_n(&a, "s1", 2).await;
    send_n(&a, "s2", 1).await;
    let got = read_n(&a, "g", 3, Duration::from_secs(5)).await;
    let idle = Duration::from_millis(300);
    tokio::time::sleep(idle).await;
    assert!(a.acknowledge(&got[0], "g").await.unwrap());
    assert_eq!(
        a.touch_many(&got).await.unwrap(),
        2,
        "the acked one is not held"
    );
    let b = ctx.second_manager("b").await;
    assert!(
        b.claim_pending_messages("g", Some(idle))
            .await
            .unwrap()
            .is_empty(),
        "renewed leases are not claimable"
    );
    assert_eq!(a.acknowledge_many(&got, "g").await.unwrap(), 2);
}
